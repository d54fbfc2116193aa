"""Memorisation check (paper §4, "nearest neighbours of samples"): does G copy its training set?

Two views:
1. Samples beside their nearest training images, in feature space (the classifier's for a
   labelled dataset, else the self-supervised encoder's: `registry.default_network`) and in pixel
   space (L2 on [-1, 1] pixels). A copying G shows near-identical pairs.
2. The distribution of sample -> nearest-training-image distances against held-out real
   (test) -> nearest-training-image distances. Held-out images are new draws of the data
   distribution, so a G that generalises should be no closer to the training set than they
   are; samples far below the held-out distances are copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import save_figure
from ..pixels import to_model_range
from .classifier import TrainedClassifier
from .ssl import TrainedEncoder


def nearest(queries: torch.Tensor, bank: torch.Tensor, k: int = 1, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances (Q, k), indices (Q, k)) of each query's k nearest rows of `bank` (Euclidean)."""
    bank = bank.float()
    dists, idxs = [], []
    for i in range(0, queries.shape[0], chunk):
        d = torch.cdist(queries[i:i + chunk].float(), bank)
        v, j = d.topk(k, dim=1, largest=False)
        dists.append(v)
        idxs.append(j)
    return torch.cat(dists), torch.cat(idxs)


def _pixels(u8: torch.Tensor) -> torch.Tensor:
    return to_model_range(u8).flatten(1)


@dataclass
class MemorisationReport:
    shown: torch.Tensor  # uint8 (n, C, S, S): the samples shown
    nn_feature: torch.Tensor  # (n, k) indices into the training images, by classifier features
    nn_pixel: torch.Tensor  # (n, k) indices, by pixels
    dist: dict[str, np.ndarray]  # "{sample,heldout}_{feature,pixel}" -> nearest-train distances
    num_train: int
    features: str = "classifier"  # the feature network: classifier or ssl

    def summary(self) -> dict[str, float]:
        """Medians, and the fraction of samples closer to train than 99% of held-out images."""
        out: dict[str, float] = {}
        for space in ("feature", "pixel"):
            s, h = self.dist[f"sample_{space}"], self.dist[f"heldout_{space}"]
            out[f"median_sample_{space}"] = float(np.median(s))
            out[f"median_heldout_{space}"] = float(np.median(h))
            out[f"frac_below_heldout_p1_{space}"] = float(np.mean(s < np.percentile(h, 1)))
        return out


def memorisation(samples: torch.Tensor, heldout: torch.Tensor, train: torch.Tensor,
                 clf: TrainedClassifier | TrainedEncoder, *,
                 num_show: int = 8, k: int = 3) -> MemorisationReport:
    """Nearest training neighbours of uint8 `samples` and `heldout` images (N, C, S, S)."""
    train_f = torch.from_numpy(clf(train)["features"]).float()
    s_f = torch.from_numpy(clf(samples)["features"]).float()
    h_f = torch.from_numpy(clf(heldout)["features"]).float()
    train_p = _pixels(train)
    d_sf, i_sf = nearest(s_f, train_f, k)
    d_hf, _ = nearest(h_f, train_f, 1)
    d_sp, i_sp = nearest(_pixels(samples), train_p, k)
    d_hp, _ = nearest(_pixels(heldout), train_p, 1)
    dist = {"sample_feature": d_sf[:, 0].numpy(), "heldout_feature": d_hf[:, 0].numpy(),
            "sample_pixel": d_sp[:, 0].numpy(), "heldout_pixel": d_hp[:, 0].numpy()}
    n = min(num_show, samples.shape[0])
    features = "ssl" if isinstance(clf, TrainedEncoder) else "classifier"
    return MemorisationReport(samples[:n], i_sf[:n], i_sp[:n], dist, train.shape[0], features)


