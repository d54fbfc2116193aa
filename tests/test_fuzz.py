"""Fuzz: every subcommand, every option and every config key, given bad values and hostile files.

Each case runs `dcgan.cli.main(argv)` in-process and must end as a user error: exit code 2,
one line on stderr starting `error:` (or argparse's usage line + `dcgan ...: error:`) that
names the option, key or value at fault, no traceback, no code run from a file (a marker
file stays absent), and no file that existed before changed, removed or added to (data and
statistics caches under the session cache are the only new files allowed).

The cases are generated from tables below: OPTIONS (kind of every option of every
subcommand), the bad values of each kind (BAD), and `describe_keys()` for the config keys.
`docs/reliability.md` gives the counts (`pytest --collect-only -q tests/test_fuzz.py`).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from dcgan.cli import main
from dcgan.config import describe_keys

HUGE = str(10**12)  # far beyond any count the code can hold in memory
OVER = str(2**64)  # beyond a 64-bit integer

# --- the cases ---------------------------------------------------------------------------------

# Bad values by kind of option. Placeholders in braces are filled by the `sandbox` fixture.
BAD: dict[str, tuple[str, ...]] = {
    "count": ("0", "-1", "abc", "", "2.5", "nan", "1e3", HUGE, OVER),  # a number of things
    "count0": ("-1", "abc", "", "2.5", "nan", OVER),  # a count where 0 means "all"/"none"
    "capped": ("0", "-1", "abc", "", "2.5", "nan", OVER),  # a count the code clips to what exists
    "seed": ("abc", "", "2.5", "nan", "-1", OVER),
    "float": ("abc", "", "nan", "inf", "-inf"),
    "device": ("abc", "", "cuda:99", "cpu:x", "gpu"),
    "choice": ("nope", ""),
    "split": ("nope", ""),
    "dataset": ("nope", ""),
    "ints": ("", "x", "-1", "999", "0,,x", "nan"),  # comma-separated sample/layer indices
    "floats": ("", "x", "nan", "inf,1"),
    "names": ("nope", "", ",,"),  # comma-separated names from a fixed set
    "ckpt": ("{missing}", "{dir}", "{empty}", "{junk}", "{file}/x.pt"),  # a checkpoint or run to read
    "file_in": ("{missing}", "{dir}", "{empty}", "{junk}", "{file}/x"),  # a file to read
    "dir_in": ("{missing}", "{file}"),  # a folder to read
    "data_root": ("{file}",),  # fashion_mnist: a missing root falls back to Debian's copy (documented)
    "cache_dir": (),  # a cache that cannot be written is skipped with a warning (documented)
    "not_here": (),  # needs more data than the synthetic set (paper report: 2100+ training images)
    "png_out": ("{file}/x.png", "{dir_png}"),  # a .png to write
    "dir_out": ("{file}", "{file}/sub"),  # a folder to write
    "file_out": ("{file}/z.pt", "{dir}"),  # a file to write
    "port": ("-1", "65536", "abc", ""),
    "host": ("", "999.1.1.1"),
}

# Every option of every subcommand (besides flags): its kind. A kind missing here fails
# `test_every_option_is_fuzzed`, so a new option cannot be forgotten.
OPTIONS: dict[str, dict[str, str]] = {
    "train": {"--config": "file_in", "--run-dir": "dir_out", "--runs-root": "dir_out", "--nproc": "capped",
              "--resume": "ckpt", "--set": "set"},
    "sample": {"--checkpoint": "ckpt", "--num": "count", "--out": "png_out", "--seed": "seed",
               "--batch-size": "capped", "--bn-mode": "choice", "--save-z": "file_out", "--device": "device",
               "--threads": "count0"},
    "eval": {"--checkpoint": "ckpt", "--images": "dir_in", "--metrics": "names", "--features": "choice",
             "--num": "count", "--split": "split", "--num-real": "count0", "--seed": "seed",
             "--inception-weights": "file_in", "--classifier-epochs": "count", "--classifier": "file_in",
             "--ssl-steps": "count",
             "--dataset": "dataset", "--image-size": "count", "--channels": "choice", "--data-root": "data_root",
             "--cache-dir": "cache_dir", "--device": "device"},
    "classifier": {"--split": "split", "--epochs": "count", "--seed": "seed", "--dataset": "dataset",
                   "--image-size": "count", "--channels": "choice", "--data-root": "data_root",
                   "--cache-dir": "cache_dir", "--device": "device"},
    "nn": {"--checkpoint": "ckpt", "--out": "png_out", "--num-show": "capped", "--num": "count", "--seed": "seed",
           "--heldout-split": "split", "--classifier-epochs": "count", "--ssl-steps": "count",
           "--data-root": "data_root",
           "--cache-dir": "cache_dir", "--device": "device"},
    "paper features": {"--checkpoint": "ckpt", "--device": "device", "--data": "dataset", "--data-root": "data_root",
                       "--test-split": "split", "--modes": "names", "--methods": "names", "--num-train": "count",
                       "--num-val": "count", "--num-test": "capped", "--per-class": "count", "--draws": "count",
                       "--cs": "floats", "--kmeans-centroids": "count", "--layers": "ints", "--seed": "seed",
                       "--out": "dir_out"},
    "paper walk": {"--checkpoint": "ckpt", "--device": "device", "--out": "png_out", "--mode": "choice",
                   "--rows": "count", "--steps": "count", "--seed": "seed"},
    "paper arithmetic": {"--checkpoint": "ckpt", "--device": "device", "--seed": "seed", "--num": "count",
                         "--z": "file_in", "--a": "ints", "--b": "ints", "--c": "ints", "--names": "names",
                         "--noise-scale": "float", "--out": "png_out", "--direction-from": "ints",
                         "--direction-to": "ints", "--base": "ints", "--strengths": "floats",
                         "--direction-names": "names", "--direction-out": "png_out"},
    "paper filters": {"--checkpoint": "ckpt", "--device": "device", "--out": "png_out", "--num-features": "capped",
                      "--per-feature": "count", "--num-images": "capped", "--seed": "seed"},
    "paper forget": {"--checkpoint": "ckpt", "--device": "device", "--seed": "seed", "--num": "count",
                     "--z": "file_in", "--marks": "file_in", "--out": "png_out", "--threshold": "float",
                     "--max-maps": "count0", "--show-seed": "seed", "--show-num": "count"},
    "paper report": {"--checkpoint": "ckpt", "--device": "device", "--out": "dir_out", "--seed": "seed",
                     "--num-train": "not_here", "--num-test": "not_here", "--draws": "not_here"},
    "export": {"--checkpoint": "ckpt", "--out": "dir_out", "--format": "names"},
    "prepare": {"--config": "file_in", "--out": "dir_out", "--workers": "capped", "--set": "set"},
    "serve": {"--checkpoint": "ckpt", "--host": "host", "--port": "port", "--device": "device",
              "--threads": "count0"},
}

# Values that are not errors for one option although its kind lists them (with the reason).
ALLOWED: dict[tuple[str, str], set[str]] = {
    ("train", "--config"): {"{empty}"},  # an empty YAML file sets nothing: the defaults
    ("prepare", "--config"): {"{empty}"},  # (the fixture's data is found through --set in the case line)
    ("prepare", "--workers"): {"0", "-1"},  # 0: decode in this process; -1: one worker per core
    ("paper features", "--out"): set(),
    ("paper arithmetic", "--strengths"): set(),
    ("paper arithmetic", "--names"): {"nope"},  # free labels, not a fixed set
    ("paper arithmetic", "--direction-names"): {"nope"},
    ("paper forget", "--threshold"): {"inf", "-inf"},  # +-inf: drop no map / every map, both defined
    ("paper forget", "--max-maps"): {OVER},  # "at most" a huge number: no limit
    ("paper arithmetic", "--noise-scale"): set(),
    ("eval", "--seed"): {"-1"}, ("sample", "--seed"): {"-1"}, ("nn", "--seed"): {"-1"},
    ("classifier", "--seed"): {"-1"}, ("paper features", "--seed"): {"-1"}, ("paper walk", "--seed"): {"-1"},
    ("paper arithmetic", "--seed"): {"-1"}, ("paper filters", "--seed"): {"-1"},
    ("paper forget", "--seed"): {"-1"}, ("paper forget", "--show-seed"): {"-1"},
    ("paper report", "--seed"): {"-1"},
}

# A valid command line for each subcommand, small enough to finish in seconds; each case
# changes one option of it. `serve` never listens: the fixture stops it before the server runs.
BASE: dict[str, list[str]] = {
    "train": ["train", "--config", "{config}", "--runs-root", "{tmp}/runs"],
    "sample": ["sample", "--checkpoint", "{run}", "--num", "4", "--out", "{tmp}/out.png", "--device", "cpu"],
    "eval": ["eval", "--checkpoint", "{run}", "--num", "20", "--metrics", "fd_clf", "--classifier-epochs", "1",
             "--no-log", "--device", "cpu"],
    "classifier": ["classifier", "--dataset", "fashion_mnist", "--image-size", "16", "--channels", "1",
                   "--epochs", "1", "--data-root", "{data}", "--cache-dir", "{cache}", "--device", "cpu"],
    "nn": ["nn", "--checkpoint", "{run}", "--out", "{tmp}/nn.png", "--num", "20", "--num-show", "2",
           "--classifier-epochs", "1", "--device", "cpu"],
    "paper features": ["paper", "features", "--checkpoint", "{run}", "--num-train", "100", "--num-val", "50",
                       "--num-test", "50", "--per-class", "2", "--draws", "1", "--kmeans-centroids", "4",
                       "--methods", "dcgan", "--modes", "full"],
    "paper walk": ["paper", "walk", "--checkpoint", "{run}", "--out", "{tmp}/walk.png", "--mode", "linear",
                   "--rows", "2", "--steps", "3"],
    "paper arithmetic": ["paper", "arithmetic", "--checkpoint", "{run}", "--num", "16", "--a", "0,1", "--b", "2,3",
                         "--c", "4,5", "--out", "{tmp}/arith.png"],
    "paper filters": ["paper", "filters", "--checkpoint", "{run}", "--out", "{tmp}/filters.png",
                      "--num-features", "2", "--per-feature", "2", "--num-images", "50"],
    "paper forget": ["paper", "forget", "--checkpoint", "{run}", "--num", "16", "--marks", "{marks}",
                     "--out", "{tmp}/forget.png", "--show-num", "4"],
    "paper report": ["paper", "report", "--checkpoint", "{run}", "--out", "{tmp}/report", "--num-train", "100",
                     "--num-test", "50", "--draws", "1"],
    "export": ["export", "--checkpoint", "{run}", "--out", "{tmp}/export"],
    "prepare": ["prepare", "--config", "{config}", "--out", "{tmp}/prepared", "--workers", "1", "--no-progress"],
    "serve": ["serve", "--checkpoint", "{run}", "--port", "0", "--device", "cpu"],
}

# Options that only mean something with another one (added with the case).
COMPANIONS: dict[tuple[str, str], list[str]] = {
    ("eval", "--images"): ["--dataset", "fashion_mnist", "--image-size", "16", "--channels", "1",
                           "--data-root", "{data}"],
    ("eval", "--inception-weights"): ["--metrics", "fid"],
    ("paper arithmetic", "--direction-to"): ["--direction-from", "6,7"],
    ("paper arithmetic", "--direction-from"): ["--direction-to", "6,7"],
    ("paper arithmetic", "--base"): ["--direction-from", "6,7", "--direction-to", "8,9"],
    ("paper arithmetic", "--direction-names"): ["--direction-from", "6,7", "--direction-to", "8,9"],
    ("paper arithmetic", "--direction-out"): ["--direction-from", "6,7", "--direction-to", "8,9"],
    ("paper features", "--per-class"): ["--modes", "few"],
    ("paper features", "--draws"): ["--modes", "few"],
    ("paper features", "--kmeans-centroids"): ["--methods", "kmeans"],
}

# Failures the suite found in code owned elsewhere, run as strict xfails until fixed: node id -> reason.
# Each is listed, with its reproduction and the suggested fix, in docs/reliability.md.
KNOWN_IDS: dict[str, str] = {
}


def _known(test: str, case_id: str) -> str | None:
    return KNOWN_IDS.get(f"{test}[{case_id}]")

# Known failures too dangerous to run even as an xfail (they exhaust the machine).
UNSAFE: dict[tuple[str, str, str], str] = {
}


def with_option(command: str, option: str, value: str) -> list[str]:
    argv = list(BASE[command])
    if option == "--resume":  # --resume replaces --config
        argv = ["train", "--resume", value, "--runs-root", "{tmp}/runs"]
    elif option == "--images":  # --images replaces --checkpoint
        i = argv.index("--checkpoint")
        argv[i:i + 2] = ["--images", value]
    elif option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    for extra_opt, extra_val in zip(*[iter(COMPANIONS.get((command, option), []))] * 2):
        if extra_opt in argv:
            argv[argv.index(extra_opt) + 1] = extra_val
        else:
            argv += [extra_opt, extra_val]
    return argv


def _marks(fast: bool, known: str | None = None, unsafe: str | None = None) -> tuple:
    """A case's marks: slow unless picked for the fast run; a strict xfail for a known failure."""
    marks: tuple = () if fast else (pytest.mark.slow,)
    if known:
        marks += (pytest.mark.xfail(strict=True, reason=known),)
    if unsafe:
        marks += (pytest.mark.xfail(run=False, reason=unsafe),)
    return marks


