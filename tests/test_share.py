"""Export, `from_pretrained`, exported folders as --checkpoint, ONNX parity, the explorer's API.

Everything runs on a tiny random-weight G/D written as a run's checkpoint inside the test (no
dataset needed); its BN running statistics are moved off their init so eval-mode sampling
depends on them.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dcgan import cli
from dcgan.checkpoint import load_models, require_discriminator, save_checkpoint
from dcgan.config import from_dict
from dcgan.errors import CheckpointError, DCGANError
from dcgan.models import build_models
from dcgan.sampling import generate, noise

EVAL = {"kind": "eval", "fd_clf": 12.5, "coverage": 0.9, "is_clf": 7.1, "is_clf_std": 0.2,
        "features": "classifier(fashion_mnist)", "split": "test", "n_real": 320, "n_gen": 500,
        "image_size": 16}


def make_run(root: Path, *, image_size: int = 16, channels: int = 1, step: int = 40) -> Path:
    """A run directory with checkpoints/last.pt of a tiny random G/D and two evaluation records."""
    cfg = from_dict({"name": "tiny", "data": {"name": "fashion_mnist", "image_size": image_size,
                                              "channels": channels, "subset": 512},
                     "model": {"ngf": 8, "ndf": 8}, "eval": {"num_samples": 500, "seed": 0}})
    torch.manual_seed(0)
    G, D = build_models(cfg.model, image_size, channels)
    with torch.no_grad():  # move BN running statistics away from (0, 1)
        G.train()(noise(64, cfg.model.nz, "uniform", 1) * 3)
        D.train()(torch.rand(8, channels, image_size, image_size) * 2 - 1)
    run = root / "run"
    best = {**{k: v for k, v in EVAL.items() if k != "kind"}, "step": 20}
    save_checkpoint({"G": G.state_dict(), "D": D.state_dict(), "config": cfg.to_dict(), "step": step,
                     "epoch": 1, "best": best, "meta": {"version": "0.1.0", "torch": str(torch.__version__),
                                                        "world": 1, "per_rank_batch": 128}},
                    run / "checkpoints" / "last.pt")
    records = [{**EVAL, "step": 20}, {**EVAL, "step": 40, "fd_clf": 14.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("share"))


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "g"
    assert cli.main(["export", "--checkpoint", str(run), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def exported_d(run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "gd"
    assert cli.main(["export", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--out", str(out),
                     "--with-discriminator", "--format", "safetensors,onnx"]) == 0
    return out


# --- export --------------------------------------------------------------------------------------


def test_export_writes_the_hub_layout_and_a_model_card(exported):
    files = sorted(p.name for p in exported.iterdir())
    assert files == ["README.md", "config.json", "model.safetensors", "samples.png", "training.json"]
    config = json.loads((exported / "config.json").read_text())
    assert config["image_size"] == 16 and config["channels"] == 1 and config["cfg"]["ngf"] == 8
    assert config["with_discriminator"] is False
    card = (exported / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: dcgan")
    assert "pipeline_tag: unconditional-image-generation" in card
    for fact in ("fashion_mnist", "step 40", "the first 512 images", "![64 samples", "(samples.png)",
                 "Generator.from_pretrained", "batch_size: 128", "| 20 (best) | 12.5 |", "| 40 | 14 |",
                 "500 samples per evaluation from noise seed 0", "split=test", "n_real=320",
                 "lower is better", "These weights are from step 40 (an evaluated step)"):
        assert fact in card, fact
    facts = json.loads((exported / "training.json").read_text())
    assert facts["step"] == 40 and facts["source"] == "run/checkpoints/last.pt"
    assert [r["step"] for r in facts["evals"]] == [20, 40] and facts["images_shown"] == 40 * 128


def test_export_of_a_run_takes_best_pt_and_says_so(run, tmp_path, capsys):
    """A run directory with checkpoints/best.pt exports best.pt (printed, in training.json and the
    card); a checkpoint file is exported as given; a run without best.pt exports its newest."""
    import shutil

    root = tmp_path / "r"
    shutil.copytree(run, root / "run")
    ckpt = torch.load(root / "run" / "checkpoints" / "last.pt", weights_only=True)
    save_checkpoint({**ckpt, "step": 20}, root / "run" / "checkpoints" / "best.pt")

    assert cli.main(["export", "--checkpoint", str(root / "run"), "--out", str(tmp_path / "best")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"exporting {root / 'run' / 'checkpoints' / 'best.pt'} (the run's best evaluation")
    facts = json.loads((tmp_path / "best" / "training.json").read_text())
    assert facts["step"] == 20 and facts["source"] == "run/checkpoints/best.pt"
    picked = facts["picked"]
    assert "best.pt" in picked and "run/checkpoints/last.pt for the newest" in picked
    card = (tmp_path / "best" / "README.md").read_text()
    assert "exported from `run/checkpoints/best.pt` (the run's best evaluation: " in card
    assert "These weights are from step 20 (the best evaluation)" in card

    last = root / "run" / "checkpoints" / "last.pt"
    assert cli.main(["export", "--checkpoint", str(last), "--out", str(tmp_path / "last")]) == 0
    assert f"exporting {last} (the checkpoint file, as given)" in capsys.readouterr().out
    facts = json.loads((tmp_path / "last" / "training.json").read_text())
    assert facts["step"] == 40 and facts["source"] == "run/checkpoints/last.pt" and "as given" in facts["picked"]

    # Re-exporting an export keeps the choice it recorded.
    assert cli.main(["export", "--checkpoint", str(tmp_path / "best"), "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "training.json").read_text())["picked"] == picked

    (root / "run" / "checkpoints" / "best.pt").unlink()
    assert cli.main(["export", "--checkpoint", str(root / "run"), "--out", str(tmp_path / "newest")]) == 0
    assert "(the run's newest checkpoint: the run has no best.pt)" in capsys.readouterr().out
    assert json.loads((tmp_path / "newest" / "training.json").read_text())["step"] == 40


def test_export_sample_grid_is_the_sample_command_output(exported, run, tmp_path):
    assert cli.main(["sample", "--checkpoint", str(run), "--num", "64", "--seed", "0",
                     "--out", str(tmp_path / "g.png"), "--device", "cpu"]) == 0
    assert (tmp_path / "g.png").read_bytes() == (exported / "samples.png").read_bytes()


def test_from_pretrained_offline_equals_the_checkpoint(exported, exported_d, run, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("from_pretrained touched the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    from dcgan import Discriminator, Generator

    G_ref, D_ref, _, _ = load_models(run)
    G = Generator.from_pretrained(exported)
    assert not G.training and G.nz == 100 and G.image_size == 16
    z = noise(5, 100, "uniform", 7)
    assert torch.equal(G(z), G_ref.eval()(z))
    with pytest.raises(CheckpointError, match="--with-discriminator"):
        Discriminator.from_pretrained(exported)
    D = Discriminator.from_pretrained(exported_d)
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    assert torch.equal(D(x), D_ref.eval()(x))


def test_load_models_takes_an_export(exported, exported_d, run):
    G, D, cfg, facts = load_models(exported)
    assert D is None and cfg.data.image_size == 16 and cfg.data.subset == 512 and facts["step"] == 40
    with pytest.raises(CheckpointError, match=r"dcgan export --with-discriminator"):
        require_discriminator(D, exported)
    _, D2, _, _ = load_models(exported_d)
    _, D_ref, _, _ = load_models(run)
    assert require_discriminator(D2, exported_d) is D2
    for (k, v), (k2, v2) in zip(D2.state_dict().items(), D_ref.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


@pytest.mark.parametrize("extra", [[], ["--numbered"], ["--bn-mode", "train"]])
def test_sample_from_export_is_byte_identical(exported, run, tmp_path, extra):
    for name, src in (("ckpt", run), ("export", exported)):
        assert cli.main(["sample", "--checkpoint", str(src), "--num", "10", "--seed", "3",
                         "--out", str(tmp_path / f"{name}.png"), "--device", "cpu", *extra]) == 0
    assert (tmp_path / "ckpt.png").read_bytes() == (tmp_path / "export.png").read_bytes()


def test_sample_folder_from_export_is_byte_identical(exported, run, tmp_path):
    for name, src in (("ckpt", run), ("export", exported)):
        assert cli.main(["sample", "--checkpoint", str(src), "--num", "3", "--seed", "5",
                         "--out", str(tmp_path / name), "--device", "cpu"]) == 0
    for i in range(3):
        f = f"{i:06d}.png"
        assert (tmp_path / "ckpt" / f).read_bytes() == (tmp_path / "export" / f).read_bytes()


def test_onnx_matches_pytorch_for_any_batch(exported_d, run):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is installed by `make test`")
    sess = ort.InferenceSession(str(exported_d / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.name == "z" and out.name == "image" and isinstance(inp.shape[0], str)  # a named dynamic batch
    G, _, _, _ = load_models(run)
    for n in (1, 7):
        z = noise(n, 100, "uniform", n)
        got = sess.run(None, {"z": z.numpy()})[0]
        want = generate(G, z).numpy()
        assert got.shape == (n, 1, 16, 16)
        assert abs(got - want).max() < 1e-5
    assert "model.onnx" in (exported_d / "README.md").read_text()


def test_reexport_of_an_export_keeps_its_facts(exported, tmp_path):
    out = tmp_path / "again"
    assert cli.main(["export", "--checkpoint", str(exported), "--out", str(out)]) == 0
    assert json.loads((out / "training.json").read_text())["evals"] == \
        json.loads((exported / "training.json").read_text())["evals"]
    assert (out / "samples.png").read_bytes() == (exported / "samples.png").read_bytes()


@pytest.mark.parametrize("argv, message", [
    (["--out", "{tmp}/full"], "is not empty and not an earlier export"),
    (["--out", "{tmp}/x", "--format", "pickle"], "--format pickle is not supported"),
    (["--out", "{tmp}/x", "--format", ","], "--format is empty"),
    (["--out", "{tmp}/file.txt"], "is a file"),
])
def test_export_bad_input_one_line_exit_2(run, tmp_path, capsys, argv, message):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    (tmp_path / "file.txt").write_text("mine")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(["export", "--checkpoint", str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_export_d_from_a_g_only_export_is_refused(exported, tmp_path, capsys):
    assert cli.main(["export", "--checkpoint", str(exported), "--out", str(tmp_path / "d"),
                     "--with-discriminator"]) == 2
    assert "without the discriminator" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["paper", "filters", "--out", "f.png"], ["paper", "features"]])
def test_paper_commands_needing_d_refuse_a_g_only_export(exported, tmp_path, capsys, argv):
    assert cli.main([*argv[:2], "--checkpoint", str(exported), *[str(tmp_path / a) if a.endswith(".png") else a
                                                              for a in argv[2:]]]) == 2
    err = capsys.readouterr().err.strip()
    assert "exported without the discriminator" in err and "--with-discriminator" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_import_dcgan_stays_cheap():
    code = "import sys, dcgan; assert 'torch' not in sys.modules, 'import dcgan imported torch'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    from dcgan import Generator
    from dcgan.models import Generator as G

    assert Generator is G


# --- the explorer's API --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(exported):
    pytest.importorskip("httpx", reason="fastapi's TestClient needs httpx (installed by `make test`)")
    from fastapi.testclient import TestClient

    from dcgan.share.serve import create_app, load_explorer

    explorer = load_explorer(str(exported), "cpu")
    with TestClient(create_app(explorer), base_url="http://127.0.0.1:8000") as c:
        c.explorer = explorer
        yield c


def test_api_info_and_page(client):
    info = client.get("/api/info").json()
    assert (info["nz"], info["image_size"], info["channels"]) == (100, 16, 1)
    assert info["dataset"] == "fashion_mnist" and info["step"] == 40 and info["best"]["fd_clf"] == 12.5
    page = client.get("/")
    assert page.status_code == 200 and "<script src=\"/app.js\">" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/app.js", "/app.css"):
        assert client.get(asset).status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN: every asset is local


def test_api_sample_is_the_sample_command_png(client, run, tmp_path):
    r = client.get("/api/sample", params={"seed": 11, "n": 12})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert cli.main(["sample", "--checkpoint", str(run), "--num", "12", "--seed", "11",
                     "--out", str(tmp_path / "s.png"), "--device", "cpu"]) == 0
    assert r.content == (tmp_path / "s.png").read_bytes()
    z = client.get("/api/sample", params={"seed": 11, "n": 12, "format": "json"}).json()["z"]
    assert torch.equal(torch.tensor(z), noise(12, 100, "uniform", 11))


def test_api_interpolate_arithmetic_walk(client):
    import io

    from PIL import Image

    z_all = noise(16, 100, "uniform", 2)
    for mode in ("linear", "spherical"):
        q = {"seed": 2, "n": 16, "a": 3, "b": 9, "steps": 5, "mode": mode}
        png = Image.open(io.BytesIO(client.get("/api/interpolate", params=q).content))
        assert png.size == (5 * 18 + 2, 16 + 4)
        z = torch.tensor(client.get("/api/interpolate", params={**q, "format": "json"}).json()["z"])
        assert torch.equal(z[0], z_all[3]) and torch.equal(z[-1], z_all[9]) and z.shape == (5, 100)
    q = {"seed": 2, "n": 16, "a": "0,1,2", "b": "3", "c": "4,5"}
    r = client.get("/api/arithmetic", params=q)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    res = client.get("/api/arithmetic", params={**q, "format": "json"}).json()
    want = z_all[[0, 1, 2]].mean(0) - z_all[3] + z_all[[4, 5]].mean(0)
    assert torch.allclose(torch.tensor(res["result"]), want) and len(res["block"]) == 9
    q = {"seed": 2, "n": 16, "a": "0,1", "b": "2", "base": 7}
    for s in (0, 1.5):
        w = client.get("/api/walk", params={**q, "strength": s, "format": "json"}).json()
        want = z_all[7] + s * (z_all[[0, 1]].mean(0) - z_all[2])
        assert torch.allclose(torch.tensor(w["z"]), want)
    img = Image.open(io.BytesIO(client.get("/api/walk", params={**q, "strength": -0.5}).content))
    assert img.size == (16, 16)
    one = client.get("/api/image", params={"seed": 2, "n": 16, "index": 4})
    assert Image.open(io.BytesIO(one.content)).size == (16, 16)


@pytest.mark.parametrize("path, status, words", [
    ("/api/sample?n=0", 422, "n: Input should be greater than or equal to 1"),
    ("/api/sample?n=257", 422, "n: Input should be less than or equal to 256"),
    ("/api/sample?n=abc", 422, "n: must be a whole number"),
    ("/api/sample?n=1.5", 422, "must be a whole number"),
    ("/api/sample?n=1e2", 422, "must be a whole number"),
    ("/api/sample?seed=-1", 422, "seed: must be a whole number"),
    ("/api/sample?seed=99999999999", 422, "seed: Input should be less than or equal to 4294967295"),
    ("/api/sample?seed=" + "9" * 5000, 414, "longer than 1024 bytes"),
    ("/api/sample?n=4&colour=red", 422, "colour: unknown field"),
    ("/api/sample?format=jpg", 422, "format"),
    ("/api/image?n=4&index=4", 422, "index: sample number(s) [4] outside the grid of n=4"),
    ("/api/image?n=4", 422, "index: Field required"),
    ("/api/interpolate?n=4&a=0&b=1&steps=100", 422, "steps"),
    ("/api/interpolate?n=4&a=0&b=1&mode=cubic", 422, "mode"),
    ("/api/arithmetic?n=4&a=0;1&b=2&c=3", 422, "a: must be 1 to 8 sample numbers"),
    ("/api/arithmetic?n=4&a=0,1,2,3,0,1,2,3,0&b=2&c=3", 422, "a: must be 1 to 8"),
    ("/api/arithmetic?n=4&a=0&a=1&b=2&c=3", 422, "a: given more than once"),
    ("/api/sample?n=4&n=5", 422, "n: given more than once"),
    ("/api/image?n=4&index=1&%69ndex=2", 422, "index: given more than once"),
    ("/api/sample?seed=1&format=json&format=png", 422, "format: given more than once"),
    ("/api/walk?n=4&a=0&b=1&base=2&strength=nan", 422, "strength"),
    ("/api/walk?n=4&a=0&b=1&base=2&strength=9", 422, "strength"),
    ("/api/info?verbose=1", 422, "takes no query fields"),
    ("/etc/passwd", 404, "Not Found"),
    ("/../../etc/passwd", 404, "Not Found"),
    ("/static/index.html", 404, "Not Found"),
])
def test_api_invalid_requests_get_a_json_4xx_and_the_server_keeps_serving(client, path, status, words):
    r = client.get(path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and words in r.json()["error"]
    assert client.get("/api/sample", params={"n": 1}).status_code == 200


def test_api_refuses_bodies_and_other_methods(client):
    r = client.post("/api/sample", content=b"x" * 10)
    assert r.status_code == 413 and "no body" in r.json()["error"]
    r = client.request("DELETE", "/api/sample")
    assert r.status_code == 405 and r.json()["error"]


def test_api_busy_generator_gets_503(client):
    from dcgan.share.serve import MAX_WAITING

    client.explorer._waiting = MAX_WAITING
    try:
        r = client.get("/api/sample", params={"n": 1})
        assert r.status_code == 503 and "busy" in r.json()["error"]
    finally:
        client.explorer._waiting = 0
    assert client.get("/api/sample", params={"n": 1}).status_code == 200


def test_serve_binds_loopback_by_default_and_warns_otherwise(caplog):
    from dcgan.share.serve import check_host, listen

    args = cli.build_parser().parse_args(["serve", "--checkpoint", "x"])
    assert args.host == "127.0.0.1"
    with caplog.at_level(logging.WARNING, logger="dcgan.share.serve"):
        check_host("127.0.0.1")
        assert not caplog.records
        check_host("0.0.0.0")
    assert "anyone who can reach this machine" in caplog.text
    with listen("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        with pytest.raises(DCGANError, match=f"cannot listen on 127.0.0.1:{port}"):
            listen("127.0.0.1", port)
