"""The paper's experiments (dcgan.paper): tiny seeded models, synthetic data, CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dcgan import latent
from dcgan.config import ModelConfig
from dcgan.data import ImageData
from dcgan.errors import DCGANError
from dcgan.models import Discriminator, Generator
from dcgan.paper import arithmetic as arith
from dcgan.paper import features as feat
from dcgan.paper import filters as filt
from dcgan.paper import forget as fgt
from dcgan.paper import walk as wlk
from dcgan.pixels import to_model_range
from dcgan.sampling import generate, noise

TINY = ModelConfig(ngf=8, ndf=8)


def tiny_models(size: int = 16, seed: int = 0) -> tuple[Generator, Discriminator]:
    torch.manual_seed(seed)
    return Generator(TINY, size, 1).eval(), Discriminator(TINY, size, 1).eval()


def blobs(n: int, size: int = 16, seed: int = 0, name: str = "blobs") -> ImageData:
    """10 linearly separable classes: a bright 4x4 square at a class-specific place, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    x = torch.randint(0, 60, (n, 1, size, size), generator=g)
    for k in range(10):
        r, c = (k // 4) * 5, (k % 4) * 4
        x[labels == k, :, r:r + 4, c:c + 4] += 180
    return ImageData(x.clamp(0, 255).to(torch.uint8), labels, name, "train")


# --- features ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size,ndf,dims", [(16, 8, 16 * (8 + 16)), (32, 8, 16 * (8 + 16 + 32)),
                                           (32, 64, 7168), (64, 8, 16 * (8 + 16 + 32 + 64))])
def test_feature_dimension_is_every_stage_pooled_to_4x4(size, ndf, dims):
    D = Discriminator(ModelConfig(ndf=ndf), size, 1)
    assert feat.d_feature_dim(D) == dims


