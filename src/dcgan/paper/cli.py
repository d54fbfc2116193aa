"""`dcgan paper ...`: the paper's experiments as commands (registered by `dcgan.cli`)."""

from __future__ import annotations

import argparse
import dataclasses
import math

from ..errors import DCGANError
from .constants import (
    BN_POOL,
    DEFAULT_CS,
    DEFAULT_STRENGTHS,
    FEATURE_MODES,
    INT_LIMIT,
    MAX_CENTROIDS,
    MAX_DRAWS,
    MAX_SHOW,
    MAX_WALK,
    METHODS,
    WALK_MODES,
    comma_list,
)

MARKS_HELP = """\
MARKS is a JSON file naming regions on samples of a `dcgan sample` grid:
  {"seed": 0, "num": 64,
   "samples": [{"index": 3, "boxes": [[x0, y0, x1, y1]]},
               {"index": 17, "mask": [[0, 1, ...], ...]}]}
boxes are in pixels of the generated image (x1, y1 exclusive); a mask is an (S, S) 0/1 list.
"seed"/"num" (or --seed/--num, or --z) say which grid the indices refer to."""


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("paper", help="the paper's experiments (features, walk, arithmetic, filters, forget, report)",
                       description="Radford et al. 2016, §5-§6, as commands: each writes a figure or a table.")
    psub = p.add_subparsers(dest="paper_command", required=True, metavar="EXPERIMENT")
    _features(psub)
    _walk(psub)
    _arithmetic(psub)
    _filters(psub)
    _forget(psub)
    _report(psub)


def _common(p: argparse.ArgumentParser, checkpoint_required: bool = True) -> None:
    p.add_argument("--checkpoint", required=checkpoint_required,
                   help="a checkpoint file, a run directory or a folder written by `dcgan export` (required"
                        + (")" if checkpoint_required else " unless --render-only)"))
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto")


def _grid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="the `dcgan sample --seed` of the grid (default 0)")
    p.add_argument("--num", type=int, default=64, help="the `dcgan sample --num` of the grid (default 64)")
    p.add_argument("--z", dest="z_file", help="the grid's latent vectors from `dcgan sample --save-z` "
                                              "(default: none; regenerate them from --seed/--num)")


def _device(name: str):
    from ..devices import pick_device

    return pick_device(name)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        if getattr(args, name) <= 0:
            raise DCGANError(f"{_flag(name)} {getattr(args, name)} must be > 0")


def _at_most(args: argparse.Namespace, name: str, limit: int, why: str = "") -> None:
    """A count the code can run with: refused up front, before anything is loaded or written."""
    value = getattr(args, name)
    if value is not None and value > limit:
        raise DCGANError(f"{_flag(name)} {value} must be <= {limit}{why}")


def _finite(args: argparse.Namespace, name: str, *, minimum: float | None = None) -> None:
    value = getattr(args, name)
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        allowed = "a finite number" + ("" if minimum is None else f" >= {minimum:g}")
        raise DCGANError(f"{_flag(name)} {value} must be {allowed}")


def _not_empty(args: argparse.Namespace, *names: str,
               fix: str = "give a value or leave the option out for its default") -> None:
    """An option given as '' is a mistake, not a request for its default."""
    for name in names:
        value = getattr(args, name)
        if value is not None and not value.strip():
            raise DCGANError(f"{_flag(name)} is empty ''; {fix}")


