"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with a cubic kernel.

k(x, y) = (x.y / d + 1)^3. The unbiased estimator drops the diagonal of the within-set kernel
matrices, so two samples of one distribution score ~0 on average (it can be slightly
negative). As in the paper and torchmetrics, the estimate is averaged over random subsets.
"""

from __future__ import annotations

import numpy as np


def _poly_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float | None, coef: float) -> np.ndarray:
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, *, degree: int = 3, gamma: float | None = None,
                  coef: float = 1.0) -> float:
    """Unbiased MMD^2 between the samples x (m, D) and y (n, D)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, n = x.shape[0], y.shape[0]
    kxx = _poly_kernel(x, x, degree, gamma, coef)
    kyy = _poly_kernel(y, y, degree, gamma, coef)
    kxy = _poly_kernel(x, y, degree, gamma, coef)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kernel_distance(real: np.ndarray, fake: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0, degree: int = 3, gamma: float | None = None,
                    coef: float = 1.0) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 over `subsets` random subsets of each set."""
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        raise ValueError("KID needs at least 2 images on each side")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        r = real[rng.choice(real.shape[0], size, replace=False)]
        f = fake[rng.choice(fake.shape[0], size, replace=False)]
        vals.append(mmd2_unbiased(r, f, degree=degree, gamma=gamma, coef=coef))
    return float(np.mean(vals)), float(np.std(vals))