def test_d_features_concatenate_max_pooled_stages():
    _, D = tiny_models(32)
    images = blobs(6, 32).images
    X = feat.d_features(D, images, batch_size=4)
    assert X.shape == (6, feat.d_feature_dim(D)) and X.dtype == np.float32
    with torch.no_grad():
        hs = D.features(to_model_range(images))
    # The first block is stage 0 (16x16) max-pooled to 4x4 in 4x4 cells.
    first = F.max_pool2d(hs[0], 4).flatten(1).numpy()
    np.testing.assert_allclose(X[:, : first.shape[1]], first, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(X[:, -hs[-1][0].numel():], hs[-1].flatten(1).numpy(), rtol=1e-5, atol=1e-6)


def test_d_features_layers_keep_only_the_named_stages():
    _, D = tiny_models(32)
    images = blobs(5, 32).images
    X = feat.d_features(D, images)
    last = feat.d_features(D, images, layers=[2])
    assert last.shape[1] == feat.d_feature_dim(D, layers=[2]) == D.features(to_model_range(images))[2][0].numel()
    np.testing.assert_array_equal(last, X[:, -last.shape[1]:])
    both = feat.d_features(D, images, layers=[0, 2])
    np.testing.assert_array_equal(both, np.concatenate([X[:, : X.shape[1] - feat.d_feature_dim(D, layers=[1, 2])],
                                                        last], 1))
    with pytest.raises(DCGANError, match="conv stages 0..2"):
        feat.d_features(D, images, layers=[3])


def test_reestimate_bn_uses_the_data_mean_and_leaves_d_alone():
    _, D = tiny_models(16)
    before = {k: v.clone() for k, v in D.state_dict().items()}
    images = blobs(40, 16).images
    D2 = feat.reestimate_bn(D, images, batch_size=20)  # equal batches: the mean of batch means
    with torch.no_grad():
        pre_bn = D.stages[1][0](D.stages[0](to_model_range(images)))  # conv output before BN
    torch.testing.assert_close(D2.stages[1][1].running_mean, pre_bn.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert not D2.training
    for k, v in D.state_dict().items():
        assert torch.equal(v, before[k])


def test_svm_beats_chance_and_all_baselines_run():
    _, D = tiny_models(16)
    train, test = blobs(400, seed=1), blobs(200, seed=2)
    opts = feat.FeatureOptions(num_train=200, num_val=100, num_test=200, per_class=5, draws=2,
                               kmeans_centroids=16, Cs=(0.01, 1.0), search_size=150)
    res = feat.run_features(D, TINY, train, test, opts)
    assert {(r.method, r.mode) for r in res.rows} == {(m, mode) for m in feat.METHODS for mode in ("full", "few")}
    for r in res.rows:
        assert 0.0 <= r.accuracy <= 1.0 and r.num_test == 200
        if r.mode == "few":
            assert r.num_labels == 50 and len(r.C) == 2
    assert res.row("dcgan", "full").accuracy > 0.5  # chance is 0.1
    assert res.row("pixels", "full").accuracy > 0.5
    assert res.row("kmeans", "full").dims == 64
    assert "raw pixels" in res.markdown()


def test_fit_svm_separable_set():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    X = rng.normal(size=(90, 5)).astype(np.float32)
    X[np.arange(90), y] += 5
    svm, C, val = feat.fit_svm(X[::2], y[::2], X[1::2], y[1::2], Cs=(0.1, 1.0))
    assert val > 0.9 and C in (0.1, 1.0)
    assert (svm.predict(X[1::2]) == y[1::2]).mean() > 0.9


def test_kmeans_features_shape_and_nonnegative():
    km = feat.KMeansFeatures(num_centroids=8, stride=2, num_patches=2000).fit(blobs(50).images)
    X = km.transform(blobs(7).images)
    assert X.shape == (7, 32) and (X >= 0).all()


def test_few_label_indices_are_balanced():
    y = np.repeat(np.arange(10), 20)
    idx = feat.few_label_indices(y, 5, seed=3)
    assert len(idx) == 50 and np.all(np.bincount(y[idx]) == 5)
    assert not np.array_equal(idx, feat.few_label_indices(y, 5, seed=4))


# --- walk ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", wlk.MODES)
def test_walk_endpoints_reproduce_endpoint_samples(mode):
    G, _ = tiny_models(16)
    rows, steps = 3, 5
    images = wlk.walk(G, rows=rows, steps=steps, seed=7, mode=mode)
    ends = noise(2 * rows, G.nz, "uniform", 7)
    expect = generate(G, ends)
    grid = images.reshape(rows, steps, *images.shape[1:])
    torch.testing.assert_close(grid[:, 0], expect[:rows])
    torch.testing.assert_close(grid[:, -1], expect[rows:])
    assert not torch.allclose(grid[:, 1], grid[:, 0])


def test_walk_offers_the_modes_latent_interpolates():
    # paper/constants keeps a torch-free copy for the CLI's choices; it must name the same modes.
    assert wlk.MODES == latent.MODES


# --- arithmetic ----------------------------------------------------------------------------------


def test_arithmetic_with_b_equal_c_returns_a(tmp_path):
    G, _ = tiny_models(16)
    z = noise(20, G.nz, "uniform", 0)
    a, b = [1, 4, 9], [2, 3, 5]
    torch.testing.assert_close(latent.arithmetic(z, a, b, b), z[a].mean(0))
    out = arith.arithmetic_figure(G, z, a, b, b, tmp_path / "a.png")
    assert (tmp_path / "a.png").is_file()
    # The centre of the 3x3 result block is A - B + C exactly = the sample of mean z(A).
    torch.testing.assert_close(out["result_images"][4], out["mean_images"][0], rtol=1e-4, atol=1e-5)


def test_the_paper_figure_is_the_explorers_fig7(tmp_path):
    """One Fig. 7: `dcgan paper arithmetic` and `dcgan serve` draw the same PNG for the same
    grid (seed, n), groups and noise seed."""
    from fastapi.testclient import TestClient

    from dcgan.config import from_dict
    from dcgan.share.serve import Explorer, create_app

    cfg = from_dict({"data": {"image_size": 16, "channels": 1}, "model": {"ngf": 8, "ndf": 8}})
    G, _ = tiny_models(16)
    arith.arithmetic_figure(G, noise(16, G.nz, "uniform", 2), [0, 1, 2], [3], [4, 5], tmp_path / "a.png", seed=2)
    with TestClient(create_app(Explorer(G, cfg, {}, "x")), base_url="http://127.0.0.1") as c:
        r = c.get("/api/arithmetic", params={"seed": 2, "n": 16, "a": "0,1,2", "b": "3", "c": "4,5"})
    assert r.status_code == 200 and r.content == (tmp_path / "a.png").read_bytes()


# --- filters -------------------------------------------------------------------------------------


def test_guided_relu_ignores_negative_paths():
    x = torch.tensor([-1.0, 2.0, 3.0, -0.5], requires_grad=True)
    y = filt.GuidedLeakyReLU(0.2)(x)
    torch.testing.assert_close(y.detach(), F.leaky_relu(x.detach(), 0.2))
    y.backward(torch.tensor([1.0, -1.0, 1.0, 1.0]))
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 0.0, 1.0, 0.0]))


