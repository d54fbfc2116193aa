"""`dcgan train`: plan the run, take its lock, build or restore the state, then run the loop.

`train(cfg)` plans the run directory (runs.py) and holds its lock, loads the data, builds the
networks and optimisers (or restores them from a checkpoint when resuming), builds the
evaluation (metrics/), writes the run's first outputs, and hands over to `loop.run_loop` until
the step budget is spent. What a run directory holds is described in README.md; its log is
runlog.py, its plots plots.py.
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import __version__
from . import distributed as dist_utils
from .checkpoint import load_state
from .config import Config, TrainConfig, from_dict, save_config
from .data import Batches
from .devices import Choice, pick_device, resolve_precision, set_threads
from .errors import DCGANError
from .faults import fault_point
from .loop import (
    DataPosition,
    LoopCallback,
    RunContext,
    TrainState,
    build_state,
    build_step,
    run_loop,
)
from .runlog import MetricsLog
from .runs import (
    RunLock,
    RunPlan,
    check_new_run_dir,
    clear_outputs,
    discard_run_dir,
    plan_run,
)
from .sampling import save_grid

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    status: str  # "done" | "interrupted"
    last_checkpoint: Path | None


# --- entry point -------------------------------------------------------------------------------


def train(cfg: Config | None = None, *, run_dir: str | Path | None = None, resume: str | Path | None = None,
          overrides: list[str] | None = None, runs_root: str | Path = "runs",
          callbacks: Sequence[LoopCallback] = ()) -> TrainResult:
    """Train a DCGAN as `cfg` says (or continue the run/checkpoint `resume`); returns where it went.
    `callbacks` (tests) are called at each step, batch and the end (`LoopCallback`)."""
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
    fault_point("planned")
    with ExitStack() as stack:
        if info.is_main:  # a refused lock removes nothing: the directory is the holder's
            stack.enter_context(RunLock(plan.run_dir))
            fault_point("locked")
            if plan.new:  # checked again under the lock: another start may have written there meanwhile
                plan.clear = check_new_run_dir(plan.run_dir, locked=True)
        try:
            procs = dist_utils.Processes(info, pick_device(plan.cfg.train.device, info.local_rank))
            with procs.guard(lambda: "while starting", lambda: "start the run again"):
                dist_utils.init_process_group(info, procs.device)
                return _train(plan, procs, callbacks)
        finally:
            dist_utils.destroy()
            if info.is_main:  # still holding the run's lock
                _discard_if_new(plan)


def _discard_if_new(plan: RunPlan) -> None:
    """A start that failed before it was known good leaves no half-made run directory behind:
    called only while holding the run's lock, and only for a directory this process made (a
    directory another process made, or is writing, is never removed)."""
    d = plan.run_dir
    if plan.created and d.is_dir() and not (d / "config.yaml").exists():
        discard_run_dir(d)


def _restart_plan(cfg: Config | None, restarted: Path, resume: str | Path | None,
                  overrides: list[str] | None, runs_root: str | Path, info: dist_utils.DistInfo) -> RunPlan:
    """torchrun restarted the workers: continue the run this job started, from its last.pt."""
    if (restarted / "checkpoints" / "last.pt").is_file():
        plan = plan_run(None, resume=restarted)
    else:  # it failed before its first checkpoint: start it again in the same directory
        first = plan_run(cfg, resume=resume, overrides=overrides, runs_root=runs_root, create=False)
        plan = RunPlan(first.cfg, restarted, first.resume_ckpt, first.resumed_from, clear=True)
    if info.is_main:
        print(f"torchrun restart {dist_utils.restart_count()}: continuing {restarted}", file=sys.stderr)
    return plan


def _per_rank_batch(cfg: Config, info: dist_utils.DistInfo) -> int:
    tc = cfg.train
    if tc.batch_size_scope == "per_rank":
        return tc.batch_size
    if tc.batch_size % info.world:
        raise DCGANError(f"train.batch_size={tc.batch_size} (global) is not divisible by {info.world} "
                         "processes; pick a multiple of the process count")
    return tc.batch_size // info.world


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


def _restore(state: TrainState, plan: RunPlan, info: dist_utils.DistInfo, per_rank_batch: int) -> None:
    """Load a checkpoint into `state`; the optimisers then take the config's (possibly changed)
    learning rates, betas and weight decay, so a `--set train.lr_d=...` on resume takes effect."""
    ck, tc = plan.resume_ckpt, plan.cfg.train
    load_state(state.G, ck["G"], "G", plan.resumed_from)
    load_state(state.D, ck["D"], "D", plan.resumed_from)
    state.opt_G.load_state_dict(ck["opt_G"])
    state.opt_D.load_state_dict(ck["opt_D"])
    for opt, lr in ((state.opt_G, tc.lr_g), (state.opt_D, tc.lr_d)):
        for group in opt.param_groups:
            group.update(lr=lr, betas=(tc.beta1, tc.beta2), weight_decay=tc.weight_decay)
    state.step = ck["step"]
    state.position = DataPosition(ck["epoch"], ck["batch"])
    saved_world = ck.get("meta", {}).get("world", 1)
    if saved_world != info.world:  # N ranks -> M ranks: continue after the images already used
        state.position.batch = _rescale_position(ck, saved_world, per_rank_batch * info.world)
    if state.G_ema is not None:  # train.ema on: the saved average, or (turned on at this resume) G itself
        state.G_ema.load_state_dict(ck["G_ema"] if "G_ema" in ck else state.G.state_dict())
    state.fixed_z = ck["fixed_z"]
    state.best = ck.get("best")
    torch.set_rng_state(ck["rng"]["cpu"])


def _start_outputs(plan: RunPlan, state: TrainState, batches: Batches, run_dir: Path,
                   info: dist_utils.DistInfo, chosen: dict[str, Choice] | None = None) -> MetricsLog:
    """Rank 0, once the start is known to be good: the directory, the first records, then
    config.yaml, last and atomically: a start that fails on the way (I/O) leaves the run's
    config.yaml as it was (a resume) or absent (a new run, then removed by `_discard_if_new`)."""
    cfg = plan.cfg
    if plan.clear:  # outputs of an earlier start of this run (stopped before its first checkpoint)
        clear_outputs(run_dir)
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    dist_utils.write_launch_file(run_dir, info)  # lets a torchrun restart find this run
    metrics = MetricsLog(run_dir / "metrics.jsonl", run_dir / "tb" if cfg.train.tensorboard else None)
    if plan.resume_ckpt is not None:
        rec = {"kind": "resume", "step": state.step, "from": str(plan.resumed_from)}
        if plan.changed:
            rec["changed"] = {k: list(v) for k, v in plan.changed.items()}
        metrics.write(rec)
        changes = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in plan.changed.items())
        print(f"resuming from {plan.resumed_from} at step {state.step}" + (f"; changed: {changes}" if changes else ""),
              file=sys.stderr)
    else:
        save_grid(batches.sample(cfg.train.num_fixed), run_dir / "samples" / "real.png")
    chosen = chosen or {}
    metrics.write({"kind": "start", "step": state.step, **{k: c.record() for k, c in chosen.items()},
                   "time": time.time()})  # what auto settings resolved to on this machine, and why
    fault_point("outputs")
    note = "".join(f"\n  {c.line(k)}" for k, c in chosen.items())
    save_config(cfg, run_dir / "config.yaml",
                note=f"resolved on this machine at step {state.step} (see the start records in metrics.jsonl):{note}"
                if note else "")
    fault_point("started")
    return metrics


def _train(plan: RunPlan, procs: dist_utils.Processes, callbacks: Sequence[LoopCallback] = ()) -> TrainResult:
    cfg, device = plan.cfg, procs.device
    tc = cfg.train
    run_dir = Path(procs.broadcast(str(plan.run_dir)))  # every rank: rank 0's choice
    chosen = {"train.precision": resolve_precision(tc.precision, device), "train.threads": set_threads(tc.threads)}
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 unless precision says otherwise
        torch.backends.cudnn.allow_tf32 = False

    # Load training set. Rank 0 decodes the dataset into its cache first; the others then read it.
    per_rank_batch = _per_rank_batch(cfg, procs.info)
    batches = procs.in_turn(lambda: Batches(cfg.data, per_rank_batch, tc.seed, device,
                                            procs.info.rank, procs.info.world))
    total_steps = _total_steps(tc, batches)

    # Construct networks and optimisers (§4: Adam, lr 2e-4, beta1 0.5). Seeded right before the
    # init: loading data may draw from the global RNG and must not change the initial weights.
    torch.manual_seed(tc.seed)
    state = build_state(cfg, device)
    if plan.resume_ckpt is not None:
        _restore(state, plan, procs.info, per_rank_batch)
    state.fixed_z = state.fixed_z.to(device)
    step_fn = build_step(cfg, state, device, procs.info)

    # Evaluation: rank 0 builds it (it may compute real-data statistics first; a bad eval setting
    # fails here, before anything is written); the others wait for it.
    evaluator = None
    if cfg.eval.every > 0:
        from .metrics import build_evaluator  # the evaluation package (FD, coverage, IS, ...)

        evaluator = procs.on_main(lambda: build_evaluator(cfg, device))
    ctx = RunContext(cfg, run_dir, procs, total_steps, images_per_step=per_rank_batch * tc.d_steps * procs.info.world,
                     meta={"version": __version__, "torch": str(torch.__version__), "world": procs.info.world,
                           "per_rank_batch": per_rank_batch, "image_size": cfg.data.image_size,
                           "channels": cfg.data.channels},
                     evaluator=evaluator, callbacks=tuple(callbacks))
    # Outputs: only rank 0 writes, and only now that the start is known to be good.
    if procs.is_main:
        ctx.metrics = _start_outputs(plan, state, batches, run_dir, procs.info, chosen)
        _announce(ctx, batches, per_rank_batch, chosen)
    def on_batch(batch: torch.Tensor) -> None:
        for cb in ctx.callbacks:
            cb.on_batch(batch)

    try:
        with procs.guard(lambda: f"at step {state.step}", lambda: _resume_hint(run_dir)):
            status = run_loop(ctx, state, step_fn, state.position.stream(batches, on_batch if callbacks else None))
    finally:
        if ctx.metrics is not None:
            ctx.metrics.close()
    last_path = run_dir / "checkpoints" / "last.pt" if procs.is_main else None
    if procs.is_main:
        _summary(cfg, state, run_dir, status, last_path)
    return TrainResult(run_dir, state.step, status, last_path)


def _total_steps(tc: TrainConfig, batches: Batches) -> int:
    iters_per_epoch = batches.steps_per_epoch // tc.d_steps
    if iters_per_epoch == 0:
        raise DCGANError(f"one epoch has {batches.steps_per_epoch} batches, fewer than train.d_steps={tc.d_steps}; "
                         "lower train.d_steps or train.batch_size")
    return tc.max_steps if tc.max_steps > 0 else tc.epochs * iters_per_epoch


def _announce(ctx: RunContext, batches: Batches, per_rank_batch: int, chosen: dict[str, Choice]) -> None:
    tc, info, device = ctx.cfg.train, ctx.procs.info, ctx.procs.device
    print(f"run directory: {ctx.run_dir}\ndevice: {device} ({platform.processor() or platform.machine()}), "
          f"{batches.num_images} images, {batches.steps_per_epoch // tc.d_steps} steps/epoch, "
          f"{ctx.total_steps} steps", file=sys.stderr)
    print("\n".join(c.line(k) for k, c in chosen.items()), file=sys.stderr)
    if info.enabled:  # the learning rate is never scaled behind the user's back
        print(f"processes: {info.world} x {per_rank_batch} images = {per_rank_batch * info.world} per step "
              f"(train.batch_size_scope={tc.batch_size_scope}); lr_d={tc.lr_d:g}, lr_g={tc.lr_g:g} as "
              "configured, not scaled (see docs/distributed.md)", file=sys.stderr)


def _resume_hint(run_dir: Path) -> str:
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return f"resume with --resume {run_dir} (torchrun --max-restarts does it automatically)"
    return "no checkpoint was saved yet; start the run again"


def _summary(cfg: Config, state: TrainState, run_dir: Path, status: str, last_path: Path | None) -> None:
    done = "stopped (interrupted)" if status == "interrupted" else "finished"
    print(f"{done} at step {state.step}\n"
          f"  samples:    {run_dir / 'samples'}\n"
          f"  curves:     {run_dir / 'curves.png'}\n"
          f"  metrics:    {run_dir / 'metrics.jsonl'}\n"
          f"  checkpoint: {last_path}", file=sys.stderr)
    if state.best:
        key = cfg.eval.best
        print(f"  best:       {run_dir / 'checkpoints' / 'best.pt'} (step {state.best['step']}, "
              f"{key} {state.best.get(key, float('nan')):.4g}; scores.png)", file=sys.stderr)
    if status == "interrupted":
        print(f"resume with: dcgan train --resume {run_dir}", file=sys.stderr)
