"""The long-run options: loss objects, R1/R2 and lazy regularisation, RpGAN, WGAN-GP, learning-rate
schedules, EMA stated in images, BN statistics of an averaged G, and exact resume with all of them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dcgan.checkpoint import load_checkpoint
from dcgan.config import ModelConfig, from_dict
from dcgan.ema import ema_beta, ema_copy, recompute_bn_stats
from dcgan.errors import ConfigError
from dcgan.gan import DPair, GANStep
from dcgan.losses import LOSSES, build_loss
from dcgan.losses.objectives import LogitLoss, zero_centred_penalty
from dcgan.models import build_models, sample_z
from dcgan.pixels import to_model_range
from dcgan.schedule import lr_factor
from dcgan.train import train

SIZE, CH, B = 8, 1, 4


class LinearD(nn.Module):
    """D(x) = <w, x> + b: its input gradient is w for every image, so penalties are known by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(CH * SIZE * SIZE, 1)
        with torch.no_grad():
            self.lin.weight.copy_(torch.linspace(-0.3, 0.5, CH * SIZE * SIZE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1)).squeeze(1)


class TinyG(nn.Module):
    nz = 3

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, CH * SIZE * SIZE)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.lin(z)).view(-1, CH, SIZE, SIZE)


def d_grads_after_one_step(loss: str = "bce", step: int = 0, **penalties) -> torch.Tensor:
    """D's weight gradient of the D update of one GANStep (SGD with lr 0 leaves the weights alone)."""
    torch.manual_seed(0)
    G, D = TinyG(), LinearD()
    step_fn = GANStep(G_train=G, D_pair=DPair(D), D=D, opt_G=torch.optim.SGD(G.parameters(), lr=0.0),
                      opt_D=torch.optim.SGD(D.parameters(), lr=0.0), nz=3, z_dist="uniform",
                      to_input=to_model_range, loss=loss, **penalties)
    data = iter([torch.randint(0, 256, (B, CH, SIZE, SIZE), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(1))])
    step_fn(data, torch.Generator().manual_seed(2), step)
    return D.lin.weight.grad.clone()


# --- the loss registry --------------------------------------------------------------------------------


def test_config_help_and_validation_read_the_loss_registry():
    from dcgan.config import describe_keys

    for name in LOSSES:
        assert from_dict({"train": {"loss": name}}).train.loss == name
    with pytest.raises(ConfigError, match="train.loss='nope' is not a loss; use one of bce, hinge"):
        from_dict({"train": {"loss": "nope"}})
    doc = {k: d for k, _, d in describe_keys()}["train.loss"]
    assert all(name in doc for name in LOSSES)  # --help lists every registered loss


def test_a_loss_registered_only_here_trains_through_the_cli(tiny_cfg, tmp_path, capsys):
    from dcgan.cli import main

    class Squared(LogitLoss):  # a loss of D's outputs: (D(x) - 1)^2 + D(G(z))^2, G: (D(G(z)) - 1)^2
        def d_loss(self, real, fake):
            return ((real - 1) ** 2).mean() + (fake ** 2).mean()

        def g_loss(self, fake):
            return ((fake - 1) ** 2).mean()

    LOSSES.register("test_squared", Squared, "a test's own loss")
    try:
        cfg = tiny_cfg(train={"max_steps": 2})
        (tmp_path / "c.yaml").write_text(__import__("yaml").safe_dump({**cfg.to_dict(), "train": {
            **cfg.to_dict()["train"], "loss": "test_squared"}}))
        assert main(["train", "--config", str(tmp_path / "c.yaml"), "--run-dir", str(tmp_path / "r")]) == 0
        assert load_checkpoint(tmp_path / "r")["config"]["train"]["loss"] == "test_squared"
    finally:
        LOSSES.unregister("test_squared")


def reference_step(loss: str, d_steps: int):
    """The training iteration as it was before losses became objects (frozen copy of its formulas)."""
    d = {"bce": lambda r, f: F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
         + F.binary_cross_entropy_with_logits(f, torch.zeros_like(f)),
         "hinge": lambda r, f: F.relu(1 - r).mean() + F.relu(1 + f).mean(),
         "lsgan": lambda r, f: 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f ** 2).mean()}[loss]
    g = {"bce": lambda f: F.binary_cross_entropy_with_logits(f, torch.ones_like(f)),
         "hinge": lambda f: -f.mean(), "lsgan": lambda f: 0.5 * ((f - 1) ** 2).mean()}[loss]

    def step(G, D, opt_G, opt_D, batches, noise):
        for k in range(d_steps):
            real = to_model_range(next(batches))
            z = sample_z(real.shape[0], 100, "uniform", generator=noise)
            with torch.no_grad() if k < d_steps - 1 else torch.enable_grad():
                fake = G(z)
            loss_d = d(D(real).float(), D(fake.detach()).float())
            opt_D.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_D.step()
        D.requires_grad_(False)
        loss_g = g(D(fake).float())
        opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_G.step()
        D.requires_grad_(True)
        return loss_d.detach(), loss_g.detach()
    return step


