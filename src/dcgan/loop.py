"""The training loop: one top-to-bottom function over a single step counter (`run_loop`).

The loop sees two named objects: `TrainState` (what a checkpoint holds: networks, optimisers,
the averaged G, the step and the data position) and `RunContext` (the config, the step budget,
where outputs go, the processes as a `distributed.Processes`, and what watches the run). Each
action at an interval (log, grid, evaluation, checkpoint) is a method of the context; only
rank 0 writes. Tests hook in through `LoopCallback`s; runs from the command line have none.

`build_state` and `build_step` make the state at step 0 and the GAN step (gan.py) over it. The
command around the loop (planning the run directory, its lock, restoring a checkpoint, building
the evaluation) is train.py.

All randomness is a function of (seed, epoch, step, rank): data order per epoch, noise per
step, so a resumed run continues exactly as if it had not stopped.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from . import distributed as dist_utils
from .augment import diff_augment
from .checkpoint import save_checkpoint
from .config import Config, TrainConfig
from .data import Batches
from .devices import CollapseWatch, resolve_precision
from .ema import ema_beta, ema_copy, ema_update
from .errors import DCGANError
from .gan import STAT_NAMES, DPair, GANStep
from .models import build_models
from .pixels import to_model_range
from .plots import plot_curves, plot_scores
from .runlog import MetricsLog, best_point
from .sampling import generate, noise, save_grid
from .schedule import lr_factor, set_lr

log = logging.getLogger(__name__)


class TrainingDiverged(DCGANError):
    """A loss became NaN or infinite."""


# --- the loop's named state --------------------------------------------------------------------


@dataclass
class DataPosition:
    """Where the run is in the data stream: the epoch and the batch within it (checkpointed)."""

    epoch: int = 0
    batch: int = 0

    def stream(self, batches: Batches, on_batch: Callable[[torch.Tensor], None] | None = None
               ) -> Iterator[torch.Tensor]:
        """Real batches across epoch boundaries, advancing the position as they are taken."""
        while True:
            for batch in batches.epoch(self.epoch, self.batch):
                self.batch += 1
                if on_batch is not None:
                    on_batch(batch)
                yield batch
            self.epoch += 1
            self.batch = 0


@dataclass
class LogWindow:
    """The per-step stats since the last log line, kept on the device until `flush` reads them."""

    start_time: float
    start_step: int
    stats: list[torch.Tensor] = field(default_factory=list)

    def flush(self, step: int, images_per_step: int, procs: dist_utils.Processes) -> dict[str, float] | None:
        """The window's mean stats as a log record (the loop's only host sync); None if empty."""
        if not self.stats:
            return None
        stats = procs.mean(torch.stack(self.stats).float()).cpu()  # the same on every rank
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


class LoopCallback:
    """Hooks into the loop; this base does nothing. Runs from the command line have none; tests
    pass their own to `train(callbacks=...)` to kill a process at a step or record what each
    process saw and holds (tests/fault_hooks.py), so no test branch lives in the loop."""

    def on_step(self, rank: int, step: int) -> None:
        """Before step `step` runs."""

    def on_batch(self, batch: torch.Tensor) -> None:
        """A real batch (uint8, on the device) as the loop takes it."""

    def on_end(self, rank: int, step: int, nets: dict[str, torch.nn.Module]) -> None:
        """After the last step (or a stop), with the raw networks {"G": ..., "D": ...}."""


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


# --- the state at step 0 and the step over it ----------------------------------------------------


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
    procs = dist_utils.Processes(info, device)
    G_train, D_pair = procs.wrap(G_train), procs.wrap(D_pair)  # DDP with several processes
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


# --- the loop ----------------------------------------------------------------------------------


@dataclass
class RunContext:
    """What the loop needs besides the state: the config, the step budget, where outputs go, the
    processes, and what watches the run. Its methods are the loop's actions; only rank 0 writes."""

    cfg: Config
    run_dir: Path
    procs: dist_utils.Processes
    total_steps: int
    images_per_step: int  # over all processes and D steps: what kimg counts
    meta: dict[str, Any]  # saved in every checkpoint
    metrics: MetricsLog | None = None  # rank 0
    evaluator: Callable[[torch.nn.Module, int], dict[str, Any]] | None = None  # rank 0
    callbacks: tuple[LoopCallback, ...] = ()
    window: LogWindow | None = None
    watch: CollapseWatch | None = None
    bar: Any = None
    busy: bool = False  # the window since the last log also wrote grids, checkpoints or scores

    def due(self, step: int, every: int) -> bool:
        """Every `every` steps and at the last one (0: never)."""
        return every > 0 and (step % every == 0 or step == self.total_steps)

    @contextmanager
    def running(self, state: TrainState) -> Iterator[StopFlag]:
        """For the loop's duration: the log window, the progress bar (rank 0, train.progress), the
        throughput watch (rank 0 on a CPU) and the Ctrl-C/SIGTERM flag."""
        self.window = LogWindow(time.perf_counter(), state.step)
        if self.procs.is_main and self.procs.device.type == "cpu":
            # A collapse of the step's own throughput is warned about once (windows of steps alone).
            self.watch = CollapseWatch(torch.get_num_threads(), fix=f"--set train.threads=1 (to continue this "
                                       f"run: dcgan train --resume {self.run_dir} --set train.threads=1)")
        with ExitStack() as stack:
            if self.procs.is_main and self.cfg.train.progress:
                from tqdm.auto import tqdm
                from tqdm.contrib.logging import logging_redirect_tqdm

                self.bar = stack.enter_context(tqdm(total=self.total_steps, initial=state.step, unit="step",
                                                    dynamic_ncols=True, file=sys.stderr))
                stack.enter_context(logging_redirect_tqdm())  # evaluation lines above the bar, not glued to it
            yield stack.enter_context(StopFlag())
        self.bar = None

    def stopping(self, requested: bool, at_log: bool) -> bool:
        """With several processes the ranks agree to stop at a log step, so none waits for the others."""
        if not self.procs.info.enabled:
            return requested
        return at_log and self.procs.any(requested)

    def log(self, state: TrainState) -> None:
        """The log window's means (a collective: every rank calls this) to metrics.jsonl and the bar."""
        try:
            rec = self.window.flush(state.step, self.images_per_step, self.procs)
        except TrainingDiverged as e:
            raise TrainingDiverged(f"{e}; {_diverged_hint(self.run_dir)}") from None
        busy, self.busy = self.busy, False
        if rec is None:
            return
        if self.metrics is not None:
            self.metrics.write({**rec, "epoch": state.position.epoch})
        if self.watch is not None and not busy and (warning := self.watch.observe(rec["images_per_s"])):
            log.warning("warning: %s", warning)
        if self.bar is not None:
            self.bar.set_postfix(loss_d=f"{rec['loss_d']:.3f}", loss_g=f"{rec['loss_g']:.3f}",
                                 Dx=f"{rec['d_real']:.2f}", DGz=f"{rec['d_fake']:.2f}",
                                 img_s=f"{rec['images_per_s']:.0f}")

    def save_samples(self, state: TrainState) -> None:
        if self.procs.is_main:
            save_samples(state, self.run_dir)
            self.busy = True

    def evaluate(self, state: TrainState) -> None:
        """Rank 0 generates and scores while the others wait on the long-timeout group."""
        scores = self.procs.on_main(lambda: self.evaluator(state.G_eval, state.step))
        if scores is not None:
            _record_eval(self.cfg, state, scores, self.run_dir, self.meta, self.metrics)
        self.busy = True

    def checkpoint(self, state: TrainState) -> None:
        """A kept step-N.pt and last.pt (the log window is flushed first so the log covers the step)."""
        self.log(state)
        if self.procs.is_main:
            save_periodic(state, self.cfg, self.meta, self.run_dir)
            save_last(state, self.cfg, self.meta, self.run_dir)
            self.busy = True

    def finish(self, state: TrainState) -> None:
        """After the last step or a stop: the last log window, last.pt and the curves."""
        self.log(state)
        if self.procs.is_main:
            save_last(state, self.cfg, self.meta, self.run_dir)
            plot_curves(self.run_dir / "metrics.jsonl", self.run_dir / "curves.png")
        for cb in self.callbacks:
            cb.on_end(self.procs.info.rank, state.step, {"G": state.G, "D": state.D})


