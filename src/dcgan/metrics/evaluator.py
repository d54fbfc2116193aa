"""Scoring a generator (or a set of images) against one real split, by the metric registry.

Every score is named for its feature network (`registry.FEATURE_NETWORKS`, built by
`networks`), so the kinds never mix in a report:
    classifier (the project's own, see classifier.py): fd_clf, kid_clf, precision_clf /
        recall_clf, is_clf, coverage
    self-supervised encoder (no labels, no download, see ssl.py): fd_ssl, kid_ssl,
        precision_ssl / recall_ssl
    Inception-v3 (torchmetrics / torch-fidelity): fid, kid, precision / recall, is
Every evaluation record also states its protocol: feature network(s), real split and count,
generated count, image size.

The evaluator only scores: the run that calls it owns its log, `scores.png` and `best.pt`
(`registry.is_better` says whether a score beats the best so far).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..atomic import load_cache, save_cache
from ..config import Config, DataConfig
from ..data import data_fingerprint, load_images
from ..errors import DCGANError
from ..pixels import to_uint8
from ..sampling import generate, noise
from . import registry
from .classifier import TrainedClassifier
from .compute import Features, RealStats, ScoreOptions
from .networks import FeatureNet, NetworkOptions, build
from .ssl import DEFAULT_STEPS as SSL_STEPS
from .ssl import TrainedEncoder

log = logging.getLogger(__name__)

# Generic names that --features maps onto that network's metric of the family (fid -> fd).
GENERIC = {"fd": "fd", "fid": "fd", "kid": "kid", "pr": "pr", "is": "is"}
KID_SUBSETS = ScoreOptions.kid_subsets
PR_K = ScoreOptions.pr_k


def resolve_metrics(names: list[str], features: str | None = None) -> list[str]:
    """Check metric names; with `features`, map generic names (fd/fid, kid, pr, is) to that network."""
    nets = registry.FEATURE_NETWORKS
    if features is not None and features not in nets:
        raise DCGANError(f"unknown feature network {features!r}; use any of {', '.join(nets)}")
    table = registry.METRICS
    out = []
    for name in names:
        name = name.strip().lower()
        if features is not None and name in GENERIC:
            entry = nets.entry(features)
            if GENERIC[name] not in entry.families:
                raise DCGANError(f"there is no {name!r} on the {features} features (it needs class predictions); "
                                 f"use any of {', '.join(n for n in GENERIC if GENERIC[n] in entry.families)}")
            name = entry.metric(GENERIC[name])
        elif name == "fd":
            name = nets.entry(registry.CLASSIFIER).metric("fd")
        if name not in table:
            raise DCGANError(f"unknown metric {name!r}; use any of {', '.join(table)}")
        if features is not None and table[name].network != features:
            raise DCGANError(f"metric {name!r} uses the {table[name].network} features, not --features {features}; "
                             "drop one of them")
        if name not in out:
            out.append(name)
    if not out:
        raise DCGANError(f"no metrics asked for; use any of {', '.join(table)}")
    return out


# --- real-data statistics, cached on disk ----------------------------------------------------------


def stats_path(data_cfg: DataConfig, split: str, net_key: str, num_real: int) -> Path:
    """The statistics cache of `num_real` images of a split through one feature network, keyed by
    the data's content (`data_fingerprint`: its files' names, sizes and mtimes, and the settings
    that change the images) and by the network's weights (`net_key`), so neither is ever stale."""
    name = (f"{data_cfg.name}-{split}-{data_cfg.image_size}px-{data_cfg.channels}ch-n{num_real}-"
            f"{net_key}-{data_fingerprint(data_cfg, split)}.pt")
    return Path(data_cfg.cache_dir).expanduser() / "stats" / name


def _read_stats(path: Path, source: str) -> RealStats | None:
    """A cached RealStats, or None (with a warning) when the file is unreadable or not one."""
    if not path.is_file():
        return None
    try:
        return RealStats.from_blob(load_cache(path), source)
    except Exception as e:  # a torn, corrupt or hostile file: recompute, never unpickle code
        log.warning("ignoring unreadable statistics cache %s (%s); computing the statistics again",
                    path, type(e).__name__)
        return None


