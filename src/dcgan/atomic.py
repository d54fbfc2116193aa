"""Atomic file writes: every file the project writes appears whole or not at all.

One helper, `atomic_write`: the content goes to a temporary file in the same folder, is
flushed to disk, then renamed over the target (a rename within one file system is atomic).
A crash, a full disk or Ctrl-C mid-write leaves the old file (or none), never a torn one.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import DCGANError


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of `path` for writing; on success fsync it and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call `write(file)` on a temporary binary file, then move it to `path` atomically."""
    with atomic_open(path, "wb") as f:
        write(f)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def torch_save(obj: Any, path: str | Path) -> Path:
    """`torch.save` atomically. The object is serialised in memory first and the bytes written
    here, so a full disk is a plain OSError (torch's own writer raises RuntimeError)."""
    import io

    import torch

    buffer = io.BytesIO()
    buffer.name = str(path)  # what the bytes are for, as on a real file (error messages, test fakes)
    torch.save(obj, buffer)
    return atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def save_cache(obj: Any, path: str | Path, what: str) -> Path | None:
    """`torch_save` a cache file (statistics, a trained feature network); a read-only or full cache
    folder costs time, not the run: warn that `what` will be computed again next time, return None."""
    try:
        return torch_save(obj, path)
    except OSError as e:
        logging.getLogger("dcgan").warning("could not cache the %s at %s (%s); it will be computed again next "
                                           "time", what, path, e.strerror or type(e).__name__)
        return None


def load_cache(path: str | Path) -> dict[str, Any]:
    """The dict `save_cache` wrote, loaded without running code (`weights_only`). Raises for an
    unreadable or torn file, a pickle that would run code, or a file that holds something else
    than a dict (a bare tensor, a list): callers turn that into their own one-line error."""
    import torch

    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict):  # e.g. a bare tensor: indexing it with a string would not be a lookup
        raise TypeError(f"a {type(blob).__name__}, not a dict")
    return blob


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """A matplotlib figure as PNG, atomically (the format is given, the temp name has no suffix)."""
    kwargs.setdefault("format", "png")
    return atomic_write(path, lambda f: fig.savefig(f, **kwargs))


def check_output_file(path: str | Path, option: str) -> Path:
    """A one-line error, before anything is computed or written, when `path` cannot become a
    file: it is a folder, or a file stands where one of its parent folders should be."""
    path = Path(path)
    if path.is_dir():
        raise DCGANError(f"{option} {str(path)!r} is a folder; pass a file path")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DCGANError(f"{option} {str(path)!r}: {str(parent)!r} is a file, not a folder; "
                                 "pass a path in a folder")
            break
    return path
