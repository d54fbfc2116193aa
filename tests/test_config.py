"""Config: YAML over typed defaults, --set overrides typed by the schema, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcgan.config import Config, load_config, save_config
from dcgan.errors import ConfigError

CONFIGS = sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml"))


def test_defaults_are_the_papers_recipe():
    cfg = Config()
    assert cfg.train.batch_size == 128
    assert cfg.train.lr_g == cfg.train.lr_d == 2e-4
    assert (cfg.train.beta1, cfg.train.beta2) == (0.5, 0.999)
    assert cfg.model.nz == 100 and cfg.model.z_dist == "uniform"
    assert cfg.data.name == "cifar10"  # the seed's default


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.data.image_size in (32, 64)


def test_shipped_configs_present():
    names = {p.name for p in CONFIGS}
    assert {"dcgan.yaml", "fashion_mnist.yaml", "anime_faces.yaml", "celeba.yaml",
            "lsun_bedroom.yaml", "mnist.yaml"} <= names


def test_overrides_are_typed_by_schema(tmp_path):
    cfg = load_config(None, ["train.batch_size=64", "train.lr_d=1e-4", "data.download=false",
                             "data.name=folder", "eval.metrics=fd_clf,coverage", "model.nz=16"])
    assert cfg.train.batch_size == 64 and isinstance(cfg.train.batch_size, int)
    assert cfg.train.lr_d == 1e-4
    assert cfg.data.download is False
    assert cfg.eval.metrics == ["fd_clf", "coverage"]
    assert cfg.model.nz == 16


def test_yaml_then_overrides_and_round_trip(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  name: mnist\n  channels: 1\ntrain:\n  batch_size: 32\n")
    cfg = load_config(p, ["train.batch_size=16"])
    assert cfg.data.name == "mnist" and cfg.train.batch_size == 16
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg


@pytest.mark.parametrize("overrides, message", [
    (["train.batchsize=3"], "unknown config key 'train.batchsize'"),
    (["trian.batch_size=3"], "unknown config key 'trian'"),
    (["train.batch_size=big"], "train.batch_size='big' must be an integer"),
    (["train.batch_size=0"], "train.batch_size=0 must be > 0"),
    (["data.image_size=48"], "data.image_size='48'|data.image_size=48"),
    (["data.channels=2"], "data.channels=2 is not supported"),
    (["data.name=imagenet"], "data.name='imagenet' is not supported"),
    (["train.beta1=1.5"], "train.beta1=1.5 must be in"),
    (["train.device=gpu"], "train.device='gpu' is not a device"),
    (["data.download=maybe"], "data.download='maybe' must be true or false"),
    (["train.precision=fp8"], "train.precision='fp8' is not supported; use one of auto, fp32, bf16, fp16"),
    (["model.d_head=linear"], "model.d_head='linear' is not supported"),
    (["nokey"], "is not KEY=VALUE"),
])
def test_bad_values_name_key_value_and_allowed(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("train: 5\n")
    with pytest.raises(ConfigError, match="train must be a mapping"):
        load_config(wrong)
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  ngf: 64\n  nfg: 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'model.nfg'"):
        load_config(typo)
