"""Render the docs' tables of numbers from the committed results files.

Each table lives in a doc between `<!-- NAME:begin -->` and `<!-- NAME:end -->` and is rendered
here from one committed results file, with the command that produced that file written under
it. `tests/test_docs_results.py` re-renders every table and fails when a doc differs.

    .venv/bin/python bench/render_docs.py            # rewrite every table in place
    .venv/bin/python bench/render_docs.py --check    # exit 1 if a doc differs from its results
    .venv/bin/python bench/render_docs.py --print bench-cpu   # one table, to stdout

Adding a table: write a render function (results dict -> markdown) and one `Table` in TABLES.
docs/quality.md has its own renderer (`bench/quality.py --report`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def begin(name: str) -> str:
    return f"<!-- {name}:begin -->"


def end(name: str) -> str:
    return f"<!-- {name}:end -->"


def _load_bench(name: str):
    """A sibling script as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(path: Path):
    """A results file: JSON, or JSON lines (a run's metrics.jsonl) as a list of records."""
    text = path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" else json.loads(text)


def _num(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


# --- BENCHMARKS.md: training throughput (bench_train.py) ----------------------------------------------


def render_throughput(res: dict) -> str:
    """The CPU throughput table: the plain (examples-style) loop against dcgan's step, per size."""
    m = res["machine"]
    roof, mm = m["roofline_tflops"]["fp32"] * 1000, m["matmul_tflops"]["fp32"] * 1000  # GFLOP/s
    rows = res["rows"]
    out = [f"| size | ch | GFLOP/img | plain (examples-style) img/s | dcgan img/s | speed-up | "
           f"dcgan, % of roofline ({roof:.0f}) | % of matmul ({mm:.0f}) | data ms/batch |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["impl"] != "dcgan":
            continue
        plain = next((p for p in rows if p["impl"].startswith("plain") and (p["size"], p["channels"], p["batch"])
                      == (r["size"], r["channels"], r["batch"])), None)
        ips, gflop = r["images_per_s"], r["gflop_per_image"]
        speedup = f"{ips / plain['images_per_s']:.2f}x" if plain else "-"
        out.append(f"| {r['size']} | {r['channels']} | {gflop:.3f} | "
                   f"{_num(plain['images_per_s']) if plain else '-'} | **{_num(ips)}** | {speedup} | "
                   f"{100 * r['roofline_fraction']:.1f}% | {100 * ips * gflop / mm:.0f}% | "
                   f"{r['data_ms_per_batch']:.2f} |")
    return "\n".join(out)


def render_compile(eager: dict, compiled: dict) -> str:
    """Eager against `--compile`, per size (two bench_train.py results files of the same settings)."""
    out = ["| size | eager img/s | `--compile` img/s | compiled / eager |", "|---:|---:|---:|---:|"]
    for c in compiled["rows"]:
        e = next(r for r in eager["rows"] if r["impl"] == "dcgan" and (r["size"], r["channels"], r["batch"])
                 == (c["size"], c["channels"], c["batch"]))
        out.append(f"| {c['size']} | {_num(e['images_per_s'])} | {_num(c['images_per_s'])} | "
                   f"{c['images_per_s'] / e['images_per_s']:.2f}x |")
    return "\n".join(out)


def render_channels_last(res: dict) -> str:
    """dcgan's step in contiguous (NCHW) against channels_last memory, per size (`--channels-last both`)."""
    out = ["| size | ch | dcgan, contiguous (NCHW) img/s | dcgan, channels_last img/s |", "|---:|---:|---:|---:|"]
    rows = [r for r in res["rows"] if r["impl"] == "dcgan"]
    for key in dict.fromkeys((r["size"], r["channels"], r["batch"]) for r in rows):
        ips = {r["channels_last"]: r["images_per_s"] for r in rows if (r["size"], r["channels"], r["batch"]) == key}
        out.append(f"| {key[0]} | {key[1]} | {_num(ips[False])} | {_num(ips[True])} |")
    return "\n".join(out)


# --- BENCHMARKS.md: the data path (bench_data.py) -----------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def render_data(res: dict) -> str:
    """Prepared dataset against a streamed image folder, one table per measured size."""
    s = res["settings"]
    out = []
    for size, r in res["sizes"].items():
        pre, p, f = r["prepare"], r["prepared"], r["folder_streamed"]
        mem = [x["train"]["memory_after_steps"] for x in (p, f)]
        check = r["folder_startup_check_before"]
        distinct = r.get("distinct", int(size))
        linked = f" ({distinct:,} distinct JPEGs, the other names hard links)" if distinct < int(size) else ""
        rate = (f"- (not prepared: the {pre['tiled_from']:,}-image prepared rows, repeated)" if pre.get("tiled_from")
                else f"{pre['images_per_s']} / {pre['images_per_s_decoding']}")
        jpeg_note = (f" ({_mb(pre['jpeg_bytes_on_disk'])} on disk with the links)"
                     if pre.get("jpeg_bytes_on_disk", pre["jpeg_bytes"]) != pre["jpeg_bytes"] else "")
        out += [
            f"| {int(size):,} images{linked}, {s['image_size']} px {'RGB' if s['channels'] == 3 else 'grey'} | "
            f"prepared | folder, streamed (\"before\") |",
            "|---|---|---|",
            f"| prepare: images/s (wall, with start-up / decoding only) | {rate} | - |",
            f"| disk | {_mb(pre['prepared_bytes'])} (`images.npy`) vs {_mb(pre['jpeg_bytes'])} of JPEGs{jpeg_note} | "
            f"{_mb(pre['jpeg_bytes'])} |",
            f"| data path alone, images/s | {_num(p['data_alone']['images_per_s'], 0)} "
            f"({p['data_alone']['workers']} workers) | {_num(f['data_alone']['images_per_s'], 0)} "
            f"({f['data_alone']['workers']} workers) |",
            f"| data path alone / what the training step consumes | "
            f"{p['data_alone']['images_per_s'] / p['train']['train_images_per_s']:,.0f}x | "
            f"{f['data_alone']['images_per_s'] / f['train']['train_images_per_s']:,.0f}x |",
            f"| `dcgan train`: start to end of first step | {p['train']['first_step_s']} s | "
            f"{f['train']['first_step_s']} s |",
            f"| `dcgan train`: images/s (batch {s['batch_size']}) | {p['train']['train_images_per_s']} | "
            f"{f['train']['train_images_per_s']} |",
            f"| memory after {p['train']['steps']} steps: RssAnon / RssFile | {mem[0]['rss_anon'] / 1e6:.0f} / "
            f"{mem[0]['rss_file'] / 1e6:.0f} MB | {mem[1]['rss_anon'] / 1e6:.0f} / {mem[1]['rss_file'] / 1e6:.0f} MB |",
            f"| start-up check that a streamed folder no longer does | - | {check['open_every_file_s']} s to open "
            f"all {check['files']:,} files (listing: {check['listing_s']} s) |",
            "",
        ]
    load = res["machine"]
    out.append(f"Load average (1 min) at the start / end: {load['load_avg_start'][0]:.1f} / "
               f"{load['load_avg_end'][0]:.1f} on {load['cpus']} CPUs.")
    return "\n".join(out)


# --- README.md and docs/paper.md: D's features against the baselines (dcgan paper report) ------------

METHODS = (("dcgan", "trained D"), ("pixels", "raw pixels"), ("kmeans", "K-means"), ("random_d", "same D, random init"))


def render_paper_features(res: dict) -> str:
    """Test accuracy of the linear SVM on each method's features, full and few labels (§5.1)."""
    feats = res["features"]
    rows = {(r["method"], r["mode"]): r for r in feats["rows"]}
    dims = {m: next(r["dims"] for r in feats["rows"] if r["method"] == m) for m, _ in METHODS}
    out = ["| test accuracy | " + " | ".join(f"{label} ({dims[m]} dims)" for m, label in METHODS) + " |",
           "|---|" + "---:|" * len(METHODS)]
    for mode in ("full", "few"):
        first = rows[(METHODS[0][0], mode)]
        label = (f"{first['num_labels']:,} labels" if mode == "full"
                 else f"{first['num_labels']:,} labels ({feats['options']['draws']} draws)")
        cells = []
        for m, _ in METHODS:
            r = rows[(m, mode)]
            cell = f"{100 * r['accuracy']:.2f}%" + (f" +- {100 * r['std']:.2f}" if mode == "few" else "")
            cells.append(f"**{cell}**" if m == "dcgan" else cell)
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


# --- docs/evaluation.md: the self-supervised encoder against the classifier (validate_ssl.py) ----------


def render_ssl(res: dict) -> str:
    return _load_bench("validate_ssl").render(res)


# --- docs/reliability.md: the hostile pass (hostile_pass.py) -----------------------------------------


def render_hostile(res: dict) -> str:
    """Cases and outcomes per surface."""
    outcomes = sorted({o for counts in res["by_surface"].values() for o in counts}, key=lambda o: o != "clean")
    out = ["| surface | cases | " + " | ".join(outcomes) + " |", "|---|---:|" + "---:|" * len(outcomes)]
    for surface, counts in res["by_surface"].items():
        out.append(f"| {surface} | {sum(counts.values())} | " + " | ".join(str(counts.get(o, 0)) for o in outcomes)
                   + " |")
    out.append(f"| **total** | **{res['cases']}** | "
               + " | ".join(f"**{res['outcomes'].get(o, 0)}**" for o in outcomes) + " |")
    out += ["", f"torch {res['torch']}; {res['case_seconds']:,} s of cases."]
    return "\n".join(out)


# --- BENCHMARKS.md: precision, data-parallel and the explorer (timings, still to be committed) ---------


def images_shown(records: list[dict]) -> int:
    """Images a run trained on: its last train record's kimg (metrics.jsonl)."""
    return round([r for r in records if r.get("kind") == "train"][-1]["kimg"] * 1000)


def render_precision(bench: dict, *runs: list[dict]) -> str:
    """Step throughput per precision (bench_train.py) and, per whole `make demo` run given (its
    metrics.jsonl, in the order of `bench`'s precisions), the best fd_clf; a precision without a run
    says how long one would take at its measured rate."""
    out = ["| precision | step img/s (`bench_train.py`) | vs fp32 | best fd_clf of a whole `make demo` run (step) |",
           "|---|---:|---:|---:|"]
    rows = [r for r in bench["rows"] if r["impl"] == "dcgan"]
    fp32 = next(r["images_per_s"] for r in rows if r["precision"] == "fp32")
    for i, r in enumerate(rows):
        evals = [x for x in runs[i] if x.get("kind") == "eval" and "fd_clf" in x] if i < len(runs) else []
        if evals:
            best = min(evals, key=lambda x: x["fd_clf"])
            score = f"{best['fd_clf']:.2f} ({best['step']})"
        else:
            hours = images_shown(runs[0]) / r["images_per_s"] / 3600  # a run as long as the fp32 one
            score = f"not run (about {hours:.1f} h at this rate)"
        out.append(f"| {r['precision']} | {r['images_per_s']:.1f} | {r['images_per_s'] / fp32:.2f}x | {score} |")
    return "\n".join(out)


def render_model_card(facts: dict) -> str:
    """The model card `dcgan export --format safetensors,onnx` writes for a run, from its training.json."""
    from dcgan.share.export import model_card  # the package, installed in the venv

    return "````markdown\n" + model_card(facts, ["safetensors", "onnx"]).rstrip("\n") + "\n````"


def render_eval_rows(res: dict) -> str:
    """The floor (real train images), the run's best checkpoint and the ceiling (an untrained G),
    5,000 images each, on the run's protocol (bench/eval_tables.py)."""
    rows = res["rows"]
    titles = {"floor": f"real: {rows['floor']['n_gen']:,} random **{res['floor_images'].split()[2]}** images (the floor)",
              "trained": f"the trained G, best checkpoint (step {res['step']})",
              "ceiling": f"untrained G (DCGAN init, seed {res['ceiling_seed']}: the ceiling)"}
    out = ["| images scored | fd_clf | kid_clf | coverage | is_clf | precision_clf / recall_clf |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, title in titles.items():
        r = rows[name]
        out.append(f"| {title} | **{r['fd_clf']:.2f}** | {r['kid_clf']:.2f} +- {r['kid_clf_std']:.2f} | "
                   f"{r['coverage']:.1f} | {r['is_clf']:.2f} | {r['precision_clf']:.3f} / {r['recall_clf']:.3f} |")
    m = res["machine"]
    out += ["", f"Protocol: features `{rows['trained']['features']}` (test accuracy "
            f"{100 * rows['trained']['clf_test_accuracy']:.2f}%), {rows['trained']['n_gen']:,} images against "
            f"{rows['trained']['n_real']:,} real {rows['trained']['split']} images; the floor's images are "
            f"{res['floor_images']}. {m['cpu']}, {m['threads']} thread(s), {m['date']}."]
    return "\n".join(out)


def render_eval_full(res: dict) -> str:
    """`dcgan eval`'s table for the best checkpoint, 10,000 samples, as the command prints it."""
    from dcgan.metrics.evaluator import format_table  # the package, installed in the venv

    full = res["full"]
    return (f"```\n$ dcgan eval --checkpoint {full['checkpoint']}\n{format_table(full)}\n```\n\n"
            f"({res['seconds']['full']:.0f} s on {res['machine']['cpu']} with {res['machine']['threads']} "
            "thread(s), while another job ran.)")


def render_eval_nn(res: dict) -> str:
    """`dcgan nn`'s distances for the best checkpoint (bench/eval_tables.py)."""
    nn = res["nn"]
    out = [f"{nn['num_samples']:,} samples (seed 0) and {nn['num_heldout']:,} held-out {nn['heldout_split']} "
           f"images, each against its nearest of the {nn['num_train']:,} {nn['train_split']} images "
           f"(step {res['step']}; {res['seconds']['nn']:.0f} s with {res['machine']['threads']} thread(s)):", "",
           "| distance to the nearest training image | median, samples | median, held-out | "
           "samples closer than 99% of held-out |", "| --- | ---: | ---: | ---: |"]
    for space, title in (("feature", f"{nn['features']} features"), ("pixel", "pixels (L2 on [-1, 1])")):
        out.append(f"| {title} | {nn[f'median_sample_{space}']:.2f} | {nn[f'median_heldout_{space}']:.2f} | "
                   f"{100 * nn[f'frac_below_heldout_p1_{space}']:.1f}% |")
    return "\n".join(out)


def render_paper_ablations(res: dict) -> str:
    """Trained D against the same D at random init, per ablation row (bench/paper_ablations.py): test
    accuracy with all labels of the pool and with 100 per class (mean +- std over the draws)."""
    out = ["| variant | dims | trained D, full labels | random D, full labels | gap | trained D, 100 per class | "
           "random D, 100 per class | gap |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in res["rows"].values():
        feats = row["features"]
        acc = {(r["method"], r["mode"]): r for r in feats["rows"]}
        labels = f"{feats['options']['num_train']:,} labels"
        cells = [f"{row['label']}, step {row['step']}", str(acc[("dcgan", "full")]["dims"])]
        for mode in ("full", "few"):
            if ("dcgan", mode) not in acc:
                cells += ["-", "-", "-"]
                continue
            t, r = acc[("dcgan", mode)], acc[("random_d", mode)]
            fmt = (lambda x: f"{100 * x['accuracy']:.2f}%") if mode == "full" else \
                (lambda x: f"{100 * x['accuracy']:.2f} +- {100 * x['std']:.2f}")
            cells += [fmt(t), fmt(r), f"{100 * (t['accuracy'] - r['accuracy']):+.2f}"]
        if ("pixels", "full") in acc:
            cells[0] += f" (raw pixels: {100 * acc[('pixels', 'full')]['accuracy']:.2f}%)"
        cells[2] += f" ({labels})" if feats["options"]["num_train"] != 10_000 else ""
        out.append("| " + " | ".join(cells) + " |")
    m = res["machine"]
    opts = next(iter(res["rows"].values()))["features"]["options"]
    out += ["", f"Each row: seed 0, a {opts['num_test']:,}-image test set, {opts['num_val']:,} validation images to "
            f"pick C; full labels = a labelled pool of {opts['num_train']:,} training images (where the row does not "
            f"say otherwise), or {opts['draws']} draws of 100 labels per class from it; {m['cpu']}, "
            f"{m['threads']} thread(s), {m['date']}."]
    return "\n".join(out)


def render_costs(costs: dict, demo: list[dict]) -> str:
    """README's table of what each first command costs (bench/costs.py; the demo from its run's metrics.jsonl)."""
    ins, q, clf = costs["install"], costs["quick"], costs["classifier"]
    train = [r for r in demo if r.get("kind") == "train"]
    times = [r["time"] for r in demo if "time" in r]  # from the start record to the last timed one
    minutes = (max(times) - min(times)) / 60
    images = images_shown(demo)
    mean = sum(r["images_per_s"] for r in train) / len(train)
    rows = [
        ("first `make ...`", "creates `.venv` and installs the package with torch",
         f"{ins['venv_bytes'] / 1e9:.1f} GB on disk (pip's default torch for Linux carries CUDA); "
         f"{ins['seconds'] / 60:.1f} minutes for `git clone` + `make venv` here, torch from the local package mirror"),
        ("`make quick`", "[`configs/fashion_mnist_quick.yaml`](configs/fashion_mnist_quick.yaml): 300 steps of batch 32 "
         "(9,600 images), scored at steps 150 and 300 on 2,000 samples",
         f"{q['seconds']:.0f} s, start to exit, with the data cache and the classifier already made "
         f"({q['images_per_s']:.0f} images/s logged at batch 32)"),
        ("`make demo`", "[`configs/fashion_mnist.yaml`](configs/fashion_mnist.yaml): 3 epochs = 1,404 steps of batch "
         "128, scored every 200 steps on 5,000 samples",
         f"{images:,} images: {minutes:.0f} minutes for the run of docs/evaluation.md ({mean:.0f} images/s on average)"),
        ("once per machine and dataset", "decoding Fashion-MNIST into the cache, and training the evaluation "
         "classifier (2 epochs)",
         f"{clf['seconds']:.0f} s for `dcgan classifier` into an empty cache, {clf['train_seconds']:.0f} s of it "
         f"training ({100 * clf['test_accuracy']:.2f}% test accuracy)"),
    ]
    out = ["| command | what it does | cost |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    loads = ", ".join(f"{k} {costs[k]['load_avg_start']}" for k in ("install", "quick", "classifier"))
    out += ["", f"Measured on {ins['machine']}, {ins['date']} (load average at the start: {loads})."]
    return "\n".join(out)


def render_ddp(res: dict) -> str:
    """Images/s of each data-parallel setup, every run (bench_ddp.py)."""
    n = max(len(v) for v in res["runs"].values())
    out = [f"| setup | images/s ({n} runs) |", "|---|---|"]
    out += [f"| {setup} | {', '.join(f'{x:.1f}' for x in runs)} |" for setup, runs in res["runs"].items()]
    m = res["machine"]
    out += ["", f"Load average (1 min) at the start / end: {m['load_avg_start'][0]:.1f} / {m['load_avg_end'][0]:.1f}."]
    return "\n".join(out)


def render_serve(*results: dict) -> str:
    """Latency of a 64-sample grid, one row per size of each bench_serve.py results file."""
    out = ["| size | load avg (1 min) before / after | one at a time p50 | p99 | "
           f"{results[0].get('concurrency', 16)} at a time p50 | p99 | grids/s under load | errors |",
           "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for res in results:
        load = f"{res['load_before'][0]:.1f} / {res['load_after'][0]:.1f}"
        threads = f", `--threads {res['threads']}`" if res.get("threads") else ""
        for size, r in res["sizes"].items():
            seq, busy = r["sequential"], r["load"]
            total = seq["requests"] + busy["requests"] + 5  # and the 5 warm-up requests
            out.append(f"| {size}{threads} | {load} | {seq['p50_ms']:,.0f} ms | {seq['p99_ms']:,.0f} ms | "
                       f"{busy['p50_ms']:,.0f} ms | {busy['p99_ms']:,.0f} ms | {busy['throughput_rps']} | "
                       f"{seq['errors'] + busy['errors']} / {total} |")
    return "\n".join(out)


def render_profile(res: dict) -> str:
    """Per size and Adam path: images/s, the fractions of both conv ceilings, the top operators."""
    out = [f"Ceilings in the same run: oneDNN conv peak **{res['conv_peak_gflops']:.0f} GFLOP/s** (forward), "
           f"training conv peak **{res['train_peak_gflops']:.0f} GFLOP/s** (forward + both gradients). "
           f"Machine: {res['machine']}, torch {res['torch']}, {res['date']}; {res['warmup']} warm-up, "
           f"{res['steps']} timed and {res['steps']} profiled steps.", "",
           "| size | ch | Adam | img/s | GFLOP/img | % of conv peak | % of training conv peak | top operators (self CPU share) |",
           "|---:|---:|---|---:|---:|---:|---:|---|"]
    for r in res["runs"]:
        top = ", ".join(f"{e['op'].replace('aten::', '')} {100 * e['share']:.1f}%" for e in r["top"][:6])
        out.append(f"| {r['size']} | {r['channels']} | {r['adam']} | {r['images_per_s']:.1f} | {r['gflop_per_image']} | "
                   f"{100 * r['conv_peak_fraction']:.1f}% | {100 * r['train_peak_fraction']:.1f}% | {top} |")
    return "\n".join(out)


def render_contention(res: dict) -> str:
    """Images/s per thread setting, alone and beside the script's busy processes."""
    m = res["machine"]
    rows = {(r["size"], r["channels"], r["threads"], r["busy_processes"]): r for r in res["rows"]}
    busy = m["busy_processes"]
    cap = f" (torch CPU capability {m['cpu_capability']}, {m['date']})" if "cpu_capability" in m else ""
    out = [f"Machine: {m['device']}{cap}, {m['cpus']} CPUs ({m['usable_cpus']} usable), torch {m['torch']}; PyTorch's "
           f"default {m['default_threads']} threads, auto {m['auto_threads']} ({m['auto_why']}); load average "
           f"{m['loadavg_before'][0]:.1f} before, {m['loadavg_after'][0]:.1f} after.", "",
           f"| size | ch | threads | alone img/s | beside {busy} busy process{'es' if busy > 1 else ''} img/s | kept |",
           "|---:|---:|---|---:|---:|---:|"]
    for (size, ch, label, b), r in rows.items():
        if b:
            continue
        other = rows.get((size, ch, label, busy))
        beside = other["images_per_s"] if other else float("nan")
        out.append(f"| {size} | {ch} | {label} ({r['num_threads']}) | {r['images_per_s']:.1f} | {beside:.1f} | "
                   f"{beside / r['images_per_s']:.0%} |")
    return "\n".join(out)


def render_run_scores(records: list[dict]) -> str:
    """A run's evaluations (its metrics.jsonl): step, kimg, fd_clf, coverage, is_clf; the best in bold."""
    evals = [r for r in records if r.get("kind") == "eval" and "fd_clf" in r]
    trains = {r["step"]: r["kimg"] for r in records if r.get("kind") == "train" and "kimg" in r}
    per_step = next(iter(trains.values())) / next(iter(trains)) if trains else None
    best = min(evals, key=lambda r: r["fd_clf"])["step"]
    last = evals[-1]["step"]
    out = ["| step | kimg | fd_clf | coverage | is_clf (10 splits) |", "| ---: | ---: | ---: | ---: | ---: |"]
    for r in evals:
        kimg = trains.get(r["step"], r["step"] * per_step if per_step else float("nan"))
        step = f"**{r['step']}**" if r["step"] == best else str(r["step"])
        step += " (last, `best.pt`)" if r["step"] == best == last else " (`best.pt`)" if r["step"] == best else \
            " (last)" if r["step"] == last else ""
        fd = f"**{r['fd_clf']:.2f}**" if r["step"] == best else f"{r['fd_clf']:.2f}"
        is_ = f"{r['is_clf']:.2f} +- {r['is_clf_std']:.2f}" if "is_clf" in r else "-"
        out.append(f"| {step} | {kimg:.1f} | {fd} | {r.get('coverage', float('nan')):.1f} | {is_} |")
    first = evals[0]
    out += ["", f"Protocol: features `{first['features']}` (test accuracy {100 * first['clf_test_accuracy']:.2f}%), "
            f"{first['n_gen']:,} generated images against {first['n_real']:,} real {first['split']} images, "
            f"{first['image_size']}x{first['image_size']}."]
    return "\n".join(out)


def render_recipe_long(res: dict) -> str:
    """The paper's recipe over 5,000 steps (bench/quality.py's `paper` runs): fd_clf every 500 steps per seed."""
    runs = sorted((v for v in res["runs"].values() if v["variant"] == "paper" and v.get("scored")),
                  key=lambda v: v["seed"])
    steps = [e["step"] for e in runs[0]["evals"]]
    out = ["| seed | " + " | ".join(map(str, steps)) + " | best |", "|---|" + "---:|" * (len(steps) + 1)]
    for run in runs:
        by_step = {e["step"]: e["fd_clf"] for e in run["evals"]}
        b = min(run["evals"], key=lambda e: e["fd_clf"])
        cells = [f"**{by_step[t]:.2f}**" if t == b["step"] else f"{by_step.get(t, float('nan')):.2f}" for t in steps]
        out.append(f"| {run['seed']} | " + " | ".join(cells) + f" | {b['fd_clf']:.2f} at {b['step']} |")
    out += ["", f"fd_clf by step. Protocol: {res['protocol']}. Machine: {res['machine']}."]
    return "\n".join(out)


def render_test_counts(res: dict) -> str:
    """Hostile-input and fault cases per group, fast and all (bench/count_tests.py)."""
    out = ["| group of cases | fast (`make test`) | all |", "|---|---:|---:|"]
    out += [f"| {g['label']} | {g['fast']} | {g['all']} |" for g in res["groups"]]
    out.append(f"| **total** ({res['date']}) | **{sum(g['fast'] for g in res['groups'])}** | "
               f"**{sum(g['all'] for g in res['groups'])}** |")
    return "\n".join(out)


# --- the table of tables -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    name: str  # the marker name
    docs: tuple[str, ...]  # where it appears (repository-relative)
    results: tuple[str, ...]  # the committed results file(s) it is rendered from
    render: Callable[..., str]  # results dict(s) -> markdown
    command: str  # what wrote the results file

    def markdown(self, root: Path = REPO) -> str:
        data = [_read(root / r) for r in self.results]
        files = " and ".join(f"`{r}`" for r in self.results)
        return (f"{self.render(*data)}\n\n<sub>Rendered by `bench/render_docs.py` from {files}, written by "
                f"`{self.command}`.</sub>")


EVAL_TABLES = (".venv/bin/python bench/eval_tables.py --run runs/eval-fmnist --out bench/results-eval.json "
               "--figure docs/figures/eval-nn.png (runs/eval-fmnist: the make demo run of this page)")

TABLES = (
    Table("bench-cpu", ("BENCHMARKS.md",), ("bench/results-cpu.json",), render_throughput,
          ".venv/bin/python bench/bench_train.py --sizes 64 32 --channels 3 1 --batch-sizes 128 --steps 10 "
          "--warmup 2 --out bench/results-cpu.json"),
    Table("bench-data", ("BENCHMARKS.md",), ("bench/results-data.json",), render_data,
          "python bench/bench_data.py --sizes 2000 5000 --steps 30 --batch-size 16 --alone-seconds 10 "
          "--work /tmp/dcgan-bench-data --out bench/results-data.json"),
    Table("bench-data-scale", ("BENCHMARKS.md",), ("bench/results-data-scale.json",), render_data,
          "python bench/bench_data.py --sizes 100000 1000000 --distinct 2000 --prepare-max 100000 --batch-size 64 "
          "--steps 100 --work /root/dcgan-bench-data --out bench/results-data-scale.json"),
    Table("paper-features", ("README.md", "docs/paper.md"), ("docs/paper_report/results.json",),
          render_paper_features,
          "dcgan paper report --checkpoint /tmp/paper-ref/checkpoints/last.pt --out docs/paper_report"),
    Table("ssl-validation", ("docs/evaluation.md",), ("bench/results-ssl.json",), render_ssl,
          ".venv/bin/python bench/validate_ssl.py"),
    Table("bench-profile", ("BENCHMARKS.md",), ("bench/results-profile.json",), render_profile,
          ".venv/bin/python bench/profile_step.py --adam foreach fused --out bench/results-profile.json"),
    Table("bench-contention", ("BENCHMARKS.md",), ("bench/results-contention.json",), render_contention,
          ".venv/bin/python bench/bench_train.py --contention --sizes 32 64 --channels 1 --batch-sizes 128 "
          "--steps 10 --warmup 2 --busy 1 --out bench/results-contention.json"),
    Table("recipe-long", ("docs/evaluation.md",), ("bench/results-quality-5k/results.json",), render_recipe_long,
          ".venv/bin/python bench/quality.py --steps 5000 --variants paper --seeds 0,1"),
    Table("test-counts", ("docs/reliability.md",), ("bench/results-test-counts.json",), render_test_counts,
          ".venv/bin/python bench/count_tests.py --out bench/results-test-counts.json"),
    Table("demo-scores", ("docs/evaluation.md",), ("bench/results-demo.jsonl",), render_run_scores,
          "make demo (dcgan train --config configs/fashion_mnist.yaml), its run's metrics.jsonl copied to "
          "bench/results-demo.jsonl"),
    Table("hostile-pass", ("docs/reliability.md",), ("bench/results-hostile-2.json",), render_hostile,
          "OMP_NUM_THREADS=1 .venv/bin/python bench/hostile_pass.py"),
    Table("bench-channels-last", ("BENCHMARKS.md",), ("bench/results-cpu-channels-last.json",), render_channels_last,
          ".venv/bin/python bench/bench_train.py --sizes 64 32 --channels 3 1 --batch-sizes 128 --channels-last both "
          "--no-plain --out bench/results-cpu-channels-last.json"),
    Table("bench-compile", ("BENCHMARKS.md",), ("bench/results-cpu-eager.json", "bench/results-cpu-compile.json"),
          render_compile,
          ".venv/bin/python bench/bench_train.py --sizes 64 32 --channels 3 --batch-sizes 128 --steps 10 "
          "--warmup 2 --no-plain --out bench/results-cpu-eager.json; then the same with --warmup 3 --compile "
          "--out bench/results-cpu-compile.json"),
    Table("bench-ddp", ("BENCHMARKS.md",), ("bench/results-ddp.json",), render_ddp,
          ".venv/bin/python bench/bench_ddp.py --out bench/results-ddp.json"),
    Table("bench-serve", ("BENCHMARKS.md",), ("bench/results-serve.json",), render_serve,
          ".venv/bin/python bench/bench_serve.py --out bench/results-serve.json"),
    Table("eval-rows", ("docs/evaluation.md",), ("bench/results-eval.json",), render_eval_rows, EVAL_TABLES),
    Table("eval-full", ("docs/evaluation.md",), ("bench/results-eval.json",), render_eval_full, EVAL_TABLES),
    Table("eval-nn", ("docs/evaluation.md",), ("bench/results-eval.json",), render_eval_nn, EVAL_TABLES),
    Table("paper-ablations", ("docs/paper.md",), ("bench/results-paper-ablations.json",), render_paper_ablations,
          ".venv/bin/python bench/paper_ablations.py --reference runs/eval-fmnist --long "
          "~/.cache/dcgan/quality-runs/paper-s0 --wide runs/ndf128 --out bench/results-paper-ablations.json"),
    Table("costs", ("README.md",), ("bench/results-costs.json", "bench/results-demo.jsonl"), render_costs,
          ".venv/bin/python bench/costs.py --parts install quick classifier --work /tmp/dcgan-costs "
          "--out bench/results-costs.json; the demo row from bench/results-demo.jsonl"),
    Table("share-card", ("docs/sharing.md",), ("bench/results-share-card.json",), render_model_card,
          "dcgan export --checkpoint runs/eval-fmnist --out exports/fmnist --format safetensors,onnx (the make demo "
          "run of docs/evaluation.md), its training.json copied to bench/results-share-card.json"),
    Table("bench-precision", ("BENCHMARKS.md",), ("bench/results-precision.json", "bench/results-demo.jsonl"),
          render_precision,
          ".venv/bin/python bench/bench_train.py --sizes 32 --channels 1 --batch-sizes 128 --steps 8 --no-plain "
          "--precision fp32 bf16 fp16 --out bench/results-precision.json; the fp32 run is `make demo` "
          "(bench/results-demo.jsonl, as above)"),
)


def section(text: str, name: str) -> str | None:
    """The text between a table's markers, or None when the doc has none."""
    if begin(name) not in text:
        return None
    return text.split(begin(name), 1)[1].split(end(name), 1)[0].strip()


def replace(text: str, name: str, body: str) -> str:
    head, rest = text.split(begin(name), 1)
    _, tail = rest.split(end(name), 1)
    return f"{head}{begin(name)}\n{body}\n{end(name)}{tail}"


def stale(root: Path = REPO) -> list[str]:
    """'doc: table' for every table whose doc differs from its rendering (or lacks its markers)."""
    out = []
    for table in TABLES:
        body = table.markdown(root)
        for doc in table.docs:
            if section((root / doc).read_text(), table.name) != body:
                out.append(f"{doc}: {table.name}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a doc differs from its results")
    ap.add_argument("--print", metavar="NAME", help="print one table and exit")
    args = ap.parse_args()
    tables = {t.name: t for t in TABLES}
    if args.print:
        print(tables[args.print].markdown())
        return 0
    if args.check:
        diff = stale()
        print("\n".join(diff) or "every table matches its results")
        return 1 if diff else 0
    for table in TABLES:
        body = table.markdown()
        for doc in table.docs:
            path = REPO / doc
            path.write_text(replace(path.read_text(), table.name, body))
            print(f"rendered {table.name} into {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
