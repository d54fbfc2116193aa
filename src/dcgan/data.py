"""Datasets: torchvision's loaders plus an image folder, resized to the training size as uint8.

§4: the only preprocessing is scaling pixels to tanh's range [-1, 1]; here images are resized
(shorter side) and centre-cropped to `data.image_size`, converted to 1 or 3 channels, kept as
uint8 and scaled to [-1, 1] on the training device (`to_model_range`).

Datasets that fit in memory are decoded once into a uint8 tensor, cached on disk (keyed by
dataset, split, size, channels and root) and batched by index: no per-image PIL work in the
training loop. Larger ones (LSUN, big folders) stream through DataLoader workers.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import datasets, transforms

from .config import DataConfig
from .errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IN_MEMORY_LIMIT_BYTES = 4 * 2**30  # "auto" decodes to memory below this many uint8 bytes

_SPLITS = {
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "mnist": ("train", "test"),
    "fashion_mnist": ("train", "test"),
    "svhn": ("train", "test", "extra"),
    "celeba": ("train", "valid", "test", "all"),
}
_HOW_TO_GET = {
    "cifar10": "set data.download=true on a machine with internet, or put cifar-10-batches-py/ in data.root",
    "cifar100": "set data.download=true on a machine with internet, or put cifar-100-python/ in data.root",
    "mnist": "set data.download=true on a machine with internet, or put MNIST/raw/ in data.root",
    "fashion_mnist": "run `apt-get install dataset-fashion-mnist`, set data.download=true with internet, "
                     "or put FashionMNIST/raw/ in data.root",
    "svhn": "set data.download=true on a machine with internet, or put train_32x32.mat etc. in data.root",
    "celeba": "download CelebA (img_align_celeba/ and list_eval_partition.txt) into data.root/celeba/",
    "lsun": "download LSUN with its download.py into data.root (e.g. bedroom_train_lmdb/) and pip install lmdb",
}


def image_transform(image_size: int, channels: int) -> transforms.Compose:
    """PIL image -> uint8 tensor (C, S, S): resize the shorter side, centre-crop, convert mode."""
    return transforms.Compose([
        transforms.Lambda(lambda im: im.convert("L" if channels == 1 else "RGB")),
        transforms.Resize(image_size, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
        transforms.CenterCrop(image_size),
        transforms.PILToTensor(),
    ])


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (§4: tanh's range), on whatever device x is on."""
    return x.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return x.detach().add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


# --- an image folder (the seed's anime faces; any tree of image files) -------------------------


class ImageFiles(Dataset):
    """Every readable image file under `root`, recursively; no class sub-folders needed.

    Unreadable files are skipped with a logged count; a folder with no usable image fails.
    """

    def __init__(self, root: str | Path, transform=None) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(f"image folder {str(root)!r} does not exist; set data.root to a folder of images")
        candidates = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not candidates:
            raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {str(root)!r}; "
                            "set data.root to a folder that holds images")
        with ThreadPoolExecutor(max_workers=8) as pool:
            ok = list(pool.map(_readable, candidates))
        self.files = [p for p, good in zip(candidates, ok) if good]
        self.num_skipped = len(candidates) - len(self.files)
        if not self.files:
            raise DataError(f"none of the {len(candidates)} image files under {str(root)!r} could be read; "
                            "check that they are valid images")
        if self.num_skipped:
            log.warning("skipped %d unreadable of %d image files under %s",
                        self.num_skipped, len(candidates), root)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        with Image.open(self.files[i]) as im:
            im.load()
            return (self.transform(im) if self.transform else im), -1


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:
        return False


# --- torchvision datasets ----------------------------------------------------------------------


