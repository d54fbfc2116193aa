"""Device choice: one function, below everything that needs a device."""

from __future__ import annotations

import torch

from .errors import DCGANError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto`: CUDA (the process's local GPU), then Apple's MPS, then CPU; else the named device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DCGANError(f"device {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DCGANError(f"device {name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DCGANError(f"device {name!r} but CUDA is not available here; use auto or cpu")
    if dev.type == "mps" and not _mps_available():
        raise DCGANError(f"device {name!r} but MPS is not available here; use auto or cpu")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    if dev.type == "cuda" and dev.index >= torch.cuda.device_count():
        raise DCGANError(f"device {name!r} but this machine has {torch.cuda.device_count()} GPU(s); "
                         f"use cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return dev
