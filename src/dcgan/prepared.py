"""Reading prepared datasets (written by `dcgan prepare`, see dcgan.prepare): find the folder for
a split, check dataset.json against the config and the arrays, memory-map the arrays.

Imports nothing of dcgan.data, which imports it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import DataConfig
from .errors import DataError
from .tables import DATASETS

FORMAT, VERSION = "dcgan-prepared", 1
IMAGES, LABELS, MANIFEST, PROGRESS, LOCK = "images.npy", "labels.npy", "dataset.json", ".progress.json", ".lock"
OWN_NAMES = (IMAGES, LABELS, MANIFEST, PROGRESS, LOCK)
CHUNK = 256  # images per decoding batch (and per progress record)
PROGRESS_EVERY_S = 1.0  # at most one progress record a second
HASH_BLOCK = 16 * 2**20


def _own(name: str) -> bool:
    """A name this module writes in DIR (its files and their atomic temp siblings)."""
    if name in OWN_NAMES:
        return True
    return any(name.startswith(f".{n}.tmp") for n in (MANIFEST, PROGRESS))


# --- reading -----------------------------------------------------------------------------------


@dataclass
class Prepared:
    """An opened prepared dataset: the arrays are memory maps (nothing is read until indexed)."""

    path: Path
    manifest: dict[str, Any]
    images: np.ndarray  # (N, C, S, S) uint8 memmap (cut to data.subset)
    labels: np.ndarray | None  # (N,) int64 or None


def _fix(path: Path) -> str:
    return (f"prepare it again into an empty folder (`dcgan prepare --config CFG --out {path}` after "
            f"deleting it; the command that made it is in {MANIFEST})")


def resolve(root: str | Path, split: str) -> Path:
    """The prepared folder for `split` under data.root: data.root itself, or data.root/<split>."""
    root = Path(root).expanduser()
    try:
        if root.exists() and not root.is_dir():
            raise DataError(f"data.root {str(root)!r} is a file, not a folder written by `dcgan prepare`; "
                            "set data.root to the folder given to `dcgan prepare --out`")
        if (root / MANIFEST).is_file():
            return root
        if (root / split / MANIFEST).is_file():
            return root / split
        if not root.is_dir():
            raise DataError(f"the prepared dataset {str(root)!r} does not exist; run `dcgan prepare --config CFG "
                            f"--out {root}` first, or set data.root to a folder it wrote")
        if (root / IMAGES).exists() or (root / PROGRESS).exists():
            raise DataError(f"{str(root)!r} is an unfinished prepare (no {MANIFEST}: it was stopped half-way); "
                            "run the same `dcgan prepare` command again to finish it")
    except OSError as e:
        raise DataError(f"cannot read {str(root)!r} ({e.strerror or e}); fix its permissions or set data.root "
                        "to a readable folder") from None
    subs = sorted(p.name for p in root.iterdir() if (p / MANIFEST).is_file())
    if subs:
        raise DataError(f"{str(root)!r} holds prepared splits {', '.join(subs)} but not {split!r}; prepare it "
                        f"with `dcgan prepare --config CFG --set data.split={split} --out {root / split}`")
    raise DataError(f"{str(root)!r} holds no dataset written by `dcgan prepare` (no {MANIFEST}); run "
                    f"`dcgan prepare --config CFG --out DIR` and set data.root=DIR")


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{str(path / MANIFEST)!r} cannot be read ({type(e).__name__}); {_fix(path)}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{str(path / MANIFEST)!r} was not written by `dcgan prepare`; set data.root to a folder "
                        "that `dcgan prepare --out` wrote")
    if manifest.get("version") != VERSION:
        raise DataError(f"{str(path)!r} was prepared by format version {manifest.get('version')!r}, this dcgan "
                        f"reads version {VERSION}; {_fix(path)}")
    try:
        int(manifest["count"]), int(manifest["image_size"]), int(manifest["channels"])
        bool(manifest["labels"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{str(path / MANIFEST)!r} lacks count, image_size, channels or labels; "
                        f"{_fix(path)}") from None
    return manifest


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of a .npy file, read from its header alone."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        if fortran:
            raise ValueError("Fortran order")
        return tuple(shape), dtype, f.tell()


def _open_array(path: Path, name: str, want_shape: tuple[int, ...], want_dtype: str, mode: str) -> np.ndarray:
    """np.load(mmap_mode=mode) after checking the header and the file's length against dataset.json."""
    file = path / name
    if not file.is_file():
        raise DataError(f"{str(file)!r} is missing; {_fix(path)}")
    try:
        shape, dtype, offset = _npy_header(file)
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{str(file)!r} is not a readable .npy array ({type(e).__name__}); {_fix(path)}") from None
    if shape != want_shape or dtype != np.dtype(want_dtype):
        raise DataError(f"{str(file)!r} holds {dtype} {shape} but {MANIFEST} says {want_dtype} {want_shape}: "
                        f"the folder changed after it was prepared; {_fix(path)}")
    size, want = file.stat().st_size, offset + int(np.prod(want_shape)) * np.dtype(want_dtype).itemsize
    if size != want:
        what = "truncated" if size < want else "longer than its header says"
        raise DataError(f"{str(file)!r} is {what} ({size} bytes, {want} expected for {want_dtype} {want_shape}); "
                        f"{_fix(path)}")
    if want_shape[0] == 0:
        return np.zeros(want_shape, want_dtype)
    array = np.load(file, mmap_mode=mode)
    advise_random(array)
    return array


