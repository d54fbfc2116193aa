"""Scoring a generator: metric registry, cached real statistics, the training-time evaluator.

Every score is named for its feature network, so the two kinds never mix in a report:
    classifier (the project's own, see classifier.py): fd_clf, kid_clf, precision_clf /
        recall_clf, is_clf, coverage
    Inception-v3 (torchmetrics / torch-fidelity): fid, kid, precision / recall, is
Every evaluation record also states its protocol: feature network(s), real split and count,
generated count, image size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config, DataConfig
from ..data import load_images, to_uint8
from ..errors import DCGANError
from ..sampling import generate, noise
from . import registry
from .classifier import TrainedClassifier, get_classifier
from .frechet import frechet_distance, gaussian_stats
from .inception import InceptionFeatures, inception_score
from .kid import kernel_distance
from .prdc import precision_recall

log = logging.getLogger(__name__)

# metric name -> (feature network, the score keys it produces)
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {n: (m.network, m.keys) for n, m in registry.METRICS.items()}
# Generic names that --features maps onto one network.
GENERIC = {"fd": ("fd_clf", "fid"), "fid": ("fd_clf", "fid"), "kid": ("kid_clf", "kid"),
           "pr": ("pr_clf", "pr"), "is": ("is_clf", "is")}
COVERAGE_SHARE = 0.5  # a class is covered when it gets >= half its share of the real data
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
PR_K = 3  # Kynkaanniemi et al. 2019


def resolve_metrics(names: list[str], features: str | None = None) -> list[str]:
    """Check metric names; with `features`, map generic names (fd/fid, kid, pr, is) to that network."""
    out = []
    for name in names:
        name = name.strip().lower()
        if features is not None and name in GENERIC:
            name = GENERIC[name][0 if features == "classifier" else 1]
        elif name == "fd":
            name = "fd_clf"
        if name not in METRICS:
            raise DCGANError(f"unknown metric {name!r}; use any of {', '.join(METRICS)}")
        if features is not None and METRICS[name][0] != features:
            raise DCGANError(f"metric {name!r} uses the {METRICS[name][0]} features, not --features {features}; "
                             "drop one of them")
        if name not in out:
            out.append(name)
    if not out:
        raise DCGANError(f"no metrics asked for; use any of {', '.join(METRICS)}")
    return out


def score_keys(metrics: list[str]) -> list[str]:
    return [k for m in metrics for k in METRICS[m][1]]


def is_better(key: str, new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """Whether `new[key]` beats `old[key]` (lower is better for distances, higher otherwise)."""
    value = new.get(key)
    if value is None or not math.isfinite(value):
        return False
    if old is None or old.get(key) is None or not math.isfinite(old[key]):
        return True
    return value < old[key] if registry.lower_is_better(key) else value > old[key]


# --- real-data statistics, cached on disk ----------------------------------------------------------


def stats_path(data_cfg: DataConfig, split: str, net_name: str, num_real: int) -> Path:
    root_key = hashlib.sha1(str(Path(data_cfg.root).expanduser().resolve()).encode()).hexdigest()[:8]
    name = (f"{data_cfg.name}-{split}-{data_cfg.image_size}px-{data_cfg.channels}ch-n{num_real}-"
            f"{net_name}-{root_key}.pt")
    return Path(data_cfg.cache_dir).expanduser() / "stats" / name


def class_coverage(logits: np.ndarray, class_freq: np.ndarray, share: float = COVERAGE_SHARE) -> float:
    """Fraction of classes whose share of predictions is >= `share` x their share of real data."""
    k = class_freq.shape[0]
    counts = np.bincount(np.asarray(logits).argmax(1), minlength=k)[:k]
    return float(np.mean(counts / counts.sum() >= share * np.asarray(class_freq)))


# --- the evaluator ------------------------------------------------------------------------------------


class Evaluator:
    """Scores images (or a generator) against one real split with the asked metrics.

    Real features are computed once per (dataset, split, size, channels, count, network) and
    cached on disk; each call only pays for the generated side. Generated images are scored
    as uint8, exactly as if saved to PNG and read back.
    """

    def __init__(self, metrics: list[str], data_cfg: DataConfig, *, split: str = "test",
                 num_samples: int = 5000, num_real: int = 0, seed: int = 0, z_dist: str = "uniform",
                 best: str = "fd_clf",
                 device: torch.device | str = "cpu", run_dir: str | Path | None = None,
                 classifier_epochs: int = 2, inception_weights: str | None = None,
                 classifier: TrainedClassifier | None = None, kid_subsets: int = KID_SUBSETS) -> None:
        self.metrics = resolve_metrics(metrics)
        self.data_cfg = dataclasses.replace(data_cfg, subset=0) if num_real else data_cfg
        self.split, self.num_samples, self.num_real, self.seed = split, num_samples, num_real, seed
        self.z_dist, self.best = z_dist, best
        self.device = torch.device(device)
        self.kid_subsets = kid_subsets
        self.run_dir = Path(run_dir) if run_dir is not None else None
        nets = {METRICS[m][0] for m in self.metrics}
        self.classifier = None
        self.inception = None
        if "classifier" in nets:
            self.classifier = classifier or get_classifier(data_cfg, seed=0, epochs=classifier_epochs,
                                                           device=self.device)
        if "inception" in nets:
            self.inception = InceptionFeatures(inception_weights, self.device)
        self._real: dict[str, dict[str, Any]] = {}

    # Feature networks by name.
    def _nets(self) -> dict[str, Callable[[torch.Tensor], dict[str, np.ndarray]]]:
        nets: dict[str, Callable] = {}
        if self.classifier is not None:
            nets["classifier"] = self.classifier
        if self.inception is not None:
            nets["inception"] = self.inception
        return nets

    def net_name(self, net: str) -> str:
        return self.classifier.name if net == "classifier" else self.inception.name

    def real(self, net: str) -> dict[str, Any]:
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
        path = stats_path(self.data_cfg, self.split, self.net_name(net), len(images))
        blob = None
        if path.is_file():
            try:
                blob = torch.load(path, weights_only=True)
            except Exception:
                log.warning("ignoring unreadable statistics cache %s", path)
        if blob is None:
            t = time.perf_counter()
            feats = self._nets()[net](images)
            key = "features" if net == "classifier" else "pool"
            mu, sigma = gaussian_stats(feats[key])
            blob = {"features": torch.from_numpy(feats[key]).float(), "mu": torch.from_numpy(mu),
                    "sigma": torch.from_numpy(sigma), "num": len(images)}
            if labels is not None and (labels >= 0).all():
                k = feats["logits"].shape[1] if net == "classifier" else int(labels.max()) + 1
                blob["class_freq"] = torch.bincount(labels, minlength=k).double() / len(labels)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            torch.save(blob, tmp)
            os.replace(tmp, path)
            log.info("real statistics of %s %s (%d images, %s) in %.0f s, cached at %s", self.data_cfg.name,
                     self.split, len(images), self.net_name(net), time.perf_counter() - t, path)
        self._real[net] = blob
        return blob

    def protocol(self, num_gen: int) -> dict[str, Any]:
        nets = [n for n in ("classifier", "inception") if n in self._nets()]
        out: dict[str, Any] = {
            "features": "+".join(self.net_name(n) for n in nets),
            "split": self.split, "n_real": int(self.real(nets[0])["num"]), "n_gen": int(num_gen),
            "image_size": self.data_cfg.image_size,
        }
        if self.classifier is not None:
            out["clf_test_accuracy"] = round(float(self.classifier.info["test_accuracy"]), 4)
        return out

    def score_images(self, images: torch.Tensor) -> dict[str, Any]:
        """Scores of uint8 images (N, C, S, S) with the protocol fields."""
        if images.dtype != torch.uint8:
            raise ValueError("score_images takes uint8 images")
        size, ch = self.data_cfg.image_size, self.data_cfg.channels
        if images.shape[1:] != (ch, size, size):
            raise DCGANError(f"images of shape {tuple(images.shape[1:])} do not match the real data "
                             f"({ch}, {size}, {size}); use the same image size and channels")
        if images.shape[0] < 2 * PR_K:
            raise DCGANError(f"{images.shape[0]} images are too few to score; use at least {2 * PR_K}")
        scores: dict[str, Any] = {}
        for net, fn in self._nets().items():
            fake = fn(images)
            real = self.real(net)
            key, sfx = ("features", "_clf") if net == "classifier" else ("pool", "")
            real_f = real["features"].double().numpy()
            for m in self.metrics:
                if METRICS[m][0] != net:
                    continue
                if m in ("fd_clf", "fid"):
                    scores[m] = frechet_distance(*gaussian_stats(fake[key]), real["mu"].numpy(),
                                                 real["sigma"].numpy())
                elif m in ("kid_clf", "kid"):
                    scores[m], scores[m + "_std"] = kernel_distance(real_f, fake[key], subsets=self.kid_subsets,
                                                                    subset_size=KID_SUBSET_SIZE, seed=self.seed)
                elif m in ("pr_clf", "pr"):
                    scores["precision" + sfx], scores["recall" + sfx] = precision_recall(real_f, fake[key], PR_K)
                elif m in ("is_clf", "is"):
                    scores[m], scores[m + "_std"] = inception_score(fake["logits"], splits=10)
                elif m == "coverage":
                    if "class_freq" not in real:
                        raise DCGANError(f"{self.data_cfg.name} ({self.split}) has no labels for class coverage; "
                                         "drop `coverage` from the metrics")
                    scores["coverage"] = class_coverage(fake["logits"], real["class_freq"].numpy())
        scores = {k: scores[k] for k in score_keys(self.metrics) if k in scores}
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

    def is_better(self, scores: dict[str, Any], best: dict[str, Any] | None) -> bool:
        return is_better(self.best, scores, best)


def build_evaluator(cfg: Config, device: torch.device | str, run_dir: str | Path | None = None) -> Evaluator:
    """The evaluator the training loop calls every `eval.every` steps (see train.py)."""
    ec = cfg.eval
    ev = Evaluator(list(ec.metrics), cfg.data, split=ec.split, num_samples=ec.num_samples, seed=ec.seed,
                   z_dist=cfg.model.z_dist, best=ec.best, device=device, run_dir=run_dir, classifier_epochs=ec.classifier_epochs,
                   inception_weights=ec.inception_weights or None)
    for net in ev._nets():
        ev.real(net)  # pay for the real side before training starts
    return ev


# --- reporting ------------------------------------------------------------------------------------------


def format_scores(scores: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if isinstance(v, float) and k in _ALL_SCORES)


_ALL_SCORES = {k for _, keys in METRICS.values() for k in keys}


def format_table(scores: dict[str, Any]) -> str:
    """A two-column table of scores, then the protocol."""
    rows = []
    for k in [k for _, keys in METRICS.values() for k in keys]:
        if k in scores and not k.endswith("_std"):
            std = scores.get(k + "_std")
            better = "lower is better" if registry.lower_is_better(k) else "higher is better"
            val = f"{scores[k]:.4f}" + (f" +- {std:.4f}" if std is not None else "")
            rows.append(f"  {k:<18} {val:<22} ({better})")
    proto = [f"  {k:<18} {scores[k]}" for k in ("features", "clf_test_accuracy", "split", "n_real", "n_gen",
                                                 "image_size", "step", "checkpoint", "images")
             if k in scores]
    return "scores:\n" + "\n".join(rows) + "\nprotocol:\n" + "\n".join(proto)


def append_record(metrics_path: Path, record: dict[str, Any]) -> None:
    with open(metrics_path, "a") as f:
        f.write(json.dumps(record) + "\n")
