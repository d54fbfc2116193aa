"""The fast paths change speed, not results.

GANStep (foreach Adam, channels_last, D's weight gradients off in G's step, the fake batch
reused for G's loss) must give the same losses and weights as a plain textbook loop under one
seed; each precision option runs on CPU and stays close to fp32.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial

import pytest
import torch

from dcgan.config import ModelConfig
from dcgan.gan import DPair, GANStep
from dcgan.losses.objectives import d_loss, g_loss
from dcgan.models import build_models, sample_z
from dcgan.pixels import to_model_range

SIZE, CH, B, STEPS = 16, 1, 16, 3


def batches(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (B, CH, SIZE, SIZE), dtype=torch.uint8, generator=g) for _ in range(STEPS)]


def plain_loop(data: list[torch.Tensor]) -> tuple[list[float], dict]:
    torch.manual_seed(0)
    G, D = build_models(ModelConfig(ngf=8, ndf=8), SIZE, CH)
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=False)
    opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=False)
    gen = torch.Generator()
    losses = []
    for i, x in enumerate(data):
        gen.manual_seed(i)
        real = x.float() / 127.5 - 1
        z = sample_z(B, 100, generator=gen)
        fake = G(z)
        loss_d = d_loss(D(real), D(fake.detach()))
        opt_D.zero_grad()
        loss_d.backward()
        opt_D.step()
        loss_g = g_loss(D(fake))
        opt_G.zero_grad()
        loss_g.backward()
        opt_G.step()
        losses += [loss_d.item(), loss_g.item()]
    return losses, G.state_dict()


def fast_loop(data: list[torch.Tensor], precision: str = "fp32", channels_last: bool = True):
    torch.manual_seed(0)
    G, D = build_models(ModelConfig(ngf=8, ndf=8), SIZE, CH)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    G.to(memory_format=fmt)
    D.to(memory_format=fmt)
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
    opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = partial(torch.autocast, device_type="cpu", dtype=dtype) if dtype else nullcontext
    scaler = torch.amp.GradScaler("cpu") if precision == "fp16" else None
    step = GANStep(G_train=G, D_pair=DPair(D), D=D, opt_G=opt_G, opt_D=opt_D, nz=100, z_dist="uniform",
                   autocast=autocast, scaler=scaler,
                   to_input=lambda x: to_model_range(x).contiguous(memory_format=fmt))
    it, gen, stats = iter(data), torch.Generator(), []
    for i in range(len(data)):
        gen.manual_seed(i)
        stats.append(step(it, gen))
    return torch.stack(stats)[:, :2].flatten().tolist(), G.state_dict()


def test_fp32_fast_path_matches_plain_loop():
    data = batches()
    plain_losses, plain_G = plain_loop(data)
    fast_losses, fast_G = fast_loop(data)
    assert fast_losses == pytest.approx(plain_losses, rel=1e-4)
    for k, v in plain_G.items():
        assert torch.allclose(v.float(), fast_G[k].float(), atol=1e-5), k


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_stays_close_to_fp32(precision):
    data = batches()
    ref, _ = fast_loop(data, "fp32")
    got, G = fast_loop(data, precision)
    assert all(torch.isfinite(v).all() for v in G.values() if v.is_floating_point())
    assert got == pytest.approx(ref, rel=0.05)  # bf16 has 8 mantissa bits: close, not equal
    assert got != ref  # autocast really ran in low precision
