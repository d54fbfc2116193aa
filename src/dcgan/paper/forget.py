"""Forgetting to draw certain objects (paper §6.2.2, Fig. 6).

The paper: on 150 bedroom samples, 52 window bounding boxes were drawn by hand. "On the second
highest convolution layer features, logistic regression was fit to predict whether a feature
activation was on a window (or not), by using the criterion that activations inside the drawn
bounding boxes are positives and random samples from the same images are negatives." Every
feature map with a weight greater than zero (200 of them) was then dropped at all spatial
locations, and new samples were generated with and without those maps.

Here the marked regions come from a JSON file, so any region works:

    {"seed": 0, "num": 64,                     # the `dcgan sample` grid (optional: --seed/--num)
     "samples": [
       {"index": 3,  "boxes": [[x0, y0, x1, y1], ...]},   # pixels, x1/y1 exclusive
       {"index": 17, "mask": [[0, 1, ...], ...]}          # (S, S) 0/1 at image resolution
     ]}

Positions of the second-highest G stage (`G.features(z)[-2]`, the stage before the output)
whose image-space cell lies mostly inside a region are positives, every other position of the
same samples a negative. The logistic regression's positive weights above `threshold` (at most
`max_maps` of them, largest first) pick the maps to drop; dropping zeroes them after their ReLU.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import save_figure, write_text
from ..errors import DCGANError
from ..models import Generator
from ..sampling import generate
from .common import Outcome, tile_grid


@dataclass
class Marks:
    """Marked samples of a grid: their indices and (M, S, S) boolean masks at image resolution."""

    indices: list[int]
    masks: torch.Tensor
    seed: int | None = None
    num: int | None = None


def _whole(v: object) -> bool:
    """A JSON integer (or a float with no fraction, e.g. 8.0); not a bool, NaN or a string."""
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v) and v.is_integer())


def boxes_to_mask(boxes: Sequence[Sequence[int]], size: int) -> torch.Tensor:
    """[[x0, y0, x1, y1], ...] (pixels, end exclusive) -> (size, size) bool."""
    if not isinstance(boxes, (list, tuple)):
        raise DCGANError(f"boxes {boxes!r} is not a list of [x0, y0, x1, y1]; give a list of boxes")
    m = torch.zeros(size, size, dtype=torch.bool)
    for b in boxes:
        if not isinstance(b, (list, tuple)) or len(b) != 4 or not all(_whole(v) for v in b):
            raise DCGANError(f"box {b} is not [x0, y0, x1, y1]; give four whole pixel coordinates")
        x0, y0, x1, y1 = (int(v) for v in b)
        if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size):
            raise DCGANError(f"box {b} is outside the {size}x{size} image or empty; "
                             f"use 0 <= x0 < x1 <= {size} and 0 <= y0 < y1 <= {size}")
        m[y0:y1, x0:x1] = True
    return m


def _sample_mask(it: object, image_size: int) -> tuple[int, torch.Tensor]:
    """One entry of "samples" -> (its index, its (S, S) bool mask)."""
    if not isinstance(it, dict) or "index" not in it or not ({"boxes", "mask"} & set(it)):
        raise DCGANError(f"entry {it!r} needs \"index\" and \"boxes\" or \"mask\"")
    index = it["index"]
    if isinstance(index, bool) or not isinstance(index, int):
        raise DCGANError(f"sample index {index!r} is not a whole number; give the sample's number on the grid")
    m = torch.zeros(image_size, image_size, dtype=torch.bool)
    if "boxes" in it:
        m |= boxes_to_mask(it["boxes"], image_size)
    if "mask" in it:
        try:
            arr = torch.as_tensor(it["mask"], dtype=torch.float32)
        except (ValueError, TypeError, RuntimeError):
            raise DCGANError(f"mask of sample {index} is not an ({image_size}, {image_size}) list of 0/1") from None
        if arr.shape != (image_size, image_size):
            raise DCGANError(f"mask of sample {index} is {tuple(arr.shape)}, not "
                             f"({image_size}, {image_size}); give it at the model's resolution")
        if not ((arr == 0) | (arr == 1)).all():
            raise DCGANError(f"mask of sample {index} holds values other than 0 and 1")
        m |= arr.bool()
    return index, m


def read_marks(path: str | Path, image_size: int) -> Marks:
    """Parse a boxes/masks JSON file (format in the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise DCGANError(f"marks file {str(p)!r} not found; write a JSON file with boxes or masks "
                         "(see `dcgan paper forget --help`)")
    try:
        spec = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DCGANError(f"{str(p)!r} is not valid JSON ({e.msg} at line {e.lineno}); fix the file") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise DCGANError(f"marks file {str(p)!r} is not a JSON text file ({e}); see "
                         "`dcgan paper forget --help` for the format") from None
    items = spec.get("samples") if isinstance(spec, dict) else None
    if not isinstance(items, list):
        raise DCGANError(f"{str(p)!r} has no \"samples\" list; see `dcgan paper forget --help` for the format")
    for key in ("seed", "num"):
        v = spec.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or (key == "num" and v <= 0)):
            raise DCGANError(f"marks file {str(p)!r}: \"{key}\" {v!r} must be a whole number"
                             + (" > 0" if key == "num" else "") + " (or left out)")
    indices, masks = [], []
    for it in items:
        try:
            index, m = _sample_mask(it, image_size)
        except DCGANError as e:
            raise DCGANError(f"marks file {str(p)!r}: {e}") from None
        indices.append(index)
        masks.append(m)
    if not indices:
        raise DCGANError(f"{str(p)!r} marks no samples; add entries to \"samples\"")
    return Marks(indices, torch.stack(masks), spec.get("seed"), spec.get("num"))