# --- the evaluator ------------------------------------------------------------------------------------


class Evaluator:
    """Scores images (or a generator) against one real split with the asked metrics.

    Real features are computed once per (dataset, split, size, channels, count, network) and
    cached on disk; each call only pays for the generated side. Generated images are scored
    as uint8, exactly as if saved to PNG and read back.
    """

    def __init__(self, metrics: list[str], data_cfg: DataConfig, *, split: str = "test",
                 num_samples: int = 5000, num_real: int = 0, seed: int = 0, z_dist: str = "uniform",
                 device: torch.device | str = "cpu", classifier_epochs: int = 2,
                 inception_weights: str | None = None, classifier: TrainedClassifier | None = None,
                 kid_subsets: int = KID_SUBSETS, ssl_steps: int = SSL_STEPS,
                 encoder: TrainedEncoder | None = None) -> None:
        self.metrics = [registry.METRICS[m] for m in resolve_metrics(metrics)]
        self.data_cfg = dataclasses.replace(data_cfg, subset=0) if num_real else data_cfg
        self.split, self.num_samples, self.num_real, self.seed = split, num_samples, num_real, seed
        self.z_dist = z_dist
        self.device = torch.device(device)
        self.options = ScoreOptions(seed=seed, kid_subsets=kid_subsets)
        given = {k: v for k, v in ((registry.CLASSIFIER, classifier), (registry.SSL, encoder)) if v is not None}
        options = NetworkOptions(self.device, classifier_epochs, ssl_steps, inception_weights, given)
        used = {m.network for m in self.metrics}
        # Built from the training data config (its subset, its split), in registry order.
        self.nets: dict[str, FeatureNet] = {n: build(n, data_cfg, options)
                                            for n in registry.FEATURE_NETWORKS if n in used}
        self._real: dict[str, RealStats] = {}

    @property
    def networks(self) -> dict[str, Callable[[torch.Tensor], Features]]:
        """The feature networks in use, by name: uint8 images -> Features."""
        return {name: net.extract for name, net in self.nets.items()}

    def _model(self, net: str) -> Any:
        return self.nets[net].model if net in self.nets else None

    classifier = property(lambda self: self._model(registry.CLASSIFIER))
    encoder = property(lambda self: self._model(registry.SSL))
    inception = property(lambda self: self._model(registry.INCEPTION))

    def net_name(self, net: str) -> str:
        return self.nets[net].name

    def net_key(self, net: str) -> str:
        """The network's cache key: its name and, where retraining keeps the name, a weights digest."""
        return self.nets[net].key

    def real(self, net: str) -> RealStats:
        """Features, Gaussian statistics and class shares of the real split (cached on disk)."""
        if net in self._real:
            return self._real[net]
        data = load_images(self.data_cfg, self.split)
        images, labels = data.images, data.labels
        if self.num_real:
            if self.num_real > len(images):
                raise DCGANError(f"--num-real {self.num_real} is more than the {len(images)} images of "
                                 f"{self.data_cfg.name} ({self.split}); lower it")
            images = images[: self.num_real]
            labels = labels[: self.num_real] if labels is not None else None
        source = f"{self.data_cfg.name} ({self.split})"
        path = stats_path(self.data_cfg, self.split, self.net_key(net), len(images))
        stats = _read_stats(path, source)
        if stats is None:
            t = time.perf_counter()
            feats = self.networks[net](images)
            labelled = registry.FEATURE_NETWORKS.entry(net).needs_labels  # its logits are the classes
            k = feats.logits.shape[1] if labelled and feats.logits is not None else None
            stats = RealStats.from_features(feats.embedding, labels, k, source)
            save_cache(stats.to_blob(), path, "statistics")
            log.info("real statistics of %s (%d images, %s) in %.0f s, cached at %s", source, len(images),
                     self.net_name(net), time.perf_counter() - t, path)
        self._real[net] = stats
        return stats

    def protocol(self, num_gen: int) -> dict[str, Any]:
        nets = list(self.networks)
        out: dict[str, Any] = {
            "features": "+".join(self.net_name(n) for n in nets),
            "split": self.split, "n_real": int(self.real(nets[0]).num), "n_gen": int(num_gen),
            "image_size": self.data_cfg.image_size,
        }
        for net in self.nets.values():
            out.update(net.protocol)
        return out

    def score_images(self, images: torch.Tensor) -> dict[str, Any]:
        """Scores of uint8 images (N, C, S, S), in registry order, then the protocol fields."""
        if images.dtype != torch.uint8:
            raise ValueError("score_images takes uint8 images")
        size, ch = self.data_cfg.image_size, self.data_cfg.channels
        if images.shape[1:] != (ch, size, size):
            raise DCGANError(f"images of shape {tuple(images.shape[1:])} do not match the real data "
                             f"({ch}, {size}, {size}); use the same image size and channels")
        if images.shape[0] < 2 * PR_K:
            raise DCGANError(f"{images.shape[0]} images are too few to score; use at least {2 * PR_K}")
        scores: dict[str, Any] = {}
        for net, features_of in self.networks.items():
            fake, real = features_of(images), self.real(net)
            for metric in self.metrics:
                if metric.network == net:
                    scores.update(metric(fake, real, self.options))
        scores = {k: scores[k] for k in registry.score_keys([m.name for m in self.metrics])}
        scores.update(self.protocol(images.shape[0]))
        return scores

    def generate(self, G: torch.nn.Module) -> torch.Tensor:
        """num_samples uint8 images from G with fixed noise (the same z at every evaluation)."""
        z = noise(self.num_samples, G.nz, self.z_dist, self.seed, next(G.parameters()).device)
        return to_uint8(generate(G, z)).cpu()

    def __call__(self, G: torch.nn.Module, step: int) -> dict[str, Any]:
        """The training loop's hook: score G (left in its mode) with the fixed evaluation noise."""
        t = time.perf_counter()
        scores = self.score_images(self.generate(G))
        scores["eval_seconds"] = round(time.perf_counter() - t, 1)
        log.info("eval at step %d: %s", step, format_scores(scores))
        return scores


