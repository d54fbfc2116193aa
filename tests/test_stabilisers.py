"""Beyond the paper: the stabiliser options each change what they claim to, and stay resumable."""

from __future__ import annotations

import pytest
import torch

from dcgan.augment import diff_augment
from dcgan.checkpoint import load_checkpoint
from dcgan.config import from_dict
from dcgan.ema import ema_copy, ema_decay, ema_update
from dcgan.errors import ConfigError
from dcgan.losses import build_loss
from dcgan.tables import AUGMENTATIONS
from dcgan.train import train


def test_losses_have_their_textbook_values():
    r, f = torch.tensor([2.0, -0.5]), torch.tensor([-3.0, 0.5])
    hinge = build_loss("hinge")
    assert hinge.d_loss(r, f).item() == pytest.approx((0 + 1.5) / 2 + (0 + 1.5) / 2)
    assert hinge.g_loss(f).item() == pytest.approx(1.25)
    ls = build_loss("lsgan")
    assert ls.d_loss(r, f).item() == pytest.approx(0.5 * (1 + 2.25) / 2 + 0.5 * (9 + 0.25) / 2)
    assert ls.g_loss(f).item() == pytest.approx(0.5 * (16 + 0.25) / 2)
    assert build_loss("bce").g_loss(torch.tensor([0.0])).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_each_augmentation_is_seeded_differentiable_and_changes_images(name):
    x = (torch.rand(8, 3, 16, 16) * 2 - 1).requires_grad_(True)
    a = AUGMENTATIONS.load(name)(x, torch.Generator().manual_seed(1))
    b = AUGMENTATIONS.load(name)(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)  # the generator alone decides
    assert not torch.equal(a, x)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_cutout_zeroes_a_square_and_translation_keeps_content():
    x = torch.ones(16, 1, 16, 16)
    y = AUGMENTATIONS.load("cutout")(x, torch.Generator().manual_seed(0))
    zeros = (y == 0).flatten(1).sum(1)
    assert (zeros > 0).all() and (zeros <= 64).all()  # at most an 8x8 square (half the size)
    y = AUGMENTATIONS.load("translation")(x, torch.Generator().manual_seed(0))
    assert ((y == 1) | (y == 0)).all() and (y.flatten(1).sum(1) >= 14 * 14).all()  # shifted by <= 2 px
    assert diff_augment([]) is None


