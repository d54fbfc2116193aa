"""Process-group set-up on PyTorch's own engine (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK).

With one process nothing here does anything, so the single-process path has no
distributed code in it. See docs/distributed.md for the launch commands.

Environment variables read here (all optional):
    DCGAN_DIST_TIMEOUT      seconds a collective may wait for a peer before the run fails
                            (default 1800); bounds how long survivors wait when a rank hangs
    DCGAN_DIST_SLOW_TIMEOUT seconds the other ranks wait while rank 0 does slow one-off work
                            (decoding the dataset, evaluating samples); default 6 hours

The loop sees the process group only through `Processes`: on one process each of its methods is
the plain operation (no collective, no wrapper), so the loop has no branch on whether DDP is on.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .errors import DCGANError

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 1800.0
DEFAULT_SLOW_TIMEOUT_S = 6 * 3600.0
LAUNCH_FILE = "launch.json"  # in the run directory: which torchrun job started it


class PeerLost(DCGANError):
    """Another process of the group died or stopped answering."""


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def from_env() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise DCGANError(f"{name}={raw!r} is not a positive number of seconds; set e.g. {name}=600")
    return value


def timeout_s() -> float:
    return _seconds("DCGAN_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)


_slow_group: Any = None


def init_process_group(info: DistInfo, device: torch.device, timeout: float | None = None) -> None:
    """NCCL on CUDA, Gloo on CPU; a bounded timeout so a dead peer ends the run, not hangs it.

    Also opens a second (Gloo) group with a long timeout, used only where the other ranks
    knowingly wait for rank 0's slow one-off work (see `wait_for_main`).
    """
    global _slow_group
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    seconds = timeout if timeout is not None else timeout_s()
    delta = datetime.timedelta(seconds=seconds)
    if "TORCHELASTIC_RESTART_COUNT" in os.environ:
        # torchrun keeps one key-value store across restarts; keys left by the failed attempt
        # (a dead rank's address) would send the restarted ranks to a closed port, so each
        # attempt gets its own key prefix.
        store, _, _ = next(dist.rendezvous("env://", rank=info.rank, world_size=info.world, timeout=delta))
        kwargs["store"] = dist.PrefixStore(f"dcgan/attempt-{restart_count()}", store)
    dist.init_process_group(backend, rank=info.rank, world_size=info.world, timeout=delta, **kwargs)
    slow = max(seconds, _seconds("DCGAN_DIST_SLOW_TIMEOUT", DEFAULT_SLOW_TIMEOUT_S))
    _slow_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=slow))


def destroy() -> None:
    global _slow_group
    _slow_group = None
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def wait_for_main(info: DistInfo, work: Callable[[], T]) -> T | None:
    """Rank 0 runs `work` while the others wait (on the long-timeout group); all then go on.

    For rank-0-only work that may be slow (evaluation), so that the other ranks wait at a
    known point instead of inside DDP's next all-reduce under the short timeout.
    """
    out = work() if info.is_main else None
    if info.enabled:
        dist.barrier(group=_slow_group)
    return out


def in_turn(info: DistInfo, work: Callable[[], T]) -> T:
    """Run `work` on every rank, rank 0 first, then the first rank of each machine, then the rest.

    For work that writes shared files (unpacking or decoding a dataset into its cache): the
    first rank does it alone whether the file system is shared or per machine.
    """
    if not info.enabled:
        return work()
    out = None
    for turn in range(3):
        mine = 0 if info.is_main else (1 if info.local_rank == 0 else 2)
        if mine == turn:
            out = work()
        dist.barrier(group=_slow_group)
    return out  # type: ignore[return-value]


def all_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of `t` over the ranks (a copy; `t` itself is left alone)."""
    if not info.enabled:
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / info.world


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank if `flag` is true on any (e.g. a stop request seen by one process)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(obj: T, info: DistInfo) -> T:
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def is_comm_failure(e: BaseException) -> bool:
    """A collective failed because a peer died or timed out (not a bug in this process)."""
    if isinstance(e, dist.DistError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and any(s in text for s in (
        "Connection closed by peer", "Connection reset by peer", "Broken pipe", "Timed out",
        "timed out", "ProcessGroup", "NCCL error", "gloo", "Gloo"))


def peer_lost(e: BaseException, info: DistInfo, where: str, resume_hint: str) -> PeerLost:
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    reason = reason.split("] ", 1)[-1].split(". ", 1)[0][:160]  # drop gloo's source-file prefix
    return PeerLost(f"rank {info.rank} of {info.world}: another process died or stopped answering "
                    f"{where} ({reason}); see the first failing rank's output for the cause; {resume_hint}")


@dataclass(frozen=True)
class Processes:
    """The run's processes as the loop sees them. With one process every method is the plain
    operation: `mean` and `any` return their input, `wrap` returns the module, `on_main` just
    runs the work, and `guard` lets errors through unchanged."""

    info: DistInfo
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.info.is_main

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        return all_mean(t, self.info)

    def any(self, flag: bool) -> bool:
        return any_rank(flag, self.info, self.device)

    def on_main(self, work: Callable[[], T]) -> T | None:
        return wait_for_main(self.info, work)

    def in_turn(self, work: Callable[[], T]) -> T:
        return in_turn(self.info, work)

    def broadcast(self, obj: T) -> T:
        return broadcast_object(obj, self.info)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DDP around `module` when there are several processes (gradients all-reduced in backward)."""
        if not self.info.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    @contextmanager
    def guard(self, where: Callable[[], str], hint: Callable[[], str]) -> Iterator[None]:
        """A collective that fails because a peer died becomes one `PeerLost` line, saying where
        (`where()`, e.g. the step) and what to do (`hint()`); other errors pass unchanged."""
        try:
            yield
        except Exception as e:
            if self.info.enabled and is_comm_failure(e):
                raise peer_lost(e, self.info, where(), hint()) from None
            raise


# --- torchrun restarts -------------------------------------------------------------------------


def restart_count() -> int:
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def launch_id() -> str | None:
    """torchrun's rendezvous id: unique per job when single-node or given by --rdzv-id."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    return run_id if run_id and run_id != "none" else None


def write_launch_file(run_dir: Path, info: DistInfo) -> None:
    """Mark the run directory as this torchrun job's, so its restarted workers find it."""
    run_id = launch_id()
    if run_id is None or not info.is_main:
        return
    (run_dir / LAUNCH_FILE).write_text(json.dumps({"run_id": run_id, "world": info.world}) + "\n")


def _launched_here(path: Path, run_id: str) -> bool:
    try:
        return json.loads((path / LAUNCH_FILE).read_text()).get("run_id") == run_id
    except (OSError, ValueError, AttributeError):
        return False


def restarted_run_dir(run_dir: str | Path | None, runs_root: str | Path) -> Path | None:
    """After a torchrun restart: the directory this same job started (None on a first start).

    Only a directory whose launch.json names this job's rendezvous id counts, so a restart
    never takes over a run it did not start.
    """
    run_id = launch_id()
    if restart_count() == 0 or run_id is None:
        return None
    if run_dir is not None:
        return Path(run_dir) if _launched_here(Path(run_dir), run_id) else None
    root = Path(runs_root)
    found = [p for p in root.iterdir() if p.is_dir() and _launched_here(p, run_id)] if root.is_dir() else []
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


# --- launching on one machine ------------------------------------------------------------------


def launch_local(nproc: int, argv: list[str]) -> int:
    """`python -m dcgan <argv>` in `nproc` processes on this machine, through torchrun's own launcher.

    The same as `torchrun --standalone --nproc-per-node <nproc> -m dcgan <argv>`. A failed
    process ends all of them; its own error line is printed above the summary raised here.
    """
    import logging

    import torch
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    most = max(os.cpu_count() or 1, torch.cuda.device_count()) * 4  # beyond this: memory runs out, nothing gained
    if not 1 <= nproc <= most:
        raise DCGANError(f"--nproc {nproc} must be in 1..{most} (4 per CPU core or GPU of this machine); "
                         "use one process per GPU, or a few on CPU")
    if "LOCAL_RANK" in os.environ:
        raise DCGANError("--nproc starts its own processes but this one already runs under torchrun; "
                         "drop --nproc")
    logging.getLogger("torch.distributed.elastic").setLevel(logging.WARNING)
    if "OMP_NUM_THREADS" not in os.environ:  # share the cores (torchrun would pick 1 and warn)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ["OMP_NUM_THREADS"] = str(max(1, cpus // nproc))
    args = torchrun.parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "dcgan", *argv])
    try:
        torchrun.run(args)
    except SignalException:  # Ctrl-C or SIGTERM to this launcher: torchrun has stopped the workers
        print("interrupted", file=sys.stderr)
        return 130
    except ChildFailedError as e:
        codes = ", ".join(f"rank {rank}: " + (f"signal {-f.exitcode}" if f.exitcode < 0 else f"exit code {f.exitcode}")
                          for rank, f in sorted(e.failures.items()))
        raise DCGANError(f"training in {nproc} processes failed ({codes}); the cause is the error above "
                         "that is not about another process") from None
    return 0
