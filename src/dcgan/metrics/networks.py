"""The builders `FEATURE_NETWORKS` names: each loads its feature network from its cache (or
trains / downloads and caches it) and wraps it as a `FeatureNet`: uint8 images -> Features.

A builder takes (data config, NetworkOptions) and returns a FeatureNet whose `key` changes
whenever its weights do, so the real statistics cached under that key are never stale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..config import DataConfig
from .compute import Features
from .registry import CLASSIFIER, FEATURE_NETWORKS, INCEPTION, SSL
from .ssl import DEFAULT_STEPS as SSL_STEPS


@dataclass
class NetworkOptions:
    """What a builder may read, besides the data config."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    classifier_epochs: int = 2
    ssl_steps: int = SSL_STEPS
    inception_weights: str | None = None
    given: dict[str, Any] = field(default_factory=dict)  # networks the caller already has, by name


@dataclass
class FeatureNet:
    """One built feature network, as the evaluator uses it."""

    name: str  # in reports (the protocol's "features")
    key: str  # in the real statistics' cache name: the name and, where it can change, a weights digest
    extract: Callable[[torch.Tensor], Features]  # uint8 (N, C, S, S) -> Features
    model: Any = None  # the network object underneath (TrainedClassifier, TrainedEncoder, ...)
    protocol: dict[str, Any] = field(default_factory=dict)  # fields added to every evaluation record

    def __call__(self, images: torch.Tensor) -> Features:
        return self.extract(images)


def build(name: str, data_cfg: DataConfig, options: NetworkOptions) -> FeatureNet:
    """The registered feature network `name`, built by its entry's builder."""
    return FEATURE_NETWORKS.load(name)(data_cfg, options)


def _features(out: dict[str, np.ndarray], embedding: str) -> Features:
    return Features(out[embedding], out.get("logits"))


def build_classifier(data_cfg: DataConfig, options: NetworkOptions) -> FeatureNet:
    """The cached classifier (trained on the training split first if missing), or the given one."""
    from .classifier import get_classifier

    clf = options.given.get(CLASSIFIER) or get_classifier(data_cfg, seed=0, epochs=options.classifier_epochs,
                                                           device=options.device)
    return FeatureNet(clf.name, f"{clf.name}-{clf.digest}", lambda x: _features(clf(x), "features"), clf,
                      {"clf_test_accuracy": round(float(clf.info["test_accuracy"]), 4), "clf_weights": clf.digest})


def build_encoder(data_cfg: DataConfig, options: NetworkOptions) -> FeatureNet:
    """The cached self-supervised encoder, trained on the split G learns from (never on the split
    scored against), or the given one."""
    from .ssl import get_encoder

    enc = options.given.get(SSL) or get_encoder(data_cfg, split=data_cfg.split, seed=0, steps=options.ssl_steps,
                                                 device=options.device)
    return FeatureNet(enc.name, f"{enc.name}-{enc.digest}", lambda x: _features(enc(x), "features"), enc)


def build_inception(data_cfg: DataConfig, options: NetworkOptions) -> FeatureNet:
    """Inception-v3 from --inception-weights / $DCGAN_INCEPTION_WEIGHTS, else torch's download
    cache; its name already holds the weights file's digest."""
    from .inception import InceptionFeatures

    inc = options.given.get(INCEPTION) or InceptionFeatures(options.inception_weights, options.device)
    return FeatureNet(inc.name, inc.name, lambda x: _features(inc(x), "pool"), inc)
