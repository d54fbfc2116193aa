"""Improved precision and recall (Kynkaanniemi et al. 2019): k-NN manifolds in feature space.

Each set's manifold is the union of balls around its points with radius the distance to the
point's k-th nearest neighbour (k = 3 in the paper). Precision: the fraction of generated
points inside the real manifold (quality). Recall: the fraction of real points inside the
generated manifold (diversity / coverage of the data).
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point to its k-th nearest other point."""
    nn = NearestNeighbors(n_neighbors=k + 1).fit(x)
    dist, _ = nn.kneighbors(x)  # column 0 is the point itself
    return dist[:, k]


def _inside(manifold: np.ndarray, radii: np.ndarray, queries: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """For each query, whether it lies within radius of at least one manifold point."""
    m = np.asarray(manifold, np.float32)
    m2 = (m.astype(np.float64) ** 2).sum(1)
    out = np.zeros(queries.shape[0], dtype=bool)
    for i in range(0, queries.shape[0], chunk):
        q = np.asarray(queries[i:i + chunk], np.float64)
        d2 = (q ** 2).sum(1)[:, None] + m2[None, :] - 2.0 * q @ m.T.astype(np.float64)
        out[i:i + chunk] = (d2 <= radii[None, :] ** 2 + 1e-9).any(1)
    return out


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of `fake` (N, D) against `real` (M, D)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} points on each side")
    precision = _inside(real, knn_radii(real, k), fake).mean()
    recall = _inside(fake, knn_radii(fake, k), real).mean()
    return float(precision), float(recall)
