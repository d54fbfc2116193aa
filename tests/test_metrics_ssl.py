"""The self-supervised evaluation encoder (metrics/ssl.py) and the *_ssl scores: no labels, no download.

Small synthetic RGB folders (shapes of a few kinds at random places and colours) and a few
dozen encoder steps, so every test here takes seconds on a CPU.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_metrics_eval import evil_pickle

from dcgan.cli import main
from dcgan.config import from_dict
from dcgan.data import load_images
from dcgan.metrics import registry
from dcgan.metrics.evaluator import Evaluator
from dcgan.metrics.ssl import augment, encoder_path, get_encoder, nt_xent
from dcgan.runlog import read_metrics

STEPS = 20  # encoder steps in these tests (the default is 1000)


def write_shapes(folder: Path, n: int, size: int = 16, seed: int = 0) -> Path:
    """n RGB images: a filled square or a disc of a random colour at a random place on a dark background."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        img = rng.integers(0, 40, (size, size, 3)).astype(np.float64)
        cy, cx, r = rng.uniform(size * 0.3, size * 0.7, 2).tolist() + [rng.uniform(size * 0.15, size * 0.3)]
        mask = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r) if i % 2 else (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img[mask] = rng.integers(120, 256, 3)
        Image.fromarray(img.clip(0, 255).astype(np.uint8), mode="RGB").save(folder / f"{i:04d}.png")
    return folder


def folder_config(folder: Path, cache: Path, **eval_section):
    return from_dict({"name": "shapes",
                      "data": {"name": "folder", "root": str(folder), "image_size": 16, "channels": 3,
                               "cache_dir": str(cache)},
                      "eval": {"ssl_steps": STEPS, **eval_section}})


@pytest.fixture
def shapes(tmp_path):
    return folder_config(write_shapes(tmp_path / "shapes", 200), tmp_path / "cache")


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open an internet connection fails the test (local sockets, e.g. the data
    loader's workers, are left alone)."""
    connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"a network connection to {address!r} was attempted")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def test_the_default_metrics_are_chosen_by_labels_in_one_place():
    for name in ("folder", "celeba", "lsun"):
        cfg = from_dict({"data": {"name": name}, "eval": {"every": 10}})
        assert cfg.eval.metrics == list(registry.default_metrics(name, training=True)) == ["fd_ssl", "pr_ssl"]
        assert cfg.eval.best == "fd_ssl"
        assert registry.default_metrics(name) == ("fd_ssl", "kid_ssl", "pr_ssl")  # dcgan eval's
    for name in registry.LABELLED:
        cfg = from_dict({"data": {"name": name}, "eval": {"every": 10}})
        assert cfg.eval.metrics == ["fd_clf", "coverage", "is_clf"] and cfg.eval.best == "fd_clf"
    # Named metrics are kept; eval.best left at auto follows them.
    cfg = from_dict({"data": {"name": "folder"}, "eval": {"every": 10, "metrics": ["fid"]}})
    assert cfg.eval.metrics == ["fid"] and cfg.eval.best == "fid"
    cfg = from_dict({"data": {"name": "folder"}, "eval": {"every": 10, "metrics": ["pr_ssl", "fd_ssl"],
                                                         "best": "fd_ssl"}})
    assert cfg.eval.best == "fd_ssl"
    # The resolved config round-trips (a resumed run's saved config.yaml holds names, not auto).
    assert from_dict(cfg.to_dict()).eval == cfg.eval


def test_augment_draws_per_image_views_and_nt_xent_prefers_partners():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 16, 16).repeat(8, 1, 1, 1) * 2 - 1  # one image, 8 times
    views = augment(x, g)
    assert views.shape == x.shape and views.min() >= -1 and views.max() <= 1
    assert len({v.sum().item() for v in views}) == 8  # each copy got its own crop/flip/jitter
    assert augment(torch.zeros(4, 1, 32, 32), g).shape == (4, 1, 32, 32)  # grayscale too
    z = torch.randn(16, 8)
    assert nt_xent(z, z + 0.01 * torch.randn(16, 8)) < nt_xent(z, torch.randn(16, 8))


def test_encoder_trains_once_and_is_cached_by_content(shapes, caplog):
    caplog.set_level(logging.INFO, logger="dcgan.metrics.ssl")
    enc = get_encoder(shapes.data, steps=STEPS)
    path = encoder_path(shapes.data, steps=STEPS)
    assert enc.path == path and path.is_file() and "training the self-supervised" in caplog.text
    assert enc.info["steps"] == STEPS and np.isfinite(enc.info["final_loss"])
    caplog.clear()
    again = get_encoder(shapes.data, steps=STEPS)
    assert again.digest == enc.digest and "training" not in caplog.text  # loaded, not trained
    feats = again(load_images(shapes.data).images[:10])["features"]
    assert feats.shape == (10, 128) and np.isfinite(feats).all()
    # Another image in the folder is other data: another key, trained again.
    write_shapes(Path(shapes.data.root), 1, seed=5)
    (Path(shapes.data.root) / "0000.png").rename(Path(shapes.data.root) / "extra.png")
    assert encoder_path(shapes.data, steps=STEPS) != path


