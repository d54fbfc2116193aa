"""Training runs: run directories, checkpoints, exact resume, nothing lost, clear failures."""

from __future__ import annotations

import json

import pytest
import torch

from dcgan.checkpoint import load_checkpoint, load_models, save_checkpoint
from dcgan.errors import CheckpointError, DCGANError
from dcgan.loop import TrainingDiverged
from dcgan.runlog import read_metrics
from dcgan.train import train


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_run_directory_contents(tiny_cfg, tmp_path):
    result = train(tiny_cfg(), runs_root=tmp_path / "runs")
    run = result.run_dir
    assert run == tmp_path / "runs" / "tiny-001" and result.step == 8 and result.status == "done"
    for name in ("config.yaml", "metrics.jsonl", "curves.png", "samples/real.png", "samples/fake-0000004.png",
                 "samples/fake-0000008.png", "checkpoints/last.pt", "checkpoints/step-0000004.pt"):
        assert (run / name).is_file(), name
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    for r in rows:
        assert 0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1 and r["loss_d"] > 0 and r["images_per_s"] > 0
    # A second run never reuses the first one's directory.
    assert train(tiny_cfg(), runs_root=tmp_path / "runs").run_dir.name == "tiny-002"


def test_checkpoint_contents_load_with_weights_only(tiny_cfg, tmp_path):
    run = train(tiny_cfg(), run_dir=tmp_path / "r").run_dir
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert {"G", "D", "opt_G", "opt_D", "step", "epoch", "batch", "rng", "fixed_z", "config"} <= ck.keys()
    assert ck["step"] == 8 and ck["fixed_z"].shape == (16, 100)
    assert ck["opt_G"]["state"], "Adam moments must be saved, not only the weights"
    G, D, cfg, _ = load_models(run)
    assert cfg.data.image_size == 16 and G(torch.zeros(2, 100)).shape == (2, 1, 16, 16)


@pytest.mark.parametrize("subset", [512, 96])  # within one epoch / across epoch boundaries
def test_resume_is_exact(tiny_cfg, tmp_path, subset):
    cfg = tiny_cfg(data={"subset": subset})
    assert train(cfg, run_dir=tmp_path / "a").step == 8
    half = train(tiny_cfg(data={"subset": subset}, train={"max_steps": 4}), run_dir=tmp_path / "b")
    assert half.step == 4
    resumed = train(resume=tmp_path / "b", overrides=["train.max_steps=8"])
    assert resumed.run_dir == tmp_path / "b" and resumed.step == 8
    a = load_checkpoint(tmp_path / "a")
    b = load_checkpoint(tmp_path / "b")
    assert states_equal(a["G"], b["G"]) and states_equal(a["D"], b["D"])
    assert a["opt_D"]["state"][0]["exp_avg"].equal(b["opt_D"]["state"][0]["exp_avg"])
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert "resume" in kinds


def test_resume_from_older_checkpoint_branches_into_a_new_run(tiny_cfg, tmp_path):
    run = train(tiny_cfg(), run_dir=tmp_path / "runs" / "orig").run_dir
    last_before = (run / "checkpoints" / "last.pt").read_bytes()
    branch = train(resume=run / "checkpoints" / "step-0000004.pt", overrides=["train.max_steps=6"],
                   runs_root=tmp_path / "runs")
    assert branch.run_dir != run and branch.step == 6
    assert (run / "checkpoints" / "last.pt").read_bytes() == last_before  # nothing overwritten


def test_existing_run_dir_is_never_overwritten(tiny_cfg, tmp_path):
    train(tiny_cfg(), run_dir=tmp_path / "r")
    with pytest.raises(DCGANError, match="already holds a run; pass --resume"):
        train(tiny_cfg(), run_dir=tmp_path / "r")


def test_checkpoint_of_another_architecture(tiny_cfg, tmp_path):
    run = train(tiny_cfg(), run_dir=tmp_path / "r").run_dir
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(DCGANError, match="cannot change model.ngf=16 .was 8."):
        train(resume=run, overrides=["model.ngf=16", "train.max_steps=10"])
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # a refused resume writes nothing
    # A checkpoint whose weights do not fit its own config (edited by hand): a one-line error.
    ck = load_checkpoint(run)
    ck["config"]["model"]["ngf"] = 16
    save_checkpoint(ck, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="another architecture"):
        train(resume=tmp_path / "edited.pt", overrides=["train.max_steps=10"], runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()  # nor does a failed branch leave a directory
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    save_checkpoint({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a dcgan checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_atomic_save_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "ck.pt"
    save_checkpoint({"a": torch.ones(2)}, target)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(CheckpointError, match="could not write checkpoint .* previous checkpoints are intact"):
        save_checkpoint({"a": torch.zeros(2)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    from dcgan.losses import objectives

    calls = {"n": 0}

    def d_loss_goes_nan(self, r, f):
        calls["n"] += 1
        loss = objectives.d_loss(r, f)
        return loss * float("nan") if calls["n"] > 5 else loss

    monkeypatch.setattr(objectives.NonSaturating, "d_loss", d_loss_goes_nan)
    with pytest.raises(TrainingDiverged, match="NaN/inf before step 6; the last good checkpoint is"):
        train(tiny_cfg(), run_dir=tmp_path / "r")
    ck = load_checkpoint(tmp_path / "r")
    assert ck["step"] == 4  # the checkpoint from before the NaN, untouched
    assert all(torch.isfinite(v).all() for v in ck["G"].values() if v.is_floating_point())


def test_stop_request_saves_at_step_boundary(tiny_cfg, tmp_path, monkeypatch):
    from dcgan import loop as loop_mod

    class StopAfterThree(loop_mod.StopFlag):
        def __enter__(self):
            self.count = 0
            return self

        @property
        def requested(self):
            self.count += 1
            return self.count > 3 * 4  # `requested` is read several times per step

        @requested.setter
        def requested(self, v):
            pass

    monkeypatch.setattr(loop_mod, "StopFlag", StopAfterThree)
    result = train(tiny_cfg(train={"max_steps": 100}), run_dir=tmp_path / "r")
    assert result.status == "interrupted" and 0 < result.step < 100
    assert load_checkpoint(tmp_path / "r")["step"] == result.step


def test_d_steps_and_precision_options_train(tiny_cfg, tmp_path):
    for i, opts in enumerate([{"d_steps": 2, "g_steps": 2}, {"precision": "bf16"}, {"precision": "fp16"},
                              {"channels_last": "true"}]):
        result = train(tiny_cfg(train={"max_steps": 4, **opts}), run_dir=tmp_path / f"r{i}")
        rows = read_metrics(result.run_dir / "metrics.jsonl")
        assert rows[-1]["step"] == 4 and all(r["loss_d"] > 0 for r in rows)


def test_same_seed_same_run_whether_or_not_the_data_cache_exists(tiny_cfg, tmp_path):
    """Decoding a new cache runs DataLoader workers, which draw from the global RNG: the init
    must not depend on it, or a fresh clone would train differently from a second run."""
    cold = train(tiny_cfg(data={"cache_dir": str(tmp_path / "fresh-cache")}), run_dir=tmp_path / "cold")
    warm = train(tiny_cfg(data={"cache_dir": str(tmp_path / "fresh-cache")}), run_dir=tmp_path / "warm")
    a, b = load_checkpoint(cold.run_dir), load_checkpoint(warm.run_dir)
    assert states_equal(a["G"], b["G"]) and states_equal(a["D"], b["D"])
