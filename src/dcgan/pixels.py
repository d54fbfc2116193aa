"""Pixel ranges: the uint8 images data/ stores and the [-1, 1] floats the networks see (§4: tanh).

Below data, sampling, metrics, the paper's experiments and the explorer, which all convert
between the two; it imports nothing but torch.
"""

from __future__ import annotations

import torch


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (§4: tanh's range), on whatever device x is on."""
    return x.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return x.detach().add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)
