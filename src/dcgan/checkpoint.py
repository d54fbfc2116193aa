"""Checkpoints: one plain dict of tensors and Python values, written atomically.

Contents: `G`, `D` (state dicts), `opt_G`, `opt_D` (Adam states), `step`, `epoch`, `batch`
(the position in the data stream), `rng` (torch's CPU and CUDA states), `fixed_z` (the
grid noise), `config` (the resolved config as a dict) and `meta` (versions, image shape).
Everything loads with `torch.load(path, weights_only=True)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .atomic import torch_save
from .config import Config, from_dict
from .errors import CheckpointError, DCGANError
from .formats import reader
from .models import (
    Discriminator,
    Generator,
    build_models,
    check_finite,  # noqa: F401 (re-exported)
    load_state,  # noqa: F401 (re-exported: the loaders' one-line errors)
    load_weights,
)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write `state` to `path` atomically (temp file, fsync, rename): the old file or the new
    one, never a torn one. A full disk or a read-only folder is a one-line error."""
    path = Path(path)
    try:
        return torch_save(state, path)
    except OSError as e:
        raise CheckpointError(f"could not write checkpoint {str(path)!r} ({e.strerror or e}); the previous "
                              "checkpoints are intact: free disk space or make the folder writable, then "
                              "resume the run") from None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory -> its newest checkpoint: checkpoints/last.pt, or the
    highest checkpoints/step-N.pt when a run was killed during its first save of last.pt."""
    p = Path(path).expanduser()
    if p.is_dir():
        ckdir = p / "checkpoints"
        p = ckdir / "last.pt"
        if not p.is_file() and ckdir.is_dir():
            steps = [(int(q.stem[5:]), q) for q in ckdir.glob("step-*.pt") if q.stem[5:].isdigit()]
            if steps:
                p = max(steps)[1]
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} not found; pass a .pt file or a run directory "
                              "that has checkpoints/last.pt")
    return p


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *,
                    resume: bool = False) -> dict[str, Any]:
    """The checkpoint dict at `path` (a file or a run directory), loaded without running code;
    `resume`: also check that it holds the training state a resume restores."""
    p = resolve_checkpoint(path)
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{str(p)!r} is not a readable checkpoint ({type(e).__name__}); "
                              "pass a file written by `dcgan train`") from None
    if not isinstance(ckpt, dict) or not {"G", "D", "config"} <= set(ckpt):
        raise CheckpointError(f"{str(p)!r} is not a dcgan checkpoint (no G/D/config); "
                              "pass a file written by `dcgan train`")
    if resume:
        check_resumable(ckpt, p)
    return ckpt


def checkpoint_config(ckpt: dict[str, Any]) -> Config:
    try:
        return from_dict(ckpt["config"])
    except DCGANError as e:
        raise CheckpointError(f"the checkpoint's config is not valid for this version: {e}") from None


# What `dcgan train --resume` needs besides G, D and config (see the module docstring).
RESUME_KEYS = ("opt_G", "opt_D", "step", "epoch", "batch", "rng", "fixed_z")


def check_resumable(ckpt: dict[str, Any], path: str | Path) -> None:
    """A one-line error when `ckpt` lacks the training state a resume restores."""
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{str(path)!r} holds no training state (keys missing: {', '.join(missing)}); "
                              "it can be sampled but not resumed")


def load_models(path: str | Path, device: str | torch.device = "cpu", cfg: Config | None = None,
                *, ema: bool = True) -> tuple[Generator, Discriminator | None, Config, dict[str, Any]]:
    """Rebuild G and D from a checkpoint (with its own config unless one is given).

    A run trained with `train.ema` holds an averaged G too: that is the G returned unless
    `ema=False` asks for the raw one (the last weights the optimiser wrote).

    `path` may also be a folder written by `dcgan export`, read by its format's reader (the
    export-format table, `dcgan.formats`): G, and D when it was exported with
    --with-discriminator (else None; see `require_discriminator`); the dict then holds the
    run's facts (`step`, `epoch`, `config`, `best`, `meta`) instead of the training state.
    Either way the weights go through `models.load_weights` (strict, finite).
    """
    fmt = reader(path)
    if fmt is not None:
        return fmt.code("read")(path, device, cfg, ema=ema)
    ckpt = load_checkpoint(path)
    cfg = cfg or checkpoint_config(ckpt)
    G, D = build_models(cfg.model, cfg.data.image_size, cfg.data.channels)
    use_ema = ema and "G_ema" in ckpt
    load_weights(G, ckpt["G_ema"] if use_ema else ckpt["G"], "G_ema" if use_ema else "G", path)
    load_weights(D, ckpt["D"], "D", path)
    return G.to(device), D.to(device), cfg, ckpt


def require_discriminator(D: Discriminator | None, source: str | Path) -> Discriminator:
    """D from `load_models`, or a one-line error when `source` is an export made without it."""
    if D is None:
        raise CheckpointError(f"{str(source)!r} was exported without the discriminator, which this command "
                              "needs; re-export it with `dcgan export --with-discriminator` or pass the "
                              "run's checkpoint")
    return D
