"""Shared fixtures: a small synthetic image set in Fashion-MNIST's real idx format, tiny configs.

Training, resume and CLI tests run on `synthetic_root` (made here, in seconds, no download and
no system package). Tests that need the real Fashion-MNIST use `fmnist_root`, which skips with
the reason when Debian's `dataset-fashion-mnist` is not installed.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from dcgan.config import Config, from_dict
from dcgan.data import DEBIAN_FASHION_MNIST

SYNTHETIC_TRAIN, SYNTHETIC_TEST = 640, 320


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images of 10 classes: class k is a bright bar at a class-dependent place
    and angle over dim noise, so a classifier can tell the classes apart."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    yy, xx = np.mgrid[0:28, 0:28]
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.float64)
    for i, k in enumerate(labels):
        centre = 6 + 2 * k + rng.normal(0, 0.7)
        if k % 2:
            bar = np.abs(xx - centre) < 3
        else:
            bar = np.abs(yy - centre) < 3
        images[i][bar] += 180 + rng.normal(0, 15)
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_fashion_mnist_idx(root: Path, n_train: int = SYNTHETIC_TRAIN, n_test: int = SYNTHETIC_TEST) -> Path:
    """Write train and test splits as uncompressed idx files in torchvision's FashionMNIST layout."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = synthetic_images(n, seed)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A data root holding a small synthetic Fashion-MNIST (640 train / 320 test images)."""
    return write_fashion_mnist_idx(tmp_path_factory.mktemp("synthetic-data"))


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory) -> Path:
    """A data root where the real Fashion-MNIST is found without a download (unpacked from Debian's files)."""
    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("real Fashion-MNIST needs `apt-get install dataset-fashion-mnist` (make test does it)")
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def tiny_config(root: Path, cache: Path, **sections) -> Config:
    """A small, fast config on the data under `root`; `sections` override by section, e.g. train={...}."""
    base = {
        "name": "tiny",
        "data": {"name": "fashion_mnist", "root": str(root), "image_size": 16, "channels": 1,
                 "download": False, "subset": 512, "cache_dir": str(cache)},
        "model": {"ngf": 8, "ndf": 8},
        "train": {"batch_size": 32, "max_steps": 8, "log_every": 2, "sample_every": 4,
                  "checkpoint_every": 4, "num_fixed": 16, "progress": False, "seed": 1, "device": "cpu"},
    }
    for key, values in sections.items():
        base.setdefault(key, {}).update(values)
    return from_dict(base)


@pytest.fixture
def tiny_cfg(synthetic_root, cache_dir):
    """A tiny config on the synthetic data (no system package needed)."""
    return lambda **sections: tiny_config(synthetic_root, cache_dir, **sections)


@pytest.fixture
def real_tiny_cfg(fmnist_root, cache_dir):
    """A tiny config on the real Fashion-MNIST (skips with the reason when it is not installed)."""
    return lambda **sections: tiny_config(fmnist_root, cache_dir, **sections)
