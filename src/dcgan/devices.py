"""Device choice, and the settings that make it fast: precision and CPU threads.

Below everything that needs a device. `pick_device` picks the device; `resolve_precision`
turns `train.precision: auto` into bf16 or fp32 for that device; `pick_threads` /
`set_threads` pick the intra-op thread count from the CPUs this process may actually use
(train, serve and sample call it); `CollapseWatch` notices a run's throughput collapsing.
Each choice is a `Choice` (asked, used, why) that a run records."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import DCGANError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto`: CUDA (the process's local GPU), then Apple's MPS, then CPU; else the named device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DCGANError(f"device {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DCGANError(f"device {name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DCGANError(f"device {name!r} but CUDA is not available here; use auto or cpu")
    if dev.type == "mps" and not _mps_available():
        raise DCGANError(f"device {name!r} but MPS is not available here; use auto or cpu")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    if dev.type == "cuda" and dev.index >= torch.cuda.device_count():
        raise DCGANError(f"device {name!r} but this machine has {torch.cuda.device_count()} GPU(s); "
                         f"use cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return dev


# --- precision and threads: the fastest correct settings, chosen once and recorded -------------


@dataclass(frozen=True)
class Choice:
    """A setting as asked (`auto`, 0, or a value), as used, and why: what a run records."""

    asked: Any
    used: Any
    why: str

    def record(self) -> dict[str, Any]:
        return {"asked": self.asked, "used": self.used, "why": self.why}

    def line(self, key: str) -> str:
        return f"{key}: {self.asked} -> {self.used} ({self.why})"


CPUINFO = "/proc/cpuinfo"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names: bf16 dot products / AMX bf16 tiles


def cpu_flags(path: str | None = None) -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is no such file)."""
    try:
        text = Path(path or CPUINFO).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):  # x86 / ARM
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def _torch_cpu_bf16() -> list[str]:
    """What torch's own CPU probe (cpuinfo) says, for systems without /proc/cpuinfo."""
    found = []
    for name, flag in (("_is_avx512_bf16_supported", "avx512_bf16"), ("_is_amx_tile_supported", "amx_tile")):
        probe = getattr(getattr(torch, "cpu", None), name, None)
        try:
            if probe is not None and probe():
                found.append(flag)
        except Exception:  # a private helper: its absence or failure means "not known"
            pass
    return found


def cpu_bf16_features() -> list[str]:
    """The features that make bf16 native on this CPU (AVX512-BF16, AMX); empty if none."""
    flags = cpu_flags()
    return [f for f in BF16_CPU_FLAGS if f in flags] if flags else _torch_cpu_bf16()


def resolve_precision(asked: str, device: torch.device) -> Choice:
    """`train.precision`: a named precision is used as is; `auto` is bf16 autocast where `device`
    runs bf16 natively (a CPU with AVX512-BF16 or AMX, a CUDA GPU of compute capability 8.0 or
    higher) and fp32, the paper's arithmetic, everywhere else."""
    if asked != "auto":
        return Choice(asked, asked, "set in the config")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) >= (8, 0):
            return Choice(asked, "bf16", f"CUDA compute capability {major}.{minor} >= 8.0 runs bf16 natively")
        return Choice(asked, "fp32", f"CUDA compute capability {major}.{minor} < 8.0 has no native bf16")
    if device.type == "cpu":
        found = cpu_bf16_features()
        if found:
            return Choice(asked, "bf16", f"the CPU has {', '.join(found)}: bf16 is native")
        return Choice(asked, "fp32", "the CPU has neither AVX512-BF16 nor AMX: bf16 is not native")
    return Choice(asked, "fp32", f"bf16 is not picked automatically on {device.type}")


CGROUP_ROOT = "/sys/fs/cgroup"
SELF_CGROUP = "/proc/self/cgroup"
MAX_THREADS = 1024


