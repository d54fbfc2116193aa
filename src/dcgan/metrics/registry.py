"""The metric registry and the feature-network registry: every evaluation metric, and every
network whose features the metrics compare, declared once.

A feature network (`FEATURE_NETWORKS`) has a name (what `--features` takes), a suffix its
metric names end in (`fd_clf`; none for Inception: `fid`), how it is built or loaded and cached
(a "module:attribute" builder, imported on first use), whether it needs class labels or a
download, the metric families it supports and the ones `eval.metrics: auto` picks. Registering
it registers its metrics: `fd` (Frechet distance), `kid`, `pr` (precision/recall), `is`, and
`coverage` for a classifier. So adding a feature network is one `FEATURE_NETWORKS.register`
call below, plus the builder it names.

A metric (`METRICS`) has a name (what `eval.metrics` and `dcgan eval --metrics` take), the
feature network it uses, the scores it yields (each with its direction) and the function that
computes them. The config validates against this table, the evaluator scores by it, and the
run's `scores.png` / `best.pt` read directions from it.

This module imports nothing heavy, so the config can use it: builders and compute functions are
named as strings and imported on first use.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..registry import Entry, Registry
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
    network: str  # a FEATURE_NETWORKS name: CLASSIFIER, SSL, INCEPTION, ...
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


# --- metric families: what a feature network's features give -------------------------------------


@dataclass(frozen=True)
class Family:
    """A kind of metric any feature network can have. Score keys are templates: {m} is the metric's
    name, {s} the network's suffix with its underscore ("_clf", or "" for Inception)."""

    compute: str  # a function of dcgan.metrics.compute
    scores: tuple[tuple[str, str], ...]  # ((key template, LOWER|HIGHER|""), ...)
    doc: str  # {f}: the network, e.g. "classifier"
    plain: str = ""  # the name without a suffix, when it is not the family's (fd -> fid)
    suffixed: bool = True  # False: one name whatever the network (coverage), so one network has it
    labels: bool = False  # needs a network trained on the dataset's classes

    def metric_name(self, family: str, suffix: str) -> str:
        if not self.suffixed:
            return family
        return f"{family}_{suffix}" if suffix else (self.plain or family)


FAMILIES = {
    "fd": Family("frechet", (("{m}", LOWER),), "Frechet distance of {f} features", plain="fid"),
    "kid": Family("kernel", (("{m}", LOWER), ("{m}_std", "")), "kernel (MMD) distance of {f} features"),
    "pr": Family("manifold_precision_recall", (("precision{s}", HIGHER), ("recall{s}", HIGHER)),
                 "precision/recall of {f} features (Kynkaanniemi et al. 2019, k=3)"),
    "is": Family("inception_score_of_logits", (("{m}", HIGHER), ("{m}_std", "")),
                 "Inception Score of {f} predictions"),
    "coverage": Family("coverage", (("coverage", HIGHER),), "fraction of classes generated ({f} predictions)",
                       suffixed=False, labels=True),
}


# --- the feature networks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureNetwork(Entry):
    """A feature network. `target` names its builder: (data config, NetworkOptions) -> FeatureNet
    (see dcgan.metrics.networks), which loads it from its cache or builds and caches it."""

    suffix: str = ""  # metric names end in _suffix; "" for the plain names (fid, kid, pr, is)
    noun: str = ""  # what metric docs call it, e.g. "classifier" ("Frechet distance of classifier features")
    families: tuple[str, ...] = ()  # FAMILIES it supports, in registry order
    training: tuple[str, ...] = ()  # the families `eval.metrics: auto` scores during training
    evaluation: tuple[str, ...] = ()  # the families `dcgan eval` scores when no metrics are named
    needs_labels: bool = False  # trained on class labels: only for LABELLED datasets
    download: bool = False  # needs weights from the internet (never chosen by `auto`)

    def metric(self, family: str) -> str:
        """This network's metric of a family, e.g. ("fd" on the classifier) -> "fd_clf"."""
        if family not in self.families:
            raise KeyError(f"the {self.name} features have no {family!r} metric")
        return FAMILIES[family].metric_name(family, self.suffix)

    def metrics(self) -> tuple[str, ...]:
        return tuple(self.metric(f) for f in self.families)