def _provide_debian_fashion_mnist(root: Path) -> None:
    """Unpack Debian's `dataset-fashion-mnist` idx files into torchvision's layout under root."""
    raw = root / "FashionMNIST" / "raw"
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if all((raw / n).is_file() for n in names) or not DEBIAN_FASHION_MNIST.is_dir():
        return
    if not all((DEBIAN_FASHION_MNIST / f"{n}.gz").is_file() for n in names):
        return
    raw.mkdir(parents=True, exist_ok=True)
    for n in names:
        tmp = raw / f".{n}.tmp"
        with gzip.open(DEBIAN_FASHION_MNIST / f"{n}.gz", "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, raw / n)
    log.info("unpacked Debian's Fashion-MNIST from %s into %s", DEBIAN_FASHION_MNIST, raw)


def _check_split(cfg: DataConfig, split: str) -> None:
    allowed = _SPLITS.get(cfg.name)
    if allowed and split not in allowed:
        raise DataError(f"data.split={split!r} does not exist for {cfg.name}; use one of {', '.join(allowed)}")


def build_source(cfg: DataConfig, split: str | None = None) -> Dataset:
    """The dataset as torchvision gives it, yielding (uint8 tensor (C, S, S), label)."""
    split = split or cfg.split
    _check_split(cfg, split)
    root = Path(cfg.root).expanduser()
    tf = image_transform(cfg.image_size, cfg.channels)
    if cfg.name == "folder":
        return ImageFiles(root, tf)
    if cfg.name == "fashion_mnist":
        _provide_debian_fashion_mnist(root)
    try:
        if cfg.name in ("cifar10", "cifar100", "mnist", "fashion_mnist"):
            cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100,
                   "mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[cfg.name]
            return cls(str(root), train=(split == "train"), transform=tf, download=cfg.download)
        if cfg.name == "svhn":
            return datasets.SVHN(str(root), split=split, transform=tf, download=cfg.download)
        if cfg.name == "celeba":
            return datasets.CelebA(str(root), split=split, target_type=[], transform=tf,
                                   download=cfg.download)
        if cfg.name == "lsun":
            try:
                import lmdb  # noqa: F401
            except ImportError:
                raise DataError("LSUN needs the lmdb package; run `pip install lmdb` (or `pip install dcgan[lmdb]`)") from None
            return datasets.LSUN(str(root), classes=list(cfg.lsun_classes), transform=tf)
    except DataError:
        raise
    except Exception as e:  # torchvision raises RuntimeError when missing, URLError/OSError offline
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        tried = "downloading failed" if cfg.download else "download is off"
        raise DataError(f"{cfg.name} ({split}) not found under {str(root)!r} and {tried} ({reason}); "
                        f"{_HOW_TO_GET[cfg.name]}") from None
    raise DataError(f"data.name={cfg.name!r} is not a dataset")  # unreachable after validation


def _labels(source: Dataset) -> torch.Tensor | None:
    for attr in ("targets", "labels"):
        t = getattr(source, attr, None)
        if t is not None and len(t) == len(source):
            return torch.as_tensor(t, dtype=torch.int64)
    return None


# --- in-memory uint8 cache ---------------------------------------------------------------------


@dataclass
class ImageData:
    """A dataset decoded to memory: images (N, C, S, S) uint8, labels (N,) int64 or None."""

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    split: str

    def __len__(self) -> int:
        return self.images.shape[0]


def cache_path(cfg: DataConfig, split: str) -> Path:
    root_key = hashlib.sha1(str(Path(cfg.root).expanduser().resolve()).encode()).hexdigest()[:10]
    extra = "-" + "+".join(cfg.lsun_classes) if cfg.name == "lsun" else ""
    name = f"{cfg.name}{extra}-{split}-{cfg.image_size}px-{cfg.channels}ch-{root_key}.pt"
    return Path(cfg.cache_dir).expanduser() / name


def _decode_all(source: Dataset, num_workers: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    loader = DataLoader(source, batch_size=512, shuffle=False, num_workers=num_workers,
                        collate_fn=_collate_images)
    chunks = list(loader)
    return torch.cat(chunks), _labels(source)


def load_images(cfg: DataConfig, split: str | None = None, *, use_cache: bool = True,
                source: Dataset | None = None) -> ImageData:
    """The whole split as a uint8 tensor, decoded once and cached on disk.

    `data.subset` keeps the first N images (applied after the cache, so it shares one file).
    """
    split = split or cfg.split
    path = cache_path(cfg, split)
    images = labels = None
    if use_cache and path.is_file():
        try:
            blob = torch.load(path, weights_only=True)
            images, labels = blob["images"], blob["labels"]
        except Exception:
            log.warning("ignoring unreadable data cache %s; decoding again", path)
    if images is None:
        source = source if source is not None else build_source(cfg, split)
        images, labels = _decode_all(source, auto_workers(cfg.num_workers, decode=True))
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save({"images": images, "labels": labels}, tmp)
            os.replace(tmp, path)
    if cfg.subset:
        images = images[: cfg.subset]
        labels = labels[: cfg.subset] if labels is not None else None
    return ImageData(images, labels, cfg.name, split)


def auto_workers(requested: int, *, decode: bool = False) -> int:
    """DataLoader workers: what the user asked, else leave the cores to compute on small machines."""
    if requested >= 0:
        return requested
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if decode:  # one-off decoding pass: nothing else is running
        return min(8, cpus) if cpus > 1 else 0
    return 0 if cpus <= 2 else min(8, cpus // 2)


def fits_in_memory(cfg: DataConfig, num_images: int) -> bool:
    if cfg.in_memory == "always":
        return True
    if cfg.in_memory == "never":
        return False
    n = min(num_images, cfg.subset) if cfg.subset else num_images
    return n * cfg.channels * cfg.image_size**2 <= IN_MEMORY_LIMIT_BYTES


# --- batches for training ----------------------------------------------------------------------


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of epoch `epoch`: a pure function of (seed, epoch), so resume is exact."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


class ShardSampler(Sampler[int]):
    """Epoch-seeded shuffling, sharded by rank, that can start mid-epoch (for exact resume)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def indices(self) -> torch.Tensor:
        per_rank = self.n // self.world
        idx = epoch_permutation(self.n, self.seed, self.epoch)[self.rank::self.world][:per_rank]
        return idx[self.start_batch * self.batch_size:]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return len(self.indices())


class Batches:
    """Real training batches as uint8 tensors on the device, one epoch at a time.

    In memory: the uint8 tensor (on the GPU when it is one) is indexed by a shuffled
    permutation. Streamed: a DataLoader over the decoding source with the same sampler.
    Either way each batch is (B, C, S, S) uint8; the last incomplete batch is dropped so that
    every BN batch has the configured size.
    """

    def __init__(self, cfg: DataConfig, batch_size: int, seed: int, device: torch.device,
                 rank: int = 0, world: int = 1) -> None:
        self.device, self.batch_size = device, batch_size
        self.memory: torch.Tensor | None = None
        self.loader: DataLoader | None = None
        cached = cfg.in_memory != "never" and cache_path(cfg, cfg.split).is_file()
        source = None if cached else build_source(cfg)
        if cached or fits_in_memory(cfg, len(source)):
            data = load_images(cfg, source=source)
            images = data.images
            if device.type == "cuda":
                images = images.to(device)  # a few hundred MB at most: no host->device copy per step
            elif device.type == "cpu":
                images = images.contiguous()
            self.memory = images
            n = images.shape[0]
        else:
            if cfg.subset:
                source = torch.utils.data.Subset(source, range(min(cfg.subset, len(source))))
            n = len(source)
            workers = auto_workers(cfg.num_workers)
            self.sampler = ShardSampler(n, batch_size, seed, rank, world)
            self.loader = DataLoader(
                source, batch_size=batch_size, sampler=self.sampler, drop_last=True,
                num_workers=workers, pin_memory=device.type == "cuda",
                persistent_workers=False, collate_fn=_collate_images,
            )
        self.num_images, self.seed, self.rank, self.world = n, seed, rank, world
        self.steps_per_epoch = (n // world) // batch_size
        if self.steps_per_epoch == 0:
            raise DataError(f"the dataset has {n} images, fewer than one batch of {batch_size} per process; "
                            "lower train.batch_size or use more images")

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[torch.Tensor]:
        """Yield the batches of `epoch`, skipping the first `start_batch` (resume mid-epoch)."""
        if self.memory is not None:
            per_rank = self.num_images // self.world
            perm = epoch_permutation(self.num_images, self.seed, epoch)[self.rank::self.world][:per_rank]
            perm = perm.to(self.memory.device)
            for i in range(start_batch, self.steps_per_epoch):
                idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
                batch = self.memory.index_select(0, idx)
                yield batch.to(self.device, non_blocking=True)
        else:
            self.sampler.set_epoch(epoch, start_batch)
            for batch in self.loader:
                yield batch.to(self.device, non_blocking=True)

    def sample(self, n: int) -> torch.Tensor:
        """The first n images of epoch 0's order, for the real-image grid (uint8, on CPU)."""
        if self.memory is not None:
            return self.memory[epoch_permutation(self.num_images, self.seed, 0)[:n].to(self.memory.device)].cpu()
        ds = self.loader.dataset
        idx = epoch_permutation(self.num_images, self.seed, 0)[:n].tolist()
        return torch.stack([ds[i][0] for i in idx])


def _collate_images(items):
    return torch.stack([x for x, _ in items])