def advise_random(array: np.ndarray) -> bool:
    """Tell the kernel that a memory-mapped array is read at random (training gathers shuffled
    rows): no read-ahead around each page fault. Without it, a row of an array larger than the
    page cache pulls in its 128 KB+ neighbourhood from disk, and the data path slows to the disk's
    pace (BENCHMARKS.md, "Data path", the 1M-image row). False where the platform or the array has
    no madvise (then nothing changes)."""
    mapping = getattr(array, "_mmap", None)  # np.memmap's mmap.mmap (numpy keeps it there)
    advice = getattr(mmap, "MADV_RANDOM", None)
    if mapping is None or advice is None or not hasattr(mapping, "madvise"):
        return False
    try:
        mapping.madvise(advice)
    except (OSError, ValueError):
        return False
    return True


def open_prepared(cfg: DataConfig, split: str | None = None, *, mode: str = "r") -> Prepared:
    """The prepared dataset data.root holds for `split`, checked against the config (image_size,
    channels) and against its own dataset.json (array shapes and lengths); memory-mapped with
    `mode` ("r": read-only; "c": copy-on-write, for tensors that must be writable)."""
    split = split or cfg.split
    path = resolve(cfg.root, split)
    m = read_manifest(path)
    source = m.get("source", {})
    if isinstance(source, dict) and not _splitless(source.get("name")) and "split" in source \
            and source["split"] != split and path == Path(cfg.root).expanduser():
        raise DataError(f"{str(path)!r} holds {source.get('name')} ({source['split']}), not the {split!r} split; "
                        f"prepare one folder per split (`dcgan prepare --set data.split={split} --out "
                        f"PARENT/{split}`, and the other into PARENT/{source['split']}) and set data.root=PARENT")
    size, channels, count = int(m["image_size"]), int(m["channels"]), int(m["count"])
    if (size, channels) != (cfg.image_size, cfg.channels):
        raise DataError(f"{str(path)!r} was prepared at {size} px with {channels} channel(s) but the config asks for "
                        f"data.image_size={cfg.image_size}, data.channels={cfg.channels}; set "
                        f"data.image_size={size} data.channels={channels}, or prepare again with these settings "
                        "into another folder")
    if count <= 0:
        raise DataError(f"{str(path)!r} holds no images; {_fix(path)}")
    images = _open_array(path, IMAGES, (count, channels, size, size), "uint8", mode)
    labels = _open_array(path, LABELS, (count,), "int64", mode) if m["labels"] else None
    if not m["labels"] and (path / LABELS).exists():
        raise DataError(f"{str(path)!r} holds {LABELS} but {MANIFEST} says it has no labels; {_fix(path)}")
    if cfg.subset:
        images = images[: cfg.subset]
        labels = labels[: cfg.subset] if labels is not None else None
    return Prepared(path, m, images, labels)


def _splitless(name: Any) -> bool:
    """Whether a source's every split is the same images (no `splits` in its DatasetSpec: an image
    folder, LSUN's lmdb classes), so a prepared copy serves any data.split."""
    return isinstance(name, str) and name in DATASETS and not DATASETS.load(name).splits


def fingerprint(cfg: DataConfig, split: str) -> str:
    """What keys caches of a prepared dataset: its content fingerprint and its files' stat."""
    path = resolve(cfg.root, split)
    m = read_manifest(path)
    facts = [str(m.get("fingerprint"))]
    for name in (IMAGES, LABELS, MANIFEST):
        with contextlib.suppress(OSError):
            st = os.stat(path / name)
            facts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}")
    return hashlib.sha1("\n".join(facts).encode()).hexdigest()