def _ancestors(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p and p != ".."]
    return ["/".join(parts[:i]) for i in range(len(parts), -1, -1)]  # own cgroup first, "" = the root


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def cgroup_cpu_limit(root: str | None = None, self_cgroup: str | None = None) -> float | None:
    """The CPU quota of this process's cgroup and its ancestors, in CPUs (the smallest one), or
    None when there is none: cgroup v2 `cpu.max` ("QUOTA PERIOD" or "max PERIOD"), v1
    `cpu.cfs_quota_us` / `cpu.cfs_period_us` (quota -1: none)."""
    base = Path(root or CGROUP_ROOT)
    v2_paths, v1_dirs = [], []
    for line in (_read(Path(self_cgroup or SELF_CGROUP)) or "").splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hid == "0" and not controllers:
            v2_paths.append(path)
        elif "cpu" in controllers.split(","):
            v1_dirs.append((controllers, path))
    if not v2_paths and not v1_dirs:  # no /proc/self/cgroup: look at the mount's root only
        v2_paths, v1_dirs = ["/"], [("cpu", "/")]
    limits = []
    for path in v2_paths:
        for rel in _ancestors(path):
            fields = (_read(base / rel / "cpu.max") or "").split()
            if len(fields) == 2 and fields[0] != "max":
                try:
                    limits.append(int(fields[0]) / int(fields[1]))
                except (ValueError, ZeroDivisionError):
                    pass
    for controllers, path in v1_dirs:
        for mount in dict.fromkeys((controllers, "cpu", "cpu,cpuacct", "cpuacct,cpu")):
            for rel in _ancestors(path):
                quota, period = _read(base / mount / rel / "cpu.cfs_quota_us"), _read(base / mount / rel / "cpu.cfs_period_us")
                try:
                    if quota is not None and period is not None and int(quota) > 0:
                        limits.append(int(quota) / int(period))
                except (ValueError, ZeroDivisionError):
                    pass
    limits = [x for x in limits if x > 0]
    return min(limits) if limits else None


def usable_cpus() -> tuple[int, str]:
    """How many CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota
    (rounded down: a thread team wider than the quota is throttled mid-step), and why."""
    total = os.cpu_count() or 1
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = total
    quota = cgroup_cpu_limit()
    n = max(1, min(affinity, int(quota) if quota is not None else affinity))
    why = f"{affinity} of the machine's {total} CPUs in this process's affinity"
    why += f", cgroup CPU quota {quota:g}" if quota is not None else ", no cgroup CPU quota"
    return n, why


def pick_threads(asked: int = 0, key: str = "train.threads") -> Choice:
    """The intra-op thread count: `asked` when > 0; else OMP_NUM_THREADS when the environment
    sets it (`--nproc` does, per process); else the CPUs this process may use (`usable_cpus`)."""
    if isinstance(asked, bool) or not isinstance(asked, int) or not 0 <= asked <= MAX_THREADS:
        raise DCGANError(f"{key}={asked!r} is not a thread count; use 0 (auto) or 1..{MAX_THREADS}")
    if asked > 0:
        return Choice(asked, asked, f"{key}={asked}")
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and 0 < int(env) <= MAX_THREADS:
        return Choice(0, int(env), f"OMP_NUM_THREADS={env} in the environment")
    n, why = usable_cpus()
    return Choice(0, n, why)


def set_threads(asked: int = 0, key: str = "train.threads") -> Choice:
    """`pick_threads`, applied to this process's torch (train, serve and sample call it)."""
    choice = pick_threads(asked, key)
    torch.set_num_threads(choice.used)
    return choice


class CollapseWatch:
    """Watches a run's own throughput: when log windows run `ratio` times slower than the best
    window so far, `patience` windows in a row, it returns a warning once (the typical cause on
    a CPU: OpenMP threads stalling while other programs hold the cores). Feed it only windows
    of training steps alone (not ones that also wrote grids, checkpoints or scores)."""

    def __init__(self, threads: int, key: str = "train.threads", ratio: float = 3.0, patience: int = 2,
                 fix: str = "") -> None:
        self.threads, self.key, self.ratio, self.patience, self.fix = threads, key, ratio, patience, fix
        self.best = 0.0
        self.slow = 0
        self.warned = False

    def observe(self, images_per_s: float) -> str | None:
        if self.warned or not images_per_s > 0:
            return None
        self.slow = self.slow + 1 if images_per_s * self.ratio < self.best else 0
        self.best = max(self.best, images_per_s)
        if self.slow < self.patience:
            return None
        self.warned = True
        fix = self.fix or f"--set {self.key}=1"
        cause = (f"with {self.threads} threads, OpenMP stalls when other programs share the CPU; set {fix}, "
                 "or stop the other programs" if self.threads > 1 else
                 "other programs are using this CPU (this run already uses 1 thread); stop them for full speed")
        return (f"throughput collapsed: {images_per_s:.0f} images/s against {self.best:.0f} earlier in this run "
                f"({self.best / images_per_s:.1f}x slower, {self.slow} log windows in a row); {cause}")
