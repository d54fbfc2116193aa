"""A run's directory: planning it (new, resumed, restarted), refusing what is not ours, one writer.

A run directory explains itself:
    config.yaml          the resolved config (defaults <- YAML <- --set)
    metrics.jsonl        one JSON line per log step ("kind": "train"), evaluation ("eval"), resume
    samples/real.png     a grid of training images
    samples/fake-NNNNNNN.png  the fixed-noise grid every train.sample_every steps
    curves.png           losses and D outputs against step (redrawn with every grid)
    scores.png           every evaluation score against step, the best marked (eval.every > 0)
    checkpoints/last.pt  the newest state; step-NNNNNNN.pt every train.checkpoint_every steps;
                         best.pt for the best evaluation score (when eval.every > 0)

The run's log is `dcgan.runlog` (metrics.jsonl), its plots `dcgan.plots`.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import checkpoint_config, load_checkpoint, resolve_checkpoint
from .config import Config, from_dict, load_config, show
from .errors import DCGANError
from .runlog import METRICS_FILE

# --- run directories ---------------------------------------------------------------------------


def holds_run(path: Path) -> bool:
    return path.is_dir() and any((path / n).exists() for n in ("config.yaml", "checkpoints", METRICS_FILE))


# Every path this project writes in a run directory (relative, "/" separated): a new run starts
# only in a directory that is absent, empty, or holds nothing else, so it never writes over a
# file that is not its own. `.lock` is always the first file a run writes there (RunLock).
_RUN_OUTPUT = re.compile(
    r"(\.lock|config\.yaml|metrics\.jsonl|curves\.png|scores\.png|evaluations\.jsonl|launch\.json"
    r"|samples|samples/real\.png|samples/fake-\d{7}\.png|checkpoints|checkpoints/(last|best|step-\d{7})\.pt"
    r"|tb|tb/.*|((samples|checkpoints)/)?\.[^/]+\.tmp\d+)")


def _entries(path: Path) -> list[str]:
    """Every file and folder under `path`, relative and "/" separated (unreadable parts: none)."""
    out = []
    for folder, dirs, files in os.walk(path):
        rel = os.path.relpath(folder, path)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        out += [prefix + n for n in sorted(dirs) + sorted(files)]
    return out


def _foreign(path: Path) -> list[str]:
    """The entries of `path` that are not run outputs (or all of them when no run lock says
    this project wrote there)."""
    entries = _entries(path)
    if entries and ".lock" not in entries:
        return entries
    return [e for e in entries if not _RUN_OUTPUT.fullmatch(e)]


def _has_checkpoint(path: Path) -> bool:
    ckdir = path / "checkpoints"
    return ckdir.is_dir() and any(ckdir.glob("*.pt"))


def stopped_before_first_checkpoint(path: Path) -> bool:
    """A run directory whose start was known good (config.yaml written, last) but that was
    stopped before its first checkpoint: it can only start again from step 0."""
    return (path.is_dir() and (path / "config.yaml").is_file() and not _has_checkpoint(path)
            and (path / LOCK_FILE).exists() and not _foreign(path))


def check_new_run_dir(target: Path, *, locked: bool = False, option: str = "--run-dir") -> bool:
    """Refuse a directory a new run may not start in; True when it holds leftovers of one of
    our own starts that stopped before config.yaml (to be cleared under the run's lock).
    Checked when planning (before anything is written) and again once `locked` (another start
    may have written there in between)."""
    if not target.exists():
        return False
    if not target.is_dir():
        raise DCGANError(f"{option} {str(target)!r} is a file, not a folder; choose a new or empty folder")
    holder = None if locked else RunLock.holder(target)
    if holder is not None:
        raise DCGANError(f"run directory {str(target)!r} is being written by another process (PID {holder}); "
                         "wait for it to finish or stop it, or use another --run-dir")
    if _has_checkpoint(target):
        raise DCGANError(f"run directory {str(target)!r} already holds a run; pass --resume {target} to "
                         "continue it, or choose another --run-dir")
    foreign = _foreign(target)
    if foreign:
        shown = ", ".join(repr(f) for f in foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise DCGANError(f"{option} {str(target)!r} holds files dcgan did not write ({shown}); a run never "
                         "writes over other files: choose a new or empty folder")
    if (target / "config.yaml").is_file():
        raise DCGANError(f"run directory {str(target)!r} holds a run stopped before its first checkpoint; pass "
                         f"--resume {target} to start it again from step 0 in place, or choose another --run-dir")
    return any(e != LOCK_FILE for e in _entries(target))


def discard_run_dir(run_dir: Path) -> None:
    """Remove what a failed start wrote in a directory it made: run outputs only (a file of any
    other name stays, and so does its folder), then the folder when that left it empty."""
    for rel in reversed(_entries(run_dir)):  # children before their folders
        if not _RUN_OUTPUT.fullmatch(rel):
            continue
        p = run_dir / rel
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p) if rel == "tb" else p.rmdir()
            else:
                p.unlink(missing_ok=True)
        except OSError:
            pass
    try:
        run_dir.rmdir()
    except OSError:
        pass


def clear_outputs(run_dir: Path) -> None:
    """Remove the outputs of an earlier start of this run (only names a run writes; never .lock
    or config.yaml, which is replaced atomically once the new start is known good)."""
    for rel in reversed(_entries(run_dir)):  # children before their folders
        if rel in (LOCK_FILE, "config.yaml") or not _RUN_OUTPUT.fullmatch(rel):
            continue
        p = run_dir / rel
        if p.is_dir() and not p.is_symlink():
            if rel == "tb":
                shutil.rmtree(p, ignore_errors=True)
            continue
        p.unlink(missing_ok=True)


def new_run_dir(base: str | Path, name: str) -> Path:
    """runs/<name>-NNN with the next free number, claimed atomically."""
    base = Path(base)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DCGANError(f"cannot create {str(base)!r} for run directories ({e.strerror}); "
                         "pick a writable --runs-root or --run-dir") from None
    taken = [int(p.name.rsplit("-", 1)[1]) for p in base.glob(f"{name}-*") if p.name.rsplit("-", 1)[1].isdigit()]
    n = max(taken, default=0) + 1
    while True:
        path = base / f"{name}-{n:03d}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
        except OSError as e:
            raise DCGANError(f"cannot create run directory {str(path)!r} ({e.strerror}); "
                             "pick a writable --runs-root or --run-dir") from None


# Config keys a resume may change; the new values take effect from the resumed step on and
# are logged in the resume record. Any other change (the networks, the data, the batch, the
# seed) would make the run something else: start a new run for that.
RESUME_MAY_CHANGE = (
    "name", "train.epochs", "train.max_steps", "train.lr_g", "train.lr_d", "train.beta1", "train.beta2",
    "train.weight_decay", "train.device", "train.precision", "train.threads", "train.channels_last", "train.compile",
    "train.sync_bn", "train.log_every", "train.sample_every", "train.checkpoint_every", "train.tensorboard",
    "train.progress", "train.ema", "train.ema_kimg", "train.ema_rampup", "train.lr_schedule", "train.lr_warmup",
    "train.r1_gamma", "train.r2_gamma", "train.reg_every", "data.download", "data.in_memory", "data.cache_dir", "data.num_workers",
    "eval.",
)


@dataclass
class RunPlan:
    cfg: Config
    run_dir: Path
    resume_ckpt: dict[str, Any] | None
    resumed_from: Path | None
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # resume: key -> (old, new)
    created: bool = False  # this process made run_dir (a failed start removes it again)
    clear: bool = False  # run_dir holds outputs of an earlier start of this run: remove them first
    new: bool = False  # a new run directory: checked again once locked (check_new_run_dir)


def resume_changes(saved: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """The config values a resume changes; refuses a change that would make it another run."""
    old, cur = saved.flat(), new.flat()
    changed = {k: (old[k], cur[k]) for k in cur if old.get(k) != cur[k]}
    refused = [k for k in changed if not k.startswith(RESUME_MAY_CHANGE)]
    if "data.root" in refused:
        raise DCGANError(f"a resume cannot change data.root to {show(cur['data.root'])} (was {show(old['data.root'])}): "
                         "it continues the same run on the same data; if the data moved, link its old path to "
                         "the new one, or start a new run")
    if refused:
        what = ", ".join(f"{k}={show(changed[k][1])} (was {show(changed[k][0])})" for k in refused)
        raise DCGANError(f"a resume cannot change {what}; it continues the same run: start a new run "
                         "(--config ... --set ...) to train with other settings")
    if "train.epochs" in changed and new.train.max_steps > 0:
        raise DCGANError(f"train.epochs would have no effect: this run stops at train.max_steps="
                         f"{new.train.max_steps}, which wins over epochs; set train.max_steps instead, or add "
                         "--set train.max_steps=0 to count in epochs")
    return changed


def _check_budget(cfg: Config, ckpt: dict[str, Any]) -> None:
    """A resume whose step budget ends before the checkpoint's step would rewrite the run's
    files without training: refused before anything is written."""
    step, tc = int(ckpt["step"]), cfg.train
    if tc.max_steps > 0 and tc.max_steps < step:
        raise DCGANError(f"the run is at step {step}, past train.max_steps={tc.max_steps}; set train.max_steps "
                         f"above {step} to continue it (the checkpoint stays as it is)")
    if tc.max_steps == 0 and tc.epochs < int(ckpt.get("epoch", 0)):
        raise DCGANError(f"the run is at step {step}, in epoch {int(ckpt['epoch']) + 1}, past train.epochs="
                         f"{tc.epochs}; set train.epochs above {int(ckpt['epoch'])} to continue it")


def _restart_in_place(run: Path, overrides: list[str] | None, create: bool) -> RunPlan:
    """`--resume RUN` of a run stopped before its first checkpoint: it starts again from step 0
    in RUN, with RUN/config.yaml (and any --set on top)."""
    cfg = load_config(run / "config.yaml", overrides)
    if create:
        holder = RunLock.holder(run)
        if holder is not None:
            raise DCGANError(f"run directory {str(run)!r} is being written by another process (PID {holder}); "
                             "wait for it to finish or stop it")
        print(f"{run} stopped before its first checkpoint: starting it again from step 0 in place", file=sys.stderr)
    return RunPlan(cfg, run, None, None, clear=True)


def _check_architecture(cfg: Config, ckpt: dict[str, Any], path: Path) -> None:
    """Load the checkpoint's G and D into fresh networks of `cfg`: a mismatch fails before any write."""
    from .checkpoint import load_state
    from .models import build_models

    G, D = build_models(cfg.model, cfg.data.image_size, cfg.data.channels)
    load_state(G, ckpt["G"], "G", path)
    load_state(D, ckpt["D"], "D", path)


def _claim(target: Path, create: bool) -> bool:
    """Make `target` if it is missing (rank 0 only); True when this call made it."""
    if not create or target.exists():
        return False
    try:
        target.mkdir(parents=True)
    except FileExistsError:
        return False
    except OSError as e:
        raise DCGANError(f"cannot create run directory {str(target)!r} ({e.strerror}); "
                         "pick a writable --run-dir or --runs-root") from None
    return True


def _is_newest(path: Path) -> bool:
    """Whether checkpoint `path` is its run's newest state (last.pt, or the highest step-N.pt
    when a killed first save left no last.pt)."""
    if path.parent.name != "checkpoints":
        return False
    if path.name == "last.pt":
        return True
    return not (path.parent / "last.pt").exists() and resolve_checkpoint(path.parent.parent) == path


def plan_run(cfg: Config | None, *, run_dir: str | Path | None = None, resume: str | Path | None = None,
             overrides: list[str] | None = None, runs_root: str | Path = "runs",
             create: bool = True) -> RunPlan:
    """Decide the config and run directory; never reuse a directory that holds another run.

    Resuming a run directory (its newest checkpoint) continues in that directory. Resuming any
    older checkpoint starts a new numbered run beside the original (or in --run-dir), so the
    later checkpoints of the original run are never overwritten. `overrides` apply on top of the
    checkpoint's config (see RESUME_MAY_CHANGE). Nothing is written but the new, empty
    directory (rank 0, `create`), and only once the resume is known to be valid.
    """
    if resume is not None:
        if stopped_before_first_checkpoint(Path(resume).expanduser()) and run_dir is None:
            return _restart_in_place(Path(resume).expanduser(), overrides, create)
        path = resolve_checkpoint(resume)
        ckpt = load_checkpoint(path, resume=True)
        saved = checkpoint_config(ckpt)
        cfg = from_dict(saved.to_dict(), overrides)
        changed = resume_changes(saved, cfg)
        _check_budget(cfg, ckpt)
        _check_architecture(cfg, ckpt, path)
        origin = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        clear = False
        if run_dir is not None and Path(run_dir).resolve() != origin.resolve():
            target = Path(run_dir)
            clear = check_new_run_dir(target) if create else False
        elif _is_newest(path):
            target = origin
        else:  # an older checkpoint: branch into a new run next to the original
            root = origin.parent if path.parent.name == "checkpoints" else Path(runs_root)
            target = new_run_dir(root, cfg.name) if create else root / cfg.name
            return RunPlan(cfg, target, ckpt, path, changed, created=create)
        return RunPlan(cfg, target, ckpt, path, changed, created=_claim(target, create), clear=clear,
                       new=run_dir is not None and target != origin)
    assert cfg is not None
    if run_dir is not None:
        target = Path(run_dir)
        clear = check_new_run_dir(target) if create else False
        return RunPlan(cfg, target, None, None, created=_claim(target, create), clear=clear, new=True)
    if not create:
        return RunPlan(cfg, Path(runs_root) / cfg.name, None, None)
    return RunPlan(cfg, new_run_dir(runs_root, cfg.name), None, None, created=True)


# --- one writer per run ------------------------------------------------------------------------

LOCK_FILE = ".lock"


class RunLock:
    """An OS file lock on `<run>/.lock`, held by the one process that writes the run.

    `fcntl.flock` locks die with their process (even on SIGKILL), so there is never a stale
    marker to clean up. A second writer gets a one-line error naming the holder's PID.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise DCGANError(f"cannot lock run directory {str(self.path.parent)!r} ({e.strerror}); "
                             "check that it exists and is writable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            raise DCGANError(f"run directory {str(self.path.parent)!r} is being written by another process "
                             f"(PID {holder}); wait for it to finish or stop it, or use another --run-dir") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except OSError:
            same = False
        if not same:  # a failed start removed the folder between our open and our lock
            os.close(fd)
            raise DCGANError(f"run directory {str(self.path.parent)!r} was removed by another process while this one "
                             "started; start the run again")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    @staticmethod
    def holder(run_dir: str | Path) -> str | None:
        """The PID (as text) of the process holding `run_dir`'s lock, or None when none does.
        Creates nothing."""
        import fcntl

        try:
            fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        except OSError:
            return None
        finally:
            os.close(fd)  # drops the probe's shared lock
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