def test_guided_backprop_gradient_shape_and_guidance():
    _, D = tiny_models(16)
    x = to_model_range(blobs(4).images)
    Dg = filt.guided(D)
    assert not any(isinstance(m, torch.nn.LeakyReLU) for m in Dg.modules())
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in D.modules())  # D untouched
    g = filt.guided_backprop(Dg, x, channel=0)
    plain = filt.guided_backprop(D, x, channel=0)
    assert g.shape == x.shape and g.abs().sum() > 0
    assert not torch.allclose(g, plain)


def test_filters_figure(tmp_path):
    _, D = tiny_models(16)
    _, R = tiny_models(16, seed=1)
    v = filt.visualise(D, blobs(30).images, num_features=3, per_feature=4)
    assert v.shape == (12, 1, 16, 16) and v.abs().max() <= 1.0 + 1e-6
    assert filt.filters_figure(D, R, blobs(30).images, tmp_path / "f.png", num_features=2,
                               per_feature=3).is_file()


# --- forget --------------------------------------------------------------------------------------


def test_forgetting_nothing_changes_nothing():
    G, _ = tiny_models(16)
    z = noise(6, G.nz, "uniform", 0)
    torch.testing.assert_close(fgt.generate_without(G, z, []), generate(G, z))
    assert not torch.allclose(fgt.generate_without(G, z, [0, 1, 2]), generate(G, z))


def test_selector_finds_the_map_that_fires_inside_the_marks():
    torch.manual_seed(0)
    acts = torch.rand(10, 6, 8, 8)
    masks = torch.zeros(10, 16, 16, dtype=torch.bool)
    masks[:, :8, :8] = True  # top-left quarter
    acts[:, 3, :4, :4] += 3.0  # map 3 fires there
    drop, w = fgt.fit_selector(acts, masks, threshold=0.5)
    assert 3 in drop and int(np.argmax(w)) == 3
    assert fgt.fit_selector(acts, masks, max_maps=1)[0] == [3]


def test_marks_file_roundtrip_and_errors(tmp_path):
    spec = {"seed": 2, "num": 10, "samples": [{"index": 1, "boxes": [[0, 0, 4, 8]]},
                                              {"index": 5, "mask": np.eye(16, dtype=int).tolist()}]}
    p = tmp_path / "m.json"
    p.write_text(json.dumps(spec))
    m = fgt.read_marks(p, 16)
    assert m.indices == [1, 5] and m.seed == 2 and m.num == 10
    assert m.masks[0].sum() == 32 and m.masks[1].sum() == 16
    m2 = fgt.read_marks(fgt.write_marks(tmp_path / "m2.json", m), 16)
    assert torch.equal(m2.masks, m.masks)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"samples": [{"index": 0, "boxes": [[0, 0, 40, 4]]}]}))
    with pytest.raises(fgt.DCGANError, match="outside"):
        fgt.read_marks(bad, 16)


# --- figures and the experiment functions ----------------------------------------------------------


