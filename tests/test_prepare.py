"""`dcgan prepare` and training from a prepared (memory-mapped) dataset.

Small generated data: a folder of a few hundred images of odd sizes with undecodable files among
them, an LSUN lmdb of two categories written here, and the synthetic Fashion-MNIST of conftest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dcgan import prepare as prep
from dcgan.cli import main
from dcgan.config import DataConfig, from_dict
from dcgan.data import Batches, ImageFiles, build_source, data_fingerprint, load_images
from dcgan.errors import DataError

RNG = np.random.default_rng(0)
N_FOLDER, N_BAD = 300, 3


def write_folder(root: Path, n: int, bad: int = 0) -> Path:
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        arr = RNG.integers(0, 256, (18 + i % 9, 16 + i % 5, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / ("sub" if i % 2 else "") / f"img{i:04d}.{'jpg' if i % 3 else 'png'}")
    for i in range(bad):
        (root / f"img{i:04d}x.jpg").write_bytes(b"not an image")  # sorted among the good ones: chunk 1
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("prep") / "imgs", N_FOLDER, N_BAD)


def data_cfg(root, tmp_path, **kw) -> DataConfig:
    base = dict(name="folder", root=str(root), image_size=16, channels=3, download=False,
                cache_dir=str(tmp_path / "cache"), num_workers=0)
    base.update(kw)
    return DataConfig(**base)


def as_prepared(c: DataConfig, out: Path, **kw) -> DataConfig:
    return dataclasses.replace(c, name="prepared", root=str(out), **kw)


def npy_sha256(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(np.ascontiguousarray(np.load(p)).tobytes())
    return "sha256:" + h.hexdigest()


# --- preparing ---------------------------------------------------------------------------------


def test_folder_prepares_to_what_training_decodes(folder, tmp_path):
    """The array holds exactly the images the in-memory path decodes (same transform, same order,
    undecodable files skipped and counted); batches from the memory map are the in-memory ones
    for every rank, epoch and start position; the folder holds only the three files."""
    c = data_cfg(folder, tmp_path)
    m = prep.prepare(c, tmp_path / "out", workers=0, command="dcgan prepare --out out", progress=False)
    assert sorted(os.listdir(tmp_path / "out")) == ["dataset.json", "images.npy"]
    assert m["count"] == N_FOLDER and m["skipped"] == N_BAD and "img0000x.jpg" in m["first_failure"]
    assert m["shape"] == [N_FOLDER, 3, 16, 16] and m["labels"] is False and m["command"] == "dcgan prepare --out out"
    assert m["fingerprint"] == npy_sha256(tmp_path / "out" / "images.npy")
    assert m["source"]["fingerprint"] == data_fingerprint(c, "train")
    assert json.loads((tmp_path / "out" / "dataset.json").read_text()) == m

    decoded = load_images(c)
    pc = as_prepared(c, tmp_path / "out")
    mapped = load_images(pc)
    assert torch.equal(mapped.images, decoded.images) and mapped.labels is None
    assert np.load(tmp_path / "out" / "images.npy", mmap_mode="r").shape == (N_FOLDER, 3, 16, 16)

    mem = [Batches(dataclasses.replace(c, in_memory="always"), 16, 5, torch.device("cpu"), r, 2) for r in (0, 1)]
    mmap = [Batches(pc, 16, 5, torch.device("cpu"), r, 2) for r in (0, 1)]
    assert all(b.mapped is not None and b.memory is None for b in mmap)
    for a, b in zip(mem, mmap):
        assert a.steps_per_epoch == b.steps_per_epoch == N_FOLDER // 2 // 16
        for epoch, start in ((0, 0), (3, 2)):
            assert all(torch.equal(x, y) for x, y in zip(a.epoch(epoch, start), b.epoch(epoch, start), strict=True))
        assert torch.equal(a.sample(9), b.sample(9))
    seen = [{x.numpy().tobytes() for batch in b.epoch(1) for x in batch} for b in mmap]
    assert not seen[0] & seen[1]  # each rank reads its own shard
    sub = Batches(as_prepared(c, tmp_path / "out", subset=40), 8, 0, torch.device("cpu"))
    assert sub.num_images == 40 and sub.steps_per_epoch == 5


def test_prepared_source_keys_caches_and_reads_in_memory(folder, tmp_path):
    c = data_cfg(folder, tmp_path)
    prep.prepare(c, tmp_path / "out", workers=0, progress=False)
    pc = as_prepared(c, tmp_path / "out")
    fp = data_fingerprint(pc, "train")
    assert len(fp) == 16 and fp != data_fingerprint(c, "train")
    assert torch.equal(load_images(pc, "test").images, load_images(pc).images)  # a folder has no splits
    (tmp_path / "out" / "images.npy").touch()  # the arrays' stat is part of the key
    assert data_fingerprint(pc, "train") != fp
    src = build_source(pc)
    assert len(src) == N_FOLDER and torch.equal(src[5][0], load_images(c).images[5]) and src[5][1] == -1
    always = Batches(as_prepared(c, tmp_path / "out", in_memory="always"), 16, 0, torch.device("cpu"))
    assert always.memory is not None and always.mapped is None


def test_the_mapped_array_is_advised_random_access(folder, tmp_path, monkeypatch):
    """Training gathers shuffled rows: the map is opened with MADV_RANDOM (no read-ahead around each
    fault), on both mapping modes; it reads the same bytes, and a platform without madvise is fine."""
    import mmap

    from dcgan import prepared

    c = data_cfg(folder, tmp_path)
    prep.prepare(c, tmp_path / "out", workers=0, progress=False)
    advised = []
    real = prepared.advise_random
    monkeypatch.setattr(prepared, "advise_random", lambda a: advised.append(real(a)) or advised[-1])
    for mode in ("r", "c"):
        opened = prepared.open_prepared(as_prepared(c, tmp_path / "out"), mode=mode)
        assert np.array_equal(opened.images[:5], np.load(tmp_path / "out" / "images.npy")[:5])
    assert advised == [hasattr(mmap, "MADV_RANDOM")] * 2
    monkeypatch.delattr(mmap, "MADV_RANDOM", raising=False)
    assert real(np.load(tmp_path / "out" / "images.npy", mmap_mode="r")) is False
    assert real(np.zeros(3)) is False  # not a map


def test_lsun_lmdb_of_two_categories_prepares_with_labels(tmp_path, monkeypatch):
    lmdb = pytest.importorskip("lmdb")
    monkeypatch.chdir(tmp_path)  # torchvision's LSUN writes its key cache into the working directory
    root = tmp_path / "lsun"
    root.mkdir()
    for cls, n in (("bedroom_train", 120), ("church_outdoor_train", 80)):
        env = lmdb.open(str(root / f"{cls}_lmdb"), map_size=2**25)
        with env.begin(write=True) as txn:
            for i in range(n):
                buf = io.BytesIO()
                Image.fromarray(RNG.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(buf, format="webp")
                txn.put(f"{i:05d}".encode(), buf.getvalue())
            txn.put(b"zz-broken", b"not an image")
        env.close()
    c = data_cfg(root, tmp_path, name="lsun", lsun_classes=["bedroom_train", "church_outdoor_train"])
    m = prep.prepare(c, tmp_path / "out", workers=2, progress=False)
    assert m["count"] == 200 and m["skipped"] == 2 and m["labels"] is True
    assert m["fingerprint"] == npy_sha256(tmp_path / "out" / "images.npy", tmp_path / "out" / "labels.npy")
    data = load_images(as_prepared(c, tmp_path / "out"))
    assert data.images.shape == (200, 3, 16, 16) and data.labels.tolist() == [0] * 120 + [1] * 80
    reference = load_images(c)  # the in-memory decoding of the same lmdb
    assert torch.equal(data.images, reference.images)


def test_per_split_folders_with_labels_for_evaluation(synthetic_root, tmp_path):
    """A dataset with splits: one prepared folder per split under one data.root; labels kept."""
    c = data_cfg(synthetic_root, tmp_path, name="fashion_mnist", channels=1)
    for split in ("train", "test"):
        prep.prepare(dataclasses.replace(c, split=split), tmp_path / "p" / split, workers=0, progress=False)
    pc = as_prepared(c, tmp_path / "p")
    for split in ("train", "test"):
        want, got = load_images(c, split), load_images(pc, split)
        assert torch.equal(got.images, want.images) and torch.equal(got.labels, want.labels)
    with pytest.raises(DataError, match=r"holds prepared splits test, train but not 'extra'.*data.split=extra"):
        load_images(pc, "extra")
    with pytest.raises(DataError, match=r"holds fashion_mnist \(train\), not the 'test' split"):
        load_images(as_prepared(c, tmp_path / "p" / "train"), "test")


def test_two_prepared_datasets_with_labels_get_their_own_classifier(synthetic_root, tmp_path):
    """The classifier cache is keyed by content for prepared data: a name shared by every prepared
    dataset must not make one dataset's fd_clf use a classifier trained on another."""
    from dcgan.metrics.classifier import classifier_path

    paths = []
    for n in (200, 300):
        c = data_cfg(synthetic_root, tmp_path, name="fashion_mnist", channels=1, subset=n)
        prep.prepare(c, tmp_path / f"p{n}" / "train", workers=0, progress=False)
        paths.append(classifier_path(as_prepared(c, tmp_path / f"p{n}", subset=0)))  # same settings, other images
    assert paths[0] != paths[1] and paths[0].parent == paths[1].parent
    c = data_cfg(synthetic_root, tmp_path, name="fashion_mnist", channels=1)
    assert paths[0] == classifier_path(as_prepared(c, tmp_path / "p200", subset=0))  # stable for the same data


