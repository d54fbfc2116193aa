"""Typed configuration: dataclasses are the schema, YAML files and `--set KEY=VALUE` fill them.

Every value is checked once, at load time, and a bad one raises `ConfigError` naming the key,
the value and what is allowed. The defaults are the paper's recipe (§4): batch 128, Adam with
lr 2e-4 and beta1 0.5, z of 100 dims drawn uniformly from [-1, 1], N(0, 0.02) init.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .metrics import registry
from .safe_yaml import YamlRefused, YamlText
from .safe_yaml import load as load_yaml
from .tables import CONFIG_TABLES, DATASETS

IMAGE_SIZES = (16, 32, 64, 128, 256)


@dataclass
class DataConfig:
    name: str = "cifar10"  # the dataset, one of dcgan.tables.DATASETS
    root: str = "./data"  # where torchvision datasets live / the image folder for `folder` / the folder `dcgan prepare --out` wrote
    image_size: int = 64  # a power of two, 16..256; images are resized + centre-cropped to it
    channels: int = 3  # 1 (grayscale) or 3 (RGB); images are converted as needed
    download: bool = True  # let torchvision download the dataset when it is missing
    split: str = "train"  # the split to train on (dataset-specific: train/test, extra for SVHN, ...)
    lsun_classes: list[str] = field(default_factory=lambda: ["bedroom_train"])  # LSUN categories (lmdb folders)
    subset: int = 0  # use only the first N images (0 = all); handy for smoke tests
    in_memory: str = "auto"  # auto | always | never: decode once to a uint8 tensor cache
    cache_dir: str = "~/.cache/dcgan"  # where decoded uint8 caches are kept
    num_workers: int = -1  # DataLoader workers for streamed datasets (-1 = pick for the machine)


@dataclass
class ModelConfig:
    nz: int = 100  # §4: z is 100-dimensional
    ngf: int = 64  # G width: channels of G's last hidden layer (doubling towards z)
    ndf: int = 64  # D width: channels of D's first layer (doubling towards the output)
    kernel_size: int = 4  # 4 (PyTorch ports) or 5 (the authors' Theano code)
    projection: str = "linear"  # linear: §3 "project and reshape"; conv: transposed conv from 1x1
    d_head: str = "conv"  # conv: valid conv over the last 4x4 map; avgpool: the global-average-pool head the reference blog post tried
    z_dist: str = "uniform"  # uniform in [-1, 1] (paper) or normal
    d_norm: str = "batch"  # normalisation of D, one of dcgan.tables.D_NORMS (batch is the paper's)


@dataclass
class TrainConfig:
    batch_size: int = 128  # §4: mini-batch SGD with batch 128
    batch_size_scope: str = "per_rank"  # per_rank | global (with several processes)
    epochs: int = 25  # passes over the data (used when max_steps is 0)
    max_steps: int = 0  # training iterations; when > 0 it wins over epochs
    lr_g: float = 2e-4  # §4: Adam lr 0.0002
    lr_d: float = 2e-4  # §4: Adam lr 0.0002 for D too
    beta1: float = 0.5  # §4: 0.9 oscillated, 0.5 stabilised training
    beta2: float = 0.999  # Adam beta2 (the paper keeps the default)
    weight_decay: float = 0.0  # the authors' Theano code used L2 1e-5
    d_steps: int = 1  # D updates per iteration
    g_steps: int = 1  # G updates per iteration
    seed: int = 0  # RNG seed: weights, data order and noise are functions of it
    loss: str = "bce"  # the GAN loss, one of dcgan.losses.LOSSES (bce is the paper's)
    r1_gamma: float = 0.0  # R1 penalty gamma/2 E||grad D(x)||^2 on real images (Mescheder et al. 2018); 0 = off
    r2_gamma: float = 0.0  # R2: the same penalty on fake images (R3GAN, Huang et al. 2024); 0 = off
    reg_every: int = 1  # lazy R1/R2: every k D steps, scaled by k (StyleGAN2 uses 16)
    lr_schedule: str = "constant"  # constant (paper) | linear (to 0 at the last step; SNGAN, Mimicry) | cosine (to 0)
    lr_warmup: int = 0  # steps of linear learning-rate warm-up from 0 (0 = none)
    ema: float = 0.0  # decay of an EMA copy of G per step (Yazici et al. 2019), e.g. 0.999; 0 = off; warm-up min(decay, (1+t)/(10+t))
    ema_kimg: float = 0.0  # EMA of G stated in images: half-life in thousands of images (StyleGAN2's ema_kimg); 0 = off
    ema_rampup: float = 0.0  # with ema_kimg: half-life at most this fraction of the images seen so far (StyleGAN2: 0.05); 0 = none
    augment: list[str] = field(default_factory=list)  # DiffAugment (Zhao et al. 2020) on real and fake, any of dcgan.tables.AUGMENTATIONS
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto (bf16 where the device runs it natively: a CPU with AVX512-BF16 or AMX, CUDA compute capability >= 8.0; else fp32; recorded in metrics.jsonl) | fp32 (the paper's arithmetic) | bf16 (autocast) | fp16 (autocast + grad scaler)
    threads: int = 0  # intra-op CPU threads; 0 = auto: the CPUs this process may use (affinity, cgroup quota) or OMP_NUM_THREADS; 1 when other programs share the CPU
    channels_last: str = "auto"  # auto (CPU and CUDA: faster there) | true | false
    compile: bool = False  # torch.compile the networks
    sync_bn: bool = False  # SyncBatchNorm across processes (default: per-rank BN, as in the paper)
    log_every: int = 50  # steps between metric log lines (the only host syncs in the loop)
    sample_every: int = 500  # steps between fixed-noise grids
    checkpoint_every: int = 1000  # steps between kept checkpoints (last.pt is refreshed too)
    num_fixed: int = 64  # fixed-noise samples in each grid
    tensorboard: bool = False  # also write TensorBoard events (needs the tensorboard package)
    progress: bool = True  # live progress bar


@dataclass
class EvalConfig:
    every: int = 0  # steps between evaluations during training (0 = off)
    metrics: list[str] = field(default_factory=lambda: [registry.AUTO])  # auto: fd_clf,coverage,is_clf with class labels, else fd_ssl,pr_ssl (docs/evaluation.md)
    num_samples: int = 5000  # generated images per evaluation
    best: str = registry.AUTO  # the score that picks checkpoints/best.pt; auto: the first score of eval.metrics
    split: str = "test"  # the real split the samples are compared with (all of its images)
    seed: int = 0  # noise seed: the same z at every evaluation, so scores differ only by G
    classifier_epochs: int = 2  # epochs of the offline feature classifier (cached per dataset)
    inception_weights: str = ""  # local Inception-v3 FID weights (else $DCGAN_INCEPTION_WEIGHTS / download)
    ssl_steps: int = 1000  # training steps of the self-supervised encoder behind *_ssl (cached per dataset content)


@dataclass
class Config:
    name: str = "dcgan"  # the run's name: runs/<name>-NNN
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def flat(self) -> dict[str, Any]:
        """{"train.lr_d": 0.0002, ...}: every key with its dotted name."""
        return _flatten(self.to_dict())


# --- validation -------------------------------------------------------------------------------

_CHOICES: dict[str, tuple] = {
    "data.name": DATASETS,  # the registry (in CONFIG_TABLES too, for --help), read at each check
    "data.image_size": IMAGE_SIZES,
    "data.channels": (1, 3),
    "data.in_memory": ("auto", "always", "never"),
    "model.kernel_size": (4, 5),
    "model.projection": ("linear", "conv"),
    "model.d_head": ("conv", "avgpool"),
    "model.z_dist": ("uniform", "normal"),
    "train.lr_schedule": ("constant", "linear", "cosine"),
    "train.batch_size_scope": ("per_rank", "global"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.channels_last": ("auto", "true", "false"),
}
_POSITIVE = (
    "model.nz", "model.ngf", "model.ndf", "train.batch_size", "train.d_steps", "train.g_steps",
    "train.log_every", "train.sample_every", "train.num_fixed", "eval.num_samples",
    "eval.classifier_epochs", "train.reg_every", "eval.ssl_steps",
)
_NON_NEGATIVE = (
    "data.subset", "train.epochs", "train.max_steps", "train.checkpoint_every", "eval.every",
    "train.weight_decay", "train.seed", "eval.seed", "train.r1_gamma", "train.r2_gamma", "train.lr_warmup",
    "train.ema_kimg", "train.ema_rampup", "train.threads",
)
# Upper bounds: beyond them a value is a typo or runs the machine out of memory or processes.
_MAX: dict[str, int | float] = {
    "train.batch_size": 65536,  # images per step; the paper's is 128
    "train.d_steps": 100,
    "train.g_steps": 100,
    "train.num_fixed": 4096,  # images in one grid
    "eval.num_samples": 200_000,  # generated images held per evaluation (FID50k is the usual most)
    "eval.classifier_epochs": 1000,
    "eval.ssl_steps": 100_000,
    "data.num_workers": 256,  # DataLoader processes
    "train.seed": 2**32 - 1,  # the data order seeds torch with seed * 1e6 + epoch (64 bits)
    "eval.seed": 2**32 - 1,
    "train.lr_g": 1.0,
    "train.lr_d": 1.0,
    "train.r1_gamma": 1e4,
    "train.r2_gamma": 1e4,
    "train.reg_every": 1000,
    "train.ema_kimg": 1e6,  # a thousand million images
    "train.ema_rampup": 1.0,
    "train.weight_decay": 1.0,
    "train.threads": 1024,  # intra-op threads (devices.MAX_THREADS)
}
INT_LIMIT = 2**63 - 1  # every integer must fit in 64 bits (tensors, checkpoints)
MAX_PARAMETERS = 10**9  # G + D; DCGAN's 64 px networks have 3.6M + 2.8M (ngf=ndf=64)
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+")


def num_parameters(model: ModelConfig, image_size: int, channels: int) -> int:
    """G's and D's parameter count for these settings, from the architecture in models.py (without
    building them): conv weights, G's projection, BN scales and shifts, biases."""
    n = max(1, image_size.bit_length() - 3)  # 2x stages between 4x4 and the image
    k2 = model.kernel_size**2
    g = [model.ngf * 2 ** (n - 1 - i) for i in range(n)]
    d = [model.ndf * 2**i for i in range(n)]
    g_params = model.nz * g[0] * 16 + 2 * (g[0] * 16 if model.projection == "linear" else g[0])
    g_params += sum(a * b * k2 + 2 * b for a, b in zip(g[:-1], g[1:])) + g[-1] * channels * k2 + channels
    d_params = channels * d[0] * k2 + d[0] + sum(a * b * k2 + 2 * b for a, b in zip(d[:-1], d[1:]))
    d_params += d[-1] * (16 if model.d_head == "conv" else k2) + 1
    return g_params + d_params


