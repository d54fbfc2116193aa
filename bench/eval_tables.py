"""docs/evaluation.md's reference figures for one trained run, in one JSON file:

- the floor: 5,000 random real *train* images scored like samples;
- the run's best checkpoint (5,000 samples, the training evaluation's protocol);
- the ceiling: an untrained G (the DCGAN initialisation, global seed 0);
- the full `dcgan eval` table of the best checkpoint (10,000 samples);
- the memorisation check of `dcgan nn` (1,000 samples and 1,000 held-out images), and its figure.

Every score uses the run's own evaluation settings (its dataset, split, classifier features,
noise seed), so the rows compare with the run's metrics.jsonl:

    .venv/bin/python bench/eval_tables.py --run runs/eval-fmnist --out bench/results-eval.json \\
        --figure docs/figures/eval-nn.png

`bench/render_docs.py` renders the three tables of docs/evaluation.md from the JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch
from profile_step import cpu_model  # a sibling script: bench/ is on sys.path when run as a script

from dcgan.checkpoint import load_models
from dcgan.data import load_images
from dcgan.metrics.evaluate import EvalSettings, default_metrics, evaluate_checkpoint
from dcgan.metrics.evaluator import Evaluator
from dcgan.metrics.memorisation import memorisation_report
from dcgan.models import build_models


def _plain(scores: dict) -> dict:
    return {k: (float(v) if isinstance(v, float) else v) for k, v in scores.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a run directory with checkpoints/best.pt")
    ap.add_argument("--out", required=True, help="the JSON file to write")
    ap.add_argument("--figure", required=True, help="the memorisation figure (.png) to write")
    ap.add_argument("--num-nn", type=int, default=1000, help="samples and held-out images of the nn check")
    args = ap.parse_args()

    best = Path(args.run) / "checkpoints" / "best.pt"
    G, _, cfg, ckpt = load_models(best, "cpu")
    ec = cfg.eval
    ev = Evaluator(list(default_metrics(cfg.data.name)), cfg.data, split=ec.split, num_samples=ec.num_samples,
                   seed=ec.seed, z_dist=cfg.model.z_dist, classifier_epochs=ec.classifier_epochs)
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    train = load_images(cfg.data, cfg.data.split).images
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: ec.num_samples]
    floor = ev.score_images(train[pick])
    trained = ev.score_images(ev.generate(G))
    torch.manual_seed(cfg.train.seed)  # the state a run starts from: `build_state` after seeding
    G0, _ = build_models(cfg.model, cfg.data.image_size, cfg.data.channels)
    ceiling = ev.score_images(ev.generate(G0))
    seconds["rows"] = time.perf_counter() - t

    t = time.perf_counter()
    full = evaluate_checkpoint(best, EvalSettings(seed=ec.seed), num=10000, log=False).scores
    seconds["full"] = time.perf_counter() - t

    t = time.perf_counter()
    nn = memorisation_report(best, args.figure, num=args.num_nn, seed=0)
    seconds["nn"] = time.perf_counter() - t

    res = {
        "run": str(args.run), "checkpoint": str(best), "step": int(ckpt.get("step", 0)),
        "rows": {"floor": _plain(floor), "trained": _plain(trained), "ceiling": _plain(ceiling)},
        "floor_images": f"{ec.num_samples} random {cfg.data.split} images (torch.randperm, seed 0)",
        "ceiling_seed": cfg.train.seed,
        "full": _plain(full),
        "nn": {**nn.report.summary(), "num_samples": nn.num_samples, "num_heldout": nn.num_heldout,
               "heldout_split": nn.heldout_split, "num_train": nn.num_train, "train_split": nn.train_split,
               "features": nn.report.features, "figure": str(args.figure)},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "machine": {"cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version(), "date": date.today().isoformat()},
        "command": " ".join(["bench/eval_tables.py", *sys.argv[1:]]),
    }
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: res["rows"][k]["fd_clf"] for k in res["rows"]}), f"full fd_clf {full['fd_clf']:.4f}",
          nn.summary_text(), f"wrote {args.out}", sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
