"""Quality over long runs: the paper's recipe against each stabiliser and the stable preset.

Each (variant, RNG seed) trains on real Fashion-MNIST at 32x32 (batch 128) for `--steps` steps,
keeping a checkpoint every `--eval-every` steps; every kept checkpoint is then scored with one
protocol: fd_clf, class coverage and precision/recall (k=3) of 5,000 generated images (noise
seed 0) against all 10,000 test images, in the features of the project's classifier trained on
the 60,000 training images. The averaged G is scored where the run has one, and for those runs
the same checkpoint is also scored with two other ways of getting its BatchNorm statistics
(copied from the live G; re-estimated on batches of z), which is how the docs' choice was made.

Everything is resumable: a run that was stopped continues from its last checkpoint, a finished
run is not trained again, and a scored checkpoint is not scored again. Results are written to
`--out`/results.json after every score, with a 6x6 grid of samples per scored step
(`--out`/samples/), so a later session picks up where this one stopped.

    python bench/quality.py --steps 5000 --seeds 0,1 --variants paper,preset      # train + score
    python bench/quality.py --costs --variants paper,preset    # time each step alone (quiet machine)
    python bench/quality.py --report docs/quality.md           # tables, plots, side-by-side samples

Not a test: one run is 25-45 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

import torch

BASE = "configs/fashion_mnist.yaml"
PRESET = "configs/fashion_mnist_stable.yaml"
# variant -> config overrides on top of BASE; "paper" is the recipe itself, "preset" is PRESET.
VARIANTS: dict[str, list[str]] = {
    "paper": [],
    "ema": ["train.ema_kimg=20", "train.ema_rampup=0.05"],
    "decay": ["train.lr_schedule=linear"],
    "ema+decay": ["train.ema_kimg=20", "train.ema_rampup=0.05", "train.lr_schedule=linear"],
    "r1": ["train.r1_gamma=0.1", "train.reg_every=16"],
    "r1+r2": ["train.r1_gamma=0.1", "train.r2_gamma=0.1", "train.reg_every=16"],
    "rpgan+r1+r2": ["train.loss=rpgan", "train.r1_gamma=0.1", "train.r2_gamma=0.1", "train.reg_every=16"],
    "hinge+sn+d2": ["train.loss=hinge", "model.d_norm=spectral", "train.d_steps=2"],
    "wgan-gp": ["train.loss=wgan_gp", "model.d_norm=none", "train.d_steps=5", "train.beta1=0.0",
                "train.beta2=0.9", "train.lr_d=0.0001", "train.lr_g=0.0001"],
    "preset": [],
}
METRICS = ["fd_clf", "coverage", "pr_clf"]
NUM_SAMPLES, NOISE_SEED = 5000, 0
PROTOCOL = ("fd_clf, coverage and precision/recall (k=3) of 5,000 generated images (noise seed 0) vs all "
            "10,000 Fashion-MNIST test images at 32x32, features of the project's classifier trained on the "
            "60,000 training images; the averaged G where the run has one")
BN_WAYS = ("average", "copy", "recompute")  # how an averaged G gets its BN statistics (see score_run)


def config_for(variant: str) -> str:
    return PRESET if variant == "preset" else BASE


def run_overrides(variant: str, steps: int, every: int, seed: int) -> list[str]:
    return [*VARIANTS[variant], f"train.max_steps={steps}", f"train.seed={seed}", "eval.every=0",
            f"train.checkpoint_every={every}", f"train.sample_every={every}", "train.progress=false",
            "train.device=cpu", "train.precision=fp32"]


def load_config(variant: str, overrides: list[str]):
    from dcgan.config import load_config as load

    return load(config_for(variant), overrides)


def same_training_as(variant: str, data: dict, seed: int) -> str | None:
    """Another variant whose finished run of `seed` trained exactly as `variant` would (the preset is
    a combination of options that may also be a variant of its own): its results stand for both."""
    def key(v: str) -> dict:
        flat = load_config(v, VARIANTS[v]).flat()
        flat.pop("name")
        return flat

    mine = key(variant)
    for other in VARIANTS:
        entry = data["runs"].get(f"{other}-s{seed}")
        if other != variant and entry and entry.get("scored") and not entry.get("same_as") and key(other) == mine:
            return other
    return None


# --- training (resumable) ---------------------------------------------------------------------------


def checkpoint_step(path: Path) -> int | None:
    if not path.is_file():
        return None
    from dcgan.checkpoint import load_checkpoint

    return int(load_checkpoint(path)["step"])


def train_run(variant: str, seed: int, steps: int, every: int, run_dir: Path) -> tuple[float, bool]:
    """Train (or continue) one run to `steps`; returns the seconds spent in this call and whether the
    run got there (False when Ctrl-C or SIGTERM stopped it: it saved last.pt and continues next time)."""
    from dcgan.train import train

    last = run_dir / "checkpoints" / "last.pt"
    done = checkpoint_step(last)
    if done is not None and done >= steps:
        return 0.0, True
    t0 = time.perf_counter()
    if done is None:
        shutil.rmtree(run_dir, ignore_errors=True)  # killed before its first checkpoint: start again
        result = train(load_config(variant, run_overrides(variant, steps, every, seed)), run_dir=run_dir)
    else:
        print(f"{variant} seed {seed}: continuing from step {done}", flush=True)
        result = train(resume=run_dir)
    return time.perf_counter() - t0, result.status == "done"


def on_grid(step: int, every: int, steps: int) -> bool:
    """Whether the protocol scores a checkpoint of this step: every `every` steps and the last one
    (a last.pt written by a stop in between is only where the run continues from)."""
    return step % every == 0 or step == steps


# --- scoring ----------------------------------------------------------------------------------------


def make_evaluator():
    from dcgan.config import load_config as load
    from dcgan.metrics.evaluator import Evaluator

    cfg = load(BASE)
    return Evaluator(METRICS, cfg.data, split="test", num_samples=NUM_SAMPLES, seed=NOISE_SEED,
                     z_dist=cfg.model.z_dist)


def check_features(evaluator, data: dict) -> None:
    """Stop unless the classifier is the one every scored run in `data` was scored with: the same
    weights digest, or, for records from before the digest was kept, the same test accuracy. The
    cached classifier's weights depend on the CPU's kernels and the thread count it was trained
    with, and fd_clf from two classifiers cannot be compared."""
    clf = evaluator.classifier
    mine = (clf.digest, round(float(clf.info["test_accuracy"]), 4))
    for key, entry in data["runs"].items():
        run_weights = entry.get("protocol_detail", {}).get("clf_weights")
        for e in entry.get("evals", []):
            weights = e.get("clf_weights", run_weights)
            if (weights or mine[0]) != mine[0] or e.get("clf_test_accuracy", mine[1]) != mine[1]:
                theirs = (weights or "not recorded", e.get("clf_test_accuracy"))
                raise SystemExit(
                    f"the evaluation classifier {clf.path} (weights {mine[0]}, test accuracy {mine[1]}) is not the "
                    f"one {key} was scored with (weights {theirs[0]}, test accuracy {theirs[1]}), so their fd_clf "
                    "cannot be compared; put that classifier file back, train it again the way docs/quality.md "
                    "says, or score every run into a new --out")


def generators(ck: dict) -> dict[str, torch.nn.Module]:
    """The G to score, by how its BN statistics were obtained: for a run without an averaged G just
    {"live": G}; with one, "average" (the averaged running statistics, as stored), "copy" (the live
    G's) and "recompute" (re-estimated on batches of z: dcgan.ema.recompute_bn_stats)."""
    from dcgan.config import from_dict
    from dcgan.ema import recompute_bn_stats
    from dcgan.models import build_models

    cfg = from_dict(ck["config"])

    def build(state: dict) -> torch.nn.Module:
        G, _ = build_models(cfg.model, cfg.data.image_size, cfg.data.channels)
        G.load_state_dict(state)
        return G.eval()

    if "G_ema" not in ck:
        return {"live": build(ck["G"])}
    out = {"average": build(ck["G_ema"])}
    copy = build(ck["G_ema"])
    for name, buf in copy.named_buffers():
        buf.copy_(ck["G"][name])
    out["copy"] = copy
    out["recompute"] = recompute_bn_stats(build(ck["G_ema"]), z_dist=cfg.model.z_dist,
                                          batch_size=cfg.train.batch_size, seed=NOISE_SEED)
    return out


def save_samples(G: torch.nn.Module, path: Path) -> None:
    from dcgan.sampling import generate, noise, save_grid

    z = noise(36, G.nz, "uniform", NOISE_SEED)
    save_grid(generate(G, z), path, nrow=6)


def score_run(entry: dict, run_dir: Path, evaluator, out: Path, save, every: int) -> None:
    """Score every kept checkpoint of a run on the protocol's grid not scored yet, saving after each."""
    from dcgan.checkpoint import load_checkpoint

    scored = {e["step"] for e in entry["evals"]}
    for path in sorted((run_dir / "checkpoints").glob("step-*.pt")) + [run_dir / "checkpoints" / "last.pt"]:
        ck = load_checkpoint(path)
        if ck["step"] in scored or not on_grid(ck["step"], every, entry["steps"]):
            continue
        gens = generators(ck)
        main_g = gens.get("live") or gens["average"]
        t = time.perf_counter()
        scores = evaluator.score_images(evaluator.generate(main_g))
        rec = {"step": ck["step"], "kimg": ck["step"] * entry["images_per_step"] / 1000,
               **{k: v for k, v in scores.items() if isinstance(v, float)}, "clf_weights": scores["clf_weights"]}
        if "live" not in gens:  # the BN-statistics comparison (fd_clf only)
            rec["fd_clf_bn"] = {way: scores["fd_clf"] if way == "average" else
                                evaluator.score_images(evaluator.generate(gens[way]))["fd_clf"] for way in BN_WAYS}
        rec["score_s"] = round(time.perf_counter() - t, 1)
        entry["protocol_detail"] = {k: scores[k] for k in ("features", "clf_weights", "split", "n_real", "n_gen",
                                                           "image_size")}
        save_samples(main_g, out / "samples" / f"{entry['variant']}-s{entry['seed']}-{ck['step']:05d}.png")
        entry["evals"].append(rec)
        entry["evals"].sort(key=lambda e: e["step"])
        scored.add(ck["step"])
        print(f"  {entry['variant']} seed {entry['seed']} step {ck['step']}: fd_clf {rec['fd_clf']:.2f}"
              + (f" (bn {rec['fd_clf_bn']})" if "fd_clf_bn" in rec else ""), flush=True)
        save()


# --- step cost, timed alone ---------------------------------------------------------------------------


def step_cost(variant: str, steps: int = 30, warmup: int = 5) -> float:
    """Seconds per training image of a variant (32x32, batch 128, fp32, CPU), the median of `steps`
    training iterations after `warmup`, through the same step and EMA code the training loop uses."""
    from dcgan.data import Batches
    from dcgan.loop import build_state, build_step

    cfg = load_config(variant, [*VARIANTS[variant], "data.subset=4096", "train.device=cpu",
                                "train.precision=fp32"])
    device = torch.device("cpu")
    torch.manual_seed(0)
    batches = Batches(cfg.data, cfg.train.batch_size, 0, device)
    state = build_state(cfg, device)
    step_fn, images_per_step = build_step(cfg, state, device), cfg.train.batch_size * cfg.train.d_steps

    def stream():
        epoch = 0
        while True:
            yield from batches.epoch(epoch)
            epoch += 1

    data, gen, times = stream(), torch.Generator().manual_seed(0), []
    for i in range(warmup + steps):
        t = time.perf_counter()
        state.before_step(cfg.train, 5000)
        step_fn(data, gen, state.step).tolist()  # the host sync a log step would do
        state.after_step(cfg.train, images_per_step)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times) / images_per_step


