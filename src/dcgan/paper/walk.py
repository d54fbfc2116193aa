"""Walking in the latent space (paper §6.1, Fig. 4).

"If walking in this latent space results in semantic changes to the image generations (such as
objects being added and removed), we can reason that the model has learned relevant and
interesting representations", and smooth transitions argue against memorisation. Each row goes
from one random z to another. The paper interpolated linearly; spherical interpolation (White
2016, "Sampling Generative Networks") is the later convention: it keeps the norm profile of the
endpoints instead of cutting through the low-norm centre of the prior. Both live in
`dcgan.latent`, which the explorer (`dcgan serve`) interpolates with too.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DCGANError
from ..latent import walk_latents
from ..models import Generator
from ..sampling import generate, save_grid
from .common import Outcome
from .constants import MAX_WALK, WALK_MODES

MODES = WALK_MODES  # the torch-free copy the CLI offers; `latent.MODES` is what interpolate accepts


def walk(G: Generator, *, rows: int = 8, steps: int = 10, seed: int = 0, mode: str = "linear",
         z_dist: str = "uniform", device: torch.device | str = "cpu") -> torch.Tensor:
    """Images (rows * steps, C, S, S) in [-1, 1], one interpolation per row, G in eval mode."""
    z = walk_latents(G.nz, z_dist, rows=rows, steps=steps, seed=seed, mode=mode).to(device)
    return generate(G, z)


def check_walk(rows: int, steps: int) -> None:
    """Refuse a walk grid the code cannot draw, before anything is loaded or generated."""
    if not 1 <= rows <= MAX_WALK:
        raise DCGANError(f"--rows {rows} must be in 1..{MAX_WALK}")
    if not 2 <= steps <= MAX_WALK:
        raise DCGANError(f"--steps {steps} must be in 2..{MAX_WALK} (the two endpoints and the images between)")


def run_walk(G: Generator, z_dist: str, out: str | Path, *, rows: int = 8, steps: int = 10, seed: int = 0,
             modes: tuple[str, ...] = MODES, device: torch.device | str = "cpu") -> Outcome:
    """One grid per mode, all with the same endpoints: out/walk_<mode>.png, or `out` itself when
    it ends in .png and one mode is asked for."""
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise DCGANError(f"walk mode(s) {bad or list(modes)}: use {', '.join(MODES)}")
    check_walk(rows, steps)
    out = Path(out)
    single = out.suffix.lower() == ".png"
    if single and len(modes) > 1:
        raise DCGANError("--mode both writes two figures; give a folder as --out, or pick one --mode")
    figures = {}
    for mode in modes:
        images = walk(G, rows=rows, steps=steps, seed=seed, mode=mode, z_dist=z_dist, device=device)
        figures[mode] = save_grid(images, out if single else out / f"walk_{mode}.png", nrow=steps)
    return Outcome(figures, {"rows": rows, "steps": steps, "seed": seed, "modes": list(modes)})
