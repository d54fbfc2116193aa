"""The `dcgan` command: a thin layer over the library.

Each subcommand parses its flags and calls one library function. A `DCGANError` (bad input of
any kind) prints one line, `error: <problem>; <fix>`, and exits with code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import DCGANError

# --- train -------------------------------------------------------------------------------------


def _config_keys_epilog() -> str:
    from .config import describe_keys

    lines = ["config keys (set in a YAML file or with --set KEY=VALUE; defaults are the paper's recipe):"]
    for key, default, doc in describe_keys():
        value = ",".join(map(str, default)) if isinstance(default, list) else default
        lines.append(f"  {key}={value}" + (f"  ({doc})" if doc else ""))
    return "\n".join(lines)


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a DCGAN from a YAML config",
                       description="Train G and D. Every run gets its own directory under --runs-root "
                                   "(runs/<name>-NNN); outputs, resume and failures are described in README.md.",
                       epilog=_config_keys_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config (see configs/); default: none, i.e. the paper's recipe on CIFAR-10")
    p.add_argument("--run-dir", help="where to write this run (must not hold another run); "
                                     "default: the next runs/<name>-NNN")
    p.add_argument("--resume", metavar="RUN_DIR_OR_CKPT",
                   help="continue a run: its directory (its newest checkpoint) or a checkpoint file (an "
                        "older checkpoint starts a new run beside the original); default: a new run")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.batch_size=64 (repeatable; "
                        "the keys are listed below)")
    p.add_argument("--runs-root", default="runs", help="parent of numbered run directories (default: runs)")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train with N processes on this machine (DistributedDataParallel via torchrun; "
                        "one per GPU, or Gloo on CPU; default 1). For several machines use torchrun itself: "
                        "see docs/distributed.md")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .train import train

    if args.resume and args.config:
        raise DCGANError("--resume takes the config from the checkpoint; drop --config (use --set to change values)")
    if args.nproc != 1:  # relaunch this command in N processes through torchrun's launcher
        from .distributed import launch_local

        argv = ["train", "--runs-root", args.runs_root]
        for flag, value in (("--config", args.config), ("--run-dir", args.run_dir), ("--resume", args.resume)):
            if value:
                argv += [flag, value]
        for override in args.overrides:
            argv += ["--set", override]
        return launch_local(args.nproc, argv)
    cfg = None if args.resume else load_config(args.config, args.overrides)
    result = train(cfg, run_dir=args.run_dir, resume=args.resume,
                   overrides=args.overrides if args.resume else None, runs_root=args.runs_root)
    return 130 if result.status == "interrupted" else 0


# --- sample ------------------------------------------------------------------------------------


def add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate images from a checkpoint",
                       description="Generate N images: OUT ending in .png gets one grid, any other OUT "
                                   "a folder of N image files at the model's resolution.")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file, a run directory or a folder written by `dcgan export` (required)")
    p.add_argument("--num", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--out", required=True, help="a .png path for a grid, or a folder (required)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--batch-size", type=int, default=256,
                   help="images generated per forward pass; only memory use depends on it (default 256)")
    p.add_argument("--bn-mode", choices=("eval", "train"), default="eval",
                   help="eval (default): BN uses running statistics; train: per-batch statistics")
    p.add_argument("--no-ema", action="store_true",
                   help="sample the raw G, not the averaged one, of a run trained with train.ema (default off)")
    p.add_argument("--numbered", action="store_true",
                   help="draw each sample's index on the grid, for `dcgan paper arithmetic` (default off)")
    p.add_argument("--save-z", metavar="FILE", help="also save the latent vectors (a .pt tensor (N, nz)); default: not saved")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU; default), cpu, cuda, cuda:N or mps")
    p.add_argument("--threads", type=int, default=0,
                   help="intra-op CPU threads (default 0: the CPUs this process may use, or OMP_NUM_THREADS; "
                        "1 when other programs share the CPU)")
    p.set_defaults(func=cmd_sample)


def cmd_sample(args: argparse.Namespace) -> int:
    from .atomic import check_output_file
    from .checkpoint import load_models
    from .devices import pick_device, set_threads
    from .sampling import generate, noise, save_folder, save_grid, save_numbered_grid

    if args.num <= 0:
        raise DCGANError(f"--num {args.num} must be > 0")
    if not 1 <= args.batch_size <= 65536:
        raise DCGANError(f"--batch-size {args.batch_size} must be in 1..65536 (images per forward pass)")
    if args.save_z:  # checked before --out is written, so a failed command writes nothing
        check_output_file(args.save_z, "--save-z")
    set_threads(args.threads, "--threads")
    device = pick_device(args.device)
    G, _, cfg, _ = load_models(args.checkpoint, device, ema=not args.no_ema)
    z = noise(args.num, cfg.model.nz, cfg.model.z_dist, args.seed, device)
    images = generate(G, z, batch_size=args.batch_size, bn_mode=args.bn_mode)
    out = Path(args.out)
    if out.suffix.lower() == ".png":
        if args.numbered:
            save_numbered_grid(images, out)
        else:
            save_grid(images, out)
        print(f"wrote a grid of {args.num} samples to {out}")
    else:
        save_folder(images, out)
        print(f"wrote {args.num} images ({cfg.data.image_size}x{cfg.data.image_size}) to {out}/")
    if args.save_z:
        from .atomic import torch_save

        torch_save(z.cpu(), args.save_z)
    return 0


# --- prepare -----------------------------------------------------------------------------------


def add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="decode a dataset once into a memory-mapped array to train from",
                       description="Decode and resize every image of the config's data section (a dataset, an "
                                   "image folder, LSUN's lmdb) once, at data.image_size and data.channels, on all "
                                   "cores, into DIR: images.npy (uint8 N x C x S x S), labels.npy where the source "
                                   "has labels, and dataset.json (written last: a folder without it is "
                                   "unfinished). Train from it with --set data.name=prepared --set data.root=DIR. "
                                   "Stopped half-way, the same command continues; DIR must be absent, empty, or "
                                   "an unfinished prepare.")
    p.add_argument("--config", help="YAML config whose data section names the source (default: none, i.e. "
                                    "CIFAR-10 at 64 px)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set data.root=/data/faces (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (required)")
    p.add_argument("--workers", type=int, default=-1, metavar="N",
                   help="decoding processes (default: one per CPU core; 0 decodes in this process)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verify", action="store_true",
                   help="write nothing: check the prepared DIR in full (every byte against the sha256 in its "
                        "dataset.json), e.g. a copy on another machine; --config is not needed")
    p.set_defaults(func=cmd_prepare)


def cmd_prepare(args: argparse.Namespace) -> int:
    import shlex

    from .config import load_config
    from .prepare import prepare

    if not -1 <= args.workers <= 256:
        raise DCGANError(f"--workers {args.workers} must be in 0..256, or -1 for one per CPU core")
    if args.verify:
        from .prepare import verify

        m = verify(args.out)
        print(f"{args.out}: {m['count']} images, {m['image_size']} px, {m['channels']} channel(s): the arrays match "
              f"dataset.json ({m['fingerprint'][:19]}...)")
        return 0
    cfg = load_config(args.config, args.overrides)
    command = shlex.join(["dcgan", *getattr(args, "argv", [])])
    m = prepare(cfg.data, args.out, workers=args.workers, command=command, progress=not args.no_progress)
    skipped = f", {m['skipped']} undecodable skipped" if m["skipped"] else ""
    print(f"{args.out}: {m['count']} images of {m['source']['name']} at {m['image_size']} px, "
          f"{m['channels']} channel(s){skipped}, {m['bytes'] / 1e9:.2f} GB; train with "
          f"--set data.name=prepared --set data.root={shlex.quote(str(args.out))}")
    return 0


# --- entry point -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from .metrics.cli import add_commands as add_metrics_commands  # eval, classifier, nn
    from .paper.cli import add_commands as add_paper_commands  # paper features|walk|...
    from .share.cli import add_commands as add_share_commands  # export, serve

    parser = argparse.ArgumentParser(prog="dcgan", description="DCGAN (Radford et al. 2016), reproduced.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (add_train, add_prepare, add_sample, add_metrics_commands, add_paper_commands, add_share_commands):
        add(sub)
    return parser


# Messages of errors that mean "a number too large for the code" or "memory ran out", raised by
# torch/numpy as plain ValueError/TypeError/RuntimeError.
_OVERFLOW_TEXT = ("overflow", "too large to convert", "int too large", "out of bounds for int", "value too large")
_WRITE_TEXT = ("inline_container", "pytorchstreamwriter", "unexpected pos", "file write failed")  # torch.save
_MEMORY_TEXT = ("can't allocate memory", "cannot allocate memory", "out of memory", "not enough memory",
                "bad_alloc")


def _fault_message(e: BaseException) -> str | None:
    """A one-line message for faults of the machine or of a number's range rather than of the
    code: I/O errors (full disk, read-only or missing paths, permissions), memory running out,
    and numbers beyond what the code can hold. None for anything else (a bug: its traceback)."""
    text = str(e).lower()
    if isinstance(e, OSError):
        path = e.filename2 or e.filename  # a rename's target is the user's path, not the temp file
        where = f" ({path})" if path else ""
        what = e.strerror or (str(e).splitlines() or [type(e).__name__])[0]
        if isinstance(e, (FileExistsError, NotADirectoryError)):
            what = f"{what}: a file stands where a folder is needed"
        return (f"{what}{where}; check that the path exists, is writable and the disk has space, "
                "then run the command again (runs resume with --resume)")
    if isinstance(e, RuntimeError) and any(t in text for t in _WRITE_TEXT):
        return ("could not write a file (the disk is full, or the folder is read-only or gone); free disk space "
                "or pick a writable folder, then run the command again (runs resume with --resume)")
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or (
            isinstance(e, RuntimeError) and any(t in text for t in _MEMORY_TEXT)):
        return ("out of memory; lower train.batch_size (or --batch-size / --num), the image size or the "
                "model width (model.ngf/ndf), or use a machine with more memory")
    if isinstance(e, OverflowError) or (isinstance(e, (ValueError, TypeError, RuntimeError))
                                        and any(t in text for t in _OVERFLOW_TEXT)):
        return ("a number is out of the range the code can handle (a count, size or seed too large); "
                "use smaller values")
    if isinstance(e, UnicodeDecodeError):
        return (f"a file that should be text is not ({e.reason} at byte {e.start}); check the files passed "
                "to the command")
    if isinstance(e, RecursionError):
        return "an input is nested too deeply to read; check the files passed to the command"
    return None


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as given (dcgan prepare records it)
    try:
        return args.func(args) or 0
    except DCGANError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, MemoryError, OverflowError, ValueError, TypeError, RuntimeError) as e:
        message = _fault_message(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