def _numbers(text: str, flag: str, kind: type = float, *, positive: bool = False) -> tuple:
    """'0,0.5,1' -> (0.0, 0.5, 1.0) (or ints with kind=int); one-line errors for the CLI.
    Floats must be finite (and > 0 with positive=True)."""
    example = "0,0.5,1" if kind is float else "1,2"
    what = "numbers" if kind is float else "integers"
    try:
        vals = tuple(kind(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise DCGANError(f"{flag} {text!r} is not a comma-separated list of {what}, e.g. {example}") from None
    if not vals:
        raise DCGANError(f"{flag} is empty ''; give {what} like {example}")
    bad = [v for v in vals if not math.isfinite(v) or (positive and v <= 0)]
    if bad:
        raise DCGANError(f"{flag} {text!r}: {', '.join(map(str, bad))} must be finite"
                         + (" and > 0" if positive else "") + f", e.g. {example}")
    return vals


def _labels(text: str | None, flag: str, count: int) -> list[str] | None:
    """'smiling woman,neutral woman,neutral man' -> three labels (None stays None)."""
    if text is None:
        return None
    labels = [t.strip() for t in text.split(",")]
    if len(labels) != count or not all(labels):
        raise DCGANError(f"{flag} {text!r} needs {count} comma-separated labels, e.g. "
                         + ",".join(["smiling woman", "neutral woman", "neutral man"][:count]))
    return labels


def _names(text: str, flag: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    vals = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [v for v in vals if v not in allowed]
    if bad or not vals:
        raise DCGANError(f"{flag} {text!r}: use a comma-separated subset of {', '.join(allowed)}")
    return vals


# --- features ------------------------------------------------------------------------------------


def _features(psub) -> None:
    p = psub.add_parser("features", help="§5.1: D features + L2-SVM vs pixels, K-means, random D",
                        description="Every D conv stage max-pooled to 4x4, concatenated, BN statistics "
                                    "re-estimated on training data, a linear L2-SVM with C picked on a "
                                    "validation split; baselines on the same data. Prints a table.")
    _common(p)
    p.add_argument("--data", help="dataset to classify (default: the checkpoint's); images are resized "
                                  "to the checkpoint's size and channels")
    p.add_argument("--data-root", help="where that dataset lives (default: the checkpoint's data.root)")
    p.add_argument("--test-split", default="test", help="split scored (default test)")
    p.add_argument("--modes", default=",".join(FEATURE_MODES), help="full (all --num-train labels) and/or few "
                                                        "(--per-class labels per class, --draws draws) "
                                                        "(default full,few)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"a comma-separated subset of {','.join(METHODS)} (default all)")
    p.add_argument("--num-train", type=int, default=10_000, help="labelled training images (default 10000)")
    p.add_argument("--num-val", type=int, default=2_000, help="validation images to pick C (default 2000)")
    p.add_argument("--num-test", type=int, default=10_000, help="test images (default 10000)")
    p.add_argument("--per-class", type=int, default=100, help="few-label mode: labels per class (default 100)")
    p.add_argument("--draws", type=int, default=5, help="few-label mode: random label draws (default 5)")
    p.add_argument("--cs", default=comma_list(DEFAULT_CS), help=f"SVM C values to try (default {comma_list(DEFAULT_CS)})")
    p.add_argument("--kmeans-centroids", type=int, default=400, help="K-means baseline: centroids K "
                                                                     "(4K features; default 400)")
    p.add_argument("--layers", help="D conv stages to use, e.g. 2 or 1,2 (0 = the first; default all, "
                                    "the paper's choice); applies to the trained and the random D")
    p.add_argument("--seed", type=int, default=0, help="RNG seed of the data subsets, label draws, "
                                                       "K-means and random D (default 0)")
    p.add_argument("--out", help="also write features.json and features.md to this folder (default: "
                                 "print only)")
    p.set_defaults(func=cmd_features)


def cmd_features(args: argparse.Namespace) -> int:
    from ..checkpoint import require_discriminator
    from ..data import load_images
    from .common import load
    from .features import FeatureOptions, paper_rows_markdown, run_features, save_features

    _positive(args, "num_train", "num_val", "num_test", "per_class", "draws", "kmeans_centroids")
    _at_most(args, "num_test", INT_LIMIT, " (it is clipped to the test split's size)")
    _at_most(args, "per_class", args.num_train, ": the labels per class are drawn from the --num-train images")
    _at_most(args, "draws", MAX_DRAWS)
    _at_most(args, "kmeans_centroids", MAX_CENTROIDS)
    _not_empty(args, "data", "data_root", "test_split")
    opts = FeatureOptions(num_train=args.num_train, num_val=args.num_val, num_test=args.num_test,
                          per_class=args.per_class, draws=args.draws,
                          modes=_names(args.modes, "--modes", FEATURE_MODES),
                          methods=_names(args.methods, "--methods", METHODS),
                          Cs=_numbers(args.cs, "--cs", positive=True), kmeans_centroids=args.kmeans_centroids,
                          layers=None if args.layers is None else _numbers(args.layers, "--layers", int),
                          seed=args.seed)
    device = _device(args.device)
    _, D, cfg = load(args.checkpoint, device)
    D = require_discriminator(D, args.checkpoint)
    data_cfg = cfg.data
    if args.data or args.data_root:
        data_cfg = dataclasses.replace(data_cfg, name=args.data or data_cfg.name,
                                       root=args.data_root or data_cfg.root, subset=0)
    train, test = load_images(data_cfg, "train"), load_images(data_cfg, args.test_split)
    res = run_features(D, cfg.model, train, test, opts, device=device)
    print(f"{train.name} {res.image_size}x{res.image_size}, test split {args.test_split!r}:")
    print(res.markdown())
    print("\nThe paper's numbers, for context (not ours):")
    print(paper_rows_markdown())
    if args.out:
        print("wrote " + " and ".join(map(str, save_features(res, args.out))))
    return 0


# --- walk ----------------------------------------------------------------------------------------


def _walk(psub) -> None:
    p = psub.add_parser("walk", help="§6.1: rows of interpolations between random z",
                        description="Each row walks from one random z to another, linearly (the paper) "
                                    "or spherically.")
    _common(p)
    p.add_argument("--out", required=True, help="a .png (one mode) or a folder (walk_<mode>.png) (required)")
    p.add_argument("--mode", choices=(*WALK_MODES, "both"), default="both",
                   help="linear (the paper), spherical (slerp) or both (default both)")
    p.add_argument("--rows", type=int, default=8, help=f"walks, one per row, at most {MAX_WALK} (default 8)")
    p.add_argument("--steps", type=int, default=10,
                   help=f"images per walk, endpoints included, 2..{MAX_WALK} (default 10)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed of the endpoints (default 0)")
    p.set_defaults(func=cmd_walk)


def cmd_walk(args: argparse.Namespace) -> int:
    from .common import load
    from .walk import check_walk, run_walk

    check_walk(args.rows, args.steps)
    device = _device(args.device)
    G, _, cfg = load(args.checkpoint, device)
    modes = WALK_MODES if args.mode == "both" else (args.mode,)
    outcome = run_walk(G, cfg.model.z_dist, args.out, rows=args.rows, steps=args.steps, seed=args.seed,
                       modes=modes, device=device)
    for path in outcome.figures.values():
        print(f"wrote {path}")
    return 0


# --- arithmetic ----------------------------------------------------------------------------------


def _arithmetic(psub) -> None:
    p = psub.add_parser("arithmetic", help="§6.3: A - B + C on averaged z, and a direction applied with growing strength",
                        description="Name samples by their number on a `dcgan sample --numbered` grid "
                                    "(same --seed and --num, or --z from --save-z). Writes the paper's "
                                    "Fig. 7 layout; with --direction-from/--direction-to also a Fig. 8 grid.")
    _common(p)
    _grid_args(p)
    p.add_argument("--a", required=True, help="samples of concept A, e.g. 3,17,42 (smiling woman) (required)")
    p.add_argument("--b", required=True, help="samples of concept B (neutral woman) (required)")
    p.add_argument("--c", required=True, help="samples of concept C (neutral man) (required)")
    p.add_argument("--names", default="A,B,C", help="labels for the three concepts (default A,B,C)")
    p.add_argument("--noise-scale", type=float, default=0.25,
                   help="uniform noise of the 8 extra results (default 0.25, the paper's)")
    p.add_argument("--out", required=True, help="the figure (.png) (required)")
    p.add_argument("--direction-from", help="samples of the start group, e.g. left-facing "
                                            "(default: none, no direction figure)")
    p.add_argument("--direction-to", help="samples of the end group, e.g. right-facing (default: none)")
    p.add_argument("--base", help="samples to move along the direction (default: those of C)")
    p.add_argument("--strengths", default=comma_list(DEFAULT_STRENGTHS),
                   help=f"how far along the direction, one column each (default {comma_list(DEFAULT_STRENGTHS)})")
    p.add_argument("--direction-names", help="labels FROM,TO of the two groups in the direction figure's "
                                             "title (default: their sample numbers)")
    p.add_argument("--direction-out", help="the direction figure (default: OUT with _direction)")
    p.set_defaults(func=cmd_arithmetic)


def cmd_arithmetic(args: argparse.Namespace) -> int:
    from .arithmetic import output_paths, run_arithmetic
    from .common import latents, load, parse_indices

    _not_empty(args, "a", "b", "c", "direction_from", "direction_to", "base",
               fix="name sample numbers from the numbered grid, e.g. 3,17,42")
    _not_empty(args, "out", "direction_out")
    _finite(args, "noise_scale", minimum=0)
    strengths = _numbers(args.strengths, "--strengths")
    names = _labels(args.names, "--names", 3)
    direction_names = _labels(args.direction_names, "--direction-names", 2)
    output_paths(args.out, args.direction_out, direction=args.direction_from is not None)
    device = _device(args.device)
    G, _, cfg = load(args.checkpoint, device)
    z = latents(cfg, seed=args.seed, num=args.num, z_file=args.z_file, device=device)

    def samples(flag: str) -> list[int] | None:
        text = getattr(args, flag.lstrip("-").replace("-", "_"))
        return None if text is None else parse_indices(text, z.shape[0], flag)

    outcome = run_arithmetic(G, z, args.out, a=samples("--a"), b=samples("--b"), c=samples("--c"),
                             names=names, noise_scale=args.noise_scale, seed=args.seed,
                             direction_from=samples("--direction-from"), direction_to=samples("--direction-to"),
                             base=samples("--base"), strengths=strengths, direction_out=args.direction_out,
                             direction_names=direction_names)
    for path in outcome.figures.values():
        print(f"wrote {path}")
    return 0


# --- filters -------------------------------------------------------------------------------------


def _filters(psub) -> None:
    p = psub.add_parser("filters", help="§6.2.1 / Fig. 5: guided backprop of D's last conv features, trained vs random D",
                        description="For each of the first N features of D's last conv layer, the real "
                                    "test images with the largest response and their guided-backprop "
                                    "gradients; random D on the left, trained D on the right (both with "
                                    f"BN statistics re-estimated on {BN_POOL} training images).")
    _common(p)
    p.add_argument("--out", required=True, help="the figure (.png) (required)")
    p.add_argument("--num-features", type=int, default=6, help="features of the last conv layer, one "
                                                               "row each (default 6, the paper's)")
    p.add_argument("--per-feature", type=int, default=8, help="top images per feature (default 8)")
    p.add_argument("--num-images", type=int, default=2000, help="test images searched (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed of the image subsets and the random "
                                                       "D's init (default 0)")
    p.set_defaults(func=cmd_filters)


def cmd_filters(args: argparse.Namespace) -> int:
    from ..checkpoint import require_discriminator
    from ..data import load_images
    from .common import load
    from .filters import run_filters

    _positive(args, "num_features", "per_feature", "num_images")
    for name in ("num_features", "per_feature", "num_images"):
        _at_most(args, name, INT_LIMIT)
    device = _device(args.device)
    _, D, cfg = load(args.checkpoint, device)
    D = require_discriminator(D, args.checkpoint)
    train, test = load_images(cfg.data, "train"), load_images(cfg.data, "test")
    outcome = run_filters(D, cfg.model, train, test, args.out, num_features=args.num_features,
                          per_feature=args.per_feature, num_images=args.num_images, seed=args.seed,
                          device=device)
    print(f"wrote {outcome.figures['filters']}")
    return 0


# --- forget --------------------------------------------------------------------------------------


def _forget(psub) -> None:
    p = psub.add_parser("forget", help="§6.2.2 / Fig. 6: drop the G feature maps tied to marked regions",
                        description="Fit a logistic regression on the second-highest G stage's feature "
                                    "maps for 'inside a marked region', drop the maps with positive "
                                    "weights, and show samples with and without them from the same z.",
                        epilog=MARKS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    _grid_args(p)
    p.add_argument("--marks", required=True, help="the boxes/masks JSON file (format below) (required)")
    p.add_argument("--out", required=True, help="the figure (.png): rows alternate 'as drawn' / "
                                                "'maps dropped' (required)")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="drop maps with weight above this (default 0, the paper's)")
    p.add_argument("--max-maps", type=int, help="drop at most this many, largest weights first; 0 drops "
                                                "none (default: no limit)")
    p.add_argument("--show-seed", type=int, default=1, help="RNG seed of the samples shown (default 1)")
    p.add_argument("--show-num", type=int, default=32, help=f"samples shown, at most {MAX_SHOW} (default 32)")
    p.set_defaults(func=cmd_forget)


def cmd_forget(args: argparse.Namespace) -> int:
    from ..atomic import check_output_file
    from ..sampling import noise
    from .common import latents, load
    from .forget import read_marks, run_forget

    _positive(args, "show_num")
    _at_most(args, "show_num", MAX_SHOW)
    if math.isnan(args.threshold):
        raise DCGANError("--threshold nan must be a number (inf drops no map, -inf every map)")
    if args.max_maps is not None and args.max_maps < 0:
        raise DCGANError(f"--max-maps {args.max_maps} must be >= 0 (0 drops no map; leave it out for no limit)")
    check_output_file(args.out, "--out")
    device = _device(args.device)
    G, _, cfg = load(args.checkpoint, device)
    marks = read_marks(args.marks, cfg.data.image_size)
    z = latents(cfg, seed=args.seed if marks.seed is None else marks.seed,
                num=args.num if marks.num is None else marks.num, z_file=args.z_file, device=device)
    show_z = noise(args.show_num, cfg.model.nz, cfg.model.z_dist, args.show_seed, device)
    outcome = run_forget(G, z, marks, args.out, show_z=show_z, threshold=args.threshold,
                         max_maps=args.max_maps)
    r = outcome.results
    print(f"dropped {len(r['dropped'])} of {r['num_maps']} maps of the second-highest G stage: {r['dropped']}")
    print(f"wrote {outcome.figures['forget']} (rows alternate: as drawn / maps dropped)")
    return 0


# --- report --------------------------------------------------------------------------------------


def _report(psub) -> None:
    p = psub.add_parser("report", help="run every experiment, seeded, and write a Markdown report",
                        description="Writes OUT/results.json (every number and pick), the figures, and "
                                    "OUT/report.md rendered from results.json. Takes minutes: the "
                                    "features section dominates; progress goes to stderr.")
    _common(p, checkpoint_required=False)
    p.add_argument("--out", required=True, help="the report folder (required)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed of every section (default 0)")
    p.add_argument("--num-train", type=int, default=10_000,
                   help="features: labelled training images (default 10000)")
    p.add_argument("--num-test", type=int, default=10_000, help="features: test images (default 10000)")
    p.add_argument("--draws", type=int, default=5, help="features: few-label draws (default 5)")
    p.add_argument("--render-only", action="store_true",
                   help="only re-render OUT/report.md from OUT/results.json (default: run everything)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from .features import FeatureOptions
    from .render import write_report
    from .report import ReportOptions, run_report

    if args.render_only:
        print(f"wrote {write_report(args.out)}")
        return 0
    if not args.checkpoint:
        raise DCGANError("--checkpoint is required (a checkpoint file or a run directory) unless --render-only")
    _positive(args, "num_train", "num_test", "draws")
    opts = ReportOptions(features=FeatureOptions(num_train=args.num_train, num_test=args.num_test,
                                                 draws=args.draws, seed=args.seed), seed=args.seed)
    print(f"wrote {run_report(args.checkpoint, args.out, opts, device=_device(args.device))}")
    return 0