# --- the report ---------------------------------------------------------------------------------------


def cost_of(variant: str, data: dict) -> float | None:
    """A variant's timed cost per image; for one whose runs all stand for another variant's (the
    preset), that variant's: the same training, timed once."""
    twins = {r.get("same_as") for r in data["runs"].values() if r["variant"] == variant}
    if len(twins) == 1 and None not in twins:
        return data["costs"].get(next(iter(twins)))
    return data["costs"].get(variant)


def best(evals: list[dict], key: str = "fd_clf") -> dict:
    return min(evals, key=lambda e: e[key])


def last_third(evals: list[dict]) -> list[float]:
    end = evals[-1]["step"]
    return [e["fd_clf"] for e in evals if e["step"] > 2 * end / 3]


def summarise(data: dict, steps: int) -> dict[str, dict]:
    """Per variant, over its finished seeds, cut at `steps`: best fd_clf and its step, the score at
    the end, the spread over the last third, coverage / precision / recall at the end."""
    out: dict[str, dict] = {}
    for v in VARIANTS:
        runs = [r for r in data["runs"].values() if r["variant"] == v and r["evals"]
                and max(e["step"] for e in r["evals"]) >= steps]
        if not runs:
            continue
        cut = [[e for e in r["evals"] if e["step"] <= steps] for r in runs]
        bests = [best(ev) for ev in cut]
        out[v] = {
            "seeds": [r["seed"] for r in runs],
            "best": statistics.mean(b["fd_clf"] for b in bests),
            "best_each": [round(b["fd_clf"], 2) for b in bests],
            "best_step": [b["step"] for b in bests],
            "end": statistics.mean(ev[-1]["fd_clf"] for ev in cut),
            "end_each": [round(ev[-1]["fd_clf"], 2) for ev in cut],
            "spread": statistics.mean(statistics.pstdev(last_third(ev)) for ev in cut),
            "coverage": statistics.mean(ev[-1]["coverage"] for ev in cut),
            "precision": statistics.mean(ev[-1]["precision_clf"] for ev in cut),
            "recall": statistics.mean(ev[-1]["recall_clf"] for ev in cut),
            "cost": cost_of(v, data),
        }
    return out


