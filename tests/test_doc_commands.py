"""Every fenced `dcgan ...` command in README.md and docs/ parses as written: the subcommand and
its flags exist, and every `--set KEY=VALUE` names a config key. (Copy-paste-safe docs.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from dcgan.cli import build_parser
from dcgan.config import Config, parse_overrides

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def fenced_commands(path: Path) -> list[tuple[int, str]]:
    """(line number, command) for each `dcgan` command in the file's fenced code blocks, with
    backslash continuations joined and a leading `.venv/bin/` or `$ ` dropped."""
    out, in_block, pending, start = [], False, "", 0
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if not in_block:
            continue
        text = line.strip()
        if pending:
            text, start = pending + " " + text, start
        else:
            start = i
        if text.endswith("\\"):
            pending = text[:-1].strip()
            continue
        pending = ""
        text = re.sub(r"^(\$ |\.venv/bin/)", "", text)
        if text.startswith("dcgan "):
            out.append((start, text))
    return out


COMMANDS = [(f"{p.relative_to(ROOT)}:{n}", cmd) for p in DOCS for n, cmd in fenced_commands(p)]


def test_the_docs_have_commands_to_check():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("where,command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_parses(where, command):
    argv = shlex.split(command, comments=True)[1:]
    for sep in ("|", "&&", ";", ">"):  # only the dcgan part of a shell line
        if sep in argv:
            argv = argv[: argv.index(sep)]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        assert e.code == 0, f"{where}: `{command}` does not parse"  # --help exits 0
        return
    keys = set(Config().flat())
    for key in _flat_keys(parse_overrides(getattr(args, "overrides", None) or [])):
        assert key in keys, f"{where}: --set {key} is not a config key"


def _flat_keys(nested: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in nested.items():
        out += _flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out


# --- a real run of a few cheap documented commands -------------------------------------------------------
# The command as the docs write it, with tiny settings appended (later --set values win): 16 px, ngf/ndf 8,
# 2 steps on the synthetic Fashion-MNIST, CPU. A few seconds of CPU in all, so they stay in the fast suite.

HELP = [c for _, c in COMMANDS if c.split("#")[0].split()[-1] == "--help"]


def documented(prefix: str) -> str:
    """The first fenced command that starts with `prefix` (the test fails if the docs drop it)."""
    found = [c for _, c in COMMANDS if c.startswith(prefix)]
    assert found, f"no documented command starts with {prefix!r}; pick another to run for real"
    return found[0]


def argv_of(command: str, **env: str) -> list[str]:
    """The dcgan argv of a documented shell line, with $VARS replaced."""
    for name, value in env.items():
        command = command.replace(f"${name}", value)
    return shlex.split(command, comments=True)[1:]


@pytest.mark.parametrize("command", HELP)
def test_documented_help_runs(command, capsys):
    from dcgan.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv_of(command))
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith("usage: dcgan")


@pytest.fixture(scope="module")
def documented_run(tmp_path_factory, synthetic_root):
    """README's `dcgan train --config configs/fashion_mnist.yaml ...`, run for 2 tiny steps."""
    from dcgan.cli import main

    tmp = tmp_path_factory.mktemp("doc-run")
    tiny = {"data.root": synthetic_root, "data.download": "false", "data.subset": 128, "data.image_size": 16,
            "data.cache_dir": tmp / "cache", "model.ngf": 8, "model.ndf": 8, "train.max_steps": 2,
            "train.batch_size": 16, "eval.every": 0, "train.device": "cpu", "train.progress": "false"}
    argv = argv_of(documented("dcgan train --config configs/fashion_mnist.yaml --set train.epochs=10"))
    argv[argv.index("--config") + 1] = str(ROOT / "configs" / "fashion_mnist.yaml")
    argv += [a for k, v in tiny.items() for a in ("--set", f"{k}={v}")] + ["--run-dir", str(tmp / "run")]
    assert main(argv) == 0
    return tmp / "run"


def test_documented_train_runs(documented_run):
    assert (documented_run / "checkpoints" / "last.pt").is_file()
    assert (documented_run / "metrics.jsonl").read_text().count('"kind": "train"') >= 1


def test_documented_sample_runs(documented_run):
    from PIL import Image

    from dcgan.cli import main

    command = documented("dcgan sample --checkpoint $RUN --num 64 --out $RUN/grid.png")
    assert main(argv_of(command, RUN=str(documented_run)) + ["--device", "cpu"]) == 0
    assert Image.open(documented_run / "grid.png").size[0] > 16 * 8  # a grid of 16 px samples


@pytest.mark.slow  # trains the evaluation classifier first (seconds when quiet, a minute on a loaded CPU)
def test_documented_eval_runs(documented_run, capsys):
    import json

    from dcgan.cli import main

    command = documented("dcgan eval --checkpoint RUN --metrics fd_clf,coverage,is_clf")
    argv = [str(documented_run) if a == "RUN" else a for a in argv_of(command)]
    assert main(argv + ["--num", "100", "--device", "cpu"]) == 0  # fewer samples than documented: seconds
    scores = json.loads(capsys.readouterr().out)
    assert scores["fd_clf"] > 0 and 0 <= scores["coverage"] <= 1 and scores["n_gen"] == 100
