"""Frechet distance between Gaussians fitted to two feature sets (Heusel et al. 2017).

d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), in float64. Tr((S1 S2)^(1/2)) is the sum of
the square roots of the eigenvalues of S1 S2, as torchmetrics computes it, so the value agrees
with `torchmetrics.image.fid.FrechetInceptionDistance` for the same features.

The name of the score says which features it used: `fid` only for Inception-v3 pool features,
`fd_clf` for the project's own classifier.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) of features (N, D), in float64 (unbiased covariance)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need a (N >= 2, D) feature matrix, got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different dimensions: {mu1.shape} vs {mu2.shape}")
    eig = scipy.linalg.eigvals(sigma1 @ sigma2)
    # S1 S2 is similar to a PSD matrix: its eigenvalues are real and >= 0 up to rounding.
    tr_sqrt = np.sqrt(eig.astype(np.complex128)).real.sum()
    d2 = float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_sqrt)
    return max(d2, 0.0)


def frechet_distance_features(f1: np.ndarray, f2: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))