def write_marks(path: str | Path, marks: Marks) -> Path:
    """Write marks as a JSON file `read_marks` reads back (masks as 0/1 lists)."""
    spec = {"seed": marks.seed, "num": marks.num,
            "samples": [{"index": i, "mask": m.int().tolist()} for i, m in zip(marks.indices, marks.masks)]}
    return write_text(path, json.dumps(spec))


@torch.no_grad()
def stage_activations(G: Generator, z: torch.Tensor) -> torch.Tensor:
    """The second-highest G stage (the one before the output conv): (B, C, H, W), post-ReLU."""
    was = G.training
    G.eval()
    try:
        return G.features(z)[-2]
    finally:
        G.train(was)


def fit_selector(acts: torch.Tensor, masks: torch.Tensor, *, threshold: float = 0.0,
                 max_maps: int | None = None, C: float = 1.0, seed: int = 0
                 ) -> tuple[list[int], np.ndarray]:
    """Logistic regression "is this position inside a marked region?" on feature-map activations.

    acts (M, C, H, W), masks (M, S, S) bool -> (selected map indices, weights (C,)). A position
    is positive when more than half of its image-space cell is marked.
    """
    from sklearn.linear_model import LogisticRegression

    M, Cn, H, W = acts.shape
    inside = F.adaptive_avg_pool2d(masks[:, None].float(), (H, W))[:, 0] > 0.5  # (M, H, W)
    X = acts.permute(0, 2, 3, 1).reshape(-1, Cn).numpy()
    y = inside.reshape(-1).numpy()
    if y.all() or not y.any():
        raise DCGANError("the marked regions cover all or none of the feature positions; "
                         "mark part of each image (boxes larger than "
                         f"{masks.shape[-1] // H} px, not the whole image)")
    clf = LogisticRegression(C=C, max_iter=2000, class_weight="balanced", random_state=seed).fit(X, y)
    w = clf.coef_[0]
    order = [int(i) for i in np.argsort(-w) if w[i] > threshold]
    if max_maps is not None:
        order = order[:max_maps]
    return sorted(order), w


@torch.no_grad()
def generate_without(G: Generator, z: torch.Tensor, drop: Sequence[int], *,
                     batch_size: int = 256) -> torch.Tensor:
    """G(z) with the feature maps `drop` of the second-highest stage zeroed everywhere (eval BN)."""
    idx = torch.as_tensor(list(drop), dtype=torch.long)

    def hook(_module, _inp, out):
        if len(idx):
            out = out.clone()
            out[:, idx.to(out.device)] = 0
        return out

    was = G.training
    G.eval()
    handle = G.stages[-2].register_forward_hook(hook)
    try:
        return torch.cat([G(z[i:i + batch_size]) for i in range(0, z.shape[0], batch_size)])
    finally:
        handle.remove()
        G.train(was)


def forget_figure(G: Generator, z: torch.Tensor, drop: Sequence[int], path: str | Path,
                  *, per_row: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Fig. 6: rows of samples alternate, labelled: G as trained ("as drawn"), then the same z
    with the maps dropped ("maps dropped"). Returns both sets of images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before, after = generate(G, z), generate_without(G, z, drop)
    rows, labels = [], []
    for i in range(0, z.shape[0], per_row):
        row_before, row_after = before[i:i + per_row], after[i:i + per_row]
        if row_before.shape[0] < per_row:  # pad a short last row with white tiles
            blank = torch.ones(per_row - row_before.shape[0], *before.shape[1:], device=before.device)
            row_before, row_after = torch.cat([row_before, blank]), torch.cat([row_after, blank])
        rows += [row_before, row_after]
        labels += ["as drawn", "maps dropped"]
    grid, _, ys = tile_grid(torch.cat(rows), per_row)
    fig, ax = plt.subplots(figsize=(0.8 * per_row + 1.6, 0.8 * len(rows) + 0.6))
    ax.imshow(grid, interpolation="nearest")
    ax.set_yticks(ys, labels)
    ax.set_xticks([])
    ax.tick_params(length=0, labelsize=8)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(f"{len(drop)} feature maps of G's second-highest stage dropped", fontsize=9)
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return before, after


def run_forget(G: Generator, z: torch.Tensor, marks: Marks, out: str | Path, *, show_z: torch.Tensor,
               threshold: float = 0.0, max_maps: int | None = None, per_row: int = 8) -> Outcome:
    """Fit the selector on the marked samples of grid z, drop its maps, and draw `show_z` with
    and without them as `out`."""
    bad = [i for i in marks.indices if not 0 <= i < z.shape[0]]
    if bad:
        raise DCGANError(f"marked sample(s) {bad} are outside the grid of {z.shape[0]}; give the grid's "
                         "--num (or \"num\" in the marks file)")
    acts = stage_activations(G, z[marks.indices]).cpu()
    drop, _ = fit_selector(acts, marks.masks, threshold=threshold, max_maps=max_maps)
    before, after = forget_figure(G, show_z, drop, out, per_row=per_row)
    return Outcome({"forget": Path(out)},
                   {"marked_samples": len(marks.indices), "num_maps": int(acts.shape[1]), "dropped": drop,
                    "threshold": threshold, "max_maps": max_maps, "show_num": int(show_z.shape[0]),
                    "mean_abs_change": float((before - after).abs().mean())})
