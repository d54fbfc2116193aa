"""Training-throughput benchmark: images/s of the whole training step, against the roofline.

For each (image size, channels, batch size) it measures, on real Fashion-MNIST:
  - FLOPs per image of one training iteration (D on a real and a fake batch, G through D),
    counted with torch.utils.flop_counter;
  - the machine's fp32 (and bf16 on CUDA) matrix-multiply FLOP/s, the roofline;
  - images/s of the project's step (dcgan.gan.GANStep fed by dcgan.data.Batches), the
    fraction of the roofline that is, and the data path's own time per batch;
  - images/s of a plain loop in the style of pytorch/examples' dcgan/main.py (per-image PIL
    transforms in DataLoader workers, Sigmoid + BCELoss, D's weight gradients in G's step),
    the "before".
It prints a table and writes JSON. Not a test: run it on a quiet machine.

    python bench/bench_train.py --sizes 32 64 --batch-sizes 128 --out bench/results-cpu.json

`--contention` measures something else: the step's images/s on CPU for each thread setting
(PyTorch's default, the auto pick of dcgan.devices.pick_threads, 1 thread) first alone, then
while the script itself runs `--busy N` CPU-bound processes (a Python busy loop each) beside
it, as other programs sharing the machine would. Start it on an otherwise quiet machine.

    python bench/bench_train.py --contention --sizes 32 --channels 1 --out bench/results-contention.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dcgan.config import DataConfig, ModelConfig
from dcgan.data import Batches, build_source
from dcgan.gan import DPair, GANStep
from dcgan.models import build_models
from dcgan.pixels import to_model_range


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int = 2048, seconds: float = 3.0) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
        if device.type == "cuda" and reps % 50:
            continue
        sync(device)
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def conv_flops(device: torch.device, dtype: torch.dtype, seconds: float = 3.0) -> float:
    """FLOP/s of DCGAN's own layer type at a compute-bound size: a 4x4 stride-2 conv, 256 -> 512
    channels on 16x16 maps, batch 64, channels_last (oneDNN on CPU, cuDNN on CUDA). Stride 2
    rules out Winograd, so the FLOP count is the work done."""
    x = torch.randn(64, 256, 16, 16, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(256, 512, 4, 2, 1, bias=False).to(device, dtype, memory_format=torch.channels_last)
    with torch.no_grad():
        for _ in range(2):
            conv(x)
        sync(device)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            conv(x)
            reps += 1
        sync(device)
    return 2 * 64 * 256 * 512 * 16 * 8 * 8 * reps / (time.perf_counter() - t0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_step(size: int, channels: int, batch: int, device: torch.device, precision: str,
              channels_last: bool, compile_: bool):
    torch.manual_seed(0)
    G, D = build_models(ModelConfig(), size, channels)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    G.to(device, memory_format=fmt)
    D.to(device, memory_format=fmt)
    kw = {"fused": True} if device.type == "cuda" else {"foreach": True}
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), **kw)
    opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), **kw)
    G_train, D_pair = G, DPair(D)
    if compile_:
        G_train, D_pair = torch.compile(G_train), torch.compile(D_pair)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = partial(torch.autocast, device_type=device.type, dtype=dtype) if dtype else nullcontext
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    step = GANStep(G_train=G_train, D_pair=D_pair, D=D, opt_G=opt_G, opt_D=opt_D, nz=100, z_dist="uniform",
                   autocast=autocast, scaler=scaler,
                   to_input=lambda x: to_model_range(x).contiguous(memory_format=fmt))
    return step


def data_cfg(root: str, size: int, channels: int, cache: str) -> DataConfig:
    return DataConfig(name="fashion_mnist", root=root, image_size=size, channels=channels, download=False,
                      cache_dir=cache)


def count_flops(size: int, channels: int, batch: int) -> float:
    """FLOPs per image of one iteration, counted on CPU (the count does not depend on the device)."""
    step = make_step(size, channels, batch, torch.device("cpu"), "fp32", False, False)
    fake = iter([torch.randint(0, 256, (batch, channels, size, size), dtype=torch.uint8)])
    with FlopCounterMode(display=False) as counter:
        step(fake, torch.Generator().manual_seed(0))
    return counter.get_total_flops() / batch


def time_ours(cfg: DataConfig, batch: int, device: torch.device, steps: int, warmup: int, **opts) -> dict:
    batches = Batches(cfg, batch, seed=0, device=device)
    step = make_step(cfg.image_size, cfg.channels, batch, device, **opts)

    def stream():
        e = 0
        while True:
            yield from batches.epoch(e)
            e += 1

    it = stream()
    gen = torch.Generator(device=device)
    for i in range(warmup):
        gen.manual_seed(i)
        step(it, gen)
    sync(device)
    t0 = time.perf_counter()
    stats = []
    for i in range(steps):
        gen.manual_seed(i)
        stats.append(step(it, gen))
    torch.stack(stats).cpu()
    sync(device)
    dt = time.perf_counter() - t0
    # The data path alone: gather + transfer + scale, per batch.
    t1 = time.perf_counter()
    n = 0
    for x in batches.epoch(0):
        to_model_range(x)
        n += 1
        if n == steps:
            break
    sync(device)
    return {"images_per_s": steps * batch / dt, "data_ms_per_batch": 1000 * (time.perf_counter() - t1) / n}


def time_plain(cfg: DataConfig, batch: int, device: torch.device, steps: int, warmup: int, workers: int) -> dict:
    """The pytorch/examples dcgan/main.py pattern: PIL transforms in workers, Sigmoid + BCELoss."""
    from torchvision import transforms

    from dcgan.data import image_transform

    base = image_transform(cfg.image_size, cfg.channels)
    tf = transforms.Compose([base, transforms.Lambda(lambda t: t.float().div(255)),
                             transforms.Normalize([0.5] * cfg.channels, [0.5] * cfg.channels)])
    source = build_source(cfg)
    source.transform = tf
    loader = torch.utils.data.DataLoader(source, batch_size=batch, shuffle=True, num_workers=workers,
                                         drop_last=True)
    torch.manual_seed(0)
    G, D = build_models(ModelConfig(), cfg.image_size, cfg.channels)
    G.to(device)
    D = nn.Sequential(D, nn.Sigmoid()).to(device)
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCELoss()
    t0, done = None, 0
    for i, (x, _) in enumerate(loader):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        x = x.to(device)
        D.zero_grad()
        err_real = bce(D(x), torch.ones(batch, device=device))
        err_real.backward()
        z = torch.randn(batch, 100, device=device)
        fake = G(z)
        err_fake = bce(D(fake.detach()), torch.zeros(batch, device=device))
        err_fake.backward()
        opt_D.step()
        G.zero_grad()
        err_g = bce(D(fake), torch.ones(batch, device=device))
        err_g.backward()
        opt_G.step()
        err_g.item()  # main.py prints every step: a host sync per step
        if i >= warmup:
            done += 1
        if done == steps:
            break
    sync(device)
    return {"images_per_s": steps * batch / (time.perf_counter() - t0)}


BUSY_LOOP = "while True: pass"


def start_busy(n: int) -> list[subprocess.Popen]:
    """`n` CPU-bound processes (one core each), like other programs sharing the machine."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(n)]
    time.sleep(0.5)  # let them get scheduled before timing
    return procs


