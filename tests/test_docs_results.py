"""Docs rebuilt from results: each generated section equals what its script renders today from the
committed results file, so a changed result or renderer cannot leave the docs stale."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quality_doc_results_are_rendered_from_the_committed_json():
    quality = load_bench("quality")
    doc = ROOT / "docs" / "quality.md"
    section = doc.read_text().split(quality.BEGIN, 1)[1].split(quality.END, 1)[0].strip()
    results = ROOT / "bench" / "results-quality-5k" / "results.json"
    if not results.is_file():
        assert section == "No run has finished yet."
        return
    data = json.loads(results.read_text())
    out, rel_doc = Path("bench/results-quality-5k"), Path("docs/quality.md")
    rendered = quality.render(data, 5000, out, rel_doc, root=ROOT)
    assert section == rendered.strip(), "run: python bench/quality.py --report docs/quality.md --steps 5000"


# --- every other table of numbers: bench/render_docs.py ----------------------------------------------



def _load_registered(name: str):
    """A bench script as a module registered in sys.modules (its dataclasses look themselves up there)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


RENDER_DOCS = _load_registered("render_docs")


def _table_ids(tables) -> list[str]:
    return [f"{t.name}@{doc}" for t in tables for doc in t.docs]


@pytest.mark.parametrize("table,doc", [(t, doc) for t in RENDER_DOCS.TABLES for doc in t.docs],
                         ids=_table_ids(RENDER_DOCS.TABLES))
def test_doc_table_is_rendered_from_its_committed_results(table, doc):
    for results in table.results:
        assert (ROOT / results).is_file(), f"{results} (the results behind {table.name}) is not in the tree"
    section = RENDER_DOCS.section((ROOT / doc).read_text(), table.name)
    assert section is not None, f"{doc} has no {table.name} markers"
    assert section == table.markdown(ROOT), f"{doc}: {table.name} is stale; run: python bench/render_docs.py"
    assert table.command in section  # the command that wrote the results file stands next to the table


def _scripts_named(command: str) -> set[str]:
    return set(re.findall(r"bench/\w+\.py", command)) - {"bench/render_docs.py"}


def test_every_command_next_to_a_table_names_a_script_of_the_tree():
    named = {s for t in RENDER_DOCS.TABLES for s in _scripts_named(t.command)}
    assert named, "no bench script is named"
    assert [s for s in sorted(named) if not (ROOT / s).is_file()] == []


@pytest.mark.slow  # one interpreter per script: about 2 s each
@pytest.mark.parametrize("script", sorted({s for t in RENDER_DOCS.TABLES for s in _scripts_named(t.command)}))
def test_the_scripts_behind_the_tables_still_start(script):
    """A results file can only be written again while its script runs: each parses --help."""
    import subprocess

    out = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout


def test_each_marker_in_the_docs_has_a_table():
    """A marked section nobody renders would go stale unseen."""
    known = {t.name for t in RENDER_DOCS.TABLES} | {"quality-results"}
    docs = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
    for doc in docs:
        for name in re.findall(r"<!-- ([\w-]+):begin -->", doc.read_text()):
            assert name in known, f"{doc.name}: {name} has no renderer in bench/render_docs.py"


def test_the_renderer_rewrites_a_stale_table(tmp_path):
    table = RENDER_DOCS.TABLES[0]
    stale = f"intro\n{RENDER_DOCS.begin(table.name)}\n| old | numbers |\n{RENDER_DOCS.end(table.name)}\nafter\n"
    fresh = RENDER_DOCS.replace(stale, table.name, table.markdown(ROOT))
    assert RENDER_DOCS.section(fresh, table.name) == table.markdown(ROOT)
    assert fresh.startswith("intro\n") and fresh.endswith("\nafter\n")


def test_renderers_render_the_shape_their_scripts_write():
    """Renderers on results of the scripts' shape with other numbers than the committed ones (made up
    for the test; they never reach a doc)."""
    cpu = json.loads((ROOT / "bench" / "results-cpu.json").read_text())
    compiled = json.loads((ROOT / "bench" / "results-cpu-compile.json").read_text())
    assert RENDER_DOCS.render_compile(cpu, compiled).count("\n") == 1 + len(compiled["rows"])
    both = {"rows": [{**r, "channels_last": cl} for r in compiled["rows"] for cl in (False, True)]}
    both["rows"][0]["impl"] = both["rows"][1]["impl"] = "dcgan"
    assert RENDER_DOCS.render_channels_last(both).startswith("| size | ch | dcgan, contiguous")
    run = [{"kind": "train", "step": 1404, "kimg": 179.712, "images_per_s": 10.0}, {"kind": "eval", "step": 2, "fd_clf": 5.0},
           {"kind": "eval", "step": 4, "fd_clf": 3.0}]
    precision = {"rows": [{"impl": "dcgan", "precision": p, "images_per_s": v} for p, v in (("fp32", 200.0), ("bf16", 8.0))]}
    text = RENDER_DOCS.render_precision(precision, run)
    assert "| fp32 | 200.0 | 1.00x | 3.00 (4) |" in text and "| bf16 | 8.0 | 0.04x | not run (about 6.2 h" in text
    ddp = {"runs": {"a": [1.0, 2.0], "b": [3.0]}, "machine": {"load_avg_start": [1, 1, 1], "load_avg_end": [2, 2, 2]}}
    assert "| a | 1.0, 2.0 |" in RENDER_DOCS.render_ddp(ddp)
    phase = {"requests": 10, "errors": 0, "p50_ms": 57.0, "p99_ms": 65.0, "throughput_rps": 23.2}
    serve = {"load_before": [2.5, 0, 0], "load_after": [3.3, 0, 0], "threads": 1,
             "sizes": {"32": {"sequential": phase, "load": phase}}}
    assert "| 32, `--threads 1` | 2.5 / 3.3 | 57 ms | 65 ms |" in RENDER_DOCS.render_serve(serve)


@pytest.mark.slow  # two collections of the fuzz and fault files: about 20 s
def test_the_test_counts_are_those_of_this_tree():
    """docs/reliability.md's counts are re-collected: a test added to test_fuzz.py or
    test_faults.py without `bench/count_tests.py` rerun fails here (in `make test-slow`)."""
    counter = load_bench("count_tests")
    committed = json.loads((ROOT / "bench" / "results-test-counts.json").read_text())["groups"]
    assert counter.count() == committed, "run: python bench/count_tests.py, then python bench/render_docs.py"