def _check_ranges(flat: dict[str, Any]) -> None:
    for key, value in flat.items():
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
            raise ConfigError(f"{key}={show(value)} is out of range; use a number below 2**63")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={value!r} must be a finite number")
    for key in _POSITIVE:
        if flat[key] <= 0:
            raise ConfigError(f"{key}={flat[key]!r} must be > 0")
    for key in _NON_NEGATIVE:
        if flat[key] < 0:
            raise ConfigError(f"{key}={flat[key]!r} must be >= 0")
    for key in ("train.lr_g", "train.lr_d"):
        if not flat[key] > 0:
            raise ConfigError(f"{key}={flat[key]!r} must be > 0")
    for key in ("train.beta1", "train.beta2"):
        if not 0 <= flat[key] < 1:
            raise ConfigError(f"{key}={flat[key]!r} must be in [0, 1)")
    for key, most in _MAX.items():
        if flat[key] > most:
            raise ConfigError(f"{key}={flat[key]!r} is too large; use at most {most:g}")


def _check_strings(cfg: Config) -> None:
    name = cfg.name
    if not name or name.startswith(".") or len(name) > 100 or not set(name) <= _NAME_CHARS:
        raise ConfigError(f"name={name[:40]!r} cannot name a run directory; use 1-100 letters, digits, "
                          "'.', '_', '-' or '+', not starting with '.'")
    flat = cfg.flat()
    for key, value in flat.items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and "\x00" in text:
                raise ConfigError(f"{key} holds a NUL character; remove it")
    for key in ("data.split", "eval.split"):
        if not flat[key]:
            raise ConfigError(f"{key} is empty; name a split, e.g. train or test")


