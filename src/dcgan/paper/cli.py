"""`dcgan paper ...`: the paper's experiments as commands (registered by `dcgan.cli`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..errors import DCGANError

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


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint file or a run directory")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto")


def _grid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="the `dcgan sample --seed` of the grid (default 0)")
    p.add_argument("--num", type=int, default=64, help="the `dcgan sample --num` of the grid (default 64)")
    p.add_argument("--z", dest="z_file", help="the grid's latent vectors from `dcgan sample --save-z` "
                                              "(instead of --seed/--num)")


def _device(name: str):
    from ..devices import pick_device

    return pick_device(name)


def _positive(value: int, flag: str) -> int:
    if value <= 0:
        raise DCGANError(f"{flag} {value} must be > 0")
    return value


def _numbers(text: str, flag: str, kind: type = float) -> tuple:
    """'0,0.5,1' -> (0.0, 0.5, 1.0) (or ints with kind=int); one-line errors for the CLI."""
    example = "0,0.5,1" if kind is float else "1,2"
    what = "numbers" if kind is float else "integers"
    try:
        vals = tuple(kind(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise DCGANError(f"{flag} {text!r} is not a comma-separated list of {what}, e.g. {example}") from None
    if not vals:
        raise DCGANError(f"{flag} is empty; give {what} like {example}")
    return vals


def _names(text: str, flag: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    vals = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [v for v in vals if v not in allowed]
    if bad or not vals:
        raise DCGANError(f"{flag} {text!r}: use a comma-separated subset of {', '.join(allowed)}")
    return vals


# --- features ------------------------------------------------------------------------------------


def _features(psub) -> None:
    from .features import METHODS

    p = psub.add_parser("features", help="§5.1: D features + L2-SVM vs pixels, K-means, random D",
                        description="Every D conv stage max-pooled to 4x4, concatenated, BN statistics "
                                    "re-estimated on training data, a linear L2-SVM with C picked on a "
                                    "validation split; baselines on the same data. Prints a table.")
    _common(p)
    p.add_argument("--data", help="dataset to classify (default: the checkpoint's); images are resized "
                                  "to the checkpoint's size and channels")
    p.add_argument("--data-root", help="where that dataset lives (default: the checkpoint's data.root)")
    p.add_argument("--test-split", default="test", help="split scored (default test)")
    p.add_argument("--modes", default="full,few", help="full (all --num-train labels) and/or few "
                                                        "(--per-class labels per class, --draws draws)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    p.add_argument("--num-train", type=int, default=10_000, help="labelled training images (default 10000)")
    p.add_argument("--num-val", type=int, default=2_000, help="validation images to pick C (default 2000)")
    p.add_argument("--num-test", type=int, default=10_000, help="test images (default 10000)")
    p.add_argument("--per-class", type=int, default=100, help="few-label mode: labels per class (default 100)")
    p.add_argument("--draws", type=int, default=5, help="few-label mode: random label draws (default 5)")
    p.add_argument("--cs", default="0.0001,0.001,0.01", help="SVM C values to try")
    p.add_argument("--kmeans-centroids", type=int, default=400)
    p.add_argument("--layers", help="D conv stages to use, e.g. 2 or 1,2 (0 = the first; default all, "
                                    "the paper's choice); applies to the trained and the random D")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write features.json and features.md to this folder")
    p.set_defaults(func=cmd_features)


def cmd_features(args: argparse.Namespace) -> int:
    from ..data import load_images
    from .common import load
    from .features import METHODS, FeatureOptions, paper_rows_markdown, run_features

    for flag in ("num_train", "num_val", "num_test", "per_class", "draws", "kmeans_centroids"):
        _positive(getattr(args, flag), "--" + flag.replace("_", "-"))
    opts = FeatureOptions(num_train=args.num_train, num_val=args.num_val, num_test=args.num_test,
                          per_class=args.per_class, draws=args.draws,
                          modes=_names(args.modes, "--modes", ("full", "few")),
                          methods=_names(args.methods, "--methods", METHODS),
                          Cs=_numbers(args.cs, "--cs"), kmeans_centroids=args.kmeans_centroids,
                          layers=_numbers(args.layers, "--layers", int) if args.layers else None, seed=args.seed)
    device = _device(args.device)
    _, D, cfg = load(args.checkpoint, device)
    data_cfg = cfg.data
    if args.data or args.data_root:
        data_cfg = dataclasses.replace(data_cfg, name=args.data or data_cfg.name,
                                       root=args.data_root or data_cfg.root, subset=0)
    train = load_images(data_cfg, "train")
    test = load_images(data_cfg, args.test_split)
    res = run_features(D, cfg.model, train, test, opts, device=device)
    table = res.markdown()
    print(f"{train.name} {res.image_size}x{res.image_size}, test split {args.test_split!r}:")
    print(table)
    print("\nThe paper's numbers, for context (not ours):")
    print(paper_rows_markdown())
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "features.json").write_text(json.dumps(res.to_dict(), indent=1))
        (out / "features.md").write_text(table + "\n")
        print(f"wrote {out / 'features.json'} and {out / 'features.md'}")
    return 0


# --- walk ----------------------------------------------------------------------------------------


def _walk(psub) -> None:
    p = psub.add_parser("walk", help="§6.1: rows of interpolations between random z",
                        description="Each row walks from one random z to another, linearly (the paper) "
                                    "or spherically.")
    _common(p)
    p.add_argument("--out", required=True, help="a .png (one mode) or a folder (walk_<mode>.png)")
    p.add_argument("--mode", choices=("linear", "spherical", "both"), default="both")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_walk)


def cmd_walk(args: argparse.Namespace) -> int:
    from ..sampling import save_grid
    from .common import load
    from .walk import MODES, save_walks, walk

    _positive(args.rows, "--rows")
    if args.steps < 2:
        raise DCGANError(f"--steps {args.steps} must be >= 2 (the two endpoints)")
    device = _device(args.device)
    G, _, cfg = load(args.checkpoint, device)
    out = Path(args.out)
    if out.suffix.lower() == ".png":
        if args.mode == "both":
            raise DCGANError("--mode both writes two figures; give a folder as --out, or pick one --mode")
        images = walk(G, rows=args.rows, steps=args.steps, seed=args.seed, mode=args.mode,
                      z_dist=cfg.model.z_dist, device=device)
        print(f"wrote {save_grid(images, out, nrow=args.steps)}")
        return 0
    modes = MODES if args.mode == "both" else (args.mode,)
    paths = save_walks(G, out, rows=args.rows, steps=args.steps, seed=args.seed, modes=modes,
                       z_dist=cfg.model.z_dist, device=device)
    for p in paths.values():
        print(f"wrote {p}")
    return 0


# --- arithmetic ----------------------------------------------------------------------------------


def _arithmetic(psub) -> None:
    p = psub.add_parser("arithmetic", help="§6.3: A - B + C on averaged z, and a direction applied with growing strength",
                        description="Name samples by their number on a `dcgan sample --numbered` grid "
                                    "(same --seed and --num, or --z from --save-z). Writes the paper's "
                                    "Fig. 7 layout; with --direction-from/--direction-to also a Fig. 8 grid.")
    _common(p)
    _grid_args(p)
    p.add_argument("--a", required=True, help="samples of concept A, e.g. 3,17,42 (smiling woman)")
    p.add_argument("--b", required=True, help="samples of concept B (neutral woman)")
    p.add_argument("--c", required=True, help="samples of concept C (neutral man)")
    p.add_argument("--names", default="A,B,C", help="labels for the three concepts")
    p.add_argument("--noise-scale", type=float, default=0.25, help="noise of the 8 extra results (paper: 0.25)")
    p.add_argument("--out", required=True, help="the figure (.png)")
    p.add_argument("--direction-from", help="samples of the start group (e.g. left-facing)")
    p.add_argument("--direction-to", help="samples of the end group (e.g. right-facing)")
    p.add_argument("--base", help="samples to move along the direction (default: those of C)")
    p.add_argument("--strengths", default="0,0.25,0.5,0.75,1,1.25,1.5")
    p.add_argument("--direction-out", help="the direction figure (default: OUT with _direction)")
    p.set_defaults(func=cmd_arithmetic)


def cmd_arithmetic(args: argparse.Namespace) -> int:
    from .arithmetic import arithmetic_figure, direction_figure
    from .common import latents, load, parse_indices

    device = _device(args.device)
    G, _, cfg = load(args.checkpoint, device)
    z = latents(cfg, seed=args.seed, num=args.num, z_file=args.z_file, device=device)
    n = z.shape[0]
    a, b, c = (parse_indices(getattr(args, k), n, f"--{k}") for k in ("a", "b", "c"))
    names = [t.strip() for t in args.names.split(",")]
    if len(names) != 3:
        raise DCGANError(f"--names {args.names!r} needs three labels, e.g. 'smiling woman,neutral woman,neutral man'")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise DCGANError(f"--out {args.out!r} must end in .png")
    arithmetic_figure(G, z, a, b, c, out, names=names, noise_scale=args.noise_scale, seed=args.seed)
    print(f"wrote {out}")
    if bool(args.direction_from) != bool(args.direction_to):
        raise DCGANError("give both --direction-from and --direction-to (or neither)")
    if args.direction_from:
        src = parse_indices(args.direction_from, n, "--direction-from")
        dst = parse_indices(args.direction_to, n, "--direction-to")
        base = parse_indices(args.base, n, "--base") if args.base else c
        dpath = Path(args.direction_out) if args.direction_out else out.with_name(out.stem + "_direction.png")
        direction_figure(G, z, src, dst, base, dpath, strengths=_numbers(args.strengths, "--strengths"))
        print(f"wrote {dpath}")
    return 0


# --- filters -------------------------------------------------------------------------------------


def _filters(psub) -> None:
    p = psub.add_parser("filters", help="§6.2.1 / Fig. 5: guided backprop of D's last conv features, trained vs random D",
                        description="For each of the first N features of D's last conv layer, the real "
                                    "test images with the largest response and their guided-backprop "
                                    "gradients; random D on the left, trained D on the right.")
    _common(p)
    p.add_argument("--out", required=True, help="the figure (.png)")
    p.add_argument("--num-features", type=int, default=6)
    p.add_argument("--per-feature", type=int, default=8)
    p.add_argument("--num-images", type=int, default=2000, help="test images searched (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="image subset and random D init")
    p.set_defaults(func=cmd_filters)


def cmd_filters(args: argparse.Namespace) -> int:
    import torch

    from ..data import load_images
    from .common import load
    from .features import random_discriminator, reestimate_bn
    from .filters import filters_figure

    for flag in ("num_features", "per_feature", "num_images"):
        _positive(getattr(args, flag), "--" + flag.replace("_", "-"))
    device = _device(args.device)
    _, D, cfg = load(args.checkpoint, device)
    train, test = load_images(cfg.data, "train"), load_images(cfg.data, "test")
    g = torch.Generator().manual_seed(args.seed)
    images = test.images[torch.randperm(len(test), generator=g)[: args.num_images]]
    if images.shape[0] < args.per_feature:
        raise DCGANError(f"--per-feature {args.per_feature} exceeds the {images.shape[0]} test images")
    pool = train.images[torch.randperm(len(train), generator=g)[:5000]]
    D_tr = reestimate_bn(D, pool, device=device)
    D_rand = reestimate_bn(random_discriminator(D, cfg.model, args.seed), pool, device=device)
    path = filters_figure(D_tr, D_rand, images.to(device), args.out, num_features=args.num_features,
                          per_feature=args.per_feature)
    print(f"wrote {path}")
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
    p.add_argument("--marks", required=True, help="the boxes/masks JSON file (format below)")
    p.add_argument("--out", required=True, help="the figure (.png): rows alternate before / after")
    p.add_argument("--threshold", type=float, default=0.0, help="drop maps with weight above this (paper: 0)")
    p.add_argument("--max-maps", type=int, help="drop at most this many (largest weights first)")
    p.add_argument("--show-seed", type=int, default=1, help="seed of the samples shown (default 1)")
    p.add_argument("--show-num", type=int, default=32, help="samples shown (default 32)")
    p.set_defaults(func=cmd_forget)


def cmd_forget(args: argparse.Namespace) -> int:
    from ..sampling import noise
    from .common import latents, load
    from .forget import fit_selector, forget_figure, read_marks, stage_activations

    _positive(args.show_num, "--show-num")
    device = _device(args.device)
    G, _, cfg = load(args.checkpoint, device)
    marks = read_marks(args.marks, cfg.data.image_size)
    seed = marks.seed if marks.seed is not None else args.seed
    num = marks.num if marks.num is not None else args.num
    z = latents(cfg, seed=seed, num=num, z_file=args.z_file, device=device)
    bad = [i for i in marks.indices if not 0 <= i < z.shape[0]]
    if bad:
        raise DCGANError(f"marked sample(s) {bad} are outside the grid of {z.shape[0]}; give the grid's "
                         "--num (or \"num\" in the marks file)")
    acts = stage_activations(G, z[marks.indices]).cpu()
    drop, _ = fit_selector(acts, marks.masks, threshold=args.threshold, max_maps=args.max_maps)
    zs = noise(args.show_num, cfg.model.nz, cfg.model.z_dist, args.show_seed, device)
    forget_figure(G, zs, drop, args.out)
    print(f"dropped {len(drop)} of {acts.shape[1]} maps of the second-highest G stage: {drop}")
    print(f"wrote {args.out} (rows alternate: as trained / without those maps)")
    return 0


# --- report --------------------------------------------------------------------------------------


def _report(psub) -> None:
    p = psub.add_parser("report", help="run every experiment, seeded, and write a Markdown report",
                        description="Writes OUT/report.md with its figures, tables and results.json.")
    _common(p)
    p.add_argument("--out", required=True, help="the report folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-train", type=int, default=10_000, help="features: labelled training images")
    p.add_argument("--num-test", type=int, default=10_000, help="features: test images")
    p.add_argument("--draws", type=int, default=5, help="features: few-label draws")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from .features import FeatureOptions
    from .report import ReportOptions, run_report

    for flag in ("num_train", "num_test", "draws"):
        _positive(getattr(args, flag), "--" + flag.replace("_", "-"))
    opts = ReportOptions(features=FeatureOptions(num_train=args.num_train, num_test=args.num_test,
                                                 draws=args.draws, seed=args.seed), seed=args.seed)
    path = run_report(args.checkpoint, args.out, opts, device=_device(args.device))
    print(f"wrote {path}")
    return 0