@pytest.mark.parametrize("size,scale", [(16, 4), (32, 2), (64, 1)])
def test_numbered_grid_labels_cover_no_sample_pixel(size, scale):
    from dcgan.sampling import NUMBER_BAND, numbered_grid

    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (5, 1, size, size), generator=g, dtype=torch.uint8)
    grid = numbered_grid(u8, nrow=3)
    tile = size * scale
    assert grid.dtype == torch.uint8 and grid.shape == (3, 2 * (NUMBER_BAND + tile + 2) + 2, 3 * (tile + 2) + 2)
    for i in range(5):
        x, y = 2 + (i % 3) * (tile + 2), 2 + (i // 3) * (NUMBER_BAND + tile + 2)
        big = u8[i].repeat_interleave(scale, -1).repeat_interleave(scale, -2).expand(3, -1, -1)
        assert torch.equal(grid[:, y + NUMBER_BAND:y + NUMBER_BAND + tile, x:x + tile], big)  # untouched
        assert (grid[:, y:y + NUMBER_BAND, x:x + tile] < 128).any()  # the index is written above it


def test_direction_and_forget_figures(tmp_path):
    from PIL import Image

    G, _ = tiny_models(16)
    z = noise(12, G.nz, "uniform", 0)
    images = arith.direction_figure(G, z, [0, 1], [2, 3], [4, 5, 6], tmp_path / "d.png", names=("x", "y"))
    assert images.shape == (3 * len(arith.DEFAULT_STRENGTHS), 1, 16, 16)
    assert Image.open(tmp_path / "d.png").width > 500  # labelled, not a bare 16 px grid
    before, after = fgt.forget_figure(G, z[:10], [0, 1], tmp_path / "f.png", per_row=4)  # short last row
    assert before.shape == after.shape == (10, 1, 16, 16) and (tmp_path / "f.png").is_file()


def test_feature_results_roundtrip_through_json():
    r = feat.FeatureResults("blobs", 16, [feat.FeatureRow("dcgan", "few", 10, 0.5, 0.1, [0.1, 1.0], 50, 20, 1.0)],
                            {"seed": 0})
    back = feat.FeatureResults.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r and back.markdown() == r.markdown()


def test_run_filters_reestimates_bn_on_the_pool(tmp_path):
    from dcgan.paper.constants import BN_POOL

    _, D = tiny_models(16)
    out = filt.run_filters(D, TINY, blobs(60), blobs(30, seed=1), tmp_path / "f.png", num_features=2,
                           per_feature=3, num_images=20)
    assert out.figures["filters"].is_file()
    assert out.results["bn_pool"] == min(BN_POOL, 60) and out.results["num_images"] == 20
    with pytest.raises(DCGANError, match="--per-feature 25 exceeds"):
        filt.run_filters(D, TINY, blobs(60), blobs(20), tmp_path / "g.png", per_feature=25)


def test_run_walk_and_forget_return_their_figures(tmp_path):
    G, _ = tiny_models(16)
    out = wlk.run_walk(G, "uniform", tmp_path / "w", rows=2, steps=3)
    assert set(out.figures) == set(wlk.MODES) and all(p.is_file() for p in out.figures.values())
    with pytest.raises(DCGANError, match="--steps 1"):
        wlk.run_walk(G, "uniform", tmp_path / "w", steps=1)
    z = noise(6, G.nz, "uniform", 0)
    marks = fgt.Marks([0, 1, 2], fgt.boxes_to_mask([[0, 0, 16, 8]], 16).expand(3, 16, 16).clone())
    res = fgt.run_forget(G, z, marks, tmp_path / "f.png", show_z=z).results
    assert res["marked_samples"] == 3 and res["show_num"] == 6 and res["num_maps"] == G.features(z)[-2].shape[1]
    with pytest.raises(DCGANError, match="outside the grid of 2"):
        fgt.run_forget(G, z[:2], marks, tmp_path / "f.png", show_z=z)


# --- bad input: one-line errors before anything is written (issue #11) ----------------------------


@pytest.mark.parametrize("text, match", [
    (b"\xff\xfe\x00binary", "not a JSON text file"),
    (b'{"samples": [{"index": "three", "boxes": [[0, 0, 4, 4]]}]}', "index 'three' is not a whole number"),
    (b'{"samples": [{"index": 1, "boxes": [[NaN, 0, 4, 4]]}]}', "four whole pixel coordinates"),
    (b'{"samples": [{"index": 1, "boxes": [[0.5, 0, 4, 4]]}]}', "four whole pixel coordinates"),
    (b'{"samples": [{"index": 1, "boxes": 3}]}', "not a list"),
    (b'{"samples": [{"index": 1, "mask": [[0, 1], [1]]}]}', "mask of sample 1"),
    (b'{"seed": "x", "samples": [{"index": 1, "boxes": [[0, 0, 4, 4]]}]}', '"seed" \'x\''),
    (b'{"num": 0, "samples": [{"index": 1, "boxes": [[0, 0, 4, 4]]}]}', '"num" 0 must be a whole number > 0'),
])
def test_malformed_marks_files_are_one_line_errors_naming_the_file(tmp_path, text, match):
    p = tmp_path / "marks.json"
    p.write_bytes(text)
    with pytest.raises(DCGANError, match=match) as e:
        fgt.read_marks(p, 16)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_marks_accept_whole_float_coordinates(tmp_path):
    p = tmp_path / "marks.json"
    p.write_text(json.dumps({"seed": 3, "samples": [{"index": 0, "boxes": [[0.0, 0, 4, 8.0]]}]}))
    assert fgt.read_marks(p, 16).masks[0].sum() == 32


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_latents_refuse_a_non_finite_z_file(tmp_path, bad):
    from dcgan.config import Config
    from dcgan.paper.common import latents

    cfg = Config()
    z = torch.zeros(4, cfg.model.nz)
    z[1, 2] = bad
    torch.save(z, tmp_path / "z.pt")
    with pytest.raises(DCGANError, match="--z .* NaN or infinite"):
        latents(cfg, z_file=tmp_path / "z.pt")
    torch.save(torch.zeros(4, cfg.model.nz), tmp_path / "ok.pt")
    assert latents(cfg, z_file=tmp_path / "ok.pt").shape == (4, cfg.model.nz)


def test_walk_sizes_are_capped_before_anything_runs():
    wlk.check_walk(1, 2)
    for rows, steps, match in ((0, 3, "--rows 0"), (10**12, 3, "--rows 1000000000000 must be in 1..256"),
                               (2, 1, "--steps 1"), (2, 257, "--steps 257 must be in 2..256")):
        with pytest.raises(DCGANError, match=match):
            wlk.check_walk(rows, steps)


def test_arithmetic_checks_both_outputs_before_writing_either(tmp_path):
    G, _ = tiny_models(16)
    z = noise(8, G.nz, "uniform", 0)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "dir.png").mkdir()
    kw = dict(a=[0], b=[1], c=[2], direction_from=[3], direction_to=[4])
    for bad, match in ((tmp_path / "a_file" / "d.png", "is a file, not a folder"), (tmp_path / "dir.png", "folder"),
                       (tmp_path / "d.jpg", "must end in .png"), (tmp_path / "arith.png", "is --out too")):
        with pytest.raises(DCGANError, match=f"--direction-out .*{match}"):
            arith.run_arithmetic(G, z, tmp_path / "arith.png", direction_out=bad, **kw)
        assert not (tmp_path / "arith.png").exists()
    for scale in (float("nan"), float("inf"), -1.0):
        with pytest.raises(DCGANError, match="--noise-scale"):
            arith.run_arithmetic(G, z, tmp_path / "arith.png", noise_scale=scale, **kw)
    with pytest.raises(DCGANError, match="--strengths"):
        arith.run_arithmetic(G, z, tmp_path / "arith.png", strengths=(0.0, float("inf")), **kw)
    assert not (tmp_path / "arith.png").exists()
    out = arith.run_arithmetic(G, z, tmp_path / "arith.png", **kw)
    assert out.figures["direction"] == tmp_path / "arith_direction.png" and out.figures["direction"].is_file()