@pytest.mark.parametrize("d_steps", [1, 2])
@pytest.mark.parametrize("loss", ["bce", "hinge", "lsgan"])
def test_bce_hinge_and_lsgan_are_bit_for_bit_what_they_were(loss, d_steps):
    def run(use_objects: bool):
        torch.manual_seed(0)
        G, D = build_models(ModelConfig(ngf=8, ndf=8), 16, 1)
        opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
        opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
        g = torch.Generator().manual_seed(1)
        data = iter([torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8, generator=g) for _ in range(6)])
        step = GANStep(G_train=G, D_pair=DPair(D), D=D, opt_G=opt_G, opt_D=opt_D, nz=100, z_dist="uniform",
                       d_steps=d_steps, to_input=to_model_range, loss=loss) if use_objects \
            else reference_step(loss, d_steps)
        noise, out = torch.Generator(), []
        for i in range(3):
            noise.manual_seed(i)
            out.append(step(data, noise) if use_objects else step(G, D, opt_G, opt_D, data, noise))
        return out, G.state_dict(), D.state_dict()

    (new, G1, D1), (old, G0, D0) = run(True), run(False)
    for s_new, (loss_d, loss_g) in zip(new, old):
        assert torch.equal(s_new[0], loss_d) and torch.equal(s_new[1], loss_g)
    assert all(torch.equal(G1[k], G0[k]) for k in G0) and all(torch.equal(D1[k], D0[k]) for k in D0)


# --- penalties, by hand on a linear D ------------------------------------------------------------------


def test_zero_centred_penalty_is_the_squared_input_gradient_norm():
    D = LinearD()
    x = torch.randn(B, CH, SIZE, SIZE, requires_grad=True)
    w2 = D.lin.weight.square().sum()
    assert zero_centred_penalty(D(x), x).item() == pytest.approx(w2.item(), rel=1e-6)
    q = torch.randn(B, 3, requires_grad=True)  # D(x) = sum(x^2): gradient 2x
    assert zero_centred_penalty(q.square().sum(1), q).item() == pytest.approx((4 * q.square().sum(1)).mean().item())


@pytest.mark.parametrize("which", ["r1_gamma", "r2_gamma"])
def test_lazy_r1_r2_add_gamma_times_interval_times_w_to_ds_gradient(which):
    plain = d_grads_after_one_step()
    w = LinearD().lin.weight.detach()
    # d/dw of gamma/2 * k * ||w||^2 = gamma * k * w, on a due step (index % k == 0) only
    due = d_grads_after_one_step(**{which: 0.5}, reg_every=4, step=8)
    assert torch.allclose(due - plain, 0.5 * 4 * w, atol=1e-6)
    assert torch.equal(d_grads_after_one_step(**{which: 0.5}, reg_every=4, step=9), plain)  # not due: nothing
    both = d_grads_after_one_step(r1_gamma=0.5, r2_gamma=0.25, reg_every=1, step=3)
    assert torch.allclose(both - plain, (0.5 + 0.25) * w, atol=1e-6)


def test_rpgan_and_wgan_gp_values_by_hand():
    D = LinearD()
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(B, CH, SIZE, SIZE, generator=g), torch.randn(B, CH, SIZE, SIZE, generator=g)
    r, f = D(real), D(fake)
    loss, _, _ = build_loss("rpgan").d_step(DPair(D), real, fake, g)
    assert loss.item() == pytest.approx(F.softplus(f - r).mean().item(), rel=1e-6)
    lg, _ = build_loss("rpgan").g_step(D, fake, real, g)
    assert lg.item() == pytest.approx(F.softplus(r - f).mean().item(), rel=1e-6)
    # WGAN-GP: the gradient at any interpolate is w, so the penalty is 10 (||w|| - 1)^2
    loss, _, _ = build_loss("wgan_gp").d_step(DPair(D), real, fake, g)
    gp = 10 * (D.lin.weight.norm() - 1) ** 2
    assert loss.item() == pytest.approx((f.mean() - r.mean() + gp).item(), rel=1e-5)
    assert build_loss("rpgan").uses_real_in_g and not build_loss("bce").uses_real_in_g


@pytest.mark.parametrize("opts", [{"loss": "rpgan", "r1_gamma": 1.0, "r2_gamma": 1.0},
                                  {"loss": "wgan_gp"}, {"r1_gamma": 1.0, "reg_every": 2}])
def test_penalised_training_moves_d_and_g(tiny_cfg, tmp_path, opts):
    plain = load_checkpoint(train(tiny_cfg(train={"max_steps": 2}), run_dir=tmp_path / "p").run_dir)
    ck = load_checkpoint(train(tiny_cfg(train={"max_steps": 2, **opts}), run_dir=tmp_path / "r").run_dir)
    for net in ("G", "D"):
        assert all(torch.isfinite(v).all() for v in ck[net].values() if v.is_floating_point())
        assert any(not torch.equal(ck[net][k], plain[net][k]) for k in plain[net]), net


