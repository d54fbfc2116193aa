"""The datasets' loaders: what `dcgan.tables.DATASETS` names as each dataset's `build` (and its
content key, where the files under data.root are not it).

A loader is (DataConfig, split) -> a Dataset of (uint8 tensor (C, S, S), class label or -1) at the
training size (`data.image_transform`). `data.build_source` checks the split and turns a failure
into one line naming the dataset's `how_to_get`, so a loader only builds. Loaded on first use
(the table names them as strings), so nothing here runs for `--help` or config validation.
"""

from __future__ import annotations

import gzip
import logging
import shutil
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets

from . import data
from .atomic import atomic_write
from .config import DataConfig
from .errors import DataError

log = logging.getLogger(__name__)


def _root(cfg: DataConfig) -> str:
    return str(Path(cfg.root).expanduser())


def _transform(cfg: DataConfig):
    return data.image_transform(cfg.image_size, cfg.channels)


# --- torchvision's datasets ----------------------------------------------------------------------


def _train_or_test(cls: type, cfg: DataConfig, split: str) -> Dataset:
    return cls(_root(cfg), train=(split == "train"), transform=_transform(cfg), download=cfg.download)


def cifar10(cfg: DataConfig, split: str) -> Dataset:
    return _train_or_test(datasets.CIFAR10, cfg, split)


def cifar100(cfg: DataConfig, split: str) -> Dataset:
    return _train_or_test(datasets.CIFAR100, cfg, split)


def mnist(cfg: DataConfig, split: str) -> Dataset:
    return _train_or_test(datasets.MNIST, cfg, split)


def fashion_mnist(cfg: DataConfig, split: str) -> Dataset:
    _provide_debian_fashion_mnist(Path(_root(cfg)))
    return _train_or_test(datasets.FashionMNIST, cfg, split)


def svhn(cfg: DataConfig, split: str) -> Dataset:
    return datasets.SVHN(_root(cfg), split=split, transform=_transform(cfg), download=cfg.download)


def celeba(cfg: DataConfig, split: str) -> Dataset:
    # target_type=[]: no attributes or identities, so no label (-1 downstream)
    return datasets.CelebA(_root(cfg), split=split, target_type=[], transform=_transform(cfg), download=cfg.download)


def lsun(cfg: DataConfig, split: str) -> Dataset:
    """The lmdb folders of data.lsun_classes (the split is in the class names, e.g. bedroom_train)."""
    try:
        import lmdb  # noqa: F401
    except ImportError:
        raise DataError("LSUN needs the lmdb package; run `pip install lmdb` (or `pip install dcgan[lmdb]`)") from None
    return datasets.LSUN(_root(cfg), classes=list(cfg.lsun_classes), transform=_transform(cfg))


def _provide_debian_fashion_mnist(root: Path) -> None:
    """Unpack Debian's `dataset-fashion-mnist` idx files into torchvision's layout under root."""
    debian = data.DEBIAN_FASHION_MNIST  # read here, not imported: tests point it elsewhere
    raw = root / "FashionMNIST" / "raw"
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if all(data._is_file(raw / n) for n in names) or not debian.is_dir():
        return
    if not all((debian / f"{n}.gz").is_file() for n in names):
        return
    try:
        for n in names:
            with gzip.open(debian / f"{n}.gz", "rb") as src:
                atomic_write(raw / n, lambda dst, src=src: shutil.copyfileobj(src, dst))
    except (OSError, EOFError, zlib.error) as e:  # read-only or full data.root, or a damaged package file
        raise DataError(f"could not unpack Debian's Fashion-MNIST into {str(raw)!r} ({data._reason(e)}); "
                        "set data.root to a writable folder with 60 MB free") from None
    log.info("unpacked Debian's Fashion-MNIST from %s into %s", debian, raw)


# --- an image folder, and what `dcgan prepare` wrote -----------------------------------------------


def folder(cfg: DataConfig, split: str) -> Dataset:
    """Every image file under data.root. Every file is opened at start-up only where the in-memory
    cache will take them all (big folders are listed, and a bad file is skipped when it is read);
    `dcgan prepare` asks with data.in_memory=never, since it decodes each file once anyway."""
    return data.ImageFiles(_root(cfg), _transform(cfg), check=lambda n: data.fits_in_memory(cfg, n))


def folder_content(cfg: DataConfig, split: str) -> Iterable[str]:
    """A folder's cache key: its image files' names and stat (other files are not read)."""
    return data.stat_lines(data._image_entries(Path(_root(cfg))))


def prepared(cfg: DataConfig, split: str) -> Dataset:
    from .prepared import open_prepared

    return PreparedSource(open_prepared(cfg, split))


def prepared_content(cfg: DataConfig, split: str) -> Iterable[str]:
    """A prepared folder's cache key: its content fingerprint and its arrays' stat."""
    from .prepared import fingerprint

    try:
        return [fingerprint(cfg, split)]
    except DataError:  # not (yet) a valid prepared folder: key by whatever files are there
        return data.stat_lines(data.file_entries(Path(_root(cfg)), [Path(_root(cfg))]))


class PreparedSource(Dataset):
    """A prepared dataset (`dcgan prepare`) as a source: (uint8 tensor (C, S, S), label or -1)."""

    def __init__(self, prepared) -> None:
        self.prepared = prepared
        self.labels = None if prepared.labels is None else torch.from_numpy(np.array(prepared.labels))

    def __len__(self) -> int:
        return self.prepared.images.shape[0]

    def __getitem__(self, i: int):
        label = int(self.labels[i]) if self.labels is not None else -1
        return torch.from_numpy(np.array(self.prepared.images[i])), label
