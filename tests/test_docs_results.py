"""Docs rebuilt from results: each generated section equals what its script renders today from the
committed results file, so a changed result or renderer cannot leave the docs stale."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

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