def option_cases() -> list:
    """Every bad value of every option. The fast run takes one value per option, rotating
    through the kind's values so that together they try each value somewhere."""
    cases = []
    for k, (command, option, kind) in enumerate((c, o, kd) for c, opts in OPTIONS.items() for o, kd in opts.items()):
        if kind == "set":
            continue  # config keys: `key_cases`
        values = [v for v in BAD[kind] if v not in ALLOWED.get((command, option), ())]
        for j, value in enumerate(values):
            marks = _marks(j == k % len(values), _known("test_bad_option_value", f"{command}{option}={value}"),
                           UNSAFE.get((command, option, value)))
            cases.append(pytest.param(command, option, value, marks=marks, id=f"{command}{option}={value}"))
    return cases


# --- config keys -------------------------------------------------------------------------------

# Out-of-range values per key (besides the type-wrong ones every key gets); "" means none.
RANGE: dict[str, tuple[str, ...]] = {
    "name": ("", "a/b", "../up", ".hidden", "x" * 300),
    "data.name": ("nope",), "data.root": ("",), "data.image_size": ("0", "17", "1024"),
    "data.channels": ("0", "2", "4"), "data.download": (), "data.split": ("nope", ""),
    "data.lsun_classes": (), "data.subset": ("-1",), "data.in_memory": ("sometimes",),
    "data.cache_dir": ("",), "data.num_workers": ("-2", HUGE),
    "model.nz": ("0", "-1", HUGE), "model.ngf": ("0", "-1", HUGE), "model.ndf": ("0", "-1", HUGE),
    "model.kernel_size": ("3", "0"), "model.projection": ("nope",), "model.d_head": ("nope",),
    "model.z_dist": ("nope",),
    "train.batch_size": ("0", "-1", "1", HUGE), "train.batch_size_scope": ("nope",), "train.epochs": ("-1",),
    "train.max_steps": ("-1",), "train.lr_g": ("0", "-1", "nan", "inf", "100"),
    "train.lr_d": ("0", "-1", "nan", "inf", "100"), "train.beta1": ("-0.1", "1", "nan", "inf"),
    "train.beta2": ("-0.1", "1", "nan", "inf"), "train.weight_decay": ("-1", "nan", "inf"),
    "train.d_steps": ("0", "-1", HUGE), "train.g_steps": ("0", "-1", HUGE), "train.seed": ("-1",),
    "train.device": ("nope", "cuda:99", "cuda:x", ""), "train.precision": ("fp8",), "train.threads": ("-1", "2000", HUGE),
    "train.channels_last": ("maybe",), "train.compile": (), "train.sync_bn": (),
    "train.log_every": ("0", "-1"), "train.sample_every": ("0", "-1"), "train.checkpoint_every": ("-1",),
    "train.num_fixed": ("0", "-1", HUGE), "train.tensorboard": (), "train.progress": (),
    "eval.every": ("-1",), "eval.metrics": ("nope", "fd_clf,nope"), "eval.num_samples": ("0", "-1", HUGE),
    "eval.best": (), "eval.split": (), "eval.seed": ("-1",), "eval.classifier_epochs": ("0", "-1", HUGE),
    "eval.inception_weights": (), "eval.ssl_steps": ("0", "-1", "100001", HUGE),
    "model.d_norm": ("nope",), "train.loss": ("wgan",), "train.ema": ("-0.1", "1", "nan"),
    "train.augment": ("flip", "color,nope"),
    "train.r1_gamma": ("-1", "nan", "inf", "1e9"), "train.r2_gamma": ("-1", "nan", "inf", "1e9"),
    "train.reg_every": ("0", "-1", "1001", HUGE), "train.lr_schedule": ("nope", "step"),
    "train.lr_warmup": ("-1",), "train.ema_kimg": ("-1", "nan", "inf", "1e9"),
    "train.ema_rampup": ("-0.1", "2", "nan"),
}
# Extra --set lines a value needs to be reached (e.g. eval.best matters only when eval.every > 0).
KEY_COMPANIONS = {"eval.best": ["eval.every=2"], "eval.split": ["eval.every=2"],
                  "eval.inception_weights": ["eval.every=2", "eval.metrics=fid", "eval.best=fid"],
                  "eval.metrics": ["eval.every=2"], "eval.num_samples": ["eval.every=2"]}
