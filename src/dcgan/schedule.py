"""Learning-rate schedules (`train.lr_schedule`, `train.lr_warmup`): beyond the paper, which keeps
Adam's rate constant (the default).

The rate at a step is the configured rate times `lr_factor(...)`, a pure function of the step
and the run's length, so a resumed run continues the schedule exactly where it stopped.
    constant  1
    linear    1 - t / T, from the full rate to 0 at the end of the run (SNGAN's and Mimicry's
              CIFAR-10 recipes: late oscillation shrinks as the rate does)
    cosine    (1 + cos(pi t / T)) / 2, from the full rate to 0
with t the step about to run (0-based) and T the run's total steps; a warm-up of W steps
multiplies by min(1, (t + 1) / W).
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("constant", "linear", "cosine")


def lr_factor(schedule: str, step: int, total_steps: int, warmup: int = 0) -> float:
    """The multiplier of the configured learning rate for step `step` of `total_steps`."""
    t = min(max(step, 0), total_steps) / max(total_steps, 1)
    if schedule == "constant":
        f = 1.0
    elif schedule == "linear":
        f = 1.0 - t
    elif schedule == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * t))
    else:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")
    if warmup > 0:
        f *= min(1.0, (step + 1) / warmup)
    return f


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
