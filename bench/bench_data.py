"""Data-path benchmark: a prepared (memory-mapped) dataset against the plain image folder.

On a synthetic folder of JPEGs of varied sizes (about 256 px on the shorter side, like LSUN;
smooth random pictures, so the files compress like photographs) it measures at 64 px RGB:
  - `dcgan prepare`: images/s (all cores) and the disk the prepared folder takes (vs the JPEGs);
  - for each dataset size, for the prepared dataset and for the plain folder (streamed through
    DataLoader workers, the path a folder too big for the in-memory cache takes): the time from
    starting `dcgan train` to the end of its first step, the resident memory after 100 steps
    (anonymous memory, and file pages mapped from the prepared array, which are the kernel's
    reclaimable page cache), and the images/s of the training run (steps 10..110);
  - the images/s the data path delivers alone (dcgan.data.Batches, no training);
  - what the folder's start-up check used to cost (every file opened before the first step; now
    lazy for folders too big for the in-memory cache).

    python bench/bench_data.py --sizes 5000 20000 --work /tmp/dcgan-bench-data --out bench/results-data.json

The issue's scale is `--sizes 100000 1000000` (about 30 GB of JPEGs and 13 GB prepared for 1M;
hours on a small machine). Not a test: run it on a quiet machine; `--threads` sets the torch
threads of the training runs (OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def _make_image(args: tuple[Path, int]) -> int:
    path, seed = args
    rng = np.random.default_rng(seed)
    short = int(rng.integers(240, 273))
    long = int(short * rng.uniform(1.0, 1.6))
    w, h = (long, short) if rng.random() < 0.7 else (short, long)
    small = rng.integers(0, 256, (int(rng.integers(4, 12)), int(rng.integers(4, 12)), 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((w, h), Image.BICUBIC)
    noise = rng.normal(0, 6, (h, w, 3))
    im = Image.fromarray(np.clip(np.asarray(im, np.float32) + noise, 0, 255).astype(np.uint8))
    im.save(path, format="JPEG", quality=85)
    return path.stat().st_size


def make_folder(folder: Path, n: int, procs: int) -> dict:
    """n JPEGs in sub-folders of 1,000 (kept: made once per size)."""
    done = folder / ".complete"
    if done.is_file():
        return json.loads(done.read_text())
    t0 = time.perf_counter()
    jobs = []
    for i in range(n):
        sub = folder / f"{i // 1000:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        jobs.append((sub / f"{i:07d}.jpg", i))
    with Pool(procs) as pool:
        sizes = pool.map(_make_image, jobs, chunksize=64)
    info = {"images": n, "bytes": int(sum(sizes)), "seconds": round(time.perf_counter() - t0, 1)}
    done.write_text(json.dumps(info))
    return info


def du(path: Path) -> int:
    """Bytes on disk (allocated blocks, so a sparse file counts what it holds)."""
    total = 0
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if p.is_file():
            total += p.stat().st_blocks * 512
    return total


def env(threads: int) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("DCGAN_TEST_")}
    e.update(OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    return e


def run_prepare(folder: Path, out: Path, image_size: int, work: Path) -> dict:
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "dcgan", "prepare", "--out", str(out), "--no-progress",
           "--set", "data.name=folder", "--set", f"data.root={folder}", "--set", f"data.image_size={image_size}",
           "--set", "data.channels=3", "--set", f"data.cache_dir={work / 'cache'}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env(1), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    m = json.loads((out / "dataset.json").read_text())
    return {"images": m["count"], "wall_s": round(wall, 1), "decode_s": m["seconds"],
            "images_per_s": round(m["count"] / wall, 1), "images_per_s_decoding": m["images_per_second"],
            "prepared_bytes": du(out), "jpeg_bytes": du(folder)}


def _tree_memory(pid: int) -> dict[str, int]:
    """RssAnon / RssFile (kB -> bytes) of a process and its children (DataLoader workers)."""
    out = {"rss_anon": 0, "rss_file": 0, "processes": 0}
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            for line in status.splitlines():
                if line.startswith("RssAnon:"):
                    out["rss_anon"] += int(line.split()[1]) * 1024
                elif line.startswith("RssFile:"):
                    out["rss_file"] += int(line.split()[1]) * 1024
            out["processes"] += 1
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def run_train(data: dict, run_dir: Path, steps: int, batch: int, threads: int) -> dict:
    cfg = {"name": "bench", "data": data,
           "train": {"batch_size": batch, "max_steps": steps + 10, "log_every": 1, "sample_every": 10**6,
                     "checkpoint_every": 10**6, "progress": False, "device": "cpu", "precision": "fp32"},
           "eval": {"every": 0}}
    config = run_dir.with_suffix(".yaml")
    config.write_text(yaml.safe_dump(cfg))
    if run_dir.exists():
        shutil.rmtree(run_dir)
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "dcgan", "train", "--config", str(config), "--run-dir", str(run_dir)],
                            env=env(threads), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    memory, metrics = None, run_dir / "metrics.jsonl"
    while proc.poll() is None:
        time.sleep(0.2)
        if memory is None and metrics.is_file():
            steps_seen = [json.loads(ln) for ln in metrics.read_text().splitlines() if '"kind": "train"' in ln]
            if steps_seen and steps_seen[-1]["step"] >= steps:
                memory = _tree_memory(proc.pid)
    err = proc.stderr.read()
    if proc.returncode:
        raise SystemExit(err[-3000:])
    recs = [json.loads(ln) for ln in metrics.read_text().splitlines()]
    train = [r for r in recs if r.get("kind") == "train"]
    first = next(r for r in train if r["step"] >= 1)
    t10 = next(r for r in train if r["step"] >= 10)
    last = train[-1]
    ips = (last["step"] - t10["step"]) * batch / max(last["time"] - t10["time"], 1e-9)
    return {"first_step_s": round(first["time"] - t0, 1), "train_images_per_s": round(ips, 1),
            "memory_after_steps": memory, "steps": last["step"]}


def data_alone(data: dict, batch: int, seconds: float) -> dict:
    """Images/s of dcgan.data.Batches alone (no training), in this process, epoch 0 from the start."""
    import torch

    from dcgan.config import DataConfig
    from dcgan.data import Batches

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    b = Batches(DataConfig(**data), batch, 0, torch.device("cpu"))
    setup = time.perf_counter() - t0
    n, t0 = 0, time.perf_counter()
    for x in b.epoch(0):
        n += x.shape[0]
        if time.perf_counter() - t0 > seconds:
            break
    return {"setup_s": round(setup, 2), "images_per_s": round(n / (time.perf_counter() - t0), 1), "images": n,
            "workers": b.loader.num_workers if b.loader is not None else 0}


def startup_check(folder: Path) -> dict:
    """What the start-up check of every file (before this change, for every folder) costs."""
    from dcgan.data import ImageFiles

    t0 = time.perf_counter()
    files = ImageFiles(folder, check=False)
    listed = time.perf_counter() - t0
    t0 = time.perf_counter()
    ImageFiles(folder, check=True)
    return {"files": len(files), "listing_s": round(listed, 2), "open_every_file_s": round(time.perf_counter() - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000], help="images per dataset")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100, help="steps before the memory is read")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training runs")
    ap.add_argument("--alone-seconds", type=float, default=20.0, help="how long the data path runs alone")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dcgan-bench-data"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-data.json")
    args = ap.parse_args()
    procs = len(os.sched_getaffinity(0))
    results = {"machine": {"cpus": procs, "platform": platform.platform(), "python": platform.python_version(),
                           "load_avg_start": os.getloadavg()},
               "settings": {"image_size": args.image_size, "channels": 3, "batch_size": args.batch_size,
                            "steps": args.steps, "threads": args.threads},
               "command": " ".join(["python", "bench/bench_data.py", *sys.argv[1:]]), "sizes": {}}
    for n in args.sizes:
        folder, prepared = args.work / f"jpeg-{n}", args.work / f"prepared-{n}-{args.image_size}"
        print(f"[{n}] making {n} JPEGs in {folder}", flush=True)
        row = {"jpegs": make_folder(folder, n, procs)}
        print(f"[{n}] dcgan prepare", flush=True)
        row["prepare"] = run_prepare(folder, prepared, args.image_size, args.work)
        print(f"[{n}] prepare: {row['prepare']}", flush=True)
        common = {"image_size": args.image_size, "channels": 3, "cache_dir": str(args.work / "cache")}
        sources = {"prepared": {"name": "prepared", "root": str(prepared), **common},
                   "folder_streamed": {"name": "folder", "root": str(folder), "in_memory": "never", **common}}
        for name, data in sources.items():
            print(f"[{n}] {name}: data path alone", flush=True)
            alone = data_alone(data, args.batch_size, args.alone_seconds)
            print(f"[{n}] {name}: dcgan train", flush=True)
            trained = run_train(data, args.work / f"run-{name}-{n}", args.steps, args.batch_size, args.threads)
            row[name] = {"data_alone": alone, "train": trained}
            print(f"[{n}] {name}: {row[name]}", flush=True)
        row["folder_startup_check_before"] = startup_check(folder)
        print(f"[{n}] start-up check: {row['folder_startup_check_before']}", flush=True)
        results["sizes"][str(n)] = row
        results["machine"]["load_avg_end"] = os.getloadavg()
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
