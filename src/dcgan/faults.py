"""Named fault points: where a test may kill a process or make it wait, and nothing happens
otherwise. The package calls `fault_point(NAME)` at a few places of a run's start-up and of
`dcgan prepare`; only the tests put hooks into FAULT_HOOKS (tests/fault_hooks.py, installed by
tests/fault_entry.py). Imports nothing, so every layer may use it."""

from __future__ import annotations

from collections.abc import Callable

FAULT_HOOKS: list[Callable[[str], None]] = []  # none outside the tests (tests/fault_hooks.py adds one)


def fault_point(point: str) -> None:
    """A named point where a test may inject a fault (kill the process, or make it wait): calls
    every hook in FAULT_HOOKS, of which there is none outside the tests. The points: "planned"
    (run directory chosen, not locked), "locked", "outputs" (the first outputs written,
    config.yaml not yet), "started" (config.yaml written), and "prepare-chunk" (`dcgan prepare`
    wrote a chunk's rows, not yet its progress record)."""
    for hook in FAULT_HOOKS:
        hook(point)
