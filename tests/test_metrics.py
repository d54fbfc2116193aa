"""Metric sanity: Frechet distance, KID, precision/recall, IS on constructed inputs (no data needed),
and the registry every score is dispatched through."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from dcgan.config import from_dict
from dcgan.errors import ConfigError, DCGANError
from dcgan.metrics import (
    compute,
    frechet_distance,
    gaussian_stats,
    inception_score,
    kernel_distance,
    mmd2_unbiased,
    precision_recall,
    registry,
    resolve_metrics,
)
from dcgan.metrics.compute import Features, RealStats, ScoreOptions, class_coverage
from dcgan.metrics.registry import is_better


def _random_cov(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_identical_statistics_is_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=16), _random_cov(rng, 16)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_frechet_matches_closed_form_for_gaussians():
    rng = np.random.default_rng(1)
    # Diagonal covariances: d^2 = |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2.
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    s1, s2 = rng.uniform(0.5, 2, 8), rng.uniform(0.5, 2, 8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)
    # General covariances: the textbook formula with a matrix square root.
    c1, c2 = _random_cov(rng, 12), _random_cov(rng, 12)
    m1, m2 = rng.normal(size=12), rng.normal(size=12)
    ref = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    assert frechet_distance(m1, c1, m2, c2) == pytest.approx(ref, rel=1e-7)
    # 1-D: (mu1 - mu2)^2 + (sd1 - sd2)^2.
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([0.0]), np.array([[1.0]])) == \
        pytest.approx(1.0 + 1.0)


def test_frechet_of_samples_same_vs_different_distribution():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4000, 8)), rng.normal(size=(4000, 8))
    c = rng.normal(loc=1.0, size=(4000, 8))
    same = frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
    diff = frechet_distance(*gaussian_stats(a), *gaussian_stats(c))
    assert same < 0.05
    assert diff == pytest.approx(8.0, rel=0.1)  # |mu1 - mu2|^2 = 8


def test_kid_is_unbiased_and_matches_torchmetrics():
    from torchmetrics.image.kid import poly_mmd

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    assert mmd2_unbiased(x, y) == pytest.approx(float(poly_mmd(torch.from_numpy(x), torch.from_numpy(y))),
                                                rel=1e-9, abs=1e-12)
    # Two samples of one distribution: ~0 on average (an unbiased estimate can go below 0).
    same = [mmd2_unbiased(rng.normal(size=(100, 16)), rng.normal(size=(100, 16))) for _ in range(40)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same)) + 1e-4
    assert min(same) < 0 < max(same)
    mean, std = kernel_distance(x, rng.normal(loc=0.5, size=(300, 16)), subsets=10, subset_size=100)
    assert mean > 3 * std > 0


def test_precision_recall_on_constructed_sets():
    rng = np.random.default_rng(4)
    real = rng.uniform(0, 1, size=(500, 2))
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    far = real + 100.0
    assert precision_recall(real, far) == (0.0, 0.0)
    # Half of the fakes on the data, half far away: precision 1/2; the fakes cover all the
    # real points only through their on-data half, which is a copy of the real set: recall 1.
    half = np.concatenate([real[:250], real[250:] + 100.0])
    p, r = precision_recall(real, half)
    assert p == pytest.approx(0.5)
    # Mode-dropping: fakes only in the left half of the square -> high precision, low recall.
    left = real[real[:, 0] < 0.5]
    p, r = precision_recall(real, left)
    assert p == 1.0 and 0.3 < r < 0.7


def test_inception_score_bounds():
    k = 10
    confident_all_classes = torch.eye(k).repeat(20, 1) * 50  # sharp, uniform over classes -> IS = K
    m, _ = inception_score(confident_all_classes.numpy(), splits=1)
    assert m == pytest.approx(k, rel=1e-3)
    one_class = torch.zeros(200, k)
    one_class[:, 3] = 50  # collapse to one class -> IS = 1
    assert inception_score(one_class.numpy(), splits=1)[0] == pytest.approx(1.0, abs=1e-6)


def test_class_coverage():
    freq = np.full(10, 0.1)
    logits = np.eye(10)[np.arange(1000) % 10]
    assert class_coverage(logits, freq) == 1.0
    logits = np.eye(10)[np.arange(1000) % 3]  # three classes only: mode collapse
    assert class_coverage(logits, freq) == pytest.approx(0.3)


def test_is_better_direction():
    assert is_better("fd_clf", {"fd_clf": 1.0}, None)
    assert is_better("fd_clf", {"fd_clf": 1.0}, {"fd_clf": 2.0})
    assert not is_better("fd_clf", {"fd_clf": 3.0}, {"fd_clf": 2.0})
    assert is_better("is_clf", {"is_clf": 3.0}, {"is_clf": 2.0})
    assert not is_better("coverage", {"coverage": 0.5}, {"coverage": 0.9})
    assert not is_better("fd_clf", {"fd_clf": float("nan")}, {"fd_clf": 2.0})


def test_metric_names_and_config_validation():
    assert resolve_metrics(["fid", "kid", "pr"], "classifier") == ["fd_clf", "kid_clf", "pr_clf"]
    assert resolve_metrics(["fd", "is"], "inception") == ["fid", "is"]
    with pytest.raises(DCGANError, match="unknown metric 'bogus'"):
        resolve_metrics(["bogus"])
    with pytest.raises(DCGANError, match="uses the classifier features"):
        resolve_metrics(["fd_clf"], "inception")
    with pytest.raises(ConfigError, match="eval.metrics has 'fidd'"):
        from_dict({"eval": {"metrics": ["fidd"]}})
    with pytest.raises(ConfigError, match="eval.best='fid' is not a score"):
        from_dict({"eval": {"every": 10, "metrics": ["fd_clf"], "best": "fid"}})
    cfg = from_dict({"eval": {"every": 10, "metrics": "fd_clf,pr_clf", "best": "recall_clf"}})
    assert cfg.eval.metrics == ["fd_clf", "pr_clf"]


def test_registry_is_the_one_table():
    """Every metric names a compute function that exists; config validation and the CLI's list read it."""
    for m in registry.METRICS.values():
        assert callable(getattr(compute, m.compute)), m.name
        assert m.network in (registry.CLASSIFIER, registry.INCEPTION, registry.SSL)
        assert all(s.better in (registry.LOWER, registry.HIGHER, "") for s in m.scores)
    assert registry.score_keys(["pr_clf", "fd_clf"]) == ["precision_clf", "recall_clf", "fd_clf"]
    assert registry.ranked_keys(["kid_clf"]) == ["kid_clf"]  # the spread ranks nothing
    assert registry.lower_is_better("fid") and not registry.lower_is_better("recall")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_metric("fid", registry.INCEPTION, (("fid", registry.LOWER),), "frechet")
    import dcgan.metrics.evaluator as evaluator

    assert not hasattr(evaluator, "METRICS")  # no second table


