"""A hostile pass over the surfaces of issue 17: export, the explorer, YAML configs, run folders,
data, and pickles / torch-zip payloads. Each case runs in its own scratch folder under /tmp with
tiny settings (16 px, ngf/ndf 8, batch 32, a few steps), one at a time, and is classified:

  clean      exit 0 where that was intended, or exit 2 with one `error:` line (argparse's usage
             error counts) and nothing of the user's changed
  traceback  an exception escaped (a traceback on stderr, or an uncaught exception in the API)
  data-loss  a file of the user's (or of a finished run / earlier export) changed or vanished
  hang       still running after the case's time limit (killed)
  lockout    the explorer or a run could not be used afterwards
  security   code ran from a loaded file, or a file outside the allowed places was read/written
  unexpected exit 0 where a refusal was wanted, or another exit code (judged by hand in the doc)

Commands run in a forked child of this process (dcgan.cli.main(argv), its own stdout/stderr
files), so torch is imported once; the explorer, the concurrent starts and the kill -9 cases run
real `dcgan` processes.

    OMP_NUM_THREADS=1 .venv/bin/python bench/hostile_pass.py [--only SUBSTRING] [--out bench/results-hostile-2.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

torch.set_num_threads(1)

from conftest import write_fashion_mnist_idx  # noqa: E402

from dcgan.cli import main  # noqa: E402

SCRATCH = Path("/tmp/hostile-pass-2")
DCGAN = str(Path(sys.executable).parent / "dcgan")
CASES: list[dict] = []


class Exploit:
    """Unpickling this calls os.mkdir(marker)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


# --- running one command ---------------------------------------------------------------------------


def cli(argv: list[str], cwd: Path, limit_s: float = 90) -> dict:
    """`dcgan argv` in a forked child: rc ("hang" after limit_s), stdout, stderr."""
    out, err = cwd / ".case-stdout", cwd / ".case-stderr"
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.chdir(cwd)
            fo = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            fe = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fo, 1)
            os.dup2(fe, 2)
            sys.stdout = os.fdopen(1, "w", buffering=1)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            try:
                rc = main(argv)
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
                rc = 99
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(rc if isinstance(rc, int) else 0)
        except BaseException:  # noqa: BLE001
            os._exit(98)
    deadline = time.monotonic() + limit_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            rc = "hang"
            break
        time.sleep(0.05)
    o, e = out.read_text(errors="replace"), err.read_text(errors="replace")
    out.unlink()
    err.unlink()
    return {"rc": rc, "out": o, "err": e}


def snapshot(*roots: Path) -> dict:
    files = {}
    for root in roots:
        paths = [root] if root.is_file() else (root.rglob("*") if root.is_dir() else [])
        for p in paths:
            if p.is_file() and not p.is_symlink() and not p.name.startswith(".case-"):
                files[str(p)] = p.read_bytes().__hash__() ^ p.stat().st_size
    return files


def classify(r: dict, want: str, before: dict | None = None, after: dict | None = None,
             marker: Path | None = None) -> tuple[str, str]:
    """want: ok (exit 0), refuse (exit 2, one line), either."""
    err = r["err"]
    if marker is not None and marker.exists():
        return "security", f"marker {marker} created: code ran from a loaded file"
    if r["rc"] == "hang":
        return "hang", "still running after its limit"
    if before is not None:
        lost = sorted(p for p in before if after.get(p) != before[p])
        if lost:
            return "data-loss", f"changed or removed: {lost[:5]}"
    if "Traceback" in err or r["rc"] in (98, 99):
        return "traceback", err.strip().splitlines()[-1][:300] if err.strip() else f"rc {r['rc']}"
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    refused = r["rc"] == 2 and (last.startswith("error: ") or ": error: " in last)
    if r["rc"] == 0 and want in ("ok", "either"):
        return "clean", "exit 0"
    if refused and want in ("refuse", "either"):
        return "clean", last[:300]
    if r["rc"] == 2 and want in ("refuse", "either"):
        return "unexpected", f"exit 2 without one error line: {err[-300:]!r}"
    return "unexpected", f"exit {r['rc']} (wanted {want}): {last[:300]}"


def case(surface: str, name: str):
    def register(fn):
        CASES.append({"surface": surface, "name": name, "fn": fn})
        return fn
    return register


def run_case(c: dict, base: dict) -> dict:
    folder = SCRATCH / "cases" / f"{len(RESULTS):03d}-{c['name'][:60].replace('/', '_').replace(' ', '_')}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t = time.monotonic()
    try:
        outcome, detail = c["fn"](folder, base)
    except Exception as e:  # noqa: BLE001 - a bug of the harness, reported as such
        outcome, detail = "harness-error", f"{type(e).__name__}: {e}"[:400]
    rec = {"surface": c["surface"], "case": c["name"], "outcome": outcome, "detail": detail,
           "seconds": round(time.monotonic() - t, 2)}
    if outcome == "clean":
        shutil.rmtree(folder, ignore_errors=True)
    else:
        rec["folder"] = str(folder)
    return rec


RESULTS: list[dict] = []


def cmd_case(surface: str, name: str, argv_fn, want: str = "refuse", guard=(), limit_s: float = 90,
             setup=None, marker_name: str | None = None, post=None):
    """A command-line case: setup(folder, base) makes files; argv_fn(folder, base) -> argv;
    guard(folder, base) -> paths that must stay byte for byte; post(folder, base, r) -> (outcome, detail) | None."""

    def fn(folder: Path, base: dict):
        if setup:
            setup(folder, base)
        paths = [Path(p) for p in (guard(folder, base) if callable(guard) else guard)]
        before = snapshot(*paths)
        r = cli([str(a) for a in argv_fn(folder, base)], folder, limit_s)
        after = snapshot(*paths)
        marker = folder / marker_name if marker_name else None
        outcome, detail = classify(r, want, before, after, marker)
        if post and outcome == "clean":
            extra = post(folder, base, r)
            if extra:
                return extra
        return outcome, detail

    CASES.append({"surface": surface, "name": name, "fn": fn})


# --- the shared fixtures (made once) --------------------------------------------------------------


def tiny_yaml(base_root: Path, cache: Path, **over) -> dict:
    cfg = {"name": "tiny",
           "data": {"name": "fashion_mnist", "root": str(base_root), "image_size": 16, "channels": 1,
                    "download": False, "subset": 256, "cache_dir": str(cache)},
           "model": {"ngf": 8, "ndf": 8},
           "train": {"batch_size": 32, "max_steps": 4, "log_every": 2, "sample_every": 4,
                     "checkpoint_every": 2, "num_fixed": 16, "progress": False, "seed": 1, "device": "cpu",
                     "threads": 1},
           "eval": {"every": 0}}
    for k, v in over.items():
        cfg[k].update(v)
    return cfg


def make_base() -> dict:
    base_dir = SCRATCH / "base"
    shutil.rmtree(SCRATCH, ignore_errors=True)
    base_dir.mkdir(parents=True)
    data = write_fashion_mnist_idx(base_dir / "data", 512, 256)
    cache = base_dir / "cache"
    cache.mkdir()
    config = base_dir / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_yaml(data, cache)))
    run = base_dir / "run"
    r = cli(["train", "--config", str(config), "--run-dir", str(run)], base_dir, 300)
    assert r["rc"] == 0, r["err"][-2000:]
    export = base_dir / "export"
    r = cli(["export", "--checkpoint", str(run), "--out", str(export), "--with-discriminator"], base_dir, 120)
    assert r["rc"] == 0, r["err"][-2000:]
    return {"dir": base_dir, "data": data, "cache": cache, "config": config, "run": run, "export": export,
            "ckpt": run / "checkpoints" / "last.pt"}


def write_cfg(folder: Path, base: dict, name: str = "c.yaml", **over) -> Path:
    p = folder / name
    p.write_text(yaml.safe_dump(tiny_yaml(base["data"], base["cache"], **over)))
    return p