EVAL_RANGE = {"eval.best": ("nope", "is_clf_x"), "eval.split": ("nope",),
              "eval.inception_weights": ("{missing}",)}



def _type_wrong(default) -> tuple[str, ...]:
    """Values of the wrong type for a key whose default is `default` (as --set strings)."""
    if isinstance(default, bool):
        return ("maybe", "2", "")
    if isinstance(default, int):
        return ("abc", "2.5", "", "nan", "1e3", OVER)
    if isinstance(default, float):
        return ("abc", "", "0x", "1..0")
    return ()  # strings and lists take any text: their range cases cover them


def key_cases() -> list:
    """Type-wrong and out-of-range values of every key; the fast run takes one of each per key."""
    cases = []
    for k, (key, default, _) in enumerate(describe_keys()):
        wrong = list(_type_wrong(default))
        ranged = list(RANGE.get(key, ())) + list(EVAL_RANGE.get(key, ()))
        for group in (wrong, ranged):
            for j, value in enumerate(dict.fromkeys(group)):
                marks = _marks(j == k % len(group), _known("test_bad_config_value", f"{key}={value[:40]}"))
                cases.append(pytest.param(key, value, marks=marks, id=f"{key}={value[:40]}"))
    return cases


# YAML values of the wrong type, per type of the key's default.
def _yaml_wrong(default) -> list:
    if isinstance(default, bool):
        return ["maybe", 2, [True]]
    if isinstance(default, (int, float)):
        return ["abc", [1], {"a": 1}, True, None]
    if isinstance(default, list):
        return [{"a": 1}, 7]
    return [[1, 2], {"a": 1}, None]