def run_loop(ctx: RunContext, state: TrainState, step_fn: GANStep, data: Iterator[torch.Tensor]) -> str:
    """The training loop proper: one step per iteration until the budget is spent or a stop is
    asked for, with its outputs at their intervals; returns "done" or "interrupted"."""
    tc, rank = ctx.cfg.train, ctx.procs.info.rank
    noise_gen = torch.Generator(device=ctx.procs.device)
    state.G.train()
    state.D.train()
    status = "done"
    with ctx.running(state) as stop:
        while state.step < ctx.total_steps:
            for cb in ctx.callbacks:
                cb.on_step(rank, state.step)
            noise_gen.manual_seed(hash((tc.seed, rank, state.step)) % 2**62)  # noise = f(seed, rank, step)
            state.before_step(tc, ctx.total_steps)  # this step's learning rates
            ctx.window.stats.append(step_fn(data, noise_gen, state.step))  # D step(s), then G step(s)
            state.after_step(tc, ctx.images_per_step)  # G into G_ema, then count the step
            step = state.step
            if ctx.bar is not None:
                ctx.bar.update(1)
            at_log = ctx.due(step, tc.log_every)
            stopping = ctx.stopping(stop.requested, at_log)
            if at_log or stopping:
                ctx.log(state)
            if ctx.due(step, tc.sample_every):
                ctx.save_samples(state)
            if ctx.evaluator is not None and ctx.due(step, ctx.cfg.eval.every):
                ctx.evaluate(state)
            if ctx.due(step, tc.checkpoint_every) and step < ctx.total_steps:
                ctx.checkpoint(state)
            if stopping:
                status = "interrupted"
                break
    ctx.finish(state)
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
