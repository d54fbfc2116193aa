"""Bounded loopback load test of `dcgan serve`: latency of a 64-sample grid at 32 and 64 px.

For each image size, a random-weight G of the paper's width (nz=100, ngf=64; generation costs
the same with trained weights) is exported to a temporary folder and served by `dcgan serve`
in a subprocess on 127.0.0.1 and a free port. Then, with distinct seeds (nothing is cached):
a few warm-up requests, `--sequential` requests one at a time (the latency a user sees), and
`--requests` requests from `--concurrency` clients at once (the queue under load). It stops by
itself, counts every non-200 answer as an error, and never talks to anything but loopback.

    .venv/bin/python bench/bench_serve.py --out bench/results-serve.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]


def make_export(folder: Path, size: int, channels: int) -> Path:
    """A random-weight G/D of the paper's width as a checkpoint, exported with `dcgan export`."""
    import torch

    from dcgan.checkpoint import save_checkpoint
    from dcgan.config import from_dict
    from dcgan.models import build_models
    from dcgan.share.export import export_model

    cfg = from_dict({"name": f"bench{size}", "data": {"name": "folder", "image_size": size, "channels": channels}})
    torch.manual_seed(0)
    G, D = build_models(cfg.model, size, channels)
    ckpt = save_checkpoint({"G": G.state_dict(), "D": D.state_dict(), "config": cfg.to_dict(), "step": 0},
                           folder / f"ckpt{size}" / "checkpoints" / "last.pt")
    return export_model(ckpt, folder / f"export{size}")


def start_server(export: Path, threads: int | None) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.Popen([sys.executable, "-m", "dcgan", "serve", "--checkpoint", str(export), "--port", "0",
                             "--device", "cpu"], stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 180
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if m:
            return proc, int(m.group(1))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("the server did not start")


def get(port: int, path: str) -> tuple[int, float]:
    """One request on its own connection: (status, seconds)."""
    t = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        return r.status, time.perf_counter() - t
    finally:
        conn.close()


def phase(port: int, n: int, seeds: range, concurrency: int) -> dict:
    paths = [f"/api/sample?seed={s}&n={n}" for s in seeds]
    t = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda p: get(port, p), paths))
    wall = time.perf_counter() - t
    ok = [dt for status, dt in results if status == 200]
    return {"requests": len(paths), "concurrency": concurrency, "errors": len(paths) - len(ok),
            "p50_ms": round(1000 * statistics.median(ok), 1), "p99_ms": round(1000 * percentile(ok, 99), 1),
            "max_ms": round(1000 * max(ok), 1), "throughput_rps": round(len(ok) / wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="32,64", help="image sizes (default 32,64)")
    ap.add_argument("--channels", type=int, default=3, help="image channels (default 3)")
    ap.add_argument("--n", type=int, default=64, help="samples per grid (default 64)")
    ap.add_argument("--sequential", type=int, default=60, help="one-at-a-time requests (default 60)")
    ap.add_argument("--requests", type=int, default=320, help="requests under load (default 320)")
    ap.add_argument("--concurrency", type=int, default=16, help="clients under load (default 16)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads in the server (default 0: torch's)")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()

    results = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
               "python": platform.python_version(), "load_before": os.getloadavg(), "n": args.n,
               "threads": args.threads, "concurrency": args.concurrency,
               "command": "python bench/bench_serve.py " + " ".join(sys.argv[1:]), "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            export = make_export(Path(tmp), size, args.channels)
            proc, port = start_server(export, args.threads)
            try:
                for s in range(5):  # warm-up: first-call allocations, thread pools
                    get(port, f"/api/sample?seed={10**6 + s}&n={args.n}")
                seq = phase(port, args.n, range(args.sequential), 1)
                load = phase(port, args.n, range(1000, 1000 + args.requests), args.concurrency)
            finally:
                proc.terminate()
                proc.wait(30)
            results["sizes"][size] = {"sequential": seq, "load": load}
            print(f"{size} px, {args.n} samples: one at a time p50 {seq['p50_ms']} ms, p99 {seq['p99_ms']} ms; "
                  f"{args.concurrency} at a time p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, "
                  f"{load['throughput_rps']} grids/s, {seq['errors'] + load['errors']} errors", flush=True)
    results["load_after"] = os.getloadavg()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
