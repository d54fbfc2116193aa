"""One-off evaluations: score a checkpoint or a folder of images (what `dcgan eval` runs).

A checkpoint inside a run directory gets its evaluation appended to `RUN/evaluations.jsonl`,
one JSON line per evaluation. The run's own `metrics.jsonl` is never touched: it holds the
training's evaluations (a fixed protocol) that `scores.png` and `best.pt` are drawn from.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import DataConfig, EvalConfig, from_dict
from ..errors import DCGANError
from . import registry

EVALUATIONS_FILE = "evaluations.jsonl"
DEFAULT_CLF_METRICS = registry.default_metrics("", registry.CLASSIFIER)
DEFAULT_SSL_METRICS = registry.default_metrics("", registry.SSL)
DEFAULT_INCEPTION_METRICS = registry.default_metrics("", registry.INCEPTION)
MIN_IMAGES = 10


def default_metrics(dataset: str, features: str | None = None) -> tuple[str, ...]:
    """`dcgan eval`'s metrics when none are named: `registry.default_metrics` (the classifier's for a
    labelled dataset, else the self-supervised encoder's; `features` picks another network)."""
    return registry.default_metrics(dataset, features)


def data_config(base: DataConfig | None = None, **overrides: Any) -> DataConfig:
    """`base` (a checkpoint's data config; else 32 px grayscale, no download) with the non-None
    `overrides` (name, image_size, channels, root, cache_dir), validated like a config."""
    cfg = dataclasses.replace(base) if base is not None else DataConfig(image_size=32, channels=1, download=False)
    # A checkpoint's data.subset is kept: its classifier and real statistics are keyed by it.
    merged = {**dataclasses.asdict(cfg), **{k: v for k, v in overrides.items() if v is not None}}
    return from_dict({"data": merged}).data


@dataclass
class EvalSettings:
    """How to score: the metrics, the real side and the feature networks."""

    metrics: list[str] | None = None  # None: default_metrics(dataset, features)
    features: str | None = None  # maps generic names (fd/fid, kid, is, pr) onto one network
    split: str = "test"
    num_real: int = 0  # the first N real images (0: all)
    seed: int = 0  # the noise seed (and KID's subsets)
    classifier: str | None = None  # a file written by `dcgan classifier` (else the cached one)
    classifier_epochs: int = 2
    inception_weights: str | None = None
    ssl_steps: int | None = None  # steps of the self-supervised encoder (None: the checkpoint's eval.ssl_steps)
    device: str = "auto"


def _metrics(data_cfg: DataConfig, settings: EvalSettings) -> list[str]:
    from .evaluator import resolve_metrics

    return resolve_metrics(list(settings.metrics or default_metrics(data_cfg.name, settings.features)),
                           settings.features)


def _evaluator(data_cfg: DataConfig, settings: EvalSettings, metrics: list[str], num_samples: int, z_dist: str,
               ssl_steps: int | None = None):
    from ..devices import pick_device
    from .classifier import load_classifier
    from .evaluator import Evaluator

    device = pick_device(settings.device)
    clf = None
    if settings.classifier and any(registry.METRICS[m].network == registry.CLASSIFIER for m in metrics):
        if not Path(settings.classifier).is_file():
            raise DCGANError(f"--classifier {settings.classifier!r} not found; pass a file written by "
                             "`dcgan classifier`")
        clf = load_classifier(settings.classifier, device)
    return Evaluator(metrics, data_cfg, split=settings.split, num_samples=num_samples, num_real=settings.num_real,
                     seed=settings.seed, z_dist=z_dist, device=device,
                     classifier_epochs=settings.classifier_epochs,
                     inception_weights=settings.inception_weights, classifier=clf,
                     ssl_steps=settings.ssl_steps or ssl_steps or EvalConfig.ssl_steps)


