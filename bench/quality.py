"""Quality against cost: the paper's recipe, each stabiliser alone, and the stable preset.

For each variant and data regime it trains on real Fashion-MNIST at 32x32 with the same seed,
keeps a checkpoint every `--eval-every` steps and scores each (fd_clf: 2,000 generated images
vs all 10,000 real test images, features of the project's classifier trained on all 60,000
training images, whatever the regime; the averaged G where the run has one). It measures the variant's cost per step on
its own in a short timing pass (so the wall-time axis does not depend on what else ran on the
machine during the long runs). It writes a JSON of everything, the plots of score against
images seen and against wall time, and a Markdown table.

    python bench/quality.py --out bench/results-quality --steps 1200          # all variants
    python bench/quality.py --out bench/results-quality --variants paper,ema  # some; reuses done runs
    python bench/quality.py --out bench/results-quality --report docs/quality.md   # tables + plots only

Not a test: it trains for tens of minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

# variant -> config overrides (on top of configs/fashion_mnist.yaml); "paper" is the recipe itself.
VARIANTS: dict[str, list[str]] = {
    "paper": [],
    "ema": ["train.ema=0.999"],
    "ttur": ["train.lr_d=0.0004", "train.lr_g=0.0001"],
    "hinge": ["train.loss=hinge"],
    "lsgan": ["train.loss=lsgan"],
    "spectral": ["model.d_norm=spectral"],
    "augment": ["train.augment=color,translation,cutout"],
    "ema+hinge": ["train.ema=0.999", "train.loss=hinge"],
}
PRESET = "configs/fashion_mnist_stable.yaml"
REGIMES = {"full": 0, "2k": 2000}  # data.subset: all 60,000 training images, or the first 2,000


def run_overrides(variant: str, regime: str, steps: int, every: int, seed: int) -> list[str]:
    return [*VARIANTS.get(variant, []), f"data.subset={REGIMES[regime]}", f"train.max_steps={steps}",
            f"train.seed={seed}", "eval.every=0", f"train.checkpoint_every={every}",
            f"train.sample_every={steps}", "train.progress=false", "train.device=cpu"]


def config_for(variant: str) -> str:
    return PRESET if variant == "preset" else "configs/fashion_mnist.yaml"


def score_run(run_dir: Path, evaluator) -> list[dict]:
    """fd_clf of every kept checkpoint of a run (the averaged G when the run has one)."""
    from dcgan.checkpoint import load_checkpoint
    from dcgan.config import from_dict
    from dcgan.models import build_models

    ckdir = run_dir / "checkpoints"
    paths = sorted(ckdir.glob("step-*.pt")) + [ckdir / "last.pt"]
    out = []
    for path in paths:
        ck = load_checkpoint(path)
        cfg = from_dict(ck["config"])
        G, _ = build_models(cfg.model, cfg.data.image_size, cfg.data.channels)
        G.load_state_dict(ck.get("G_ema", ck["G"]))
        scores = evaluator.score_images(evaluator.generate(G.eval()))
        out.append({"step": ck["step"], "fd_clf": scores["fd_clf"]})
    return out


def train_one(variant: str, regime: str, steps: int, every: int, seed: int, runs: Path) -> dict:
    """Train one run (checkpoints every `every` steps), then score each checkpoint with one
    protocol for every regime: 2,000 samples vs all 10,000 test images, the classifier trained
    on all 60,000 training images (a data.subset run is scored exactly like a full one)."""
    import dataclasses

    from dcgan.config import load_config
    from dcgan.metrics.evaluator import Evaluator
    from dcgan.train import train

    cfg = load_config(config_for(variant), run_overrides(variant, regime, steps, every, seed))
    run_dir = runs / f"{variant}-{regime}-s{seed}"
    t0 = time.perf_counter()
    train(cfg, run_dir=run_dir)
    elapsed = time.perf_counter() - t0
    evaluator = Evaluator(["fd_clf"], dataclasses.replace(cfg.data, subset=0), split="test", num_samples=2000,
                          seed=0, z_dist=cfg.model.z_dist)
    evals = score_run(run_dir, evaluator)
    return {"variant": variant, "regime": regime, "seed": seed, "steps": steps, "run_dir": str(run_dir),
            "train_s": round(elapsed, 1), "batch": cfg.train.batch_size, "evals": evals,
            "protocol": "fd_clf: 2,000 generated (noise seed 0) vs all 10,000 Fashion-MNIST test images, "
                        f"32x32, {evaluator.net_name('classifier')} features"}


def step_cost(variant: str, steps: int = 30, warmup: int = 5) -> float:
    """Seconds per training step of a variant (batch 128, 32x32, fp32, CPU), timed alone."""
    from functools import partial

    from dcgan.augment import diff_augment
    from dcgan.config import load_config
    from dcgan.data import Batches, to_model_range
    from dcgan.ema import ema_copy, ema_decay, ema_update
    from dcgan.gan import DPair, GANStep
    from dcgan.models import build_models

    cfg = load_config(config_for(variant), VARIANTS.get(variant, []) + ["data.subset=4096"])
    tc, device = cfg.train, torch.device("cpu")
    batches = Batches(cfg.data, tc.batch_size, 0, device)
    G, D = build_models(cfg.model, cfg.data.image_size, cfg.data.channels)
    G.to(memory_format=torch.channels_last)
    D.to(memory_format=torch.channels_last)
    adam = partial(torch.optim.Adam, betas=(tc.beta1, tc.beta2), foreach=True)
    step = GANStep(G_train=G, D_pair=DPair(D), D=D, opt_G=adam(G.parameters(), lr=tc.lr_g),
                   opt_D=adam(D.parameters(), lr=tc.lr_d), nz=cfg.model.nz, z_dist=cfg.model.z_dist,
                   to_input=lambda x: to_model_range(x).contiguous(memory_format=torch.channels_last),
                   loss=tc.loss, augment=diff_augment(tc.augment))
    G_ema = ema_copy(G) if tc.ema > 0 else None

    def stream():
        epoch = 0
        while True:
            yield from batches.epoch(epoch)
            epoch += 1

    data, gen, times = stream(), torch.Generator().manual_seed(0), []
    for i in range(warmup + steps):
        t = time.perf_counter()
        step(data, gen).tolist()  # the host sync a log step would do
        if G_ema is not None:
            ema_update(G_ema, G, ema_decay(tc.ema, i))
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


# --- the report ---------------------------------------------------------------------------------


def best(evals: list[dict]) -> dict:
    return min(evals, key=lambda e: e["fd_clf"])


def first_step_reaching(evals: list[dict], target: float) -> int | None:
    return next((e["step"] for e in evals if e["fd_clf"] <= target), None)


def spread_last_third(evals: list[dict]) -> float:
    tail = [e["fd_clf"] for e in evals if e["step"] > 2 * evals[-1]["step"] / 3]
    return statistics.pstdev(tail) if len(tail) > 1 else float("nan")


def plot(results: list[dict], costs: dict[str, float], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for regime in REGIMES:
        rows = [r for r in results if r["regime"] == regime and r["seed"] == 0]
        if not rows:
            continue
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        for r in rows:
            steps = [e["step"] for e in r["evals"]]
            fd = [e["fd_clf"] for e in r["evals"]]
            style = dict(lw=2.5, color="black") if r["variant"] == "paper" else \
                dict(lw=2.5, color="tab:red") if r["variant"] == "preset" else dict(lw=1, alpha=0.8)
            a1.plot([s * r["batch"] / 1000 for s in steps], fd, label=r["variant"], **style)
            a2.plot([s * costs[r["variant"]] / 60 for s in steps], fd, label=r["variant"], **style)
        for ax, xl in ((a1, "thousands of real images shown to D (kimg)"), (a2, "training wall time, minutes "
                                                                                  "(steps x timed step cost)")):
            ax.set_yscale("log")
            ax.set_xlabel(xl)
            ax.set_ylabel("fd_clf (lower is better)")
            ax.grid(alpha=0.3)
        a1.legend(fontsize=8)
        data = "all 60,000" if regime == "full" else "the first 2,000"
        fig.suptitle(f"Fashion-MNIST 32x32, {data} training images, seed 0: fd_clf of 2,000 samples vs the "
                     "10,000 test images (classifier features)", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"quality-{regime}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def table(results: list[dict], costs: dict[str, float], regime: str) -> list[str]:
    rows = [r for r in results if r["regime"] == regime]
    paper = [r for r in rows if r["variant"] == "paper"]
    if not paper:
        return []
    paper_best = statistics.mean(best(r["evals"])["fd_clf"] for r in paper)
    paper_t = statistics.mean(first_step_reaching(r["evals"], best(r["evals"])["fd_clf"]) for r in paper)
    lines = ["| variant | seeds | best fd_clf (mean) | best / paper | step of best | first step at paper's best "
             "| time to paper's best | s/step | cost / paper | spread, last third |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    order = ["paper", *[v for v in VARIANTS if v != "paper"], "preset"]
    for v in order:
        rs = [r for r in rows if r["variant"] == v]
        if not rs:
            continue
        bests = [best(r["evals"]) for r in rs]
        mean_best = statistics.mean(b["fd_clf"] for b in bests)
        sd = f" +- {statistics.stdev(b['fd_clf'] for b in bests):.2f}" if len(rs) > 1 else ""
        reach = [first_step_reaching(r["evals"], paper_best) for r in rs]
        reach_s = ", ".join("never" if s is None else str(s) for s in reach)
        t = [s * costs[v] for s in reach if s is not None]
        t_s = f"{statistics.mean(t) / 60:.1f} min ({paper_t * costs['paper'] / statistics.mean(t):.2f}x the paper's speed)" \
            if t and len(t) == len(reach) else "not reached"
        spread = statistics.mean(spread_last_third(r["evals"]) for r in rs)
        lines.append(f"| {v} | {len(rs)} | {mean_best:.2f}{sd} | {mean_best / paper_best:.2f} | "
                     f"{', '.join(str(b['step']) for b in bests)} | {reach_s} | {t_s} | {costs[v]:.3f} | "
                     f"{costs[v] / costs['paper']:.2f}x | {spread:.2f} |")
    return lines


def truncate(results: list[dict]) -> list[dict]:
    """Compare runs at equal steps: cut each regime's runs at the shortest run's last step."""
    out = []
    for regime in REGIMES:
        rows = [r for r in results if r["regime"] == regime]
        if rows:
            last = min(r["steps"] for r in rows)
            out += [{**r, "steps": last, "evals": [e for e in r["evals"] if e["step"] <= last]} for r in rows]
    return out


def report(out: Path, doc: Path) -> None:
    data = json.loads((out / "results.json").read_text())
    results, costs = truncate(data["runs"]), data["costs"]
    figs = plot(results, costs, doc.parent / "figures")
    lines = [f"<!-- generated by bench/quality.py --report {doc} from {out / 'results.json'} -->", ""]
    for regime in REGIMES:
        t = table(results, costs, regime)
        if t:
            data_s = "all 60,000 training images" if regime == "full" else "the first 2,000 training images"
            lines += [f"### {data_s}", "", *t, ""]
    lines += [f"![{p.stem}](figures/{p.name})" for p in figs]
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/results-quality", help="results folder (default bench/results-quality)")
    ap.add_argument("--variants", default=",".join([*VARIANTS, "preset"]), help="comma-separated (default all)")
    ap.add_argument("--regimes", default="full,2k", help="full and/or 2k (default both)")
    ap.add_argument("--seeds", default="0", help="comma-separated RNG seeds (default 0)")
    ap.add_argument("--steps", type=int, default=1200, help="training steps per run (default 1200)")
    ap.add_argument("--eval-every", type=int, default=100, help="steps between scores (default 100)")
    ap.add_argument("--runs", default="/tmp/dcgan-quality-runs", help="where the runs go (default /tmp/...)")
    ap.add_argument("--report", metavar="DOC", help="only write tables and plots (figures next to DOC)")
    ap.add_argument("--costs", action="store_true",
                    help="only time each variant's step (run it on a quiet machine), then stop")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report:
        report(out, Path(args.report))
        return
    path = out / "results.json"
    data = json.loads(path.read_text()) if path.is_file() else {"runs": [], "costs": {}}
    if args.costs:
        for variant in args.variants.split(","):
            data["costs"][variant] = round(step_cost(variant), 4)
            print(f"{variant}: {data['costs'][variant]:.3f} s/step", flush=True)
        data["costs_machine"] = f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
        path.write_text(json.dumps(data, indent=1))
        return
    for variant in args.variants.split(","):
        for regime in args.regimes.split(","):
            for seed in map(int, args.seeds.split(",")):
                key = (variant, regime, seed)
                if any((r["variant"], r["regime"], r["seed"]) == key for r in data["runs"]):
                    continue
                res = train_one(variant, regime, args.steps, args.eval_every, seed, Path(args.runs))
                data["runs"].append(res)
                b = best(res["evals"])
                print(f"{variant} {regime} seed {seed}: best fd_clf {b['fd_clf']:.2f} at step {b['step']} "
                      f"(trained in {res['train_s']:.0f} s)", flush=True)
                data["machine"] = (f"{platform.machine()} CPU, {torch.get_num_threads()} threads, "
                                   f"torch {torch.__version__}")
                path.write_text(json.dumps(data, indent=1))
    path.write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