def yaml_cases() -> list:
    cases = []
    for k, (key, default, _) in enumerate(describe_keys()):
        values = _yaml_wrong(default)
        for j, value in enumerate(values):
            cases.append(pytest.param(key, value, marks=_marks(j == k % len(values)), id=f"{key}:{json.dumps(value)}"))
    return cases


# --- the harness -------------------------------------------------------------------------------


@dataclass
class Outcome:
    rc: int | str  # the exit code, or "traceback"
    out: str
    err: str


class Hung(BaseException):
    """A command still running after its time limit: a bad value was taken and run with."""


def _alarm(signum, frame):
    raise Hung


def run_cli(argv: list[str], capsys, limit_s: int = 60) -> Outcome:
    """`dcgan argv` in this process: exit code, stdout, stderr (a raised exception is a traceback;
    a command still running after `limit_s` is stopped and reported as "hung")."""
    capsys.readouterr()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(limit_s)
    try:
        rc: int | str = main(argv)
    except SystemExit as e:  # argparse's usage errors
        rc = e.code if isinstance(e.code, int) else 1
    except Hung:
        captured = capsys.readouterr()
        return Outcome("hung", captured.out, captured.err + f"\n(still running after {limit_s} s)")
    except BaseException:  # noqa: BLE001 - anything escaping main() is a traceback for the user
        captured = capsys.readouterr()
        return Outcome("traceback", captured.out, captured.err + traceback.format_exc())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    captured = capsys.readouterr()
    return Outcome(rc, captured.out, captured.err)


ARGPARSE_ERROR = re.compile(r"^dcgan( \w+)*: error: ")


def assert_user_error(o: Outcome, *names: str, after_progress: bool = False) -> str:
    """Exit 2, one `error:` line (or argparse's usage + error) naming one of `names`; returns it.
    `after_progress`: a command that had started (a training run) may have printed its
    progress lines first; the error is then the last line and the only one."""
    assert o.rc not in ("traceback", "hung"), o.err[-3000:]
    assert "Traceback" not in o.err + o.out, o.err
    lines = [line for line in o.err.strip().splitlines() if line.strip()]
    assert o.rc == 2, f"exit {o.rc}; stderr: {o.err[-2000:]}"
    assert lines, "no message on stderr"
    if lines[0].startswith("usage:"):  # argparse: usage lines, then `dcgan ...: error: ...`
        message = lines[-1]
        assert ARGPARSE_ERROR.match(message), o.err
    else:
        if after_progress:
            lines = lines[-1:] if sum("error" in line.lower() for line in lines) == 1 else lines
        assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {o.err!r}"
        message = lines[0]
    wanted = [n for n in names if n]
    if wanted:
        low = message.lower()
        assert any(n.lower() in low for n in wanted), f"{message!r} names none of {wanted}"
    return message


def snapshot(*roots: Path) -> dict[Path, tuple[int, int, int]]:
    """Every file under `roots` with its size, modification time and inode (a replaced file
    gets a new inode; a rewritten one a new mtime)."""
    files = {}
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and not p.is_symlink():
                st = p.stat()
                files[p] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return files


def assert_unchanged(before: dict, after: dict) -> None:
    changed = sorted(str(p) for p in before if after.get(p) != before[p])
    added = sorted(str(p) for p in after if p not in before)
    assert not changed, f"files changed or removed: {changed}"
    assert not added, f"files written by a failed command: {added}"


