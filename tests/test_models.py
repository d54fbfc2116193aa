"""Networks (paper §3): shapes for every size and channel count, BN placement, init statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dcgan.config import IMAGE_SIZES, ModelConfig
from dcgan.errors import ConfigError
from dcgan.models import Discriminator, Generator, build_models, init_weights, sample_z

BN = nn.modules.batchnorm._BatchNorm


@pytest.mark.parametrize("size", IMAGE_SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_every_size_and_channel_count(size, channels):
    G, D = build_models(ModelConfig(ngf=4, ndf=4), size, channels)
    z = sample_z(2, 100)
    x = G(z)
    assert x.shape == (2, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1  # Tanh output
    assert D(x).shape == (2,)
    # 4x4 map at the bottom of both nets, doubling/halving per stage.
    assert G.features(z)[0].shape[-1] == 4
    assert D.features(x)[-1].shape[-1] == 4
    assert len(G.stages) == len(D.stages) + 1


@pytest.mark.parametrize("kernel_size", [4, 5])
@pytest.mark.parametrize("projection", ["linear", "conv"])
@pytest.mark.parametrize("d_head", ["conv", "avgpool"])
def test_architecture_options(kernel_size, projection, d_head):
    cfg = ModelConfig(ngf=4, ndf=4, kernel_size=kernel_size, projection=projection, d_head=d_head)
    G, D = build_models(cfg, 32, 3)
    x = G(sample_z(3, 100))
    assert x.shape == (3, 3, 32, 32)
    assert D(x).shape == (3,)
    convs = [m for m in list(G.modules()) + list(D.modules()) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    # Every up/down-sampling conv uses the configured kernel (the 1x1->4x4 projection and the
    # 4x4 valid head are fixed at 4).
    assert {m.kernel_size[0] for m in convs} - {4} <= {kernel_size}
    assert isinstance(G.stages[0][0], nn.Linear if projection == "linear" else nn.Unflatten)


def test_batchnorm_placement():
    """§3: BN everywhere except G's output layer and D's input layer; none after D's head."""
    G, D = build_models(ModelConfig(ngf=8, ndf=8), 64, 3)
    assert not any(isinstance(m, BN) for m in G.stages[-1].modules())
    assert all(any(isinstance(m, BN) for m in s.modules()) for s in G.stages[:-1])
    assert not any(isinstance(m, BN) for m in D.stages[0].modules())
    assert all(any(isinstance(m, BN) for m in s.modules()) for s in D.stages[1:])
    assert not any(isinstance(m, (BN, nn.Sigmoid)) for m in D.head.modules())
    # Activations: ReLU + Tanh in G, LeakyReLU(0.2) in D.
    assert isinstance(G.stages[-1][-1], nn.Tanh)
    assert all(any(isinstance(m, nn.ReLU) for m in s) for s in G.stages[:-1])
    assert all(isinstance(s[-1], nn.LeakyReLU) and s[-1].negative_slope == 0.2 for s in D.stages)


@pytest.mark.parametrize("size", [16, 64])
def test_init_statistics_applied_to_every_layer(size):
    """§4: N(0, 0.02) weights on conv, transposed conv and linear layers; BN scale N(1, 0.02)."""
    torch.manual_seed(0)
    G, D = build_models(ModelConfig(ngf=32, ndf=32), size, 3)
    for net in (G, D):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                w = m.weight.detach()
                if w.numel() >= 500:
                    assert abs(w.mean().item()) < 0.005, m
                    assert abs(w.std().item() - 0.02) < 0.004, m
                if m.bias is not None:
                    assert torch.all(m.bias == 0)
            if isinstance(m, BN):
                assert abs(m.weight.mean().item() - 1) < 0.02
                assert m.weight.std().item() < 0.04
                assert torch.all(m.bias == 0)
    # The trap: transposed convs left at PyTorch's default (kaiming-uniform, std far from 0.02).
    tconvs = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert tconvs and all(abs(m.weight.std().item() - 0.02) < 0.005 for m in tconvs)


def test_init_weights_is_idempotent_in_distribution():
    layer = nn.ConvTranspose2d(64, 64, 4)
    init_weights(layer)
    assert abs(layer.weight.std().item() - 0.02) < 0.002


def test_unsupported_size_and_channels_raise_config_errors():
    with pytest.raises(ConfigError, match="image_size=48"):
        Generator(ModelConfig(), 48, 3)
    with pytest.raises(ConfigError, match="channels=2"):
        build_models(ModelConfig(), 32, 2)
    with pytest.raises(ConfigError, match="kernel_size"):
        Discriminator(ModelConfig(kernel_size=3), 32, 3)


def test_z_distributions():
    g = torch.Generator().manual_seed(0)
    u = sample_z(10_000, 100, "uniform", generator=g)
    assert u.min() >= -1 and u.max() <= 1 and abs(u.mean()) < 0.01 and u.min() < -0.99
    n = sample_z(10_000, 100, "normal", generator=g)
    assert abs(n.std() - 1) < 0.01 and n.abs().max() > 3


def test_seeded_output_slice_regression():
    """A small slice of G's output for a fixed seed, so silent architecture changes are caught."""
    torch.manual_seed(0)
    G, D = build_models(ModelConfig(ngf=8, ndf=8), 16, 1)
    z = sample_z(4, 100, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # train-mode BN: batch statistics, so the values are O(0.1), not O(1e-4)
        x = G(z)
        out = x[0, 0, 0, :4]
        logits = D(x)[:2]
    assert torch.allclose(out, torch.tensor(EXPECTED_G_SLICE), rtol=1e-3, atol=2e-6), out.tolist()
    assert torch.allclose(logits, torch.tensor(EXPECTED_D_LOGITS), rtol=1e-3, atol=2e-6), logits.tolist()


EXPECTED_G_SLICE = [0.007878, -0.061976, -0.001231, -0.060865]
EXPECTED_D_LOGITS = [-0.06034, -0.018285]
