"""Shared fixtures: real Fashion-MNIST (Debian's package) unpacked once per session, tiny configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcgan.config import Config, from_dict
from dcgan.data import DEBIAN_FASHION_MNIST


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory) -> Path:
    """A data root where Fashion-MNIST is found without a download (unpacked from Debian's files)."""
    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("real Fashion-MNIST needs `apt-get install dataset-fashion-mnist` (make test does it)")
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def tiny_config(root: Path, cache: Path, **sections) -> Config:
    """A small, fast Fashion-MNIST config; `sections` override by section, e.g. train={...}."""
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
def tiny_cfg(fmnist_root, cache_dir):
    return lambda **sections: tiny_config(fmnist_root, cache_dir, **sections)
