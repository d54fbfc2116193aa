"""Walking in the latent space (paper §6.1, Fig. 4).

"If walking in this latent space results in semantic changes to the image generations (such as
objects being added and removed), we can reason that the model has learned relevant and
interesting representations", and smooth transitions argue against memorisation. Each row goes
from one random z to another. The paper interpolated linearly; spherical interpolation (White
2016, "Sampling Generative Networks") is the later convention: it keeps the norm profile of the
endpoints instead of cutting through the low-norm centre of the prior.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..models import Generator
from ..sampling import generate, noise, save_grid

MODES = ("linear", "spherical")


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(nz,), (nz,), (T,) -> (T, nz) on the segment z0 -> z1."""
    t = t[:, None].to(z0)
    return (1 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(nz,), (nz,), (T,) -> (T, nz) along the great circle from z0 to z1 (norms interpolated).

    Falls back to `lerp` for (anti)parallel endpoints, where the great circle is undefined.
    """
    t = t[:, None].to(z0)
    cos = torch.dot(z0 / z0.norm(), z1 / z1.norm()).clamp(-1, 1)
    omega = torch.arccos(cos)
    so = torch.sin(omega)
    if so.abs() < 1e-6:
        return lerp(z0, z1, t[:, 0])
    return torch.sin((1 - t) * omega) / so * z0 + torch.sin(t * omega) / so * z1


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int, mode: str = "linear") -> torch.Tensor:
    """`steps` points from z0 to z1 inclusive: (steps, nz); the first is z0 and the last z1."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    t = torch.linspace(0, 1, steps)
    z = (lerp if mode == "linear" else slerp)(z0, z1, t)
    z[0], z[-1] = z0, z1  # exact endpoints (no rounding in the trigonometry)
    return z


def walk_latents(nz: int, dist: str, *, rows: int = 8, steps: int = 10, seed: int = 0,
                 mode: str = "linear") -> torch.Tensor:
    """(rows * steps, nz): row r walks from the r-th to the (rows + r)-th z of `noise(2 * rows)`."""
    ends = noise(2 * rows, nz, dist, seed)
    return torch.cat([interpolate(ends[r], ends[rows + r], steps, mode) for r in range(rows)])


def walk(G: Generator, *, rows: int = 8, steps: int = 10, seed: int = 0, mode: str = "linear",
         z_dist: str = "uniform", device: torch.device | str = "cpu") -> torch.Tensor:
    """Images (rows * steps, C, S, S) in [-1, 1], one interpolation per row, G in eval mode."""
    z = walk_latents(G.nz, z_dist, rows=rows, steps=steps, seed=seed, mode=mode).to(device)
    return generate(G, z)


def save_walks(G: Generator, out_dir: str | Path, *, rows: int = 8, steps: int = 10, seed: int = 0,
               modes: tuple[str, ...] = MODES, z_dist: str = "uniform",
               device: torch.device | str = "cpu") -> dict[str, Path]:
    """One grid per mode, out_dir/walk_<mode>.png; the same endpoints in every mode."""
    out = {}
    for mode in modes:
        images = walk(G, rows=rows, steps=steps, seed=seed, mode=mode, z_dist=z_dist, device=device)
        out[mode] = save_grid(images, Path(out_dir) / f"walk_{mode}.png", nrow=steps)
    return out
