"""The shape of the code: imports run one way (no cycles, even through function-level imports),
no function is longer than 120 lines, and `dcgan --help` does not import torch."""

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


def test_no_function_over_120_lines():
    long = []
    for name, p in _modules().items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 120:
                long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long, long


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