def _validate(cfg: Config) -> None:
    flat = cfg.flat()
    for key, allowed in _CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(
                f"{key}={show(flat[key])} is not supported; use one of {', '.join(map(str, allowed))}"
            )
    tc = cfg.train
    for key, table in CONFIG_TABLES.items():  # values named by a registry (dcgan.tables)
        if isinstance(flat[key], list):
            for value in flat[key]:
                if value not in table:
                    raise ConfigError(f"{key} has {show(value)}; use any of {', '.join(table)} (or none)")
        elif flat[key] not in table:
            raise ConfigError(f"{key}={show(flat[key])} is not a {table.kind}; use one of {', '.join(table)}")
    if not 0 <= tc.ema < 1:
        raise ConfigError(f"train.ema={tc.ema!r} must be in [0, 1) (0 = off; e.g. 0.999)")
    if tc.ema > 0 and tc.ema_kimg > 0:
        raise ConfigError(f"train.ema={tc.ema!r} and train.ema_kimg={tc.ema_kimg!r} both set an average of G; "
                          "keep one (set the other to 0)")
    if tc.precision == "fp16" and (tc.r1_gamma > 0 or tc.r2_gamma > 0 or tc.loss == "wgan_gp"):
        raise ConfigError("gradient penalties (train.r1_gamma, train.r2_gamma, train.loss=wgan_gp) do not run "
                          "under the fp16 grad scaler; use train.precision=bf16 or fp32")
    _check_ranges(flat)
    _check_strings(cfg)
    if cfg.train.epochs == 0 and cfg.train.max_steps == 0:
        raise ConfigError("train.epochs and train.max_steps are both 0; set one of them > 0")
    if cfg.data.num_workers < -1:
        raise ConfigError(f"data.num_workers={cfg.data.num_workers} must be >= 0, or -1 for auto")
    params = num_parameters(cfg.model, cfg.data.image_size, cfg.data.channels)
    if params > MAX_PARAMETERS:
        raise ConfigError(f"model.nz={cfg.model.nz}, model.ngf={cfg.model.ngf}, model.ndf={cfg.model.ndf} at "
                          f"data.image_size={cfg.data.image_size} make {params:.3g} parameters (more than "
                          f"{MAX_PARAMETERS:.0e}); lower them")
    if cfg.eval.metrics == [registry.AUTO]:  # left at the default: chosen by the dataset, in the registry
        cfg.eval.metrics = list(registry.default_metrics(cfg.data.name, training=True))
    if cfg.eval.best == registry.AUTO:
        cfg.eval.best = registry.default_best(cfg.eval.metrics)
    for m in cfg.eval.metrics:
        if m not in registry.METRICS:
            raise ConfigError(f"eval.metrics has {show(m)}, not a metric; use any of {', '.join(registry.METRICS)}")
    produced = registry.ranked_keys(cfg.eval.metrics)
    if cfg.eval.every > 0 and cfg.eval.best not in produced:
        raise ConfigError(f"eval.best={show(cfg.eval.best)} is not a score of eval.metrics={show(cfg.eval.metrics)}; "
                          f"use one of {', '.join(produced) or '(add metrics first)'}")
    if cfg.eval.every > 0 and cfg.eval.num_samples < 10:
        raise ConfigError(f"eval.num_samples={cfg.eval.num_samples} is too few to score; use at least 10")
    dev = cfg.train.device
    if not (dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError(f"train.device={show(dev)} is not a device; use auto, cpu, cuda, cuda:N or mps")


# --- loading ----------------------------------------------------------------------------------


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


MAX_SHOWN = 60  # characters of a value quoted in an error message


def show(value: Any, limit: int = MAX_SHOWN) -> str:
    """`repr(value)` for an error message, at most `limit` characters (+ "... (N chars)"): every
    ConfigError that quotes a value goes through this, so a huge or deeply aliased value cannot
    make a megabyte "one-line" message. Lists are cut before their repr is built."""
    if isinstance(value, (list, tuple)) and len(value) > 8:
        text = "[" + ", ".join(show(v, 20) for v in value[:8]) + f", ... ({len(value)} items)]"
        return text if len(text) <= 2 * limit else text[:2 * limit] + "..."
    if isinstance(value, str) and len(value) > limit:
        return repr(str(value[:limit])) + f"... ({len(value)} characters)"
    try:
        text = repr(str(value) if isinstance(value, YamlText) else value)
    except (RecursionError, ValueError):  # a self-referencing structure, a huge int
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """Check (and, for strings from the command line, convert) one value against its type."""
    origin = typing.get_origin(typ)
    if origin in (list,):
        (item_t,) = typing.get_args(typ)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key}={show(value)} must be a list of {item_t.__name__}")
        return [_coerce(key, v, item_t) for v in value]
    if origin in (typing.Union, types.UnionType):
        raise AssertionError("union fields are not used in the schema")
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{key}={show(value)} must be true or false")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={show(value)} must be an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}={show(value)} must be an integer")
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={show(value)} must be a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}={show(value)} must be a number")
    if typ is str:
        if isinstance(value, bool):  # YAML turns `true` into a bool; our str fields take it as text
            return str(value).lower()
        if isinstance(value, (str, int, float)):
            return str(value)
        raise ConfigError(f"{key}={show(value)} must be a string")
    raise AssertionError(f"unsupported schema type {typ!r} for {key}")