def build_evaluator(cfg: Config, device: torch.device | str) -> Evaluator:
    """The evaluator the training loop calls every `eval.every` steps, real statistics ready."""
    ec = cfg.eval
    ev = Evaluator(list(ec.metrics), cfg.data, split=ec.split, num_samples=ec.num_samples, seed=ec.seed,
                   z_dist=cfg.model.z_dist, device=device, classifier_epochs=ec.classifier_epochs,
                   inception_weights=ec.inception_weights or None, ssl_steps=ec.ssl_steps)
    for net in ev.networks:
        ev.real(net)  # pay for the real side before training starts
    return ev


# --- reporting ------------------------------------------------------------------------------------------


def format_scores(scores: dict[str, Any]) -> str:
    keys = set(registry.score_keys())
    return ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if isinstance(v, float) and k in keys)


PROTOCOL_KEYS = ("features", "clf_test_accuracy", "clf_weights", "split", "n_real", "n_gen", "image_size", "step",
                 "checkpoint", "images")


def format_table(scores: dict[str, Any]) -> str:
    """A two-column table of scores, then the protocol."""
    rows = []
    for k in registry.ranked_keys():
        if k in scores:
            std = scores.get(k + "_std")
            better = "lower is better" if registry.lower_is_better(k) else "higher is better"
            val = f"{scores[k]:.4f}" + (f" +- {std:.4f}" if std is not None else "")
            rows.append(f"  {k:<18} {val:<22} ({better})")
    proto = [f"  {k:<18} {scores[k]}" for k in PROTOCOL_KEYS if k in scores]
    return "scores:\n" + "\n".join(rows) + "\nprotocol:\n" + "\n".join(proto)
