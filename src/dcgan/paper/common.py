"""Shared helpers of the paper experiments: the result type, loading a checkpoint, the latent
vectors of a numbered grid."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import load_models
from ..config import Config
from ..errors import DCGANError
from ..models import Discriminator, Generator
from ..sampling import noise


@dataclass
class Outcome:
    """What an experiment returns: the files it wrote and its numbers and picks (JSON-able)."""

    figures: dict[str, Path] = field(default_factory=dict)  # name -> file written
    results: dict[str, Any] = field(default_factory=dict)


def load(checkpoint: str | Path, device: torch.device | str = "cpu"
         ) -> tuple[Generator, Discriminator | None, Config]:
    """G and D (eval mode) and the config of a checkpoint file, a run directory or an export
    (D is None for an export made without --with-discriminator: see `require_discriminator`)."""
    G, D, cfg, _ = load_models(checkpoint, device)
    return G.eval(), None if D is None else D.eval(), cfg


def latents(cfg: Config, *, seed: int = 0, num: int = 64, z_file: str | Path | None = None,
            device: torch.device | str = "cpu") -> torch.Tensor:
    """The z of a `dcgan sample` grid: read from `--save-z` output, or regenerated from its seed.

    `noise(num, nz, dist, seed)` is exactly what `dcgan sample --seed S --num N` draws, so the
    same (seed, num) names the same samples.
    """
    if z_file is not None:
        p = Path(z_file)
        if not p.is_file():
            raise DCGANError(f"z file {str(p)!r} not found; write one with `dcgan sample --save-z FILE`")
        try:
            z = torch.load(p, map_location="cpu", weights_only=True)
        except Exception:
            raise DCGANError(f"{str(p)!r} is not a saved tensor; write one with `dcgan sample --save-z FILE`") from None
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != cfg.model.nz:
            raise DCGANError(f"{str(p)!r} does not hold an (N, {cfg.model.nz}) z tensor for this "
                             "checkpoint; save it with `dcgan sample --save-z` from the same checkpoint")
        z = z.float()
        if not torch.isfinite(z).all():
            raise DCGANError(f"--z {str(p)!r} holds NaN or infinite values; save the grid's z again with "
                             "`dcgan sample --save-z FILE`")
        return z.to(device)
    if num <= 0:
        raise DCGANError(f"--num {num} must be > 0")
    return noise(num, cfg.model.nz, cfg.model.z_dist, seed, device)


def parse_indices(text: str, n: int, what: str) -> list[int]:
    """'3,17,42' -> [3, 17, 42], each checked against the n samples of the grid."""
    try:
        idx = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise DCGANError(f"{what} {text!r} is not a comma-separated list of sample numbers, e.g. 3,17,42") from None
    if not idx:
        raise DCGANError(f"{what} is empty; name sample numbers from the numbered grid, e.g. 3,17,42")
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise DCGANError(f"{what}: sample number(s) {bad} outside the grid of {n}; use 0..{n - 1} "
                         "(or the same --num as `dcgan sample`)")
    return idx


def tile_grid(images: torch.Tensor, ncol: int, pad: int = 2) -> tuple[np.ndarray, list[float], list[float]]:
    """Images in [-1, 1] (N, C, S, S) -> an RGB grid for `imshow` (white gaps of `pad` px) and the
    x and y pixel coordinates of the column and row centres (where axis labels go)."""
    from torchvision.utils import make_grid

    n, S = images.shape[0], images.shape[-1]
    grid = make_grid(((images.detach().float().cpu() + 1) / 2).clamp(0, 1), nrow=ncol, padding=pad,
                     pad_value=1.0)  # (3, H, W) even for 1 channel
    centres = [pad + i * (S + pad) + (S - 1) / 2 for i in range(max(ncol, -(-n // ncol)))]
    return grid.permute(1, 2, 0).numpy(), centres[:ncol], centres[: -(-n // ncol)]