class Exploit:
    """Unpickling this calls os.mkdir(marker): a file that runs code when loaded unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, synthetic_root, cache_dir) -> Path:
    """A tiny finished run (8 steps, 16 px) that the cases read and must never change."""
    from conftest import tiny_config

    from dcgan.train import train

    return train(tiny_config(synthetic_root, cache_dir), run_dir=tmp_path_factory.mktemp("fuzz") / "run").run_dir


@pytest.fixture
def sandbox(tmp_path, trained_run, synthetic_root, cache_dir, monkeypatch):
    """The working folder of one case: bad files of every kind, and the placeholder values."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DCGAN_INCEPTION_WEIGHTS", raising=False)
    import uvicorn

    def no_server(*a, **k):
        raise AssertionError("dcgan serve started a server for a bad value")

    monkeypatch.setattr(uvicorn.Server, "run", no_server)
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "out_dir.png").mkdir()
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "junk.bin").write_bytes(os.urandom(4096))
    (tmp_path / "a_file.txt").write_text("not a folder\n")
    config = {"name": "fuzz", "data": {"name": "fashion_mnist", "root": str(synthetic_root), "image_size": 16,
                                       "channels": 1, "download": False, "subset": 128,
                                       "cache_dir": str(cache_dir)},
              "model": {"ngf": 8, "ndf": 8},
              "train": {"batch_size": 32, "max_steps": 2, "log_every": 1, "sample_every": 2,
                        "checkpoint_every": 0, "num_fixed": 4, "progress": False, "device": "cpu"},
              "eval": {"every": 0}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "marks.json").write_text(json.dumps(
        {"samples": [{"index": 3, "boxes": [[0, 0, 8, 8]]},
                                           {"index": 5, "boxes": [[4, 4, 12, 12]]}]}))
    values = {"tmp": str(tmp_path), "run": str(trained_run), "data": str(synthetic_root), "cache": str(cache_dir),
              "missing": str(tmp_path / "missing"), "dir": str(tmp_path / "a_dir"),
              "dir_png": str(tmp_path / "out_dir.png"), "empty": str(tmp_path / "empty.bin"),
              "junk": str(tmp_path / "junk.bin"), "file": str(tmp_path / "a_file.txt"),
              "config": str(tmp_path / "tiny.yaml"), "marks": str(tmp_path / "marks.json")}
    return Sandbox(tmp_path, trained_run, values)


@dataclass
class Sandbox:
    tmp: Path
    run: Path
    values: dict[str, str]

    def fill(self, text: str) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: self.values.get(m.group(1), m.group(0)), text)

    def argv(self, argv: list[str]) -> list[str]:
        return [self.fill(a) for a in argv]

    def files(self) -> dict:
        return snapshot(self.tmp, self.run)


def _with_parents(names: list[str], tmp: Path) -> list[str]:
    """`names`, and for a path inside the sandbox the folders above it (an error about
    `FILE/x.png` may name FILE, the part that is wrong)."""
    out = list(names)
    for n in names:
        p = Path(n)
        if p.is_absolute() and p.is_relative_to(tmp):
            out += [str(q) for q in p.parents if q.is_relative_to(tmp) and q != tmp]
    return out


def check(sandbox: Sandbox, capsys, argv: list[str], *names: str) -> str:
    """Run one bad command line; assert a clean user error and that no file changed."""
    before = sandbox.files()
    outcome = run_cli(sandbox.argv(argv), capsys)
    message = assert_user_error(outcome, *_with_parents([sandbox.fill(n) for n in names], sandbox.tmp))
    assert_unchanged(before, sandbox.files())
    return message


# --- the tests ---------------------------------------------------------------------------------


def test_every_option_is_fuzzed():
    """OPTIONS lists every option of every subcommand, so none is left out of the fuzz."""
    from dcgan.cli import build_parser

    parser = build_parser()
    found: dict[str, set[str]] = {}

    def walk(p, prefix: str) -> None:
        for action in p._actions:
            if action.choices and hasattr(action, "_name_parser_map"):
                for name, child in action._name_parser_map.items():
                    walk(child, f"{prefix} {name}".strip())
            elif action.option_strings and action.nargs != 0 and "--help" not in action.option_strings:
                found.setdefault(prefix, set()).add(max(action.option_strings, key=len))

    walk(parser, "")
    found.pop("paper", None)
    assert {c: set(o) for c, o in OPTIONS.items()} == found


def test_every_config_key_is_fuzzed():
    keys = {k for k, _, _ in describe_keys()}
    assert keys == set(RANGE), f"add to RANGE: {sorted(keys - set(RANGE))}; drop: {sorted(set(RANGE) - keys)}"


@pytest.mark.parametrize("command", [c for c in BASE if c in ("sample", "paper walk", "paper arithmetic",
                                                               "export", "paper forget")])
def test_base_command_lines_work(command, sandbox, capsys):
    """The command lines the cases start from are valid (so each case's error is its own)."""
    outcome = run_cli(sandbox.argv(BASE[command]), capsys)
    assert outcome.rc == 0, outcome.err[-3000:]


@pytest.mark.parametrize("command, option, value", option_cases())
def test_bad_option_value(command, option, value, sandbox, capsys):
    names = [option, value, option.lstrip("-")]
    if value in ("", ",,"):
        names = [option, option.lstrip("-"), "empty", "''"]
    if value in (HUGE, OVER):  # main()'s classes of fault: clean, though they do not name the option
        names += ["out of memory", "out of the range"]
    check(sandbox, capsys, with_option(command, option, value), *names)


@pytest.mark.parametrize("key, value", key_cases())
def test_bad_config_value(key, value, sandbox, capsys):
    argv = BASE["train"] + ["--set", f"{key}={value}"]
    for extra in KEY_COMPANIONS.get(key, []):
        argv += ["--set", extra]
    check(sandbox, capsys, argv, key, value)


@pytest.mark.parametrize("key, value", yaml_cases())
def test_wrong_type_in_yaml(key, value, sandbox, capsys):
    section, _, name = key.rpartition(".")
    data = yaml.safe_load((sandbox.tmp / "tiny.yaml").read_text())
    if section:
        data.setdefault(section, {})[name] = value
    else:
        data[name] = value
    (sandbox.tmp / "bad.yaml").write_text(yaml.safe_dump(data))
    check(sandbox, capsys, ["train", "--config", "{tmp}/bad.yaml", "--runs-root", "{tmp}/runs"], key)


def test_set_syntax(sandbox, capsys):
    for bad in ("noequals", "=3", "model=3", "model.nz.x=3", "data.name.x=1", "nope.key=1", " = "):
        key = bad.split("=")[0].strip()
        check(sandbox, capsys, BASE["train"] + ["--set", bad], key or "config key", key.rpartition(".")[0] or key)


def test_unknown_command_and_option(sandbox, capsys):
    for argv in (["nope"], [], ["sample"], ["sample", "--nope", "1"], ["paper"], ["paper", "nope"],
                 ["train", "--nproc"], ["eval", "--checkpoint", "{run}", "--images", "{dir}"]):
        check(sandbox, capsys, argv)


# --- hostile and broken files ------------------------------------------------------------------