def copy_run(folder: Path, base: dict) -> Path:
    dst = folder / "run"
    shutil.copytree(base["run"], dst, symlinks=True)
    (dst / ".lock").unlink(missing_ok=True)
    return dst


def copy_export(folder: Path, base: dict, name: str = "exp") -> Path:
    dst = folder / name
    shutil.copytree(base["export"], dst)
    return dst


# =====================================================================================================
# 1. export: into existing folders, foreign files, hostile folders, kill -9, from_pretrained
# =====================================================================================================

S = "export"


def _hf(folder: Path, base: dict) -> None:
    out = folder / "out"
    out.mkdir()
    (out / "config.json").write_text('{"model_type": "bert", "hidden_size": 768}')
    (out / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (out / "README.md").write_text("my model card\n")


FOREIGN_OUT = {
    "hf folder of another library": _hf,
    "lone user README.md": lambda f, b: ((f / "out").mkdir(), (f / "out" / "README.md").write_text("notes\n")),
    "forged marker + user file": lambda f, b: (shutil.copytree(b["export"], f / "out"),
                                               (f / "out" / "thesis.tex").write_text("mine\n")),
    "forged marker, broken json": lambda f, b: ((f / "out").mkdir(), (f / "out" / "config.json").write_text(
        '{"format": "dcgan-export", ')),
    "export inside a git clone": lambda f, b: (shutil.copytree(b["export"], f / "out"),
                                               (f / "out" / ".git").mkdir(), (f / "out" / ".git" / "HEAD").write_text(
                                                   "ref: refs/heads/main\n")),
    "hidden user file": lambda f, b: ((f / "out").mkdir(), (f / "out" / ".env").write_text("TOKEN=x\n")),
    "--out is a user file": lambda f, b: (f / "out").write_text("user file\n"),
    "--out a symlink to a user folder": lambda f, b: ((f / "mine").mkdir(), (f / "mine" / "a.txt").write_text("a\n"),
                                                      (f / "out").symlink_to(f / "mine")),
    "--out a symlink to a user file": lambda f, b: ((f / "mine.txt").write_text("a\n"),
                                                    (f / "out").symlink_to(f / "mine.txt")),
    "earlier export with samples.png a symlink to a user file": lambda f, b: (
        shutil.copytree(b["export"], f / "out"), (f / "mine.png").write_bytes(b"user bytes"),
        (f / "out" / "samples.png").unlink(), (f / "out" / "samples.png").symlink_to(f / "mine.png")),
    "earlier export with README.md edited by the user": lambda f, b: (
        shutil.copytree(b["export"], f / "out"), (f / "out" / "README.md").write_text("my notes in the card\n")),
    "user file named model.onnx beside an export": lambda f, b: (
        shutil.copytree(b["export"], f / "out"), (f / "out" / "model.onnx").write_bytes(b"mine")),
}

# an earlier export's own names (README.md, model.onnx) are the export's: replacing them is documented
OWN_NAMES = ("earlier export with README.md edited by the user", "user file named model.onnx beside an export")
for kind, setup in FOREIGN_OUT.items():
    if kind in OWN_NAMES:
        cmd_case(S, f"export --out: {kind} (replaced: documented)",
                 lambda f, b: ["export", "--checkpoint", b["run"], "--out", f / "out"], want="ok", setup=setup,
                 post=lambda f, b, r: _loads(f / "out"))
        continue
    # any outcome must leave the user's files as they were; a refusal is what the docs promise
    cmd_case(S, f"export --out: {kind}",
             lambda f, b: ["export", "--checkpoint", b["run"], "--out", f / "out"],
             want="refuse", setup=setup,
             guard=lambda f, b: [p for p in (f / "out", f / "mine", f / "mine.txt", f / "mine.png") if p.exists()])

cmd_case(S, "export --out absent folder", lambda f, b: ["export", "--checkpoint", b["run"], "--out", f / "new"],
         want="ok", guard=lambda f, b: [b["run"]])
cmd_case(S, "export --out empty folder", lambda f, b: ["export", "--checkpoint", b["run"], "--out", f / "e"],
         want="ok", setup=lambda f, b: (f / "e").mkdir())
cmd_case(S, "export over an earlier export", lambda f, b: ["export", "--checkpoint", b["run"], "--out", f / "exp"],
         want="ok", setup=copy_export)
cmd_case(S, "export an export onto itself", lambda f, b: ["export", "--checkpoint", f / "exp", "--out", f / "exp"],
         want="either", setup=copy_export,
         post=lambda f, b, r: _loads(f / "exp"))
cmd_case(S, "export --out = the run directory", lambda f, b: ["export", "--checkpoint", f / "run", "--out", f / "run"],
         want="refuse", setup=copy_run, guard=lambda f, b: [f / "run"])
cmd_case(S, "export --out = the run's checkpoints folder",
         lambda f, b: ["export", "--checkpoint", f / "run", "--out", f / "run" / "checkpoints"],
         want="refuse", setup=copy_run, guard=lambda f, b: [f / "run"])
cmd_case(S, "export --out = /", lambda f, b: ["export", "--checkpoint", b["run"], "--out", "/"], want="refuse")
cmd_case(S, "export --out under a user file", lambda f, b: ["export", "--checkpoint", b["run"], "--out", f / "u" / "x"],
         want="refuse", setup=lambda f, b: (f / "u").write_text("mine\n"), guard=lambda f, b: [f / "u"])
cmd_case(S, "export --format onnx,onnx,bogus", lambda f, b: ["export", "--checkpoint", b["run"], "--out", f / "o",
                                                            "--format", "onnx,bogus"], want="refuse")
cmd_case(S, "export --checkpoint a folder of user files",
         lambda f, b: ["export", "--checkpoint", f / "mine", "--out", f / "o"], want="refuse",
         setup=lambda f, b: ((f / "mine").mkdir(), (f / "mine" / "a.txt").write_text("a")), guard=lambda f, b: [f / "mine"])


def _loads(folder: Path):
    from dcgan.share.folder import open_export
    try:
        open_export(folder)
    except Exception as e:  # noqa: BLE001
        return "data-loss", f"export at {folder} no longer loads: {e}"
    return None


# hostile export folders, read through `dcgan sample --checkpoint DIR` and Generator.from_pretrained
def _json_edit(name: str, change):
    def setup(f: Path, b: dict) -> None:
        d = copy_export(f, b)
        p = d / name
        data = json.loads(p.read_text())
        p.write_text(change(data) if callable(change) else change)
        del data
    return setup


def _cfg_set(section: str, key: str, value_text: str):
    """config.json's `key` (under "cfg" for the networks, at the top for image_size/channels) as raw JSON text."""
    def change(data):
        where = data["cfg"] if key in data.get("cfg", {}) else data
        assert key in where, key
        where[key] = "__X__"
        return json.dumps(data).replace('"__X__"', value_text)
    return change


def _weights(change):
    def setup(f: Path, b: dict) -> None:
        from safetensors.torch import load_file, save_file
        d = copy_export(f, b)
        p = d / "model.safetensors"
        state = load_file(p)
        meta = json.loads(p.read_bytes()[8:8 + struct.unpack("<Q", p.read_bytes()[:8])[0]]).get("__metadata__")
        out = change(state)
        if isinstance(out, bytes):
            p.write_bytes(out)
        else:
            save_file(out, p, metadata=meta)
    return setup


def _raw(fn):
    def setup(f: Path, b: dict) -> None:
        d = copy_export(f, b)
        fn(d)
    return setup


def _first_key(state, pred=lambda k: True):
    """The first float tensor of G (not D's, which Generator.from_pretrained does not read)."""
    return next(k for k in state if pred(k) and state[k].is_floating_point() and not k.startswith("discriminator."))


def _nan(state):
    k = _first_key(state)
    state[k] = state[k].clone()
    state[k].view(-1)[0] = float("nan")
    return state


def _inf_bn(state):
    k = _first_key(state, lambda k: "running_var" in k)
    state[k] = state[k].clone()
    state[k].view(-1)[0] = float("inf")
    return state


def _header(size: int, body: bytes = b"") -> bytes:
    return struct.pack("<Q", size) + body


def _fifo(name: str):
    def fn(d: Path) -> None:
        (d / name).unlink()
        os.mkfifo(d / name)
    return fn


def _symlink(name: str, target: str):
    def fn(d: Path) -> None:
        (d / name).unlink()
        (d / name).symlink_to(target)
    return fn


HOSTILE_EXPORT = {
    "config.json NaN in nz": _json_edit("config.json", _cfg_set("model", "nz", "NaN")),
    "config.json ngf 10**9": _json_edit("config.json", _cfg_set("model", "ngf", "1000000000")),
    "config.json nz 10**6": _json_edit("config.json", _cfg_set("model", "nz", "1000000")),
    "config.json a list": _json_edit("config.json", "[1, 2, 3]"),
    "config.json 100k nested arrays": _json_edit("config.json", "[" * 100000 + "]" * 100000),
    "config.json 2 MB": _json_edit("config.json", lambda d: json.dumps({**d, "pad": "x" * 2_000_000})),
    "config.json duplicate keys": _json_edit("config.json", lambda d: json.dumps(d)[:-1] + ', "format": "other"}'),
    "config.json a FIFO": _raw(_fifo("config.json")),
    "config.json symlink to /dev/zero": _raw(_symlink("config.json", "/dev/zero")),
    "training.json NaN step": _json_edit("training.json", lambda d: json.dumps({**d, "step": float("nan")})),
    "training.json Infinity scores (tolerated: documented)": _json_edit("training.json", lambda d: json.dumps(
        {**d, "evaluations": [{"step": 4, "fd_clf": float("inf"), "kid_clf": float("nan")}]})),
    "training.json 20 MB": _json_edit("training.json", lambda d: json.dumps({**d, "pad": "x" * 20_000_000})),
    "training.json 100k nested objects": _json_edit("training.json", '{"a":' * 100000 + "1" + "}" * 100000),
    "training.json a FIFO": _raw(_fifo("training.json")),
    "training.json symlink to /dev/urandom": _raw(_symlink("training.json", "/dev/urandom")),
    "weights NaN": _weights(_nan),
    "weights inf in a BN running_var": _weights(_inf_bn),
    "weights extra tensor": _weights(lambda s: {**s, "evil": torch.zeros(3)}),
    "safetensors header length 2**62": _raw(lambda d: (d / "model.safetensors").write_bytes(_header(2**62, b"{}"))),
    "safetensors header not json": _raw(lambda d: (d / "model.safetensors").write_bytes(_header(8, b"garbage!"))),
    "safetensors offsets past the end": _raw(lambda d: (d / "model.safetensors").write_bytes(_header(
        70, b'{"g.x":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}'.ljust(70)))),
    "safetensors symlink to /dev/zero": _raw(_symlink("model.safetensors", "/dev/zero")),
    "safetensors a FIFO": _raw(_fifo("model.safetensors")),
    "safetensors a torch pickle exploit": _raw(lambda d: torch.save({"x": Exploit(d.parent / "PWNED")},
                                                                     d / "model.safetensors")),
}

for kind, setup in HOSTILE_EXPORT.items():
    cmd_case(S, f"sample --checkpoint hostile export: {kind}",
             lambda f, b: ["sample", "--checkpoint", f / "exp", "--out", f / "s.png", "--num", "4"],
             want="ok" if "documented" in kind else "refuse", setup=setup, limit_s=60, marker_name="PWNED",
             guard=lambda f, b: [f / "exp"])


def _from_pretrained_case(kind: str, setup):
    def fn(folder: Path, base: dict):
        setup(folder, base)
        res = folder / "result.txt"
        pid = os.fork()
        if pid == 0:
            try:
                from dcgan.errors import DCGANError
                from dcgan.models import Generator
                try:
                    Generator.from_pretrained(str(folder / "exp"))
                    res.write_text("ok")
                except (DCGANError, ValueError, OSError) as e:
                    res.write_text(f"refused {type(e).__name__}: {str(e)[:200]}")
                except BaseException as e:  # noqa: BLE001
                    res.write_text(f"traceback {type(e).__name__}: {str(e)[:200]}")
            finally:
                os._exit(0)
        deadline = time.monotonic() + 60
        while not os.waitpid(pid, os.WNOHANG)[0]:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return "hang", "from_pretrained still running after 60 s"
            time.sleep(0.05)
        if (folder / "PWNED").exists():
            return "security", "marker created"
        text = res.read_text() if res.exists() else "no result (child died)"
        if text.startswith("refused"):
            return "clean", text
        if text == "ok":
            return "unexpected", "loaded a hostile folder"
        return "traceback", text
    CASES.append({"surface": S, "name": f"Generator.from_pretrained: {kind}", "fn": fn})


for kind in ("config.json ngf 10**9", "config.json 100k nested arrays", "training.json a FIFO", "weights NaN",
             "safetensors header length 2**62", "safetensors a torch pickle exploit"):
    _from_pretrained_case(kind, HOSTILE_EXPORT[kind])


def _kill_export(delay: float):
    def fn(folder: Path, base: dict):
        out = copy_export(folder, base, "out")
        earlier = {p.name: p.read_bytes() for p in out.iterdir()}
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        p = subprocess.Popen([DCGAN, "export", "--checkpoint", str(base["ckpt"]), "--out", str(out)], cwd=folder,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        now = {q.name: q.read_bytes() for q in out.iterdir()} if out.is_dir() else {}
        if now != earlier:
            bad = _loads(out)
            if bad:
                return bad
        r = cli(["export", "--checkpoint", str(base["ckpt"]), "--out", str(out)], folder, 120)
        outcome, detail = classify(r, "ok")
        if outcome != "clean":
            return "lockout", f"the next export after the kill: {detail}"
        left = [q.name for q in folder.iterdir() if q.name not in ("out",)]
        if left:
            return "unexpected", f"left beside --out: {left}"
        return "clean", f"killed at {delay}s; earlier export {'kept' if now == earlier else 'replaced whole'}; next export ok"
    CASES.append({"surface": S, "name": f"kill -9 during export at {delay}s", "fn": fn})


for delay in (1.5, 3.0, 5.0):
    _kill_export(delay)


# =====================================================================================================
# 2. the explorer: dcgan serve over real sockets
# =====================================================================================================

S = "serve"


class Explorer:
    proc: subprocess.Popen | None = None
    port = 0

    @classmethod
    def start(cls, base: dict) -> None:
        if cls.proc and cls.proc.poll() is None:
            return
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            cls.port = s.getsockname()[1]
        log = open(SCRATCH / "serve.log", "ab")  # noqa: SIM115
        cls.proc = subprocess.Popen([DCGAN, "serve", "--checkpoint", str(base["export"]), "--port", str(cls.port),
                                     "--threads", "1", "--device", "cpu"], stdout=log, stderr=log,
                                    env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if cls.get("/api/info")[0] == 200:
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("dcgan serve did not come up")

    @classmethod
    def stop(cls) -> None:
        if cls.proc:
            cls.proc.terminate()
            try:
                cls.proc.wait(10)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
            cls.proc = None

    @classmethod
    def get(cls, path: str, host: str | None = None, method: str = "GET", body: bytes | None = None,
            headers: dict | None = None, timeout: float = 20) -> tuple[int, bytes, dict]:
        c = http.client.HTTPConnection("127.0.0.1", cls.port, timeout=timeout)
        try:
            c.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
            if host is not None:
                c.putheader("Host", host)
            for k, v in (headers or {}).items():
                c.putheader(k, v)
            if body is not None:
                c.putheader("Content-Length", str(len(body)))
            c.endheaders(body)
            r = c.getresponse()
            return r.status, r.read(), dict(r.getheaders())
        finally:
            c.close()

    @classmethod
    def raw(cls, data: bytes, timeout: float = 15) -> bytes:
        with socket.create_connection(("127.0.0.1", cls.port), timeout=timeout) as s:
            s.sendall(data)
            chunks = b""
            try:
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    chunks += b
            except (TimeoutError, ConnectionResetError):
                pass
            return chunks


def alive_after(detail: str) -> tuple[str, str]:
    """Every serve case ends by checking that the explorer still answers at once."""
    if Explorer.proc is None or Explorer.proc.poll() is not None:
        return "lockout", f"dcgan serve exited ({detail})"
    t = time.monotonic()
    try:
        status, _, _ = Explorer.get("/api/sample?n=4&seed=1", timeout=15)
    except OSError as e:
        return "lockout", f"no answer after the case: {e} ({detail})"
    if status != 200:
        return "lockout", f"a good request got {status} after the case ({detail})"
    return "clean", f"{detail}; next request 200 in {time.monotonic() - t:.2f}s"


def serve_case(name: str, path: str, ok_status, host: str | None = None, method: str = "GET", body=None,
               headers=None, check_body=None):
    def fn(folder: Path, base: dict):
        Explorer.start(base)
        try:
            status, data, hdrs = Explorer.get(path, host=host, method=method, body=body, headers=headers)
        except OSError as e:
            status, data, hdrs = f"connection error {type(e).__name__}", b"", {}
        allowed = ok_status if isinstance(ok_status, tuple) else (ok_status,)
        if status not in allowed:
            kind = "security" if status == 200 and 200 not in allowed else "unexpected"
            return kind, f"status {status} (wanted {allowed}): {data[:200]!r}"
        if status >= 500 and status != 503:
            return "traceback", f"status {status}: {data[:200]!r}"
        if b"Traceback" in data or b"root:x:0" in data:
            return "security", f"leaked: {data[:200]!r}"
        if check_body:
            bad = check_body(data, hdrs)
            if bad:
                return bad
        return alive_after(f"status {status}")
    CASES.append({"surface": S, "name": name, "fn": fn})


serve_case("GET / serves the page", "/", 200)
serve_case("GET /api/sample PNG", "/api/sample?n=16&seed=3", 200,
           check_body=lambda d, h: None if d[:8] == b"\x89PNG\r\n\x1a\n" else ("unexpected", "not a PNG"))
serve_case("GET /api/sample json", "/api/sample?n=4&format=json", 200)
for host, want in (("evil.example.com", 400), ("attacker.test:80", 400), ("127.0.0.1.nip.io", 400),
                   ("localhost.", (200, 400)), ("", 400), ("localhost", 200), ("[::1]", 200),
                   ("localhost@evil.com", 400), ("127.1", (200, 400))):
    serve_case(f"Host header {host!r}", "/api/info", want, host=host)
for q in ("seed=1&seed=2", "format=json&format=png", "n=4&N=4"):
    serve_case(f"repeated/unknown query field {q}", f"/api/sample?{q}", 422)
for q in ("n=-1", "n=1000000", "n=1e3", "seed=99999999999999999999", "format=svg", "n=" + "9" * 5000):
    serve_case(f"hostile query {q[:40]}", f"/api/sample?{q}", (414, 422) if len(q) > 1000 else 422)
for path in ("/api/image?n=4&index=4", "/api/interpolate?n=4&a=0&b=3&steps=1000000",
             "/api/arithmetic?n=8&a=" + ",".join(["1"] * 500) + "&b=2&c=3",
             "/api/walk?n=8&a=1&b=2&base=3&strength=nan", "/api/walk?n=8&a=1&b=2&base=3&strength=1e308"):
    ok = 200 if path in ("/api/image?n=4&index=3",) else 422
    serve_case(f"hostile query {path[:60]}", path, ok)
for path in ("/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2fserve.py",
             "/app.js/../../../etc/passwd", "/app.js%00.png"):
    serve_case(f"path traversal {path}", path, (400, 404))
for method in ("POST", "PUT", "DELETE", "TRACE"):
    serve_case(f"method {method} /api/sample", "/api/sample?n=4", (400, 404, 405, 413, 501), method=method,
               body=b"x" * 10 if method in ("POST", "PUT", "PATCH") else None)
serve_case("POST / with a 5 MB body", "/", (405, 413, 400, 404), method="POST", body=b"A" * 5_000_000)
serve_case("GET with a 60 kB header", "/api/info", (200, 400, 431), headers={"X-Big": "a" * 60_000})


def _raw_case(name: str, data: bytes, want_prefixes: tuple[bytes, ...]):
    def fn(folder: Path, base: dict):
        Explorer.start(base)
        t = time.monotonic()
        reply = Explorer.raw(data)
        if time.monotonic() - t > 14:
            return "hang", "the server kept the bad request open past 14 s"
        if reply and not reply.startswith(want_prefixes):
            return "unexpected", f"reply {reply[:120]!r}"
        return alive_after(f"reply {reply[:30]!r}")
    CASES.append({"surface": S, "name": name, "fn": fn})


_raw_case("chunked body with a bad chunk size", b"POST /api/sample HTTP/1.1\r\nHost: localhost\r\n"
          b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", (b"HTTP/1.1 4",))
_raw_case("Content-Length larger than the body", b"POST /api/info HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999"
          b"\r\n\r\nabc", (b"HTTP/1.1 4",))
_raw_case("request line of garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200), (b"HTTP/1.1 4",))
_raw_case("HTTP/1.0 without a Host", b"GET /api/info HTTP/1.0\r\n\r\n", (b"HTTP/1.1 400", b"HTTP/1.1 200"))
_raw_case("absolute-form URL to another host", b"GET http://evil.com/api/info HTTP/1.1\r\nHost: evil.com\r\n\r\n",
          (b"HTTP/1.1 4",))


def _sockets_case(name: str, n: int, trickle: bool = False):
    def fn(folder: Path, base: dict):
        Explorer.start(base)
        socks = []
        try:
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", Explorer.port), timeout=10)
                if trickle:
                    s.sendall(b"GET /api/info HTTP/1.1\r\nHo")
                socks.append(s)
            t = time.monotonic()
            status = Explorer.get("/api/info", timeout=20)[0]
            took = time.monotonic() - t
            if status != 200 or took > 10:
                return "lockout", f"{n} {'trickling' if trickle else 'idle'} sockets: status {status} in {took:.1f}s"
        finally:
            for s in socks:
                s.close()
        return alive_after(f"{n} sockets open: /api/info 200 in {took:.2f}s")
    CASES.append({"surface": S, "name": name, "fn": fn})


_sockets_case("150 idle sockets then a request", 150)
_sockets_case("100 half-sent request heads then a request", 100, trickle=True)


def _flood(name: str, path: str, clients: int):
    def fn(folder: Path, base: dict):
        Explorer.start(base)
        statuses: list = []

        def one():
            try:
                statuses.append(Explorer.get(path, timeout=60)[0])
            except OSError as e:
                statuses.append(type(e).__name__)
        threads = [threading.Thread(target=one) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        bad = [s for s in statuses if s not in (200, 503)]
        if bad or len(statuses) != clients:
            return "unexpected", f"statuses {sorted(map(str, statuses))[:10]}..."
        return alive_after(f"{statuses.count(200)} x 200, {statuses.count(503)} x 503")
    CASES.append({"surface": S, "name": name, "fn": fn})


_flood("format=json flood, 60 clients, n=256", "/api/sample?n=256&format=json", 60)
_flood("PNG flood, 60 clients, n=256", "/api/sample?n=256", 60)


def _slowloris(folder: Path, base: dict):
    Explorer.start(base)
    s = socket.create_connection(("127.0.0.1", Explorer.port), timeout=30)
    t = time.monotonic()
    closed = False
    try:
        for ch in b"GET /api/info HTTP/1.1\r\nHost: localhost\r\nX-a: " + b"b" * 200:
            s.sendall(bytes([ch]))
            time.sleep(0.1)
            if time.monotonic() - t > 14:
                break
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    s.close()
    if not closed and time.monotonic() - t > 14:
        # sent for 14 s without being cut off: check whether the socket is still open
        return "hang", "a head trickled byte by byte stayed open past the 10 s head timeout"
    return alive_after(f"trickle cut after {time.monotonic() - t:.1f}s")


CASES.append({"surface": S, "name": "slowloris head trickle (1 byte / 0.1 s)", "fn": _slowloris})


# =====================================================================================================
# 3. YAML configs
# =====================================================================================================

S = "yaml"


def yaml_case(name: str, text, want: str = "refuse", limit_s: float = 60, special=None, marker: bool = False):
    def setup(f: Path, b: dict) -> None:
        p = f / "c.yaml"
        if special:
            special(p, b)
            return
        body = text(b) if callable(text) else text
        if isinstance(body, bytes):
            p.write_bytes(body)
        else:
            p.write_text(body)
    cmd_case(S, f"yaml: {name}", lambda f, b: ["train", "--config", f / "c.yaml", "--run-dir", f / "r"],
             want=want, setup=setup, limit_s=limit_s, marker_name="PWNED" if marker else None,
             post=(lambda f, b, r: ("unexpected", "a refused start left its run dir") if (f / "r").exists()
                   and want == "refuse" else None))


def _good(b: dict, **over) -> str:
    return yaml.safe_dump(tiny_yaml(b["data"], b["cache"], **over))


def _with(b: dict, line: str, section: str = "train") -> str:
    return _good(b).replace(f"{section}:\n", f"{section}:\n  {line}\n", 1)


def _bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


yaml_case("billion laughs (9 levels)", _bomb(9))
yaml_case("alias bomb inside a section", lambda b: _good(b) + "extra: &e [1,1,1,1,1,1,1,1,1,1]\n" +
          "\n".join(f"e{i}: &e{i} [" + ",".join([f"*e{i - 1}" if i > 1 else "*e"] * 10) + "]" for i in range(1, 7)))
yaml_case("recursive alias", "a: &a [*a]\n")
yaml_case("merge keys 60 deep", "base: &b {x: 1}\n" + "".join(f"m{i}: &m{i}\n  <<: [*{'b' if i == 0 else f'm{i-1}'}]\n"
                                                        f"  k{i}: 1\n" for i in range(60)))
yaml_case("duplicate key", lambda b: _with(b, "max_steps: 3"))
yaml_case("duplicate section", lambda b: _good(b) + "train:\n  seed: 2\n")
yaml_case("name: 010 (YAML 1.1 octal)", lambda b: _good(b).replace("name: tiny", "name: 010"), want="ok")
yaml_case("name: 1:30 (YAML 1.1 sexagesimal; ':' cannot name a folder)",
          lambda b: _good(b).replace("name: tiny", "name: 1:30"), want="either")
yaml_case("name: yes", lambda b: _good(b).replace("name: tiny", "name: yes"), want="ok")
yaml_case("train.progress: yes", lambda b: _good(b).replace("progress: false", "progress: yes"), want="either")
yaml_case("train.max_steps: 0x4", lambda b: _good(b).replace("max_steps: 4", "max_steps: 0x4"))
yaml_case("train.lr_g: .nan", lambda b: _with(b, "lr_g: .nan"))
yaml_case("train.max_steps: 1e400", lambda b: _good(b).replace("max_steps: 4", "max_steps: 1e400"))
yaml_case("data.root empty", lambda b: _good(b).replace(f"root: {b['data']}", "root: ''"))
yaml_case("data.root null", lambda b: _good(b).replace(f"root: {b['data']}", "root: null"))
yaml_case("python/object/apply tag", "!!python/object/apply:os.mkdir [PWNED]\n", marker=True)
yaml_case("python/name tag in a value", lambda b: _with(b, "seed: !!python/name:os.system"), marker=True)
yaml_case("!!set section", "train: !!set {a, b}\n")
yaml_case("top level a list", "- 1\n- 2\n")
yaml_case("empty file", "", want="either")
yaml_case("invalid utf-8", b"name: \xff\xfe\n")
yaml_case("UTF-8 BOM", lambda b: "\ufeff" + _good(b), want="either")
yaml_case("2 MB file", lambda b: _good(b) + "#" + "x" * 2_000_000 + "\n")
yaml_case("nesting 10000 deep", "a: " + "[" * 10000 + "]" * 10000 + "\n")
yaml_case("run name ../../escape", lambda b: _good(b).replace("name: tiny", "name: ../../escape"))
yaml_case("config is a FIFO", None, special=lambda p, b: os.mkfifo(p), limit_s=30)
yaml_case("config symlink to /dev/zero", None, special=lambda p, b: p.symlink_to("/dev/zero"), limit_s=30)
yaml_case("config symlink to /dev/urandom", None, special=lambda p, b: p.symlink_to("/dev/urandom"), limit_s=30)
yaml_case("train.batch_size: 1", lambda b: _good(b).replace("batch_size: 32", "batch_size: 1"))
cmd_case(S, "--set data.root= (empty)", lambda f, b: ["train", "--config", b["config"], "--run-dir", f / "r",
                                                      "--set", "data.root="], want="refuse")
cmd_case(S, "--set train.seed=010", lambda f, b: ["train", "--config", b["config"], "--run-dir", f / "r",
                                                  "--set", "train.seed=010", "--set", "train.max_steps=2"], want="either")
cmd_case(S, "--set name=1:30", lambda f, b: ["train", "--config", b["config"], "--run-dir", f / "r",
                                             "--set", "name=1:30", "--set", "train.max_steps=2"], want="either")


# =====================================================================================================
# 4. run folders
# =====================================================================================================

S = "run-dir"

RUN_OUTPUTS = ["config.yaml", "metrics.jsonl", "scores.png", "samples/fake-0000004.png", "checkpoints/last.pt",
               "checkpoints/best.pt", "notes.txt", "checkpoints/notes.txt"]
for rel in RUN_OUTPUTS:
    def _setup(f: Path, b: dict, rel=rel) -> None:
        p = f / "r" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"the user's own " + rel.encode())
    cmd_case(S, f"user file at --run-dir/{rel}", lambda f, b: ["train", "--config", b["config"], "--run-dir", f / "r"],
             want="refuse", setup=_setup, guard=lambda f, b: [f / "r"])


def _symlinked_outputs(f: Path, b: dict) -> None:
    (f / "mine").mkdir()
    (f / "mine" / "thesis.tex").write_text("mine\n")
    (f / "r").mkdir()
    (f / "r" / "checkpoints").symlink_to(f / "mine")


cmd_case(S, "--run-dir/checkpoints a symlink to a user folder",
         lambda f, b: ["train", "--config", b["config"], "--run-dir", f / "r"], want="refuse",
         setup=_symlinked_outputs, guard=lambda f, b: [f / "mine"])
cmd_case(S, "--run-dir a symlink to a user folder with files",
         lambda f, b: ["train", "--config", b["config"], "--run-dir", f / "r"], want="refuse",
         setup=lambda f, b: ((f / "mine").mkdir(), (f / "mine" / "a.txt").write_text("a"),
                             (f / "r").symlink_to(f / "mine")), guard=lambda f, b: [f / "mine"])
cmd_case(S, "--run-dir/config.yaml a dangling symlink to a user path",
         lambda f, b: ["train", "--config", b["config"], "--run-dir", f / "r"], want="refuse",
         setup=lambda f, b: ((f / "r").mkdir(), (f / "r" / "config.yaml").symlink_to(f / "victim.txt")),
         post=lambda f, b, r: ("data-loss", "wrote through a symlink") if (f / "victim.txt").exists() else None)
cmd_case(S, "--run-dir holding only .lock (documented limit)",
         lambda f, b: ["train", "--config", b["config"], "--run-dir", f / "r"], want="either",
         setup=lambda f, b: ((f / "r").mkdir(), (f / "r" / ".lock").write_text("")))
cmd_case(S, "--run-dir is a user file", lambda f, b: ["train", "--config", b["config"], "--run-dir", f / "r"],
         want="refuse", setup=lambda f, b: (f / "r").write_text("mine"), guard=lambda f, b: [f / "r"])
cmd_case(S, "--run-dir = a finished run", lambda f, b: ["train", "--config", b["config"], "--run-dir", f / "run"],
         want="refuse", setup=copy_run, guard=lambda f, b: [f / "run"])
cmd_case(S, "--runs-root holding a user folder named tiny-001",
         lambda f, b: ["train", "--config", b["config"], "--runs-root", f / "runs"], want="ok",
         setup=lambda f, b: ((f / "runs" / "tiny-001").mkdir(parents=True),
                             (f / "runs" / "tiny-001" / "mine.txt").write_text("m")),
         guard=lambda f, b: [f / "runs" / "tiny-001"])
cmd_case(S, "resume with lowered max_steps", lambda f, b: ["train", "--resume", f / "run", "--set",
                                                           "train.max_steps=2"],
         want="refuse", setup=copy_run, guard=lambda f, b: [f / "run"])
cmd_case(S, "resume with a changed data.root", lambda f, b: ["train", "--resume", f / "run", "--set",
                                                             f"data.root={f}"],
         want="refuse", setup=copy_run, guard=lambda f, b: [f / "run"])
cmd_case(S, "resume with a changed batch size", lambda f, b: ["train", "--resume", f / "run", "--set",
                                                              "train.batch_size=16", "--set", "train.max_steps=6"],
         want="refuse", setup=copy_run, guard=lambda f, b: [f / "run"])
cmd_case(S, "resume with train.batch_size=1", lambda f, b: ["train", "--resume", f / "run", "--set",
                                                            "train.batch_size=1"],
         want="refuse", setup=copy_run, guard=lambda f, b: [f / "run"])
cmd_case(S, "resume with max_steps raised (good)", lambda f, b: ["train", "--resume", f / "run", "--set",
                                                                 "train.max_steps=6"],
         want="ok", setup=copy_run,
         post=lambda f, b, r: None if torch.load(f / "run" / "checkpoints" / "last.pt", weights_only=True)["step"] == 6
         else ("unexpected", "not at step 6"))
cmd_case(S, "resume of a missing run", lambda f, b: ["train", "--resume", f / "nope"], want="refuse")
cmd_case(S, "resume of a user folder", lambda f, b: ["train", "--resume", f / "mine"], want="refuse",
         setup=lambda f, b: ((f / "mine").mkdir(), (f / "mine" / "a.txt").write_text("a")),
         guard=lambda f, b: [f / "mine"])
cmd_case(S, "resume with last.pt truncated", lambda f, b: ["train", "--resume", f / "run", "--set",
                                                           "train.max_steps=6"],
         want="either", setup=lambda f, b: (copy_run(f, b), (f / "run/checkpoints/last.pt").write_bytes(
             (b["ckpt"]).read_bytes()[:500])))
cmd_case(S, "resume with last.pt a symlink to /dev/zero",
         lambda f, b: ["train", "--resume", f / "run", "--set", "train.max_steps=6"], want="either", limit_s=60,
         setup=lambda f, b: (copy_run(f, b), (f / "run/checkpoints/last.pt").unlink(),
                             (f / "run/checkpoints/last.pt").symlink_to("/dev/zero")))
cmd_case(S, "resume with last.pt a FIFO", lambda f, b: ["train", "--resume", f / "run", "--set", "train.max_steps=6"],
         want="either", limit_s=60,
         setup=lambda f, b: (copy_run(f, b), (f / "run/checkpoints/last.pt").unlink(),
                             os.mkfifo(f / "run/checkpoints/last.pt")))
cmd_case(S, "resume with metrics.jsonl a folder (I/O failure)",
         lambda f, b: ["train", "--resume", f / "run", "--set", "train.max_steps=6"], want="refuse",
         setup=lambda f, b: (copy_run(f, b), (f / "run/metrics.jsonl").unlink(), (f / "run/metrics.jsonl").mkdir()),
         guard=lambda f, b: [f / "run"])
cmd_case(S, "resume with config.yaml deleted", lambda f, b: ["train", "--resume", f / "run", "--set",
                                                             "train.max_steps=6"], want="either",
         setup=lambda f, b: (copy_run(f, b), (f / "run/config.yaml").unlink()),
         guard=lambda f, b: [f / "run/checkpoints/step-0000002.pt"])  # the run's config is in its checkpoint
cmd_case(S, "resume with config.yaml hostile (python tag)",
         lambda f, b: ["train", "--resume", f / "run", "--set", "train.max_steps=6"], want="either",
         marker_name="PWNED",
         setup=lambda f, b: (copy_run(f, b), (f / "run/config.yaml").write_text(
             f"!!python/object/apply:os.mkdir [{f / 'PWNED'}]\n")),
         guard=lambda f, b: [f / "run/checkpoints/step-0000002.pt"])
cmd_case(S, "resume with metrics.jsonl a 1 GB sparse file of NULs",
         lambda f, b: ["train", "--resume", f / "run", "--set", "train.max_steps=6"], want="either", limit_s=90,
         setup=lambda f, b: (copy_run(f, b), os.truncate(f / "run/metrics.jsonl", 1 << 30)),
         guard=lambda f, b: [f / "run" / "checkpoints" / "step-0000002.pt"])


def _two_starts(folder: Path, base: dict):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [DCGAN, "train", "--config", str(base["config"]), "--run-dir", str(folder / "X")]
    ps = [subprocess.Popen(argv, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for _ in range(2)]
    res = []
    for p in ps:
        try:
            out, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            p.kill()
            return "hang", "a concurrent start still running after 240 s"
        res.append((p.returncode, err))
    codes = sorted(r[0] for r in res)
    if codes != [0, 2]:
        return "unexpected", f"exit codes {codes}: {[r[1][-200:] for r in res]}"
    loser = next(r[1] for r in res if r[0] == 2)
    if "Traceback" in loser:
        return "traceback", loser[-300:]
    step = torch.load(folder / "X/checkpoints/last.pt", weights_only=True)["step"]
    steps = [json.loads(ln).get("step") for ln in (folder / "X/metrics.jsonl").read_text().splitlines()
             if '"kind"' not in ln or '"train"' in ln]
    return "clean", f"one trained to step {step}, the other: {loser.strip().splitlines()[-1][:150]}; {len(steps)} lines"


CASES.append({"surface": S, "name": "two train --run-dir X started at once", "fn": _two_starts})


def _kill_start(delay: float):
    def fn(folder: Path, base: dict):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cfg = write_cfg(folder, base, train={"max_steps": 6})
        p = subprocess.Popen([DCGAN, "train", "--config", str(cfg), "--run-dir", str(folder / "X")], cwd=folder,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        has_cfg = (folder / "X/config.yaml").exists()
        argv = (["train", "--resume", str(folder / "X")] if has_cfg
                else ["train", "--config", str(cfg), "--run-dir", str(folder / "X")])
        r = cli(argv, folder, 240)
        outcome, detail = classify(r, "ok")
        if outcome != "clean":
            return "lockout", f"after kill at {delay}s ({'resume' if has_cfg else 'restart'}): {detail}"
        step = torch.load(folder / "X/checkpoints/last.pt", weights_only=True)["step"]
        if step != 6:
            return "unexpected", f"recovered run ends at step {step}"
        return "clean", f"killed at {delay}s, {'resumed' if has_cfg else 'restarted'} to step 6"
    CASES.append({"surface": S, "name": f"kill -9 at {delay}s into a new run, then recover", "fn": fn})


for delay in (1.0, 3.0, 6.0):
    _kill_start(delay)


# =====================================================================================================
# 5. data
# =====================================================================================================

S = "data"


def _png_folder(f: Path, mode: str, n: int = 40, size: int = 20, bits16: bool = False) -> Path:
    from PIL import Image
    d = f / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        if bits16:
            a = rng.integers(0, 65535, (size, size), dtype=np.uint16)
            Image.fromarray(a).save(d / f"{i}.png")  # mode I;16
        else:
            Image.new(mode, (size, size), color=i % 200).save(d / f"{i}.png")
    return d


def folder_cfg(f: Path, b: dict, root: Path, **data) -> Path:
    return write_cfg(f, b, data={"name": "folder", "root": str(root), "subset": 0, **data},
                     train={"max_steps": 2})


def data_case(name: str, make, want: str = "ok", limit_s: float = 120, post=None, **data):
    def setup(f: Path, b: dict) -> None:
        root = make(f)
        folder_cfg(f, b, root, cache_dir=str(f / "cache"), **data)
    cmd_case(S, f"data: {name}", lambda f, b: ["train", "--config", f / "c.yaml", "--run-dir", f / "r"],
             want=want, setup=setup, limit_s=limit_s, guard=lambda f, b: [f / "imgs"], post=post)


data_case("16-bit grayscale PNGs", lambda f: _png_folder(f, "L", bits16=True))
data_case("RGBA PNGs at channels=3", lambda f: _png_folder(f, "RGBA"), channels=3)
data_case("CMYK JPEG", lambda f: _cmyk(f))
data_case("empty folder", lambda f: (f / "imgs").mkdir() or f / "imgs", want="refuse")
data_case("only text files named .png", lambda f: _textpng(f), want="refuse")
data_case("a FIFO named x.png among images", lambda f: _with_fifo(f), want="either", limit_s=90)
data_case("a symlink loop in the folder", lambda f: _with_loop(f), want="either", limit_s=90)
data_case("a symlink to /dev/zero named z.png", lambda f: _with_devzero(f), want="either", limit_s=90)
data_case("decompression bomb PNG (30000x30000)", lambda f: _bomb_png(f), want="either", limit_s=90)
data_case("unreadable file (chmod 000) among images", lambda f: _unreadable(f), want="either")


def _cmyk(f: Path) -> Path:
    from PIL import Image
    d = f / "imgs"
    d.mkdir()
    for i in range(36):
        Image.new("CMYK", (24, 24), (i, 0, 0, 0)).save(d / f"{i}.jpg")
    return d


def _textpng(f: Path) -> Path:
    d = f / "imgs"
    d.mkdir()
    for i in range(5):
        (d / f"{i}.png").write_text("not an image")
    return d


def _with_fifo(f: Path) -> Path:
    d = _png_folder(f, "L")
    os.mkfifo(d / "x.png")
    return d


def _with_loop(f: Path) -> Path:
    d = _png_folder(f, "L")
    (d / "loop").symlink_to(d)
    return d


def _with_devzero(f: Path) -> Path:
    d = _png_folder(f, "L")
    (d / "z.png").symlink_to("/dev/zero")
    return d


def _bomb_png(f: Path) -> Path:
    from PIL import Image
    d = _png_folder(f, "L")
    Image.new("1", (30000, 30000)).save(d / "bomb.png")
    return d


def _unreadable(f: Path) -> Path:
    d = _png_folder(f, "L")
    os.chmod(d / "0.png", 0)
    return d


def _cp_p(folder: Path, base: dict):
    """Files replaced with cp -p keep name, size and mtime: the cache must still see the change."""
    d = _png_folder(folder, "L", n=40)
    other = folder / "other"
    other.mkdir()
    from PIL import Image
    for i in range(40):
        Image.new("L", (20, 20), color=255 - (i % 200)).save(other / f"{i}.png")
    cfg = folder_cfg(folder, base, d, cache_dir=str(folder / "cache"))
    r = cli(["train", "--config", str(cfg), "--run-dir", str(folder / "r1")], folder, 120)
    if r["rc"] != 0:
        return classify(r, "ok")
    for i in range(40):
        src, dst = other / f"{i}.png", d / f"{i}.png"
        st = dst.stat()
        if src.stat().st_size == st.st_size:
            subprocess.run(["cp", "-p", str(src), str(dst)], check=True)
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = cli(["train", "--config", str(cfg), "--run-dir", str(folder / "r2")], folder, 120)
    outcome, detail = classify(r, "ok")
    if outcome != "clean":
        return outcome, detail
    a = (folder / "r1/samples/real.png").read_bytes()
    b = (folder / "r2/samples/real.png").read_bytes()
    return ("clean", "decoded again: real.png differs") if a != b else ("data-loss", "stale cache: same real.png")


CASES.append({"surface": S, "name": "data: files replaced with cp -p are decoded again", "fn": _cp_p})


def _idx(f: Path, b: dict, change) -> Path:
    root = f / "d"
    shutil.copytree(b["data"], root)
    raw = root / "FashionMNIST" / "raw"
    change(raw)
    return write_cfg(f, b, data={"root": str(root), "cache_dir": str(f / "cache")}, train={"max_steps": 2})


for name, change, want in (
        ("idx images truncated", lambda raw: (raw / "train-images-idx3-ubyte").write_bytes(
            (raw / "train-images-idx3-ubyte").read_bytes()[:5000]), "refuse"),
        ("idx header claims 2**31 images", lambda raw: (raw / "train-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, 2**31 - 1, 28, 28) + (raw / "train-images-idx3-ubyte").read_bytes()[16:]),
         "refuse"),
        ("idx header claims 65535x65535 images", lambda raw: (raw / "train-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, 512, 65535, 65535) + (raw / "train-images-idx3-ubyte").read_bytes()[16:]),
         "refuse"),
        ("idx wrong magic", lambda raw: (raw / "train-images-idx3-ubyte").write_bytes(
            b"\x00\x00\x00\x00" + (raw / "train-images-idx3-ubyte").read_bytes()[4:]), "refuse"),
        ("idx labels fewer than images", lambda raw: (raw / "train-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, 10) + bytes(10)), "either"),
        # Debian's dataset-fashion-mnist, where installed, is unpacked over a file that is not a regular one
        # (then the whole 60,000-image split is decoded: slow on a loaded machine, hence the limit)
        ("idx images a FIFO", lambda raw: ((raw / "train-images-idx3-ubyte").unlink(),
                                           os.mkfifo(raw / "train-images-idx3-ubyte")), "either"),
):
    cmd_case(S, f"data: {name}", lambda f, b, change=change: ["train", "--config", _idx(f, b, change),
                                                              "--run-dir", f / "r"],
             want=want, limit_s=180)


def _mnist_fifo(f: Path, b: dict) -> Path:
    """data.name=mnist (nothing unpacked over it): a FIFO in place of its idx file."""
    root = f / "d"
    shutil.copytree(b["data"] / "FashionMNIST", root / "MNIST")
    (root / "MNIST/raw/train-images-idx3-ubyte").unlink()
    os.mkfifo(root / "MNIST/raw/train-images-idx3-ubyte")
    return write_cfg(f, b, data={"name": "mnist", "root": str(root), "cache_dir": str(f / "cache")},
                     train={"max_steps": 2})


cmd_case(S, "data: mnist idx images a FIFO", lambda f, b: ["train", "--config", _mnist_fifo(f, b), "--run-dir", f / "r"],
         want="refuse", limit_s=60)


def _hostile_cache(kind: str):
    def fn(folder: Path, base: dict):
        cache = folder / "cache"
        shutil.copytree(base["cache"], cache)
        files = sorted(cache.glob("*.pt"))
        if not files:
            return "harness-error", "no cache file to replace"
        for p in files:
            if kind == "pickle":
                p.write_bytes(pickle.dumps(Exploit(folder / "PWNED")))
            elif kind == "torch-zip":
                torch.save({"images": Exploit(folder / "PWNED")}, p)
            elif kind == "wrong shape":
                torch.save({"images": torch.zeros(3, 1, 8, 8, dtype=torch.uint8), "labels": None}, p)
            elif kind == "junk":
                p.write_bytes(os.urandom(3000))
        cfg = write_cfg(folder, base, data={"cache_dir": str(cache)}, train={"max_steps": 2})
        r = cli(["train", "--config", str(cfg), "--run-dir", str(folder / "r")], folder, 120)
        return classify(r, "ok", marker=folder / "PWNED")
    CASES.append({"surface": S, "name": f"data cache file replaced: {kind}", "fn": fn})


for kind in ("pickle", "torch-zip", "junk"):
    _hostile_cache(kind)

for name, extra in (("eval --image-size 32 (checkpoint is 16)", ["--image-size", "32"]),
                    ("eval --channels 3 (checkpoint is 1)", ["--channels", "3"]),
):
    cmd_case(S, f"data: {name}", lambda f, b, extra=extra: [
        "eval", "--checkpoint", b["ckpt"], "--num", "64", "--metrics", "fd_clf", "--dataset", "fashion_mnist",
        "--data-root", b["data"], "--cache-dir", f / "cache", "--no-log", *extra],
        want="refuse", post=lambda f, b, r: ("unexpected", "wrote a cache before refusing")
        if (f / "cache").exists() and any((f / "cache").iterdir()) else None)
cmd_case(S, "data: eval --images a folder of 16-bit PNGs", lambda f, b: [
    "eval", "--images", f / "imgs", "--dataset", "fashion_mnist", "--num-real", "64", "--image-size", "16",
    "--data-root", b["data"], "--cache-dir", b["cache"], "--metrics", "fd_clf", "--no-log"],
    want="either", limit_s=180, setup=lambda f, b: _png_folder(f, "L", bits16=True, n=64, size=16))


# =====================================================================================================
# 6. pickles and torch-zip payloads in checkpoints and other loaded files
# =====================================================================================================

S = "pickle"


def _exploit_file(kind: str, f: Path) -> Path:
    p = f / "evil.pt"
    marker = f / "PWNED"
    if kind == "plain pickle":
        p.write_bytes(pickle.dumps({"step": 1, "G": Exploit(marker)}))
    elif kind == "torch-zip":
        torch.save({"step": 1, "G": Exploit(marker)}, p)
    elif kind == "torch-zip inside a real checkpoint":
        ck = torch.load(Path(SCRATCH / "base/run/checkpoints/last.pt"), weights_only=True)
        ck["extra"] = Exploit(marker)
        torch.save(ck, p)
    elif kind == "legacy (non-zip) torch format":
        torch.save({"G": Exploit(marker)}, p, _use_new_zipfile_serialization=False)
    return p


EXPLOIT_COMMANDS = {
    "sample": lambda f, p: ["sample", "--checkpoint", p, "--out", f / "s.png", "--num", "4"],
    "export": lambda f, p: ["export", "--checkpoint", p, "--out", f / "o"],
    "train --resume": lambda f, p: ["train", "--resume", p],
    "eval": lambda f, p: ["eval", "--checkpoint", p, "--num", "16", "--no-log"],
    "serve": lambda f, p: ["serve", "--checkpoint", p, "--port", "0"],
}
for kind in ("plain pickle", "torch-zip", "torch-zip inside a real checkpoint", "legacy (non-zip) torch format"):
    for command, argv in EXPLOIT_COMMANDS.items():
        if kind not in ("plain pickle", "torch-zip") and command not in ("sample",):
            continue
        cmd_case(S, f"{kind} checkpoint via {command}",
                 lambda f, b, kind=kind, argv=argv: argv(f, _exploit_file(kind, f)),
                 want="refuse", marker_name="PWNED", limit_s=60)


def _run_with_evil_last(kind: str):
    def setup(f: Path, b: dict) -> None:
        run = copy_run(f, b)
        p = _exploit_file(kind, f)
        shutil.copy(p, run / "checkpoints/last.pt")
    return setup


for kind in ("plain pickle", "torch-zip"):
    cmd_case(S, f"{kind} as RUN/checkpoints/last.pt via train --resume RUN",
             lambda f, b: ["train", "--resume", f / "run", "--set", "train.max_steps=6"], want="either",
             setup=_run_with_evil_last(kind), marker_name="PWNED", limit_s=90,
             guard=lambda f, b: [f / "run/checkpoints/step-0000002.pt"])
    cmd_case(S, f"{kind} as RUN/checkpoints/last.pt via sample --checkpoint RUN",
             lambda f, b: ["sample", "--checkpoint", f / "run", "--out", f / "s.png", "--num", "4"], want="either",
             setup=_run_with_evil_last(kind), marker_name="PWNED")
    cmd_case(S, f"{kind} as --z file", lambda f, b, kind=kind: [
        "paper", "arithmetic", "--checkpoint", b["ckpt"], "--z", _exploit_file(kind, f), "--a", "1", "--b", "2",
        "--c", "3", "--out", f / "w.png"],
        want="refuse", marker_name="PWNED")
    cmd_case(S, f"{kind} as --classifier", lambda f, b, kind=kind: [
        "eval", "--checkpoint", b["ckpt"], "--classifier", _exploit_file(kind, f), "--num", "16", "--no-log",
        "--data-root", b["data"], "--cache-dir", b["cache"], "--dataset", "fashion_mnist"],
        want="refuse", marker_name="PWNED")
    cmd_case(S, f"{kind} as --inception-weights", lambda f, b, kind=kind: [
        "eval", "--checkpoint", b["ckpt"], "--inception-weights", _exploit_file(kind, f), "--features", "inception",
        "--num", "16", "--no-log", "--data-root", b["data"], "--cache-dir", b["cache"], "--dataset", "fashion_mnist"],
        want="refuse", marker_name="PWNED")
cmd_case(S, "pickle inside model.safetensors of an export via export --checkpoint DIR",
         lambda f, b: ["export", "--checkpoint", f / "exp", "--out", f / "o"], want="refuse", marker_name="PWNED",
         setup=HOSTILE_EXPORT["safetensors a torch pickle exploit"])


# =====================================================================================================


def main_() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="rerun only the cases whose name contains one of these |-separated texts (their records "
                         "replace those in --out)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results-hostile-2.json"))
    args = ap.parse_args()
    t0 = time.monotonic()
    base = make_base()
    print(f"fixtures ready in {time.monotonic() - t0:.0f}s; {len(CASES)} cases", flush=True)
    try:
        for c in CASES:
            if args.only and not any(o in c["name"] for o in args.only.split("|")):
                continue
            rec = run_case(c, base)
            RESULTS.append(rec)
            mark = "" if rec["outcome"] == "clean" else "   <-- " + rec["outcome"]
            print(f"[{len(RESULTS):3d}] {rec['surface']:8s} {rec['seconds']:6.1f}s {rec['case'][:80]}{mark}", flush=True)
            if rec["outcome"] != "clean":
                print(f"      {rec['detail'][:400]}", flush=True)
    finally:
        Explorer.stop()
    if args.only and Path(args.out).exists():  # rerun cases replace their records in the full pass's file
        names = {c["name"] for c in CASES}
        old = [r for r in json.loads(Path(args.out).read_text())["results"] if r["case"] in names]
        new = {r["case"]: r for r in RESULTS}
        RESULTS[:] = [new.pop(r["case"], r) for r in old] + list(new.values())
    surfaces: dict = {}
    outcomes: dict = {}
    for r in RESULTS:
        s = surfaces.setdefault(r["surface"], {})
        s[r["outcome"]] = s.get(r["outcome"], 0) + 1
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    summary = {"cases": len(RESULTS), "outcomes": outcomes, "by_surface": surfaces,
               "case_seconds": round(sum(r["seconds"] for r in RESULTS)),
               "command": "OMP_NUM_THREADS=1 .venv/bin/python bench/hostile_pass.py",
               "torch": torch.__version__, "results": RESULTS}
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main_())
