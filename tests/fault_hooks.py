"""Test-only loop callbacks: kill a rank at a step, and dump what each rank saw and holds.

The production loop knows nothing of these: `dcgan.train.train(..., callbacks=[...])` calls any
`LoopCallback`'s methods, and subprocess tests install these ones through `fault_entry.py`, which
runs the real `dcgan` command line with them:

    DCGAN_TEST_KILL_RANK_AT_STEP  "RANK:STEP": that rank exits abruptly (os._exit(17)) before
                                  STEP; ignored after a torchrun restart (which must run clean)
    DCGAN_TEST_DUMP_DIR           each rank writes rank<R>.json there at the end of training:
                                  checksums of its weights, fingerprints of the real images it saw

and, at the named fault points of a run's start-up and of `dcgan prepare`
(`dcgan.faults.fault_point`, inert outside the tests), a `PointHook`:

    DCGAN_TEST_HOOK               "POINT:kill": SIGKILL this process at POINT;
                                  "POINT:wait:FILE": wait there (at most 120 s) until FILE exists;
                                  "POINT:kill:N": SIGKILL at the N-th time POINT is reached (with
                                  it, `dcgan prepare` records its progress after every chunk)
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dcgan.loop import LoopCallback


@dataclass
class FaultHooks(LoopCallback):
    kill_rank: int | None = None
    kill_step: int | None = None
    dump_dir: Path | None = None
    seen: list[str] = field(default_factory=list)

    @classmethod
    def from_env(cls) -> FaultHooks | None:
        """The hooks the DCGAN_TEST_* variables ask for, or None."""
        hooks = cls()
        kill = os.environ.get("DCGAN_TEST_KILL_RANK_AT_STEP")
        if kill and int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) == 0:
            rank, step = kill.split(":")
            hooks.kill_rank, hooks.kill_step = int(rank), int(step)
        dump = os.environ.get("DCGAN_TEST_DUMP_DIR")
        hooks.dump_dir = Path(dump) if dump else None
        return hooks if hooks.kill_step is not None or hooks.dump_dir is not None else None

    def on_step(self, rank: int, step: int) -> None:
        if self.kill_step is not None and (rank, step) == (self.kill_rank, self.kill_step):
            os._exit(17)  # no clean-up, as if the process had been killed

    def on_batch(self, batch: torch.Tensor) -> None:
        if self.dump_dir is not None:
            for img in batch.cpu():
                self.seen.append(hashlib.sha1(img.numpy().tobytes()).hexdigest()[:16])

    def on_end(self, rank: int, step: int, nets: dict[str, torch.nn.Module]) -> None:
        if self.dump_dir is None:
            return
        sums = {}
        for name, m in nets.items():
            h = hashlib.sha1()
            for k, v in m.state_dict().items():
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().numpy().tobytes())
            sums[name] = h.hexdigest()
            h = hashlib.sha1()
            for p in m.parameters():
                h.update(p.detach().cpu().contiguous().numpy().tobytes())
            sums[name + "_params"] = h.hexdigest()
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        (self.dump_dir / f"rank{rank}.json").write_text(
            json.dumps({"rank": rank, "step": step, "checksums": sums, "seen": self.seen}))


@dataclass
class PointHook:
    """A `dcgan.faults.FAULT_HOOKS` entry: kill or wait at one named fault point."""

    point: str
    action: str
    nth: int = 1
    seen: int = 0

    @classmethod
    def from_env(cls) -> PointHook | None:
        spec = os.environ.get("DCGAN_TEST_HOOK")
        if not spec:
            return None
        point, _, action = spec.partition(":")
        if action.startswith("kill:"):
            return cls(point, "kill", int(action[5:]))
        return cls(point, action)

    def __call__(self, point: str) -> None:
        if point != self.point:
            return
        self.seen += 1
        if self.action == "kill" and self.seen == self.nth:
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.action.startswith("wait:"):
            flag, deadline = Path(self.action[5:]), time.monotonic() + 120
            while not flag.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
