"""Datasets: images read by each dataset's loader, resized to the training size, kept as uint8.

§4: the only preprocessing is scaling pixels to tanh's range [-1, 1]; here images are resized
(shorter side) and centre-cropped to `data.image_size`, converted to 1 or 3 channels, kept as
uint8 and scaled to [-1, 1] on the training device (`to_model_range`).

Each dataset is one entry of `dcgan.tables.DATASETS` (its facts) with its loader in
`dcgan.datasets`; this module is the machinery they share: reading an image folder, checking the
split, keying, writing and reading caches, and batching.

Datasets that fit in memory are decoded once into a uint8 tensor, cached on disk and batched by
index: no per-image PIL work in the training loop. Larger ones (LSUN, big folders) stream
through DataLoader workers. A cache is keyed by content (`data_fingerprint`: the settings that
change the images, and the names, sizes and modification times of the files read), so a changed
dataset is decoded again.

Faults end in one line (`DataError`), never a traceback: images that cannot be decoded are
skipped and counted; a corrupt cache is decoded again; a cache that cannot be written (read-only
or full disk) is skipped with a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from glob import escape as glob_escape
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms

from .atomic import torch_save
from .config import DataConfig
from .errors import DataError
from .tables import DATASETS, DatasetSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # where dataset-fashion-mnist installs it
IN_MEMORY_LIMIT_BYTES = 4 * 2**30  # "auto" decodes to memory below this many uint8 bytes
CACHE_VERSION = 3  # part of every cache key: bump when decoding changes, so old caches are not reused


def to_8bit_mode(im: Image.Image, channels: int) -> Image.Image:
    """`im` as 8-bit L (channels=1) or RGB. 16-bit grayscale (PNG, TIFF: mode I;16*; PGM: I) is
    scaled from 0..65535 to 0..255, where PIL's own convert() would clip every value above 255 to
    white; 16-bit RGB(A) PNGs already open as 8-bit RGB(A) in PIL."""
    if im.mode.startswith("I;16") or im.mode == "I":
        wide = np.asarray(im).astype(np.float64)
        im = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), mode="L")
    return im.convert("L" if channels == 1 else "RGB")


def image_transform(image_size: int, channels: int) -> transforms.Compose:
    """PIL image -> uint8 tensor (C, S, S): resize the shorter side, centre-crop, convert mode."""
    return transforms.Compose([
        transforms.Lambda(partial(to_8bit_mode, channels=channels)),
        transforms.Resize(image_size, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
        transforms.CenterCrop(image_size),
        transforms.PILToTensor(),
    ])


# --- an image folder (the reference blog post's anime faces; any tree of image files) -----------


class ImageFiles(Dataset):
    """Every readable image file under `root`, recursively; no class sub-folders needed.

    `check` (True, False, or a function of the number of files) says whether every file is opened
    at start-up: then unreadable files are skipped with a logged count and a folder with no
    usable image fails at once. Folders too big for the in-memory cache are not checked up front
    (`build_source`): listing them is all that happens before the first step. A file that fails to
    decode later is skipped where it is decoded (`load_images` and `dcgan prepare` drop and count
    it; streamed batches use the next image instead, with a warning and a count).
    """

    def __init__(self, root: str | Path, transform=None, *, check=True) -> None:
        root = Path(root).expanduser()
        if not _is_dir(root):
            raise DataError(f"image folder {str(root)!r} does not exist; set data.root to a folder of images")
        try:
            os.scandir(root).close()
        except OSError as e:
            raise DataError(f"cannot read the image folder {str(root)!r} ({e.strerror or e}); "
                            "fix its permissions or set data.root to a readable folder") from None
        candidates = image_files(root)
        if not candidates:
            raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {str(root)!r}; "
                            "set data.root to a folder that holds images")
        self.transform = transform
        self.checked = bool(check(len(candidates)) if callable(check) else check)
        if not self.checked:
            self.files, self.num_skipped = candidates, 0
            log.info("image folder %s: %d files, checked as they are read (unreadable ones are skipped and "
                     "counted)", root, len(candidates))
            return
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

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        with Image.open(self.files[i]) as im:
            im.load()
            return (self.transform(im) if self.transform else im), -1


def image_files(root: Path) -> list[Path]:
    """The image files under `root`, recursively, in sorted path order (the folder source's order)."""
    return [root / rel for rel, _ in _image_entries(root)]


def _image_entries(root: Path) -> list[tuple[str, os.stat_result]]:
    """(path relative to root, stat) of each image file under root; like sorted(root.rglob("*"))
    filtered by suffix and is_file(): linked folders are not entered, unreadable ones are skipped."""
    found = []
    for folder, _, names in os.walk(root):
        prefix = os.path.relpath(folder, root) + os.sep if folder != str(root) else ""
        for name in names:
            if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            try:
                st = os.stat(folder + os.sep + name)
            except OSError:  # a broken link, or a file that vanished
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((prefix + name, st))
    found.sort(key=lambda entry: entry[0].split(os.sep))  # the order of Path objects
    return found


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # permission denied on a parent folder: treat as absent
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _readable(path: Path) -> bool:
    """PIL's structure check; a JPEG without its end marker is decoded in full, since a truncated
    download passes verify() (which does not decode JPEG data) and only fails at load()."""
    try:
        with Image.open(path) as im:
            fmt = im.format
            im.verify()
        if fmt == "JPEG" and not _ends_with(path, b"\xff\xd9"):
            with Image.open(path) as im:
                im.load()
        return True
    except Exception:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ... for bad files
        return False


def _ends_with(path: Path, tail: bytes) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < len(tail):
            return False
        f.seek(-len(tail), os.SEEK_END)
        return f.read() == tail


# --- a dataset's source: its loader, named by its entry in dcgan.tables.DATASETS ------------------


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:  # config validation says so first; this is for configs built in code
        raise DataError(f"data.name={name!r} is not a dataset; use one of {', '.join(DATASETS)}")
    return DATASETS.load(name)


def build_source(cfg: DataConfig, split: str | None = None) -> Dataset:
    """The dataset as its loader gives it, yielding (uint8 tensor (C, S, S), label)."""
    split = split or cfg.split
    spec = dataset_spec(cfg.name)
    if spec.splits and split not in spec.splits:
        raise DataError(f"data.split={split!r} does not exist for {cfg.name}; use one of {', '.join(spec.splits)}")
    build = spec.function("build")
    if not spec.how_to_get:  # a loader with one-line errors of its own (an image folder, a prepared one)
        return build(cfg, split)
    try:
        return build(cfg, split)
    except DataError:
        raise
    except Exception as e:  # torchvision raises RuntimeError when missing, URLError/OSError offline
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        tried = "downloading failed" if cfg.download else "download is off"
        raise DataError(f"{cfg.name} ({split}) not found under {str(Path(cfg.root).expanduser())!r} and {tried} "
                        f"({reason}); {spec.how_to_get}") from None


def _labels(source: Dataset) -> torch.Tensor | None:
    for attr in ("targets", "labels"):
        t = getattr(source, attr, None)
        if t is not None and len(t) == len(source):
            return torch.as_tensor(t, dtype=torch.int64)
    return None


# --- content fingerprints: what a cache is keyed by --------------------------------------------


def _key_paths(spec: DatasetSpec, cfg: DataConfig, split: str, root: Path) -> list[Path]:
    """The files and folders under data.root that a dataset's loader reads (`DatasetSpec.files`)."""
    paths = []
    for template in spec.files:
        lists = [k for k in spec.options if "{" + k + "}" in template]  # one path per item
        items = [{lists[0]: v} for v in getattr(cfg, lists[0])] if lists else [{}]
        paths += [root / template.format(split=split, **item) for item in items]
    return paths


def dataset_options(cfg: DataConfig) -> dict[str, object]:
    """The dataset's further data.* keys that choose its images (`DatasetSpec.options`), as JSON values."""
    values = {k: getattr(cfg, k) for k in dataset_spec(cfg.name).options}
    return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()}


