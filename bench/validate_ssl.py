"""Validate the label-free score (fd_ssl, kid_ssl, pr_ssl) against the classifier's (fd_clf) on Fashion-MNIST.

    .venv/bin/python bench/validate_ssl.py                      # measure, write bench/results-ssl.json
    .venv/bin/python bench/validate_ssl.py --render bench/results-ssl.json   # the docs table (markdown)

What it measures, every set scored on both feature networks with one protocol (N images against
all 10,000 real test images, 32 px grayscale, configs/fashion_mnist.yaml):
  - checkpoints of a run (default: the benchmark's ~/.cache/dcgan/quality-runs/paper-s0, read
    only; every step-*.pt and last.pt there when this runs, plus the same config's untrained G):
    fd_ssl's ranking against fd_clf's (Spearman);
  - deliberately degraded real images (N training images, held out from the test split the
    scores compare with): Gaussian blur at several strengths, additive noise, classes dropped;
    Spearman over the degraded sets, and over everything together;
  - the floor: N real training images against the test split (should be near zero);
  - early vs late: the run's step 500 against its latest checkpoint, with the spread of each
    score over noise seeds (separated when the gap is many times the spread).
One thread (torch.set_num_threads(1)): a long benchmark may share the machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SSL_KEYS = ("fd_ssl", "kid_ssl", "precision_ssl", "recall_ssl")
CLF_KEYS = ("fd_clf", "kid_clf", "precision_clf", "recall_clf")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def degraded_sets(images: torch.Tensor, labels: torch.Tensor, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Real uint8 images made worse on purpose, each `n` images."""
    from torchvision.transforms.v2 import functional as TF

    g = torch.Generator().manual_seed(seed)
    base = images[torch.randperm(len(images), generator=g)[:n]]
    x = base.float()
    out = {"real (train)": base}
    for sigma in (0.5, 1.0, 1.5, 2.0):
        k = 2 * math.ceil(3 * sigma) + 1
        out[f"blur sigma {sigma}"] = TF.gaussian_blur(x, [k, k], [sigma, sigma]).round().clamp(0, 255).to(torch.uint8)
    for std in (8, 16, 32, 64):
        noisy = x + torch.randn(x.shape, generator=g) * std
        out[f"noise std {std}/255"] = noisy.round().clamp(0, 255).to(torch.uint8)
    for dropped in (1, 3, 5):
        keep = labels >= dropped  # drop classes 0..dropped-1
        pool = images[keep]
        out[f"{dropped} class{'es' if dropped > 1 else ''} dropped"] = pool[torch.randperm(len(pool), generator=g)[:n]]
    return out


def spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3:
        return None
    return float(spearmanr(a, b).statistic)


