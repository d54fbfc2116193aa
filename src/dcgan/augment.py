"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same random, differentiable transformations are applied to every image D sees, real and
fake, in D's step and in G's step, so D cannot overfit a small training set while G still
gets gradients through the augmentation. Beyond the paper: off by default (`train.augment`).

The three policies of the reference implementation, on images in [-1, 1] (B, C, H, W):
    color        brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5]
    translation  shift by up to 1/8 of the size, zero-padded
    cutout       zero a square of half the size at a random place
Randomness comes from the `generator` passed in (the training step's per-step noise
generator), so a resumed run draws the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .tables import AUGMENTATIONS


def _rand(x: torch.Tensor, g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(x.shape[0], *shape, generator=g, device=g.device).to(x.dtype)


def color(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    x = x + (_rand(x, g, 1, 1, 1) - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(x, g, 1, 1, 1) * 2) + mean  # saturation (a no-op on one channel)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, g, 1, 1, 1) + 0.5) + mean  # contrast


def translation(x: torch.Tensor, g: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), generator=g, device=g.device).to(x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), generator=g, device=g.device).to(x.device)
    yy = torch.arange(h, device=x.device).view(1, h, 1) + dy + 1  # +1: index into the padded image
    xx = torch.arange(w, device=x.device).view(1, 1, w) + dx + 1
    yy, xx = yy.clamp(0, h + 1).expand(b, h, w), xx.clamp(0, w + 1).expand(b, h, w)
    padded = F.pad(x, (1, 1, 1, 1))  # (B, C, H+2, W+2); out-of-range positions read the zero border
    bidx = torch.arange(b, device=x.device).view(b, 1, 1).expand(b, h, w)
    return padded.permute(0, 2, 3, 1)[bidx, yy, xx].permute(0, 3, 1, 2).contiguous(memory_format=_fmt(x))


def cutout(x: torch.Tensor, g: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=g, device=g.device).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=g, device=g.device).to(x.device)
    yy = torch.arange(h, device=x.device).view(1, h, 1)
    xx = torch.arange(w, device=x.device).view(1, 1, w)
    y0, x0 = cy - ch // 2, cx - cw // 2  # the square may reach past the border: it is clipped
    inside = (yy >= y0) & (yy < y0 + ch) & (xx >= x0) & (xx < x0 + cw)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def _fmt(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1 \
        else torch.contiguous_format


def diff_augment(policies: Sequence[str]) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    """The augmentation for `train.augment` (None when the list is empty)."""
    fns = [AUGMENTATIONS.load(p) for p in policies]
    if not fns:
        return None

    def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        for fn in fns:
            x = fn(x, g)
        return x

    return augment