def _tree_files(top: Path) -> list[Path]:
    """`top` if it is a file, else every file below it, in a fixed order (errors: fewer files)."""
    if not _is_dir(top):
        return [top]
    found = []
    for folder, dirs, files in os.walk(top):
        dirs.sort()
        found += [Path(folder, f) for f in sorted(files) if f != "lock.mdb"]  # LMDB's reader table
    return found


def data_fingerprint(cfg: DataConfig, split: str) -> str:
    """A short hex digest of what `split` of the dataset decodes to, for keying caches by content.

    It covers the settings that change the decoded images (name, split, image_size, channels,
    subset, lsun_classes) and the relative name, size, modification time and inode change time
    (ctime) of every data file the source reads under data.root (its `DatasetSpec.files`, e.g.
    FashionMNIST/ where Debian's idx files are unpacked; every image file of a `folder`, its
    `content`). Only stat calls, no image bytes: adding, removing, renaming, replacing or
    touching a file changes it. The ctime is what catches a file replaced with the same name, size
    and modification time (`cp -p`, `rsync -t`, `tar x`): every write of a file's bytes sets its
    ctime to the time of the write, and no user call can set it back.
    """
    spec = dataset_spec(cfg.name)
    settings = {"version": CACHE_VERSION, "name": cfg.name, "split": split, "image_size": cfg.image_size,
                "channels": cfg.channels, "subset": cfg.subset, **dataset_options(cfg)}
    h = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
    if spec.content is not None:  # a key of its own (an image folder: only its images; a prepared one)
        lines = spec.function("content")(cfg, split)
    else:
        root = Path(cfg.root).expanduser()
        lines = stat_lines(file_entries(root, _key_paths(spec, cfg, split, root)))
    for line in lines:
        h.update(line.encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:16]


