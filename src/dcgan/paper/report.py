"""One seeded run of every experiment on a checkpoint, written as a Markdown report.

`run_report(checkpoint, out_dir)` writes out_dir/report.md, its figures (PNG) and
results.json. Sections follow the paper: samples, §5.1 features + L2-SVM (with the paper's own
rows beside ours for context), §6.1 walks, §6.2 filters and forgetting, §6.3 vector arithmetic.

Where the paper picked samples by eye (arithmetic exemplars, window boxes), the report picks
them by a stated rule so the run is reproducible; the picks are written next to the figures as
files the individual commands accept.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data import ImageData, load_images, to_model_range
from ..sampling import generate, noise, numbered_grid, save_grid
from . import arithmetic as arith
from . import features as feat
from . import filters as filt
from . import forget as fgt
from . import walk as wlk
from .common import load

log = logging.getLogger(__name__)

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")


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


def _classifier(train: ImageData, n: int, seed: int):
    """A linear pixel classifier (ridge, closed form: seconds) fit on real images, to label
    generated samples for the arithmetic and forgetting sections."""
    from sklearn.linear_model import RidgeClassifier

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train), generator=g)[:n]
    X = to_model_range(train.images[idx]).flatten(1).numpy()
    return RidgeClassifier(alpha=10.0).fit(X, train.labels[idx].numpy())


def _label(clf, images: torch.Tensor) -> np.ndarray:
    """Class scores (N, K) of generated images in [-1, 1] (higher = more likely)."""
    return clf.decision_function(images.flatten(1).cpu().numpy())


def _top(score: np.ndarray, cls: int, k: int, exclude: set[int]) -> list[int]:
    order = [int(i) for i in np.argsort(-score[:, cls]) if int(i) not in exclude]
    return order[:k]


def sleeve_marks(images: torch.Tensor, score: np.ndarray, classes=(2, 4, 6), band: int = 9,
                 threshold: float = -0.5) -> fgt.Marks:
    """The report's stand-in for the paper's window boxes on Fashion-MNIST: "sleeves".

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


def _img(path: Path, out: Path, alt: str) -> str:
    return f"![{alt}]({path.relative_to(out).as_posix()})"


