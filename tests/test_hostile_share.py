"""Hostile exports and a hostile network: the export folder and the explorer under attack.

- hostile export folders (non-finite weights, memory-bomb or ill-typed config.json, hostile
  training.json, incomplete folders, weights of another shape) through every command that loads
  a model and through `Generator.from_pretrained`: one line, exit 2, nothing written, nothing
  built before the folder is checked;
- foreign folders at `dcgan export --out`: refused, nothing touched;
- `kill -9` at random points of `dcgan export`: --out holds the earlier export or the new one,
  whole, or nothing; the next export cleans up;
- the explorer over real sockets: idle, slow and many connections, a wrong Host header.

The harness (`check`, `sandbox`, `run_cli`) is the fuzz suite's (tests/test_fuzz.py).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import test_fuzz
import torch
from test_fuzz import assert_unchanged, assert_user_error, check, run_cli, snapshot, with_option

from dcgan.cli import main
from dcgan.errors import DCGANError
from dcgan.share.folder import open_export

sandbox, trained_run = test_fuzz.sandbox, test_fuzz.trained_run  # the fuzz suite's fixtures

# --- hostile export folders ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_export(trained_run, tmp_path_factory) -> Path:
    """An export of the fuzz suite's tiny run, with D (so the paper commands get past it)."""
    out = tmp_path_factory.mktemp("hostile") / "export"
    assert main(["export", "--checkpoint", str(trained_run), "--out", str(out), "--with-discriminator"]) == 0
    return out