def file_entries(root: Path, tops: list[Path]) -> list[tuple[str, os.stat_result | str]]:
    """(path relative to root, stat) of every file under the `tops` (`_tree_files`)."""
    return [(os.path.relpath(f, root), _stat(f)) for top in tops for f in _tree_files(top)]


def stat_lines(entries: Iterable[tuple[str, os.stat_result | str]]) -> Iterator[str]:
    """What a content key hashes of each file: its relative name, size, mtime and ctime."""
    for rel, st in entries:
        facts = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}" if isinstance(st, os.stat_result) else st
        yield f"{rel}\0{facts}\n"


def _stat(path: Path) -> os.stat_result | str:
    try:
        return os.stat(path)
    except OSError as e:  # missing or unreadable: part of the state too
        return f"error:{e.errno}"


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


def _cache_stem(cfg: DataConfig, split: str) -> str:
    """The readable part of a cache name; one stem is one dataset at one root (old versions pruned)."""
    root_key = hashlib.sha1(os.path.realpath(os.path.expanduser(cfg.root)).encode("utf-8", "surrogateescape"))
    extra = "".join(f"-{'+'.join(v) if isinstance(v, list) else v}"
                    for v in dataset_options(cfg).values())  # e.g. LSUN's classes
    return f"{cfg.name}{extra}-{split}-{cfg.image_size}px-{cfg.channels}ch-{root_key.hexdigest()[:10]}"


def cache_path(cfg: DataConfig, split: str) -> Path:
    """Where the decoded uint8 images of (cfg, split) are cached, keyed by `data_fingerprint`.

    The file holds the whole split (data.subset is applied after loading), so subsets share it.
    """
    fingerprint = data_fingerprint(dataclasses.replace(cfg, subset=0), split)
    return Path(cfg.cache_dir).expanduser() / f"{_cache_stem(cfg, split)}-{fingerprint}.pt"