def test_hostile_cached_encoder_is_trained_again_not_unpickled(shapes, tmp_path, caplog):
    path = encoder_path(shapes.data, steps=STEPS)
    path.parent.mkdir(parents=True, exist_ok=True)
    marker = tmp_path / "pwned"
    evil_pickle(path, marker)
    caplog.set_level(logging.WARNING)
    enc = get_encoder(shapes.data, steps=STEPS)
    assert "is unreadable; training it again" in caplog.text and not marker.exists()
    assert enc.path == path and torch.load(path, weights_only=True)["info"]["steps"] == STEPS


@pytest.mark.parametrize("blob", [torch.zeros(3, 7), "hello", {"weights": torch.zeros(2)}], ids=["tensor", "string", "dict"])
def test_a_file_that_is_not_an_encoder_is_a_one_line_error(tmp_path, blob, recwarn):
    from dcgan.errors import DCGANError
    from dcgan.metrics.ssl import load_encoder

    path = tmp_path / "encoder.pt"
    torch.save(blob, path)
    with pytest.raises(DCGANError, match="is not an ssl encoder written by this version"):
        load_encoder(path)
    assert not [w for w in recwarn if "indexing" in str(w.message)]  # no lookup into a tensor on the way

def test_identical_sets_score_zero_and_noise_far(shapes):
    ev = Evaluator(["fd_ssl", "kid_ssl", "pr_ssl"], shapes.data, split="test", ssl_steps=STEPS)
    real = load_images(shapes.data, "test").images
    same = ev.score_images(real)
    assert abs(same["fd_ssl"]) < 1e-3 and abs(same["kid_ssl"]) < 0.05
    assert same["precision_ssl"] == 1.0 and same["recall_ssl"] == 1.0
    assert same["features"].startswith("ssl-folder-train-16px-3ch-seed0-s20-")
    noise = torch.randint(0, 256, real.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    far = ev.score_images(noise)
    assert far["fd_ssl"] > 100 * max(same["fd_ssl"], 1e-3) and far["precision_ssl"] < 0.5


def test_folder_run_gets_fd_ssl_and_best_offline(tmp_path, capsys, offline):
    """A label-free folder (300 RGB images, 16 px) trained through `dcgan train` with eval.every set
    and the metrics left at their default: fd_ssl scores, best.pt keyed on fd_ssl, scores.png, and
    `dcgan eval` / `dcgan nn` on the run: all without a download."""
    folder = write_shapes(tmp_path / "faces", 300)
    run = tmp_path / "run"
    args = ["train", "--set", "data.name=folder", "--set", f"data.root={folder}", "--set", "data.image_size=16",
            "--set", "data.channels=3", "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "model.ngf=8",
            "--set", "model.ndf=8", "--set", "train.batch_size=32", "--set", "train.max_steps=6",
            "--set", "train.checkpoint_every=0", "--set", "train.progress=false", "--set", "train.device=cpu",
            "--set", "eval.every=2", "--set", "eval.num_samples=60", "--set", f"eval.ssl_steps={STEPS}",
            "--run-dir", str(run)]
    assert main(args) == 0
    evals = read_metrics(run / "metrics.jsonl", "eval")
    assert [e["step"] for e in evals] == [2, 4, 6]
    assert all(np.isfinite(e["fd_ssl"]) and "precision_ssl" in e and e["features"].startswith("ssl-") for e in evals)
    best = min(evals, key=lambda e: e["fd_ssl"])
    ck = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert ck["step"] == best["step"] and ck["best"]["fd_ssl"] == pytest.approx(best["fd_ssl"])
    assert ck["config"]["eval"]["best"] == "fd_ssl" and (run / "scores.png").is_file()
    capsys.readouterr()

    assert main(["eval", "--checkpoint", str(run), "--num", "60", "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"fd_ssl", "kid_ssl", "precision_ssl", "recall_ssl"} <= set(out) and "fid" not in out
    assert out["features"] == evals[-1]["features"]  # the run's encoder (its eval.ssl_steps), from the cache

    assert main(["nn", "--checkpoint", str(run), "--out", str(tmp_path / "nn.png"), "--num", "40",
                 "--device", "cpu"]) == 0
    assert "feature" in capsys.readouterr().out and (tmp_path / "nn.png").is_file()


@pytest.mark.slow
def test_done_when_3000_images_64px(tmp_path, offline):
    """The issue's done-when at full size: 3,000 RGB images at 64 px, the default encoder budget."""
    folder = write_shapes(tmp_path / "imgs", 3000, size=64)
    run = tmp_path / "run"
    assert main(["train", "--set", "data.name=folder", "--set", f"data.root={folder}", "--set", "data.image_size=64",
                 "--set", "data.channels=3", "--set", f"data.cache_dir={tmp_path / 'cache'}",
                 "--set", "train.max_steps=40", "--set", "train.batch_size=64", "--set", "train.progress=false",
                 "--set", "train.device=cpu", "--set", "eval.every=20", "--set", "eval.num_samples=1000",
                 "--run-dir", str(run)]) == 0
    evals = read_metrics(run / "metrics.jsonl", "eval")
    assert [e["step"] for e in evals] == [20, 40] and all(np.isfinite(e["fd_ssl"]) for e in evals)
    assert (run / "checkpoints" / "best.pt").is_file()
