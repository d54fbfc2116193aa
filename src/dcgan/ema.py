"""An exponential moving average of G's weights (Yazici et al. 2019, "The unusual effectiveness
of averaging in GAN training"): beyond the paper, off by default (`train.ema`, `train.ema_kimg`).

The averaged G is a second copy of the generator, updated after every training step:
    w_ema <- beta_t * w_ema + (1 - beta_t) * w
with `train.ema` a per-step decay and its warm-up, beta_t = min(decay, (1 + t) / (10 + t)), or
with `train.ema_kimg` a half-life stated in images (StyleGAN2), the same at every batch size
(`ema_beta`). The warm-up or ramp-up keeps early averages from being dominated by the init. BatchNorm's
running mean and variance are averaged the same way (they belong to the averaged weights),
and the step counter is copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_copy(G: nn.Module) -> nn.Module:
    """A frozen copy of G to average into."""
    return copy.deepcopy(G).requires_grad_(False)


def ema_decay(decay: float, step: int) -> float:
    return min(decay, (1 + step) / (10 + step))


def ema_beta(*, decay: float, kimg: float, rampup: float, step: int, images_per_step: int) -> float:
    """The averaging weight after step `step` (0-based). With `kimg` > 0 (StyleGAN2's ema_kimg) the
    average has a half-life of kimg thousand images, at most `rampup` times the images seen before
    this step when rampup > 0, so it means the same at every batch size:
        beta = 0.5 ** (images_per_step / half_life_images)
    Otherwise the per-step `decay` with its warm-up (`ema_decay`)."""
    if kimg > 0:
        half_life = kimg * 1000
        if rampup > 0:
            half_life = min(half_life, step * images_per_step * rampup)
        return 0.5 ** (images_per_step / max(half_life, 1e-8))
    return ema_decay(decay, step)


@torch.no_grad()
def ema_update(G_ema: nn.Module, G: nn.Module, decay: float) -> None:
    """Move G_ema towards G by (1 - decay), for the parameters and floating-point buffers."""
    params = list(G_ema.parameters())
    torch._foreach_lerp_(params, [p.detach() for p in G.parameters()], 1.0 - decay)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        if b.is_floating_point():
            b_ema.lerp_(b, 1.0 - decay)
        else:
            b_ema.copy_(b)


@torch.no_grad()
def recompute_bn_stats(G: nn.Module, *, z_dist: str = "uniform", batch_size: int = 128, num_batches: int = 50,
                       seed: int = 0) -> nn.Module:
    """Re-estimate G's BatchNorm running statistics for its current weights: reset them, then run
    `num_batches` batches of seeded z through G in train mode with a cumulative average
    (momentum=None), as for averaged weights whose averaged statistics belong to no single G.
    Returns G in eval mode."""
    from .models import sample_z

    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    g = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    G.train()
    for _ in range(num_batches):
        G(sample_z(batch_size, G.nz, z_dist, generator=g).to(device))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    return G.eval()