def _rewrite_weights(folder: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    change(state)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


def _edit_json(folder: Path, name: str, change) -> None:
    data = json.loads((folder / name).read_text())
    data = change(data) or data
    (folder / name).write_text(json.dumps(data))


def _set(path: str, value):
    """A change of config.json / training.json setting the dotted `path` to `value`."""
    def change(data):
        d = data
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value
    return change


def _nan_g(state):
    for k, v in state.items():
        if not k.startswith("discriminator.") and v.is_floating_point():
            v.fill_(math.nan)


def _inf_one(state):
    next(v for k, v in state.items() if k.endswith("weight") and not k.startswith("discriminator.")).view(-1)[0] = math.inf


def _nan_d(state):
    next(v for k, v in state.items() if k.startswith("discriminator.") and k.endswith("weight")).fill_(math.nan)


def _other_shapes(state):
    for k in list(state):
        state[k] = torch.zeros(1)


HOSTILE = {  # kind -> (what to do to a copy of a good export, a word the error names)
    "nan_weights": (lambda f: _rewrite_weights(f, _nan_g), "non-finite"),
    "inf_weight": (lambda f: _rewrite_weights(f, _inf_one), "non-finite"),
    "nan_d": (lambda f: _rewrite_weights(f, _nan_d), "non-finite"),
    "other_shapes": (lambda f: _rewrite_weights(f, _other_shapes), "does not fit"),
    "truncated_weights": (lambda f: (f / "model.safetensors").write_bytes(
        (f / "model.safetensors").read_bytes()[:300]), "safetensors"),
    "junk_weights": (lambda f: (f / "model.safetensors").write_bytes(os.urandom(4096)), "safetensors"),
    "huge_ngf": (lambda f: _edit_json(f, "config.json", _set("cfg.ngf", 10**7)), "parameters"),
    "huge_nz": (lambda f: (_edit_json(f, "config.json", _set("cfg.nz", 10**6)),  # both files agree
                           _edit_json(f, "training.json", _set("config.model.nz", 10**6))), "does not fit"),
    "ngf_text": (lambda f: _edit_json(f, "config.json", _set("cfg.ngf", "wide")), "model.ngf"),
    "ngf_list": (lambda f: _edit_json(f, "config.json", _set("cfg.ngf", [8])), "model.ngf"),
    "image_size_bad": (lambda f: _edit_json(f, "config.json", _set("image_size", 17)), "image_size"),
    "cfg_not_object": (lambda f: _edit_json(f, "config.json", _set("cfg", [1, 2])), "model settings"),
    "cfg_unknown_key": (lambda f: _edit_json(f, "config.json", _set("cfg.depth", 9)), "depth"),
    "config_not_json": (lambda f: (f / "config.json").write_text("{\"cfg\": "), "json"),
    "config_list": (lambda f: (f / "config.json").write_text("[1, 2]"), "json object"),
    "config_huge": (lambda f: (f / "config.json").write_text(" " * 2_000_000 + "{}"), "mb"),
    "config_deep": (lambda f: (f / "config.json").write_text("[" * 100_000), "json"),
    "other_format": (lambda f: _edit_json(f, "config.json", _set("format", "other-tool")), "format"),
    "newer_version": (lambda f: _edit_json(f, "config.json", _set("format_version", 99)), "version"),
    "files_hostile": (lambda f: _edit_json(f, "config.json", _set("files", ["../../etc/passwd"])), "files"),
    "no_config": (lambda f: (f / "config.json").unlink(), "incomplete"),
    "no_weights": (lambda f: (f / "model.safetensors").unlink(), "incomplete"),
    "listed_file_missing": (lambda f: (f / "training.json").unlink(), "incomplete"),
    "training_not_json": (lambda f: (f / "training.json").write_text("{"), "json"),
    "training_list": (lambda f: (f / "training.json").write_text("[]"), "json object"),
    "training_step_text": (lambda f: _edit_json(f, "training.json", _set("step", "many")), "step"),
    "training_evals_dict": (lambda f: _edit_json(f, "training.json", _set("evals", {"a": 1})), "evals"),
    "training_eval_list": (lambda f: _edit_json(f, "training.json", _set("evals", [[1, 2]])), "evals"),
    "training_eval_step_text": (lambda f: _edit_json(f, "training.json", _set("evals", [{"step": "one"}])),
                                "evals[0].step"),
    "training_meta_list": (lambda f: _edit_json(f, "training.json", _set("meta", [1])), "meta"),
    "training_best_text": (lambda f: _edit_json(f, "training.json", _set("best", "great")), "best"),
    "training_config_bad": (lambda f: _edit_json(f, "training.json", _set("config.model.nz", "many")), "model.nz"),
    "training_config_other_net": (lambda f: _edit_json(f, "training.json", _set("config.model.ngf", 16)),
                                  "another architecture"),
    "training_huge": (lambda f: (f / "training.json").write_text("{\"x\": \"" + "a" * 17_000_000 + "\"}"), "mb"),
}

EXPORT_COMMANDS = {  # every command that loads a model, on FOLDER
    "sample": lambda f: with_option("sample", "--checkpoint", f),
    "eval": lambda f: with_option("eval", "--checkpoint", f),
    "nn": lambda f: with_option("nn", "--checkpoint", f),
    "walk": lambda f: with_option("paper walk", "--checkpoint", f),
    "arithmetic": lambda f: with_option("paper arithmetic", "--checkpoint", f),
    "features": lambda f: with_option("paper features", "--checkpoint", f),
    "filters": lambda f: with_option("paper filters", "--checkpoint", f),
    "export": lambda f: with_option("export", "--checkpoint", f),
    "serve": lambda f: with_option("serve", "--checkpoint", f),
}
# D is loaded only by the commands that use it; the others never read D's weights.
D_ONLY = {"nan_d"}
D_COMMANDS = {"features", "filters", "export"}
FAST_KINDS = {"nan_weights", "huge_ngf", "no_config"}


def _export_cases() -> list:
    cases = []
    for kind in HOSTILE:
        for command in EXPORT_COMMANDS:
            if kind in D_ONLY and command not in D_COMMANDS:
                continue
            fast = command == "sample" or kind in FAST_KINDS
            cases.append(pytest.param(kind, command, marks=() if fast else (pytest.mark.slow,),
                                      id=f"{kind}-{command}"))
    return cases


def hostile_copy(good: Path, kind: str, where: Path) -> Path:
    folder = where / f"hostile-{kind}"
    shutil.copytree(good, folder)
    HOSTILE[kind][0](folder)
    return folder


@pytest.fixture
def built(monkeypatch) -> list[str]:
    """The device of every network built from here on ('meta' for the weightless shape checks)."""
    import dcgan.models as models

    devices: list[str] = []
    real = models.init_weights

    def recording(module):
        devices.append(next(module.parameters()).device.type)
        return real(module)

    monkeypatch.setattr(models, "init_weights", recording)
    return devices


@pytest.mark.parametrize("kind, command", _export_cases())
def test_hostile_export_folder(kind, command, good_export, sandbox, capsys, built):
    """One line naming the folder, exit 2, nothing written; a folder whose config.json is
    hostile builds no network with weights at all."""
    folder = hostile_copy(good_export, kind, sandbox.tmp)
    if kind == "nan_d" and command == "export":  # G-only export of a run with a broken D: D unread
        argv = EXPORT_COMMANDS[command](str(folder)) + ["--with-discriminator"]
    else:
        argv = EXPORT_COMMANDS[command](str(folder))
    message = check(sandbox, capsys, argv, str(folder))
    assert HOSTILE[kind][1] in message.lower(), message
    if kind.startswith(("huge", "ngf", "image_size", "cfg", "config", "other", "newer", "no_", "training")):
        assert "cpu" not in built and "cuda" not in built, f"built a network before refusing: {built}"


@pytest.mark.parametrize("kind", [k for k in HOSTILE if k not in D_ONLY])
def test_hostile_export_folder_from_pretrained(kind, good_export, tmp_path, built):
    from dcgan import Generator

    folder = hostile_copy(good_export, kind, tmp_path)
    with pytest.raises(DCGANError) as e:
        Generator.from_pretrained(folder)
    message = str(e.value)
    assert "\n" not in message and str(folder) in message and HOSTILE[kind][1] in message.lower(), message
    if kind.startswith(("huge", "ngf", "image_size", "cfg", "config", "other", "newer", "no_")):
        assert "cpu" not in built, f"built a network before refusing: {built}"


def test_from_pretrained_refuses_a_non_finite_discriminator(good_export, tmp_path):
    from dcgan import Discriminator, Generator

    folder = hostile_copy(good_export, "nan_d", tmp_path)
    assert Generator.from_pretrained(folder).nz == 100  # G is fine
    with pytest.raises(DCGANError, match="non-finite"):
        Discriminator.from_pretrained(folder)


def test_training_json_with_non_finite_scores_is_tolerated(good_export, sandbox, capsys):
    """NaN or infinite numbers in training.json's records become null and nested values are
    dropped: sampling, re-export and the explorer's /api/info (JSON without NaN) still work."""
    folder = sandbox.tmp / "nan-scores"
    shutil.copytree(good_export, folder)
    text = (folder / "training.json").read_text()
    facts = json.loads(text)
    facts["evals"] = [{"step": 1, "fd_clf": float("nan"), "extra": {"nested": [1]}}, {"step": 2, "fd_clf": float("inf")}]
    facts["best"] = {"step": 2, "fd_clf": float("-inf")}
    (folder / "training.json").write_text(json.dumps(facts))
    assert run_cli(with_option("sample", "--checkpoint", str(folder)), capsys).rc == 0
    assert run_cli(["export", "--checkpoint", str(folder), "--out", str(sandbox.tmp / "again")], capsys).rc == 0
    again = json.loads((sandbox.tmp / "again" / "training.json").read_text())
    assert [r["fd_clf"] for r in again["evals"]] == [None, None] and again["best"]["fd_clf"] is None
    assert "extra" not in again["evals"][0]
    from fastapi.testclient import TestClient

    from dcgan.share.serve import create_app, load_explorer

    with TestClient(create_app(load_explorer(str(folder), "cpu")), base_url="http://127.0.0.1") as c:
        info = c.get("/api/info")
        assert info.status_code == 200 and info.json()["best"]["fd_clf"] is None


# --- --no-ema and the model card's evaluations -------------------------------------------------


def _run_with_ema(root: Path, step: int = 30) -> Path:
    from test_share import make_run

    run = make_run(root, step=step)
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    ck["config"]["train"]["ema"] = 0.999
    ck["G_ema"] = {k: (v * 0.5 if v.is_floating_point() else v) for k, v in ck["G"].items()}
    torch.save(ck, run / "checkpoints" / "last.pt")
    return run


def test_no_ema_on_an_export_of_the_averaged_g_is_refused(tmp_path, capsys):
    run = _run_with_ema(tmp_path)
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(run), "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["generator"] == "ema"
    base = ["sample", "--num", "4", "--device", "cpu"]
    assert main([*base, "--checkpoint", str(out), "--out", str(tmp_path / "ema.png")]) == 0
    o = run_cli([*base, "--checkpoint", str(out), "--out", str(tmp_path / "raw.png"), "--no-ema"], capsys)
    message = assert_user_error(o, "--no-ema")
    assert "averaged" in message and "run's checkpoint" in message and not (tmp_path / "raw.png").exists()
    # The run's checkpoint has both: --no-ema samples the raw G, which differs.
    assert main([*base, "--checkpoint", str(run), "--out", str(tmp_path / "raw.png"), "--no-ema"]) == 0
    assert main([*base, "--checkpoint", str(run), "--out", str(tmp_path / "ema2.png")]) == 0
    assert (tmp_path / "ema2.png").read_bytes() == (tmp_path / "ema.png").read_bytes()
    assert (tmp_path / "raw.png").read_bytes() != (tmp_path / "ema.png").read_bytes()


def test_model_card_of_an_early_checkpoint_lists_only_evaluations_up_to_its_step(tmp_path):
    from test_share import make_run

    run = make_run(tmp_path, step=30)  # metrics.jsonl has evaluations at steps 20 and 40
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(run), "--out", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "| 20 (best) | 12.5 |" in card and "| 40 |" not in card
    assert [r["step"] for r in json.loads((out / "training.json").read_text())["evals"]] == [20]


# --- foreign folders at --out ---------------------------------------------------------------------


def _hf_model(folder: Path) -> None:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "hidden_size": 768}))
    (folder / "model.safetensors").write_bytes(b"someone else's weights")
    (folder / "README.md").write_text("# my model\n")
    (folder / "model.onnx").write_bytes(b"someone else's onnx")


