"""The metric registry: every evaluation metric declared once.

A metric has a name (what `eval.metrics` and `dcgan eval --metrics` take), the feature network
it uses, and the scores it yields, each with its direction. The config validates against this
table, the evaluator scores by it, and the run's `scores.png` / `best.pt` read directions from
it. This module imports nothing heavy, so the config can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

CLASSIFIER, INCEPTION = "classifier", "inception"
LOWER, HIGHER = "lower", "higher"  # which way a score is better


@dataclass(frozen=True)
class Score:
    key: str  # the key in a score record, e.g. "fd_clf"
    better: str  # LOWER or HIGHER; "" for a spread (e.g. a standard deviation) that ranks nothing


@dataclass(frozen=True)
class Metric:
    name: str
    network: str  # CLASSIFIER or INCEPTION
    scores: tuple[Score, ...]
    doc: str = ""

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.scores)


METRICS: dict[str, Metric] = {}


def register_metric(name: str, network: str, scores: tuple[tuple[str, str], ...], doc: str = "") -> Metric:
    """Declare a metric: `scores` is ((key, LOWER|HIGHER|""), ...)."""
    if name in METRICS:
        raise ValueError(f"metric {name!r} is registered twice")
    metric = Metric(name, network, tuple(Score(k, b) for k, b in scores), doc)
    METRICS[name] = metric
    return metric


register_metric("fd_clf", CLASSIFIER, (("fd_clf", LOWER),), "Frechet distance of classifier features")
register_metric("kid_clf", CLASSIFIER, (("kid_clf", LOWER), ("kid_clf_std", "")), "kernel (MMD) distance")
register_metric("pr_clf", CLASSIFIER, (("precision_clf", HIGHER), ("recall_clf", HIGHER)),
                "precision/recall of classifier features (Kynkaanniemi et al. 2019, k=3)")
register_metric("is_clf", CLASSIFIER, (("is_clf", HIGHER), ("is_clf_std", "")), "Inception Score of the classifier")
register_metric("coverage", CLASSIFIER, (("coverage", HIGHER),), "fraction of classes generated")
register_metric("fid", INCEPTION, (("fid", LOWER),), "Frechet Inception Distance")
register_metric("kid", INCEPTION, (("kid", LOWER), ("kid_std", "")), "Kernel Inception Distance")
register_metric("pr", INCEPTION, (("precision", HIGHER), ("recall", HIGHER)), "Inception precision/recall")
register_metric("is", INCEPTION, (("is", HIGHER), ("is_std", "")), "Inception Score")


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