def _sides(seed: int, n: int = 200, d: int = 8, k: int = 4, shift: float = 0.0):
    rng = np.random.default_rng(seed)
    real_f = rng.normal(size=(n, d))
    fake = Features(rng.normal(loc=shift, size=(n, d)), np.eye(k)[np.arange(n) % k] * 5)
    labels = torch.arange(n) % k
    return fake, RealStats.from_features(real_f, labels, k, "synthetic (test)")


def test_each_metric_dispatches_to_its_formula():
    """The registry's scores equal the formulas called directly, keyed as declared."""
    fake, real = _sides(0, shift=0.5)
    opts = ScoreOptions(seed=1, kid_subsets=5, kid_subset_size=50)
    real64 = real.features.double().numpy()
    fd = registry.METRICS["fd_clf"](fake, real, opts)
    assert fd == {"fd_clf": frechet_distance(*gaussian_stats(fake.embedding), real.mu, real.sigma)}
    assert registry.METRICS["fid"](fake, real, opts) == {"fid": fd["fd_clf"]}
    kid = kernel_distance(real64, fake.embedding, subsets=5, subset_size=50, seed=1)
    assert registry.METRICS["kid"](fake, real, opts) == {"kid": kid[0], "kid_std": kid[1]}
    p, r = precision_recall(real64, fake.embedding, 3)
    assert registry.METRICS["pr_clf"](fake, real, opts) == {"precision_clf": p, "recall_clf": r}
    m, s = inception_score(fake.logits, splits=10)
    assert registry.METRICS["is"](fake, real, opts) == {"is": m, "is_std": s}
    assert registry.METRICS["coverage"](fake, real, opts) == {"coverage": 1.0}


def test_coverage_needs_labels():
    fake, real = _sides(0)
    real.class_freq = None
    with pytest.raises(DCGANError, match="synthetic \\(test\\) has no labels for class coverage"):
        registry.METRICS["coverage"](fake, real, ScoreOptions())


def test_real_stats_round_trip_through_a_cache_blob():
    _, real = _sides(3)
    back = RealStats.from_blob(real.to_blob(), real.source)
    assert torch.equal(back.features, real.features) and back.num == real.num
    assert np.array_equal(back.mu, real.mu) and np.array_equal(back.sigma, real.sigma)
    assert np.array_equal(back.class_freq, real.class_freq)
    with pytest.raises(KeyError):
        RealStats.from_blob({"mu": torch.zeros(2)}, "x")
