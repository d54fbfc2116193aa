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

Not a test: run it on a quiet machine; `--threads` sets the torch threads of the training runs
(OMP_NUM_THREADS).

The issue's scale (100,000 and 1,000,000 images; a million distinct JPEGs would be about 16 GB
and a day to make and prepare on a small machine) is reached cheaply:

    python bench/bench_data.py --sizes 100000 1000000 --distinct 2000 --prepare-max 100000 \
        --batch-size 64 --steps 100 --work /root/dcgan-bench-data --out bench/results-data-scale.json

What is synthetic about it (recorded per size in the results: `distinct`, `prepare.tiled_from`):
  - `--distinct K`: a folder of N files holds K distinct JPEGs (made as above) and N - K hard links
    to them (file i -> file i mod K; ext4 allows 65,000 links per file), in the same sub-folders
    of 1,000. Listing, stat-ing, opening and decoding still happen once per name, so the folder's
    start-up, its per-file check and the decoding rates are those of N files; but the bytes read
    are K files' (hot in the page cache), so a streamed folder reads faster than N distinct files
    on a cold disk would. `prepare.jpeg_bytes` counts every name (what N such JPEGs take),
    `prepare.jpeg_bytes_on_disk` each file once.
  - `--prepare-max M`: `dcgan prepare` runs (timed) only for the sizes <= M. A larger size is made
    from the largest really prepared one by repeating its rows up to N, streamed in chunks into a
    new images.npy and finished by dcgan.prepare's own writer (`_finish`: the sha256 fingerprint
    of the arrays and dataset.json, so the loader and `dcgan prepare --verify` accept it). It has
    no prepare rate (`images_per_s`: null) and says `"tiled_from": M`. Training from it is
    training from a prepared folder of N rows: start-up reads dataset.json and the arrays' headers
    (the fingerprint is checked only by `dcgan prepare --verify`), and the memory after the steps
    depends on which rows are touched, not on what they hold.
Folders are kept and reused: a JPEG folder once finished (`.complete`; an interrupted build
continues where it stopped, `.building` says for which N and K), a tiled prepared folder while the
size it was tiled from has the same fingerprint (it is written as `<name>.partial` and renamed when
complete). The really prepared sizes are prepared again on every run: that is what is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


MAX_LINKS = 65_000  # hard links per inode that ext4 allows (the file itself counts as one)


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
    tmp = path.with_name(f".{path.name}.tmp")  # not an image name: a killed build leaves no half JPEG
    im.save(tmp, format="JPEG", quality=85)
    os.replace(tmp, path)
    return path.stat().st_size


def _image_path(folder: Path, i: int) -> Path:
    return folder / f"{i // 1000:04d}" / f"{i:07d}.jpg"


def folder_name(n: int, distinct: int | None) -> str:
    return f"jpeg-{n}" if distinct is None or distinct >= n else f"jpeg-{n}-distinct-{distinct}"