def measure(args: argparse.Namespace) -> dict:
    from dcgan.checkpoint import load_models
    from dcgan.config import load_config
    from dcgan.data import load_images
    from dcgan.metrics.evaluator import Evaluator
    from dcgan.models import build_models
    from dcgan.pixels import to_uint8
    from dcgan.sampling import generate, noise

    cfg = load_config(REPO / "configs" / "fashion_mnist.yaml", [f"data.root={args.data_root}"])
    data = cfg.data
    t0 = time.perf_counter()
    pr = (["pr_ssl"], ["pr_clf"]) if args.pr else ([], [])
    ssl = Evaluator(["fd_ssl", "kid_ssl", *pr[0]], data, split="test", num_samples=args.num, ssl_steps=args.ssl_steps,
                    kid_subsets=args.kid_subsets)
    encoder_seconds = time.perf_counter() - t0
    clf = Evaluator(["fd_clf", "kid_clf", *pr[1]], data, split="test", num_samples=args.num,
                    kid_subsets=args.kid_subsets)
    ssl.real("ssl")
    clf.real("classifier")

    def score(images: torch.Tensor) -> dict[str, float]:
        s, c = ssl.score_images(images), clf.score_images(images)
        return {k: round(float(v), 5) for k, v in {**s, **c}.items() if k in SSL_KEYS + CLF_KEYS}

    def samples(G: torch.nn.Module, seed: int) -> torch.Tensor:
        G.eval()
        z = noise(args.num, G.nz, cfg.model.z_dist, seed, "cpu")
        return to_uint8(generate(G, z)).cpu()

    train = load_images(data, "train")
    rows: dict[str, list] = {"degraded": [], "checkpoints": []}
    for name, images in degraded_sets(train.images, train.labels, args.num, args.seed).items():
        rows["degraded"].append({"set": name, **score(images)})
        log(f"{name}: {rows['degraded'][-1]}")

    run = Path(args.run).expanduser()
    files = sorted((run / "checkpoints").glob("step-*.pt"))
    if (run / "checkpoints" / "last.pt").is_file():
        files.append(run / "checkpoints" / "last.pt")
    torch.manual_seed(cfg.train.seed)
    G0, _ = build_models(cfg.model, data.image_size, data.channels)  # the untrained G (DCGAN init)
    gens: list[tuple[str, int, torch.nn.Module]] = [("untrained G", 0, G0)]
    seen = {0}
    for f in files:
        G, _, _, ck = load_models(f, "cpu")  # reads the file only
        step = int(ck.get("step", 0))
        if step not in seen:
            seen.add(step)
            gens.append((f.name, step, G))
    for name, step, G in gens:
        rows["checkpoints"].append({"checkpoint": name, "step": step, **score(samples(G, 0))})
        log(f"{name} (step {step}): {rows['checkpoints'][-1]}")

    # Early vs late: step 500 against the latest, each scored with several noise seeds.
    trained = [g for g in gens if g[1] > 0]
    early = next((g for g in trained if g[1] == 500), trained[0] if trained else None)
    late = trained[-1] if trained else None
    separation = {}
    if early is not None and late is not None and late[1] != early[1]:
        for label, (_, step, G) in (("early", early), ("late", late)):
            per_seed = [score(samples(G, s)) for s in range(args.seeds)]
            separation[label] = {"step": step, "per_seed": per_seed}
        for key in ("fd_ssl", "fd_clf", "kid_ssl", "kid_clf"):
            e = torch.tensor([r[key] for r in separation["early"]["per_seed"]])
            la = torch.tensor([r[key] for r in separation["late"]["per_seed"]])
            spread = float(torch.cat([e - e.mean(), la - la.mean()]).std()) if args.seeds > 1 else float("nan")
            separation[key] = {"early_mean": round(float(e.mean()), 4), "late_mean": round(float(la.mean()), 4),
                               "seed_std": round(spread, 4),
                               "gap_in_stds": round(float(e.mean() - la.mean()) / spread, 1) if spread > 0 else None}

    deg, ck = rows["degraded"], rows["checkpoints"]
    corr = {
        "checkpoints_fd": spearman([r["fd_ssl"] for r in ck], [r["fd_clf"] for r in ck]),
        "checkpoints_fd_trained_only": spearman([r["fd_ssl"] for r in ck if r["step"] > 0],
                                                [r["fd_clf"] for r in ck if r["step"] > 0]),
        "degraded_fd": spearman([r["fd_ssl"] for r in deg], [r["fd_clf"] for r in deg]),
        "degraded_kid": spearman([r["kid_ssl"] for r in deg], [r["kid_clf"] for r in deg]),
        "all_fd": spearman([r["fd_ssl"] for r in deg + ck], [r["fd_clf"] for r in deg + ck]),
    }
    return {
        "command": " ".join(["bench/validate_ssl.py", *sys.argv[1:]]),
        "commit": _commit(), "machine": f"{platform.machine()}, torch {torch.__version__}, 1 thread",
        "protocol": {"features_ssl": ssl.net_name("ssl"), "features_clf": clf.net_name("classifier"),
                     "clf_test_accuracy": clf.classifier.info["test_accuracy"],
                     "ssl_final_loss": ssl.encoder.info.get("final_loss"),
                     "ssl_train_seconds": ssl.encoder.info.get("train_seconds"),
                     "encoder_seconds_this_run": round(encoder_seconds, 1),
                     "kid_subsets": args.kid_subsets, "n_gen": args.num, "n_real": ssl.real("ssl").num, "split": "test",
                     "image_size": data.image_size, "run": str(args.run)},
        "spearman": corr, "separation": separation, **rows,
    }


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _f(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _families(rows: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """(fd_ssl, fd_clf) of each kind of degradation, each with the undegraded real set."""
    floor = [(r["fd_ssl"], r["fd_clf"]) for r in rows if r["set"] == "real (train)"]
    fams = {"blur": "blur", "noise": "noise", "classes dropped": "dropped"}
    return {name: floor + [(r["fd_ssl"], r["fd_clf"]) for r in rows if word in r["set"]] for name, word in fams.items()}


def render(res: dict) -> str:
    """The markdown tables of docs/evaluation.md from a results file."""
    p, c = res["protocol"], res["spearman"]
    out = [f"Protocol: {p['n_gen']} images per set against all {p['n_real']} real {p['split']} images, "
           f"{p['image_size']} px, KID over {p.get('kid_subsets', 100)} subsets of 1,000; encoder `{p['features_ssl']}` (final NT-Xent {p['ssl_final_loss']}), "
           f"classifier `{p['features_clf']}` (test accuracy {p['clf_test_accuracy']:.4f}); commit "
           f"`{res['commit']}`; `{res['command']}`.", "",
           ]
    has_pr = all("precision_ssl" in r for r in res["degraded"] + res["checkpoints"])
    if has_pr:
        out += ["| set | fd_ssl | kid_ssl | precision_ssl / recall_ssl | fd_clf | kid_clf | precision_clf / recall_clf |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    else:
        out += ["| set | fd_ssl | kid_ssl | fd_clf | kid_clf |", "| --- | ---: | ---: | ---: | ---: |"]

    def row(name: str, r: dict) -> str:
        pr_ssl = f" | {_f(r['precision_ssl'], 3)} / {_f(r['recall_ssl'], 3)}" if has_pr else ""
        pr_clf = f" | {_f(r['precision_clf'], 3)} / {_f(r['recall_clf'], 3)}" if has_pr else ""
        return (f"| {name} | {_f(r['fd_ssl'], 4)} | {_f(r['kid_ssl'], 4)}{pr_ssl} | {_f(r['fd_clf'])} | "
                f"{_f(r['kid_clf'], 3)}{pr_clf} |")

    out += [row(r["set"], r) for r in res["degraded"]]
    out += [row(f"{r['checkpoint']} (step {r['step']})", r) for r in res["checkpoints"]]
    out += ["", "| Spearman rank correlation, fd_ssl vs fd_clf | rho |", "| --- | ---: |",
            f"| the run's checkpoints (with the untrained G; {len(res['checkpoints'])} points) | "
            f"{_f(c['checkpoints_fd'], 3)} |",
            f"| the run's trained checkpoints only ({len(res['checkpoints']) - 1} points) | "
            f"{_f(c['checkpoints_fd_trained_only'], 3)} |",
            *[f"| {name}, with the real floor ({len(pts)} points) | {_f(spearman(*zip(*pts)), 3)} |"
              for name, pts in _families(res["degraded"]).items()],
            f"| all degraded real sets together ({len(res['degraded'])} points) | {_f(c['degraded_fd'], 3)} |",
            f"| degraded real sets, kid_ssl vs kid_clf | {_f(c['degraded_kid'], 3)} |",
            f"| everything above together | {_f(c['all_fd'], 3)} |"]
    sep = res.get("separation") or {}
    if sep:
        n = len(sep["early"]["per_seed"])
        out += ["", f"| early (step {sep['early']['step']}) vs late (step {sep['late']['step']}), {n} noise seeds | "
                    "early | late | spread over seeds (std) | gap / spread |", "| --- | ---: | ---: | ---: | ---: |"]
        for key in ("fd_ssl", "kid_ssl", "fd_clf", "kid_clf"):
            s = sep[key]
            out.append(f"| {key} | {_f(s['early_mean'], 4)} | {_f(s['late_mean'], 4)} | {_f(s['seed_std'], 4)} | "
                       f"{_f(s['gap_in_stds'], 0)} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--render", metavar="JSON", help="print the docs tables of a results file and exit")
    ap.add_argument("--run", default="~/.cache/dcgan/quality-runs/paper-s0", help="run whose checkpoints are scored")
    ap.add_argument("--data-root", default=str(REPO / "data"), help="where Fashion-MNIST is (default ./data)")
    ap.add_argument("--num", type=int, default=5000, help="images per scored set (default 5000)")
    ap.add_argument("--ssl-steps", type=int, default=1000, help="encoder training steps (default 1000)")
    ap.add_argument("--seeds", type=int, default=3, help="noise seeds for early vs late (default 3)")
    ap.add_argument("--pr", action="store_true", help="also precision/recall (slow on a shared CPU; default off)")
    ap.add_argument("--kid-subsets", type=int, default=20, help="KID subsets of 1,000 (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the degraded sets (default 0)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results-ssl.json"), help="results file")
    args = ap.parse_args()
    if args.render:
        print(render(json.loads(Path(args.render).read_text())))
        return 0
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t = time.perf_counter()
    res = measure(args)
    res["seconds"] = round(time.perf_counter() - t, 1)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(render(res))
    log(f"wrote {args.out} ({res['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