def _export_with(extra: str):
    def make(folder: Path, good: Path) -> None:
        shutil.copytree(good, folder)
        if extra == ".git":
            (folder / ".git").mkdir()
            (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
        elif extra == "dir":
            (folder / "samples.png").unlink()
            (folder / "samples.png").mkdir()
            (folder / "samples.png" / "mine.txt").write_text("mine")
        else:
            (folder / extra).write_text("mine\n")
    return make


FOREIGN = {
    "hf_model": lambda f, good: _hf_model(f),
    "only_config": lambda f, good: (f.mkdir(), (f / "config.json").write_text("{\"cfg\": {}}")),
    "only_readme": lambda f, good: (f.mkdir(), (f / "README.md").write_text("# notes\n")),
    "marker_in_broken_json": lambda f, good: (f.mkdir(), (f / "config.json").write_text(
        "{\"format\": \"dcgan-export\", ")),
    "marker_in_text": lambda f, good: (f.mkdir(), (f / "config.json").write_text("\"dcgan-export\"")),
    "hidden_file": lambda f, good: (f.mkdir(), (f / ".env").write_text("SECRET=1\n")),
    "export_plus_notes": _export_with("notes.txt"),
    "export_in_a_git_clone": _export_with(".git"),
    "export_with_a_folder": _export_with("dir"),
}


@pytest.mark.parametrize("kind", list(FOREIGN))
def test_foreign_folder_at_export_out_is_refused_and_untouched(kind, good_export, sandbox, capsys):
    out = sandbox.tmp / "out"
    FOREIGN[kind](out, good_export)
    before = snapshot(out)
    parent_before = sorted(p.name for p in sandbox.tmp.iterdir())
    message = check(sandbox, capsys, ["export", "--checkpoint", str(sandbox.run), "--out", str(out)], "--out")
    assert str(out) in message
    assert_unchanged(before, snapshot(out))
    assert sorted(p.name for p in sandbox.tmp.iterdir()) == parent_before  # no temporary sibling left


def test_export_writes_absent_empty_and_earlier_export_folders(good_export, trained_run, tmp_path, capsys):
    for name in ("absent/deeper", "empty"):
        out = tmp_path / name
        if name == "empty":
            out.mkdir()
        assert run_cli(["export", "--checkpoint", str(trained_run), "--out", str(out)], capsys).rc == 0
        assert open_export(out).facts["step"] == 8
    # An earlier export (with ONNX) is replaced whole: no model.onnx left, the new weights in.
    out = tmp_path / "earlier"
    assert run_cli(["export", "--checkpoint", str(good_export), "--out", str(out), "--format", "safetensors,onnx"],
                   capsys).rc == 0
    assert (out / "model.onnx").is_file()
    assert run_cli(["export", "--checkpoint", str(trained_run), "--out", str(out)], capsys).rc == 0
    assert not (out / "model.onnx").exists() and "model.onnx" not in json.loads((out / "config.json").read_text())[
        "files"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["absent", "earlier", "empty"]  # no sibling left


# --- kill -9 during export ------------------------------------------------------------------------

KILLER = r"""
import os, signal, sys
k, out = int(sys.argv[1]), sys.argv[2]
parent = os.path.dirname(os.path.abspath(out))
count = 0
EVENTS = {"open", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.mkdir", "os.listdir", "os.scandir",
          "ctypes.call_function"}

def hook(event, args):
    global count
    if event not in EVENTS:
        return
    if event != "ctypes.call_function" and not (args and isinstance(args[0], (str, bytes, os.PathLike))
                                                and os.fsdecode(args[0]).startswith(parent)):
        return
    count += 1
    if count == k:
        os.kill(os.getpid(), signal.SIGKILL)

from dcgan.cli import main
sys.addaudithook(hook)
rc = main(sys.argv[3:])
print("EVENTS", count)
sys.exit(rc)
"""


def _export_killed_at(k: int, out: Path, source: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", KILLER, str(k), str(out), "export", "--checkpoint", str(source),
                           "--out", str(out)], capture_output=True, text=True, timeout=300, env=env)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


def _kill_points(fast: int, slow: int) -> list:
    rng = random.Random(17)
    return [pytest.param(rng.random(), marks=() if i < fast else (pytest.mark.slow,), id=f"point{i}")
            for i in range(fast + slow)]


@pytest.fixture(scope="module")
def kill_setup(good_export, trained_run, tmp_path_factory):
    """The files of a complete export of `trained_run` over an earlier export (of `good_export`),
    and how many file-system events that export makes."""
    root = tmp_path_factory.mktemp("kill")
    out = root / "out"
    assert main(["export", "--checkpoint", str(good_export), "--out", str(out)]) == 0
    old = _files(out)
    r = _export_killed_at(0, out, trained_run)
    assert r.returncode == 0, r.stderr[-2000:]
    events = int(r.stdout.split("EVENTS")[-1])
    return old, _files(out), events


@pytest.mark.parametrize("where", _kill_points(1, 11))
def test_kill_during_export_leaves_the_earlier_export_or_the_new_one(where, kill_setup, good_export, trained_run,
                                                                     tmp_path, capsys):
    """SIGKILL at a random file-system event of an export over an earlier one: --out holds
    the earlier export or the new one, whole (it loads; its files are exactly one of the two),
    and the next export succeeds and leaves no temporary sibling."""
    old, new, events = kill_setup
    k = 1 + int(where * events)
    out = tmp_path / "out"
    assert main(["export", "--checkpoint", str(good_export), "--out", str(out)]) == 0
    r = _export_killed_at(k, out, trained_run)
    assert r.returncode == -signal.SIGKILL, (k, events, r.returncode, r.stderr[-2000:])
    now = _files(out)
    if now:  # gone only between the two renames where RENAME_EXCHANGE is missing
        assert now in (old, new), (k, events, {f: (now[f] == old.get(f), now[f] == new.get(f)) for f in now})
        open_export(out)  # loads as complete
    assert run_cli(["export", "--checkpoint", str(trained_run), "--out", str(out)], capsys).rc == 0
    assert _files(out)["model.safetensors"] == new["model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "a temporary sibling was left"


@pytest.mark.slow
def test_kill_at_random_times_during_export(trained_run, tmp_path):
    """`dcgan export` killed after a random delay, 6 times: a folder at --out always loads whole."""
    rng = random.Random(3)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "dcgan", "export", "--checkpoint", str(trained_run), "--out", str(out)]
    t0 = time.monotonic()
    assert subprocess.run(argv, capture_output=True, env=env, timeout=300).returncode == 0
    whole = time.monotonic() - t0
    for _ in range(6):
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(0.3, 1.0) * whole)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if out.exists():
            open_export(out)


