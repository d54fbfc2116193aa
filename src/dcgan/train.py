"""The training loop: one top-to-bottom function over a single step counter.

A run directory explains itself:
    config.yaml          the resolved config (defaults <- YAML <- --set)
    metrics.jsonl        one JSON line per log step ("kind": "train"), evaluation ("eval"), resume
    samples/real.png     a grid of training images
    samples/fake-NNNNNNN.png  the fixed-noise grid every train.sample_every steps
    curves.png           losses and D outputs against step
    checkpoints/last.pt  the newest state; step-NNNNNNN.pt every train.checkpoint_every steps;
                         best.pt for the best evaluation score (when eval.every > 0)

All randomness is a function of (seed, epoch, step, rank): data order per epoch, noise per
step, so a resumed run continues exactly as if it had not stopped.
"""

from __future__ import annotations

import logging
import platform
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from . import __version__
from . import distributed as dist_utils
from .checkpoint import (
    load_state,
    save_checkpoint,
)
from .config import Config, from_dict, save_config
from .data import Batches, to_model_range
from .devices import pick_device
from .errors import DCGANError
from .gan import STAT_NAMES, DPair, GANStep
from .models import build_models
from .runs import MetricsLog, RunPlan, plan_run, plot_curves, plot_scores
from .sampling import generate, noise, save_grid

log = logging.getLogger(__name__)


class TrainingDiverged(DCGANError):
    """A loss became NaN or infinite."""


class StopFlag:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to stop at the next step boundary and save."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signum, self._old.get(signum, signal.SIG_DFL))  # a second press stops hard

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _rescale_position(ck: dict[str, Any], saved_world: int, images_per_batch: int) -> int:
    """The batch index, in a run with `images_per_batch` images per step over all ranks, that
    continues a checkpoint written by `saved_world` ranks (ranks shard each epoch's permutation
    round-robin, so after k batches on every rank the first k*B*world images are used)."""
    meta = ck.get("meta", {})
    per_rank = meta.get("per_rank_batch")
    if per_rank is None:
        saved_tc = from_dict(ck["config"]).train
        per_rank = saved_tc.batch_size // saved_world if saved_tc.batch_size_scope == "global" \
            else saved_tc.batch_size
    return ck["batch"] * per_rank * saved_world // images_per_batch


# --- the loop ----------------------------------------------------------------------------------


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    status: str  # "done" | "interrupted"
    last_checkpoint: Path | None


def train(cfg: Config | None = None, *, run_dir: str | Path | None = None, resume: str | Path | None = None,
          overrides: list[str] | None = None, runs_root: str | Path = "runs") -> TrainResult:
    """Train a DCGAN as `cfg` says; returns where everything went."""
    # Resolve the process group, device and run directory.
    info = dist_utils.from_env()
    if cfg is None and resume is None:
        cfg = Config()
    restarted = dist_utils.restarted_run_dir(run_dir, runs_root)  # None unless torchrun restarted us
    if restarted is not None:
        plan = _restart_plan(cfg, restarted, resume, overrides, runs_root, info)
    else:
        try:
            plan = plan_run(cfg, run_dir=run_dir, resume=resume, overrides=overrides, runs_root=runs_root,
                            create=info.is_main)
        except DCGANError as e:
            if dist_utils.restart_count() > 0 and dist_utils.launch_id() is None:
                raise DCGANError(f"{e} (a torchrun restart resumes automatically only when the "
                                 "rendezvous id is unique: pass --rdzv-id, e.g. $SLURM_JOB_ID)") from None
            raise
    cfg = plan.cfg
    device = pick_device(cfg.train.device, info.local_rank)
    if info.enabled and device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise DCGANError(f"process {info.local_rank} on this machine needs GPU {device.index} but there are "
                         f"{torch.cuda.device_count()}; start at most one process per GPU (--nproc-per-node)")
    try:
        dist_utils.init_process_group(info, device)
        return _train(cfg, plan, info, device)
    except Exception as e:
        if info.enabled and dist_utils.is_comm_failure(e):
            raise dist_utils.peer_lost(e, info, "while starting", "start the run again") from None
        raise
    finally:
        dist_utils.destroy()


def _restart_plan(cfg: Config | None, restarted: Path, resume: str | Path | None,
                  overrides: list[str] | None, runs_root: str | Path, info: dist_utils.DistInfo) -> RunPlan:
    """torchrun restarted the workers: continue the run this job started, from its last.pt."""
    if (restarted / "checkpoints" / "last.pt").is_file():
        plan = plan_run(None, resume=restarted)
    else:  # it failed before its first checkpoint: start it again in the same directory
        first = plan_run(cfg, resume=resume, overrides=overrides, runs_root=runs_root, create=False)
        plan = RunPlan(first.cfg, restarted, first.resume_ckpt, first.resumed_from)
    if info.is_main:
        print(f"torchrun restart {dist_utils.restart_count()}: continuing {restarted}", file=sys.stderr)
    return plan


