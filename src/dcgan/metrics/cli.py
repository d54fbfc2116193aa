"""`dcgan eval`, `dcgan classifier`, `dcgan nn`: thin commands over dcgan.metrics.

Each command parses its options, calls one library function (`evaluate_checkpoint`,
`evaluate_folder`, `get_classifier`, `memorisation_report`) and prints the result. Building
the parsers imports nothing heavy (no torch), so `--help` is fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import DCGANError
from .evaluate import DEFAULT_CLF_METRICS, DEFAULT_SSL_METRICS, EVALUATIONS_FILE, MIN_IMAGES
from .registry import FEATURE_NETWORKS, metric_names


def add_commands(sub: argparse._SubParsersAction) -> None:
    add_eval(sub)
    add_classifier(sub)
    add_nn(sub)


def _dataset_args(p: argparse.ArgumentParser, *, from_checkpoint: bool) -> None:
    if from_checkpoint:  # eval: --checkpoint brings its own dataset, --images needs one
        p.add_argument("--dataset", help="the real dataset to compare with, e.g. fashion_mnist (default: the "
                                         "checkpoint's; required with --images)")
        p.add_argument("--image-size", type=int, help="image size (default: the checkpoint's, else 32)")
        p.add_argument("--channels", type=int, choices=(1, 3), help="channels (default: the checkpoint's, else 1)")
    else:  # classifier
        p.add_argument("--dataset", help="the labelled dataset to train on, e.g. fashion_mnist (required)")
        p.add_argument("--image-size", type=int, help="image size (default 32)")
        p.add_argument("--channels", type=int, choices=(1, 3), help="channels (default 1)")


def _common_args(p: argparse.ArgumentParser, *, checkpoint: str) -> None:
    """`checkpoint`: "always" (nn), "or images" (eval: --checkpoint or --images), "never" (classifier)."""
    root, cache = "./data", "~/.cache/dcgan"
    if checkpoint == "always":
        root, cache = "the checkpoint's data.root", "the checkpoint's data.cache_dir"
    elif checkpoint == "or images":
        root = f"the checkpoint's data.root; {root} with --images"
        cache = f"the checkpoint's data.cache_dir; {cache} with --images"
    p.add_argument("--data-root", help=f"where the dataset lives (default: {root})")
    p.add_argument("--cache-dir", help=f"where data, classifier and statistics caches live (default: {cache})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto: CUDA, "
                                                    "then MPS, then CPU)")


MAX_SSL_STEPS = 100_000  # as eval.ssl_steps


def _ssl_steps_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ssl-steps", type=int,
                   help="training steps of the cached self-supervised encoder behind *_ssl (default: the "
                        "checkpoint's eval.ssl_steps, else 1000)")


def _check_ssl_steps(n: int | None) -> None:
    if n is not None and not 1 <= n <= MAX_SSL_STEPS:
        raise DCGANError(f"--ssl-steps {n} must be in 1..{MAX_SSL_STEPS}")


MAX_CLASSIFIER_EPOCHS = 1000  # the classifier converges in a few; more is a typo (and runs for days)


def _check_epochs(n: int, option: str) -> None:
    if not 1 <= n <= MAX_CLASSIFIER_EPOCHS:
        raise DCGANError(f"{option} {n} must be in 1..{MAX_CLASSIFIER_EPOCHS}")


def _check_not_empty(value: str | None, option: str, example: str) -> None:
    """An empty value given on purpose (`--split ''`) is refused, not taken as the default."""
    if value is not None and not value.strip(" ,"):
        raise DCGANError(f"{option} is empty; pass a value, e.g. {option} {example}, or leave the option out")


def _data_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"name": getattr(args, "dataset", None), "image_size": getattr(args, "image_size", None),
            "channels": getattr(args, "channels", None), "root": args.data_root, "cache_dir": args.cache_dir}


# --- dcgan eval -----------------------------------------------------------------------------------


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a checkpoint (or a folder of images) against real data",
                       description="Generate --num images from a checkpoint (or read a folder) and score them "
                                   "against a real split. Scores named *_clf and coverage use the project's "
                                   "classifier (`dcgan classifier`); fid, kid, is, pr use Inception-v3. "
                                   f"A checkpoint in a run directory gets one line in RUN/{EVALUATIONS_FILE}; "
                                   "the run's metrics.jsonl is never changed.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a checkpoint file, a run directory (its checkpoints/last.pt) or an "
                                          "export folder (no default: this or --images is required)")
    src.add_argument("--images", metavar="FOLDER", help="a folder of images to score, with --dataset (no default: this or --checkpoint is required)")
    p.add_argument("--metrics", help=f"comma-separated, any of {', '.join(metric_names())} (default: "
                                     f"{','.join(DEFAULT_CLF_METRICS)} for labelled datasets, else "
                                     f"{','.join(DEFAULT_SSL_METRICS)}: the self-supervised encoder, offline)")
    p.add_argument("--features", choices=FEATURE_NETWORKS.names(),
                   help="the network for generic names (fd/fid, kid, is, pr), and for the default metrics "
                        "(default: the names say it); " + FEATURE_NETWORKS.help())
    p.add_argument("--num", type=int, default=10000, help="images generated from --checkpoint (default 10000)")
    p.add_argument("--split", default="test", help="real split to compare with (default test)")
    p.add_argument("--num-real", type=int, default=0, help="use only the first N real images (default 0: all)")
    p.add_argument("--seed", type=int, default=0, help="noise seed, also KID's subset seed (default 0)")
    p.add_argument("--inception-weights", metavar="FILE",
                   help="local Inception-v3 FID weights (torch-fidelity's .pth, loaded as plain tensors) "
                        "(default: $DCGAN_INCEPTION_WEIGHTS, else download)")
    p.add_argument("--classifier-epochs", type=int, default=2,
                   help="epochs of the cached classifier (default 2)")
    p.add_argument("--classifier", metavar="FILE",
                   help="use this file written by `dcgan classifier` (default: the cached classifier)")
    _ssl_steps_arg(p)
    p.add_argument("--json", action="store_true", help="print the scores as one JSON object (default: a table)")
    p.add_argument("--no-log", action="store_true",
                   help=f"do not append the result to RUN/{EVALUATIONS_FILE} (default: append when the "
                        "checkpoint is in a run directory)")
    _dataset_args(p, from_checkpoint=True)
    _common_args(p, checkpoint="or images")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import EvalSettings, data_config, evaluate_checkpoint, evaluate_folder
    from .evaluator import format_table

    if args.num < MIN_IMAGES:
        raise DCGANError(f"--num {args.num} is too few to score; use at least {MIN_IMAGES}")
    if args.num_real < 0:
        raise DCGANError(f"--num-real {args.num_real} must be >= 0 (0: all the real images)")
    _check_epochs(args.classifier_epochs, "--classifier-epochs")
    _check_ssl_steps(args.ssl_steps)
    _check_not_empty(args.split, "--split", "test")
    _check_not_empty(args.metrics, "--metrics", "fd_clf,kid_clf")
    settings = EvalSettings(metrics=args.metrics.split(",") if args.metrics else None, features=args.features,
                            split=args.split, num_real=args.num_real, seed=args.seed,
                            classifier=args.classifier, classifier_epochs=args.classifier_epochs,
                            inception_weights=args.inception_weights, ssl_steps=args.ssl_steps, device=args.device)
    if args.checkpoint:
        result = evaluate_checkpoint(args.checkpoint, settings, num=args.num, data_overrides=_data_overrides(args),
                                     log=not args.no_log)
    else:
        if not args.dataset:
            raise DCGANError("--images needs --dataset (the real data to compare with), e.g. --dataset fashion_mnist")
        result = evaluate_folder(args.images, data_config(**_data_overrides(args)), settings)
    print(json.dumps(result.scores) if args.json else format_table(result.scores))
    if result.logged_to is not None and not args.json:
        print(f"appended to {result.logged_to}", file=sys.stderr)
    return 0


# --- dcgan classifier ------------------------------------------------------------------------------


def add_classifier(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classifier", help="train (or show) the offline evaluation classifier",
                       description="Train the small CNN whose features give fd_clf, kid_clf, pr_clf, is_clf and "
                                   "coverage, on a labelled dataset's training split; cached by dataset, split, "
                                   "size, channels, seed and epochs, and shown instead of trained when cached.")
    p.add_argument("--split", default="train", help="split to train on (default train)")
    p.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    p.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed (default 0)")
    p.add_argument("--force", action="store_true", help="train again even if cached (default: reuse the cache)")
    _dataset_args(p, from_checkpoint=False)
    _common_args(p, checkpoint="never")
    p.set_defaults(func=cmd_classifier)


def cmd_classifier(args: argparse.Namespace) -> int:
    from ..devices import pick_device
    from .classifier import get_classifier
    from .evaluate import data_config

    _check_epochs(args.epochs, "--epochs")
    _check_not_empty(args.split, "--split", "train")
    if not args.dataset:
        raise DCGANError("--dataset is required, e.g. --dataset fashion_mnist")
    clf = get_classifier(data_config(**_data_overrides(args)), split=args.split, seed=args.seed,
                         epochs=args.epochs, device=pick_device(args.device), force=args.force)
    i = clf.info
    print(f"classifier {clf.name} (weights {clf.digest}): test accuracy {i['test_accuracy']:.4f} on {i['num_test']} {i['test_split']} "
          f"images; trained {i['epochs']} epochs on {i['num_train_images']} {i['split']} images "
          f"in {i['train_seconds']} s\n  {clf.path}")
    return 0


# --- dcgan nn --------------------------------------------------------------------------------------


def add_nn(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nn", help="memorisation check: samples beside their nearest training images",
                       description="Show samples with their nearest training images (features and pixels) and "
                                   "compare sample->train with held-out->train distances. The features are the "
                                   "classifier's for a labelled dataset, else the self-supervised encoder's.")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file, a run directory or a folder written by `dcgan export` (required)")
    p.add_argument("--out", required=True, help="the figure to write, a .png (required)")
    p.add_argument("--num-show", type=int, default=8, help="samples shown with their neighbours (default 8)")
    p.add_argument("--num", type=int, default=1000,
                   help="samples, and held-out images, whose nearest-training distances are compared (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="noise seed of the samples (default 0)")
    p.add_argument("--heldout-split", default="test", help="the real split of held-out images (default test)")
    p.add_argument("--classifier-epochs", type=int, default=2,
                   help="epochs of the cached classifier whose features are compared (default 2)")
    _ssl_steps_arg(p)
    _common_args(p, checkpoint="always")
    p.set_defaults(func=cmd_nn)


def cmd_nn(args: argparse.Namespace) -> int:
    from .memorisation import memorisation_report

    _check_epochs(args.classifier_epochs, "--classifier-epochs")
    _check_ssl_steps(args.ssl_steps)
    _check_not_empty(args.heldout_split, "--heldout-split", "test")
    if not 1 <= args.num_show <= 64:
        raise DCGANError(f"--num-show {args.num_show} must be in 1..64 (rows of the figure)")
    result = memorisation_report(args.checkpoint, args.out, num=args.num, num_show=args.num_show, seed=args.seed,
                                 heldout_split=args.heldout_split, classifier_epochs=args.classifier_epochs,
                                 data_overrides=_data_overrides(args), device=args.device,
                                 ssl_steps=args.ssl_steps)
    print(result.summary_text())
    print(f"wrote {result.figure}")
    return 0
