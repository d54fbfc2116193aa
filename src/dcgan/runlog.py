"""A run's one log: metrics.jsonl, a JSON line per log step ("kind": "train"), evaluation ("eval"),
start and resume. Only `MetricsLog` writes it; `read_metrics` reads it back; `best_point` picks
the best evaluation of a set of records by the metric registry's direction.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .errors import DCGANError
from .metrics import registry

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """The one writer of a run's metrics.jsonl (and TensorBoard events when asked); rank 0 only."""

    def __init__(self, path: str | Path, tensorboard_dir: Path | None = None) -> None:
        self.path = Path(path)
        self.tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise DCGANError("train.tensorboard=true needs the tensorboard package; "
                                 "run `pip install tensorboard` or set train.tensorboard=false") from None
            self.tb = SummaryWriter(str(tensorboard_dir))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            step = record.get("step", 0)
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{record.get('kind', 'train')}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: str | Path, kind: str = "train") -> list[dict[str, Any]]:
    """The records of one kind, the latest per step (a resumed run may repeat steps)."""
    by_step: dict[int, dict[str, Any]] = {}
    p = Path(path)
    if not p.is_file():
        return []
    for line in p.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if isinstance(rec, dict) and rec.get("kind") == kind and isinstance(rec.get("step"), int):
            by_step[rec["step"]] = rec
    return [by_step[s] for s in sorted(by_step)]


def best_point(rows: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The record with the best finite `key` (its direction from the metric registry)."""
    pts = [r for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    if not pts:
        return None
    pick = min if registry.lower_is_better(key) else max
    return pick(pts, key=lambda r: r[key])