def run_dir_of(checkpoint: str | Path) -> Path | None:
    """The run directory a checkpoint belongs to (RUN or RUN/checkpoints/*.pt), else None."""
    p = Path(checkpoint).expanduser()
    if p.is_dir() and (p / "checkpoints").is_dir():
        return p
    if p.is_file() and p.parent.name == "checkpoints":
        return p.parent.parent
    return None


def append_evaluation(path: str | Path, record: dict[str, Any]) -> Path:
    """Append one JSON line with a single write (concurrent appends never interleave within a line)."""
    line = (json.dumps(record) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as e:
        raise DCGANError(f"could not append the evaluation to {str(path)!r} ({e.strerror or type(e).__name__}); "
                         "pass --no-log or make the run directory writable") from None
    return Path(path)


@dataclass
class Evaluation:
    scores: dict[str, Any]  # the scores, then the protocol (features, split, n_real, n_gen, ...)
    logged_to: Path | None = None  # RUN/evaluations.jsonl when the record was appended there


def evaluate_checkpoint(checkpoint: str | Path, settings: EvalSettings | None = None, *, num: int = 10000,
                        data_overrides: dict[str, Any] | None = None, log: bool = True) -> Evaluation:
    """Score `num` images from a checkpoint (a file, a run directory or an export) against the real
    split of its own dataset; with `log`, append the record to the run's evaluations.jsonl."""
    from ..checkpoint import load_models
    from ..devices import pick_device

    settings = settings or EvalSettings()
    if num < MIN_IMAGES:
        raise DCGANError(f"--num {num} is too few to score; use at least {MIN_IMAGES}")
    G, _, cfg, ckpt = load_models(checkpoint, pick_device(settings.device))
    data_cfg = data_config(cfg.data, **(data_overrides or {}))
    _check_model_shape(cfg.data, data_cfg)  # before any real data is decoded, cached or scored
    ev = _evaluator(data_cfg, settings, _metrics(data_cfg, settings), num, cfg.model.z_dist,
                    cfg.eval.ssl_steps)  # the run's encoder unless --ssl-steps says otherwise
    scores = ev.score_images(ev.generate(G))
    scores.update(step=int(ckpt.get("step", 0)), checkpoint=str(checkpoint), seed=settings.seed)
    run_dir = run_dir_of(checkpoint)
    logged_to = None
    if log and run_dir is not None:
        logged_to = append_evaluation(run_dir / EVALUATIONS_FILE,
                                      {"kind": "eval", **scores, "source": "dcgan eval", "time": time.time()})
    return Evaluation(scores, logged_to)


def _check_model_shape(model_data: DataConfig, real: DataConfig) -> None:
    """G makes images of its training size and channels: scoring them against real data of another
    size or channel count is refused here, before the real side costs anything or writes caches."""
    for option, mine, theirs in (("--image-size", model_data.image_size, real.image_size),
                                 ("--channels", model_data.channels, real.channels)):
        if mine != theirs:
            raise DCGANError(f"{option} {theirs} does not match the checkpoint, whose G makes images with "
                             f"{option[2:].replace('-', ' ')} {mine}; drop {option} (the checkpoint's is used)")


def evaluate_folder(folder: str | Path, data_cfg: DataConfig, settings: EvalSettings | None = None) -> Evaluation:
    """Score every image in `folder` (resized to data_cfg's size and channels) against data_cfg's real split."""
    from ..data import load_images

    settings = settings or EvalSettings()
    metrics = _metrics(data_cfg, settings)
    images = load_images(dataclasses.replace(data_cfg, name="folder", root=str(folder), subset=0),
                         use_cache=False).images
    if len(images) < MIN_IMAGES:
        raise DCGANError(f"{str(folder)!r} holds {len(images)} images, too few to score; use at least {MIN_IMAGES}")
    ev = _evaluator(data_cfg, settings, metrics, len(images), "uniform")
    scores = ev.score_images(images)
    scores.update(images=str(folder))
    return Evaluation(scores)