CKPT_COMMANDS = {  # every command that reads a checkpoint: how to call it on FILE
    "sample": lambda f: with_option("sample", "--checkpoint", f),
    "eval": lambda f: with_option("eval", "--checkpoint", f),
    "nn": lambda f: with_option("nn", "--checkpoint", f),
    "walk": lambda f: with_option("paper walk", "--checkpoint", f),
    "features": lambda f: with_option("paper features", "--checkpoint", f),
    "export": lambda f: with_option("export", "--checkpoint", f),
    "serve": lambda f: with_option("serve", "--checkpoint", f),
    "resume": lambda f: ["train", "--resume", f, "--runs-root", "{tmp}/runs"],
}


def _ckpt(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


def make_checkpoint(kind: str, tmp: Path, run: Path) -> Path:
    """A broken or hostile checkpoint of `kind`; Exploit ones would create tmp/pwned if loaded unsafely."""
    path = tmp / f"{kind}.pt"
    marker = tmp / "pwned"
    real = (run / "checkpoints" / "last.pt").read_bytes()
    if kind == "truncated":
        path.write_bytes(real[: len(real) // 2])
    elif kind == "flipped":  # one damaged byte in the middle
        data = bytearray(real)
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif kind == "pickle_exploit":  # a plain pickle whose loading calls os.mkdir
        path.write_bytes(pickle.dumps({"G": Exploit(marker), "D": {}, "config": {}}))
    elif kind == "torch_exploit":  # torch's zip format with the same payload inside
        torch.save({"G": Exploit(marker), "D": {}, "config": {}}, path)
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "list":
        torch.save([1, 2, 3], path)
    elif kind == "other_dict":
        torch.save({"weights": torch.zeros(1)}, path)
    elif kind == "bad_config":
        ck = _ckpt(run)
        ck["config"] = {"model": {"nz": "many"}}
        torch.save(ck, path)
    elif kind == "config_not_dict":
        ck = _ckpt(run)
        ck["config"] = [1, 2]
        torch.save(ck, path)
    elif kind == "wrong_shapes":
        ck = _ckpt(run)
        ck["G"] = {k: torch.zeros(1) for k in ck["G"]}
        torch.save(ck, path)
    elif kind == "g_not_dict":
        ck = _ckpt(run)
        ck["G"] = "weights"
        torch.save(ck, path)
    elif kind == "missing_opt":  # loads for sampling, cannot be resumed
        ck = _ckpt(run)
        del ck["opt_G"], ck["step"]
        torch.save(ck, path)
    elif kind == "nan_weights":
        ck = _ckpt(run)
        ck["G"] = {k: v.float().fill_(math.nan) if v.is_floating_point() else v for k, v in ck["G"].items()}
        torch.save(ck, path)
    else:
        raise AssertionError(kind)
    return path


CKPT_KINDS = ("truncated", "pickle_exploit", "torch_exploit", "tensor", "list", "other_dict",
              "bad_config", "config_not_dict", "wrong_shapes", "g_not_dict", "missing_opt", "nan_weights")
# Broken files some commands may use: resume needs the optimiser state, sampling does not.
CKPT_OK = {("missing_opt", c) for c in CKPT_COMMANDS if c != "resume"} | \
          {("nan_weights", c) for c in ("export", "serve", "features", "resume")}


def _file_cases(test, kinds, commands, ok, fast=lambda kind, command: True):
    cases = []
    for kind in kinds:
        for command in commands:
            if (kind, command) in ok:
                continue
            marks = _marks(fast(kind, command), _known(test, f"{kind}-{command}"))
            cases.append(pytest.param(kind, command, marks=marks, id=f"{kind}-{command}"))
    return cases


def _fast_checkpoint_case(kind: str, command: str) -> bool:
    """Fast run: every kind through `sample`, the code-running files through every command."""
    return command == "sample" or "exploit" in kind


@pytest.mark.parametrize("kind, command", _file_cases("test_broken_checkpoint", CKPT_KINDS, CKPT_COMMANDS, CKPT_OK,
                                                      _fast_checkpoint_case))
def test_broken_checkpoint(kind, command, sandbox, capsys):
    path = make_checkpoint(kind, sandbox.tmp, sandbox.run)
    check(sandbox, capsys, CKPT_COMMANDS[command](str(path)), str(path), "checkpoint")
    assert not (sandbox.tmp / "pwned").exists(), "loading the file ran code"


def make_tensor_file(kind: str, tmp: Path) -> Path:
    """A broken --z / classifier / Inception weights file of `kind`."""
    path = tmp / f"{kind}.pt"
    if kind == "junk":
        path.write_bytes(os.urandom(2048))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "pickle_exploit":
        path.write_bytes(pickle.dumps(Exploit(tmp / "pwned")))
    elif kind == "torch_exploit":
        torch.save({"z": Exploit(tmp / "pwned")}, path)
    elif kind == "wrong_shape":
        torch.save(torch.zeros(3, 7), path)
    elif kind == "int_tensor":
        torch.save(torch.zeros(16, 100, dtype=torch.int64), path)
    elif kind == "nan_tensor":
        torch.save(torch.full((16, 100), math.nan), path)
    elif kind == "dict":
        torch.save({"weights": torch.zeros(2)}, path)
    elif kind == "string":
        torch.save("hello", path)
    else:
        raise AssertionError(kind)
    return path


Z_COMMANDS = {
    "arithmetic": lambda f: with_option("paper arithmetic", "--z", f),
    "forget": lambda f: with_option("paper forget", "--z", f),
}
TENSOR_KINDS = ("junk", "empty", "pickle_exploit", "torch_exploit", "wrong_shape", "int_tensor", "nan_tensor",
                "dict", "string")
WEIGHT_COMMANDS = {  # files of network weights
    "classifier": lambda f: with_option("eval", "--classifier", f),
    "inception": lambda f: with_option("eval", "--inception-weights", f),
    "inception_env": lambda f: ["env:" + f] + with_option("eval", "--metrics", "fid"),
}


@pytest.mark.parametrize("kind, command", _file_cases("test_broken_z_file", TENSOR_KINDS, Z_COMMANDS,
                                                      {("int_tensor", c) for c in Z_COMMANDS}))
def test_broken_z_file(kind, command, sandbox, capsys):
    path = make_tensor_file(kind, sandbox.tmp)
    check(sandbox, capsys, Z_COMMANDS[command](str(path)), str(path), "--z")
    assert not (sandbox.tmp / "pwned").exists(), "loading the file ran code"


@pytest.mark.parametrize("kind, command", _file_cases(
    "test_broken_weights_file", [k for k in TENSOR_KINDS if k not in ("int_tensor", "nan_tensor")], WEIGHT_COMMANDS,
    set()))
def test_broken_weights_file(kind, command, sandbox, capsys, monkeypatch, recwarn):
    path = make_tensor_file(kind, sandbox.tmp)
    argv = WEIGHT_COMMANDS[command](str(path))
    if argv[0].startswith("env:"):
        monkeypatch.setenv("DCGAN_INCEPTION_WEIGHTS", argv.pop(0)[4:])
    check(sandbox, capsys, argv, str(path), "weights", "classifier", "inception")
    assert not (sandbox.tmp / "pwned").exists(), "loading the file ran code"
    assert not [w for w in recwarn if "indexing" in str(w.message)], "looked a key up in a tensor"


YAML_FILES = {
    "invalid": "data: [1, 2\nmodel: {",
    "python_tag": "name: !!python/object/apply:os.mkdir ['{tmp}/pwned']\n",
    "python_name": "train: !!python/name:os.system\n",
    "list": "- data\n- model\n",
    "scalar": "just a string\n",
    "null_section": "data:\nmodel:\n  nz: 10\n",
    "tabs": "data:\n\tname: mnist\n",
    "bomb": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
            "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
    "deep": "[" * 50000,
    "binary": None,  # random bytes (not UTF-8)
    "huge": None,  # 3 MB of valid YAML
    "key_not_string": "1: 2\n",
    "section_list": "train: [1, 2]\n",
}


@pytest.mark.parametrize("kind", list(YAML_FILES))
def test_broken_yaml_config(kind, sandbox, capsys):
    path = sandbox.tmp / f"{kind}.yaml"
    if kind == "binary":
        path.write_bytes(b"\xff\xfe\x00" + os.urandom(512))
    elif kind == "huge":
        path.write_text("name: big\n" + "".join(f"# comment line {i} padding padding padding\n"
                                                 for i in range(70000)) + "x: [" + "1, " * 10000 + "1]\n")
    else:
        path.write_text(sandbox.fill(YAML_FILES[kind]))
    check(sandbox, capsys, ["train", "--config", str(path), "--runs-root", "{tmp}/runs"], str(path), "config",
          "must be a mapping")
    assert not (sandbox.tmp / "pwned").exists(), "loading the config ran code"


MARKS = {
    "invalid_json": "{\"seed\": 0,",
    "list": "[1, 2, 3]",
    "no_samples": "{\"seed\": 0, \"num\": 16}",
    "samples_not_list": "{\"samples\": 3}",
    "index_out_of_range": "{\"samples\": [{\"index\": 99, \"boxes\": [[0, 0, 4, 4]]}]}",
    "negative_index": "{\"samples\": [{\"index\": -1, \"boxes\": [[0, 0, 4, 4]]}]}",
    "index_string": "{\"samples\": [{\"index\": \"three\", \"boxes\": [[0, 0, 4, 4]]}]}",
    "box_out_of_image": "{\"samples\": [{\"index\": 1, \"boxes\": [[0, 0, 400, 400]]}]}",
    "box_inverted": "{\"samples\": [{\"index\": 1, \"boxes\": [[8, 8, 2, 2]]}]}",
    "box_short": "{\"samples\": [{\"index\": 1, \"boxes\": [[0, 0]]}]}",
    "box_nan": "{\"samples\": [{\"index\": 1, \"boxes\": [[NaN, 0, 4, 4]]}]}",
    "mask_wrong_shape": "{\"samples\": [{\"index\": 1, \"mask\": [[0, 1], [1, 0]]}]}",
    "no_region": "{\"samples\": [{\"index\": 1}]}",
    "seed_string": "{\"seed\": \"x\", \"samples\": [{\"index\": 1, \"boxes\": [[0, 0, 4, 4]]}]}",
    "num_mismatch": "{\"num\": 5, \"samples\": [{\"index\": 7, \"boxes\": [[0, 0, 4, 4]]}]}",
    "binary": None,
    "empty": "",
}


@pytest.mark.parametrize("kind", [pytest.param(k, marks=_marks(True, _known("test_broken_marks_file", k)))
                                  for k in MARKS])
def test_broken_marks_file(kind, sandbox, capsys):
    path = sandbox.tmp / f"{kind}.json"
    if kind == "binary":
        path.write_bytes(b"\xff\xfe" + os.urandom(256))
    else:
        path.write_text(MARKS[kind])
    check(sandbox, capsys, with_option("paper forget", "--marks", str(path)), str(path), "marks", "--marks",
          "box", "mask", "sample")


def _image_folder(root: Path, kinds: tuple[str, ...]) -> Path:
    """A folder of broken image files (and any valid ones asked for)."""
    import numpy as np
    from PIL import Image

    root.mkdir()
    rng = np.random.default_rng(0)
    for i, kind in enumerate(kinds):
        if kind == "good":
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / f"good{i}.png")
        elif kind == "truncated_jpg":
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"t{i}.jpg")
            data = (root / f"t{i}.jpg").read_bytes()
            (root / f"t{i}.jpg").write_bytes(data[: len(data) // 2])
        elif kind == "corrupt_png":
            (root / f"c{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300))
        elif kind == "zero":
            (root / f"z{i}.png").write_bytes(b"")
        elif kind == "text":
            (root / f"notes{i}.jpg").write_text("not an image\n")
        elif kind == "dir":
            (root / f"sub{i}.png").mkdir()
    return root


BROKEN_IMAGES = ("truncated_jpg", "corrupt_png", "zero", "text", "dir")


def test_image_folder_without_a_readable_image(sandbox, capsys):
    folder = _image_folder(sandbox.tmp / "bad_images", BROKEN_IMAGES * 2)
    check(sandbox, capsys, with_option("eval", "--images", str(folder)), str(folder), "image")
    check(sandbox, capsys, BASE["train"] + ["--set", "data.name=folder", "--set", f"data.root={folder}",
                                            "--set", "data.channels=3"], str(folder), "image")


@pytest.mark.parametrize("kind", [pytest.param(k, marks=() if k == "truncated_jpg" else (pytest.mark.slow,))
                                  for k in BROKEN_IMAGES])
def test_image_folder_with_some_broken_files_skips_and_counts_them(kind, sandbox, capsys, caplog, tmp_path):
    """Broken files among good ones are skipped and counted; the run goes on."""
    folder = _image_folder(tmp_path / "images", ("good",) * 40 + (kind,) * 3)
    argv = sandbox.argv(BASE["train"] + ["--set", "data.name=folder", "--set", f"data.root={folder}",
                                         "--set", "data.channels=3", "--set", "data.subset=0",
                                         "--set", "train.batch_size=8"])
    caplog.set_level("WARNING")
    outcome = run_cli(argv, capsys)
    assert outcome.rc == 0, outcome.err[-3000:]
    if kind != "dir":  # a folder named *.png is not a file at all
        assert re.search(r"skipped 3 unreadable", caplog.text + outcome.err), caplog.text + outcome.err


# --- YAML structure: aliases, duplicate keys, scalars YAML 1.1 reinterprets -----------------------


def _alias_bomb(levels: int, width: int = 9) -> str:
    """A "billion laughs": each level lists `width` aliases of the one before (width**levels values)."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _duplicate_cases() -> dict[str, str]:
    """A section given twice, and a key given twice inside each section (with a line between)."""
    cases = {f"dup_section_{s}": f"{s}:\n  {k}: {v}\nname: x\n{s}:\n  {k}: {v}\n"
             for s, k, v in (("data", "subset", 8), ("model", "nz", 10), ("train", "max_steps", 2),
                             ("eval", "every", 0))}
    for key, default, _ in describe_keys():
        section, _, name = key.rpartition(".")
        if not section or f"dup_key_{section}" in cases:
            continue
        value = json.dumps(default)
        cases[f"dup_key_{section}"] = f"{section}:\n  {name}: {value}\n  # note\n  {name}: {value}\n"
    cases["dup_top_key"] = "name: a\nname: b\n"
    return cases


YAML_STRUCTURE = {
    **{f"alias_bomb_{n}": _alias_bomb(n) for n in (5, 6, 7, 9)},  # 9**5 .. 9**9 values
    "alias_wide": "x: &x [" + ", ".join(["v"] * 200) + "]\ny: [" + ", ".join(["*x"] * 60) + "]\n",
    "alias_recursive_list": "data:\n  lsun_classes: &a [x, *a]\n",
    "alias_recursive_map": "train: &t\n  batch_size: 4\n  more: *t\n",
    **_duplicate_cases(),
    # plain scalars YAML 1.1 would turn into numbers or booleans, in keys that need another type
    **{f"yaml11_{k.replace('.', '_')}_{i}": f"{k.split('.')[0]}:\n  {k.split('.')[1]}: {v}\n"
       for k in ("train.seed", "train.max_steps") for i, v in enumerate(("0x10", "0o10", "1:30", "yes", "1e3"))},
    "yaml11_list_as_number": "train:\n  augment: 010\n",
}


@pytest.mark.parametrize("kind", list(YAML_STRUCTURE))
def test_yaml_structure_is_refused_in_one_short_line(kind, sandbox, capsys):
    """Alias bombs (refused by the expansion budget, not by running out of memory), recursive
    aliases, duplicate keys and sections, and YAML 1.1 numbers in keys of another type: one short
    line naming the file, the key or the value, nothing written."""
    path = sandbox.tmp / f"{kind}.yaml"
    path.write_text(YAML_STRUCTURE[kind])
    message = check(sandbox, capsys, ["train", "--config", str(path), "--runs-root", "{tmp}/runs"], str(path),
                    "train.seed", "train.max_steps", "train.augment")
    assert len(message) < 400, message
    if kind.startswith("dup"):
        assert "twice" in message and "lines" in message, message


# Scalars YAML 1.1 reads as another type (octal, sexagesimal, booleans, hex, dates, nulls in
# words): a string key keeps the text as written.
YAML11_TEXT = ("010", "0o17", "0x1F", "1:30", "190:20:30", "yes", "no", "on", "off", "y", "n", "True", "1_000",
               "2001-12-14", ".inf", "-.Inf", ".NaN", "1e3", "0b101", "+12")


@pytest.mark.parametrize("text", YAML11_TEXT)
def test_string_keys_keep_the_text_yaml_would_reinterpret(text, tmp_path):
    from dcgan.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(f"data:\n  root: {text}\n  cache_dir: {text}\neval:\n  inception_weights: {text}\n"
                    f"  split: {text}\n")
    cfg = load_config(path)
    assert cfg.data.root == text and cfg.data.cache_dir == text
    assert cfg.eval.inception_weights == text and cfg.eval.split == text
    if set(text) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+") and text[0] != ".":
        path.write_text(f"name: {text}\n")
        assert load_config(path).name == text  # e.g. `name: 010` names the run 010-001, not 8-001


def test_eval_with_a_size_or_channels_mismatch_writes_no_cache(sandbox, capsys):
    """`dcgan eval` of a 16 px grayscale checkpoint at 32 px or in RGB: refused before any real
    data is decoded or cached (the cache folder stays absent)."""
    cache = sandbox.tmp / "eval-cache"
    for option, value in (("--image-size", "32"), ("--channels", "3")):
        argv = with_option("eval", option, value) + ["--cache-dir", str(cache)]
        message = check(sandbox, capsys, argv, option)
        assert "does not match the checkpoint" in message
    assert not cache.exists()