class FeatureRegistry(Registry[Callable[..., Any]]):
    """The feature networks; registering one registers its metrics, unregistering drops them."""

    def register(self, name: str, target: Any, doc: str = "", **fields: Any) -> FeatureNetwork:
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        entry = FeatureNetwork(name, target, doc, **fields)
        _check(entry)
        for family in entry.families:
            fam = FAMILIES[family]
            m, s = entry.metric(family), f"_{entry.suffix}" if entry.suffix else ""
            register_metric(m, name, tuple((k.format(m=m, s=s), b) for k, b in fam.scores), fam.compute,
                            fam.doc.format(f=entry.noun or name))
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        for metric in [m.name for m in METRICS.values() if m.network == name]:
            del METRICS[metric]
        super().unregister(name)

    def entry(self, name: str) -> FeatureNetwork:
        return super().entry(name)  # type: ignore[return-value]


def _check(entry: FeatureNetwork) -> None:
    unknown = [f for f in entry.families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"feature network {entry.name!r}: unknown metric families {unknown}; use {list(FAMILIES)}")
    if not set(entry.training) | set(entry.evaluation) <= set(entry.families):
        raise ValueError(f"feature network {entry.name!r}: default metrics outside its families {entry.families}")
    if not entry.needs_labels and any(FAMILIES[f].labels for f in entry.families):
        raise ValueError(f"feature network {entry.name!r}: coverage needs a network trained on class labels")
    names = [entry.metric(f) for f in entry.families]
    taken = [n for n in names if n in METRICS]
    if taken:
        raise ValueError(f"feature network {entry.name!r}: metrics {taken} are registered twice")


FEATURE_NETWORKS = FeatureRegistry("feature network")

# Registry order is the order of scores in a record and of the networks in "features".
FEATURE_NETWORKS.register(
    CLASSIFIER, "dcgan.metrics.networks:build_classifier",
    "the project's small CNN trained on the dataset's labels (metrics/classifier.py; offline, "
    "scores not comparable with published numbers)",
    suffix="clf", noun="classifier", families=("fd", "kid", "pr", "is", "coverage"),
    training=("fd", "coverage", "is"), evaluation=("fd", "coverage", "is", "kid", "pr"), needs_labels=True)
FEATURE_NETWORKS.register(
    SSL, "dcgan.metrics.networks:build_encoder",
    "a SimCLR encoder trained on the dataset itself (metrics/ssl.py, Chen et al. 2020; no labels, "
    "no download)",
    suffix="ssl", noun="self-supervised encoder", families=("fd", "kid", "pr"),
    training=("fd", "pr"), evaluation=("fd", "kid", "pr"))
FEATURE_NETWORKS.register(
    INCEPTION, "dcgan.metrics.networks:build_inception",
    "Inception-v3 with the TensorFlow FID weights, through torchmetrics / torch-fidelity "
    "(metrics/inception.py, Heusel et al. 2017; a download or --inception-weights)",
    suffix="", noun="Inception-v3", families=("fd", "kid", "pr", "is"),
    training=("fd",), evaluation=("fd", "kid", "is", "pr"), download=True)


# --- the default metrics: chosen here, once, by whether the dataset has class labels --------------

AUTO = "auto"  # eval.metrics / eval.best left at the default: resolved by `default_metrics` / `default_best`


def labelled(dataset: str) -> bool:
    """Whether a dataset has class labels the classifier can learn: its `labelled` in
    dcgan.tables.DATASETS (the choice of the default feature network rests on it)."""
    return dataset in DATASETS and DATASETS.load(dataset).labelled


def __getattr__(name: str) -> Any:
    if name == "LABELLED":  # the labelled datasets, read from the table at each use (so a registered one counts)
        return tuple(n for n in DATASETS if labelled(n))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_network(dataset: str) -> str:
    """The offline feature network for a dataset: the first registered one that needs no download
    and whose labels the dataset has (the classifier where there are class labels, else the
    self-supervised encoder; Inception only when asked for: it needs a download)."""
    for entry in map(FEATURE_NETWORKS.entry, FEATURE_NETWORKS):
        if not entry.download and (labelled(dataset) or not entry.needs_labels):
            return entry.name
    raise LookupError(f"no offline feature network fits {dataset!r}")


def default_metrics(dataset: str, features: str | None = None, *, training: bool = False) -> tuple[str, ...]:
    """The metrics used when none are named: the training loop's (`eval.metrics: auto`, cheaper) or
    `dcgan eval`'s, on `features` when given, else on the dataset's default network."""
    entry = FEATURE_NETWORKS.entry(features or default_network(dataset))
    return tuple(entry.metric(f) for f in (entry.training if training else entry.evaluation))


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
