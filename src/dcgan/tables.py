"""The project's name -> implementation tables that the config names, each declared once.

    LOSSES         train.loss        dcgan.losses.objectives (a Loss class per entry)
    AUGMENTATIONS  train.augment     dcgan.augment (a function (images, generator) -> images)
    D_NORMS        model.d_norm      dcgan.models (a DNorm: BN in D or not, and what wraps each conv)

Config validation, `dcgan train --help` and the tests read these tables, and nothing else names
their entries: adding one is an implementation and one `register` line here (or, from outside the
package, `TABLE.register(...)` before the config is loaded). Targets are "module:attribute"
strings, imported on first use, so the config reads the tables without importing torch. The
evaluation metrics have their own table of the same kind, `dcgan.metrics.registry.METRICS`.
"""

from __future__ import annotations

from .registry import Registry

LOSSES: Registry = Registry("loss")
_L = "dcgan.losses.objectives"
LOSSES.register("bce", f"{_L}:NonSaturating", "the paper: BCE on logits, G non-saturating; Goodfellow et al. 2014")
LOSSES.register("hinge", f"{_L}:Hinge", "Lim & Ye 2017; Miyato et al. 2018")
LOSSES.register("lsgan", f"{_L}:LeastSquares", "least squares, 0-1 coding; Mao et al. 2017")
LOSSES.register("rpgan", f"{_L}:RelativisticPairing",
                "relativistic pairing softplus(D(fake) - D(real)); Jolicoeur-Martineau 2018, R3GAN 2024")
LOSSES.register("wgan_gp", f"{_L}:WassersteinGP",
                "Wasserstein loss + gradient penalty 10 on interpolates; Gulrajani et al. 2017")

AUGMENTATIONS: Registry = Registry("augmentation")
_A = "dcgan.augment"
AUGMENTATIONS.register("color", f"{_A}:color", "brightness, saturation, contrast; DiffAugment, Zhao et al. 2020")
AUGMENTATIONS.register("translation", f"{_A}:translation", "shift by up to 1/8 of the size, zero-padded")
AUGMENTATIONS.register("cutout", f"{_A}:cutout", "zero a square of half the size")

D_NORMS: Registry = Registry("D normalisation")
_M = "dcgan.models"
D_NORMS.register("batch", f"{_M}:BATCH_NORM", "the paper: BatchNorm after every conv but the first")
D_NORMS.register("spectral", f"{_M}:SPECTRAL_NORM", "spectral norm of every conv, no BN; Miyato et al. 2018")
D_NORMS.register("none", f"{_M}:NO_NORM", "no normalisation in D (an ablation; WGAN-GP's D)")

# config key -> the table its values come from (a list-valued key takes any of the entries)
CONFIG_TABLES: dict[str, Registry] = {"train.loss": LOSSES, "train.augment": AUGMENTATIONS,
                                      "model.d_norm": D_NORMS}
