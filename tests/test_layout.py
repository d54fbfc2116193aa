"""The shape of the code: imports run one way down the layers (no cycles, even through
function-level imports), no function is longer than 60 lines, and `dcgan --help` does not import
torch."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    mods = {}
    for p in (SRC / "dcgan").rglob("*.py"):
        name = ".".join(p.relative_to(SRC).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Every dcgan module each module imports, anywhere in its body (relative imports)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    edges[m].add(sub if sub in mods else base)
    return edges


def test_no_import_cycles():
    mods = _modules()
    edges = _imports(mods)
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(edges[u]):
            if v not in mods:
                continue
            if state.get(v) == 1:
                cycles.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for m in sorted(mods):
        if m not in state:
            visit(m)
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_no_function_over_60_lines():
    long = []
    for name, p in _modules().items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long, long


# The layers, bottom to top (issue #18): CLI -> experiments/share/metrics (and the train command)
# -> loop -> step/sampling -> models/data -> config. A module imports from its own layer and the
# ones below, never above. The bottom layer also holds the torch-free tables that config
# validation reads (the metric and export-format tables among them) and the helpers everything
# uses (errors, atomic writes, devices, process groups, pixel ranges).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("config", ("errors", "faults", "registry", "tables", "formats", "metrics.registry", "safe_yaml", "atomic", "pixels",
                "schedule", "config", "devices", "distributed", "paper.constants")),
    ("models/data", ("models", "data", "datasets", "prepared", "augment", "checkpoint")),
    ("step/sampling", ("gan", "losses", "ema", "sampling", "latent")),
    ("loop", ("loop", "runs", "runlog", "plots")),
    ("experiments/share/metrics", ("train", "prepare", "paper", "share", "metrics")),
    ("CLI", ("cli", "__main__", "paper.cli", "share.cli", "metrics.cli")),
]


def _layer(module: str) -> int:
    """The layer of a dcgan module: the most specific (longest) name in LAYERS that covers it."""
    rel = module.removeprefix("dcgan.")
    best = max(((len(n), i) for i, (_, names) in enumerate(LAYERS) for n in names
                if rel == n or rel.startswith(n + ".")), default=None)
    assert best is not None, f"{module} is in no layer of tests/test_layout.py's LAYERS: place it"
    return best[1]


def test_imports_run_one_way_down_the_layers():
    upward = []
    for m, targets in _imports(_modules()).items():
        if m == "dcgan":  # the package's lazy `dcgan.Generator` re-export
            continue
        for t in sorted(targets - {"dcgan"}):  # `from . import __version__` reads a constant
            if _layer(t) > _layer(m):
                upward.append(f"{m} ({LAYERS[_layer(m)][0]}) -> {t} ({LAYERS[_layer(t)][0]})")
    assert not upward, upward



def test_help_does_not_import_torch():
    code = "import sys; from dcgan.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(SRC)})
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_share_and_paper_do_not_import_each_other():
    """The explorer and the paper's experiments share what they both need from modules below
    them (`latent`: walks, arithmetic, Fig. 7), never from each other (issue #18)."""
    edges = _imports(_modules())
    crossing = [f"{m} -> {t}" for m, targets in edges.items() for t in sorted(targets)
                for a, b in (("dcgan.share", "dcgan.paper"), ("dcgan.paper", "dcgan.share"))
                if (m == a or m.startswith(a + ".")) and (t == b or t.startswith(b + "."))]
    assert not crossing, crossing


def test_the_package_reads_no_test_variable():
    """Fault injection is test-only: the package has named, inert fault points (`dcgan.faults`)
    and loop callbacks; the DCGAN_TEST_* variables are read by tests/fault_entry.py alone."""
    readers = [str(p.relative_to(SRC)) for p in sorted((SRC / "dcgan").rglob("*.py")) if "DCGAN_TEST_" in p.read_text()]
    assert readers == []