def test_ema_update_and_warm_up():
    assert ema_decay(0.999, 0) == pytest.approx(0.1) and ema_decay(0.999, 10**6) == 0.999
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    avg = ema_copy(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net[1].running_mean.fill_(4.0)
    before = [p.clone() for p in avg.parameters()]
    ema_update(avg, net, 0.75)
    for p_avg, p0, p in zip(avg.parameters(), before, net.parameters()):
        assert torch.allclose(p_avg, 0.75 * p0 + 0.25 * p)
    assert torch.allclose(avg[1].running_mean, torch.full((2,), 1.0))  # BN buffers averaged too
    assert not any(p.requires_grad for p in avg.parameters())


def test_bad_stabiliser_values_are_one_line_errors():
    for section, values, message in [
        ("train", {"loss": "wgan"}, "train.loss='wgan' is not a loss"),
        ("train", {"ema": 1.0}, "train.ema=1.0 must be in [0, 1)"),
        ("train", {"augment": "color,flip"}, "train.augment has 'flip'"),
        ("model", {"d_norm": "layer"}, "model.d_norm='layer' is not a D normalisation"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            from_dict({section: values})


def test_training_with_each_option_runs_and_changes_the_training(tiny_cfg, tmp_path):
    plain = load_checkpoint(train(tiny_cfg(train={"max_steps": 4}), run_dir=tmp_path / "plain").run_dir)
    for i, (train_opts, model_opts) in enumerate([
        ({"loss": "hinge"}, {}), ({"loss": "lsgan"}, {}), ({"augment": ["color", "translation", "cutout"]}, {}),
    ]):
        result = train(tiny_cfg(train={"max_steps": 4, **train_opts}, model=model_opts), run_dir=tmp_path / f"r{i}")
        assert result.step == 4 and (result.run_dir / "checkpoints" / "last.pt").is_file()
        ck = load_checkpoint(result.run_dir)  # same seed, same data: only the option differs
        assert any(not torch.equal(ck["D"][k], plain["D"][k]) for k in plain["D"]), train_opts


def test_resume_is_exact_with_ema_and_augmentation(tiny_cfg, tmp_path):
    opts = {"ema": 0.9, "augment": ["color", "translation", "cutout"]}
    train(tiny_cfg(train=opts), run_dir=tmp_path / "a")
    train(tiny_cfg(train={**opts, "max_steps": 4}), run_dir=tmp_path / "b")
    train(resume=tmp_path / "b", overrides=["train.max_steps=8"])
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    for key in ("G", "D", "G_ema"):
        assert a[key].keys() == b[key].keys() and all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    # The average lags G: it is a different set of weights, and both are in the checkpoint.
    assert any(not torch.equal(a["G"][k], a["G_ema"][k]) for k in a["G"] if a["G"][k].is_floating_point())


@pytest.mark.parametrize("d_norm", ["spectral", "none"])
def test_d_norm_options(d_norm):
    from dcgan.config import ModelConfig
    from dcgan.models import build_models

    _, D = build_models(ModelConfig(ngf=8, ndf=8, d_norm=d_norm), 32, 3)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())  # no BN in D
    D.train()
    with torch.no_grad():
        for _ in range(15):  # the power iteration converges as D runs
            D(torch.randn(8, 3, 32, 32))
    norms = [torch.linalg.matrix_norm(m.weight.detach().flatten(1), 2).item()
             for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    if d_norm == "spectral":
        assert all(n == pytest.approx(1.0, abs=0.02) for n in norms), norms  # every layer's norm is bounded
    else:
        assert max(norms) > 1.05 or min(norms) < 0.95  # N(0, 0.02) weights: not normalised
    _, D_paper = build_models(ModelConfig(ngf=8, ndf=8), 32, 3)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in D_paper.modules()) == 2  # the paper's D keeps BN


def test_training_with_spectral_norm_runs_and_resumes(tiny_cfg, tmp_path):
    cfg = tiny_cfg(model={"d_norm": "spectral"}, train={"max_steps": 4})
    run = train(cfg, run_dir=tmp_path / "r").run_dir
    assert train(resume=run, overrides=["train.max_steps=6"]).step == 6


def test_the_averaged_g_is_what_commands_load_unless_asked(tiny_cfg, tmp_path):
    from dcgan.checkpoint import load_models
    from dcgan.cli import main

    run = train(tiny_cfg(train={"ema": 0.9, "max_steps": 4}), run_dir=tmp_path / "r").run_dir
    ck = load_checkpoint(run)
    G, _, _, _ = load_models(run)
    G_raw, _, _, _ = load_models(run, ema=False)
    assert all(torch.equal(v, ck["G_ema"][k]) for k, v in G.state_dict().items())
    assert all(torch.equal(v, ck["G"][k]) for k, v in G_raw.state_dict().items())
    for name, extra in (("ema", []), ("raw", ["--no-ema"])):
        assert main(["sample", "--checkpoint", str(run), "--num", "4", "--out", str(tmp_path / f"{name}.png"),
                     *extra]) == 0
    assert (tmp_path / "ema.png").read_bytes() != (tmp_path / "raw.png").read_bytes()


def test_the_stable_preset_is_the_demo_config_plus_its_stabilisers():
    from pathlib import Path

    from dcgan.config import load_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    paper = load_config(configs / "fashion_mnist.yaml").flat()
    stable = load_config(configs / "fashion_mnist_stable.yaml").flat()
    changed = {k: stable[k] for k in stable if stable[k] != paper[k]}
    assert changed.pop("name") == "fashion_mnist_stable"
    assert changed and all(k.startswith("train.") for k in changed)  # the paper's data, networks and eval
    # the 64 px RGB preset: the folder config plus the very same options
    folder = load_config(configs / "anime_faces.yaml").flat()
    folder_stable = load_config(configs / "anime_faces_stable.yaml").flat()
    assert {k: v for k, v in folder_stable.items() if v != folder[k]} == {**changed, "name": "anime_faces_stable"}
    assert paper["train.loss"] == "bce" and paper["train.ema"] == 0 and paper["train.augment"] == []  # demo: the paper


def test_the_preset_trains_exactly_as_the_variant_it_was_chosen_from():
    """configs/fashion_mnist_stable.yaml is bench/quality.py's `r1` variant (the best of the
    long-run benchmark, docs/quality.md): the same config apart from its name, so the benchmark's
    runs of that variant are the preset's."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_quality", Path(__file__).resolve().parents[1] / "bench" / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    preset = quality.load_config("preset", quality.VARIANTS["preset"]).flat()
    chosen = quality.load_config("r1", quality.VARIANTS["r1"]).flat()
    assert preset.pop("name") == "fashion_mnist_stable" and chosen.pop("name") == "fashion_mnist"
    assert preset == chosen
