"""The numbered sample grid the other experiments refer to (what `dcgan sample --numbered` draws).

Samples are named by their index on this grid (the arithmetic's exemplars, the marked samples
of the forgetting experiment), so the grid and its z are written together.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..atomic import torch_save
from ..models import Generator
from ..sampling import generate, noise, save_numbered_grid
from .common import Outcome


def run_samples(G: Generator, z_dist: str, out_dir: str | Path, *, num: int = 100, seed: int = 0,
                nrow: int = 10, device: torch.device | str = "cpu") -> Outcome:
    """`num` samples from `noise(num, nz, z_dist, seed)` (G in eval mode) -> out_dir/samples_numbered.png
    and their z as out_dir/samples_z.pt (what `dcgan sample --save-z` writes)."""
    out = Path(out_dir)
    z = noise(num, G.nz, z_dist, seed, device)
    grid = save_numbered_grid(generate(G, z), out / "samples_numbered.png", nrow=nrow)
    z_file = torch_save(z.cpu(), out / "samples_z.pt")
    return Outcome({"grid": grid}, {"num": num, "seed": seed, "nrow": nrow, "z_file": z_file.name})