def test_kmeans_refuses_more_centroids_than_patches():
    with pytest.raises(DCGANError, match="--kmeans-centroids 5000 exceeds the 360 training patches"):
        feat.KMeansFeatures(5000).fit(blobs(10).images)


@pytest.mark.parametrize("argv, match", [
    (["features", "--cs", "nan"], "--cs 'nan': nan must be finite and > 0"),
    (["features", "--cs", "0.1,0"], "must be finite and > 0"),
    (["features", "--layers", ""], "--layers is empty"),
    (["features", "--data", ""], "--data is empty"),
    (["features", "--test-split", " "], "--test-split is empty"),
    (["features", "--draws", "101"], "--draws 101 must be <= 100"),
    (["features", "--kmeans-centroids", "10001"], "--kmeans-centroids 10001 must be <= 10000"),
    (["features", "--per-class", "101", "--num-train", "100"], "--per-class 101 must be <= 100"),
    (["walk", "--out", "w.png", "--rows", "1000"], "--rows 1000 must be in 1..256"),
    (["arithmetic", "--a", "", "--b", "1", "--c", "2", "--out", "a.png"], "--a is empty"),
    (["arithmetic", "--a", "0", "--b", "1", "--c", "2", "--out", "a.png", "--noise-scale", "inf"],
     "--noise-scale inf must be a finite number >= 0"),
    (["arithmetic", "--a", "0", "--b", "1", "--c", "2", "--out", "a.png", "--strengths", "nan"],
     "--strengths 'nan'"),
    (["forget", "--marks", "m.json", "--out", "f.png", "--threshold", "nan"], "--threshold nan"),
    (["forget", "--marks", "m.json", "--out", "f.png", "--max-maps", "-1"], "--max-maps -1 must be >= 0"),
    (["forget", "--marks", "m.json", "--out", "f.png", "--show-num", "5000"], "--show-num 5000 must be <= 1024"),
])
def test_cli_refuses_bad_values_before_loading_the_checkpoint(tmp_path, monkeypatch, capsys, argv, match):
    """The checkpoint does not exist: each error must come first, and nothing is written."""
    from dcgan.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.json").write_text(json.dumps({"samples": [{"index": 0, "boxes": [[0, 0, 8, 8]]}]}))
    assert main(["paper", *argv, "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and match in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]
