"""Data-parallel on CPU: 2 Gloo processes against 1 process, images/s from each run's metrics.jsonl.

Runs `dcgan train` (the `make demo` config, 40 steps, no evaluation, no samples) in three setups,
`--repeats` times each, alternating so that a change in the machine's load hits all three alike:
`--nproc 2` (one OpenMP thread per process), one process with OMP_NUM_THREADS=1, and one
process with PyTorch's default threads. Throughput is the images between the log records at
steps 10 and 40 over the wall time between them (steps 1-10 hold start-up and warm-up).

    .venv/bin/python bench/bench_ddp.py --out bench/results-ddp.json   # ~10 min on a quiet 2-core CPU

A timing benchmark: run it on a quiet machine (the load average is recorded before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETUPS = {  # name -> (extra dcgan train arguments, environment changes)
    "2 processes x 1 OpenMP thread (`--nproc 2`)": (["--nproc", "2"], {}),
    "1 process x 1 thread (OMP_NUM_THREADS=1)": ([], {"OMP_NUM_THREADS": "1"}),
    "1 process x 2 threads (PyTorch default)": ([], {}),
}


def base_args(steps: int) -> list[str]:
    sets = {"train.max_steps": steps, "train.log_every": 10, "train.sample_every": 100000,
            "train.checkpoint_every": 0, "train.progress": "false", "train.device": "cpu", "eval.every": 0}
    return ["--config", str(REPO / "configs" / "fashion_mnist.yaml"),
            *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]


def throughput(metrics: Path, first: int = 10, last: int = 40) -> float:
    """Images/s between the train records of steps `first` and `last` ("kimg" and "time")."""
    recs = {}
    for line in metrics.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train":
            recs[rec["step"]] = rec
    a, b = recs[first], recs[last]
    return 1000 * (b["kimg"] - a["kimg"]) / (b["time"] - a["time"])


def run(setup: str, steps: int, run_dir: Path) -> float:
    extra, env_changes = SETUPS[setup]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | env_changes
    cmd = [sys.executable, "-m", "dcgan", "train", *extra, *base_args(steps), "--run-dir", str(run_dir)]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return throughput(run_dir / "metrics.jsonl", 10, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs per setup (default 3)")
    ap.add_argument("--steps", type=int, default=40, help="steps per run (default 40; timed from step 10)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results-ddp.json"), help="results file")
    args = ap.parse_args()
    res = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                       "load_avg_start": os.getloadavg()},
           "command": "python bench/bench_ddp.py " + " ".join(sys.argv[1:]),
           "settings": {"config": "configs/fashion_mnist.yaml", "steps": args.steps, "timed_from_step": 10},
           "runs": {name: [] for name in SETUPS}}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for j, setup in enumerate(SETUPS):
                ips = run(setup, args.steps, Path(tmp) / f"r{i}-{j}")
                res["runs"][setup].append(round(ips, 1))
                print(f"{setup}: {ips:.1f} images/s", flush=True)
    res["machine"]["load_avg_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
