"""One seeded run of every experiment on a checkpoint, saved as results.json and a Markdown report.

`run_report(checkpoint, out_dir)` runs the experiments section by section (samples, §5.1
features, §6.1 walks, §6.3 arithmetic, §6.2.1 filters, §6.2.2 forgetting), each through the
same library function its `dcgan paper X` command calls, saves every number, pick and figure
name in out_dir/results.json, then renders out_dir/report.md from that file alone
(`dcgan.paper.render`).

Where the paper picked samples by eye (arithmetic exemplars, window boxes), the report picks
them by a stated rule so the run is reproducible; the picks are written next to the figures as
files the individual commands accept.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import write_text
from ..checkpoint import require_discriminator
from ..config import Config
from ..data import ImageData, load_images
from ..models import Discriminator, Generator
from ..pixels import to_model_range
from ..sampling import generate, noise, save_grid
from . import arithmetic as arith
from . import features as feat
from . import filters as filt
from . import forget as fgt
from . import samples as smp
from . import walk as wlk
from .common import load
from .render import write_report

log = logging.getLogger(__name__)

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
# The RNG seeds of the forgetting section, as offsets from the report's seed: the samples the
# rule marks, and the fresh samples drawn with and without the dropped maps.
FORGET_MARK_SEED, FORGET_SHOW_SEED = 1, 2
SLEEVE_RULE = ("sleeves: on samples the pixel classifier calls a pullover, coat or shirt, the "
               "foreground pixels (> -0.5) in the 9 outer columns on each side, below row 4")


@dataclass
class ReportOptions:
    features: feat.FeatureOptions = field(default_factory=feat.FeatureOptions)
    seed: int = 0
    num_grid: int = 100  # numbered sample grid the arithmetic picks from
    walk_rows: int = 8
    walk_steps: int = 10
    filter_features: int = 6  # Fig. 5: the first 6 features of D's last conv layer
    filter_per_feature: int = 8
    filter_images: int = 2000  # real test images searched for the top responses
    forget_num: int = 150  # the paper marked windows on 150 samples
    forget_show: int = 32  # fresh samples shown with and without the dropped maps
    classifier_train: int = 5000  # real images for the pixel classifier that labels samples


@dataclass
class _Run:
    """What every section reads: the models, the data, the options, the report folder."""

    out: Path
    G: Generator
    D: Discriminator
    cfg: Config
    train: ImageData
    test: ImageData
    opts: ReportOptions
    device: torch.device | str
    _clf: Any = None

    @property
    def is_fashion(self) -> bool:
        return self.train.name == "fashion_mnist"

    @property
    def class_names(self) -> tuple[str, ...]:
        return FASHION_CLASSES if self.is_fashion else tuple(str(i) for i in range(10))

    def noise(self, num: int, seed: int) -> torch.Tensor:
        return noise(num, self.cfg.model.nz, self.cfg.model.z_dist, seed, self.device)

    def class_scores(self, images: torch.Tensor) -> np.ndarray:
        """Class scores (N, K) of generated images in [-1, 1] from a linear pixel classifier
        (ridge, closed form: seconds) fit once on real training images (higher = more likely)."""
        if self._clf is None:
            from sklearn.linear_model import RidgeClassifier

            g = torch.Generator().manual_seed(self.opts.seed)
            n = min(self.opts.classifier_train, len(self.train))
            idx = torch.randperm(len(self.train), generator=g)[:n]
            X = to_model_range(self.train.images[idx]).flatten(1).numpy()
            self._clf = RidgeClassifier(alpha=10.0).fit(X, self.train.labels[idx].numpy())
        return self._clf.decision_function(images.flatten(1).cpu().numpy())


def _names(run: _Run, outcome) -> dict[str, str]:
    """Figure paths of an outcome as names relative to the report folder (what results.json keeps)."""
    return {k: Path(p).relative_to(run.out).as_posix() for k, p in outcome.figures.items()}


# --- the sections: each runs its experiment and returns its part of results.json -----------------


def _samples(run: _Run) -> dict:
    outcome = smp.run_samples(run.G, run.cfg.model.z_dist, run.out, num=run.opts.num_grid,
                              seed=run.opts.seed, device=run.device)
    return {**outcome.results, "figures": _names(run, outcome)}


def _features(run: _Run) -> dict:
    res = feat.run_features(run.D, run.cfg.model, run.train, run.test, run.opts.features, device=run.device)
    num_classes = len(np.unique(run.train.labels.numpy())) if run.train.labels is not None else 0
    return {**res.to_dict(), "num_classes": num_classes}


def _walk(run: _Run) -> dict:
    o = run.opts
    outcome = wlk.run_walk(run.G, run.cfg.model.z_dist, run.out, rows=o.walk_rows, steps=o.walk_steps,
                           seed=o.seed, device=run.device)
    return {**outcome.results, "figures": _names(run, outcome)}


def _top(score: np.ndarray, cls: int, k: int, exclude: set[int]) -> list[int]:
    order = [int(i) for i in np.argsort(-score[:, cls]) if int(i) not in exclude]
    return order[:k]


def _arithmetic(run: _Run) -> dict:
    """Exemplars picked by the pixel classifier instead of by eye: the 3 samples of the numbered
    grid it rates most likely to be A, B, C; the direction B -> A moves 4 more samples of C."""
    z = run.noise(run.opts.num_grid, run.opts.seed)  # the numbered grid's z
    score = run.class_scores(generate(run.G, z))
    classes = (2, 0, 3) if run.is_fashion else (0, 1, 2)  # pullover - T-shirt + dress
    used: set[int] = set()
    picks = []
    for cls in classes:
        picks.append(_top(score, cls, 3, used))
        used |= set(picks[-1])
    a, b, c = picks
    names = [run.class_names[k] for k in classes]
    outcome = arith.run_arithmetic(run.G, z, run.out / "arithmetic.png", a=a, b=b, c=c, names=names,
                                   seed=run.opts.seed, direction_from=b, direction_to=a,
                                   base=_top(score, classes[2], 4, used),
                                   direction_out=run.out / "direction.png", direction_names=names[1::-1])
    return {**outcome.results, "classifier_train": min(run.opts.classifier_train, len(run.train)),
            "figures": _names(run, outcome)}


def _filters(run: _Run) -> dict:
    o = run.opts
    outcome = filt.run_filters(run.D, run.cfg.model, run.train, run.test, run.out / "filters.png",
                               num_features=o.filter_features, per_feature=o.filter_per_feature,
                               num_images=o.filter_images, seed=o.seed, device=run.device)
    return {**outcome.results, "figures": _names(run, outcome)}


def sleeve_marks(images: torch.Tensor, score: np.ndarray, classes=(2, 4, 6), band: int = 9,
                 threshold: float = -0.5) -> fgt.Marks:
    """The report's stand-in for the paper's window boxes on Fashion-MNIST: "sleeves" (SLEEVE_RULE).

    On samples the pixel classifier calls a pullover, coat or shirt (the garments with long
    sleeves), mark the foreground pixels (value > threshold in [-1, 1]) in the outer `band`
    columns on either side, below the top 4 rows (shoulders excluded).
    """
    S = images.shape[-1]
    is_sleeved = np.isin(score.argmax(1), classes)
    cols = torch.zeros(S, S, dtype=torch.bool)
    cols[4:, :band] = True
    cols[4:, S - band:] = True
    idx, masks = [], []
    for i in np.flatnonzero(is_sleeved):
        m = (images[i].mean(0) > threshold) & cols
        if m.sum() >= 8:
            idx.append(int(i))
            masks.append(m.cpu())
    if not idx:
        return fgt.Marks([], torch.zeros(0, S, S, dtype=torch.bool))
    return fgt.Marks(idx, torch.stack(masks))


def top_half_marks(images: torch.Tensor) -> fgt.Marks:
    """A generic rule for any dataset: the top half of every sample."""
    S = images.shape[-1]
    box = fgt.boxes_to_mask([[0, 0, S, S // 2]], S)
    return fgt.Marks(list(range(images.shape[0])), box.expand(images.shape[0], S, S).clone())


def _forget(run: _Run) -> dict:
    """Masks from a stated rule instead of hand-drawn window boxes, written as a marks file."""
    o = run.opts
    mark_seed, show_seed = o.seed + FORGET_MARK_SEED, o.seed + FORGET_SHOW_SEED
    z = run.noise(o.forget_num, mark_seed)
    images = generate(run.G, z)
    marks = sleeve_marks(images, run.class_scores(images)) if run.is_fashion else None
    rule = SLEEVE_RULE
    if marks is None or not marks.indices:
        marks, rule = top_half_marks(images), "the top half of every sample"
    marks.seed, marks.num = mark_seed, o.forget_num
    marks_path = fgt.write_marks(run.out / "forget_marks.json", marks)
    first = marks.indices[:8]
    preview = torch.cat([images[first], torch.where(marks.masks[:8, None].to(images.device),
                                                    torch.ones_like(images[:1]), images[first])])
    preview_path = save_grid(preview, run.out / "forget_marks.png", nrow=8)
    outcome = fgt.run_forget(run.G, z, marks, run.out / "forget.png", show_z=run.noise(o.forget_show, show_seed))
    return {**outcome.results, "rule": rule, "num": o.forget_num, "mark_seed": mark_seed,
            "show_seed": show_seed, "marks_file": marks_path.name,
            "figures": {"marks": preview_path.name, **_names(run, outcome)}}


SECTIONS: tuple[tuple[str, Callable[[_Run], dict]], ...] = (
    ("samples", _samples), ("features", _features), ("walk", _walk), ("arithmetic", _arithmetic),
    ("filters", _filters), ("forget", _forget))


def _machine() -> str:
    return (f"{platform.machine()} CPU, torch {torch.__version__}, {torch.get_num_threads()} threads "
            "(times are wall-clock and depend on what else runs on the machine)")


def run_report(checkpoint: str | Path, out_dir: str | Path, opts: ReportOptions | None = None, *,
               train: ImageData | None = None, test: ImageData | None = None,
               device: torch.device | str = "cpu") -> Path:
    """Run every section, seeded; write out_dir/results.json, then report.md rendered from it."""
    opts = opts or ReportOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    G, D, cfg = load(checkpoint, device)
    D = require_discriminator(D, checkpoint)
    train = train if train is not None else load_images(cfg.data, "train")
    test = test if test is not None else load_images(cfg.data, "test")
    run = _Run(out, G, D, cfg, train, test, opts, device)
    m = cfg.model
    results: dict[str, Any] = {
        "checkpoint": str(checkpoint), "dataset": train.name, "image_size": cfg.data.image_size,
        "model": {"nz": m.nz, "ngf": m.ngf, "ndf": m.ndf, "kernel_size": m.kernel_size,
                  "projection": m.projection, "d_head": m.d_head},
        "seed": opts.seed, "machine": _machine(), "options": asdict(opts)}
    seconds: dict[str, float] = {}
    for k, (name, section) in enumerate(SECTIONS):
        log.info("report [%d/%d] %s%s", k + 1, len(SECTIONS), name,
                 " (the longest section: feature extraction and L2-SVM fits)" if name == "features" else "")
        t0 = time.perf_counter()
        results[name] = section(run)
        seconds[name] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start
    results["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    write_text(out / "results.json", json.dumps(results, indent=1))
    path = write_report(out)
    log.info("wrote %s in %.0fs", path, seconds["total"])
    return path
