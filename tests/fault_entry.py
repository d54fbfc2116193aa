"""`python tests/fault_entry.py ARGS` = `python -m dcgan ARGS` with the test-only loop callbacks
and fault-point hook of fault_hooks.py (from the DCGAN_TEST_* variables) installed. Usable as
torchrun's script."""

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_hooks import FaultHooks, PointHook  # noqa: E402

import dcgan.faults  # noqa: E402
import dcgan.prepare  # noqa: E402
import dcgan.train  # noqa: E402
from dcgan.cli import main  # noqa: E402

hooks = FaultHooks.from_env()
if hooks is not None:  # cli.cmd_train imports `train` from dcgan.train when it runs
    dcgan.train.train = functools.partial(dcgan.train.train, callbacks=[hooks])
point = PointHook.from_env()
if point is not None:
    dcgan.faults.FAULT_HOOKS.append(point)
    if point.point == "prepare-chunk":
        dcgan.prepare.PROGRESS_EVERY_S = 0.0  # a progress record after every chunk: a known resume point
sys.exit(main(sys.argv[1:]))
