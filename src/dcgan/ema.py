"""An exponential moving average of G's weights (Yazici et al. 2019, "The unusual effectiveness
of averaging in GAN training"): beyond the paper, off by default (`train.ema`).

The averaged G is a second copy of the generator, updated after every training step:
    w_ema <- decay_t * w_ema + (1 - decay_t) * w,   decay_t = min(decay, (1 + t) / (10 + t))
The warm-up term keeps early averages from being dominated by the random init. BatchNorm's
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
