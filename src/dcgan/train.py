"""The training loop: one top-to-bottom function over a single step counter.

`train(cfg)` plans the run (runs.py), builds data, networks and optimisers, restores a
checkpoint when resuming, then runs `GANStep` (gan.py) until the step budget is spent,
writing grids, curves, scores and checkpoints on the way. What a run directory holds is
described in README.md; its log is runlog.py, its plots plots.py.

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
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from . import __version__
from . import distributed as dist_utils
from .augment import diff_augment
from .checkpoint import load_state, save_checkpoint
from .config import Config, TrainConfig, from_dict, save_config
from .data import Batches
from .devices import Choice, CollapseWatch, pick_device, resolve_precision, set_threads
from .ema import ema_beta, ema_copy, ema_update
from .errors import DCGANError
from .gan import STAT_NAMES, DPair, GANStep
from .models import build_models
from .pixels import to_model_range
from .plots import plot_curves, plot_scores
from .runlog import MetricsLog, best_point
from .runs import (
    RunLock,
    RunPlan,
    check_new_run_dir,
    clear_outputs,
    discard_run_dir,
    fault_point,
    plan_run,
)
from .sampling import generate, noise, save_grid
from .schedule import lr_factor, set_lr

log = logging.getLogger(__name__)


class TrainingDiverged(DCGANError):
    """A loss became NaN or infinite."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    status: str  # "done" | "interrupted"
    last_checkpoint: Path | None


# --- the loop's named state --------------------------------------------------------------------


@dataclass
class DataPosition:
    """Where the run is in the data stream: the epoch and the batch within it (checkpointed)."""

    epoch: int = 0
    batch: int = 0

    def stream(self, batches: Batches, hooks: dist_utils.FaultHooks | None = None) -> Iterator[torch.Tensor]:
        """Real batches across epoch boundaries, advancing the position as they are taken."""
        while True:
            for batch in batches.epoch(self.epoch, self.batch):
                self.batch += 1
                if hooks is not None:
                    hooks.record(batch)
                yield batch
            self.epoch += 1
            self.batch = 0


@dataclass
class LogWindow:
    """The per-step stats since the last log line, kept on the device until `flush` reads them."""

    start_time: float
    start_step: int
    stats: list[torch.Tensor] = field(default_factory=list)

    def flush(self, step: int, images_per_step: int, info: dist_utils.DistInfo) -> dict[str, float] | None:
        """The window's mean stats as a log record (the loop's only host sync); None if empty."""
        if not self.stats:
            return None
        stats = dist_utils.all_mean(torch.stack(self.stats).float(), info).cpu()  # same on every rank
        self.stats.clear()
        if not torch.isfinite(stats).all():
            raise TrainingDiverged(f"a loss became NaN/inf before step {step}")
        now = time.perf_counter()
        ips = (step - self.start_step) * images_per_step / max(now - self.start_time, 1e-9)
        self.start_time, self.start_step = now, step
        rec: dict[str, Any] = dict(zip(STAT_NAMES, stats.mean(0).tolist()))
        rec.update(kind="train", step=step, kimg=round(step * images_per_step / 1000, 3),
                   images_per_s=round(ips, 1), time=time.time())
        return rec


