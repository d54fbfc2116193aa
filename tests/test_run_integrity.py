"""A run's integrity: one writer, resume changes that take effect or are refused before any
write, failed starts that leave nothing behind, resume from the newest checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dcgan.checkpoint import load_checkpoint, resolve_checkpoint
from dcgan.cli import main
from dcgan.errors import DCGANError
from dcgan.runlog import read_metrics
from dcgan.runs import RunLock
from dcgan.train import train

SRC = str(Path(__file__).resolve().parents[1] / "src")


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_resume_with_a_new_learning_rate_takes_effect_and_is_logged(tiny_cfg, tmp_path):
    run = train(tiny_cfg(train={"max_steps": 4}), run_dir=tmp_path / "r").run_dir
    train(resume=run, overrides=["train.max_steps=6", "train.lr_d=5e-5", "train.beta1=0.6"])
    ck = load_checkpoint(run)
    group = ck["opt_D"]["param_groups"][0]
    assert group["lr"] == pytest.approx(5e-5) and group["betas"] == (0.6, 0.999)
    assert ck["opt_G"]["param_groups"][0]["lr"] == pytest.approx(2e-4)  # unchanged
    (resume,) = read_metrics(run / "metrics.jsonl", "resume")
    assert resume["changed"] == {"train.max_steps": [4, 6], "train.lr_d": [2e-4, 5e-5], "train.beta1": [0.5, 0.6]}
    assert ck["config"]["train"]["lr_d"] == pytest.approx(5e-5)


@pytest.mark.parametrize("override", ["model.nz=50", "train.batch_size=16", "data.image_size=32", "train.seed=3"])
def test_a_refused_resume_writes_nothing(tiny_cfg, tmp_path, capsys, override):
    run = train(tiny_cfg(train={"max_steps": 2, "checkpoint_every": 0}), run_dir=tmp_path / "r").run_dir
    before = snapshot(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: a resume cannot change " + override.split("=")[0]) and len(err.splitlines()) == 1
    assert snapshot(run) == before


def test_failed_start_leaves_no_run_directory(tmp_path, capsys):
    root = tmp_path / "runs"
    argv = ["train", "--runs-root", str(root), "--set", "data.name=folder", "--set", f"data.root={tmp_path / 'none'}",
            "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.device=cpu"]
    assert main(argv) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not root.exists() or not any(root.iterdir())
    assert main([*argv[:3], "--run-dir", str(tmp_path / "new"), *argv[3:]]) == 2
    assert not (tmp_path / "new").exists()


def test_resume_of_an_older_checkpoint_honours_run_dir_and_stays_beside_the_run(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may appear in the working directory
    run = train(tiny_cfg(), run_dir=tmp_path / "runs" / "orig").run_dir
    step4 = run / "checkpoints" / "step-0000004.pt"
    there = train(resume=step4, run_dir=tmp_path / "elsewhere", overrides=["train.max_steps=6"])
    assert there.run_dir == tmp_path / "elsewhere" and there.step == 6
    beside = train(resume=step4, overrides=["train.max_steps=6"])
    assert beside.run_dir.parent == run.parent and beside.run_dir.name == "tiny-001"
    assert not (tmp_path / "runs" / "tiny").exists() and sorted(p.name for p in tmp_path.iterdir()) == \
        ["elsewhere", "runs"]


def test_resume_without_last_pt_continues_from_the_newest_step_checkpoint(tiny_cfg, tmp_path):
    run = train(tiny_cfg(train={"max_steps": 8, "checkpoint_every": 2}), run_dir=tmp_path / "r").run_dir
    (run / "checkpoints" / "last.pt").unlink()  # as if killed during its save
    assert resolve_checkpoint(run) == run / "checkpoints" / "step-0000006.pt"
    result = train(resume=run, overrides=["train.max_steps=10"])
    assert result.run_dir == run and result.step == 10
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl", "resume")] == [6]


def test_run_lock_names_the_holder_and_dies_with_it(tmp_path):
    """A second writer is refused with the holder's PID; a SIGKILLed holder leaves no stale lock."""
    (tmp_path / "r").mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from dcgan.runs import RunLock; RunLock(sys.argv[1]).acquire(); "
         "print('locked', flush=True); time.sleep(60)", str(tmp_path / "r")],
        env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DCGANError, match=f"being written by another process .PID {holder.pid}."):
            RunLock(tmp_path / "r").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with RunLock(tmp_path / "r"):
        pass


def test_two_resumes_of_one_run_the_second_exits_2(synthetic_root, cache_dir, tmp_path):
    run = tmp_path / "run"
    sets = [f"data.root={synthetic_root}", f"data.cache_dir={cache_dir}", "data.name=fashion_mnist",
            "data.subset=256", "data.image_size=16", "data.channels=1", "data.download=false", "model.ngf=8",
            "model.ndf=8", "train.batch_size=32", "train.log_every=1", "train.progress=false", "train.device=cpu",
            "train.checkpoint_every=0", "train.max_steps=2"]
    argv = ["train", "--run-dir", str(run)]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    env = {**os.environ, "PYTHONPATH": SRC}
    resume = [sys.executable, "-m", "dcgan", "train", "--resume", str(run)]
    first = subprocess.Popen([*resume, "--set", "train.max_steps=100000"], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(read_metrics(run / "metrics.jsonl")) < 4:
            time.sleep(0.2)
        second = subprocess.run(resume, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"PID {first.pid}" in second.stderr and "Traceback" not in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in lines if r["kind"] == "train"]
    assert steps == sorted(set(steps))  # one writer: no step logged twice
    assert [r["step"] for r in lines if r["kind"] == "resume"] == [2]