def _train(cfg: Config, plan: RunPlan, info: dist_utils.DistInfo, device: torch.device) -> TrainResult:
    tc, mc = cfg.train, cfg.model
    run_dir = plan.run_dir
    if info.enabled:  # every rank must agree on the directory rank 0 picked
        run_dir = Path(dist_utils.broadcast_object(str(run_dir), info))
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "samples").mkdir(exist_ok=True)
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        dist_utils.write_launch_file(run_dir, info)  # lets a torchrun restart find this run
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 unless precision says otherwise
        torch.backends.cudnn.allow_tf32 = False

    # Load training set.
    per_rank_batch = tc.batch_size
    if tc.batch_size_scope == "global":
        if tc.batch_size % info.world:
            raise DCGANError(f"train.batch_size={tc.batch_size} (global) is not divisible by {info.world} "
                             "processes; pick a multiple of the process count")
        per_rank_batch = tc.batch_size // info.world
    # Rank 0 unpacks/decodes the dataset into its cache first; the others then read the cache.
    batches = dist_utils.in_turn(info, lambda: Batches(cfg.data, per_rank_batch, tc.seed, device,
                                                       info.rank, info.world))
    iters_per_epoch = batches.steps_per_epoch // tc.d_steps
    if iters_per_epoch == 0:
        raise DCGANError(f"one epoch has {batches.steps_per_epoch} batches, fewer than train.d_steps={tc.d_steps}")
    total_steps = tc.max_steps if tc.max_steps > 0 else tc.epochs * iters_per_epoch

    # Construct networks and optimisers (§4: Adam, lr 2e-4, beta1 0.5).
    # Seeded here, right before the init: loading data (e.g. DataLoader workers decoding a new
    # cache) draws from the global RNG, and must not change the initial weights.
    torch.manual_seed(tc.seed)
    G, D = build_models(mc, cfg.data.image_size, cfg.data.channels)
    # channels_last: measured faster with oneDNN on CPU and cuDNN on CUDA (BENCHMARKS.md).
    channels_last = tc.channels_last == "true" or (tc.channels_last == "auto" and device.type in ("cuda", "cpu"))
    mem_format = torch.channels_last if channels_last else torch.contiguous_format
    G.to(device, memory_format=mem_format)
    D.to(device, memory_format=mem_format)
    adam = partial(torch.optim.Adam, betas=(tc.beta1, tc.beta2), weight_decay=tc.weight_decay,
                   **({"fused": True} if device.type == "cuda" else {"foreach": True}))
    opt_G, opt_D = adam(G.parameters(), lr=tc.lr_g), adam(D.parameters(), lr=tc.lr_d)

    # Restore the checkpoint, if resuming.
    step, epoch, batch_in_epoch = 0, 0, 0
    fixed_z = noise(tc.num_fixed, mc.nz, mc.z_dist, tc.seed)
    if plan.resume_ckpt is not None:
        ck = plan.resume_ckpt
        load_state(G, ck["G"], "G", plan.resumed_from)
        load_state(D, ck["D"], "D", plan.resumed_from)
        opt_G.load_state_dict(ck["opt_G"])
        opt_D.load_state_dict(ck["opt_D"])
        step, epoch, batch_in_epoch = ck["step"], ck["epoch"], ck["batch"]
        saved_world = ck.get("meta", {}).get("world", 1)
        if saved_world != info.world:  # N ranks -> M ranks: continue after the images already used
            batch_in_epoch = _rescale_position(ck, saved_world, per_rank_batch * info.world)
        fixed_z = ck["fixed_z"]
        torch.set_rng_state(ck["rng"]["cpu"])
        if info.is_main:
            print(f"resuming from {plan.resumed_from} at step {step}", file=sys.stderr)
    fixed_z = fixed_z.to(device)

    # Wrap for several processes, precision and compilation.
    G_train, D_pair = G, DPair(D)
    if tc.sync_bn and info.enabled:
        if device.type != "cuda":
            raise DCGANError("train.sync_bn=true needs CUDA devices (SyncBatchNorm has no CPU kernel); "
                             "set train.sync_bn=false")
        G_train = torch.nn.SyncBatchNorm.convert_sync_batchnorm(G)
        D_pair = torch.nn.SyncBatchNorm.convert_sync_batchnorm(D_pair)
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        G_train, D_pair = DDP(G_train, device_ids=ids), DDP(D_pair, device_ids=ids)
    if tc.compile:
        G_train, D_pair = torch.compile(G_train), torch.compile(D_pair)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.precision)
    autocast = (partial(torch.autocast, device_type=device.type, dtype=amp_dtype) if amp_dtype else nullcontext)
    scaler = torch.amp.GradScaler(device.type) if tc.precision == "fp16" else None

    def to_input(x: torch.Tensor) -> torch.Tensor:
        return to_model_range(x).contiguous(memory_format=mem_format)

    step_fn = GANStep(G_train=G_train, D_pair=D_pair, D=D, opt_G=opt_G, opt_D=opt_D, nz=mc.nz,
                      z_dist=mc.z_dist, d_steps=tc.d_steps, g_steps=tc.g_steps, autocast=autocast,
                      scaler=scaler, to_input=to_input)
    noise_gen = torch.Generator(device=device)

    # Outputs: only rank 0 writes.
    metrics = evaluator = None
    if info.is_main:
        metrics = MetricsLog(run_dir / "metrics.jsonl", run_dir / "tb" if tc.tensorboard else None)
        if plan.resume_ckpt is not None:
            metrics.write({"kind": "resume", "step": step, "from": str(plan.resumed_from)})
        else:
            save_grid(batches.sample(tc.num_fixed), run_dir / "samples" / "real.png")
    if cfg.eval.every > 0:
        from .metrics import build_evaluator  # the evaluation package (FD, coverage, IS, ...)

        # Rank 0 only (it may compute real-data statistics first); the others wait for it.
        evaluator = dist_utils.wait_for_main(info, lambda: build_evaluator(cfg, device, run_dir))
    best = plan.resume_ckpt.get("best") if plan.resume_ckpt else None

    position = {"epoch": epoch, "batch": batch_in_epoch}
    hooks = dist_utils.FaultHooks.from_env()  # inert unless a test sets DCGAN_TEST_* variables

    def stream() -> Iterator[torch.Tensor]:
        """Real batches across epoch boundaries, tracking the position for checkpoints."""
        while True:
            for batch in batches.epoch(position["epoch"], position["batch"]):
                position["batch"] += 1
                if hooks.dump_dir is not None:
                    hooks.record(batch)
                yield batch
            position["epoch"] += 1
            position["batch"] = 0

    def state() -> dict[str, Any]:
        return {
            "G": G.state_dict(), "D": D.state_dict(),
            "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
            "step": step, "epoch": position["epoch"], "batch": position["batch"],
            "rng": {"cpu": torch.get_rng_state()}, "fixed_z": fixed_z.cpu(),
            "config": cfg.to_dict(), "best": best,
            "meta": {"version": __version__, "torch": str(torch.__version__), "world": info.world,
                     "per_rank_batch": per_rank_batch,
                     "image_size": cfg.data.image_size, "channels": cfg.data.channels},
        }

    def save(kind: str) -> Path | None:
        if not info.is_main:
            return None
        ckdir = run_dir / "checkpoints"
        s = state()
        if kind == "periodic":
            save_checkpoint(s, ckdir / f"step-{step:07d}.pt")
        if kind == "best":
            return save_checkpoint(s, ckdir / "best.pt")
        path = save_checkpoint(s, ckdir / "last.pt")
        plot_curves(run_dir / "metrics.jsonl", run_dir / "curves.png")
        return path

    def sample_grid() -> None:
        if info.is_main:
            save_grid(generate(G, fixed_z), run_dir / "samples" / f"fake-{step:07d}.png")

    window: list[torch.Tensor] = []
    window_start = [time.perf_counter(), step]

    def flush_log() -> dict[str, float] | None:
        """Read the window's stats (the loop's only host sync), check them, log their mean."""
        if not window:
            return None
        stats = torch.stack(window).float()
        stats = dist_utils.all_mean(stats, info).cpu()  # the same numbers on every rank
        window.clear()
        if not torch.isfinite(stats).all():
            last = run_dir / "checkpoints" / "last.pt"
            keep = (f"the last good checkpoint is {last}; resume it with --resume {run_dir} and a lower "
                    "train.lr_d/lr_g or train.precision=fp32") if last.is_file() else \
                "no checkpoint was saved yet; lower train.lr_d/lr_g or use train.precision=fp32"
            raise TrainingDiverged(f"a loss became NaN/inf before step {step}; {keep}")
        now = time.perf_counter()
        steps_done = step - window_start[1]
        ips = steps_done * per_rank_batch * tc.d_steps * info.world / max(now - window_start[0], 1e-9)
        window_start[:] = [now, step]
        rec = dict(zip(STAT_NAMES, stats.mean(0).tolist()))
        rec.update(kind="train", step=step, epoch=position["epoch"],
                   kimg=round(step * per_rank_batch * tc.d_steps * info.world / 1000, 3),
                   images_per_s=round(ips, 1), time=time.time())
        if metrics is not None:
            metrics.write(rec)
        return rec

    # Training loop.
    if info.is_main:
        print(f"run directory: {run_dir}\ndevice: {device} ({platform.processor() or platform.machine()}), "
              f"{batches.num_images} images, {iters_per_epoch} steps/epoch, {total_steps} steps", file=sys.stderr)
        if info.enabled:  # the learning rate is never scaled behind the user's back
            print(f"processes: {info.world} x {per_rank_batch} images = {per_rank_batch * info.world} per step "
                  f"(train.batch_size_scope={tc.batch_size_scope}); lr_d={tc.lr_d:g}, lr_g={tc.lr_g:g} as "
                  "configured, not scaled (see docs/distributed.md)", file=sys.stderr)
    bar = None
    if info.is_main and tc.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True, file=sys.stderr)
    data_iter = stream()
    status, last_path = "done", None
    G.train()
    D.train()
    try:
        with StopFlag() as stop:
            while step < total_steps:
                if hooks.kill_step is not None:
                    hooks.maybe_die(info.rank, step)
                noise_gen.manual_seed(hash((tc.seed, info.rank, step)) % 2**62)  # noise = f(seed, rank, step)
                window.append(step_fn(data_iter, noise_gen))
                step += 1
                if bar is not None:
                    bar.update(1)
                is_last = step == total_steps
                if info.enabled:  # the ranks agree to stop, at a log step, so none waits for the others
                    at_log = step % tc.log_every == 0 or is_last
                    stopping = at_log and dist_utils.any_rank(stop.requested, info, device)
                else:
                    stopping = stop.requested
                if step % tc.log_every == 0 or is_last or stopping:
                    rec = flush_log()
                    if bar is not None and rec:
                        bar.set_postfix(loss_d=f"{rec['loss_d']:.3f}", loss_g=f"{rec['loss_g']:.3f}",
                                        Dx=f"{rec['d_real']:.2f}", DGz=f"{rec['d_fake']:.2f}",
                                        img_s=f"{rec['images_per_s']:.0f}")
                if step % tc.sample_every == 0 or is_last:
                    sample_grid()
                if cfg.eval.every > 0 and (step % cfg.eval.every == 0 or is_last):
                    # Rank 0 generates and scores; the others wait on the long-timeout group.
                    scores = dist_utils.wait_for_main(info, lambda s=step: evaluator(G, s))
                    if scores is not None:
                        metrics.write({"kind": "eval", "step": step, **scores})
                        plot_scores(run_dir / "metrics.jsonl", run_dir / "scores.png", cfg.eval.best)
                        if evaluator.is_better(scores, best):
                            best = {"step": step, **scores}
                            save("best")
                if tc.checkpoint_every and step % tc.checkpoint_every == 0 and not is_last:
                    flush_log()
                    last_path = save("periodic")
                if stopping:
                    status = "interrupted"
                    break
            flush_log()
            last_path = save("last")
            hooks.dump(info.rank, step, {"G": G, "D": D})
    except Exception as e:
        if info.enabled and dist_utils.is_comm_failure(e):
            last = run_dir / "checkpoints" / "last.pt"
            hint = (f"resume with --resume {run_dir} (torchrun --max-restarts does it automatically)"
                    if last.is_file() else "no checkpoint was saved yet; start the run again")
            raise dist_utils.peer_lost(e, info, f"at step {step}", hint) from None
        raise
    finally:
        if bar is not None:
            bar.close()
        if metrics is not None:
            metrics.close()
    if info.is_main:
        done = "stopped (interrupted)" if status == "interrupted" else "finished"
        print(f"{done} at step {step}\n"
              f"  samples:    {run_dir / 'samples'}\n"
              f"  curves:     {run_dir / 'curves.png'}\n"
              f"  metrics:    {run_dir / 'metrics.jsonl'}\n"
              f"  checkpoint: {last_path}", file=sys.stderr)
        if best:
            key = cfg.eval.best
            print(f"  best:       {run_dir / 'checkpoints' / 'best.pt'} (step {best['step']}, "
                  f"{key} {best.get(key, float('nan')):.4g}; scores.png)", file=sys.stderr)
        if status == "interrupted":
            print(f"resume with: dcgan train --resume {run_dir}", file=sys.stderr)
    return TrainResult(run_dir, step, status, last_path)

