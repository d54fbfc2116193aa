"""The `dcgan` command end to end: train, resume, sample; bad input -> one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from dcgan.cli import main


def tiny_args(root, cache_dir, *extra):
    sets = [f"data.root={root}", f"data.cache_dir={cache_dir}", "data.subset=256", "data.image_size=16",
            "model.ngf=8", "model.ndf=8", "train.batch_size=32", "train.max_steps=4", "train.log_every=2",
            "train.sample_every=2", "train.checkpoint_every=2", "train.num_fixed=16", "train.progress=false",
            "train.device=cpu", "data.download=false"]
    args = ["--config", str(Path(__file__).resolve().parents[1] / "configs" / "fashion_mnist.yaml")]
    for s in sets + list(extra):
        args += ["--set", s]
    return args


def test_train_resume_sample(synthetic_root, cache_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *tiny_args(synthetic_root, cache_dir, "eval.every=0"), "--run-dir", str(run)]) == 0
    assert (run / "checkpoints" / "last.pt").is_file()
    assert "finished at step 4" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--set", "train.max_steps=6"]) == 0
    assert "resuming from" in capsys.readouterr().err

    assert main(["sample", "--checkpoint", str(run), "--num", "10", "--out", str(tmp_path / "g.png")]) == 0
    grid = Image.open(tmp_path / "g.png")
    assert grid.size[0] > 16 * 3  # a grid, not one image
    assert main(["sample", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--num", "5",
                 "--out", str(tmp_path / "imgs"), "--bn-mode", "train", "--seed", "3"]) == 0
    files = sorted((tmp_path / "imgs").iterdir())
    assert len(files) == 5 and Image.open(files[0]).size == (16, 16) and Image.open(files[0]).mode == "L"
    assert main(["sample", "--checkpoint", str(run), "--num", "9", "--out", str(tmp_path / "n.png"),
                 "--numbered", "--save-z", str(tmp_path / "z.pt")]) == 0
    import torch

    assert torch.load(tmp_path / "z.pt").shape == (9, 100)


def test_same_seed_same_samples(synthetic_root, cache_dir, tmp_path):
    run = tmp_path / "run"
    main(["train", *tiny_args(synthetic_root, cache_dir, "eval.every=0"), "--run-dir", str(run)])
    for name in ("a", "b"):
        main(["sample", "--checkpoint", str(run), "--num", "4", "--out", str(tmp_path / name), "--seed", "7"])
    assert (tmp_path / "a" / "000003.png").read_bytes() == (tmp_path / "b" / "000003.png").read_bytes()


@pytest.mark.parametrize("argv, message", [
    (["train", "--set", "train.batch_size=abc"], "error: train.batch_size='abc' must be an integer"),
    (["train", "--set", "model.nfg=3"], "error: unknown config key 'model.nfg'"),
    (["train", "--config", "nope.yaml"], "error: config file 'nope.yaml' not found"),
    (["train", "--set", "data.image_size=100"], "error: data.image_size=100 is not supported"),
    (["train", "--set", "data.name=folder", "--set", "data.root=/nonexistent/faces"],
     "error: image folder '/nonexistent/faces' does not exist"),
    (["sample", "--checkpoint", "/nonexistent/run", "--out", "x.png"], "error: checkpoint '/nonexistent/run' not found"),
    (["train", "--resume", "/nonexistent/run"], "error: checkpoint '/nonexistent/run' not found"),
])
def test_bad_input_one_line_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message), err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_missing_dataset_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--set", "data.name=cifar10", "--set", f"data.root={tmp_path}",
                 "--set", "data.download=false", "--set", f"data.cache_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "cifar10 (train) not found under" in err and "data.download=true" in err


def test_existing_run_dir_refused(synthetic_root, cache_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *tiny_args(synthetic_root, cache_dir, "eval.every=0"), "--run-dir", str(run)]) == 0
    before = (run / "checkpoints" / "last.pt").read_bytes()
    assert main(["train", *tiny_args(synthetic_root, cache_dir, "eval.every=0"), "--run-dir", str(run)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_console_script_and_module_entry_points(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = subprocess.run([sys.executable, "-m", "dcgan", "train", "--set", "train.lr_d=-1"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and out.stderr.strip() == "error: train.lr_d=-1.0 must be > 0"
    out = subprocess.run([sys.executable, "-m", "dcgan", "--help"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0 and "train" in out.stdout and "sample" in out.stdout


def test_ctrl_c_saves_at_a_step_boundary_and_exits_130(synthetic_root, cache_dir, tmp_path):
    """A real SIGINT to a running `dcgan train`: it stops at a step boundary, saves last.pt."""
    import json
    import signal
    import time

    run = tmp_path / "run"
    argv = [sys.executable, "-m", "dcgan", "train", *tiny_args(synthetic_root, cache_dir, "eval.every=0",
                                                             "train.max_steps=100000", "train.log_every=1",
                                                             "train.checkpoint_every=0"),
            "--run-dir", str(run)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.is_file() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped (interrupted)" in err and f"resume with: dcgan train --resume {run}" in err
    assert "Traceback" not in err
    import torch

    step = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"]
    logged = [json.loads(x)["step"] for x in metrics.read_text().splitlines() if '"train"' in x]
    assert 3 <= step < 100000 and logged[-1] == step