class _Decoding(Dataset):
    """(index, image or None, why it failed or None): decode errors become data, not exceptions."""

    def __init__(self, source: Dataset) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        try:
            return i, self.source[i][0], None
        except Exception as e:  # truncated or damaged file, I/O error: skipped and counted
            return i, None, f"{_item_name(self.source, i)}: {_reason(e)}"


def _collate_decoded(items):
    good = [x for _, x, _ in items if x is not None]
    failed = [(i, why) for i, x, why in items if x is None]
    return (torch.stack(good) if good else None), failed


def _decode_all(source: Dataset, num_workers: int, what: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Every image of `source`, in order; images that fail to decode are dropped (with their labels)."""
    n = len(source)
    if n == 0:
        raise DataError(f"{what} holds no images; check data.root and data.split")
    loader = DataLoader(_Decoding(source), batch_size=512, shuffle=False, num_workers=num_workers,
                        collate_fn=_collate_decoded)
    chunks, failed = [], []
    for images, bad in _one_line_errors(loader):
        chunks += [images] if images is not None else []
        failed += bad
    labels = _labels(source)
    if failed:
        if len(failed) == n:
            raise DataError(f"none of the {n} images of {what} could be decoded (first: {failed[0][1]}); "
                            "check that they are valid images, or set data.root to another folder")
        log.warning("skipped %d unreadable of %d images of %s (first: %s)", len(failed), n, what, failed[0][1])
        if labels is not None:
            keep = torch.ones(n, dtype=torch.bool)
            keep[[i for i, _ in failed]] = False
            labels = labels[keep]
    return torch.cat(chunks), labels


def _read_cache(path: Path, cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The cached (images, labels), or None when there is none or it is unusable (then: warn)."""
    if not _is_file(path):
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: loading runs no code
        images, labels = blob["images"], blob["labels"]
        shape = (cfg.channels, cfg.image_size, cfg.image_size)
        if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.dim() == 4
                and tuple(images.shape[1:]) == shape):
            raise ValueError(f"images are not a uint8 (N, {', '.join(map(str, shape))}) tensor")
        if labels is not None and not (isinstance(labels, torch.Tensor) and labels.dtype == torch.int64
                                       and tuple(labels.shape) == (len(images),)):
            raise ValueError("labels do not match the images")
    except Exception as e:  # truncated, corrupt, hostile or foreign file: decode again and overwrite it
        log.warning("ignoring unreadable data cache %s (%s); decoding again", path, _reason(e))
        return None
    return images, labels


def _write_cache(path: Path, images: torch.Tensor, labels: torch.Tensor | None) -> None:
    """Save atomically; a cache that cannot be written is skipped with a warning (the run goes on)."""
    try:
        torch_save({"images": images, "labels": labels}, path)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as RuntimeError
        log.warning("could not write the data cache %s (%s); continuing without it: set data.cache_dir "
                    "to a writable folder with free space to skip decoding next time", path, _reason(e))
        return
    for stale in path.parent.glob(f"{glob_escape(_stem_of(path))}-{'[0-9a-f]' * 16}.pt"):
        if stale != path:  # the same dataset and root before its files changed
            try:
                stale.unlink()
                log.info("removed the outdated data cache %s", stale)
            except OSError:
                pass


def _stem_of(path: Path) -> str:
    return path.stem.rsplit("-", 1)[0]