def plot_memorisation(report: MemorisationReport, train: torch.Tensor, out: str | Path, title: str = "") -> Path:
    """Left: each sample, its k nearest training images by features, then by pixels. Right: histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    n, k = report.nn_feature.shape
    rows = []
    blank = torch.full_like(report.shown[0], 255)
    for i in range(n):
        rows += [report.shown[i], blank, *train[report.nn_feature[i]], blank, *train[report.nn_pixel[i]]]
    grid = make_grid(torch.stack(rows), nrow=2 * k + 3, padding=2, pad_value=255)
    fig = plt.figure(figsize=(14, max(4.0, 0.75 * n + 1)))
    ax = fig.add_axes([0.01, 0.05, 0.45, 0.85])
    ax.imshow(grid.permute(1, 2, 0).numpy() if grid.shape[0] == 3 else grid[0].numpy(), cmap="gray")
    ax.set_title(f"sample | {k} nearest train by {report.features} features | {k} nearest by pixels", fontsize=9)
    ax.axis("off")
    for j, space in enumerate(("feature", "pixel")):
        a = fig.add_axes([0.52 + j * 0.25, 0.12, 0.21, 0.72])
        s, h = report.dist[f"sample_{space}"], report.dist[f"heldout_{space}"]
        bins = np.linspace(0, max(s.max(), h.max()), 40)
        a.hist(h, bins=bins, alpha=0.6, label=f"held-out real -> train (n={len(h)})", density=True)
        a.hist(s, bins=bins, alpha=0.6, label=f"sample -> train (n={len(s)})", density=True)
        a.set_title(f"{report.features} features" if space == "feature" else "pixels ([-1, 1], L2)", fontsize=9)
        a.set_xlabel(f"distance to nearest of {report.num_train} train images", fontsize=8)
        a.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, out, dpi=100)
    plt.close(fig)
    return Path(out)


@dataclass
class MemorisationResult:
    report: MemorisationReport
    figure: Path
    num_samples: int
    num_heldout: int
    heldout_split: str
    num_train: int
    train_split: str
    image_size: int

    def summary_text(self) -> str:
        """The distance summary `dcgan nn` prints."""
        s = self.report.summary()
        lines = [f"nearest-training-image distances ({self.num_samples} samples, {self.num_heldout} held-out "
                 f"{self.heldout_split} images, {self.num_train} {self.train_split} images, {self.image_size}px):"]
        for space in ("feature", "pixel"):
            lines.append(f"  {space:<8} median sample->train {s[f'median_sample_{space}']:.3f}   "
                         f"median held-out->train {s[f'median_heldout_{space}']:.3f}   "
                         f"samples closer than 99% of held-out: {100 * s[f'frac_below_heldout_p1_{space}']:.1f}% "
                         "(~1% expected without copying)")
        return "\n".join(lines)


def memorisation_report(checkpoint: str | Path, out: str | Path, *, num: int = 1000, num_show: int = 8,
                        seed: int = 0, heldout_split: str = "test", classifier_epochs: int = 2,
                        data_overrides: dict[str, Any] | None = None, device: str = "auto",
                        ssl_steps: int | None = None) -> MemorisationResult:
    """`num` samples of a checkpoint and `num` held-out images against the training split; the
    figure (the first `num_show` samples beside their neighbours, and the histograms) to `out`."""
    from ..checkpoint import load_models
    from ..data import load_images
    from ..devices import pick_device
    from ..errors import DCGANError
    from ..pixels import to_uint8
    from ..sampling import generate, noise
    from . import registry
    from .evaluate import data_config
    from .networks import NetworkOptions, build

    if num < 2 or num_show < 1:
        raise DCGANError(f"--num {num} must be >= 2 and --num-show {num_show} >= 1")
    dev = pick_device(device)
    G, _, cfg, ckpt = load_models(checkpoint, dev)
    data_cfg = data_config(cfg.data, **(data_overrides or {}))
    # The dataset's offline feature network (the classifier, or without labels the encoder trained
    # on the split G learns from), built as the evaluator builds it.
    options = NetworkOptions(dev, classifier_epochs, ssl_steps or cfg.eval.ssl_steps)
    clf: TrainedClassifier | TrainedEncoder = build(registry.default_network(data_cfg.name), data_cfg, options).model
    train = load_images(data_cfg, data_cfg.split)
    heldout = load_images(data_cfg, heldout_split).images[:num]
    z = noise(num, cfg.model.nz, cfg.model.z_dist, seed, dev)
    samples = to_uint8(generate(G, z)).cpu()
    rep = memorisation(samples, heldout, train.images, clf, num_show=num_show)
    title = (f"{Path(str(checkpoint))} (step {ckpt.get('step', '?')}): {num} samples vs {len(heldout)} "
             f"{heldout_split} images; nearest of {len(train)} {data_cfg.split} images; features: {clf.name}")
    figure = plot_memorisation(rep, train.images, out, title)
    return MemorisationResult(rep, figure, num, len(heldout), heldout_split, len(train), data_cfg.split,
                              data_cfg.image_size)