@dataclass
class TrainState:
    """Everything a checkpoint holds besides the config: networks, optimisers, position, noise."""

    G: torch.nn.Module
    D: torch.nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    fixed_z: torch.Tensor
    G_ema: torch.nn.Module | None = None  # the averaged G (train.ema or train.ema_kimg > 0)
    step: int = 0
    position: DataPosition = field(default_factory=DataPosition)
    best: dict[str, Any] | None = None

    def before_step(self, tc: TrainConfig, total_steps: int) -> None:
        """Set both learning rates for the step about to run (`train.lr_schedule`, a function of the step)."""
        if tc.lr_schedule != "constant" or tc.lr_warmup:
            f = lr_factor(tc.lr_schedule, self.step, total_steps, tc.lr_warmup)
            set_lr(self.opt_G, tc.lr_g * f)
            set_lr(self.opt_D, tc.lr_d * f)

    def after_step(self, tc: TrainConfig, images_per_step: int) -> None:
        """Average G into G_ema after the step just run, then count it."""
        if self.G_ema is not None:
            ema_update(self.G_ema, self.G, ema_beta(decay=tc.ema, kimg=tc.ema_kimg, rampup=tc.ema_rampup,
                                                    step=self.step, images_per_step=images_per_step))
        self.step += 1

    @property
    def G_eval(self) -> torch.nn.Module:
        """The G that grids, evaluation and best.pt use: the averaged one when there is one."""
        return self.G_ema if self.G_ema is not None else self.G

    def checkpoint(self, cfg: Config, meta: dict[str, Any]) -> dict[str, Any]:
        ema = {"G_ema": self.G_ema.state_dict()} if self.G_ema is not None else {}
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(), **ema,
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "step": self.step, "epoch": self.position.epoch, "batch": self.position.batch,
            "rng": {"cpu": torch.get_rng_state()}, "fixed_z": self.fixed_z.cpu(),
            "config": cfg.to_dict(), "best": self.best, "meta": meta,
        }


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


# --- outputs (rank 0 only) ---------------------------------------------------------------------


def save_last(state: TrainState, cfg: Config, meta: dict[str, Any], run_dir: Path) -> Path:
    """checkpoints/last.pt: the newest state, what `--resume RUN` continues from."""
    return save_checkpoint(state.checkpoint(cfg, meta), run_dir / "checkpoints" / "last.pt")


def save_periodic(state: TrainState, cfg: Config, meta: dict[str, Any], run_dir: Path) -> Path:
    """checkpoints/step-NNNNNNN.pt: kept for good, never overwritten."""
    return save_checkpoint(state.checkpoint(cfg, meta), run_dir / "checkpoints" / f"step-{state.step:07d}.pt")


def save_best(state: TrainState, cfg: Config, meta: dict[str, Any], run_dir: Path) -> Path:
    """checkpoints/best.pt: the state with the best `eval.best` score so far."""
    return save_checkpoint(state.checkpoint(cfg, meta), run_dir / "checkpoints" / "best.pt")


def save_samples(state: TrainState, run_dir: Path) -> None:
    """The fixed-noise grid of this step, and the curves up to it."""
    save_grid(generate(state.G_eval, state.fixed_z), run_dir / "samples" / f"fake-{state.step:07d}.png")
    plot_curves(run_dir / "metrics.jsonl", run_dir / "curves.png")


def _diverged_hint(run_dir: Path) -> str:
    last = run_dir / "checkpoints" / "last.pt"
    if last.is_file():
        return (f"the last good checkpoint is {last}; resume it with --resume {run_dir} --set train.lr_d=... "
                "--set train.lr_g=... (lower; the new rates take effect) or --set train.precision=fp32")
    return "no checkpoint was saved yet; lower train.lr_d/lr_g or use train.precision=fp32"


# --- entry point -------------------------------------------------------------------------------


def train(cfg: Config | None = None, *, run_dir: str | Path | None = None, resume: str | Path | None = None,
          overrides: list[str] | None = None, runs_root: str | Path = "runs") -> TrainResult:
    """Train a DCGAN as `cfg` says (or continue the run/checkpoint `resume`); returns where it went."""
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
            device = pick_device(plan.cfg.train.device, info.local_rank)
            dist_utils.init_process_group(info, device)
            return _train(plan, info, device)
        except Exception as e:
            if info.enabled and dist_utils.is_comm_failure(e):
                raise dist_utils.peer_lost(e, info, "while starting", "start the run again") from None
            raise
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


