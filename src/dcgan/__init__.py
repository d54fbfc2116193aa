"""dcgan: the DCGAN paper (Radford, Metz, Chintala 2016), reproduced in PyTorch.

Layers, bottom to top (tests/test_layout.py holds the imports to them): `config` and the
tables (`tables`, `formats`, `metrics.registry`); `models` (G and D, §3) and `data`; `gan`
and `losses` (one training iteration), `sampling` and `latent` (walks, arithmetic, Fig. 7);
`loop` (the training loop); `train` (the command around it), `metrics`, `paper` (the
experiments) and `share` (export, the explorer); and the CLI in `cli`. Importing the package
does nothing but define these: `from dcgan import Generator` imports torch only when asked for.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Discriminator", "Generator", "__version__"]


def __getattr__(name: str) -> Any:
    """`dcgan.Generator` / `dcgan.Discriminator`, imported on first use (torch is slow to import)."""
    if name in ("Generator", "Discriminator"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'dcgan' has no attribute {name!r}")
