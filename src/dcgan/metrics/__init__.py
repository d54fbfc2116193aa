"""Evaluation: Frechet distances, KID, IS, precision/recall, class coverage, memorisation.

The feature networks are declared once, in `registry.FEATURE_NETWORKS` (the project's classifier:
`fd_clf`, `kid_clf`, `is_clf`, `precision_clf`/`recall_clf`, `coverage`; the self-supervised
encoder: `fd_ssl`, ...; Inception-v3 through torchmetrics: `fid`, `kid`, `is`, `precision`/`recall`),
each naming its builder in `networks`; registering one registers its metrics in `registry.METRICS`,
each naming its compute function in `compute`. `evaluator` scores by those tables and `evaluate`
runs one-off evaluations (`dcgan eval`). See docs/evaluation.md.

Names are imported on first use, so `dcgan.metrics.registry` (which the config uses) loads
without torch or the evaluator.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "METRICS": "registry", "register_metric": "registry", "is_better": "registry",
    "FEATURE_NETWORKS": "registry", "FeatureNet": "networks", "NetworkOptions": "networks",
    "Evaluator": "evaluator", "build_evaluator": "evaluator", "resolve_metrics": "evaluator",
    "EvalSettings": "evaluate", "evaluate_checkpoint": "evaluate", "evaluate_folder": "evaluate",
    "memorisation_report": "memorisation",
    "frechet_distance": "frechet", "gaussian_stats": "frechet", "inception_score": "inception",
    "kernel_distance": "kid", "mmd2_unbiased": "kid", "precision_recall": "prdc",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
