"""docs/paper.md's ablation table: how far the trained D's features are ahead of the same D at
random init (§5.1 protocol, `dcgan paper features`), one named setting changed per row.

Each row runs `dcgan.paper.features.run_features` on one checkpoint with the trained D and the
random D (and raw pixels where the row says so) and is written to the JSON as soon as it is
done; a rerun skips the rows already there (`--redo NAME` reruns one).

    .venv/bin/python bench/paper_ablations.py --reference runs/eval-fmnist \\
        --long ~/.cache/dcgan/quality-runs/paper-s0 --wide runs/ndf128 --out bench/results-paper-ablations.json

The checkpoints: `--reference` is a `make demo` run (configs/fashion_mnist.yaml, 3 epochs);
`--long` the recipe trained for 5,000 steps (`bench/quality.py --variants paper --seeds 0`);
`--wide` the demo config with `--set model.ndf=128 --set eval.every=0`. Each run's last.pt is used.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import torch
from profile_step import cpu_model  # a sibling script: bench/ is on sys.path when run as a script

from dcgan.checkpoint import load_models, require_discriminator
from dcgan.data import load_images
from dcgan.paper.features import FeatureOptions, run_features


@dataclass(frozen=True)
class Row:
    name: str
    label: str  # the table's first column
    run: str  # which checkpoint: reference, long or wide
    layers: tuple[int, ...] | None = None
    pixels: bool = False  # also the raw-pixel baseline (full labels only)
    num_train: int = 10_000
    modes: tuple[str, ...] = ("full", "few")


ROWS = (
    Row("default", "default: 3 epochs, ndf 64, all 3 stages", "reference"),
    Row("long", "the recipe trained for 5,000 steps (about 11 epochs)", "long"),
    Row("wide", "ndf 128 (`--set model.ndf=128`, 3 epochs)", "wide"),
    Row("stage0", "stage 0 only (`--layers 0`)", "reference", layers=(0,)),
    Row("stage1", "stage 1 only (`--layers 1`)", "reference", layers=(1,)),
    Row("stage2", "stage 2 only (`--layers 2`)", "reference", layers=(2,)),
    Row("all-labels", "all 58,000 training images labelled (`--num-train 58000 --modes full`)", "reference",
        pixels=True, num_train=58_000, modes=("full",)),
)


def run_row(row: Row, checkpoint: Path) -> dict:
    _, D, cfg, ckpt = load_models(checkpoint, "cpu")
    D = require_discriminator(D, checkpoint)
    train, test = load_images(cfg.data, "train"), load_images(cfg.data, "test")
    methods = ("dcgan", "random_d") + (("pixels",) if row.pixels else ())
    opts = FeatureOptions(num_train=row.num_train, modes=row.modes, methods=methods, layers=row.layers, seed=0)
    t = time.perf_counter()
    res = run_features(D, cfg.model, train, test, opts)
    return {"label": row.label, "checkpoint": str(checkpoint), "step": int(ckpt.get("step", 0)),
            "ndf": cfg.model.ndf, "features": res.to_dict(), "seconds": round(time.perf_counter() - t, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", required=True, help="run directory of a `make demo` run")
    ap.add_argument("--long", required=True, help="run directory of the recipe's 5,000-step run")
    ap.add_argument("--wide", required=True, help="run directory of the ndf 128 run")
    ap.add_argument("--out", required=True, help="the JSON file (rows already in it are kept)")
    ap.add_argument("--redo", action="append", default=[], choices=[r.name for r in ROWS])
    args = ap.parse_args()
    out = Path(args.out)
    res = json.loads(out.read_text()) if out.is_file() else {"rows": {}}
    runs = {"reference": args.reference, "long": args.long, "wide": args.wide}
    for row in ROWS:
        if row.name in res["rows"] and row.name not in args.redo:
            continue
        checkpoint = Path(runs[row.run]).expanduser() / "checkpoints" / "last.pt"
        if not checkpoint.is_file():
            print(f"skipping {row.name}: no {checkpoint} yet")
            continue
        print(f"{row.name}: {row.label} on {checkpoint}", flush=True)
        res["rows"][row.name] = run_row(row, checkpoint)
        res["machine"] = {"cpu": cpu_model(), "threads": torch.get_num_threads(),
                          "torch": torch.__version__, "python": platform.python_version(),
                          "date": date.today().isoformat()}
        res["rows"] = {r.name: res["rows"][r.name] for r in ROWS if r.name in res["rows"]}
        out.write_text(json.dumps(res, indent=1) + "\n")
        print(f"  {res['rows'][row.name]['seconds']} s, written to {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