def _apply(obj: Any, updates: dict[str, Any], prefix: str = "") -> None:
    hints = _field_types(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for k, v in updates.items():
        key = f"{prefix}{k}"
        if k not in names:
            allowed = ", ".join(sorted(prefix + n for n in names))
            raise ConfigError(f"unknown config key {show(key)}; known keys here: {allowed}")
        current = getattr(obj, k)
        if dataclasses.is_dataclass(current):
            if not isinstance(v, dict):
                raise ConfigError(f"{key} must be a mapping of its keys, got {show(v)}")
            _apply(current, v, key + ".")
        else:
            setattr(obj, k, _coerce(key, _as_written(v, hints[k]), hints[k]))


def _as_written(value: Any, typ: Any) -> Any:
    """A YAML file's plain scalar as the schema should see it: the text the user wrote (typed
    by `_coerce` like a --set value, so `name: 010` stays "010" and `seed: 010` is 10), except
    that a list key keeps refusing a scalar that YAML 1.1 reads as a number or boolean."""
    if isinstance(value, list):
        return [_as_written(v, typing.get_args(typ)[0] if typing.get_args(typ) else str) for v in value]
    if not isinstance(value, YamlText):
        return value
    if typing.get_origin(typ) is list and not isinstance(value.implied, str):
        return value.implied
    return str(value)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn `["train.batch_size=64", ...]` into a nested dict (values stay strings, typed later)."""
    nested: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {show(pair)} is not KEY=VALUE; write e.g. --set train.batch_size=64")
        key, value = pair.split("=", 1)
        parts = key.strip().split(".")
        d = nested
        for p in parts[:-1]:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise ConfigError(f"--set {show(pair)}: {show(key)} is not a config key")
        d[parts[-1]] = value.strip()
    return nested


def from_dict(data: dict[str, Any] | None, overrides: list[str] | None = None) -> Config:
    cfg = Config()
    if data:
        if not isinstance(data, dict):
            raise ConfigError("the config must be a YAML mapping of sections (data, model, train, eval)")
        _apply(cfg, data)
    if overrides:
        _apply(cfg, parse_overrides(overrides))
    _validate(cfg)
    _check_usable(cfg)
    return cfg


def _check_usable(cfg: Config) -> None:
    """Values that pass the schema's checks but cannot train (checked at every load)."""
    for key in ("data.root", "data.cache_dir"):
        if not str(cfg.flat()[key]).strip():
            raise ConfigError(f"{key} is empty, which would mean the current folder; set it to a folder, "
                              f"e.g. {key}=./data" + ("/cache" if key == "data.cache_dir" else ""))
    if cfg.train.batch_size < 2:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is too small: BatchNorm needs at least 2 "
                          "images per batch; use 2 or more (the paper's is 128)")


