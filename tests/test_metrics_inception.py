"""The Inception-v3 path, offline: a local weights file in torch-fidelity's format.

The real FID weights cannot be downloaded here, so the test writes a randomly initialised
state dict of the same network (the format torch-fidelity's file has) and checks that our
FID and IS equal torchmetrics' own for the same images, and that a weights file that would
run code when unpickled is refused before it can.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.cli import main
from dcgan.config import from_dict
from dcgan.errors import DCGANError
from dcgan.metrics.evaluator import Evaluator, build_evaluator
from dcgan.metrics.inception import ENV_WEIGHTS, InceptionFeatures, inception_score, resolve_weights

pytest.importorskip("torch_fidelity")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A random-init FeatureExtractorInceptionV3 state dict saved like torch-fidelity's weights file."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    mp = pytest.MonkeyPatch()
    mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})  # no download: keep the random init
    mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
    try:
        torch.manual_seed(0)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    finally:
        mp.undo()
    path = tmp_path_factory.mktemp("inception") / "weights-inception-random.pth"
    torch.save(net.state_dict(), path)
    return path


def _images(seed: int, n: int = 4, bright: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 128, (n, 1, 32, 32), generator=g)
    if bright:
        x[:, :, 8:24, 8:24] += 127
    return x.to(torch.uint8)


def test_fid_equals_torchmetrics_fast(weights):
    """The same loading, network and formula on the 64-d features (an early exit: fast on CPU)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    from dcgan.metrics.frechet import frechet_distance_features

    real, fake = _images(1), _images(2, bright=True)
    ours = InceptionFeatures(str(weights), pool="64", logits=False)
    fid = frechet_distance_features(ours(real)["pool"], ours(fake)["pool"])
    lib = FrechetInceptionDistance(feature=64, feature_extractor_weights_path=str(weights))
    lib.update(real.expand(-1, 3, -1, -1), real=True)
    lib.update(fake.expand(-1, 3, -1, -1), real=False)
    assert fid > 0
    assert fid == pytest.approx(float(lib.compute()), rel=1e-3)


@pytest.mark.slow  # 2048-d eigenvalues and full Inception forwards: ~1-2 min on 2 CPU cores
def test_fid_and_is_equal_torchmetrics(weights):
    from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
    from torchmetrics.image.inception import InceptionScore

    from dcgan.metrics.frechet import frechet_distance_features

    real, fake = _images(1), _images(2, bright=True)
    ours = InceptionFeatures(str(weights))
    fr, ff = ours(real), ours(fake)
    fid = frechet_distance_features(fr["pool"], ff["pool"])
    lib = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(weights))
    lib.update(real.expand(-1, 3, -1, -1), real=True)
    lib.update(fake.expand(-1, 3, -1, -1), real=False)
    assert fid > 0
    assert fid == pytest.approx(float(lib.compute()), rel=1e-3)

    net = NoTrainInceptionV3("inception-v3-compat", ["logits_unbiased"], feature_extractor_weights_path=str(weights))
    lib_is = InceptionScore(feature=net, splits=1)
    lib_is.update(fake.expand(-1, 3, -1, -1))
    assert inception_score(ff["logits"], splits=1)[0] == pytest.approx(float(lib_is.compute()[0]), rel=1e-4)


def test_weights_from_env_and_errors(weights, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_WEIGHTS, str(weights))
    assert resolve_weights(None) == str(weights)
    assert resolve_weights(str(weights)) == str(weights)
    monkeypatch.setenv(ENV_WEIGHTS, str(tmp_path / "missing.pth"))
    with pytest.raises(DCGANError, match="not found; pass the weights-inception"):
        resolve_weights(None)
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(3)}, bad)
    with pytest.raises(DCGANError, match="is not torch-fidelity's Inception-v3 state dict"):
        InceptionFeatures(str(bad))


@pytest.mark.slow  # ~15 s of Inception forwards on 2 CPU cores
def test_evaluator_inception_metrics_on_real_data(weights, tiny_cfg):
    cfg = tiny_cfg()
    ev = Evaluator(["fid", "is", "kid", "pr"], cfg.data, split="test", num_real=8, inception_weights=str(weights))
    scores = ev.score_images(_images(3, n=8, bright=True)[:, :, :16, :16].contiguous())
    assert {"fid", "is", "kid", "precision", "recall"} <= set(scores)
    assert scores["features"].startswith("inception-v3-") and scores["n_real"] == 8 and scores["n_gen"] == 8
    assert scores["fid"] > 0


# --- hostile weights files --------------------------------------------------------------------------


def _evil(path: Path, marker: Path) -> Path:
    """A state dict torch.load(weights_only=False) would run code from: it creates `marker`."""

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    torch.save({"fc.weight": Evil()}, path)
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    """12 random 16 px grayscale PNGs."""
    rng = np.random.default_rng(0)
    out = tmp_path / "imgs"
    out.mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L").save(out / f"{i}.png")
    return out


def test_hostile_weights_never_run(folder, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "pwned"
    evil = _evil(tmp_path / "weights-inception-evil.pth", marker)
    torch.load(evil, weights_only=False)  # the file is hostile: an unsafe load runs its code
    assert marker.exists()
    marker.unlink()
    args = ["eval", "--images", str(folder), "--dataset", "folder", "--data-root", str(folder), "--image-size",
            "16", "--cache-dir", str(tmp_path / "cache"), "--metrics", "fid", "--device", "cpu"]
    # --inception-weights FILE
    assert main([*args, "--inception-weights", str(evil)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Inception weights") and "not a plain tensor file" in err and "\n" not in err
    # $DCGAN_INCEPTION_WEIGHTS
    monkeypatch.setenv(ENV_WEIGHTS, str(evil))
    assert main(args) == 2
    assert "not a plain tensor file" in capsys.readouterr().err
    monkeypatch.delenv(ENV_WEIGHTS)
    # eval.inception_weights in a training config
    cfg = from_dict({"data": {"name": "folder", "root": str(folder), "image_size": 16, "channels": 1,
                              "cache_dir": str(tmp_path / "cache")},
                     "eval": {"every": 2, "metrics": ["fid"], "best": "fid", "inception_weights": str(evil)}})
    with pytest.raises(DCGANError, match="not a plain tensor file"):
        build_evaluator(cfg, "cpu")
    assert not marker.exists()


def test_download_is_loaded_as_plain_tensors(monkeypatch):
    """Without a local file the download goes through torch.hub with weights_only=True; offline, one line."""
    seen = {}

    def fake_download(url, **kwargs):
        seen.update(kwargs)
        raise OSError("no network")

    monkeypatch.delenv(ENV_WEIGHTS, raising=False)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    with pytest.raises(DCGANError, match="could not download the Inception-v3 FID weights \\(no network\\)"):
        InceptionFeatures(None)
    assert seen["weights_only"] is True