def run_report(checkpoint: str | Path, out_dir: str | Path, opts: ReportOptions | None = None, *,
               train: ImageData | None = None, test: ImageData | None = None,
               device: torch.device | str = "cpu") -> Path:
    """Run every experiment, seeded, and write out_dir/report.md (+ PNGs, results.json)."""
    opts = opts or ReportOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    G, D, cfg = load(checkpoint, device)
    train = train if train is not None else load_images(cfg.data, "train")
    test = test if test is not None else load_images(cfg.data, "test")
    is_fashion = train.name == "fashion_mnist"
    class_names = FASHION_CLASSES if is_fashion else tuple(str(i) for i in range(10))
    seed, S = opts.seed, cfg.data.image_size
    timings: dict[str, float] = {}
    figures: list[Path] = []
    results: dict = {"checkpoint": str(checkpoint), "dataset": train.name, "image_size": S,
                     "options": asdict(opts)}

    # Samples: a numbered grid (the arithmetic picks by these numbers).
    t0 = time.perf_counter()
    z = noise(opts.num_grid, cfg.model.nz, cfg.model.z_dist, seed, device)
    samples = generate(G, z)
    from PIL import Image

    grid_path = out / "samples_numbered.png"
    Image.fromarray(numbered_grid(samples, nrow=10).permute(1, 2, 0).numpy()).save(grid_path)
    torch.save(z.cpu(), out / "samples_z.pt")
    figures.append(grid_path)
    timings["samples"] = time.perf_counter() - t0

    # §5.1: D features + L2-SVM, with baselines.
    t0 = time.perf_counter()
    fres = feat.run_features(D, cfg.model, train, test, opts.features, device=device)
    results["features"] = fres.to_dict()
    timings["features"] = time.perf_counter() - t0

    # §6.1: walks.
    t0 = time.perf_counter()
    walks = wlk.save_walks(G, out, rows=opts.walk_rows, steps=opts.walk_steps, seed=seed,
                           z_dist=cfg.model.z_dist, device=device)
    figures += list(walks.values())
    timings["walk"] = time.perf_counter() - t0

    # §6.3: arithmetic, exemplars picked by a pixel classifier instead of by eye.
    t0 = time.perf_counter()
    clf = _classifier(train, min(opts.classifier_train, len(train)), seed)
    score = _label(clf, samples)
    a_cls, b_cls, c_cls = (2, 0, 3) if is_fashion else (0, 1, 2)
    used: set[int] = set()
    picks = {}
    for name, cls in (("a", a_cls), ("b", b_cls), ("c", c_cls)):
        picks[name] = _top(score, cls, 3, used)
        used |= set(picks[name])
    names = [class_names[a_cls], class_names[b_cls], class_names[c_cls]]
    arith_path = out / "arithmetic.png"
    arith.arithmetic_figure(G, z, picks["a"], picks["b"], picks["c"], arith_path, names=names, seed=seed)
    figures.append(arith_path)
    base = _top(score, c_cls, 4, used)
    strengths = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
    dir_path = out / "direction.png"
    arith.direction_figure(G, z, picks["b"], picks["a"], base, dir_path, strengths=strengths)
    figures.append(dir_path)
    results["arithmetic"] = {"a": picks["a"], "b": picks["b"], "c": picks["c"], "names": names,
                             "direction_from": picks["b"], "direction_to": picks["a"],
                             "direction_base": base, "strengths": list(strengths)}
    timings["arithmetic"] = time.perf_counter() - t0

    # §6.2.1: guided backprop, trained vs random D (both with BN re-estimated on real data).
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    fidx = torch.randperm(len(test), generator=g)[: min(opts.filter_images, len(test))]
    fimages = test.images[fidx]
    pool = train.images[torch.randperm(len(train), generator=g)[: min(5000, len(train))]]
    D_tr = feat.reestimate_bn(D, pool, device=device)
    D_rand = feat.reestimate_bn(feat.random_discriminator(D, cfg.model, seed), pool, device=device)
    filt_path = filt.filters_figure(D_tr, D_rand, fimages.to(device), out / "filters.png",
                                    num_features=opts.filter_features, per_feature=opts.filter_per_feature)
    figures.append(filt_path)
    timings["filters"] = time.perf_counter() - t0

    # §6.2.2: forgetting, with masks from a stated rule instead of hand-drawn window boxes.
    t0 = time.perf_counter()
    zf = noise(opts.forget_num, cfg.model.nz, cfg.model.z_dist, seed + 1, device)
    fsamples = generate(G, zf)
    marks = sleeve_marks(fsamples, _label(clf, fsamples)) if is_fashion else None
    if marks is not None and marks.indices:
        rule = ("sleeves: on samples the pixel classifier calls a pullover, coat or shirt, the "
                "foreground pixels (> -0.5) in the 9 outer columns on each side, below row 4")
    else:
        marks = top_half_marks(fsamples)
        rule = "the top half of every sample"
    marks.seed, marks.num = seed + 1, opts.forget_num
    marks_path = fgt.write_marks(out / "forget_marks.json", marks)
    acts = fgt.stage_activations(G, zf[marks.indices])
    drop, weights = fgt.fit_selector(acts, marks.masks, seed=seed)
    zshow = noise(opts.forget_show, cfg.model.nz, cfg.model.z_dist, seed + 2, device)
    forget_path = out / "forget.png"
    before, after = fgt.forget_figure(G, zshow, drop, forget_path, per_row=8)
    figures.append(forget_path)
    mark_preview = torch.cat([fsamples[marks.indices[:8]],
                              torch.where(marks.masks[:8, None].to(fsamples.device),
                                          torch.ones_like(fsamples[:1]), fsamples[marks.indices[:8]])])
    preview_path = save_grid(mark_preview, out / "forget_marks.png", nrow=8)
    figures.append(preview_path)
    results["forget"] = {"rule": rule, "marked_samples": len(marks.indices),
                         "num_maps": int(acts.shape[1]), "dropped": drop,
                         "mean_abs_change": float((before - after).abs().mean())}
    timings["forget"] = time.perf_counter() - t0

    timings["total"] = time.perf_counter() - t_start
    results["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    results["figures"] = [p.name for p in figures]
    (out / "results.json").write_text(json.dumps(results, indent=1))
    md = _markdown(out, checkpoint, cfg, train, test, opts, fres, results, figures, walks,
                   grid_path, arith_path, dir_path, filt_path, forget_path, preview_path, marks_path)
    path = out / "report.md"
    path.write_text(md)
    log.info("wrote %s (%d figures) in %.0fs", path, len(figures), timings["total"])
    return path


def _feature_summary(fres: feat.FeatureResults) -> list[str]:
    """One line per mode: the trained D's margin over each baseline, in points (and draw spreads)."""
    lines = []
    for mode, title in (("full", "Full labels"), ("few", "Few labels")):
        d = fres.row("dcgan", mode)
        if d is None:
            continue
        parts = []
        for m in ("pixels", "random_d", "kmeans"):
            r = fres.row(m, mode)
            if r is not None:
                spread = f" (draw std {100 * d.std:.2f} / {100 * r.std:.2f})" if mode == "few" else ""
                parts.append(f"{100 * (d.accuracy - r.accuracy):+.2f} points over "
                             f"{feat.METHOD_TITLES[m]}{spread}")
        if parts:
            lines += [f"- {title}: trained D features " + "; ".join(parts) + "."]
    return lines


def _markdown(out, checkpoint, cfg, train, test, opts, fres, results, figures, walks, grid_path,
              arith_path, dir_path, filt_path, forget_path, preview_path, marks_path) -> str:
    fo = opts.features
    a = results["arithmetic"]
    fg = results["forget"]
    secs = results["seconds"]
    machine = (f"{platform.machine()} CPU, torch {torch.__version__}, {torch.get_num_threads()} threads "
               "(times are wall-clock and depend on what else runs on the machine)")
    ndf_dims = fres.rows[0].dims if fres.rows else 0

    def row(method, mode):
        r = fres.row(method, mode)
        if r is None:
            return "n/a"
        return f"{100 * r.accuracy:.2f}%" + (f" +- {100 * r.std:.2f}" if mode == "few" else "")

    few_labels = fo.per_class * len(np.unique(train.labels.numpy())) if train.labels is not None else 0
    L = [
        f"# DCGAN paper experiments on {train.name} ({cfg.data.image_size}x{cfg.data.image_size})",
        "",
        f"Checkpoint: `{checkpoint}` (model: nz={cfg.model.nz}, ngf={cfg.model.ngf}, ndf={cfg.model.ndf}, "
        f"kernel {cfg.model.kernel_size}, {cfg.model.projection} projection, {cfg.model.d_head} D head). "
        f"Seed {opts.seed}. Machine: {machine}. Total time {secs['total']:.0f}s "
        f"(features {secs['features']:.0f}s). Every figure below is regenerated by "
        "`dcgan paper report` with the same checkpoint and seed; the individual commands are given "
        "with each section.",
        "",
        "## Samples",
        "",
        f"{opts.num_grid} samples, z from seed {opts.seed}, G in eval mode (BN running statistics). "
        "The numbers are the indices the arithmetic section uses "
        f"(`dcgan sample --checkpoint CKPT --num {opts.num_grid} --seed {opts.seed} --numbered "
        "--save-z z.pt --out grid.png` draws the same grid).",
        "",
        _img(grid_path, out, "numbered samples"),
        "",
        "## Representation learning: D features + L2-SVM (paper §5.1)",
        "",
        f"Protocol: every D conv stage's output max-pooled to {fo.grid}x{fo.grid}, flattened and "
        f"concatenated ({ndf_dims} dims here; 28,672 in the paper's 32x32 ImageNet D); BN statistics "
        "re-estimated on the training pool first; no rescaling of the features (as in the paper; "
        "per-dimension standardisation hurt the trained D in a trial); a linear L2-SVM (`sklearn.svm.LinearSVC`, squared hinge, one-vs-rest) with C "
        f"picked from {list(fo.Cs)} on a validation split of {fo.num_val} training images "
        f"(the C search fits on {fo.search_size} of the training examples, then the chosen C is "
        "refitted on all). "
        f"Data: {train.name}, a seeded subset of {fo.num_train} training images (full-label mode) "
        f"and {min(fo.num_test, len(test))} test images; few-label mode: {fo.per_class} labels per "
        f"class ({few_labels} in all) drawn from the same pool, {fo.draws} random draws, mean +- std "
        "(the paper's SVHN protocol). Baselines on the same data: raw pixels in [-1, 1], "
        f"single-layer K-means (Coates & Ng: 6x6 patches at stride {fo.kmeans_stride}, "
        f"normalised, ZCA-whitened, {fo.kmeans_centroids} centroids, triangle code, 4 quadrant "
        f"sums = {4 * fo.kmeans_centroids} dims, standardised as in their pipeline), and the same D architecture at random N(0, 0.02) "
        "init with BN re-estimated the same way.",
        "",
        "**Ours** (test accuracy):",
        "",
        fres.markdown(),
        "",
        *_feature_summary(fres),
        "",
        "| mode | DCGAN D | raw pixels | K-means | random D |",
        "|---|---:|---:|---:|---:|",
        f"| full labels ({fo.num_train}) | {row('dcgan', 'full')} | {row('pixels', 'full')} | "
        f"{row('kmeans', 'full')} | {row('random_d', 'full')} |",
        f"| {few_labels} labels, {fo.draws} draws | {row('dcgan', 'few')} | {row('pixels', 'few')} | "
        f"{row('kmeans', 'few')} | {row('random_d', 'few')} |",
        "",
        "**The paper's numbers, for context only (not ours; other data and a D trained on "
        "ImageNet-1k):**",
        "",
        feat.paper_rows_markdown(),
        "",
        f"Reproduce: `dcgan paper features --checkpoint CKPT --num-train {fo.num_train} --num-val "
        f"{fo.num_val} --num-test {fo.num_test} --per-class {fo.per_class} --draws {fo.draws} "
        f"--seed {opts.seed}`.",
        "",
        "## Walking in the latent space (paper §6.1, Fig. 4)",
        "",
        f"{opts.walk_rows} rows, each {opts.walk_steps} steps from one random z to another "
        "(endpoints from the seed). Smooth transitions without sharp jumps are the paper's "
        "argument against memorisation. Linear (the paper):",
        "",
        _img(walks["linear"], out, "linear walk"),
        "",
        "Spherical (slerp, the later convention; same endpoints):",
        "",
        _img(walks["spherical"], out, "spherical walk"),
        "",
        f"Reproduce: `dcgan paper walk --checkpoint CKPT --rows {opts.walk_rows} --steps "
        f"{opts.walk_steps} --seed {opts.seed} --mode both --out DIR`.",
        "",
        "## Vector arithmetic on z (paper §6.3, Figs. 7-8)",
        "",
        "The paper picked three exemplars per concept by eye (smiling woman, neutral woman, "
        f"neutral man). Here they are picked by rule: the three samples of the numbered grid that a "
        f"linear pixel classifier (ridge, trained on {opts.classifier_train} real training images) rates "
        f"most likely to be {a['names'][0]} (A: {a['a']}), {a['names'][1]} (B: {a['b']}) and "
        f"{a['names'][2]} (C: {a['c']}). Columns: the exemplars and, at the bottom, the sample of "
        "their mean z; right: mean z(A) - mean z(B) + mean z(C) in the centre and 8 samples with "
        "uniform noise of scale 0.25 added (the paper's layout).",
        "",
        _img(arith_path, out, "vector arithmetic"),
        "",
        f"A direction between two groups (the paper's \"turn\" vector, Fig. 8): "
        f"d = mean z({a['names'][0]}) - mean z({a['names'][1]}) added with strengths "
        f"{a['strengths']} (columns) to four other {a['names'][2]} samples (rows: {a['direction_base']}).",
        "",
        _img(dir_path, out, "direction"),
        "",
        f"Reproduce: `dcgan paper arithmetic --checkpoint CKPT --num {opts.num_grid} --seed {opts.seed} "
        f"--a {','.join(map(str, a['a']))} --b {','.join(map(str, a['b']))} --c {','.join(map(str, a['c']))} "
        f"--direction-from {','.join(map(str, a['b']))} --direction-to {','.join(map(str, a['a']))} "
        f"--base {','.join(map(str, a['direction_base']))} --out arithmetic.png`.",
        "",
        "## Visualising D's features (paper §6.2.1, Fig. 5)",
        "",
        f"Guided backpropagation of the first {opts.filter_features} features of D's last conv "
        f"layer: for each feature (row), the {opts.filter_per_feature} test images (of "
        f"{opts.filter_images}) with the largest maximum response, and the guided gradient of that "
        "response w.r.t. the image (grey = 0; only positive gradients through positive "
        "activations pass). Left: the same architecture at random init; right: the trained D. "
        "Both have BN statistics re-estimated on 5000 training images.",
        "",
        _img(filt_path, out, "guided backprop"),
        "",
        f"Reproduce: `dcgan paper filters --checkpoint CKPT --num-features {opts.filter_features} "
        f"--per-feature {opts.filter_per_feature} --num-images {opts.filter_images} --seed {opts.seed} "
        "--out filters.png`.",
        "",
        "## Forgetting to draw (paper §6.2.2, Fig. 6)",
        "",
        "The paper drew 52 window bounding boxes by hand on 150 LSUN bedroom samples, fit a "
        "logistic regression on the second-highest G conv layer's activations (inside a box vs "
        "not) and dropped the 200 feature maps with positive weights. "
        + ("Fashion-MNIST has no windows, so" if train.name == "fashion_mnist" else "Here")
        + f" the marks come from a rule instead: **{fg['rule']}**. "
        f"{fg['marked_samples']} of {opts.forget_num} samples (seed {opts.seed + 1}) were marked "
        f"(first 8 below, the marks in white):",
        "",
        _img(preview_path, out, "marked regions"),
        "",
        f"The logistic regression on the {fg['num_maps']} maps of the second-highest G stage "
        f"(`G.features(z)[-2]`, positives: positions inside the marks, negatives: all other "
        f"positions of the same samples, balanced class weights) gave {len(fg['dropped'])} maps "
        f"with positive weight; all of them were dropped (zeroed after the ReLU at every position). "
        f"Rows alternate: {opts.forget_show} new samples (seed {opts.seed + 2}) as G draws them, "
        f"then the same z without the dropped maps (mean |change| per pixel "
        f"{fg['mean_abs_change']:.3f} on the [-1, 1] scale).",
        "",
        _img(forget_path, out, "forgetting"),
        "",
        f"Reproduce: `dcgan paper forget --checkpoint CKPT --marks {marks_path.name} "
        f"--show-seed {opts.seed + 2} --show-num {opts.forget_show} --out forget.png` "
        f"(`{marks_path.name}` is written next to this report).",
        "",
        "## Timings",
        "",
        "| step | seconds |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in secs.items()],
        "",
    ]
    return "\n".join(L)