def load_images(cfg: DataConfig, split: str | None = None, *, use_cache: bool = True,
                source: Dataset | None = None) -> ImageData:
    """The whole split as a uint8 tensor, decoded once and cached on disk.

    The cache is keyed by content (`data_fingerprint`), so a changed dataset is decoded again.
    Images that fail to decode (e.g. truncated JPEGs) are skipped with a logged count. A corrupt
    cache is decoded again with a warning. A cache that cannot be written (read-only or full
    data.cache_dir) is not an error: the images are already decoded, so the run goes on without a
    cache and a warning names data.cache_dir as the fix. `data.subset` keeps the first N images
    (applied after the cache, so it shares one file).
    """
    split = split or cfg.split
    spec = dataset_spec(cfg.name)
    if spec.arrays is not None:  # already uint8 at the training size: mapped, not decoded or cached
        prep = spec.function("arrays")(cfg, split, mode="c")  # copy-on-write: a writable tensor, no copy
        labels = torch.from_numpy(np.array(prep.labels)) if prep.labels is not None else None
        return ImageData(torch.from_numpy(prep.images), labels, cfg.name, split)
    cached = _read_cache(cache_path(cfg, split), cfg) if use_cache else None
    if cached is not None:
        images, labels = cached
    else:
        source = source if source is not None else build_source(cfg, split)
        # Keyed by the files as they are before decoding, after build_source (which may unpack some).
        path = cache_path(cfg, split) if use_cache else None
        what = f"{cfg.name} ({split}) under {cfg.root!r}"
        images, labels = _decode_all(source, auto_workers(cfg.num_workers, decode=True), what)
        if path is not None:
            _write_cache(path, images, labels)
    if cfg.subset:
        images = images[: cfg.subset]
        labels = labels[: cfg.subset] if labels is not None else None
    return ImageData(images, labels, cfg.name, split)


def _last_line(e: BaseException) -> str:
    """The last line of an exception's message, without a `module.Type: ` prefix: for an error
    re-raised from a DataLoader worker (whose message is the worker's traceback) the original one."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return re.sub(r"^[\w.]+(Error|Exception|Exit): ", "", lines[-1]) if lines else ""


def _reason(e: BaseException) -> str:
    """An exception as one short line: its type and its message's last line."""
    last = _last_line(e)
    return f"{type(e).__name__}: {last}" if last else type(e).__name__


def _item_name(source: Dataset, i: int) -> str:
    files = getattr(source, "files", None)
    return str(files[i]) if files is not None and i < len(files) else f"image {i}"


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
    permutation. Prepared (`dcgan prepare`): the same permutation gathers rows from the
    memory-mapped array, a batch ahead in a background thread; only this rank's shard is read.
    Streamed: a DataLoader over the decoding source with the same sampler. Either way each batch
    is (B, C, S, S) uint8, the same images in the same order for the same (seed, epoch); the last
    incomplete batch is dropped so that every BN batch has the configured size.
    """

    def __init__(self, cfg: DataConfig, batch_size: int, seed: int, device: torch.device,
                 rank: int = 0, world: int = 1) -> None:
        self.device, self.batch_size = device, batch_size
        self.memory: torch.Tensor | None = None
        self.mapped: np.ndarray | None = None
        self.loader: DataLoader | None = None
        self._prefetch: ThreadPoolExecutor | None = None
        spec = dataset_spec(cfg.name)
        prepared = spec.arrays is not None  # stored as uint8 arrays (`dcgan prepare`): mapped, no cache
        cached = not prepared and cfg.in_memory != "never" and _is_file(cache_path(cfg, cfg.split))
        source = None if cached or prepared else build_source(cfg)
        if prepared and cfg.in_memory != "always":
            self.mapped = spec.function("arrays")(cfg, cfg.split).images  # a read-only memory map
            n = self.mapped.shape[0]
        elif cached or prepared or fits_in_memory(cfg, len(source)):
            data = load_images(cfg, source=source)
            images = data.images
            if device.type == "cuda":
                images = images.to(device)  # a few hundred MB at most: no host->device copy per step
            elif device.type == "cpu":
                images = images.clone() if prepared else images.contiguous()  # prepared: read into memory
            self.memory = images
            n = images.shape[0]
        else:
            if cfg.subset:
                source = torch.utils.data.Subset(source, range(min(cfg.subset, len(source))))
            source = _StandIn(source)
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
        elif self.mapped is not None:
            per_rank = self.num_images // self.world
            perm = epoch_permutation(self.num_images, self.seed, epoch)[self.rank::self.world][:per_rank].numpy()
            if self._prefetch is None:
                self._prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dcgan-batches")
            pending = None
            for i in range(start_batch, self.steps_per_epoch + 1):
                ahead = None
                if i < self.steps_per_epoch:  # read the next batch while this one trains
                    ahead = self._prefetch.submit(self._gather, perm[i * self.batch_size:(i + 1) * self.batch_size])
                if pending is not None:
                    yield pending.result().to(self.device, non_blocking=True)
                pending = ahead
        else:
            self.sampler.set_epoch(epoch, start_batch)
            for batch in _one_line_errors(self.loader):
                yield batch.to(self.device, non_blocking=True)

    def sample(self, n: int) -> torch.Tensor:
        """The first n images of epoch 0's order, for the real-image grid (uint8, on CPU)."""
        if self.memory is not None:
            return self.memory[epoch_permutation(self.num_images, self.seed, 0)[:n].to(self.memory.device)].cpu()
        if self.mapped is not None:
            return self._gather(epoch_permutation(self.num_images, self.seed, 0)[:n].numpy())
        ds = self.loader.dataset
        idx = epoch_permutation(self.num_images, self.seed, 0)[:n].tolist()
        return torch.stack([ds[i][0] for i in idx])


    def _gather(self, idx: np.ndarray) -> torch.Tensor:
        """Rows `idx` of the memory map, in that order; read in file order (fewer seeks)."""
        order = np.argsort(idx, kind="stable")
        out = np.empty((len(idx), *self.mapped.shape[1:]), dtype=np.uint8)
        out[order] = self.mapped[idx[order]]
        batch = torch.from_numpy(out)
        return batch.pin_memory() if self.device.type == "cuda" else batch


