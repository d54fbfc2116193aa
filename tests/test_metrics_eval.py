"""The classifier, the evaluator on real Fashion-MNIST, best.pt during training, and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from dcgan.cli import main
from dcgan.config import from_dict
from dcgan.data import load_images
from dcgan.metrics.classifier import get_classifier, train_classifier
from dcgan.metrics.evaluator import Evaluator
from dcgan.metrics.memorisation import memorisation
from dcgan.models import build_models
from dcgan.runs import read_metrics
from dcgan.train import train

SUBSET = 1024  # training images for the tiny classifier (16px, 2 epochs: a few seconds)


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


def test_evaluation_is_reproducible_under_a_seed(cfg, clf):
    torch.manual_seed(0)
    G, _ = build_models(cfg.model, cfg.data.image_size, cfg.data.channels)
    G.train()
    ev = Evaluator(["fd_clf", "is_clf"], cfg.data, num_samples=200, seed=3, classifier=clf)
    a, b = ev(G, 0), ev(G, 0)
    assert G.training  # the mode is restored
    assert a["fd_clf"] == b["fd_clf"] and a["is_clf"] == b["is_clf"]
    c = Evaluator(["fd_clf"], cfg.data, num_samples=200, seed=4, classifier=clf)(G, 0)
    assert c["fd_clf"] != a["fd_clf"]


def test_memorisation_flags_copies(cfg, clf):
    train_imgs = load_images(cfg.data, "train").images
    heldout = load_images(cfg.data, "test").images[:100]
    copies = memorisation(train_imgs[:100], heldout, train_imgs, clf, num_show=4)
    assert (copies.dist["sample_pixel"] < 0.05).all()  # 0 up to cdist's rounding
    assert copies.summary()["frac_below_heldout_p1_pixel"] == 1.0
    assert torch.equal(copies.nn_pixel[:, 0], torch.arange(4))
    fair = memorisation(heldout, load_images(cfg.data, "test").images[100:200], train_imgs, clf)
    assert fair.summary()["frac_below_heldout_p1_pixel"] < 0.1


def test_training_keeps_best_checkpoint_and_cli(cfg, clf, tmp_path, capsys):
    run = tmp_path / "run"
    tcfg = from_dict({**cfg.to_dict(), "eval": {**cfg.to_dict()["eval"], "every": 2, "num_samples": 100,
                                                "metrics": ["fd_clf", "coverage", "is_clf"]},
                      "train": {**cfg.to_dict()["train"], "max_steps": 6}})
    train(tcfg, run_dir=run)
    evals = read_metrics(run / "metrics.jsonl", "eval")
    assert [e["step"] for e in evals] == [2, 4, 6]
    assert all(e["n_gen"] == 100 and e["split"] == "test" and "features" in e for e in evals)
    best = min(evals, key=lambda e: e["fd_clf"])
    ck = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert ck["step"] == best["step"] and ck["best"]["fd_clf"] == pytest.approx(best["fd_clf"])
    assert (run / "scores.png").is_file()
    assert f"best.pt (step {best['step']}, fd_clf" in capsys.readouterr().err  # the run's summary names it

    # dcgan eval on the run: a table/JSON and one more eval record in the run's log.
    rc = main(["eval", "--checkpoint", str(run), "--num", "100", "--metrics", "fd_clf,coverage", "--num-real", "1024",
               "--json", "--classifier", str(clf.path)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["step"] == 6 and out["n_gen"] == 100 and out["features"] == clf.name
    assert out["n_real"] == 1024
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["source"] == "dcgan eval"

    # dcgan eval --images: a folder of PNGs scores like the same images in memory.
    folder = tmp_path / "imgs"
    main(["sample", "--checkpoint", str(run), "--num", "100", "--out", str(folder)])
    capsys.readouterr()
    rc = main(["eval", "--images", str(folder), "--dataset", "fashion_mnist", "--image-size", "16",
               "--data-root", cfg.data.root, "--cache-dir", cfg.data.cache_dir, "--metrics", "fd_clf",
               "--classifier", str(clf.path), "--json", "--num-real", "1024"])
    folder_scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and folder_scores["fd_clf"] == pytest.approx(out["fd_clf"], rel=1e-6)

    # dcgan nn: the figure and the distance summary.
    fig = tmp_path / "nn.png"
    assert main(["nn", "--checkpoint", str(run), "--out", str(fig), "--num", "50", "--num-show", "3"]) == 0
    assert fig.is_file() and "held-out" in capsys.readouterr().out


def test_cli_errors(capsys, tmp_path):
    assert main(["eval", "--images", str(tmp_path)]) == 2
    assert "--images needs --dataset" in capsys.readouterr().err
    assert main(["eval", "--images", str(tmp_path), "--dataset", "fashion_mnist", "--num", "3"]) == 2
    assert "too few" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["eval", "--images", str(tmp_path), "--dataset", "fashion_mnist", "--metrics", "fidd"]) == 2
    assert "unknown metric 'fidd'" in capsys.readouterr().err
