"""What the README's first commands cost on this machine, measured, into one JSON file:

- install: a fresh `git clone` of this repository's HEAD and its `make venv` (the `.venv` with torch
  and the package), wall time and the disk the `.venv` takes;
- quick: `dcgan train --config configs/fashion_mnist_quick.yaml` (what `make quick` runs), start to
  exit, with the data cache and the classifier already made, and the images/s its log showed;
- classifier: `dcgan classifier --dataset fashion_mnist --force` in a scratch cache (the
  evaluation classifier, trained once per machine and dataset), its own training time and accuracy.

The demo's row is rendered from `bench/results-demo.jsonl` (a whole `make demo` run), not rerun.
Run it on a quiet machine; each part can be run alone and replaces its entry:

    .venv/bin/python bench/costs.py --parts install quick classifier --work /tmp/dcgan-costs \\
        --out bench/results-costs.json

The clone is left in WORK/clone (its `make test` is the fresh-clone check).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from bench_data import du  # sibling scripts: bench/ is on sys.path when run as a script
from profile_step import cpu_model

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return round(time.perf_counter() - t, 1), out.stdout + out.stderr


def install(work: Path) -> dict:
    clone = work / "clone"
    if clone.exists():
        shutil.rmtree(clone)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    seconds, _ = timed(["make", "venv"], clone)  # venv_bytes: blocks on disk, each hard-linked file once
    return {"seconds": seconds, "venv_bytes": du(clone / ".venv")[1], "command": "git clone; make venv"}


def quick(work: Path) -> dict:
    run = work / "quick-run"
    if run.exists():
        shutil.rmtree(run)
    cmd = [sys.executable, "-m", "dcgan", "train", "--config", "configs/fashion_mnist_quick.yaml",
           "--run-dir", str(run), "--set", "train.progress=false"]
    seconds, _ = timed(cmd, ROOT)
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r.get("kind") == "train"]
    evals = [r for r in recs if r.get("kind") == "eval"]
    return {"seconds": seconds, "images_per_s": round(sum(r["images_per_s"] for r in train) / len(train), 1),
            "steps": train[-1]["step"], "fd_clf_last": round(evals[-1]["fd_clf"], 2) if evals else None}


def classifier(work: Path) -> dict:
    cache = work / "cache"
    cmd = [sys.executable, "-m", "dcgan", "classifier", "--dataset", "fashion_mnist", "--force",
           "--cache-dir", str(cache)]
    seconds, text = timed(cmd, ROOT)
    acc = re.search(r"test accuracy ([0-9.]+)", text)
    train_s = re.search(r"in ([0-9.]+) s", text)
    return {"seconds": seconds, "train_seconds": float(train_s.group(1)) if train_s else None,
            "test_accuracy": float(acc.group(1)) if acc else None}


PARTS = {"install": install, "quick": quick, "classifier": classifier}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    ap.add_argument("--work", type=Path, default=Path("/tmp/dcgan-costs"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-costs.json")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    res = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for part in args.parts:
        print(f"{part} ...", flush=True)
        load = os.getloadavg()
        res[part] = {**PARTS[part](args.work), "load_avg_start": round(load[0], 1),
                     "machine": f"{cpu_model()}, {os.cpu_count()} CPUs", "date": date.today().isoformat()}
        args.out.write_text(json.dumps(res, indent=1) + "\n")
        print(f"  {res[part]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
