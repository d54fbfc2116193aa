"""Datasets read through their real loaders from small files written in their real formats."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from dcgan.config import DataConfig
from dcgan.data import (
    Batches,
    build_source,
    cache_path,
    epoch_permutation,
    load_images,
)
from dcgan.errors import DataError
from dcgan.pixels import to_model_range, to_uint8

RNG = np.random.default_rng(0)


def cfg(root, tmp_path, **kw) -> DataConfig:
    base = dict(root=str(root), image_size=16, channels=3, download=False, cache_dir=str(tmp_path / "cache"))
    base.update(kw)
    return DataConfig(**base)


# --- writers for the real formats --------------------------------------------------------------


def write_cifar(root: Path, n: int, hundred: bool = False) -> None:
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    label_key = "fine_labels" if hundred else "labels"

    def batch(m):
        return {"data": RNG.integers(0, 256, (m, 3072), dtype=np.uint8),
                label_key: RNG.integers(0, 10, m).tolist()}

    files = ["train", "test"] if hundred else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for f in files:
        with open(folder / f, "wb") as fh:
            pickle.dump(batch(n), fh)
    meta = {"fine_label_names": [str(i) for i in range(100)]} if hundred else {"label_names": [str(i) for i in range(10)]}
    with open(folder / ("meta" if hundred else "batches.meta"), "wb") as fh:
        pickle.dump(meta, fh)


def write_idx(root: Path, folder: str, n: int) -> np.ndarray:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = RNG.integers(0, 10, n, dtype=np.uint8)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
    return images


def write_folder(root: Path, n: int, corrupt: int = 0) -> None:
    (root / "a" / "b").mkdir(parents=True)
    for i in range(n):
        arr = RNG.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)  # odd sizes: resize + crop
        Image.fromarray(arr).save(root / ("a" if i % 2 else "a/b") / f"img{i}.{'png' if i % 3 else 'jpg'}")
    for i in range(corrupt):
        (root / f"broken{i}.jpg").write_bytes(b"not an image at all")
    (root / "notes.txt").write_text("ignored")


# --- tests -------------------------------------------------------------------------------------


def test_cifar10_and_cifar100_pickles(tmp_path, monkeypatch):
    # torchvision checks the md5 of the real release files; ours are small stand-ins.
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    write_cifar(tmp_path / "d", 6)
    data = load_images(cfg(tmp_path / "d", tmp_path, name="cifar10"), "train")
    assert data.images.shape == (30, 3, 16, 16) and data.images.dtype == torch.uint8
    assert data.labels.shape == (30,)
    test = load_images(cfg(tmp_path / "d", tmp_path, name="cifar10", channels=1), "test")
    assert test.images.shape == (6, 1, 16, 16)
    write_cifar(tmp_path / "h", 4, hundred=True)
    data = load_images(cfg(tmp_path / "h", tmp_path, name="cifar100", image_size=32), "train")
    assert data.images.shape == (4, 3, 32, 32)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_files(tmp_path, name, folder):
    raw = write_idx(tmp_path / "d", folder, 7)
    data = load_images(cfg(tmp_path / "d", tmp_path, name=name, image_size=32, channels=1), "train")
    assert data.images.shape == (7, 1, 32, 32)
    # 28 -> 32 resize keeps the picture: compare with a plain resize of the raw pixels.
    ref = torch.nn.functional.interpolate(torch.from_numpy(raw[:1]).float()[None], size=32, mode="bilinear")
    assert torch.corrcoef(torch.stack([data.images[0, 0].float().flatten(), ref.flatten()]))[0, 1] > 0.6


def test_svhn_mat(tmp_path, monkeypatch):
    from scipy.io import savemat

    monkeypatch.setattr(datasets.SVHN, "_check_integrity", lambda self: True)
    root = tmp_path / "svhn"
    root.mkdir()
    savemat(root / "test_32x32.mat", {"X": RNG.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8),
                                      "y": np.array([[1], [2], [10], [4], [5]], dtype=np.uint8)})
    data = load_images(cfg(root, tmp_path, name="svhn", image_size=32), "test")
    assert data.images.shape == (5, 3, 32, 32)
    assert data.labels.tolist() == [1, 2, 0, 4, 5]  # torchvision maps label 10 to digit 0


def test_celeba_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.CelebA, "_check_integrity", lambda self: True)
    base = tmp_path / "d" / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 6)]
    for n in names:
        Image.fromarray(RNG.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(base / "img_align_celeba" / n)
    (base / "list_eval_partition.txt").write_text("".join(f"{n} {0 if i < 3 else 2}\n" for i, n in enumerate(names)))
    (base / "identity_CelebA.txt").write_text("".join(f"{n} 1\n" for n in names))
    (base / "list_bbox_celeba.txt").write_text("5\nimage_id x_1 y_1 width height\n"
                                              + "".join(f"{n} 1 2 3 4\n" for n in names))
    (base / "list_landmarks_align_celeba.txt").write_text("5\nlefteye_x lefteye_y\n" + "".join(f"{n} 1 2\n" for n in names))
    (base / "list_attr_celeba.txt").write_text("5\nSmiling Male\n" + "".join(f"{n} 1 -1\n" for n in names))
    data = load_images(cfg(tmp_path / "d", tmp_path, name="celeba", image_size=64), "train")
    assert data.images.shape == (3, 3, 64, 64)


def test_lsun_lmdb(tmp_path, monkeypatch):
    lmdb = pytest.importorskip("lmdb")
    monkeypatch.chdir(tmp_path)  # torchvision's LSUN writes a key cache into the working directory
    root = tmp_path / "lsun"
    root.mkdir()
    env = lmdb.open(str(root / "bedroom_train_lmdb"), map_size=2**24)
    with env.begin(write=True) as txn:
        for i in range(4):
            buf = io.BytesIO()
            Image.fromarray(RNG.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(buf, format="webp")
            txn.put(f"key{i}".encode(), buf.getvalue())
    env.close()
    data = load_images(cfg(root, tmp_path, name="lsun", image_size=32), "train")
    assert data.images.shape == (4, 3, 32, 32)


def test_folder_skips_unreadable_files(tmp_path, caplog):
    write_folder(tmp_path / "imgs", 6, corrupt=2)
    source = build_source(cfg(tmp_path / "imgs", tmp_path, name="folder"))
    assert len(source) == 6 and source.num_skipped == 2
    assert "skipped 2 unreadable of 8" in caplog.text
    data = load_images(cfg(tmp_path / "imgs", tmp_path, name="folder", channels=1, image_size=32))
    assert data.images.shape == (6, 1, 32, 32) and data.labels is None


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "no image files"),
    (lambda p: (p.mkdir(), (p / "x.png").write_bytes(b"junk")), "none of the 1 image files"),
])
def test_folder_errors(tmp_path, setup, message):
    setup(tmp_path / "imgs")
    with pytest.raises(DataError, match=message):
        build_source(cfg(tmp_path / "imgs", tmp_path, name="folder"))


def test_missing_dataset_says_where_and_how(tmp_path):
    with pytest.raises(DataError, match=r"cifar10 \(train\) not found under .* download is off .*data.download=true"):
        build_source(cfg(tmp_path / "empty", tmp_path, name="cifar10"))
    with pytest.raises(DataError, match="does not exist for mnist; use one of train, test"):
        build_source(cfg(tmp_path, tmp_path, name="mnist", split="extra"))


def test_fashion_mnist_from_debian_package(fmnist_root, cache_dir):
    c = DataConfig(name="fashion_mnist", root=str(fmnist_root), image_size=32, channels=1,
                   download=False, cache_dir=str(cache_dir))
    train, test = load_images(c, "train"), load_images(c, "test")
    assert train.images.shape == (60000, 1, 32, 32) and test.images.shape == (10000, 1, 32, 32)
    assert sorted(train.labels.unique().tolist()) == list(range(10))
    assert cache_path(c, "train").is_file()  # decoded once, cached on disk
    assert 60 < train.images.float().mean() < 90  # Fashion-MNIST's mean pixel is ~73


def test_cache_is_reused_and_subset_applies_after(tmp_path, monkeypatch):
    write_folder(tmp_path / "imgs", 5)
    c = cfg(tmp_path / "imgs", tmp_path, name="folder")
    first = load_images(c)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr("dcgan.data.build_source", no_decoding)  # the cache must not need decoding again
    again = load_images(DataConfig(**{**c.__dict__, "subset": 2}))
    assert torch.equal(again.images, first.images[:2])
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1  # subsets share the one file


def test_batches_in_memory_and_streamed_agree(tmp_path):
    write_folder(tmp_path / "imgs", 10)
    mem = Batches(cfg(tmp_path / "imgs", tmp_path, name="folder", in_memory="always"), 4, seed=3,
                  device=torch.device("cpu"))
    streamed = Batches(cfg(tmp_path / "imgs", tmp_path, name="folder", in_memory="never", num_workers=0), 4,
                       seed=3, device=torch.device("cpu"))
    assert mem.memory is not None and streamed.loader is not None
    assert mem.steps_per_epoch == streamed.steps_per_epoch == 2  # the incomplete batch is dropped
    for a, b in zip(mem.epoch(1), streamed.epoch(1), strict=True):
        assert torch.equal(a, b)
    # Resume mid-epoch: skipping one batch gives the second.
    assert torch.equal(next(mem.epoch(1, start_batch=1)), list(mem.epoch(1))[1])
    # Each epoch has its own order, a pure function of (seed, epoch).
    assert not torch.equal(epoch_permutation(10, 3, 0), epoch_permutation(10, 3, 1))
    assert torch.equal(epoch_permutation(10, 3, 1), epoch_permutation(10, 3, 1))


def test_ranks_see_disjoint_data(tmp_path):
    write_folder(tmp_path / "imgs", 12)
    c = cfg(tmp_path / "imgs", tmp_path, name="folder", in_memory="always")
    seen = [torch.cat(list(Batches(c, 2, 0, torch.device("cpu"), rank=r, world=2).epoch(0))) for r in (0, 1)]
    flat = [{tuple(x.flatten().tolist()) for x in s} for s in seen]
    assert len(flat[0]) == len(flat[1]) == 6 and not flat[0] & flat[1]


def test_too_few_images_for_a_batch(tmp_path):
    write_folder(tmp_path / "imgs", 3)
    with pytest.raises(DataError, match="fewer than one batch of 8"):
        Batches(cfg(tmp_path / "imgs", tmp_path, name="folder"), 8, 0, torch.device("cpu"))


def test_pixel_range_round_trip():
    u8 = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    x = to_model_range(u8)
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(to_uint8(x), u8)
