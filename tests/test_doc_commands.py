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
