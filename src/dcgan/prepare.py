"""Prepared datasets: every image decoded and resized once into a memory-mappable uint8 array.

`dcgan prepare --config CFG --out DIR` reads the config's `data` section (any dataset, an image
folder, LSUN's lmdb), decodes each image once with the transform training uses
(`data.image_transform`: shorter side resized, centre-cropped, 1 or 3 channels) in DataLoader
worker processes on all cores, and writes DIR:

    images.npy    uint8 (N, C, S, S), a plain .npy file: np.load(path, mmap_mode="r") maps it
    labels.npy    int64 (N,), where the source has class labels
    dataset.json  source, settings, count, content fingerprint (sha256 of the arrays), command

dataset.json is written last and atomically: it is the completeness marker, so a folder without
it never reads as a dataset. While decoding, `.progress.json` (also atomic) records how far the
arrays are written; a prepare killed half-way continues from there on the next run with the same
source and settings, and starts over (in its own files only) when they changed. A folder holding
anything else is refused, never written into. Images that cannot be decoded are skipped and
counted (dataset.json: `skipped`, `first_failure`).

Training with `data.name: prepared`, `data.root: DIR` opens the arrays with `open_prepared`:
batches are gathered from the memory map, so no per-file work happens at start-up and memory
does not grow with N (see data.Batches). A DIR may also hold one prepared folder per split
(DIR/train, DIR/test: `--out DIR/<split>`), for datasets whose splits differ.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .config import DataConfig
from .errors import DataError
from .faults import fault_point
from .prepared import (  # noqa: F401  (the format lives with its reader; re-exported here)
    CHUNK,
    FORMAT,
    HASH_BLOCK,
    IMAGES,
    LABELS,
    LOCK,
    MANIFEST,
    PROGRESS,
    PROGRESS_EVERY_S,
    VERSION,
    Prepared,
    _fix,
    _npy_header,
    _open_array,
    _own,
    fingerprint,
    open_prepared,
    read_manifest,
    resolve,
)

log = logging.getLogger(__name__)

# --- writing -----------------------------------------------------------------------------------


def _source_key(cfg: DataConfig, split: str, source_fingerprint: str, n: int) -> dict[str, Any]:
    from .data import dataset_options

    return {"name": cfg.name, "root": os.path.realpath(os.path.expanduser(cfg.root)), "split": split,
            "subset": cfg.subset, "fingerprint": source_fingerprint, "images": n, **dataset_options(cfg)}


def _check_out(out: Path) -> None:
    try:
        if out.exists() and not out.is_dir():
            raise DataError(f"--out {str(out)!r} is a file; pass a folder that is absent or empty")
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise DataError(f"--out {str(out)!r}: {str(parent)!r} is a file, not a folder; pass a path "
                                    "in a folder")
                break
        foreign = sorted(n for n in os.listdir(out) if not _own(n)) if out.is_dir() else []
    except OSError as e:
        raise DataError(f"cannot read --out {str(out)!r} ({e.strerror or e}); pass a readable folder") from None
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise DataError(f"--out {str(out)!r} holds other files ({shown}); pass an absent or empty folder "
                        "(prepare never writes into a folder of other files)")


@contextlib.contextmanager
def _locked(out: Path):
    import fcntl

    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise DataError(f"another `dcgan prepare` is writing {str(out)!r}; wait for it to finish, "
                                "or pass another --out") from None
            raise
        yield
    finally:
        os.close(fd)


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    from .atomic import write_text

    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _shrink_npy(path: Path, rows: int) -> None:
    """Cut a .npy array to its first `rows` rows in place: the header is rewritten at its own
    length (the shape only gets shorter) and the file truncated after the last row."""
    shape, dtype, offset = _npy_header(path)
    if shape[0] == rows:
        return
    header = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                   "shape": (rows, *shape[1:])})
    with open(path, "r+b") as f:
        f.seek(0)
        version = np.lib.format.read_magic(f)
        start = f.tell() + (2 if version == (1, 0) else 4)  # after the header length field
        text = header.ljust(offset - start - 1) + "\n"
        assert len(text) == offset - start
        f.seek(start)
        f.write(text.encode("latin1"))
        f.truncate(offset + rows * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)
        f.flush()
        os.fsync(f.fileno())


def _sha256(path: Path, h: Any) -> None:
    _, _, offset = _npy_header(path)
    with open(path, "rb") as f:
        f.seek(offset)
        while block := f.read(HASH_BLOCK):
            h.update(block)


class _Items:
    """(index, uint8 image or None, label, why it failed) for source indices start..end-1."""

    def __init__(self, source: Any, start: int, end: int) -> None:
        self.source, self.start, self.end = source, start, end

    def __len__(self) -> int:
        return self.end - self.start

    def __getitem__(self, k: int):
        from .data import _item_name, _reason

        i = self.start + k
        try:
            image, label = self.source[i]
            return i, image, int(label) if label is not None else -1, None
        except Exception as e:  # truncated or damaged file, I/O error: skipped and counted
            return i, None, -1, f"{_item_name(self.source, i)}: {_reason(e)}"


def _collate(items):
    return items


def _workers(requested: int) -> int:
    if requested >= 0:
        return requested
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cpus if cpus > 1 else 0


def _source(cfg: DataConfig, split: str):
    from .data import build_source, dataset_spec

    if dataset_spec(cfg.name).arrays is not None:
        raise DataError(f"data.name={cfg.name} is already prepared; set data.name to the source (e.g. folder or "
                        "lsun) and data.root to its files in the config given to `dcgan prepare`")
    # in_memory=never: no start-up check of every file (an image folder's): prepare decodes each once anyway
    return build_source(dataclasses.replace(cfg, in_memory="never"), split)


def _has_labels(source: Any) -> bool:
    """Whether the source yields class labels: known ones (targets), or several classes (LSUN's)."""
    from .data import _labels

    return _labels(source) is not None or len(getattr(source, "classes", ())) > 1


def prepare(cfg: DataConfig, out: str | Path, *, workers: int = -1, command: str = "",
            progress: bool = True) -> dict[str, Any]:
    """Decode `cfg`'s split into `out` (see the module docstring); returns dataset.json's content.

    Resumes an unfinished prepare of the same source and settings in `out`; a complete one of the
    same source is left as it is (nothing to do); anything else in `out` is refused."""
    from .data import data_fingerprint

    out = Path(out).expanduser()
    split = cfg.split
    _check_out(out)
    source = _source(cfg, split)
    n = min(len(source), cfg.subset) if cfg.subset else len(source)
    if n == 0:
        raise DataError(f"{cfg.name} ({split}) under {cfg.root!r} holds no images; check data.root and data.split")
    key = _source_key(cfg, split, data_fingerprint(dataclasses.replace(cfg, subset=0), split), n)
    settings = {"image_size": cfg.image_size, "channels": cfg.channels}
    if (out / MANIFEST).is_file():
        m = read_manifest(out)
        if m.get("source") == key and all(m.get(k) == v for k, v in settings.items()):
            log.info("%s already holds this dataset, prepared (%d images); nothing to do", out, m["count"])
            return m
        raise DataError(f"--out {str(out)!r} already holds a prepared dataset ({m.get('source', {}).get('name')} "
                        f"under {m.get('source', {}).get('root')!r}, {m.get('image_size')} px); pass another "
                        "--out, or delete it to prepare it again")
    shape = (n, cfg.channels, cfg.image_size, cfg.image_size)
    labelled = _has_labels(source)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        _check_out(out)  # again, under the lock
        state, images, labels = _open_arrays(out, key, settings, shape, labelled)
        if state["next"] < n:
            _decode_into(source, out, state, images, labels, workers=workers, progress=progress)
        del images, labels  # unmap before the files are cut
        return _finish(out, state, shape, labelled, command)


def _open_arrays(out: Path, key: dict, settings: dict, shape: tuple[int, ...], labelled: bool):
    """(progress state, images, labels) to write into: an unfinished prepare's, or new ones."""
    state = _resume_state(out, key, settings, shape, labelled)
    if state is not None:
        log.info("continuing the unfinished prepare in %s at image %d of %d", out, state["next"], shape[0])
        images = np.lib.format.open_memmap(out / IMAGES, mode="r+")
        return state, images, np.lib.format.open_memmap(out / LABELS, mode="r+") if labelled else None
    for name in (PROGRESS, IMAGES, LABELS):  # start over, in our own files only
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    n = shape[0]
    need = int(np.prod(shape)) + (8 * n if labelled else 0)
    free = shutil.disk_usage(out).free
    if need > free:
        raise DataError(f"--out {str(out)!r} needs {need / 1e9:.2f} GB but its disk has {free / 1e9:.2f} GB "
                        "free; free space or pass --out on a larger disk")
    state = {"key": key, "settings": settings, "next": 0, "written": 0, "skipped": 0,
             "first_failure": None, "seconds": 0.0}
    images = np.lib.format.open_memmap(out / IMAGES, mode="w+", dtype=np.uint8, shape=shape)
    labels = np.lib.format.open_memmap(out / LABELS, mode="w+", dtype=np.int64, shape=(n,)) if labelled else None
    _write_json(out / PROGRESS, state)
    return state, images, labels


def _decode_into(source: Any, out: Path, state: dict, images: np.ndarray, labels: np.ndarray | None, *,
                 workers: int, progress: bool) -> None:
    """Decode the source's images from state["next"] on into the arrays, in DataLoader workers,
    recording progress at most once a second (and at the end) so a killed prepare resumes."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from .data import _one_line_errors

    n = images.shape[0]
    started, t_saved = time.monotonic(), time.monotonic()
    base_seconds = state["seconds"]
    loader = DataLoader(_Items(source, state["next"], n), batch_size=CHUNK, shuffle=False,
                        num_workers=_workers(workers), collate_fn=_collate)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the work is in the workers (PIL), not in torch's threads
    bar = tqdm(total=n, initial=state["next"], unit="img", desc=f"prepare {out.name}", disable=not progress,
               mininterval=1.0, smoothing=0.1, dynamic_ncols=True)
    try:
        with bar:
            for items in _one_line_errors(loader):
                _write_chunk(items, state, images, labels)
                fault_point("prepare-chunk")  # (tests) rows written, progress not yet: the worst spot
                now = time.monotonic()
                if now - t_saved >= PROGRESS_EVERY_S or state["next"] == n:
                    images.flush()
                    if labels is not None:
                        labels.flush()
                    state["seconds"] = base_seconds + now - started
                    _write_json(out / PROGRESS, state)
                    t_saved = now
                bar.update(len(items))
                bar.set_postfix(skipped=state["skipped"], refresh=False)
    finally:
        torch.set_num_threads(threads)


def _write_chunk(items: list, state: dict, images: np.ndarray, labels: np.ndarray | None) -> None:
    """Append a chunk's decoded images (and labels) after the rows written so far; count the failures."""
    import torch

    good = [(img, lab) for _, img, lab, _ in items if img is not None]
    w = state["written"]
    if good:
        images[w:w + len(good)] = torch.stack([img for img, _ in good]).numpy()
        if labels is not None:
            labels[w:w + len(good)] = [lab for _, lab in good]
    failed = [why for _, img, _, why in items if img is None]
    for why in failed:
        log.warning("skipping undecodable image %s", why)
    state["written"] = w + len(good)
    state["skipped"] += len(failed)
    state["first_failure"] = state["first_failure"] or (failed[0] if failed else None)
    state["next"] = items[-1][0] + 1


def _resume_state(out: Path, key: dict, settings: dict, shape: tuple[int, ...], labelled: bool) -> dict | None:
    """The progress record of an unfinished prepare of the same source and settings, or None."""
    try:
        state = json.loads((out / PROGRESS).read_text())
        if state.get("key") != key or state.get("settings") != settings:
            log.info("the unfinished prepare in %s was of another source or settings; starting over", out)
            return None
        got, dtype, _ = _npy_header(out / IMAGES)
        rows_ok = got == shape or (state["next"] == shape[0] and got == (state["written"], *shape[1:]))
        if not rows_ok or dtype != np.uint8 or labelled != (out / LABELS).is_file():
            return None
        if not 0 <= state["written"] <= state["next"] <= shape[0]:
            return None
        return state
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SyntaxError):
        return None