def test_penalties_refuse_fp16():
    with pytest.raises(ConfigError, match="gradient penalties .* use train.precision=bf16 or fp32"):
        from_dict({"train": {"r1_gamma": 1.0, "precision": "fp16"}})


# --- schedules -------------------------------------------------------------------------------------------


def test_learning_rate_schedules_at_given_steps():
    assert [lr_factor("constant", s, 100) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert [lr_factor("linear", s, 100) for s in (0, 25, 50, 99)] == pytest.approx([1.0, 0.75, 0.5, 0.01])
    assert [lr_factor("cosine", s, 100) for s in (0, 50, 100)] == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    assert lr_factor("cosine", 25, 100) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert [lr_factor("linear", s, 100, warmup=10) for s in (0, 4, 9, 20)] == pytest.approx([0.1, 0.48, 0.91, 0.8])
    assert lr_factor("constant", 3, 100, warmup=4) == 1.0


def test_a_run_uses_the_scheduled_rate_at_each_step(tiny_cfg, tmp_path):
    run = train(tiny_cfg(train={"max_steps": 8, "lr_schedule": "linear", "lr_warmup": 2, "lr_d": 1e-3,
                                "lr_g": 4e-4}), run_dir=tmp_path / "r").run_dir
    ck = load_checkpoint(run)  # the optimisers hold the rate of the last step run (step 7 of 8)
    f = lr_factor("linear", 7, 8, 2)
    assert ck["opt_D"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * f)
    assert ck["opt_G"]["param_groups"][0]["lr"] == pytest.approx(4e-4 * f)


# --- EMA in images ---------------------------------------------------------------------------------------


def test_ema_half_life_is_stated_in_images_at_every_batch_size():
    # after one half-life of images, the weight of the starting point is 1/2 at any batch size
    for batch in (32, 128, 512):
        beta = ema_beta(decay=0, kimg=10, rampup=0, step=10**6, images_per_step=batch)
        assert beta ** (10_000 / batch) == pytest.approx(0.5)
    # ramp-up: the half-life is at most 5% of the images seen before the step
    assert ema_beta(decay=0, kimg=10, rampup=0.05, step=0, images_per_step=128) == 0.0  # starts at G
    beta = ema_beta(decay=0, kimg=10, rampup=0.05, step=100, images_per_step=128)
    assert beta == pytest.approx(0.5 ** (128 / (100 * 128 * 0.05)))
    assert ema_beta(decay=0.999, kimg=0, rampup=0, step=10**6, images_per_step=128) == 0.999  # train.ema kept
    with pytest.raises(ConfigError, match="both set an average of G"):
        from_dict({"train": {"ema": 0.999, "ema_kimg": 10}})


def test_recomputed_bn_statistics_match_the_batches_of_z():
    torch.manual_seed(0)
    G, _ = build_models(ModelConfig(ngf=8, ndf=8), 16, 1)
    avg = ema_copy(G)
    for m in avg.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(5.0)  # stale statistics
    recompute_bn_stats(avg, batch_size=64, num_batches=4, seed=3)
    assert not avg.training
    bn = next(m for m in avg.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.running_mean.abs().max() < 1.0 and bn.momentum == 0.1  # re-estimated; momentum restored


# --- exact resume with every new option on ---------------------------------------------------------------


def test_resume_is_exact_with_every_new_option(tiny_cfg, tmp_path, monkeypatch):
    from dcgan import loop as loop_mod

    opts = {"loss": "rpgan", "r1_gamma": 0.5, "r2_gamma": 0.2, "reg_every": 3, "lr_schedule": "cosine",
            "lr_warmup": 2, "ema_kimg": 0.1, "ema_rampup": 0.05, "augment": ["translation"]}
    train(tiny_cfg(train=opts), run_dir=tmp_path / "a")
    # the same 8-step run, stopped (as by Ctrl-C) after step 5, then resumed
    calls = {"n": 0}
    real_call = GANStep.__call__

    def counted(self, *args):
        calls["n"] += 1
        return real_call(self, *args)

    class StopAfterFive(loop_mod.StopFlag):
        requested = property(lambda self: calls["n"] >= 5, lambda self, v: None)

    with monkeypatch.context() as m:
        m.setattr(GANStep, "__call__", counted)
        m.setattr(loop_mod, "StopFlag", StopAfterFive)
        assert train(tiny_cfg(train=opts), run_dir=tmp_path / "b").step == 5
    assert train(resume=tmp_path / "b").step == 8
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    for key in ("G", "D", "G_ema", "opt_G", "opt_D"):
        if key.startswith("opt"):
            assert a[key]["param_groups"][0]["lr"] == b[key]["param_groups"][0]["lr"]
            continue
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
