"""The GAN losses, declared once: `LOSSES` is what `train.loss` takes.

Each entry names a `Loss` class in `dcgan.losses.objectives` (imported on first use, so the
config and `--help` read this table without importing torch). A loss sees D and the real and
fake batches, so it can hold a gradient penalty of its own (WGAN-GP); the zero-centred
penalties R1 and R2 work with any loss (`train.r1_gamma`, `train.r2_gamma`, see
`dcgan.losses.objectives.zero_centred_penalty`).
"""

from __future__ import annotations

from ..registry import Registry

LOSSES: Registry = Registry("loss")
_IMPL = "dcgan.losses.objectives"

LOSSES.register("bce", f"{_IMPL}:NonSaturating",
                "the paper: BCE on logits, G non-saturating; Goodfellow et al. 2014")
LOSSES.register("hinge", f"{_IMPL}:Hinge", "Lim & Ye 2017; Miyato et al. 2018")
LOSSES.register("lsgan", f"{_IMPL}:LeastSquares", "least squares, 0-1 coding; Mao et al. 2017")
LOSSES.register("rpgan", f"{_IMPL}:RelativisticPairing",
                "relativistic pairing softplus(D(fake) - D(real)); Jolicoeur-Martineau 2018, R3GAN 2024")
LOSSES.register("wgan_gp", f"{_IMPL}:WassersteinGP",
                "Wasserstein loss + gradient penalty 10 on interpolates; Gulrajani et al. 2017")


def build_loss(name: str):
    """A fresh loss object for `train.loss`."""
    return LOSSES.load(name)()