def _finish(out: Path, state: dict, shape: tuple[int, ...], labelled: bool, command: str) -> dict[str, Any]:
    n, written = shape[0], state["written"]
    if written == 0:
        for name in (PROGRESS, IMAGES, LABELS, LOCK):
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
        with contextlib.suppress(OSError):
            out.rmdir()
        raise DataError(f"none of the {n} images could be decoded (first: {state['first_failure']}); check that "
                        "they are valid images, or set data.root to another folder")
    _shrink_npy(out / IMAGES, written)
    if labelled:
        _shrink_npy(out / LABELS, written)
    h = hashlib.sha256()
    _sha256(out / IMAGES, h)
    if labelled:
        _sha256(out / LABELS, h)
    size = sum((out / f).stat().st_size for f in (IMAGES, LABELS) if (out / f).exists())
    seconds = max(state["seconds"], 1e-9)
    manifest = {
        "format": FORMAT, "version": VERSION,
        "source": state["key"], **state["settings"],
        "count": written, "skipped": state["skipped"], "first_failure": state["first_failure"],
        "labels": labelled, "dtype": "uint8", "shape": [written, *shape[1:]],
        "fingerprint": "sha256:" + h.hexdigest(), "bytes": size,
        "seconds": round(seconds, 3), "images_per_second": round(n / seconds, 1),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    _write_json(out / MANIFEST, manifest)  # last: from here on the folder reads as complete
    for name in (PROGRESS, LOCK):
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    if state["skipped"]:
        log.warning("skipped %d undecodable of %d images (first: %s)", state["skipped"], n, state["first_failure"])
    return manifest


def verify(out: str | Path) -> dict[str, Any]:
    """Check a prepared folder in full: its arrays against dataset.json (shapes, lengths) and their
    bytes against its content fingerprint (reads every byte: for a copy, e.g. one per machine)."""
    out = Path(out).expanduser()
    path = resolve(out, "")
    m = read_manifest(path)
    count, c, s = int(m["count"]), int(m["channels"]), int(m["image_size"])
    _open_array(path, IMAGES, (count, c, s, s), "uint8", "r")
    if m["labels"]:
        _open_array(path, LABELS, (count,), "int64", "r")
    h = hashlib.sha256()
    for name in (IMAGES, LABELS) if m["labels"] else (IMAGES,):
        _sha256(path / name, h)
    if "sha256:" + h.hexdigest() != m.get("fingerprint"):
        raise DataError(f"the arrays in {str(path)!r} do not match the fingerprint in {MANIFEST} (changed or "
                        f"damaged after prepare, or a partial copy); copy it again, or {_fix(path)}")
    return m
