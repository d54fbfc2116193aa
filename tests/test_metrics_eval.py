"""The evaluator, best.pt during training, `dcgan eval` / `classifier` / `nn`, and the caches.

Two fixtures: a folder of random 16 px PNGs with a tiny random classifier (always runs), and
real Fashion-MNIST with a trained classifier (skips, saying why, when the data is missing).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.cli import build_parser, main
from dcgan.config import from_dict
from dcgan.data import load_images
from dcgan.errors import DCGANError
from dcgan.metrics.classifier import Classifier, classifier_path, get_classifier, train_classifier
from dcgan.metrics.evaluator import Evaluator, build_evaluator, stats_path
from dcgan.metrics.memorisation import memorisation
from dcgan.models import build_models
from dcgan.runlog import read_metrics
from dcgan.train import train

SUBSET = 1024  # real training images for the tiny classifier (16px, 2 epochs: a few seconds)
CLF_METRICS = ["fd_clf", "is_clf", "kid_clf", "pr_clf"]  # a folder has no labels: no coverage


# --- synthetic fixture: random PNGs and a random classifier -------------------------------------------


def write_pngs(folder: Path, n: int, seed: int, start: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(start, start + n):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L").save(folder / f"{i:04d}.png")
    return folder


def synth_config(folder: Path, cache: Path, **sections):
    base = {
        "name": "synth",
        "data": {"name": "folder", "root": str(folder), "image_size": 16, "channels": 1, "cache_dir": str(cache)},
        "model": {"ngf": 8, "ndf": 8},
        "train": {"batch_size": 16, "max_steps": 6, "log_every": 2, "sample_every": 6, "checkpoint_every": 0,
                  "num_fixed": 16, "progress": False, "seed": 1, "device": "cpu"},
    }
    for key, values in sections.items():
        base.setdefault(key, {}).update(values)
    return from_dict(base)


def save_random_classifier(path: Path, seed: int = 0, num_classes: int = 4) -> Path:
    """A file like `dcgan classifier` writes, with random weights (a folder has no labels to learn)."""
    torch.manual_seed(seed)
    net = Classifier(1, num_classes)
    info = {"dataset": "folder", "split": "train", "image_size": 16, "channels": 1, "seed": seed, "epochs": 2,
            "num_train": 0, "num_train_images": 0, "num_classes": num_classes, "train_seconds": 0.0,
            "test_split": "test", "num_test": 0, "test_accuracy": 0.25}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": net.state_dict(), "info": info}, path)
    return path


@pytest.fixture
def synth(tmp_path):
    """A 64-image folder, its config, and a random classifier where get_classifier looks."""
    folder = write_pngs(tmp_path / "imgs", 64, seed=0)
    cfg = synth_config(folder, tmp_path / "cache")
    save_random_classifier(classifier_path(cfg.data, epochs=2))
    return cfg


def evil_pickle(path: Path, marker: Path) -> Path:
    """A file torch.load(weights_only=False) would run code from: it creates `marker`."""

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    torch.save({"state": Evil(), "info": Evil()}, path)
    return path


def test_the_hostile_fixture_is_hostile(tmp_path):
    marker = tmp_path / "pwned"
    torch.load(evil_pickle(tmp_path / "evil.pt", marker), weights_only=False)  # what must never happen
    assert marker.exists()


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# --- synthetic: scoring, caches, hostile files ------------------------------------------------------


def test_identical_images_score_zero_and_others_far(synth):
    ev = Evaluator(CLF_METRICS, synth.data, split="train", kid_subsets=5)
    same = ev.score_images(load_images(synth.data, "train").images)
    gray = ev.score_images(torch.full((64, 1, 16, 16), 128, dtype=torch.uint8))
    assert same["fd_clf"] == pytest.approx(0.0, abs=1e-6) and gray["fd_clf"] > 1e-3
    assert same["precision_clf"] == same["recall_clf"] == 1.0 and gray["recall_clf"] < 0.5
    assert same["kid_clf"] < gray["kid_clf"]
    assert list(same)[:7] == ["fd_clf", "is_clf", "is_clf_std", "kid_clf", "kid_clf_std", "precision_clf",
                              "recall_clf"]  # registry order
    assert same["n_real"] == same["n_gen"] == 64 and same["features"].startswith("clf-folder-train-16px")
    with pytest.raises(DCGANError, match="has no labels for class coverage"):
        Evaluator(["coverage"], synth.data).score_images(load_images(synth.data, "train").images)


def test_evaluation_is_reproducible_under_a_seed(synth):
    torch.manual_seed(0)
    G, _ = build_models(synth.model, 16, 1)
    G.train()
    ev = Evaluator(["fd_clf", "is_clf"], synth.data, num_samples=40, seed=3)
    a, b = ev(G, 0), ev(G, 0)
    assert G.training  # the mode is restored
    assert a["fd_clf"] == b["fd_clf"] and a["is_clf"] == b["is_clf"]
    c = Evaluator(["fd_clf"], synth.data, num_samples=40, seed=4)(G, 0)
    assert c["fd_clf"] != a["fd_clf"]


def test_statistics_cache_is_keyed_by_content(synth, caplog, tmp_path):
    ev = Evaluator(["fd_clf"], synth.data)
    first = ev.real("classifier")
    path = stats_path(synth.data, "test", ev.net_key("classifier"), 64)
    assert path.is_file() and first.num == 64
    # The same folder with more images: new statistics, never the old ones.
    write_pngs(Path(synth.data.root), 8, seed=1, start=64)
    again = Evaluator(["fd_clf"], synth.data).real("classifier")
    assert again.num == 72 and stats_path(synth.data, "test", ev.net_key("classifier"), 72) != path
    # A corrupt or hostile cache is recomputed with a warning and never unpickled.
    ev2 = Evaluator(["fd_clf"], synth.data)
    cached = stats_path(synth.data, "test", ev2.net_key("classifier"), 72)
    marker = tmp_path / "pwned"
    evil_pickle(cached, marker)
    with caplog.at_level(logging.WARNING, logger="dcgan.metrics.evaluator"):
        redone = ev2.real("classifier")
    assert "ignoring unreadable statistics cache" in caplog.text and not marker.exists()
    assert np.array_equal(redone.mu, again.mu)
    # A file that loads but holds no dict (a bare tensor) is recomputed the same way.
    torch.save(torch.zeros(3), cached)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dcgan.metrics.evaluator"):
        redone = Evaluator(["fd_clf"], synth.data).real("classifier")
    assert "ignoring unreadable statistics cache" in caplog.text and "(TypeError)" in caplog.text
    assert np.array_equal(redone.mu, again.mu)
    # A retrained classifier (same name, other weights) does not reuse the statistics.
    save_random_classifier(classifier_path(synth.data, epochs=2), seed=1)
    assert Evaluator(["fd_clf"], synth.data).net_key("classifier") != ev2.net_key("classifier")


def test_hostile_classifier_file_is_refused(synth, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = evil_pickle(tmp_path / "evil.pt", marker)
    rc = main(["eval", "--images", synth.data.root, "--dataset", "folder", "--data-root", synth.data.root,
               "--image-size", "16", "--cache-dir", synth.data.cache_dir, "--metrics", "fd_clf",
               "--classifier", str(evil), "--device", "cpu"])
    assert rc == 2 and "is not a classifier written by `dcgan classifier`" in one_line_error(capsys)
    assert not marker.exists()


def test_training_keeps_best_and_eval_leaves_the_runs_log_alone(synth, tmp_path, capsys):
    run = tmp_path / "run"
    cfg = synth_config(Path(synth.data.root), Path(synth.data.cache_dir),
                       eval={"every": 2, "num_samples": 40, "metrics": ["fd_clf", "is_clf"]})
    train(cfg, run_dir=run)
    evals = read_metrics(run / "metrics.jsonl", "eval")
    assert [e["step"] for e in evals] == [2, 4, 6]
    assert all(e["n_gen"] == 40 and e["split"] == "test" and "features" in e for e in evals)
    best = min(evals, key=lambda e: e["fd_clf"])
    ck = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert ck["step"] == best["step"] and ck["best"]["fd_clf"] == pytest.approx(best["fd_clf"])
    assert (run / "scores.png").is_file()
    capsys.readouterr()

    # dcgan eval on the run: its metrics.jsonl stays byte-identical; one line in evaluations.jsonl.
    log_before = (run / "metrics.jsonl").read_bytes()
    args = ["eval", "--checkpoint", str(run), "--num", "64", "--metrics", "fd_clf,pr_clf", "--json",
            "--device", "cpu"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["step"] == 6 and out["n_gen"] == 64 and out["n_real"] == 64
    assert (run / "metrics.jsonl").read_bytes() == log_before
    lines = (run / "evaluations.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["source"] == "dcgan eval"
    assert json.loads(lines[0])["fd_clf"] == out["fd_clf"]
    assert main([*args, "--no-log"]) == 0
    assert len((run / "evaluations.jsonl").read_text().splitlines()) == 1
    assert (run / "metrics.jsonl").read_bytes() == log_before

    # dcgan eval --images: a folder of PNGs scores like the same images in memory.
    folder = tmp_path / "samples"
    assert main(["sample", "--checkpoint", str(run), "--num", "64", "--out", str(folder)]) == 0
    capsys.readouterr()
    rc = main(["eval", "--images", str(folder), "--dataset", "folder", "--image-size", "16", "--data-root",
               synth.data.root, "--cache-dir", synth.data.cache_dir, "--metrics", "fd_clf", "--json",
               "--device", "cpu"])
    folder_scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and folder_scores["fd_clf"] == pytest.approx(out["fd_clf"], rel=1e-6)

    # dcgan nn: the figure and the distance summary.
    fig = tmp_path / "nn.png"
    # (an unlabelled folder: its features are the self-supervised encoder's; a short one keeps this fast)
    assert main(["nn", "--checkpoint", str(run), "--out", str(fig), "--num", "20", "--num-show", "3",
                 "--ssl-steps", "20", "--device", "cpu"]) == 0
    assert fig.is_file() and "held-out" in capsys.readouterr().out


def test_memorisation_flags_copies_synthetic(synth):
    clf = get_classifier(synth.data, epochs=2, train_if_missing=False)
    images = load_images(synth.data, "train").images
    train_imgs, heldout = images[:48], images[48:]
    copies = memorisation(train_imgs[:16], heldout, train_imgs, clf, num_show=4)
    assert (copies.dist["sample_pixel"] < 0.05).all()
    assert copies.summary()["frac_below_heldout_p1_pixel"] == 1.0
    assert torch.equal(copies.nn_pixel[:, 0], torch.arange(4))


def test_build_evaluator_only_scores(synth):
    cfg = synth_config(Path(synth.data.root), Path(synth.data.cache_dir),
                       eval={"every": 2, "metrics": ["fd_clf"], "num_samples": 20})
    ev = build_evaluator(cfg, "cpu")
    assert ev.real("classifier").num == 64  # paid for before training starts
    assert not any(hasattr(ev, a) for a in ("run_dir", "best", "is_better"))  # the run owns best.pt


# --- synthetic labelled data (conftest's Fashion-MNIST-format bars): a classifier that learns -----------


@pytest.fixture(scope="module")
def syn_cfg(synthetic_root, tmp_path_factory):
    from conftest import tiny_config

    return tiny_config(synthetic_root, tmp_path_factory.mktemp("syn-cache"), data={"subset": 0})


@pytest.fixture(scope="module")
def syn_clf(syn_cfg):
    return train_classifier(syn_cfg.data, epochs=2, seed=0)  # cached where get_classifier looks


def test_classifier_learns_and_is_cached_synthetic(syn_cfg, syn_clf):
    info = syn_clf.info
    assert info["num_train_images"] == 640 and info["num_test"] == 320
    assert info["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert syn_clf.path.is_file() and syn_clf.path.name == "clf-fashion_mnist-train-16px-1ch-seed0-e2.pt"
    again = get_classifier(syn_cfg.data, epochs=2, train_if_missing=False)
    assert again.info == info and again.digest == syn_clf.digest


def test_classifier_command_shows_the_cached_one_with_its_weights_digest_synthetic(syn_cfg, syn_clf, capsys):
    """Retraining keeps the name, not always the weights (other CPU kernels, other thread counts):
    the command says which weights the cache holds, as every score's clf_weights does."""
    d = syn_cfg.data
    assert main(["classifier", "--dataset", "fashion_mnist", "--image-size", "16", "--channels", "1",
                 "--data-root", str(d.root), "--cache-dir", str(d.cache_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"classifier {syn_clf.name} (weights {syn_clf.digest}): test accuracy "
                          f"{syn_clf.info['test_accuracy']:.4f} on 320 test images")


def test_real_splits_score_close_and_noise_far_synthetic(syn_cfg, syn_clf):
    ev = Evaluator(["fd_clf", "coverage", "is_clf", "kid_clf", "pr_clf"], syn_cfg.data, split="test",
                   classifier=syn_clf, kid_subsets=10)
    real = ev.score_images(load_images(syn_cfg.data, "train").images[:320])
    noise = ev.score_images(torch.randint(0, 256, (320, 1, 16, 16), generator=torch.Generator().manual_seed(0),
                                          dtype=torch.uint8))
    assert real["fd_clf"] * 10 < noise["fd_clf"] and real["kid_clf"] * 10 < noise["kid_clf"]
    assert real["coverage"] >= 0.8 and noise["coverage"] <= 0.5
    assert real["precision_clf"] > 0.5 and noise["precision_clf"] < 0.1
    assert real["is_clf"] > noise["is_clf"]
    assert real["n_real"] == 320 and real["clf_test_accuracy"] == round(syn_clf.info["test_accuracy"], 4)
    assert real["clf_weights"] == syn_clf.digest  # the name stays when the classifier is retrained; this does not


def test_hostile_cached_classifier_is_trained_again_synthetic(syn_cfg, syn_clf, tmp_path, caplog):
    marker = tmp_path / "pwned"
    evil_pickle(syn_clf.path, marker)
    with pytest.raises(DCGANError, match="is not a classifier written by `dcgan classifier`"):
        get_classifier(syn_cfg.data, epochs=2, train_if_missing=False)
    with caplog.at_level(logging.WARNING, logger="dcgan.metrics.classifier"):
        clf = get_classifier(syn_cfg.data, epochs=2)
    assert "is unreadable; training it again" in caplog.text and not marker.exists()
    assert clf.info["test_accuracy"] > 0.5 and get_classifier(syn_cfg.data, epochs=2, train_if_missing=False)


# --- the front door ------------------------------------------------------------------------------------


def test_every_option_has_help_with_its_default():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in ("eval", "classifier", "nn"):
        for action in sub.choices[name]._actions:
            if action.dest == "help":
                continue
            text = action.help or ""
            assert "default" in text or "required" in text, f"dcgan {name} {action.option_strings}: {text!r}"
    classifier_help = sub.choices["classifier"].format_help()
    assert "--checkpoint" not in classifier_help


def test_cli_errors(capsys, tmp_path):
    assert main(["eval", "--images", str(tmp_path)]) == 2
    assert "--images needs --dataset" in one_line_error(capsys)
    assert main(["eval", "--images", str(tmp_path), "--dataset", "fashion_mnist", "--num", "3"]) == 2
    assert "too few" in one_line_error(capsys)
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "not found" in one_line_error(capsys)
    assert main(["eval", "--images", str(tmp_path), "--dataset", "fashion_mnist", "--metrics", "fidd"]) == 2
    assert "unknown metric 'fidd'" in one_line_error(capsys)
    assert main(["classifier"]) == 2
    assert "--dataset is required" in one_line_error(capsys)


# --- real Fashion-MNIST ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cfg(fmnist_root, cache_dir):
    from conftest import tiny_config

    return tiny_config(fmnist_root, cache_dir, data={"subset": SUBSET}, eval={"classifier_epochs": 2})


@pytest.fixture(scope="module")
def clf(cfg):
    return train_classifier(cfg.data, epochs=2, seed=0)  # cached where get_classifier looks


def test_classifier_learns_and_is_cached(cfg, clf):
    info = clf.info
    assert info["num_train_images"] == SUBSET and info["num_test"] == 10000
    assert info["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert clf.path.is_file() and "fashion_mnist-train-16px-1ch-seed0-e2-n1024" in clf.path.name
    again = get_classifier(cfg.data, epochs=2, train_if_missing=False)
    assert again.info == info
    x = load_images(cfg.data, "test").images[:16]
    assert torch.equal(torch.from_numpy(again(x)["features"]), torch.from_numpy(clf(x)["features"]))


def test_real_splits_score_close_and_noise_far(cfg, clf):
    ev = Evaluator(["fd_clf", "coverage", "is_clf", "kid_clf", "pr_clf"], cfg.data, split="test",
                   num_real=500, classifier=clf, kid_subsets=10)
    train_imgs = load_images(cfg.data, "train").images[:500]
    real = ev.score_images(train_imgs)
    noise = ev.score_images(torch.randint(0, 256, (500, 1, 16, 16), generator=torch.Generator().manual_seed(0),
                                          dtype=torch.uint8))
    assert real["fd_clf"] * 10 < noise["fd_clf"]
    assert real["kid_clf"] * 10 < noise["kid_clf"]
    assert real["coverage"] >= 0.8 and noise["coverage"] <= 0.5  # a weak 1k-image classifier may miss one
    assert real["precision_clf"] > 0.5 and noise["precision_clf"] < 0.1
    assert real["is_clf"] > noise["is_clf"]
    assert real["n_real"] == 500 and real["n_gen"] == 500 and real["split"] == "test"
    assert real["image_size"] == 16 and real["features"] == clf.name
    with pytest.raises(Exception, match="do not match the real data"):
        ev.score_images(torch.zeros(20, 3, 16, 16, dtype=torch.uint8))


def test_memorisation_flags_copies(cfg, clf):
    train_imgs = load_images(cfg.data, "train").images
    heldout = load_images(cfg.data, "test").images[:100]
    copies = memorisation(train_imgs[:100], heldout, train_imgs, clf, num_show=4)
    assert (copies.dist["sample_pixel"] < 0.05).all()  # 0 up to cdist's rounding
    assert copies.summary()["frac_below_heldout_p1_pixel"] == 1.0
    assert torch.equal(copies.nn_pixel[:, 0], torch.arange(4))
    fair = memorisation(heldout, load_images(cfg.data, "test").images[100:200], train_imgs, clf)
    assert fair.summary()["frac_below_heldout_p1_pixel"] < 0.1


def test_fashion_mnist_training_eval_and_cli(cfg, clf, tmp_path, capsys):
    run = tmp_path / "run"
    tcfg = from_dict({**cfg.to_dict(), "eval": {**cfg.to_dict()["eval"], "every": 3, "num_samples": 100,
                                                "metrics": ["fd_clf", "coverage", "is_clf"]},
                      "train": {**cfg.to_dict()["train"], "max_steps": 6}})
    train(tcfg, run_dir=run)
    evals = read_metrics(run / "metrics.jsonl", "eval")
    best = min(evals, key=lambda e: e["fd_clf"])
    assert [e["step"] for e in evals] == [3, 6]
    assert f"best.pt (step {best['step']}, fd_clf" in capsys.readouterr().err  # the run's summary names it
    log_before = (run / "metrics.jsonl").read_bytes()
    rc = main(["eval", "--checkpoint", str(run), "--num", "100", "--metrics", "fd_clf,coverage", "--num-real",
               "1024", "--json", "--classifier", str(clf.path)])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and out["step"] == 6 and out["n_real"] == 1024 and out["features"] == clf.name
    assert (run / "metrics.jsonl").read_bytes() == log_before
    assert json.loads((run / "evaluations.jsonl").read_text())["coverage"] == out["coverage"]