def stop_busy(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait()


def contention(args: argparse.Namespace) -> None:
    """Images/s per thread setting, alone and beside `args.busy` busy-loop processes."""
    from dcgan.devices import pick_threads, usable_cpus

    device = torch.device("cpu")
    default = torch.get_num_threads()  # PyTorch's own pick (OMP_NUM_THREADS if set, else the cores)
    auto = pick_threads(0)
    settings = {"default": default, "auto": auto.used, "1": 1}
    labels = [label for label in args.threads if label in settings]
    machine = {"device": platform.processor() or platform.machine(),
               "cpu_capability": torch.backends.cpu.get_cpu_capability(), "date": str(datetime.date.today()),
               "cpus": os.cpu_count(),
               "usable_cpus": usable_cpus()[0], "default_threads": default, "auto_threads": auto.used,
               "auto_why": auto.why, "busy_processes": args.busy, "torch": torch.__version__,
               "python": platform.python_version(), "loadavg_before": os.getloadavg()}
    print(json.dumps(machine))
    rows = []
    for size in args.sizes:
        for ch in args.channels:
            cfg = data_cfg(args.root, size, ch, args.cache_dir)
            for batch in args.batch_sizes:
                for busy in (0, args.busy):
                    for label in labels:
                        torch.set_num_threads(settings[label])
                        procs = start_busy(busy) if busy else []
                        try:
                            r = time_ours(cfg, batch, device, args.steps, args.warmup, precision=args.precision[0],
                                          channels_last=True, compile_=False)
                        finally:
                            stop_busy(procs)
                        rows.append({"size": size, "channels": ch, "batch": batch, "precision": args.precision[0],
                                     "threads": label, "num_threads": settings[label], "busy_processes": busy,
                                     "images_per_s": r["images_per_s"]})
                        print(rows[-1])
    torch.set_num_threads(default)
    machine["loadavg_after"] = os.getloadavg()
    print(f"\n{'size':>4} {'ch':>2} {'batch':>5} {'threads':>12} {'busy':>4} {'img/s':>8}")
    for r in rows:
        print(f"{r['size']:>4} {r['channels']:>2} {r['batch']:>5} {r['threads'] + ' (' + str(r['num_threads']) + ')':>12} "
              f"{r['busy_processes']:>4} {r['images_per_s']:>8.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "args": vars(args), "rows": rows}, indent=1))
    print(f"wrote {args.out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--channels", type=int, nargs="+", default=[3])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", nargs="+", default=["fp32"], help="fp32 bf16 fp16")
    p.add_argument("--channels-last", choices=["auto", "true", "false", "both"], default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--no-plain", action="store_true", help="skip the pytorch/examples-style baseline")
    p.add_argument("--plain-workers", type=int, default=2)
    p.add_argument("--root", default="./data")
    p.add_argument("--cache-dir", default="~/.cache/dcgan")
    p.add_argument("--out", default="bench/results.json")
    p.add_argument("--contention", action="store_true",
                   help="thread settings alone and beside --busy CPU-bound processes (CPU only; no roofline, "
                        "no plain loop)")
    p.add_argument("--busy", type=int, default=1, help="with --contention: busy-loop processes to start (default 1)")
    p.add_argument("--threads", nargs="+", default=["default", "auto", "1"],
                   help="with --contention: thread settings to time: default (PyTorch's), auto (dcgan's), 1")
    args = p.parse_args()
    if args.contention:
        contention(args)
        return

    device = torch.device(args.device)
    # The roofline: the best FLOP/s of a large matmul or of DCGAN's own conv layer on this machine
    # (on some CPUs BLAS sgemm is far slower than oneDNN's convolutions, so the matmul understates it).
    # Each is the best of 3 one-second rounds, measured again after the runs (the max is kept):
    # a shared or frequency-scaling machine gives different figures from moment to moment.
    dtypes = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if device.type == "cuda" else {})}

    def measure_peaks(mm: dict, cv: dict) -> None:
        for k, dt in dtypes.items():
            mm[k] = max([mm.get(k, 0.0)] + [matmul_flops(device, dt, seconds=1.0) for _ in range(3)])
            cv[k] = max([cv.get(k, 0.0)] + [conv_flops(device, dt, seconds=1.0) for _ in range(3)])

    mm: dict[str, float] = {}
    cv: dict[str, float] = {}
    measure_peaks(mm, cv)
    peak = {k: max(mm[k], cv[k]) for k in mm}
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    cl_opts = {"auto": [device.type in ("cuda", "cpu")], "true": [True], "false": [False], "both": [False, True]}
    machine = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "cpus": len(os.sched_getaffinity(0)), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(),
        "matmul_tflops": {k: round(v / 1e12, 3) for k, v in mm.items()},
        "conv_tflops": {k: round(v / 1e12, 3) for k, v in cv.items()},
        "roofline_tflops": {k: round(v / 1e12, 3) for k, v in peak.items()},
    }
    print(json.dumps(machine))
    rows = []
    for size in args.sizes:
        for ch in args.channels:
            cfg = data_cfg(args.root, size, ch, args.cache_dir)
            for batch in args.batch_sizes:
                flops = count_flops(size, ch, batch)
                if not args.no_plain:
                    r = time_plain(cfg, batch, device, args.steps, args.warmup, args.plain_workers)
                    rows.append({"impl": f"plain (examples-style, {args.plain_workers} workers)", "size": size,
                                 "channels": ch, "batch": batch, "precision": "fp32", "channels_last": False,
                                 "gflop_per_image": flops / 1e9, **r,
                                 "roofline_fraction": r["images_per_s"] * flops / peak["fp32"]})
                    print(rows[-1])
                for prec in args.precision:
                    for cl in cl_opts[args.channels_last]:
                        r = time_ours(cfg, batch, device, args.steps, args.warmup, precision=prec,
                                      channels_last=cl, compile_=args.compile)
                        roof = peak.get(prec, peak["fp32"])
                        rows.append({"impl": "dcgan" + (" +compile" if args.compile else ""), "size": size,
                                     "channels": ch, "batch": batch, "precision": prec, "channels_last": cl,
                                     "gflop_per_image": flops / 1e9, **r,
                                     "roofline_fraction": r["images_per_s"] * flops / roof})
                        print(rows[-1])
    measure_peaks(mm, cv)  # again, after the runs; fractions use the best seen
    peak = {k: max(mm[k], cv[k]) for k in mm}
    for r in rows:
        r["roofline_fraction"] = r["images_per_s"] * r["gflop_per_image"] * 1e9 / peak.get(r["precision"], peak["fp32"])
    machine.update(matmul_tflops={k: round(v / 1e12, 3) for k, v in mm.items()},
                   conv_tflops={k: round(v / 1e12, 3) for k, v in cv.items()},
                   roofline_tflops={k: round(v / 1e12, 3) for k, v in peak.items()})
    print(json.dumps(machine))
    print(f"\n{'impl':38} {'size':>4} {'ch':>2} {'batch':>5} {'prec':>5} {'cl':>3} {'GFLOP/img':>9} "
          f"{'img/s':>8} {'roofline':>8} {'data ms':>7}")
    for r in rows:
        print(f"{r['impl']:38} {r['size']:>4} {r['channels']:>2} {r['batch']:>5} {r['precision']:>5} "
              f"{'y' if r['channels_last'] else 'n':>3} {r['gflop_per_image']:>9.3f} {r['images_per_s']:>8.1f} "
              f"{100 * r['roofline_fraction']:>7.1f}% {r.get('data_ms_per_batch', float('nan')):>7.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "args": vars(args), "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
