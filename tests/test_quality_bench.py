"""bench/quality.py's bookkeeping: which checkpoints of a run the long-run protocol scores."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from dcgan.train import train


def _quality():
    spec = importlib.util.spec_from_file_location("bench_quality", Path(__file__).resolve().parents[1] / "bench" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Evaluator:
    """Stands in for the classifier-feature evaluator: the score is the step's G output mean."""

    def generate(self, G):
        with torch.no_grad():
            return G(torch.zeros(4, G.nz))

    def score_images(self, images):
        return {"fd_clf": float(images.mean()), "features": "test", "clf_weights": "0123abcd", "split": "test",
                "n_real": 1, "n_gen": 4, "image_size": images.shape[-1]}


def test_a_stopped_runs_last_checkpoint_is_not_scored_as_a_step_of_the_protocol(tiny_cfg, tmp_path):
    """A run stopped between kept checkpoints (SIGTERM: last.pt at step 6) is scored at the grid's
    steps only; once it reaches its planned length, the last step is scored too."""
    quality = _quality()
    assert [s for s in range(1, 11) if quality.on_grid(s, 4, 10)] == [4, 8, 10]
    run = tmp_path / "run"
    train(tiny_cfg(train={"max_steps": 6, "checkpoint_every": 4}), run_dir=run)
    out = tmp_path / "out"
    entry = {"variant": "paper", "seed": 0, "steps": 8, "images_per_step": 32, "evals": []}
    saves = []
    quality.score_run(entry, run, _Evaluator(), out, lambda: saves.append(1), every=4)
    assert [e["step"] for e in entry["evals"]] == [4] and len(saves) == 1
    assert entry["evals"][0]["clf_weights"] == "0123abcd"  # each score names the classifier's weights
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["paper-s0-00004.png"]
    entry["steps"] = 6  # the same run, had 6 been its length: its end is scored, step 4 is not again
    quality.score_run(entry, run, _Evaluator(), out, lambda: saves.append(1), every=4)
    assert [e["step"] for e in entry["evals"]] == [4, 6] and len(saves) == 2


class _Classifier:
    digest, info, path = "0123abcd", {"test_accuracy": 0.89951}, Path("clf.pt")


class _WithClassifier:
    classifier = _Classifier()


@pytest.mark.parametrize("recorded, same", [
    ({"clf_weights": "0123abcd", "clf_test_accuracy": 0.8995}, True),
    ({"clf_test_accuracy": 0.8995}, True),  # scored before the digest was kept: the accuracy decides
    ({"clf_weights": "ffff0000", "clf_test_accuracy": 0.8995}, False),  # same accuracy, other weights
    ({"clf_test_accuracy": 0.9006}, False),  # the same seed trained on other CPU kernels
])
def test_runs_scored_with_another_classifier_stop_the_scoring(recorded, same):
    """fd_clf in two classifiers' features cannot be compared: scoring stops, naming both. The
    weights' digest counts whether a score carries it or its run's protocol_detail does."""
    quality = _quality()
    quality.check_features(_WithClassifier(), {"runs": {}})  # nothing scored yet: any classifier
    in_eval = {"runs": {"paper-s0": {"evals": [{"step": 500, "fd_clf": 11.0, **recorded}]}}}
    scores = {k: v for k, v in recorded.items() if k != "clf_weights"}
    detail = {"clf_weights": recorded["clf_weights"]} if "clf_weights" in recorded else {}
    in_run = {"runs": {"paper-s0": {"protocol_detail": detail, "evals": [{"step": 500, "fd_clf": 11.0, **scores}]}}}
    for data in (in_eval, in_run):
        if same:
            quality.check_features(_WithClassifier(), data)
        else:
            with pytest.raises(SystemExit, match=r"weights 0123abcd, test accuracy 0.8995\) is not the one paper-s0 "):
                quality.check_features(_WithClassifier(), data)


def test_the_report_names_the_machine_of_every_run():
    """Runs trained on another machine than the file's are named with theirs."""
    quality = _quality()
    data = {"machine": "AVX2 box", "runs": {"paper-s0": {}, "decay-s1": {"machine": "AVX512 box"},
                                            "ema-s1": {"machine": "AVX2 box"}, "preset-s1": {"machine": "AVX512 box",
                                                                                              "same_as": "r1"}}}
    assert quality.training_machines(data) == "Training machine: AVX2 box, except AVX512 box (decay-s1)."
    assert quality.training_machines({"machine": "AVX2 box", "runs": {"paper-s0": {}}}) == "Training machine: AVX2 box."
