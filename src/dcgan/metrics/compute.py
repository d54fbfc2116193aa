"""The compute functions the metric registry names: (fake features, real statistics, options) -> scores.

Each function returns one value per score its metric declares, in the declared order; the
registry pairs them with the keys. Both feature networks go through the same functions: a
`Features` holds one network's embedding (classifier features or Inception pool) and logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from ..errors import DCGANError
from .frechet import frechet_distance, gaussian_stats
from .inception import inception_score
from .kid import kernel_distance
from .prdc import precision_recall


@dataclass(frozen=True)
class ScoreOptions:
    seed: int = 0  # the KID subsets' RNG seed
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    pr_k: int = 3  # Kynkaanniemi et al. 2019
    is_splits: int = 10
    coverage_share: float = 0.5  # a class is covered when it gets >= half its share of the real data


@dataclass
class Features:
    """One feature network's view of a set of images."""

    embedding: np.ndarray  # (N, D) float64: the classifier's 128 features or Inception's 2048 pool
    logits: np.ndarray | None = None  # (N, K) float64


@dataclass
class RealStats:
    """A real split seen through one network: what the generated side is compared with."""

    features: torch.Tensor  # (N, D) float32, as cached on disk
    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64
    num: int
    class_freq: np.ndarray | None = None  # (K,) share of each class, when the split is labelled
    source: str = "the real data"  # for messages, e.g. "fashion_mnist (test)"

    @cached_property
    def features64(self) -> np.ndarray:
        return self.features.double().numpy()

    @classmethod
    def from_features(cls, embedding: np.ndarray, labels: torch.Tensor | None, num_classes: int | None,
                      source: str) -> RealStats:
        mu, sigma = gaussian_stats(embedding)
        freq = None
        if labels is not None and (labels >= 0).all():
            k = num_classes if num_classes is not None else int(labels.max()) + 1
            freq = (torch.bincount(labels, minlength=k).double() / len(labels)).numpy()
        return cls(torch.from_numpy(embedding).float(), mu, sigma, len(embedding), freq, source)

    def to_blob(self) -> dict[str, Any]:
        blob = {"features": self.features, "mu": torch.from_numpy(self.mu), "sigma": torch.from_numpy(self.sigma),
                "num": self.num}
        if self.class_freq is not None:
            blob["class_freq"] = torch.from_numpy(self.class_freq)
        return blob

    @classmethod
    def from_blob(cls, blob: Any, source: str) -> RealStats:
        """From a cache file's contents; KeyError/TypeError/AttributeError when they are not one."""
        freq = blob.get("class_freq")
        return cls(blob["features"].float(), blob["mu"].numpy(), blob["sigma"].numpy(), int(blob["num"]),
                   freq.numpy() if freq is not None else None, source)


def _logits(fake: Features) -> np.ndarray:
    if fake.logits is None:
        raise RuntimeError("this metric needs logits; the feature network gave none")
    return fake.logits


def frechet(fake: Features, real: RealStats, opts: ScoreOptions) -> tuple[float]:
    return (frechet_distance(*gaussian_stats(fake.embedding), real.mu, real.sigma),)


def kernel(fake: Features, real: RealStats, opts: ScoreOptions) -> tuple[float, float]:
    return kernel_distance(real.features64, fake.embedding, subsets=opts.kid_subsets,
                           subset_size=opts.kid_subset_size, seed=opts.seed)


def manifold_precision_recall(fake: Features, real: RealStats, opts: ScoreOptions) -> tuple[float, float]:
    return precision_recall(real.features64, fake.embedding, opts.pr_k)


def inception_score_of_logits(fake: Features, real: RealStats, opts: ScoreOptions) -> tuple[float, float]:
    return inception_score(_logits(fake), splits=opts.is_splits)


def class_coverage(logits: np.ndarray, class_freq: np.ndarray, share: float = 0.5) -> float:
    """Fraction of classes whose share of predictions is >= `share` x their share of real data."""
    k = class_freq.shape[0]
    counts = np.bincount(np.asarray(logits).argmax(1), minlength=k)[:k]
    return float(np.mean(counts / counts.sum() >= share * np.asarray(class_freq)))


def coverage(fake: Features, real: RealStats, opts: ScoreOptions) -> tuple[float]:
    if real.class_freq is None:
        raise DCGANError(f"{real.source} has no labels for class coverage; drop `coverage` from the metrics")
    return (class_coverage(_logits(fake), real.class_freq, opts.coverage_share),)
