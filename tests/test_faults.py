"""I/O faults: read-only folders, a full disk, files replaced or damaged between and during runs,
a second writer. Each ends in one `error:` line and exit 2 (or, where documented, a warning
and a run that goes on), earlier checkpoints intact and loadable, no temp file left behind.

Read-only folders and full disks are real where the test may mount a tmpfs (as root in a
container that allows it); elsewhere those tests skip with the reason, and the same faults
are simulated by raising OSError(EROFS / ENOSPC) from the writing functions.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml
from test_fuzz import Outcome, assert_unchanged, assert_user_error, run_cli, snapshot

from dcgan.checkpoint import load_checkpoint, save_checkpoint

TINY = ["data.subset=128", "data.image_size=16", "data.channels=1", "data.download=false", "model.ngf=8",
        "model.ndf=8", "train.batch_size=32", "train.max_steps=4", "train.log_every=2", "train.sample_every=2",
        "train.checkpoint_every=2", "train.num_fixed=4", "train.progress=false", "train.device=cpu",
        "eval.every=0"]


def train_argv(data: Path, cache: Path, *extra: str) -> list[str]:
    argv = ["train", "--set", "name=fault", "--set", "data.name=fashion_mnist", "--set", f"data.root={data}",
            "--set", f"data.cache_dir={cache}"]
    for s in TINY + list(extra):
        argv += ["--set", s]
    return argv


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, synthetic_root, cache_dir) -> Path:
    """A tiny finished run (4 steps) to copy; never written by the tests."""
    from dcgan.cli import main

    run = tmp_path_factory.mktemp("faults") / "run"
    assert main(train_argv(synthetic_root, cache_dir) + ["--run-dir", str(run)]) == 0
    return run


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.tmp*")]


# --- a tmpfs where the sandbox allows mounting ---------------------------------------------------


@contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes at `path` (skips the test, with the reason, where mount is refused)."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no `mount` here: real read-only/full-disk faults are simulated by the tests below")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({r.stderr.strip() or r.returncode}): needs root in a container that "
                    "allows mounts; the simulated faults below still run")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: Path, options: str) -> None:
    r = subprocess.run(["mount", "-o", f"remount,{options}", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs {options} ({r.stderr.strip()})")


@pytest.fixture
def read_only(tmp_path) -> Iterator[Path]:
    """A real read-only folder (root ignores permission bits, so a read-only mount) holding a run copy."""
    with tmpfs(tmp_path / "ro", 16 << 20) as ro:
        yield ro


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


# --- read-only folders ----------------------------------------------------------------------------


def test_read_only_runs_root_and_run_dir(read_only, finished_run, synthetic_root, cache_dir, capsys, monkeypatch,
                                         tmp_path):
    monkeypatch.chdir(tmp_path)
    run = copy_run(finished_run, read_only / "run")
    remount(read_only, "ro")
    before = snapshot(read_only)
    for argv in (train_argv(synthetic_root, cache_dir) + ["--runs-root", str(read_only / "runs")],
                 train_argv(synthetic_root, cache_dir) + ["--run-dir", str(read_only / "new")],
                 ["train", "--resume", str(run)],
                 ["sample", "--checkpoint", str(run), "--num", "4", "--out", str(read_only / "g.png")],
                 ["sample", "--checkpoint", str(run), "--num", "4", "--out", str(read_only / "imgs")],
                 ["sample", "--checkpoint", str(run), "--num", "4", "--out", str(tmp_path / "g.png"),
                  "--save-z", str(read_only / "z.pt")],
                 ["export", "--checkpoint", str(run), "--out", str(read_only / "export")],
                 ["paper", "walk", "--checkpoint", str(run), "--mode", "linear", "--out", str(read_only / "walk.png")]):
        assert_user_error(run_cli(argv, capsys), str(read_only), "read-only")
    assert_unchanged(before, snapshot(read_only))
    # Reading is fine: a read-only run still samples and loads.
    assert run_cli(["sample", "--checkpoint", str(run), "--num", "4", "--out", str(tmp_path / "ok.png")],
                   capsys).rc == 0


def test_read_only_cache_dir_is_skipped_with_a_warning(read_only, synthetic_root, capsys, caplog, tmp_path):
    remount(read_only, "ro")
    caplog.set_level("WARNING")
    out = run_cli(train_argv(synthetic_root, read_only) + ["--run-dir", str(tmp_path / "run")], capsys)
    assert out.rc == 0, out.err[-2000:]
    assert "could not write the data cache" in caplog.text + out.err


# --- a full disk ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_full_disk_keeps_earlier_checkpoints_and_resumes(tmp_path, synthetic_root, cache_dir, capsys):
    """A tmpfs with room for a few checkpoints: the run stops with one line once it is full,
    every checkpoint on disk loads, no temp file is left, and after freeing space it resumes."""
    size = 900 << 10  # a checkpoint of this tiny run is ~130 kB: room for a few, then full
    with tmpfs(tmp_path / "disk", size) as disk:
        run = disk / "run"
        out = run_cli(train_argv(synthetic_root, cache_dir, "train.max_steps=200", "train.checkpoint_every=1",
                                 "train.sample_every=1000", "train.log_every=1")
                      + ["--run-dir", str(run)], capsys)
        message = assert_user_error(out, "space", "could not write", after_progress=True)
        assert "disk is full" in message or "No space left" in message, message
        ckpts = sorted((run / "checkpoints").glob("*.pt"))
        assert len(ckpts) >= 2, ckpts
        steps = [load_checkpoint(p)["step"] for p in ckpts]  # every one whole
        assert temp_files(disk) == []
        remount(disk, "size=64m")
        out = run_cli(["train", "--resume", str(run), "--set", "train.checkpoint_every=0",
                       "--set", f"train.max_steps={max(steps) + 2}"], capsys)
        assert out.rc == 0, out.err[-2000:]
        assert load_checkpoint(run)["step"] == max(steps) + 2


def test_full_disk_simulated(tmp_path, synthetic_root, cache_dir, capsys, monkeypatch):
    """ENOSPC from the third checkpoint write on: exit 2, one line, the earlier ones intact."""
    real_save = torch.save
    calls = {"n": 0}

    def save_until_full(obj, f, *a, **k):
        if "checkpoints" not in str(getattr(f, "name", "")):
            return real_save(obj, f, *a, **k)
        calls["n"] += 1
        if calls["n"] > 2:  # step 2 wrote step-2.pt and last.pt; the disk is full from then on
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save_until_full)
    run = tmp_path / "run"
    out = run_cli(train_argv(synthetic_root, cache_dir, "train.max_steps=8") + ["--run-dir", str(run)], capsys)
    assert_user_error(out, "No space left", after_progress=True)
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(run)["step"] == 2  # last.pt from step 2: whole
    assert load_checkpoint(run / "checkpoints" / "step-0000002.pt")["step"] == 2
    assert temp_files(run) == []


def test_read_only_simulated(tmp_path, synthetic_root, cache_dir, capsys, monkeypatch):
    """EROFS from every mkdir and file creation: one line, exit 2, nothing left behind."""
    real_mkdir = Path.mkdir

    def ro_mkdir(self, *a, **k):
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", ro_mkdir)
    for argv in (train_argv(synthetic_root, cache_dir) + ["--runs-root", str(tmp_path / "ro")],
                 train_argv(synthetic_root, cache_dir) + ["--run-dir", str(tmp_path / "ro" / "run")]):
        assert_user_error(run_cli(argv, capsys), "read-only", str(tmp_path / "ro"))
    assert not (tmp_path / "ro").exists()


# --- files replaced or damaged --------------------------------------------------------------------


def test_checkpoint_replaced_while_read_is_never_torn(finished_run, tmp_path):
    """A reader loading last.pt while a writer replaces it again and again sees whole files only."""
    path = tmp_path / "last.pt"
    ck = load_checkpoint(finished_run)
    save_checkpoint(ck, path)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            save_checkpoint(ck, path)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(30):
            assert load_checkpoint(path)["step"] == ck["step"]
    finally:
        stop.set()
        t.join()
    assert temp_files(tmp_path) == []


@pytest.mark.slow
def test_corrupt_data_cache_is_decoded_again(tmp_path, synthetic_root, cache_dir, capsys, caplog):
    cache = tmp_path / "cache"
    assert run_cli(train_argv(synthetic_root, cache) + ["--run-dir", str(tmp_path / "a")], capsys).rc == 0
    files = list(cache.rglob("*.pt"))
    assert files
    for f in files:
        f.write_bytes(f.read_bytes()[:100])  # a cache replaced by a torn file
    caplog.set_level("WARNING")
    out = run_cli(train_argv(synthetic_root, cache) + ["--run-dir", str(tmp_path / "b")], capsys)
    assert out.rc == 0, out.err[-2000:]
    assert "unreadable data cache" in caplog.text + out.err
    assert torch.equal(load_checkpoint(tmp_path / "a")["G"]["stages.0.0.weight"],
                       load_checkpoint(tmp_path / "b")["G"]["stages.0.0.weight"])  # same data, same run


@pytest.mark.slow
def test_config_replaced_mid_run_changes_nothing(tmp_path, synthetic_root, cache_dir, capsys, monkeypatch):
    """The config is read once: a file replaced during the run does not change it, and
    RUN/config.yaml records what ran."""
    import dcgan.loop as loop_mod

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump({"model": {"ngf": 8}}))
    real = loop_mod.save_samples

    def replace_then_save(state, run_dir):
        cfg_file.write_text("model: [broken\n")
        return real(state, run_dir)

    monkeypatch.setattr(loop_mod, "save_samples", replace_then_save)
    argv = train_argv(synthetic_root, cache_dir) + ["--config", str(cfg_file), "--run-dir", str(tmp_path / "r")]
    assert run_cli(argv, capsys).rc == 0
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["model"]["ngf"] == 8


def test_torn_metrics_line_then_resume(finished_run, tmp_path, capsys):
    """A crash mid-line in metrics.jsonl: the resume goes on and the torn line is ignored."""
    run = copy_run(finished_run, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 9, "loss_d": 0.')
    out = run_cli(["train", "--resume", str(run), "--set", "train.max_steps=6"], capsys)
    assert out.rc == 0, out.err[-2000:]
    assert load_checkpoint(run)["step"] == 6


def test_removed_last_checkpoint_resumes_from_newest_step(finished_run, tmp_path, capsys):
    """A killed first save of last.pt: --resume RUN takes the newest step-N.pt, in RUN."""
    run = copy_run(finished_run, tmp_path / "run")
    (run / "checkpoints" / "last.pt").unlink()
    out = run_cli(["train", "--resume", str(run), "--set", "train.max_steps=6"], capsys)
    assert out.rc == 0, out.err[-2000:]
    assert "step-0000002.pt" in out.err and load_checkpoint(run)["step"] == 6


# --- one writer per run; refused starts write nothing --------------------------------------------


def test_second_writer_is_refused_naming_the_pid(finished_run, tmp_path, capsys):
    import os

    from dcgan.runs import RunLock

    run = copy_run(finished_run, tmp_path / "run")
    before = snapshot(run)
    with RunLock(run):
        out = run_cli(["train", "--resume", str(run), "--set", "train.max_steps=6"], capsys)
        message = assert_user_error(out, "another process")
        assert f"PID {os.getpid()}" in message
    after = snapshot(run)
    after.pop(run / ".lock", None)
    before.pop(run / ".lock", None)
    assert_unchanged(before, after)


def test_refused_resume_and_failed_start_write_nothing(finished_run, tmp_path, synthetic_root, cache_dir, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    before = snapshot(run)
    for change in ("model.nz=50", "data.image_size=32", "train.batch_size=16", "train.seed=5"):
        assert_user_error(run_cli(["train", "--resume", str(run), "--set", change], capsys),
                          change.split("=")[0])
    assert_unchanged(before, snapshot(run))
    bad_data = ["--set", "data.name=folder", "--set", f"data.root={tmp_path / 'nothing'}"]
    assert_user_error(run_cli(train_argv(synthetic_root, cache_dir) + bad_data + ["--run-dir", str(tmp_path / "x")],
                              capsys), "nothing")
    assert_user_error(run_cli(train_argv(synthetic_root, cache_dir) + bad_data + ["--runs-root", str(tmp_path / "r")],
                              capsys), "nothing")
    assert not (tmp_path / "x").exists() and list((tmp_path / "r").glob("*")) == []


def test_resume_changes_take_effect_and_are_logged(finished_run, tmp_path, capsys):
    import json

    run = copy_run(finished_run, tmp_path / "run")
    out: Outcome = run_cli(["train", "--resume", str(run), "--set", "train.max_steps=6", "--set", "train.lr_d=1e-5",
                            "--set", "train.beta1=0.7"], capsys)
    assert out.rc == 0, out.err[-2000:]
    ck = load_checkpoint(run)
    assert ck["opt_D"]["param_groups"][0]["lr"] == 1e-5 and ck["opt_D"]["param_groups"][0]["betas"][0] == 0.7
    assert ck["opt_G"]["param_groups"][0]["betas"][0] == 0.7
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    resume = [r for r in records if r["kind"] == "resume"][-1]
    assert resume["changed"]["train.lr_d"] == [2e-4, 1e-5] and resume["step"] == 4


# --- round 2: never write over what is not ours; refused resumes write nothing -------------------

# Every path a run writes (README's run directory listing), each planted as a user's own file.
RUN_OUTPUT_PATHS = ("config.yaml", "metrics.jsonl", "curves.png", "scores.png", "evaluations.jsonl", "launch.json",
                    "samples/real.png", "samples/fake-0000002.png", "checkpoints/last.pt",
                    "checkpoints/step-0000002.pt", "checkpoints/best.pt", "tb/events.out", "notes.txt")


@pytest.mark.parametrize("how", ["new", "branch"])
@pytest.mark.parametrize("rel", RUN_OUTPUT_PATHS)
def test_foreign_file_in_run_dir_is_never_overwritten(rel, how, finished_run, tmp_path, synthetic_root, cache_dir,
                                                      capsys):
    """A user's own file at any run-output path of --run-dir: exit 2, one line naming the folder,
    every file there unchanged (a new run, and an older checkpoint branched into --run-dir)."""
    target = tmp_path / "mine"
    (target / rel).parent.mkdir(parents=True, exist_ok=True)
    (target / rel).write_text("the user's own file\n")
    before = snapshot(target)
    if how == "new":
        argv = train_argv(synthetic_root, cache_dir) + ["--run-dir", str(target)]
    else:
        argv = ["train", "--resume", str(finished_run / "checkpoints" / "step-0000002.pt"), "--run-dir", str(target)]
    assert_user_error(run_cli(argv, capsys), str(target))
    assert_unchanged(before, snapshot(target))


def test_empty_run_dir_and_leftovers_of_our_own_start_are_used(tmp_path, synthetic_root, cache_dir, capsys):
    """An empty folder is fine for a new run, and so is one holding only what a start of ours left
    before its config.yaml (the lock, a real-image grid); those leftovers are replaced."""
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli(train_argv(synthetic_root, cache_dir) + ["--run-dir", str(empty)], capsys).rc == 0
    left = tmp_path / "left"
    (left / "samples").mkdir(parents=True)
    (left / ".lock").write_text("12345\n")
    (left / "samples" / "fake-0000999.png").write_bytes(b"old")
    assert run_cli(train_argv(synthetic_root, cache_dir) + ["--run-dir", str(left)], capsys).rc == 0
    assert not (left / "samples" / "fake-0000999.png").exists() and load_checkpoint(left)["step"] == 4


@pytest.mark.parametrize("change, named", [
    ("train.max_steps=2", "step 4"),  # below the run's step: would rewrite last.pt and config.yaml
    ("train.epochs=9", "train.max_steps"),  # a max_steps run: epochs would do nothing
    ("data.root=/elsewhere", "data.root"),  # other data: another run
])
def test_refused_resume_changes_write_nothing(change, named, finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    before = snapshot(run)
    assert_user_error(run_cli(["train", "--resume", str(run), "--set", change], capsys), named)
    assert_unchanged(before, snapshot(run))


def test_resume_failing_on_io_leaves_config_yaml_as_it_was(finished_run, tmp_path, capsys):
    """metrics.jsonl cannot be appended (a folder stands there): the resume stops with one line
    and config.yaml still describes the checkpoint (it is written last, once the start is good)."""
    run = copy_run(finished_run, tmp_path / "run")
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").mkdir()
    config = (run / "config.yaml").read_bytes()
    out = run_cli(["train", "--resume", str(run), "--set", "train.max_steps=6", "--set", "train.lr_d=1e-5"], capsys)
    assert_user_error(out, "metrics.jsonl")
    assert (run / "config.yaml").read_bytes() == config
    assert load_checkpoint(run)["step"] == 4


# --- kill -9 in a run's first seconds -------------------------------------------------------------

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _dcgan(argv: list[str], hook: str | None = None, **kw) -> subprocess.Popen:
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("DCGAN_TEST_")}
    env.update(PYTHONPATH=SRC, OMP_NUM_THREADS="1", **({"DCGAN_TEST_HOOK": hook} if hook else {}))
    entry = str(Path(__file__).with_name("fault_entry.py"))  # `dcgan` with the test's fault hook
    return subprocess.Popen([sys.executable, entry, *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _recover(run: Path, synthetic_root: Path, cache_dir: Path, capsys) -> None:
    """After a kill, the run is never stuck: `--resume RUN` continues (or starts again) a run that
    had started, and `--run-dir RUN` starts one that had not; either ends at step 4."""
    from dcgan.runs import stopped_before_first_checkpoint

    started = (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("*.pt")) \
        or stopped_before_first_checkpoint(run)
    if started:
        refused = run_cli(train_argv(synthetic_root, cache_dir) + ["--run-dir", str(run)], capsys)
        assert_user_error(refused, "--resume")
        out = run_cli(["train", "--resume", str(run)], capsys)
    else:
        out = run_cli(train_argv(synthetic_root, cache_dir) + ["--run-dir", str(run)], capsys)
    assert out.rc == 0, out.err[-2000:]
    assert load_checkpoint(run)["step"] == 4
    assert [r["step"] for r in _records(run) if r["kind"] == "train"] == [2, 4]  # no record of the killed start


def _records(run: Path) -> list[dict]:
    import json

    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("point", [pytest.param(p, marks=() if p in ("outputs", "started") else (pytest.mark.slow,))
                                   for p in ("planned", "locked", "outputs", "started")])
def test_kill_9_at_each_start_point_then_the_run_recovers(point, tmp_path, synthetic_root, cache_dir, capsys):
    run = tmp_path / "run"
    p = _dcgan(train_argv(synthetic_root, cache_dir) + ["--run-dir", str(run)], f"{point}:kill")
    p.communicate(timeout=120)
    assert p.returncode == -9, p.stderr
    _recover(run, synthetic_root, cache_dir, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.5, 1.5, 2.5, 3.5, 5.0])
def test_kill_9_at_a_random_time_in_the_first_seconds(delay, tmp_path, synthetic_root, cache_dir, capsys):
    import time

    run = tmp_path / "run"
    p = _dcgan(train_argv(synthetic_root, cache_dir, "train.max_steps=4") + ["--run-dir", str(run)])
    time.sleep(delay)
    p.kill()
    p.communicate(timeout=120)
    if p.returncode == 0:  # finished before the kill: nothing to recover
        return
    _recover(run, synthetic_root, cache_dir, capsys)


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_it_again(tmp_path, synthetic_root, cache_dir,
                                                                             capsys):
    run = tmp_path / "run"
    p = _dcgan(train_argv(synthetic_root, cache_dir) + ["--run-dir", str(run)], "started:kill")
    p.communicate(timeout=120)
    out = run_cli(["train", "--resume", str(run), "--set", "train.max_steps=6"], capsys)
    assert out.rc == 0, out.err[-2000:]
    assert "stopped before its first checkpoint: starting it again from step 0" in out.err
    assert load_checkpoint(run)["step"] == 6 and load_checkpoint(run)["config"]["train"]["max_steps"] == 6


# --- concurrent starts, the race forced -----------------------------------------------------------


def _wait_for(path: Path, proc: subprocess.Popen, limit: float = 120) -> None:
    import time

    deadline = time.monotonic() + limit
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_losing_start_never_removes_the_winners_run_dir(tmp_path, synthetic_root, cache_dir):
    """The issue's race, forced: A makes the new --run-dir X and stops before locking it; B finds
    X empty, locks it and writes its first outputs (held there, before config.yaml); then A goes
    on, is refused the lock, and must remove nothing. B then finishes its run in X."""
    run, go_a, go_b = tmp_path / "X", tmp_path / "go-a", tmp_path / "go-b"
    argv = train_argv(synthetic_root, cache_dir) + ["--run-dir", str(run)]
    a = _dcgan(argv, f"planned:wait:{go_a}")
    try:
        _wait_for(run, a)  # A made X and waits before its lock
        b = _dcgan(argv, f"outputs:wait:{go_b}")
        _wait_for(run / "samples" / "real.png", b)  # B holds the lock, config.yaml not written yet
        go_a.touch()
        _, err_a = a.communicate(timeout=120)
        assert a.returncode == 2, err_a
        assert f"PID {b.pid}" in err_a and len(err_a.strip().splitlines()) == 1 and "Traceback" not in err_a
        assert (run / "samples" / "real.png").is_file() and (run / ".lock").is_file()
        go_b.touch()
        _, err_b = b.communicate(timeout=120)
        assert b.returncode == 0, err_b
    finally:
        go_a.touch()
        go_b.touch()
        for p in (a, locals().get("b")):
            if p is not None and p.poll() is None:
                p.kill()
    assert load_checkpoint(run)["step"] == 4 and (run / "config.yaml").is_file()


@pytest.mark.slow
def test_two_starts_released_together_one_trains_the_other_exits_2(tmp_path, synthetic_root, cache_dir):
    """Two starts of one new --run-dir held at a barrier after planning, then released at once:
    exactly one trains, the other exits 2 with one line, and X holds one whole run."""
    run, go = tmp_path / "X", tmp_path / "go"
    argv = train_argv(synthetic_root, cache_dir) + ["--run-dir", str(run)]
    procs = [_dcgan(argv, f"planned:wait:{go}") for _ in range(2)]
    try:
        import time

        time.sleep(1)
        _wait_for(run, procs[0])
        time.sleep(3)  # both have planned (each imports torch first)
        go.touch()
        outs = [p.communicate(timeout=180) for p in procs]
    finally:
        go.touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser_err = outs[[p.returncode for p in procs].index(2)][1]
    assert len(loser_err.strip().splitlines()) == 1 and "Traceback" not in loser_err, loser_err
    assert load_checkpoint(run)["step"] == 4
    assert [r["step"] for r in _records(run) if r["kind"] == "train"] == [2, 4]