def _memory_format(tc: TrainConfig, device: torch.device) -> torch.memory_format:
    # channels_last: measured faster with oneDNN on CPU and cuDNN on CUDA (BENCHMARKS.md).
    channels_last = tc.channels_last == "true" or (tc.channels_last == "auto" and device.type in ("cuda", "cpu"))
    return torch.channels_last if channels_last else torch.contiguous_format


def build_state(cfg: Config, device: torch.device) -> TrainState:
    """Fresh networks (seed the global RNG first), their Adam optimisers, the fixed noise and the
    averaged G when asked for: the state at step 0."""
    tc, mc = cfg.train, cfg.model
    G, D = build_models(mc, cfg.data.image_size, cfg.data.channels)
    mem_format = _memory_format(tc, device)
    G.to(device, memory_format=mem_format)
    D.to(device, memory_format=mem_format)
    adam = partial(torch.optim.Adam, betas=(tc.beta1, tc.beta2), weight_decay=tc.weight_decay,
                   **({"fused": True} if device.type == "cuda" else {"foreach": True}))
    return TrainState(G, D, adam(G.parameters(), lr=tc.lr_g), adam(D.parameters(), lr=tc.lr_d),
                      fixed_z=noise(tc.num_fixed, mc.nz, mc.z_dist, tc.seed),
                      G_ema=ema_copy(G) if tc.ema > 0 or tc.ema_kimg > 0 else None)


def build_step(cfg: Config, state: TrainState, device: torch.device,
               info: dist_utils.DistInfo | None = None) -> GANStep:
    """The training iteration over `state`'s networks, wrapped for several processes, precision
    and compilation as the config says, with its loss, penalties and augmentation."""
    tc, mc = cfg.train, cfg.model
    info = info or dist_utils.DistInfo()
    G, D = state.G, state.D
    mem_format = _memory_format(tc, device)
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
    precision = resolve_precision(tc.precision, device).used  # auto: bf16 where native, else fp32
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = partial(torch.autocast, device_type=device.type, dtype=amp_dtype) if amp_dtype else nullcontext
    return GANStep(G_train=G_train, D_pair=D_pair, D=D, opt_G=state.opt_G, opt_D=state.opt_D, nz=mc.nz,
                   z_dist=mc.z_dist, d_steps=tc.d_steps, g_steps=tc.g_steps, autocast=autocast,
                   scaler=torch.amp.GradScaler(device.type) if precision == "fp16" else None,
                   to_input=lambda x: to_model_range(x).contiguous(memory_format=mem_format),
                   loss=tc.loss, augment=diff_augment(tc.augment),
                   r1_gamma=tc.r1_gamma, r2_gamma=tc.r2_gamma, reg_every=tc.reg_every)


