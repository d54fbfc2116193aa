"""Count the hostile-input and fault cases of tests/test_fuzz.py and tests/test_faults.py, by group,
in the default run (`make test`: not marked slow) and in all (`-m "slow or not slow"`), from
pytest's own collection; docs/reliability.md's table is rendered from the JSON it writes:

    .venv/bin/python bench/count_tests.py --out bench/results-test-counts.json

Every collected test falls in exactly one group (the last group takes the rest of
tests/test_faults.py); a test of test_fuzz.py that no group names stops the script.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ("tests/test_fuzz.py", "tests/test_faults.py")

# (label, test function names or name prefixes ending in "_")
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("bad value for an option of a subcommand (`test_bad_option_value`)", ("test_bad_option_value",)),
    ("bad value for a config key via `--set` (`test_bad_config_value`)", ("test_bad_config_value",)),
    ("value of the wrong type for a key in a YAML file (`test_wrong_type_in_yaml`)", ("test_wrong_type_in_yaml",)),
    ("broken or hostile checkpoint, through every command that reads one (`test_broken_checkpoint`)",
     ("test_broken_checkpoint",)),
    ("broken or hostile `--z` file (`test_broken_z_file`)", ("test_broken_z_file",)),
    ("broken or hostile classifier / Inception weights file (`test_broken_weights_file`)",
     ("test_broken_weights_file",)),
    ("broken or hostile YAML config (`test_broken_yaml_config`)", ("test_broken_yaml_config",)),
    ("broken marks JSON for `paper forget` (`test_broken_marks_file`)", ("test_broken_marks_file",)),
    ("image folders with broken files", ("test_image_folder_",)),
    ("`--set` syntax, unknown commands and options", ("test_set_syntax", "test_unknown_command_and_option")),
    ("base command lines are valid; every option and key has cases",
     ("test_base_command_lines_work", "test_every_option_is_fuzzed", "test_every_config_key_is_fuzzed")),
    ("YAML structure: alias bombs, recursive aliases, duplicate keys/sections, YAML 1.1 numbers "
     "(`test_yaml_structure_is_refused_in_one_short_line`)", ("test_yaml_structure_is_refused_in_one_short_line",)),
    ("string keys keep the text YAML 1.1 reinterprets (`test_string_keys_keep_the_text_yaml_would_reinterpret`)",
     ("test_string_keys_keep_the_text_yaml_would_reinterpret",)),
    ("a user's file at every run-output path of `--run-dir` (`test_foreign_file_in_run_dir_is_never_overwritten`)",
     ("test_foreign_file_in_run_dir_is_never_overwritten",)),
    ("kill -9 at each start point / at a random time, then recovery (`test_kill_9_*`)", ("test_kill_9_",)),
    ("concurrent starts with a forced race, refused resumes, I/O during a resume, eval mismatch",
     ("test_two_starts_released_together_", "test_losing_start_", "test_refused_resume_",
      "test_resume_failing_on_io_", "test_eval_with_a_size_or_channels_mismatch_")),
    ("I/O faults, locking, resume: the rest of `tests/test_faults.py`", ()),
]


def collect(marker: str) -> list[str]:
    """Node ids pytest collects from FILES under `-m marker`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "-m", marker, *FILES], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if "::" in line]


def group_of(node: str) -> int:
    name = re.sub(r"\[.*", "", node.split("::")[-1])
    for i, (_, names) in enumerate(GROUPS):
        if any(name == n or (n.endswith("_") and name.startswith(n)) for n in names):
            return i
    if node.startswith("tests/test_faults.py"):
        return len(GROUPS) - 1
    raise SystemExit(f"{node}: in no group of bench/count_tests.py's GROUPS; add it to one")


def count() -> list[dict]:
    """Per group: its label and how many tests the default run and the full run collect."""
    counts = {kind: [0] * len(GROUPS) for kind in ("fast", "all")}
    for kind, marker in (("fast", "not slow"), ("all", "slow or not slow")):
        for node in collect(marker):
            counts[kind][group_of(node)] += 1
    return [{"label": label, "fast": counts["fast"][i], "all": counts["all"][i]} for i, (label, _) in enumerate(GROUPS)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/results-test-counts.json")
    args = ap.parse_args()
    groups = count()
    result = {"date": str(date.today()), "files": list(FILES),
              "command": "python bench/count_tests.py --out " + args.out, "groups": groups}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{sum(g['fast'] for g in groups)} fast, {sum(g['all'] for g in groups)} in all; wrote {args.out}")


if __name__ == "__main__":
    main()
