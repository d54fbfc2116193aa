"""A short real training on Fashion-MNIST whose samples are measured, not just produced.

The measure is a Frechet distance between Gaussians fitted to 8x8 average-pooled pixels (64
dims) of generated and real *test* images: cheap, needs no feature network, and far apart for
a generator that has not learnt the data. A trained G must land much closer to the data than
the same G at initialisation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg

from dcgan.checkpoint import load_models
from dcgan.data import load_images
from dcgan.models import build_models
from dcgan.sampling import generate, noise
from dcgan.train import train


def pooled(x: torch.Tensor) -> np.ndarray:
    """(N, 1, 32, 32) in [-1, 1] -> (N, 64) features."""
    return F.adaptive_avg_pool2d(x.float(), 8).flatten(1).double().numpy()


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_short_training_moves_samples_towards_the_data(real_tiny_cfg, tmp_path):
    """Real Fashion-MNIST (skips with the reason without Debian's package)."""
    cfg = real_tiny_cfg(data={"image_size": 32, "subset": 8192},
                   model={"ngf": 32, "ndf": 32},
                   train={"batch_size": 64, "max_steps": 150, "log_every": 50, "sample_every": 150,
                          "checkpoint_every": 0})
    run = train(cfg, run_dir=tmp_path / "run").run_dir

    test = load_images(cfg.data, "test").images[:2000]
    real = pooled(test.float() / 127.5 - 1)
    z = noise(2000, 100, "uniform", seed=123)

    G_trained, _, _, _ = load_models(run)
    torch.manual_seed(cfg.train.seed)
    G_init, _ = build_models(cfg.model, 32, 1)  # the same init the run started from
    fd_trained = frechet(pooled(generate(G_trained, z)), real)
    fd_init = frechet(pooled(generate(G_init, z)), real)
    # Two halves of the real test set: the floor this measure can reach.
    fd_real = frechet(real[:1000], real[1000:])

    assert fd_real < fd_trained < 0.35 * fd_init, (fd_real, fd_trained, fd_init)
    # The samples use the data's range: dark background, bright garments.
    samples = generate(G_trained, z[:256])
    assert samples.min() < -0.9 and samples.max() > 0.5
