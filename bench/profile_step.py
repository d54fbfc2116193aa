"""Profile the training step with torch.profiler: where the time of one iteration goes.

Builds the training step exactly as `dcgan train` does (`dcgan.loop.build_state` and
`build_step` on configs/fashion_mnist.yaml: the paper's networks and recipe, real Fashion-MNIST,
fp32, channels_last, batch 128), times `--steps` iterations after `--warmup`, profiles as many
again, and writes to JSON the top operators by self CPU time, the step's images/s, and two
ceilings measured in the same run (before and after the steps, the best of each kept):
- the oneDNN conv peak: forward FLOP/s of DCGAN's own layer at a compute-bound size (a 4x4
  stride-2 conv 256 -> 512 on 16x16 maps, batch 64, channels_last), as `bench_train.py`;
- the training conv peak: the same layer's forward plus backward (input and weight gradients),
  the most a training step made of such convs could reach.
`--adam fused` times the step with PyTorch's fused CPU Adam instead of the default foreach one.

    .venv/bin/python bench/profile_step.py --sizes 64 32 --channels 3 1 --out bench/results-profile.json

Run it on a quiet machine; the figures are ratios within one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile


def _sibling(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def stream(batches):
    epoch = 0
    while True:
        yield from batches.epoch(epoch)
        epoch += 1


def train_conv_flops(seconds: float = 3.0) -> float:
    """FLOP/s of the peak layer's forward and backward (input and weight gradients: 3x the forward)."""
    from torch import nn

    x = torch.randn(64, 256, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    conv = nn.Conv2d(256, 512, 4, 2, 1, bias=False).to(memory_format=torch.channels_last)
    for _ in range(2):
        conv(x).sum().backward()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        conv(x).sum().backward()
        reps += 1
    return 3 * 2 * 64 * 256 * 512 * 16 * 8 * 8 * reps / (time.perf_counter() - t0)


def build(size: int, channels: int, batch: int, adam: str):
    """The step `dcgan train` runs for configs/fashion_mnist.yaml at this size (fp32, CPU)."""
    from dcgan.config import load_config
    from dcgan.data import Batches
    from dcgan.loop import build_state, build_step

    cpu = torch.device("cpu")
    cfg = load_config(Path(__file__).parents[1] / "configs/fashion_mnist.yaml", [
        f"data.image_size={size}", f"data.channels={channels}", f"train.batch_size={batch}",
        "train.device=cpu", "train.precision=fp32", "train.threads=0"])
    torch.manual_seed(0)
    state = build_state(cfg, cpu)
    if adam == "fused":
        for opt in (state.opt_G, state.opt_D):
            for group in opt.param_groups:
                group.update(foreach=False, fused=True)
    return Batches(cfg.data, batch, 0, cpu), build_step(cfg, state, cpu)


def profile_one(bt, size: int, channels: int, batch: int, steps: int, warmup: int, top: int, adam: str) -> dict:
    batches, step = build(size, channels, batch, adam)
    it, gen = stream(batches), torch.Generator().manual_seed(0)
    for i in range(warmup):
        step(it, gen, i).tolist()
    t0 = time.perf_counter()
    for i in range(steps):
        step(it, gen, i).tolist()
    img_s = steps * batch / (time.perf_counter() - t0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(it, gen, i).tolist()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "size": size, "channels": channels, "batch": batch, "adam": adam, "images_per_s": round(img_s, 1),
        "gflop_per_image": round(bt.count_flops(size, channels, batch) / 1e9, 3),
        "top": [{"op": e.key, "self_ms_per_step": round(e.self_cpu_time_total / 1000 / steps, 2),
                 "share": round(e.self_cpu_time_total / total, 4), "calls_per_step": e.count // steps}
                for e in rows],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 32])
    ap.add_argument("--channels", type=int, nargs="+", default=[3, 1], help="one per size")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--adam", choices=("foreach", "fused"), nargs="+", default=["foreach"],
                    help="Adam implementations to time (default foreach: what dcgan train uses on CPU)")
    ap.add_argument("--tag", default="", help="a name for this code state (e.g. before / after)")
    ap.add_argument("--out", default="bench/results-profile.json")
    args = ap.parse_args()
    bt = _sibling("bench_train")
    cpu = torch.device("cpu")
    peaks, train_peaks = [bt.conv_flops(cpu, torch.float32)], [train_conv_flops()]
    runs = [profile_one(bt, s, c, args.batch, args.steps, args.warmup, args.top, adam)
            for s, c in zip(args.sizes, args.channels) for adam in args.adam]
    peaks.append(bt.conv_flops(cpu, torch.float32))
    train_peaks.append(train_conv_flops())
    peak, train_peak = max(peaks), max(train_peaks)
    for r in runs:
        flops = r["images_per_s"] * r["gflop_per_image"] * 1e9
        r["conv_peak_fraction"] = round(flops / peak, 4)
        r["train_peak_fraction"] = round(flops / train_peak, 4)
        print(f"{r['size']}px x{r['channels']} ({r['adam']} Adam): {r['images_per_s']} img/s, "
              f"{100 * r['conv_peak_fraction']:.1f}% of the conv peak ({peak / 1e9:.0f} GFLOP/s), "
              f"{100 * r['train_peak_fraction']:.1f}% of the training conv peak ({train_peak / 1e9:.0f} GFLOP/s)")
        for e in r["top"]:
            print(f"  {e['self_ms_per_step']:9.2f} ms {100 * e['share']:5.1f}%  x{e['calls_per_step']:<4} {e['op']}")
    result = {"tag": args.tag, "date": str(date.today()), "torch": torch.__version__,
              "machine": (f"{platform.machine()} CPU ({cpu_model()}, torch CPU capability "
                          f"{torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} cores, "
                          f"{torch.get_num_threads()} threads"),
              "conv_peak_gflops": round(peak / 1e9, 1), "conv_peaks_gflops": [round(p / 1e9, 1) for p in peaks],
              "train_peak_gflops": round(train_peak / 1e9, 1),
              "train_peaks_gflops": [round(p / 1e9, 1) for p in train_peaks],
              "steps": args.steps, "warmup": args.warmup, "runs": runs}
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
