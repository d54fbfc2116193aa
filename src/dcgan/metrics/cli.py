"""`dcgan eval`, `dcgan classifier`, `dcgan nn`: thin commands over dcgan.metrics."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import DCGANError

LABELLED = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")
DEFAULT_CLF_METRICS = "fd_clf,coverage,is_clf,kid_clf,pr_clf"
DEFAULT_INCEPTION_METRICS = "fid,kid,is,pr"


def add_commands(sub: argparse._SubParsersAction) -> None:
    add_eval(sub)
    add_classifier(sub)
    add_nn(sub)


def _data_args(p: argparse.ArgumentParser, with_dataset: bool) -> None:
    if with_dataset:
        p.add_argument("--dataset", help="the real dataset (e.g. fashion_mnist); with --checkpoint, its own")
        p.add_argument("--image-size", type=int, help="image size (default: the checkpoint's, else 32)")
        p.add_argument("--channels", type=int, choices=(1, 3), help="channels (default: checkpoint's, else 1)")
    p.add_argument("--data-root", help="where the dataset lives (default: the checkpoint's data.root or ./data)")
    p.add_argument("--cache-dir", help="where data, classifier and statistics caches live (default ~/.cache/dcgan)")
    p.add_argument("--device", default="auto")


def _data_cfg(args: argparse.Namespace, base=None):
    from ..config import DataConfig, from_dict

    cfg = dataclasses.replace(base) if base is not None else DataConfig(image_size=32, channels=1)
    cfg.download = False if base is None else cfg.download
    updates: dict[str, Any] = {}
    if getattr(args, "dataset", None):
        updates["name"] = args.dataset
    if getattr(args, "image_size", None):
        updates["image_size"] = args.image_size
    if getattr(args, "channels", None):
        updates["channels"] = args.channels
    if args.data_root:
        updates["root"] = args.data_root
    if args.cache_dir:
        updates["cache_dir"] = args.cache_dir
    # A checkpoint's data.subset is kept: its classifier and real statistics are keyed by it.
    merged = {**dataclasses.asdict(cfg), **updates}
    return from_dict({"data": merged}).data  # validated like a config


# --- dcgan eval -----------------------------------------------------------------------------------


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a checkpoint (or a folder of images) against real data",
                       description="Generate --num images from a checkpoint (or read a folder) and score them "
                                   "against a real split. Scores named *_clf and coverage use the project's "
                                   "classifier (`dcgan classifier`); fid, kid, is, pr use Inception-v3.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a checkpoint file or a run directory")
    src.add_argument("--images", metavar="FOLDER", help="a folder of images to score (needs --dataset)")
    p.add_argument("--metrics", help=f"comma-separated, any of fd_clf, kid_clf, pr_clf, is_clf, coverage, fid, kid, "
                                     f"is, pr (default: {DEFAULT_CLF_METRICS} for labelled datasets, else "
                                     f"{DEFAULT_INCEPTION_METRICS})")
    p.add_argument("--features", choices=("classifier", "inception"),
                   help="the network for generic names (fd/fid, kid, is, pr); default: names say it")
    p.add_argument("--num", type=int, default=10000, help="generated images (default 10000)")
    p.add_argument("--split", default="test", help="real split to compare with (default test)")
    p.add_argument("--num-real", type=int, default=0, help="use only the first N real images (default all)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--inception-weights", metavar="FILE",
                   help="local Inception-v3 FID weights (torch-fidelity's .pth); also $DCGAN_INCEPTION_WEIGHTS")
    p.add_argument("--classifier-epochs", type=int, default=2, help="epochs of the cached classifier (default 2)")
    p.add_argument("--classifier", metavar="FILE", help="use this classifier file instead of the cached one")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    p.add_argument("--no-log", action="store_true", help="do not append the result to the run's metrics.jsonl")
    _data_args(p, with_dataset=True)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from ..checkpoint import load_models
    from ..data import load_images
    from ..devices import pick_device
    from .evaluator import Evaluator, append_record, format_table, resolve_metrics

    if args.num < 10:
        raise DCGANError(f"--num {args.num} is too few to score; use at least 10")
    device = pick_device(args.device)
    G = ckpt = run_dir = None
    if args.checkpoint:
        from ..checkpoint import resolve_checkpoint

        path = resolve_checkpoint(args.checkpoint)
        G, _, cfg, ckpt = load_models(path, device)
        data_cfg = _data_cfg(args, cfg.data)
        z_dist = cfg.model.z_dist
        if path.parent.name == "checkpoints":
            run_dir = path.parent.parent
    else:
        if not args.dataset:
            raise DCGANError("--images needs --dataset (the real data to compare with), e.g. --dataset fashion_mnist")
        data_cfg = _data_cfg(args)
        z_dist = "uniform"
    default = DEFAULT_CLF_METRICS if data_cfg.name in LABELLED and args.features != "inception" \
        else DEFAULT_INCEPTION_METRICS
    metrics = resolve_metrics((args.metrics or default).split(","), args.features)
    clf = None
    if args.classifier:
        from .classifier import load_classifier

        if not Path(args.classifier).is_file():
            raise DCGANError(f"--classifier {args.classifier!r} not found; pass a file written by `dcgan classifier`")
        clf = load_classifier(args.classifier, device)
    ev = Evaluator(metrics, data_cfg, split=args.split, num_samples=args.num, num_real=args.num_real,
                   seed=args.seed, z_dist=z_dist, device=device, classifier_epochs=args.classifier_epochs,
                   inception_weights=args.inception_weights, classifier=clf)
    if G is not None:
        images = ev.generate(G)
    else:
        folder = dataclasses.replace(data_cfg, name="folder", root=args.images)
        images = load_images(folder, use_cache=False).images
    scores = ev.score_images(images)
    if ckpt is not None:
        scores.update(step=int(ckpt.get("step", 0)), checkpoint=str(args.checkpoint), seed=args.seed)
    else:
        scores.update(images=str(args.images))
    if args.json:
        print(json.dumps(scores))
    else:
        print(format_table(scores))
    if run_dir is not None and not args.no_log and (run_dir / "metrics.jsonl").is_file():
        append_record(run_dir / "metrics.jsonl", {"kind": "eval", **scores, "source": "dcgan eval"})
        if not args.json:
            print(f"appended to {run_dir / 'metrics.jsonl'}", file=sys.stderr)
    return 0


# --- dcgan classifier ------------------------------------------------------------------------------


def add_classifier(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classifier", help="train (or show) the offline evaluation classifier",
                       description="Train the small CNN whose features give fd_clf, coverage and is_clf, on "
                                   "the real training split; cached by dataset, split, size, channels, seed.")
    p.add_argument("--split", default="train", help="split to train on (default train)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="train again even if cached")
    _data_args(p, with_dataset=True)
    p.set_defaults(func=cmd_classifier)


def cmd_classifier(args: argparse.Namespace) -> int:
    from ..devices import pick_device
    from .classifier import classifier_path, load_classifier, train_classifier

    if args.epochs <= 0:
        raise DCGANError(f"--epochs {args.epochs} must be > 0")
    if not args.dataset:
        raise DCGANError("--dataset is required, e.g. --dataset fashion_mnist")
    data_cfg = _data_cfg(args)
    path = classifier_path(data_cfg, split=args.split, seed=args.seed, epochs=args.epochs)
    if path.is_file() and not args.force:
        clf = load_classifier(path)
    else:
        clf = train_classifier(data_cfg, split=args.split, epochs=args.epochs, seed=args.seed,
                               device=pick_device(args.device))
    i = clf.info
    print(f"classifier {clf.name}: test accuracy {i['test_accuracy']:.4f} on {i['num_test']} {i['test_split']} "
          f"images; trained {i['epochs']} epochs on {i['num_train_images']} {i['split']} images "
          f"in {i['train_seconds']} s\n  {clf.path}")
    return 0


# --- dcgan nn --------------------------------------------------------------------------------------


def add_nn(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nn", help="memorisation check: samples beside their nearest training images",
                       description="Show samples with their nearest training images (classifier features and "
                                   "pixels) and compare sample->train with held-out(test)->train distances.")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file or a run directory")
    p.add_argument("--out", required=True, help="the figure (.png)")
    p.add_argument("--num-show", type=int, default=8, help="samples shown with their neighbours (default 8)")
    p.add_argument("--num", type=int, default=1000, help="samples and held-out images for the distances")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heldout-split", default="test")
    p.add_argument("--classifier-epochs", type=int, default=2)
    _data_args(p, with_dataset=False)
    p.set_defaults(func=cmd_nn)


def cmd_nn(args: argparse.Namespace) -> int:
    from ..checkpoint import load_models
    from ..data import load_images, to_uint8
    from ..devices import pick_device
    from ..sampling import generate, noise
    from .classifier import get_classifier
    from .memorisation import memorisation, plot_memorisation

    if args.num < 2 or args.num_show < 1:
        raise DCGANError("--num must be >= 2 and --num-show >= 1")
    device = pick_device(args.device)
    G, _, cfg, ckpt = load_models(args.checkpoint, device)
    data_cfg = _data_cfg(args, cfg.data)
    clf = get_classifier(data_cfg, epochs=args.classifier_epochs, device=device)
    train = load_images(data_cfg, data_cfg.split)
    heldout = load_images(data_cfg, args.heldout_split).images[: args.num]
    z = noise(args.num, cfg.model.nz, cfg.model.z_dist, args.seed, device)
    samples = to_uint8(generate(G, z)).cpu()
    rep = memorisation(samples, heldout, train.images, clf, num_show=args.num_show)
    title = (f"{Path(str(args.checkpoint))} (step {ckpt.get('step', '?')}): {args.num} samples vs {len(heldout)} "
             f"{args.heldout_split} images; nearest of {len(train)} {data_cfg.split} images; features: {clf.name}")
    out = plot_memorisation(rep, train.images, args.out, title)
    s = rep.summary()
    print(f"nearest-training-image distances ({args.num} samples, {len(heldout)} held-out {args.heldout_split} "
          f"images, {len(train)} {data_cfg.split} images, {data_cfg.image_size}px):")
    for space in ("feature", "pixel"):
        print(f"  {space:<8} median sample->train {s[f'median_sample_{space}']:.3f}   "
              f"median held-out->train {s[f'median_heldout_{space}']:.3f}   "
              f"samples closer than 99% of held-out: {100 * s[f'frac_below_heldout_p1_{space}']:.1f}% "
              f"(~1% expected without copying)")
    print(f"wrote {out}")
    return 0
