"""`dcgan export` and `dcgan serve`: thin commands over dcgan.share (no torch at import)."""

from __future__ import annotations

import argparse

from ..errors import DCGANError
from ..formats import EXPORT_FORMATS, HUB_LAYOUT


def add_commands(sub: argparse._SubParsersAction) -> None:
    add_export(sub)
    add_serve(sub)


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a trained G as a shareable folder (Hugging Face Hub layout)",
                       description="Write model.safetensors, config.json, training.json, samples.png and a "
                                   "model card (README.md) to --out. The folder loads with "
                                   "`Generator.from_pretrained(DIR)` and works as --checkpoint everywhere.")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint file (exported as given), a run directory (its checkpoints/best.pt when the "
                        "run has one, else its newest checkpoint) or an earlier export (required)")
    p.add_argument("--out", required=True, help="the folder to write: new, empty, or an earlier export (required)")
    p.add_argument("--with-discriminator", action="store_true",
                   help="also export D (under `discriminator.` in model.safetensors); default: G only")
    p.add_argument("--format", default=HUB_LAYOUT, metavar="FORMAT[,FORMAT]",
                   help=f"comma-separated, any of: {EXPORT_FORMATS.help()}")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from .export import describe, export_model

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    if not formats:
        raise DCGANError(f"--format is empty; use one or more of {', '.join(EXPORT_FORMATS)}, comma-separated "
                         f"(e.g. {','.join(EXPORT_FORMATS)})")
    out = export_model(args.checkpoint, args.out, with_discriminator=args.with_discriminator, formats=formats,
                       log=print)
    print(describe(out))
    print(f"load it: from dcgan import Generator; G = Generator.from_pretrained({str(out)!r})")
    return 0


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="explore a generator's latent space in the browser",
                       description="Serve a page with a grid of samples, interpolation between two of them, "
                                   "A - B + C (paper Fig. 7) and a walk along B -> A (Fig. 8). Stop with Ctrl-C.")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint file, a run directory or a folder written by `dcgan export` (required)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; anything else warns)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--device", default="auto", help="auto (default: cuda, then mps, then cpu) | cpu | cuda")
    p.add_argument("--threads", type=int, default=0,
                   help="intra-op CPU threads (default 0: the CPUs this process may use, or OMP_NUM_THREADS; "
                        "1 serves more grids per second when other programs share the CPU)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from ..devices import set_threads
    from .serve import serve

    logging.getLogger(__name__).info("%s", set_threads(args.threads, "--threads").line("threads"))
    serve(args.checkpoint, host=args.host, port=args.port, device=args.device)
    return 0
