"""The metric registry: every evaluation metric declared once.

A metric has a name (what `eval.metrics` and `dcgan eval --metrics` take), the feature network
it uses, the scores it yields (each with its direction) and the function that computes them.
The config validates against this table, the evaluator scores by it, and the run's
`scores.png` / `best.pt` read directions from it.

This module imports nothing heavy, so the config can use it: a metric names its compute
function in `dcgan.metrics.compute` (numpy, scipy, sklearn), imported on the first score.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..tables import DATASETS

CLASSIFIER, INCEPTION, SSL = "classifier", "inception", "ssl"
LOWER, HIGHER = "lower", "higher"  # which way a score is better
COMPUTE_MODULE = "dcgan.metrics.compute"


@dataclass(frozen=True)
class Score:
    key: str  # the key in a score record, e.g. "fd_clf"
    better: str  # LOWER or HIGHER; "" for a spread (e.g. a standard deviation) that ranks nothing


@dataclass(frozen=True)
class Metric:
    name: str
    network: str  # CLASSIFIER, SSL or INCEPTION
    scores: tuple[Score, ...]
    compute: str  # a function of dcgan.metrics.compute: (fake, real, options) -> one value per score
    doc: str = ""

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.scores)

    def __call__(self, fake: Any, real: Any, options: Any) -> dict[str, float]:
        """The metric's scores, {key: value} in declared order (see dcgan.metrics.compute)."""
        fn: Callable[..., tuple[float, ...]] = getattr(importlib.import_module(COMPUTE_MODULE), self.compute)
        values = fn(fake, real, options)
        if len(values) != len(self.scores):
            raise RuntimeError(f"{self.compute} gave {len(values)} values for the {len(self.scores)} "
                               f"scores of {self.name}")
        return dict(zip(self.keys, values))


METRICS: dict[str, Metric] = {}


def register_metric(name: str, network: str, scores: tuple[tuple[str, str], ...], compute: str,
                    doc: str = "") -> Metric:
    """Declare a metric: `scores` is ((key, LOWER|HIGHER|""), ...); `compute` names its function."""
    if name in METRICS:
        raise ValueError(f"metric {name!r} is registered twice")
    metric = Metric(name, network, tuple(Score(k, b) for k, b in scores), compute, doc)
    METRICS[name] = metric
    return metric


# The project's classifier (offline; scores not comparable with published numbers).
register_metric("fd_clf", CLASSIFIER, (("fd_clf", LOWER),), "frechet", "Frechet distance of classifier features")
register_metric("kid_clf", CLASSIFIER, (("kid_clf", LOWER), ("kid_clf_std", "")), "kernel",
                "kernel (MMD) distance of classifier features")
register_metric("pr_clf", CLASSIFIER, (("precision_clf", HIGHER), ("recall_clf", HIGHER)),
                "manifold_precision_recall", "precision/recall of classifier features (Kynkaanniemi et al. 2019, k=3)")
register_metric("is_clf", CLASSIFIER, (("is_clf", HIGHER), ("is_clf_std", "")), "inception_score_of_logits",
                "Inception Score of the classifier")
register_metric("coverage", CLASSIFIER, (("coverage", HIGHER),), "coverage", "fraction of classes generated")
# The self-supervised encoder (metrics/ssl.py): no labels, no download; trained on the dataset itself.
register_metric("fd_ssl", SSL, (("fd_ssl", LOWER),), "frechet", "Frechet distance of self-supervised encoder features")
register_metric("kid_ssl", SSL, (("kid_ssl", LOWER), ("kid_ssl_std", "")), "kernel",
                "kernel (MMD) distance of self-supervised encoder features")
register_metric("pr_ssl", SSL, (("precision_ssl", HIGHER), ("recall_ssl", HIGHER)), "manifold_precision_recall",
                "precision/recall of self-supervised encoder features (k=3)")
# Inception-v3 (the TensorFlow FID network, through torchmetrics / torch-fidelity).
register_metric("fid", INCEPTION, (("fid", LOWER),), "frechet", "Frechet Inception Distance")
register_metric("kid", INCEPTION, (("kid", LOWER), ("kid_std", "")), "kernel", "Kernel Inception Distance")
register_metric("pr", INCEPTION, (("precision", HIGHER), ("recall", HIGHER)), "manifold_precision_recall",
                "Inception precision/recall")
register_metric("is", INCEPTION, (("is", HIGHER), ("is_std", "")), "inception_score_of_logits", "Inception Score")


# --- the default metrics: chosen here, once, by whether the dataset has class labels --------------

AUTO = "auto"  # eval.metrics / eval.best left at the default: resolved by `default_metrics` / `default_best`
# (during training, for `dcgan eval`) per feature network
DEFAULTS = {
    CLASSIFIER: (("fd_clf", "coverage", "is_clf"), ("fd_clf", "coverage", "is_clf", "kid_clf", "pr_clf")),
    SSL: (("fd_ssl", "pr_ssl"), ("fd_ssl", "kid_ssl", "pr_ssl")),
    INCEPTION: (("fid",), ("fid", "kid", "is", "pr")),
}


def labelled(dataset: str) -> bool:
    """Whether a dataset has class labels the classifier can learn: its `labelled` in
    dcgan.tables.DATASETS (the choice of the default feature network rests on it)."""
    return dataset in DATASETS and DATASETS.load(dataset).labelled


def __getattr__(name: str) -> Any:
    if name == "LABELLED":  # the labelled datasets, read from the table at each use (so a registered one counts)
        return tuple(n for n in DATASETS if labelled(n))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_network(dataset: str) -> str:
    """The offline feature network for a dataset: the classifier where there are class labels,
    else the self-supervised encoder (Inception only when asked for: it needs a download)."""
    return CLASSIFIER if labelled(dataset) else SSL


def default_metrics(dataset: str, features: str | None = None, *, training: bool = False) -> tuple[str, ...]:
    """The metrics used when none are named: the training loop's (`eval.metrics: auto`, cheaper) or
    `dcgan eval`'s, on `features` when given, else on the dataset's default network."""
    return DEFAULTS[features or default_network(dataset)][0 if training else 1]


def default_best(metrics: list[str] | tuple[str, ...]) -> str:
    """The score that picks best.pt when `eval.best` is left at auto: the first ranked score."""
    ranked = ranked_keys([m for m in metrics if m in METRICS])  # an unknown name is reported by the caller
    return ranked[0] if ranked else ""


def metric_names() -> tuple[str, ...]:
    return tuple(METRICS)


def score_keys(names: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """The score keys the named metrics yield (all metrics when None), in registry order."""
    names = list(METRICS) if names is None else names
    return [k for n in names for k in METRICS[n].keys]


def ranked_keys(names: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """Score keys that have a direction (no spreads)."""
    names = list(METRICS) if names is None else names
    return [s.key for n in names for s in METRICS[n].scores if s.better]


def lower_is_better(key: str) -> bool:
    for metric in METRICS.values():
        for s in metric.scores:
            if s.key == key:
                return s.better == LOWER
    raise KeyError(f"{key!r} is not a score of any metric")


def is_better(key: str, new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """Whether `new[key]` beats `old[key]` in the score's direction; a missing or non-finite new
    value never wins, and anything finite beats a missing or non-finite old one."""
    value = new.get(key)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if old is None or not isinstance(old.get(key), (int, float)) or not math.isfinite(old[key]):
        return True
    return value < old[key] if lower_is_better(key) else value > old[key]
