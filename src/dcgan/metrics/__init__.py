"""Evaluation: Frechet distances, KID, IS, precision/recall, class coverage, memorisation.

Two feature networks, never confused: Inception-v3 through torchmetrics (`fid`, `kid`, `is`,
`precision`/`recall`) and the project's own classifier (`fd_clf`, `kid_clf`, `is_clf`,
`precision_clf`/`recall_clf`, `coverage`). See docs/evaluation.md.
"""

from .evaluator import METRICS, Evaluator, build_evaluator, resolve_metrics
from .frechet import frechet_distance, gaussian_stats
from .inception import inception_score
from .kid import kernel_distance, mmd2_unbiased
from .prdc import precision_recall

__all__ = [
    "METRICS", "Evaluator", "build_evaluator", "frechet_distance", "gaussian_stats", "inception_score",
    "kernel_distance", "mmd2_unbiased", "precision_recall", "resolve_metrics",
]