def make_folder(folder: Path, n: int, procs: int, distinct: int | None = None) -> dict:
    """n JPEG names in sub-folders of 1,000, of which the first k = min(distinct, n) are made with
    `_make_image` and the others are hard links to them (name i -> name i mod k). Made once per
    (n, k): `.complete` marks a finished folder; an unfinished one (`.building` holds its n and k)
    continues where it stopped, and a folder of another build is made again from scratch."""
    k = min(distinct or n, n)
    want = {"images": n, "distinct": k}
    done, building = folder / ".complete", folder / ".building"
    if done.is_file():
        info = json.loads(done.read_text())
        if info.get("images") == n and info.get("distinct", info.get("images")) == k:
            return {**info, "distinct": k, "reused": True}
    if folder.exists():
        try:
            same = json.loads(building.read_text()) == want
        except (OSError, ValueError):
            same = False
        if not same:  # finished for another n or k, or made by an older version of this script
            print(f"  {folder} is of another build; making it again", flush=True)
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    building.write_text(json.dumps(want))
    t0 = time.perf_counter()
    for sub in range(-(-n // 1000)):
        (folder / f"{sub:04d}").mkdir(exist_ok=True)
    jobs = [(_image_path(folder, i), i) for i in range(k) if not _image_path(folder, i).is_file()]
    if jobs:
        with Pool(procs) as pool:
            pool.map(_make_image, jobs, chunksize=64)
    made_s = time.perf_counter() - t0
    sizes = [_image_path(folder, i).stat().st_size for i in range(k)]
    for i in range(k, n):  # a link is made whole or not at all: an interrupted run's links stand
        try:
            os.link(_image_path(folder, i % k), _image_path(folder, i))
        except FileExistsError:
            pass
    info = {"images": n, "distinct": k, "bytes": int(sum(sizes) * (n // k) + sum(sizes[: n % k])),
            "distinct_bytes": int(sum(sizes)), "seconds": round(time.perf_counter() - t0, 1),
            "jpeg_seconds": round(made_s, 1), "jpegs_made": len(jobs)}
    done.write_text(json.dumps(info))
    building.unlink()
    return info


def du(path: Path) -> tuple[int, int]:
    """Bytes on disk (allocated blocks, so a sparse file counts what it holds), in one walk: counting
    every name (a file with several hard links counts several times), and counting each file once."""
    if not path.is_dir():
        size = path.stat().st_blocks * 512 if path.is_file() else 0
        return size, size
    every, once, seen = 0, 0, set()
    for folder, _, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(folder, name))
            if not stat.S_ISREG(st.st_mode):
                continue
            every += st.st_blocks * 512
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                once += st.st_blocks * 512
    return every, once


def jpeg_disk(folder: Path) -> dict[str, int]:
    every, once = du(folder)
    return {"jpeg_bytes": every, "jpeg_bytes_on_disk": once}


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
            "prepared_bytes": du(out)[0], **jpeg_disk(folder)}


def _tile_array(src: np.ndarray, path: Path, n: int, chunk_bytes: int = 64 * 2**20) -> None:
    """A .npy file of `n` rows: src's rows repeated (row i = src[i mod len(src)]), written a chunk at
    a time (never n rows in memory)."""
    row = int(np.prod(src.shape[1:], dtype=np.int64)) * src.dtype.itemsize
    step = max(1, chunk_bytes // max(row, 1))
    header = {"descr": np.lib.format.dtype_to_descr(src.dtype), "fortran_order": False, "shape": (n, *src.shape[1:])}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        i = 0
        while i < n:
            j = i % len(src)
            take = min(step, n - i, len(src) - j)
            f.write(np.ascontiguousarray(src[j:j + take]).tobytes())
            i += take
        f.flush()
        os.fsync(f.fileno())


def tile_prepared(small: Path, out: Path, n: int, folder: Path, command: str) -> dict:
    """A prepared folder of n images made from the prepared folder `small` by repeating its rows,
    finished by dcgan.prepare's own writer (fingerprint and dataset.json); kept while `small`'s
    fingerprint is the same. Built as <out>.partial and renamed, so `out` is complete or absent."""
    from dcgan.prepare import IMAGES, LABELS, MANIFEST, _finish, read_manifest

    sm = read_manifest(small)
    base = int(sm["count"])
    origin = {"path": os.path.realpath(small), "count": base, "fingerprint": sm["fingerprint"]}
    reused, t0 = False, time.perf_counter()
    try:
        m = read_manifest(out)
        reused = int(m["count"]) == n and m["source"].get("tiled_from") == origin
    except Exception:  # absent, unfinished or not this: made again
        m = None
    if not reused:
        if out.exists():
            shutil.rmtree(out)
        part = out.with_name(out.name + ".partial")
        if part.exists():
            shutil.rmtree(part)
        part.mkdir(parents=True)
        images = np.load(small / IMAGES, mmap_mode="r")
        need = n * images[0].nbytes + (8 * n if sm["labels"] else 0)
        if need > shutil.disk_usage(part).free:
            raise SystemExit(f"tiling {n} images into {part} needs {need / 1e9:.1f} GB; its disk has "
                             f"{shutil.disk_usage(part).free / 1e9:.1f} GB free")
        _tile_array(images, part / IMAGES, n)
        labelled = bool(sm["labels"])
        if labelled:
            _tile_array(np.load(small / LABELS, mmap_mode="r"), part / LABELS, n)
        del images
        state = {"key": {**sm["source"], "images": n, "tiled_from": origin},
                 "settings": {"image_size": sm["image_size"], "channels": sm["channels"]},
                 "next": n, "written": n, "skipped": 0, "first_failure": None,
                 "seconds": time.perf_counter() - t0}
        m = _finish(part, state, (n, *sm["shape"][1:]), labelled, command)
        os.rename(part, out)
        assert (out / MANIFEST).is_file()
    return {"images": n, "tiled_from": base, "tiled_from_fingerprint": sm["fingerprint"], "reused": reused,
            "tile_s": None if reused else round(time.perf_counter() - t0, 1),
            "wall_s": None, "decode_s": None, "images_per_s": None, "images_per_s_decoding": None,
            "fingerprint": m["fingerprint"], "prepared_bytes": du(out)[0], **jpeg_disk(folder)}


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
    ap.add_argument("--distinct", type=int, default=None, metavar="K",
                    help="distinct JPEGs per folder, the other names hard links to them (default: all distinct)")
    ap.add_argument("--prepare-max", type=int, default=None, metavar="M",
                    help="run `dcgan prepare` only for sizes <= M; larger sizes repeat the rows of the largest "
                         "of those (default: prepare every size)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dcgan-bench-data"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-data.json")
    args = ap.parse_args()
    if args.distinct is not None and args.distinct < 1:
        ap.error("--distinct must be at least 1")
    sizes = sorted(set(args.sizes))
    if args.prepare_max is not None and not any(n <= args.prepare_max for n in sizes):
        ap.error(f"--prepare-max {args.prepare_max}: no size is that small, so there is nothing to tile from")
    for n in sizes:
        k = min(args.distinct or n, n)
        if -(-n // k) > MAX_LINKS:
            ap.error(f"--distinct {k} gives {-(-n // k)} names per file for {n} images; ext4 allows {MAX_LINKS}: "
                     f"pass --distinct >= {-(-n // MAX_LINKS)}")
    procs = len(os.sched_getaffinity(0))
    results = {"machine": {"cpus": procs, "platform": platform.platform(), "python": platform.python_version(),
                           "load_avg_start": os.getloadavg()},
               "settings": {"image_size": args.image_size, "channels": 3, "batch_size": args.batch_size,
                            "steps": args.steps, "threads": args.threads, "distinct": args.distinct,
                            "prepare_max": args.prepare_max},
               "command": " ".join(["python", "bench/bench_data.py", *sys.argv[1:]]), "sizes": {}}
    really_prepared = None  # the largest size prepared by `dcgan prepare` so far (sizes go up)
    for n in sizes:
        folder = args.work / folder_name(n, args.distinct)
        prepared = args.work / f"prepared-{n}-{args.image_size}"
        k = min(args.distinct or n, n)
        print(f"[{n}] making {n} JPEG names ({k} distinct) in {folder}", flush=True)
        row = {"distinct": k, "jpegs": make_folder(folder, n, procs, args.distinct)}
        print(f"[{n}] jpegs: {row['jpegs']}", flush=True)
        if args.prepare_max is None or n <= args.prepare_max:
            print(f"[{n}] dcgan prepare", flush=True)
            row["prepare"] = run_prepare(folder, prepared, args.image_size, args.work)
            really_prepared = (n, prepared)
        else:
            print(f"[{n}] tiling the rows of the {really_prepared[0]}-image prepared folder", flush=True)
            row["prepare"] = tile_prepared(really_prepared[1], prepared, n, folder, results["command"])
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
