"""The paper's commands and report end to end: a tiny seeded checkpoint, synthetic data, CPU."""

from __future__ import annotations

import json
import re

import pytest
from test_paper import TINY, blobs, tiny_models

from dcgan.checkpoint import save_checkpoint
from dcgan.config import Config
from dcgan.paper import features as feat

# --- CLI and report ------------------------------------------------------------------------------


@pytest.fixture()
def tiny_ckpt(tmp_path):
    G, D = tiny_models(16)
    cfg = Config()
    cfg.model = TINY
    cfg.data.image_size, cfg.data.channels, cfg.data.name = 16, 1, "fashion_mnist"
    return save_checkpoint({"G": G.state_dict(), "D": D.state_dict(), "config": cfg.to_dict()},
                           tmp_path / "ckpt.pt")


def test_cli_walk_arithmetic_forget(tiny_ckpt, tmp_path, capsys):
    from dcgan.cli import main

    ck = str(tiny_ckpt)
    assert main(["paper", "walk", "--checkpoint", ck, "--rows", "2", "--steps", "4", "--out", str(tmp_path / "w")]) == 0
    assert (tmp_path / "w" / "walk_linear.png").is_file() and (tmp_path / "w" / "walk_spherical.png").is_file()
    assert main(["paper", "arithmetic", "--checkpoint", ck, "--num", "16", "--a", "0,1,2", "--b", "3,4,5",
                 "--c", "6,7,8", "--direction-from", "3,4", "--direction-to", "0,1",
                 "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").is_file() and (tmp_path / "a_direction.png").is_file()
    marks = tmp_path / "marks.json"
    marks.write_text(json.dumps({"samples": [{"index": i, "boxes": [[0, 0, 16, 8]]} for i in range(4)]}))
    assert main(["paper", "forget", "--checkpoint", ck, "--num", "8", "--marks", str(marks),
                 "--show-num", "8", "--out", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").is_file()
    # Bad input: one line, exit 2.
    capsys.readouterr()
    assert main(["paper", "arithmetic", "--checkpoint", ck, "--num", "16", "--a", "0,1,99", "--b", "3",
                 "--c", "6", "--out", str(tmp_path / "b.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --a") and "99" in err and err.count("\n") == 1
    assert main(["paper", "features", "--checkpoint", ck, "--layers", "top"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --layers") and err.count("\n") == 1


def test_report_writes_every_figure_it_lists(tiny_ckpt, tmp_path):
    from dcgan.paper.report import ReportOptions, run_report

    train, test = blobs(400, seed=1, name="fashion_mnist"), blobs(200, seed=2, name="fashion_mnist")
    opts = ReportOptions(
        features=feat.FeatureOptions(num_train=200, num_val=100, num_test=100, per_class=5, draws=2,
                                     kmeans_centroids=8, Cs=(0.1,), search_size=100),
        num_grid=30, walk_rows=2, walk_steps=4, filter_features=2, filter_per_feature=3,
        filter_images=50, forget_num=20, forget_show=8, classifier_train=200)
    path = run_report(tiny_ckpt, tmp_path / "rep", opts, train=train, test=test)
    md = path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert len(links) == len(results["figures"]) >= 8
    for link in links:
        assert (tmp_path / "rep" / link).is_file(), link
    assert set(links) == set(results["figures"])
    assert "82.8%" in md and "22.48%" in md and "not ours" in md
