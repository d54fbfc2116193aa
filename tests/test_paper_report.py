"""The paper's commands and report end to end: a tiny random checkpoint, synthetic images, CPU.

Real Fashion-MNIST is only needed by the last test (the commands that load the checkpoint's
own data); everything else builds its models and images here.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shlex
import shutil

import pytest
import torch

from dcgan.checkpoint import save_checkpoint
from dcgan.config import Config, ModelConfig
from dcgan.data import ImageData
from dcgan.models import build_models
from dcgan.paper import features as feat
from dcgan.paper.render import figures, render, write_report

TINY = ModelConfig(ngf=8, ndf=8)


def images(n: int, seed: int, name: str = "fashion_mnist", size: int = 16) -> ImageData:
    """Random uint8 images with labels 0..9 in turn."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    return ImageData(x, torch.arange(n) % 10, name, "train")


def write_ckpt(path, *, data: dict | None = None):
    torch.manual_seed(0)
    G, D = build_models(TINY, 16, 1)
    cfg = Config()
    cfg.model = TINY
    cfg.data.image_size, cfg.data.channels, cfg.data.name = 16, 1, "fashion_mnist"
    for key, value in (data or {}).items():
        setattr(cfg.data, key, value)
    return save_checkpoint({"G": G.state_dict(), "D": D.state_dict(), "config": cfg.to_dict()}, path)


@pytest.fixture()
def tiny_ckpt(tmp_path):
    return write_ckpt(tmp_path / "ckpt.pt")


