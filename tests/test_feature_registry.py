"""The feature-network registry: one entry adds a network and its metrics, end to end.

A test registers a tiny fixed random conv net (only inside the test), scores a Frechet distance
with it through the evaluator and through `dcgan eval`, and unregisters it after.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dcgan.cli import main
from dcgan.config import ConfigError, from_dict
from dcgan.data import load_images
from dcgan.metrics import compute, registry
from dcgan.metrics.evaluator import Evaluator, resolve_metrics, stats_path
from dcgan.metrics.frechet import frechet_distance, gaussian_stats
from dcgan.metrics.networks import FeatureNet
from dcgan.pixels import to_model_range

TINY = "tiny"


def tiny_net(channels: int) -> nn.Module:
    torch.manual_seed(0)  # fixed random weights: the same network at every build
    return nn.Sequential(nn.Conv2d(channels, 4, 3, stride=2, padding=1), nn.ReLU(),  # (B, 4, S/2, S/2)
                         nn.AdaptiveAvgPool2d(2), nn.Flatten()).eval()  # (B, 16)


def embed(net: nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return net(to_model_range(images)).double().numpy()


def build_tiny(data_cfg, options) -> FeatureNet:
    net = tiny_net(data_cfg.channels)
    return FeatureNet("tiny-random-conv", "tiny-random-conv-v1",
                      lambda x: compute.Features(embed(net, x)), net)


@pytest.fixture
def tiny():
    entry = registry.FEATURE_NETWORKS.register(TINY, build_tiny, "a fixed random conv net (this test)",
                                               suffix="tiny", noun="tiny random conv",
                                               families=("fd", "kid", "pr"), evaluation=("fd", "kid"))
    yield entry
    registry.FEATURE_NETWORKS.unregister(TINY)


def test_one_entry_registers_the_network_and_its_metrics(tiny):
    assert tiny.metrics() == ("fd_tiny", "kid_tiny", "pr_tiny")
    assert registry.METRICS["fd_tiny"].network == TINY and registry.lower_is_better("fd_tiny")
    assert registry.score_keys(["pr_tiny", "kid_tiny"]) == ["precision_tiny", "recall_tiny", "kid_tiny",
                                                             "kid_tiny_std"]
    assert registry.METRICS["fd_tiny"].doc == "Frechet distance of tiny random conv features"
    assert resolve_metrics(["fd", "pr"], TINY) == ["fd_tiny", "pr_tiny"]
    assert registry.default_metrics("fashion_mnist", TINY) == ("fd_tiny", "kid_tiny")
    # `auto` still picks the offline networks registered first.
    assert registry.default_network("fashion_mnist") == registry.CLASSIFIER
    assert registry.default_network("folder") == registry.SSL
    assert from_dict({"eval": {"every": 10, "metrics": "fd_tiny"}}).eval.best == "fd_tiny"


def test_unregistering_drops_the_metrics():
    before = dict(registry.METRICS)
    registry.FEATURE_NETWORKS.register(TINY, build_tiny, suffix="tiny", families=("fd",))
    registry.FEATURE_NETWORKS.unregister(TINY)
    assert registry.METRICS == before and TINY not in registry.FEATURE_NETWORKS
    with pytest.raises(ConfigError, match="fd_tiny"):
        from_dict({"eval": {"metrics": "fd_tiny"}})


@pytest.mark.parametrize("fields,message", [
    ({"suffix": "clf", "families": ("fd",)}, "registered twice"),  # fd_clf exists
    ({"suffix": "tiny", "families": ("fd", "coverage")}, "coverage needs"),
    ({"suffix": "tiny", "families": ("fd", "lpips")}, "unknown metric families"),
    ({"suffix": "tiny", "families": ("fd",), "training": ("kid",)}, "outside its families"),
])
def test_bad_entries_are_refused_and_leave_nothing(fields, message):
    before = dict(registry.METRICS)
    with pytest.raises(ValueError, match=message):
        registry.FEATURE_NETWORKS.register(TINY, build_tiny, **fields)
    assert registry.METRICS == before and TINY not in registry.FEATURE_NETWORKS


def test_the_builtin_networks_are_one_table():
    nets = registry.FEATURE_NETWORKS
    assert nets.names() == (registry.CLASSIFIER, registry.SSL, registry.INCEPTION)
    assert {m.network for m in registry.METRICS.values()} == set(nets.names())
    assert [m for n in nets for m in nets.entry(n).metrics()] == list(registry.METRICS)
    assert nets.entry(registry.INCEPTION).download and nets.entry(registry.CLASSIFIER).needs_labels
    assert all(callable(nets.load(n)) for n in nets)  # each names a builder that exists


def test_fd_through_the_evaluator(tiny, tiny_cfg):
    cfg = tiny_cfg()
    real = load_images(cfg.data, "test").images
    ev = Evaluator(["fd_tiny", "kid_tiny"], cfg.data, split="test", kid_subsets=5)
    same = ev.score_images(real)
    noise = ev.score_images(torch.randint(0, 256, real.shape, generator=torch.Generator().manual_seed(0),
                                          dtype=torch.uint8))
    assert abs(same["fd_tiny"]) < 1e-6 and noise["fd_tiny"] > 1e-3
    assert same["features"] == "tiny-random-conv" and same["n_real"] == len(real)
    half = real[: len(real) // 2]
    net = tiny_net(1)
    expected = frechet_distance(*gaussian_stats(embed(net, half)), *gaussian_stats(embed(net, real)))
    assert ev.score_images(half)["fd_tiny"] == pytest.approx(expected, rel=1e-6)
    assert stats_path(cfg.data, "test", "tiny-random-conv-v1", len(real)).is_file()  # the real side, cached


def test_fd_through_dcgan_eval(tiny, tiny_cfg, tmp_path, capsys):
    cfg = tiny_cfg()
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(load_images(cfg.data, "test").images[:64]):
        Image.fromarray(img[0].numpy(), mode="L").save(folder / f"{i:03d}.png")
    rc = main(["eval", "--images", str(folder), "--dataset", "fashion_mnist", "--data-root", cfg.data.root,
               "--image-size", "16", "--cache-dir", cfg.data.cache_dir, "--features", TINY, "--metrics", "fd",
               "--json", "--device", "cpu"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["features"] == "tiny-random-conv"
    assert 0 < out["fd_tiny"] < 1.0  # real test images against all of them: close, not equal
