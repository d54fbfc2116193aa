"""The export-format table (`dcgan.formats.EXPORT_FORMATS`) is the only place formats are named.

A format registered here, inside the test, is offered by `dcgan export --help`, exported through
the CLI (its file, its model-card section, its row in the card's Files table, listed in
config.json) and read back by `checkpoint.load_models` through the table; once unregistered it
is refused. And the layering the table makes possible: `checkpoint` and `models` import nothing
from `dcgan.share`, which they reach only through the table.
"""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_share import make_run

from dcgan import cli
from dcgan.atomic import write_bytes
from dcgan.checkpoint import load_models
from dcgan.errors import CheckpointError
from dcgan.formats import EXPORT_FORMATS, ExportFormat, export_files, reader

NPZ_FILE = "model.npz"
SRC = Path(__file__).resolve().parents[1] / "src" / "dcgan"


def write_npz(folder: Path, G, D, cfg, facts) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: v.detach().cpu().numpy() for k, v in G.state_dict().items()})
    write_bytes(folder / NPZ_FILE, buf.getvalue())


def npz_card(facts) -> str:
    return f"\nWith NumPy alone: `np.load(\"DIR/{NPZ_FILE}\")` holds G's state dict.\n"


READS: list[Path] = []


def read_npz(path, device="cpu", cfg=None, *, ema=True):
    """G from model.npz; the architecture and facts from the folder's config.json / training.json."""
    from dcgan.models import Generator, load_weights
    from dcgan.share.folder import open_export

    READS.append(Path(path))
    ex = open_export(path)
    G = Generator(ex.cfg.model, ex.cfg.data.image_size, ex.cfg.data.channels)
    with np.load(Path(path) / NPZ_FILE) as arrays:
        load_weights(G, {k: torch.from_numpy(arrays[k]) for k in arrays.files}, "G", path)
    return G.to(device), None, ex.cfg, {**ex.facts, "export": str(path), "config": ex.cfg.to_dict()}


@pytest.fixture
def npz_format():
    EXPORT_FORMATS.register("npz", ExportFormat(
        files={NPZ_FILE: "G's state dict as NumPy arrays"}, write=write_npz, card=npz_card, read=read_npz,
        marks=(NPZ_FILE,)), "adds model.npz (a test's format)")
    READS.clear()
    try:
        yield
    finally:
        EXPORT_FORMATS.unregister("npz")


def test_a_format_registered_here_is_exported_by_the_cli_and_read_back(npz_format, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    assert "npz (adds model.npz (a test's format))" in capsys.readouterr().out

    run, out = make_run(tmp_path), tmp_path / "export"
    assert cli.main(["export", "--checkpoint", str(run), "--out", str(out), "--format", "npz"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.npz", "model.safetensors",
                                                    "samples.png", "training.json"]
    assert NPZ_FILE in json.loads((out / "config.json").read_text())["files"]
    card = (out / "README.md").read_text()
    assert "## How to load" in card and "With NumPy alone" in card
    assert card.index("With NumPy alone") < card.index("## Files")
    assert "| `model.npz` | G's state dict as NumPy arrays |" in card

    assert reader(out).read is read_npz
    G, D, cfg, facts = load_models(out)
    assert READS == [out] and D is None and facts["step"] == 40 and cfg.data.image_size == 16
    G_ref, _, _, _ = load_models(run)
    for (k, v), (k2, v2) in zip(G.state_dict().items(), G_ref.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


@pytest.fixture
def run_and_npz_export(tmp_path, npz_format):
    run, out = make_run(tmp_path), tmp_path / "export"
    assert cli.main(["export", "--checkpoint", str(run), "--out", str(out), "--format", "npz"]) == 0
    EXPORT_FORMATS.unregister("npz")
    return run, out


def test_an_unregistered_format_is_refused(run_and_npz_export, capsys):
    run, out = run_and_npz_export
    assert NPZ_FILE not in export_files()
    assert cli.main(["export", "--checkpoint", str(run), "--out", str(out.parent / "x"), "--format", "npz"]) == 2
    err = capsys.readouterr().err
    assert "--format npz is not supported; use safetensors, onnx" in err and err.count("\n") == 1
    # Its folder lists a file no registered format writes: refused in one line, not half-read.
    with pytest.raises(CheckpointError, match="lists files that are not an export's"):
        load_models(out)


def _imported_modules(path: Path, package: str) -> set[str]:
    """Every module `path` imports, anywhere in its body (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            found.update(f"{base}.{alias.name}" for alias in node.names)
            found.add(base)
    return found


@pytest.mark.parametrize("module", ["checkpoint", "models"])
def test_checkpoint_and_models_import_nothing_from_share(module):
    imported = _imported_modules(SRC / f"{module}.py", "dcgan")
    # Both reach share/ through the table (models inside `from_pretrained`: the walk sees function-level imports).
    assert any(m.startswith("dcgan.formats") for m in imported)
    share = sorted(m for m in imported if m == "dcgan.share" or m.startswith("dcgan.share."))
    assert not share, f"dcgan.{module} imports {share}; reach share/ through dcgan.formats"