def _collate_images(items):
    return torch.stack([x for x, _ in items])


class _StandIn(Dataset):
    """Streaming: an image that fails to decode is replaced by the next one that decodes (with a
    warning), so every batch keeps its size and the order stays a function of (seed, epoch)."""

    MAX_TRIES = 64

    def __init__(self, source: Dataset) -> None:
        self.source = source
        self.skipped = 0  # in this process (each DataLoader worker counts its own)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        n = len(self.source)
        for k in range(min(n, self.MAX_TRIES)):
            j = (i + k) % n
            try:
                return self.source[j]
            except Exception as e:  # truncated or damaged file, I/O error
                self.skipped += 1
                log.warning("skipping unreadable image %s (%s); using the next one (%d skipped so far%s)",
                            _item_name(_inner(self.source), _inner_index(self.source, j)), _reason(e),
                            self.skipped, _in_worker())
        raise DataError(f"{min(n, self.MAX_TRIES)} images in a row from #{i} could not be decoded; "
                        "check that the files under data.root are valid images")


def _in_worker() -> str:
    info = torch.utils.data.get_worker_info()
    return f" by loader worker {info.id}" if info is not None else ""


def _inner(source: Dataset) -> Dataset:
    return source.dataset if isinstance(source, torch.utils.data.Subset) else source


def _inner_index(source: Dataset, i: int) -> int:
    return source.indices[i] if isinstance(source, torch.utils.data.Subset) else i


def _one_line_errors(loader: Iterable[T]) -> Iterator[T]:
    """The loader's batches; a failure in a worker (re-raised with the worker's traceback as its
    message) becomes a one-line DataError."""
    it = None
    while True:
        try:
            if it is None:
                it = iter(loader)  # starts the workers: can fail too (no memory, too many open files)
            batch = next(it)
        except StopIteration:
            return
        except DataError as e:
            raise DataError(_last_line(e)) from e
        except Exception as e:  # I/O error, worker out of memory or killed
            raise DataError(f"reading images failed ({_reason(e)}); check the files under "
                            "data.root, or set data.num_workers=0 if a loader worker ran out of memory") from e
        yield batch