MAX_CONFIG_BYTES = 1_000_000


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- YAML file <- `--set` overrides, then validate."""
    data = None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} not found; pass an existing YAML file (see configs/)")
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {str(path)!r} is {size / 1e6:.1f} MB, not a config (they are a few "
                              "hundred bytes); pass the right file")
        try:
            data = load_yaml(path.read_bytes())
        except YamlRefused as e:
            raise ConfigError(f"config file {str(path)!r} {e}") from None
        except RecursionError:
            raise ConfigError(f"config file {str(path)!r} is nested too deeply; fix its syntax") from None
        except yaml.constructor.ConstructorError as e:
            tag = getattr(e, "problem", "") or "a tag"
            raise ConfigError(f"config file {str(path)!r} cannot be loaded safely ({tag.splitlines()[0][:80]}); "
                              "a config holds plain values only") from None
        except yaml.YAMLError as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            where = f" at line {line + 1}" if line is not None else ""
            raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}; fix its syntax") from None
    return from_dict(data or {}, overrides)


def save_config(cfg: Config, path: str | Path, note: str = "") -> None:
    """Write `cfg` as YAML; `note` (e.g. what `auto` settings resolved to) goes above it as comments."""
    from .atomic import write_text

    header = "".join(f"# {line}\n".replace("# \n", "#\n") for line in note.splitlines())
    try:
        write_text(path, header + yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    except OSError as e:
        raise ConfigError(f"could not write {str(path)!r} ({e.strerror or e}); "
                          "make the folder writable or free disk space") from None


def describe_keys() -> list[tuple[str, Any, str]]:
    """(key, default, explanation) for every config key, read from the schema above: the
    explanation is the comment on the field's line, so the schema documents itself once."""
    return [(k, list(d) if isinstance(d, list) else d,  # a registry's keys list all its entries
             f"{doc}: {CONFIG_TABLES[k].help()}" if k in CONFIG_TABLES else doc)
            for k, d, doc in _describe_keys()]


@functools.lru_cache(maxsize=1)
def _describe_keys() -> tuple[tuple[str, Any, str], ...]:  # reading the source takes ~0.2 s: once
    import inspect
    import re

    rows = []
    defaults = Config().flat()
    for section, cls in (("", Config), ("data.", DataConfig), ("model.", ModelConfig),
                         ("train.", TrainConfig), ("eval.", EvalConfig)):
        for line in inspect.getsource(cls).splitlines():
            m = re.match(r"\s+(\w+): [^=]+=.*?(?:#\s*(.*))?$", line)
            if m and f"{section}{m.group(1)}" in defaults:
                rows.append((f"{section}{m.group(1)}", defaults[f"{section}{m.group(1)}"], m.group(2) or ""))
    return tuple(rows)