def _train(plan: RunPlan, info: dist_utils.DistInfo, device: torch.device) -> TrainResult:
    cfg = plan.cfg
    tc = cfg.train
    run_dir = Path(dist_utils.broadcast_object(str(plan.run_dir), info))  # every rank: rank 0's choice
    chosen = {"train.precision": resolve_precision(tc.precision, device), "train.threads": set_threads(tc.threads)}
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 unless precision says otherwise
        torch.backends.cudnn.allow_tf32 = False

    # Load training set. Rank 0 decodes the dataset into its cache first; the others then read it.
    per_rank_batch = _per_rank_batch(cfg, info)
    images_per_step = per_rank_batch * tc.d_steps * info.world
    batches = dist_utils.in_turn(info, lambda: Batches(cfg.data, per_rank_batch, tc.seed, device,
                                                       info.rank, info.world))
    iters_per_epoch = batches.steps_per_epoch // tc.d_steps
    if iters_per_epoch == 0:
        raise DCGANError(f"one epoch has {batches.steps_per_epoch} batches, fewer than train.d_steps={tc.d_steps}; "
                         "lower train.d_steps or train.batch_size")
    total_steps = tc.max_steps if tc.max_steps > 0 else tc.epochs * iters_per_epoch

    # Construct networks and optimisers (§4: Adam, lr 2e-4, beta1 0.5). Seeded right before the
    # init: loading data may draw from the global RNG and must not change the initial weights.
    torch.manual_seed(tc.seed)
    state = build_state(cfg, device)
    if plan.resume_ckpt is not None:
        _restore(state, plan, info, per_rank_batch)
    state.fixed_z = state.fixed_z.to(device)
    meta = {"version": __version__, "torch": str(torch.__version__), "world": info.world,
            "per_rank_batch": per_rank_batch, "image_size": cfg.data.image_size, "channels": cfg.data.channels}
    step_fn = build_step(cfg, state, device, info)

    # Evaluation: rank 0 builds it (it may compute real-data statistics first; a bad eval setting
    # fails here, before anything is written); the others wait for it.
    evaluator = None
    if cfg.eval.every > 0:
        from .metrics import build_evaluator  # the evaluation package (FD, coverage, IS, ...)

        evaluator = dist_utils.wait_for_main(info, lambda: build_evaluator(cfg, device))
    # Outputs: only rank 0 writes, and only now that the start is known to be good.
    metrics = _start_outputs(plan, state, batches, run_dir, info, chosen) if info.is_main else None
    if info.is_main:
        print(f"run directory: {run_dir}\ndevice: {device} ({platform.processor() or platform.machine()}), "
              f"{batches.num_images} images, {iters_per_epoch} steps/epoch, {total_steps} steps", file=sys.stderr)
        print("\n".join(c.line(k) for k, c in chosen.items()), file=sys.stderr)
        if info.enabled:  # the learning rate is never scaled behind the user's back
            print(f"processes: {info.world} x {per_rank_batch} images = {per_rank_batch * info.world} per step "
                  f"(train.batch_size_scope={tc.batch_size_scope}); lr_d={tc.lr_d:g}, lr_g={tc.lr_g:g} as "
                  "configured, not scaled (see docs/distributed.md)", file=sys.stderr)
    try:
        status = _loop(cfg, state, step_fn, batches, total_steps, run_dir, meta, metrics, evaluator,
                       info, device, images_per_step)
    finally:
        if metrics is not None:
            metrics.close()
    last_path = run_dir / "checkpoints" / "last.pt" if info.is_main else None
    if info.is_main:
        _summary(cfg, state, run_dir, status, last_path)
    return TrainResult(run_dir, state.step, status, last_path)