def table(summary: dict[str, dict]) -> list[str]:
    paper = summary.get("paper")
    lines = ["| variant | seeds | best fd_clf (mean) | each seed | step of best | best / recipe | at the end "
             "| end / own best | spread, last third | coverage | precision | recall | ms / image | cost / recipe |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for v, s in summary.items():
        ratio = f"{s['best'] / paper['best']:.2f}" if paper else "-"
        cost = f"{s['cost'] * 1000:.2f}" if s["cost"] else "-"
        cost_ratio = f"{s['cost'] / paper['cost']:.2f}x" if s["cost"] and paper and paper["cost"] else "-"
        lines.append(f"| {v} | {len(s['seeds'])} | {s['best']:.2f} | {', '.join(map(str, s['best_each']))} | "
                     f"{', '.join(map(str, s['best_step']))} | {ratio} | {s['end']:.2f} | {s['end'] / s['best']:.2f} | "
                     f"{s['spread']:.2f} | {s['coverage']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} | "
                     f"{cost} | {cost_ratio} |")
    return lines


def bn_table(data: dict) -> list[str]:
    """fd_clf of averaged G's with each way of getting BN statistics, mean over their checkpoints."""
    rows = []
    for key, r in sorted(data["runs"].items()):
        evs = [e for e in r["evals"] if "fd_clf_bn" in e]
        if evs:
            means = {w: statistics.mean(e["fd_clf_bn"][w] for e in evs) for w in BN_WAYS}
            bests = {w: min(e["fd_clf_bn"][w] for e in evs) for w in BN_WAYS}
            rows.append(f"| {key} | {len(evs)} | " + " | ".join(f"{means[w]:.2f} / {bests[w]:.2f}" for w in BN_WAYS)
                        + " |")
    if not rows:
        return []
    return ["| run | checkpoints | " + " | ".join(f"{w}: mean / best" for w in BN_WAYS) + " |",
            "|---|---:|" + "---:|" * len(BN_WAYS), *rows]


def plot(data: dict, steps: int, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, v in enumerate(VARIANTS):
        runs = [r for r in data["runs"].values() if r["variant"] == v and r["evals"]]
        for j, r in enumerate(sorted(runs, key=lambda r: r["seed"])):
            ev = [e for e in r["evals"] if e["step"] <= steps]
            style = dict(color="black" if v == "paper" else "tab:red" if v == "preset" else colours[i % 10],
                         lw=2.2 if v in ("paper", "preset") else 1.1, ls="-" if j == 0 else "--",
                         label=v if j == 0 else None)
            a1.plot([e["kimg"] for e in ev], [e["fd_clf"] for e in ev], **style)
            cost = cost_of(v, data)
            if cost:
                a2.plot([e["kimg"] * 1000 * cost / 60 for e in ev], [e["fd_clf"] for e in ev], **style)
    for ax, xl in ((a1, "thousands of real images shown to D (kimg)"),
                   (a2, "training wall time, minutes (images x the variant's timed cost per image)")):
        ax.set_yscale("log")
        ax.set_xlabel(xl, fontsize=8)
        ax.set_ylabel("fd_clf (lower is better)")
        ax.grid(alpha=0.3, which="both")
    a1.legend(fontsize=7, ncol=2)
    if not data["costs"]:
        a2.text(0.5, 0.5, "costs per image not timed yet:\npython bench/quality.py --costs", ha="center",
                va="center", transform=a2.transAxes, fontsize=9)
    fig.suptitle("Fashion-MNIST 32x32, batch 128: fd_clf of 5,000 samples vs the 10,000 test images "
                 "(classifier features); solid seed 0, dashed seed 1", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def side_by_side(out: Path, step: int, variants: tuple[str, ...], seed: int, path: Path) -> Path | None:
    """The committed sample grids of `variants` at `step`, next to each other with a label."""
    from PIL import Image, ImageDraw

    tiles = [(v, out / "samples" / f"{v}-s{seed}-{step:05d}.png") for v in variants]
    if not all(p.is_file() for _, p in tiles):
        return None
    images = [Image.open(p).convert("RGB") for _, p in tiles]
    w, h = images[0].size
    scale = 2
    canvas = Image.new("RGB", (len(images) * (w * scale + 10) - 10, h * scale + 22), "white")
    draw = ImageDraw.Draw(canvas)
    for i, ((v, _), im) in enumerate(zip(tiles, images)):
        x = i * (w * scale + 10)
        canvas.paste(im.resize((w * scale, h * scale), Image.NEAREST), (x, 22))
        draw.text((x + 2, 4), f"{v}, seed {seed}, step {step}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


BEGIN, END = "<!-- quality-results:begin -->", "<!-- quality-results:end -->"


def render(data: dict, steps: int, out: Path, doc: Path, root: Path = Path(".")) -> str:
    """The results section of the doc, from results.json alone (figures are linked, drawn by `report`);
    `out` and `doc` as given on the command line, relative to `root`."""
    summary = summarise(data, steps)
    lines = [f"<!-- generated by `python bench/quality.py --report {doc} --steps {steps}` from "
             f"{out / 'results.json'}; do not edit by hand -->", "", *table(summary), ""]
    bn = bn_table(data)
    if bn:
        lines += ["BatchNorm statistics of the averaged G, fd_clf over each run's scored checkpoints:", "", *bn, ""]
    lines += ["![fd_clf against images and time](figures/quality-long.png)", ""]
    grids = [root / out / "samples" / f"{v}-s0-{steps:05d}.png" for v in ("paper", "preset")]
    if all(g.is_file() for g in grids):
        lines += [f"![the recipe and the preset at step {steps}, seed 0](figures/quality-samples.png)", ""]
    lines += [training_machines(data) + f" Costs timed alone: {data.get('costs_machine', 'not yet')}."]
    return "\n".join(lines)


def machine() -> str:
    """This machine and the threads torch uses now (a run's: train sets them)."""
    return (f"{platform.machine()} CPU, torch CPU capability {torch.backends.cpu.get_cpu_capability()}, "
            f"{os.cpu_count()} cores, intra-op threads: {torch.get_num_threads()}, torch {torch.__version__}")


def training_machines(data: dict) -> str:
    """Where the runs trained: the file's machine for runs that do not name their own (the older
    ones), then each other machine with its runs."""
    by: dict[str, list[str]] = {}
    for key, entry in sorted(data["runs"].items()):
        if entry.get("machine", data.get("machine")) != data.get("machine") and not entry.get("same_as"):
            by.setdefault(entry["machine"], []).append(key)
    if not by:
        return f"Training machine: {data.get('machine', '?')}."
    others = "; ".join(f"{m} ({', '.join(keys)})" for m, keys in by.items())
    return f"Training machine: {data.get('machine', '?')}, except {others}."


def report(out: Path, doc: Path, steps: int) -> None:
    """Draw the figures next to `doc` and replace its results section (between the markers)."""
    data = json.loads((out / "results.json").read_text())
    plot(data, steps, doc.parent / "figures" / "quality-long.png")
    side_by_side(out, steps, ("paper", "preset"), 0, doc.parent / "figures" / "quality-samples.png")
    section = render(data, steps, out, doc)
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc} has no {BEGIN} ... {END} section to fill")
    head, rest = text.split(BEGIN, 1)
    doc.write_text(f"{head}{BEGIN}\n{section}\n{END}{rest.split(END, 1)[1]}")
    (out / "summary.json").write_text(json.dumps(summarise(data, steps), indent=1) + "\n")
    print(section)


# --- main ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/results-quality-5k", help="results folder (default bench/results-quality-5k)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (default all)")
    ap.add_argument("--seeds", default="0,1", help="comma-separated RNG seeds (default 0,1)")
    ap.add_argument("--steps", type=int, default=5000, help="training steps per run (default 5000)")
    ap.add_argument("--eval-every", type=int, default=500, help="steps between scored checkpoints (default 500)")
    ap.add_argument("--runs", default=os.path.expanduser("~/.cache/dcgan/quality-runs"),
                    help="where the runs and their checkpoints go (default ~/.cache/dcgan/quality-runs)")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads (default 1: does not collapse when other work shares the CPU)")
    ap.add_argument("--report", metavar="DOC", help="only write tables and plots (figures next to DOC)")
    ap.add_argument("--costs", action="store_true", help="only time each variant's step alone, then stop")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report:
        report(out, Path(args.report), args.steps)
        return
    torch.set_num_threads(args.threads)
    path = out / "results.json"
    data = json.loads(path.read_text()) if path.is_file() else {"protocol": PROTOCOL, "runs": {}, "costs": {}}
    mine: set[str] = set()  # the runs this invocation trains or scores

    def save() -> None:
        """Merge what this invocation changed into the file as it is now (another invocation may
        have written other runs meanwhile), atomically."""
        disk = json.loads(path.read_text()) if path.is_file() else {"protocol": PROTOCOL, "runs": {}, "costs": {}}
        disk["runs"].update({k: data["runs"][k] for k in mine})
        disk["costs"].update(data["costs"])
        disk.update({k: data[k] for k in ("machine", "costs_machine") if k in data})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(disk, indent=1) + "\n")
        tmp.replace(path)
        data["runs"].update(disk["runs"])

    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; use any of {', '.join(VARIANTS)}")
    if args.costs:
        for v in variants:
            data["costs"][v] = round(step_cost(v), 7)
            print(f"{v}: {data['costs'][v] * 1000:.3f} ms/image", flush=True)
        data["costs_machine"] = f"{machine()}, median of 30 steps after 5 warm-up steps, nothing else running"
        save()
        return
    evaluator = None
    for seed in map(int, args.seeds.split(",")):
        for v in variants:
            key = f"{v}-s{seed}"
            run_dir = Path(args.runs) / key
            entry = data["runs"].get(key)
            if entry and entry["steps"] >= args.steps and entry.get("scored") and \
                    max(e["step"] for e in entry["evals"]) >= args.steps:
                continue
            twin = same_training_as(v, data, seed)
            if twin is not None and data["runs"][f"{twin}-s{seed}"]["steps"] >= args.steps:
                data["runs"][key] = {**data["runs"][f"{twin}-s{seed}"], "variant": v, "same_as": twin}
                mine.add(key)
                for png in (out / "samples").glob(f"{twin}-s{seed}-*.png"):
                    shutil.copyfile(png, out / "samples" / png.name.replace(f"{twin}-", f"{v}-", 1))
                print(f"{key}: the same training as {twin}-s{seed}; its results stand for both", flush=True)
                save()
                continue
            cfg = load_config(v, run_overrides(v, args.steps, args.eval_every, seed))
            entry = entry or {"variant": v, "seed": seed, "evals": [], "train_s": 0.0,
                              "overrides": VARIANTS[v], "config": config_for(v)}
            entry.update(steps=args.steps, run_dir=str(run_dir), scored=False,
                         images_per_step=cfg.train.batch_size * cfg.train.d_steps)
            data["runs"][key] = entry
            mine.add(key)
            seconds, finished = train_run(v, seed, args.steps, args.eval_every, run_dir)
            entry["train_s"] = round(entry["train_s"] + seconds, 1)
            entry["machine"] = machine()
            data.setdefault("machine", entry["machine"])
            save()
            if not finished:
                print(f"{key}: stopped at step {checkpoint_step(run_dir / 'checkpoints' / 'last.pt')}; "
                      "run the same command again to continue", flush=True)
                return
            if evaluator is None:
                evaluator = make_evaluator()
                check_features(evaluator, data)
            score_run(entry, run_dir, evaluator, out, save, args.eval_every)
            entry["scored"] = True
            save()
            b = best(entry["evals"])
            print(f"{key}: best fd_clf {b['fd_clf']:.2f} at step {b['step']}, end {entry['evals'][-1]['fd_clf']:.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