def test_training_from_a_prepared_folder_equals_training_from_the_folder(folder, tmp_path):
    from dcgan.train import train

    c = data_cfg(folder, tmp_path, in_memory="always")
    prep.prepare(c, tmp_path / "out", workers=0, progress=False)
    weights = []
    for name, data in (("f", dataclasses.asdict(c)), ("p", dataclasses.asdict(as_prepared(c, tmp_path / "out")))):
        cfg = from_dict({"name": name, "data": data, "model": {"ngf": 8, "ndf": 8, "nz": 16},
                         "train": {"batch_size": 16, "max_steps": 4, "log_every": 2, "sample_every": 4,
                                   "checkpoint_every": 4, "progress": False, "device": "cpu", "seed": 3,
                                   "precision": "fp32"}})
        result = train(cfg, run_dir=tmp_path / f"run-{name}")
        weights.append(torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)["G"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# --- killed, rerun, refused ----------------------------------------------------------------------


def _prepare_cli(config: Path, out: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DCGAN_TEST_")}
    environ.update(OMP_NUM_THREADS="1", **env)
    entry = str(Path(__file__).with_name("fault_entry.py"))  # `dcgan` with the test's fault hook, if any
    return subprocess.run([sys.executable, entry, "prepare", "--config", str(config), "--out", str(out),
                           "--workers", "0", "--no-progress"], env=environ, capture_output=True, text=True,
                          timeout=300)


def test_killed_prepare_reads_as_unfinished_and_the_rerun_completes(folder, tmp_path):
    """SIGKILL after the second chunk's rows are written but before its progress record: the
    folder is not a dataset; the same command continues from the first chunk's record and ends
    with the arrays a straight prepare writes."""
    c = data_cfg(folder, tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": dataclasses.asdict(c)}))
    out = tmp_path / "out"
    killed = _prepare_cli(config, out, DCGAN_TEST_HOOK="prepare-chunk:kill:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (out / "dataset.json").exists()
    assert json.loads((out / ".progress.json").read_text())["next"] == prep.CHUNK
    with pytest.raises(DataError, match="unfinished prepare .* run the same `dcgan prepare` command again"):
        Batches(as_prepared(c, out), 16, 0, torch.device("cpu"))

    rerun = _prepare_cli(config, out)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"continuing the unfinished prepare in {out} at image {prep.CHUNK} of {N_FOLDER + N_BAD}" in rerun.stderr
    assert sorted(os.listdir(out)) == ["dataset.json", "images.npy"]
    m = json.loads((out / "dataset.json").read_text())
    assert m["count"] == N_FOLDER and m["skipped"] == N_BAD
    assert m["command"] == f"dcgan prepare --config {config} --out {out} --workers 0 --no-progress"
    straight = prep.prepare(c, tmp_path / "straight", workers=0, progress=False)
    assert m["fingerprint"] == straight["fingerprint"]
    again = _prepare_cli(config, out)  # complete and of the same source: nothing to do
    assert again.returncode == 0 and "nothing to do" in again.stderr


def _one_line_error(capsys, argv: list[str], *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()} if path.exists() else {}


def test_bad_inputs_to_prepare_are_one_line_and_write_nothing(folder, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": dataclasses.asdict(data_cfg(folder, tmp_path))}))
    base = ["prepare", "--config", str(config), "--workers", "0", "--no-progress"]
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, base + ["--set", f"data.root={tmp_path / 'empty'}", "--out", str(tmp_path / "o1")],
                    "no image files")
    assert not (tmp_path / "o1").exists()
    (tmp_path / "afile").write_text("keep")
    _one_line_error(capsys, base + ["--out", str(tmp_path / "afile")], "is a file", "absent or empty")
    assert (tmp_path / "afile").read_text() == "keep"
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep")
    _one_line_error(capsys, base + ["--out", str(tmp_path / "busy")], "holds other files (notes.txt)")
    assert os.listdir(tmp_path / "busy") == ["notes.txt"]
    _one_line_error(capsys, base + ["--set", "data.name=prepared", "--out", str(tmp_path / "o2")],
                    "already prepared")
    assert main(base + ["--out", str(tmp_path / "done")]) == 0
    capsys.readouterr()
    before = _snapshot(tmp_path / "done")
    _one_line_error(capsys, base + ["--set", "data.image_size=32", "--out", str(tmp_path / "done")],
                    "already holds a prepared dataset", "pass another --out")
    assert _snapshot(tmp_path / "done") == before
    assert main(["prepare", "--out", str(tmp_path / "done"), "--verify"]) == 0  # every byte against dataset.json
    assert "the arrays match dataset.json" in capsys.readouterr().out
    with open(tmp_path / "done" / "images.npy", "r+b") as f:  # one flipped byte, as a bad copy would have
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    _one_line_error(capsys, ["prepare", "--out", str(tmp_path / "done"), "--verify"],
                    "do not match the fingerprint in dataset.json")


def _break_count(d: Path) -> None:
    m = json.loads((d / "dataset.json").read_text())
    m["count"] += 1
    (d / "dataset.json").write_text(json.dumps(m))


def _truncate(d: Path) -> None:
    with open(d / "images.npy", "r+b") as f:
        f.truncate(os.path.getsize(d / "images.npy") - 100)


@pytest.mark.parametrize("damage, needles", [
    (_truncate, ("images.npy", "is truncated", "prepare it again")),
    (_break_count, ("holds uint8 (300, 3, 16, 16) but dataset.json says uint8 (301, 3, 16, 16)", "prepare it again")),
    (lambda d: (d / "dataset.json").write_text("{"), ("dataset.json", "cannot be read", "prepare it again")),
    (lambda d: (d / "dataset.json").unlink(), ("unfinished prepare", "run the same `dcgan prepare` command again")),
    (lambda d: (d / "images.npy").unlink(), ("images.npy", "is missing")),
])
def test_damaged_prepared_folder_is_one_line_at_train_start(folder, tmp_path, capsys, damage, needles):
    c = data_cfg(folder, tmp_path)
    d = tmp_path / "out"
    prep.prepare(c, d, workers=0, progress=False)
    damage(d)
    before = _snapshot(d)
    run = ["train", "--run-dir", str(tmp_path / "run"), "--set", "data.name=prepared", "--set", f"data.root={d}",
           "--set", "data.image_size=16", "--set", "model.ngf=8", "--set", "model.ndf=8",
           "--set", "train.device=cpu", "--set", "train.max_steps=2"]
    _one_line_error(capsys, run, *needles)
    assert _snapshot(d) == before and not (tmp_path / "run").exists()


def test_settings_or_root_that_do_not_fit_are_one_line(folder, tmp_path, capsys):
    c = data_cfg(folder, tmp_path)
    d = tmp_path / "out"
    prep.prepare(c, d, workers=0, progress=False)
    run = ["train", "--run-dir", str(tmp_path / "run"), "--set", "data.name=prepared", "--set", "train.device=cpu",
           "--set", "model.ngf=8", "--set", "model.ndf=8"]
    _one_line_error(capsys, run + ["--set", f"data.root={d}", "--set", "data.image_size=32"],
                    "prepared at 16 px with 3 channel(s)", "data.image_size=16 data.channels=3")
    _one_line_error(capsys, run + ["--set", f"data.root={d / 'images.npy'}", "--set", "data.image_size=16"],
                    "is a file, not a folder written by `dcgan prepare`")
    _one_line_error(capsys, run + ["--set", f"data.root={tmp_path / 'nowhere'}", "--set", "data.image_size=16"],
                    "does not exist", "dcgan prepare")
    assert not (tmp_path / "run").exists()


# --- a large folder without preparing: no file opened before the first step ---------------------


def test_large_folder_is_listed_not_opened_at_start(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="dcgan.data")
    folder = write_folder(tmp_path / "imgs", 12, bad=2)
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: (opened.append(a[0]), real_open(*a, **k))[1])
    monkeypatch.setattr("dcgan.data.IN_MEMORY_LIMIT_BYTES", 10 * 3 * 16 * 16)  # "too big" beyond 10 images
    b = Batches(data_cfg(folder, tmp_path), 4, 0, torch.device("cpu"))
    assert b.loader is not None and opened == []  # listed only
    assert "14 files, checked as they are read" in caplog.text
    batches = list(b.epoch(0))
    assert [x.shape[0] for x in batches] == [4, 4, 4]  # bad files skipped where met, batches keep their size
    assert "skipping unreadable image" in caplog.text and "skipped so far" in caplog.text
    small = build_source(data_cfg(folder, tmp_path, in_memory="always"))  # the in-memory cache: checked up front
    assert isinstance(small, ImageFiles) and small.checked and small.num_skipped == 2


# --- several processes ---------------------------------------------------------------------------


@pytest.mark.slow
def test_torchrun_two_ranks_on_a_prepared_dataset_resume_exactly(folder, tmp_path):
    """2 Gloo ranks on CPU train from the memory map; rank 1 is killed at step 4 and torchrun's
    restart resumes from the step-3 checkpoint: weights and the images each rank saw after the
    restart are those of an uninterrupted 2-rank run, and the ranks' images are disjoint."""
    steps, batch = 6, 16
    c = data_cfg(folder, tmp_path)
    prep.prepare(c, tmp_path / "prepared", workers=0, progress=False)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny", "data": dataclasses.asdict(as_prepared(c, tmp_path / "prepared")),
        "model": {"ngf": 8, "ndf": 8, "nz": 16},
        "train": {"batch_size": batch, "max_steps": steps, "log_every": 2, "sample_every": 3, "checkpoint_every": 3,
                  "progress": False, "device": "cpu", "precision": "fp32"}}))
    dumps = {}
    for name, extra in (("straight", {}), ("killed", {"DCGAN_TEST_KILL_RANK_AT_STEP": "1:4"})):
        dumps[name] = tmp_path / f"dump-{name}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--max-restarts", "1", str(Path(__file__).with_name("fault_entry.py")), "train", "--config", str(config),
               "--run-dir", str(tmp_path / f"run-{name}")]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DCGAN_TEST_", "TORCHELASTIC_"))
               and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
        env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", DCGAN_TEST_DUMP_DIR=str(dumps[name]),
                   DCGAN_DIST_TIMEOUT="60", **extra)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torchrun restart 1: continuing" in proc.stderr
    straight, killed = ({r: json.loads((dumps[n] / f"rank{r}.json").read_text()) for r in (0, 1)}
                        for n in ("straight", "killed"))
    for r in (0, 1):
        assert killed[r]["step"] == straight[r]["step"] == steps
        assert killed[r]["checksums"]["G_params"] == straight[r]["checksums"]["G_params"]
        assert killed[r]["checksums"]["D_params"] == straight[r]["checksums"]["D_params"]
        assert killed[r]["seen"] == straight[r]["seen"][3 * batch:]  # the restart read the same rows
    assert straight[0]["checksums"]["G"] == killed[0]["checksums"]["G"]  # BN statistics too (rank 0's are saved)
    assert not set(straight[0]["seen"]) & set(straight[1]["seen"])