def _loop(cfg: Config, state: TrainState, step_fn: GANStep, batches: Batches, total_steps: int, run_dir: Path,
          meta: dict[str, Any], metrics: MetricsLog | None, evaluator: Any, info: dist_utils.DistInfo,
          device: torch.device, images_per_step: int) -> str:
    """The training loop proper; returns "done" or "interrupted"."""
    tc = cfg.train
    hooks = dist_utils.FaultHooks.from_env()  # None unless a test sets DCGAN_TEST_* variables
    data = state.position.stream(batches, hooks)
    noise_gen = torch.Generator(device=device)
    window = LogWindow(time.perf_counter(), state.step)
    main = info.is_main
    # A collapse of the CPU step's own throughput is warned about once; only windows of steps
    # alone count (`busy`: the window also wrote grids, checkpoints or scores).
    watch = CollapseWatch(torch.get_num_threads(), fix=f"--set train.threads=1 (to continue this run: "
                          f"dcgan train --resume {run_dir} --set train.threads=1)") if main and device.type == "cpu" else None
    busy = False

    def log_window() -> dict[str, float] | None:
        nonlocal busy
        try:
            rec = window.flush(state.step, images_per_step, info)
        except TrainingDiverged as e:
            raise TrainingDiverged(f"{e}; {_diverged_hint(run_dir)}") from None
        if rec is not None and metrics is not None:
            metrics.write({**rec, "epoch": state.position.epoch})
        if rec is not None and watch is not None and not busy and (warning := watch.observe(rec["images_per_s"])):
            log.warning("warning: %s", warning)
        busy = False
        return rec

    bar = None
    status = "done"
    with ExitStack() as stack:
        if main and tc.progress:
            from tqdm.auto import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            bar = stack.enter_context(tqdm(total=total_steps, initial=state.step, unit="step",
                                           dynamic_ncols=True, file=sys.stderr))
            stack.enter_context(logging_redirect_tqdm())  # evaluation lines above the bar, not glued to it
        stop = stack.enter_context(StopFlag())
        state.G.train()
        state.D.train()
        try:
            while state.step < total_steps:
                if hooks is not None:
                    hooks.maybe_die(info.rank, state.step)
                noise_gen.manual_seed(hash((tc.seed, info.rank, state.step)) % 2**62)  # noise = f(seed, rank, step)
                state.before_step(tc, total_steps)
                window.stats.append(step_fn(data, noise_gen, state.step))
                state.after_step(tc, images_per_step)
                step, is_last = state.step, state.step == total_steps
                if bar is not None:
                    bar.update(1)
                at_log = step % tc.log_every == 0 or is_last
                # With several processes the ranks agree to stop, at a log step, so none waits for the others.
                stopping = (at_log and dist_utils.any_rank(stop.requested, info, device)) if info.enabled \
                    else stop.requested
                if at_log or stopping:
                    rec = log_window()
                    if bar is not None and rec:
                        bar.set_postfix(loss_d=f"{rec['loss_d']:.3f}", loss_g=f"{rec['loss_g']:.3f}",
                                        Dx=f"{rec['d_real']:.2f}", DGz=f"{rec['d_fake']:.2f}",
                                        img_s=f"{rec['images_per_s']:.0f}")
                if main and (step % tc.sample_every == 0 or is_last):
                    save_samples(state, run_dir)
                    busy = True
                if evaluator is not None and (step % cfg.eval.every == 0 or is_last):
                    # Rank 0 generates and scores; the others wait on the long-timeout group.
                    scores = dist_utils.wait_for_main(info, lambda s=step: evaluator(state.G_eval, s))
                    if scores is not None:
                        _record_eval(cfg, state, scores, run_dir, meta, metrics)
                    busy = True
                if tc.checkpoint_every and step % tc.checkpoint_every == 0 and not is_last:
                    log_window()  # every rank: the window's mean is a collective
                    if main:
                        save_periodic(state, cfg, meta, run_dir)
                        save_last(state, cfg, meta, run_dir)
                        busy = True
                if stopping:
                    status = "interrupted"
                    break
            log_window()
            if main:
                save_last(state, cfg, meta, run_dir)
                plot_curves(run_dir / "metrics.jsonl", run_dir / "curves.png")
            if hooks is not None:
                hooks.dump(info.rank, state.step, {"G": state.G, "D": state.D})  # (the raw nets)
        except Exception as e:
            if info.enabled and dist_utils.is_comm_failure(e):
                last = run_dir / "checkpoints" / "last.pt"
                hint = (f"resume with --resume {run_dir} (torchrun --max-restarts does it automatically)"
                        if last.is_file() else "no checkpoint was saved yet; start the run again")
                raise dist_utils.peer_lost(e, info, f"at step {state.step}", hint) from None
            raise
    return status


def _record_eval(cfg: Config, state: TrainState, scores: dict[str, Any], run_dir: Path,
                 meta: dict[str, Any], metrics: MetricsLog) -> None:
    """Log an evaluation, redraw scores.png, and keep best.pt when the score improved."""
    metrics.write({"kind": "eval", "step": state.step, **scores})
    plot_scores(run_dir / "metrics.jsonl", run_dir / "scores.png", cfg.eval.best)
    key = cfg.eval.best
    candidates = [r for r in (state.best, {"step": state.step, **scores}) if r is not None]
    best = best_point(candidates, key)
    if best is not None and best["step"] == state.step and best is not state.best:
        state.best = {"step": state.step, **scores}
        save_best(state, cfg, meta, run_dir)


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
