"""The GAN losses: `LOSSES` (declared in `dcgan.tables`) is what `train.loss` takes.

Each entry names a `Loss` class in `dcgan.losses.objectives`. A loss sees D and the real and
fake batches, so it can hold a gradient penalty of its own (WGAN-GP); the zero-centred
penalties R1 and R2 work with any loss (`train.r1_gamma`, `train.r2_gamma`, see
`dcgan.losses.objectives.zero_centred_penalty`).
"""

from __future__ import annotations

from ..tables import LOSSES

__all__ = ["LOSSES", "build_loss"]


def build_loss(name: str):
    """A fresh loss object for `train.loss`."""
    return LOSSES.load(name)()