def small_options():
    from dcgan.paper.report import ReportOptions

    return ReportOptions(
        features=feat.FeatureOptions(num_train=200, num_val=100, num_test=100, per_class=5, draws=2,
                                     kmeans_centroids=8, Cs=(0.1,), search_size=100),
        num_grid=30, walk_rows=2, walk_steps=4, filter_features=2, filter_per_feature=3,
        filter_images=50, forget_num=20, forget_show=8, classifier_train=200)


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One small report (shared: copy its folder before changing it): (report.md, ckpt, log lines)."""
    from dcgan.paper.report import run_report

    root = tmp_path_factory.mktemp("report")
    ckpt = write_ckpt(root / "ckpt.pt")
    logger, handler = logging.getLogger("dcgan.paper"), _Messages()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        path = run_report(ckpt, root / "rep", small_options(), train=images(400, seed=1),
                          test=images(200, seed=2))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return path, ckpt, handler.messages


@pytest.fixture()
def report_copy(report, tmp_path):
    path, _, _ = report
    shutil.copytree(path.parent, tmp_path / "rep")
    return tmp_path / "rep" / path.name


# --- the commands --------------------------------------------------------------------------------


def test_cli_walk_arithmetic_forget(tiny_ckpt, tmp_path, capsys):
    from dcgan.cli import main

    ck = str(tiny_ckpt)
    assert main(["paper", "walk", "--checkpoint", ck, "--rows", "2", "--steps", "4", "--out", str(tmp_path / "w")]) == 0
    assert (tmp_path / "w" / "walk_linear.png").is_file() and (tmp_path / "w" / "walk_spherical.png").is_file()
    assert main(["paper", "walk", "--checkpoint", ck, "--mode", "linear", "--out", str(tmp_path / "one.png")]) == 0
    assert (tmp_path / "one.png").is_file()
    assert main(["paper", "arithmetic", "--checkpoint", ck, "--num", "16", "--a", "0,1,2", "--b", "3,4,5",
                 "--c", "6,7,8", "--direction-from", "3,4", "--direction-to", "0,1",
                 "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").is_file() and (tmp_path / "a_direction.png").is_file()
    marks = tmp_path / "marks.json"
    marks.write_text(json.dumps({"samples": [{"index": i, "boxes": [[0, 0, 16, 8]]} for i in range(4)]}))
    capsys.readouterr()
    assert main(["paper", "forget", "--checkpoint", ck, "--num", "8", "--marks", str(marks),
                 "--show-num", "10", "--out", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").is_file()
    assert "as drawn / maps dropped" in capsys.readouterr().out


ARITH = "arithmetic --checkpoint {ck} --num 16 --out {tmp}/b.png --a 0 --b 3 --c 6"


@pytest.mark.parametrize("command,start", [
    (ARITH.replace("--a 0", "--a 0,1,99"), "error: --a"),
    (ARITH + " --names x,y", "error: --names"),
    (ARITH + " --direction-from 1", "error: give both --direction-from"),
    ("features --checkpoint {ck} --layers top", "error: --layers"),
    ("walk --checkpoint {ck} --steps 1 --out {tmp}/w", "error: --steps"),
    ("walk --checkpoint {ck} --out {tmp}/w.png", "error: --mode both"),
    ("report --out {tmp}/r", "error: --checkpoint"),
])
def test_cli_bad_input_is_one_line(tiny_ckpt, tmp_path, capsys, command, start):
    from dcgan.cli import main

    capsys.readouterr()
    assert main(["paper", *command.format(ck=tiny_ckpt, tmp=tmp_path).split()]) == 2
    err = capsys.readouterr().err
    assert err.startswith(start) and err.count("\n") == 1, err


def test_every_paper_option_states_its_default():
    from dcgan.cli import build_parser

    parser = build_parser()
    paper = next(a for a in parser._subparsers._group_actions[0].choices["paper"]._actions
                 if a.dest == "paper_command")
    for name, sub in paper.choices.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text = action.help or ""
            assert "default" in text or "required" in text, f"paper {name} {action.option_strings}: {text!r}"


# --- the report ----------------------------------------------------------------------------------


def test_report_writes_every_figure_it_lists(report):
    path, _, _ = report
    md = path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    results = json.loads((path.parent / "results.json").read_text())
    assert len(links) == len(figures(results)) >= 8
    assert set(links) == set(figures(results))
    for link in links:
        assert (path.parent / link).is_file(), link
    assert "82.8%" in md and "22.48%" in md and "not ours" in md
    assert f"on {results['filters']['bn_pool']} training images" in md  # the pool size, from the results
    assert (path.parent / "forget_marks.json").is_file() and (path.parent / "samples_z.pt").is_file()


def test_report_renders_from_results_json_alone(report_copy):
    path = report_copy
    md = path.read_text()
    results = json.loads((path.parent / "results.json").read_text())
    assert render(results) == md
    path.unlink()
    assert write_report(path.parent).read_text() == md
    results["forget"]["mean_abs_change"] = 0.5  # a section renders its own saved numbers
    (path.parent / "results.json").write_text(json.dumps(results))
    assert "mean |change| per pixel 0.500" in write_report(path.parent).read_text()


def test_report_render_only_command(report_copy, capsys):
    from dcgan.cli import main

    path = report_copy
    md = path.read_text()
    path.unlink()
    assert main(["paper", "report", "--render-only", "--out", str(path.parent)]) == 0
    assert path.read_text() == md
    capsys.readouterr()
    assert main(["paper", "report", "--render-only", "--out", str(path.parent / "none")]) == 2
    assert "results.json" in capsys.readouterr().err


def test_report_logs_progress(report):
    _, _, messages = report
    for k, name in enumerate(("samples", "features", "walk", "arithmetic", "filters", "forget")):
        assert any(m.startswith(f"report [{k + 1}/6] {name}") for m in messages), name
    assert any("features [1/4] DCGAN D features (trained): extracting" in m for m in messages)
    assert any("draw 2/2" in m for m in messages)


def _reproduce_commands(md: str) -> dict[str, list[str]]:
    """section name -> the argv of its "Reproduce: `dcgan paper X ...`" line."""
    cmds = re.findall(r"Reproduce: `dcgan (paper (\w+) [^`]+)`", md)
    return {name: shlex.split(cmd) for cmd, name in cmds}


def test_reproduce_commands_redraw_the_report_figures(report, tmp_path):
    """The commands the report prints call the same functions: they redraw identical figures."""
    from dcgan.cli import main

    path, tiny_ckpt, _ = report
    rep, cli = path.parent, tmp_path / "cli"
    cli.mkdir()
    cmds = _reproduce_commands(path.read_text())
    assert set(cmds) == {"features", "walk", "arithmetic", "filters", "forget"}
    for name in ("walk", "arithmetic", "forget"):  # features and filters load the checkpoint's data
        argv = cmds[name]
        for i, a in enumerate(argv):
            if argv[i - 1] in ("--out", "--direction-out"):
                argv[i] = str(cli / a)
            elif argv[i - 1] == "--marks":
                argv[i] = str(rep / a)
        assert main([a.replace("CKPT", str(tiny_ckpt)) for a in argv]) == 0, argv
    for fig in ("walk_linear.png", "walk_spherical.png", "arithmetic.png", "direction.png", "forget.png"):
        target = cli / ("DIR" if fig.startswith("walk") else "") / fig
        assert target.read_bytes() == (rep / fig).read_bytes(), fig


# --- real data -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_features_and_filters_on_fashion_mnist(fmnist_root, cache_dir, tmp_path, capsys):
    """The two commands that read the checkpoint's own data, on real Fashion-MNIST (subset)."""
    from dcgan.cli import main

    ck = str(write_ckpt(tmp_path / "ckpt.pt", data={"root": str(fmnist_root), "cache_dir": str(cache_dir),
                                                    "subset": 600, "download": False}))
    assert main(["paper", "filters", "--checkpoint", ck, "--num-features", "2", "--per-feature", "3",
                 "--num-images", "100", "--out", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").is_file()
    assert main(["paper", "features", "--checkpoint", ck, "--methods", "dcgan,pixels", "--num-train", "300",
                 "--num-val", "100", "--num-test", "200", "--per-class", "5", "--draws", "1",
                 "--out", str(tmp_path / "feat")]) == 0
    res = json.loads((tmp_path / "feat" / "features.json").read_text())
    assert {(r["method"], r["mode"]) for r in res["rows"]} == {(m, k) for m in ("dcgan", "pixels")
                                                               for k in ("full", "few")}
    assert all(r["accuracy"] > 0.3 for r in res["rows"] if r["mode"] == "full")  # chance is 0.1
    assert "DCGAN D features (trained)" in capsys.readouterr().out