# --- the explorer over real sockets ---------------------------------------------------------------


class Server:
    def __init__(self, folder: Path, **options) -> None:
        from dcgan.share.serve import create_app, listen, load_explorer, make_server

        self.explorer = load_explorer(str(folder), "cpu")
        self.sock = listen("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.srv = make_server(create_app(self.explorer), **options)
        self.thread = threading.Thread(target=self.srv.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.srv.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.srv.started

    def get(self, path: str, host: str | None = None, timeout: float = 10) -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.putrequest("GET", path, skip_host=host is not None)
            if host is not None:
                c.putheader("Host", host)
            c.endheaders()
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self) -> None:
        self.srv.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def serve_export(good_export):
    servers: list[Server] = []

    def start(**options) -> Server:
        servers.append(Server(good_export, **options))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def _closed_by_server(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_idle_sockets_do_not_lock_the_explorer_out(serve_export):
    """The issue's case with the shipped settings: 200 idle sockets (4 times the old lockout's
    64), then requests are served at once; the oldest idle sockets were closed to make room."""
    srv = serve_export()
    idle = [srv.connect() for _ in range(200)]
    try:
        time.sleep(0.3)
        t0 = time.monotonic()
        for _ in range(5):
            status, body = srv.get("/api/info")
            assert status == 200 and json.loads(body)["nz"] == 100
        assert time.monotonic() - t0 < 5
        assert srv.get("/api/sample?n=4")[0] == 200
        assert _closed_by_server(idle[0], 2), "the oldest idle socket is still open"
        assert len(srv.srv.server_state.connections) <= 64
    finally:
        for s in idle:
            s.close()


def test_idle_and_slow_sockets_are_cut_off_after_the_head_timeout(serve_export):
    """A 1 s head timeout: a silent socket, one trickling a request head and one trickling after
    a response are each closed by the server, while other requests are served meanwhile. The bound
    (6 s) is loose so a loaded machine cannot fail it; without the timer none closes at all."""
    srv = serve_export(head_timeout=1.0)
    quiet = srv.connect()
    slow = srv.connect()
    slow.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    after = srv.connect()  # slow after a response: keep-alive trickle does not keep it open
    after.sendall(f"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
    assert b"200 OK" in after.recv(65536)
    socks = {"quiet": quiet, "slow": slow, "after": after}
    closed: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        while len(closed) < len(socks) and time.monotonic() - t0 < 6:
            for name, s in socks.items():
                if name in closed:
                    continue
                try:
                    if name != "quiet":
                        s.sendall(b"X")
                    if _closed_by_server(s, 0.01):
                        closed[name] = time.monotonic() - t0
                except OSError:
                    closed[name] = time.monotonic() - t0
            assert srv.get("/api/info")[0] == 200  # others are served meanwhile
            time.sleep(0.1)
        assert set(closed) == set(socks), f"still open after 6 s: {set(socks) - set(closed)}"
    finally:
        for s in socks.values():
            s.close()


def test_many_sockets_at_once_get_answers_and_the_explorer_stays_up(serve_export):
    """150 clients at once, PNG and JSON: each gets 200 or 503 (never a hang), at most one
    computes at a time, and the explorer serves afterwards."""
    srv = serve_export()
    ex = srv.explorer
    inside = {"now": 0, "most": 0}
    lock = threading.Lock()
    real_z = ex.z

    def counting_z(q):
        with lock:
            inside["now"] += 1
            inside["most"] = max(inside["most"], inside["now"])
        try:
            time.sleep(0.005)
            return real_z(q)
        finally:
            with lock:
                inside["now"] -= 1

    ex.z = counting_z
    statuses: list[int | str] = []

    def client(i: int) -> None:
        path = f"/api/sample?n=16&seed={i}" + ("&format=json" if i % 2 else "")
        try:
            statuses.append(srv.get(path, timeout=60)[0])
        except OSError as e:  # a connection closed to make room is an answer too
            statuses.append(type(e).__name__)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(150)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(statuses) == 150 and set(statuses) <= {200, 503, "ConnectionResetError", "RemoteDisconnected"}, \
        sorted(map(str, set(statuses)))
    assert statuses.count(200) >= 32 and inside["most"] == 1
    ex.z = real_z
    assert srv.get("/api/sample?n=4&format=json")[0] == 200


@pytest.mark.parametrize("host, status", [
    ("evil.example", 400), ("evil.example:8000", 400), ("localhost.evil.example", 400), ("", 400),
    ("127.0.0.1", 200), ("localhost:1234", 200), ("[::1]:8000", 200), ("LOCALHOST.", 200),
])
def test_host_header_must_name_the_server(serve_export, host, status):
    """DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 sends
    `Host: evil.example`; only the names the explorer is served under are answered."""
    srv = serve_export()
    got, body = srv.get("/api/info", host=host)
    assert got == status, body
    if status == 400:
        assert "Host" in json.loads(body)["error"]


def test_host_names_of_a_wildcard_bind():
    from dcgan.share.serve import _host_ok, host_names

    names = host_names("0.0.0.0")
    assert _host_ok(socket.gethostname(), names) and _host_ok("192.168.1.7:8000", names)
    assert not _host_ok("attacker.example", names)
    assert _host_ok("myhost.lan:80", host_names("myhost.lan")) and not _host_ok("myhost.lan", host_names("::1"))


def test_json_requests_hold_the_generation_slot(good_export):
    """format=json waits for the slot like a PNG (it once bypassed it) and gets 503 when full."""
    from fastapi.testclient import TestClient

    from dcgan.share.serve import MAX_WAITING, create_app, load_explorer

    ex = load_explorer(str(good_export), "cpu")
    with TestClient(create_app(ex), base_url="http://127.0.0.1") as c:
        done = threading.Event()
        with ex._gate:
            t = threading.Thread(target=lambda: (c.get("/api/sample", params={"n": 4, "format": "json"}),
                                                 done.set()))
            t.start()
            assert not done.wait(0.5), "a JSON request ran while another held the slot"
        assert done.wait(10)
        ex._waiting = MAX_WAITING
        try:
            for path in ("/api/sample?n=2&format=json", "/api/image?n=2&index=1&format=json",
                         "/api/walk?n=4&a=0&b=1&base=2&format=json"):
                assert c.get(path).status_code == 503
        finally:
            ex._waiting = 0


def test_long_z_models_bound_n_by_the_numbers_sent(tmp_path):
    """n * nz is bounded (the z is held and sent as JSON): a model with nz=65536 serves at most 16."""
    from fastapi.testclient import TestClient

    from dcgan.config import from_dict
    from dcgan.models import Generator
    from dcgan.share.serve import Explorer, create_app

    cfg = from_dict({"data": {"image_size": 16, "channels": 1}, "model": {"nz": 65536, "ngf": 1, "ndf": 1}})
    ex = Explorer(Generator(cfg.model, 16, 1).eval(), cfg, {}, "x")
    with TestClient(create_app(ex), base_url="http://127.0.0.1") as c:
        assert c.get("/api/info").json()["limits"]["n"] == 16
        assert c.get("/api/sample?n=16&format=json").status_code == 200
        r = c.get("/api/sample?n=17&format=json")
        assert r.status_code == 422 and "at most 16" in r.json()["error"]
