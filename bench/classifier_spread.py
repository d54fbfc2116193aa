"""How much fd_clf moves when the evaluation classifier is trained again on another CPU.

The classifier behind fd_clf is trained once per dataset with a fixed seed and cached, but its
weights depend on the kernels torch picks for the CPU (AVX2 or AVX-512) and on the thread count.
This script trains it under each setting in a fresh process (ATEN_CPU_CAPABILITY, DNNL_MAX_CPU_ISA
and MKL_ENABLE_INSTRUCTIONS hold the kernels to AVX2, or torch picks them; OMP_NUM_THREADS and
torch.set_num_threads set the threads), records its test
accuracy and weights digest, and scores the same checkpoints in each one's features, with the
protocol of bench/quality.py (5,000 samples, noise seed 0, all 10,000 Fashion-MNIST test images).

    .venv/bin/python bench/classifier_spread.py --checkpoint RUN/checkpoints/last.pt [...] \\
        --out bench/results-classifier-spread.json

Nothing is written to the user's cache: classifiers and real statistics live in a temporary folder.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KERNELS = {  # the environment that holds torch, oneDNN and MKL to one instruction set; "default" adds none
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "default": {},
}
CONFIG = "configs/fashion_mnist.yaml"


def _quality():
    spec = importlib.util.spec_from_file_location("bench_quality", Path(__file__).with_name("quality.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one(kernels: str, threads: int, checkpoints: list[str], cache: str) -> dict:
    """In this process (started with the setting's environment): train the classifier, score."""
    import dataclasses

    import torch

    from dcgan.checkpoint import load_checkpoint
    from dcgan.config import load_config
    from dcgan.metrics.classifier import train_classifier
    from dcgan.metrics.evaluator import Evaluator

    torch.set_num_threads(threads)
    quality = _quality()
    cfg = load_config(CONFIG)
    data = dataclasses.replace(cfg.data, cache_dir=cache)
    t = time.perf_counter()
    clf = train_classifier(data, seed=0, epochs=2, save=False)
    out = {"kernels": kernels, "threads": threads, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "test_accuracy": round(float(clf.info["test_accuracy"]), 4), "weights": clf.digest,
           "train_s": round(time.perf_counter() - t, 1), "fd_clf": {}}
    ev = Evaluator(["fd_clf"], data, split="test", num_samples=quality.NUM_SAMPLES, seed=quality.NOISE_SEED,
                   z_dist=cfg.model.z_dist, classifier=clf)
    for path in checkpoints:
        gens = quality.generators(load_checkpoint(path))
        out["fd_clf"][path] = ev.score_images(ev.generate(gens.get("live") or gens["average"]))["fd_clf"]
    return out


def render(res: dict) -> str:
    """A row per classifier, a column per checkpoint, then each checkpoint's largest / smallest."""
    cks = list(res["checkpoints"])
    heads = [f"{res['checkpoints'][c]['variant']} step {res['checkpoints'][c]['step']:,}" for c in cks]
    out = ["| kernels | threads | torch capability | test accuracy | weights | " + " | ".join(
        f"fd_clf, {h}" for h in heads) + " |", "|---|---:|---|---:|---|" + "---:|" * len(cks)]
    for r in res["rows"]:
        out.append(f"| {r['kernels']} | {r['threads']} | {r['cpu_capability']} | {r['test_accuracy']:.4f} | "
                   f"`{r['weights']}` | " + " | ".join(f"{r['fd_clf'][c]:.2f}" for c in cks) + " |")
    ratios = [max(r["fd_clf"][c] for r in res["rows"]) / min(r["fd_clf"][c] for r in res["rows"]) for c in cks]
    out.append("| **largest / smallest** | | | | | " + " | ".join(f"**{x:.3f}x**" for x in ratios) + " |")
    out += ["", f"{res['protocol']}. Machine: {res['machine']}."]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", action="append", required=True, help="a run's checkpoint to score (repeat)")
    ap.add_argument("--kernels", default="avx2,default",
                    help="avx2 (held to AVX2) and/or default (what torch picks here); default both")
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--out", default="bench/results-classifier-spread.json")
    ap.add_argument("--one", nargs=3, metavar=("KERNELS", "THREADS", "CACHE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.checkpoint, args.one[2])))
        return
    import torch

    from dcgan.checkpoint import load_checkpoint

    have = torch.backends.cpu.get_cpu_capability().lower()
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for kernels in args.kernels.split(","):
            if kernels not in KERNELS:
                raise SystemExit(f"unknown kernels {kernels!r}; use any of {', '.join(KERNELS)}")
            for threads in map(int, args.threads.split(",")):
                env = {**os.environ, **KERNELS[kernels], "OMP_NUM_THREADS": str(threads)}
                cmd = [sys.executable, __file__, "--one", kernels, str(threads), cache]
                for c in args.checkpoint:
                    cmd += ["--checkpoint", c]
                done = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"{kernels}, {threads} threads failed:\n{done.stderr[-2000:]}")
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
    result = {
        "protocol": "fd_clf of 5,000 samples (noise seed 0) vs all 10,000 Fashion-MNIST test images at 32x32, "
                    "classifier trained on the 60,000 training images (seed 0, 2 epochs) under each setting",
        "checkpoints": {c: {"step": int(load_checkpoint(c)["step"]), "variant": Path(c).parents[1].name}
                        for c in args.checkpoint},
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, torch capability {have}, torch {torch.__version__}",
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
