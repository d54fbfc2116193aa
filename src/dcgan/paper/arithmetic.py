"""Vector arithmetic on z (paper §6.3, Figs. 7 and 8): the `dcgan paper arithmetic` command.

"Experiments working on only single samples per concept were unstable, but averaging the Z
vector for three exemplars showed consistent and stable generations": the user names three
(or more) samples per concept by their number on a `dcgan sample --numbered` grid; the command
averages their z and shows A - B + C in the paper's layout: each concept's exemplars with the
sample of their mean z below, then the result and 8 more samples from the result plus uniform
noise of scale 0.25 ("adding noise with scale +-0.25 to Y yields 8 more samples", Fig. 7).

The "turn" vector of Fig. 8 generalises to any two groups: d = mean z(to) - mean z(from),
added to base samples with growing strength. The operations on z and the Fig. 7 picture live in
`dcgan.latent`, which the explorer (`dcgan serve`) draws with too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from ..atomic import check_output_file, save_figure, write_bytes
from ..errors import DCGANError
from ..latent import apply_direction, direction, fig7
from ..models import Generator
from ..sampling import generate, png_bytes
from .common import Outcome, tile_grid
from .constants import DEFAULT_STRENGTHS


def arithmetic_figure(G: Generator, z: torch.Tensor, a: Sequence[int], b: Sequence[int],
                      c: Sequence[int], path: str | Path, *, names: Sequence[str] = ("A", "B", "C"),
                      noise_scale: float = 0.25, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fig. 7 (`latent.fig7_image`) as a PNG at `path`. Returns the z and images that were drawn."""
    fig = fig7(z, (a, b, c), noise_scale=noise_scale, seed=seed)
    images = generate(G, fig.latents(z))
    _, mean_images, res_images = fig.split(images)
    write_bytes(path, png_bytes(fig.image(images, names)))
    return {"means": fig.means, "result": fig.result, "block": fig.block, "result_images": res_images,
            "mean_images": mean_images}


def direction_figure(G: Generator, z: torch.Tensor, src: Sequence[int], dst: Sequence[int],
                     base: Sequence[int], path: str | Path, *,
                     strengths: Sequence[float] = DEFAULT_STRENGTHS,
                     names: Sequence[str] | None = None) -> torch.Tensor:
    """Fig. 8 generalised: each base sample (a row) plus s * (mean z(dst) - mean z(src)) for each
    strength s (columns, labelled). `names` = (src, dst) labels for the title (default: their
    sample numbers). Returns the images (len(base) * len(strengths), C, S, S)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = direction(z, src, dst)
    images = generate(G, apply_direction(z[list(base)], d, strengths))
    grid, xs, ys = tile_grid(images, len(strengths))
    src_name, dst_name = names or (",".join(map(str, src)), ",".join(map(str, dst)))
    fig, ax = plt.subplots(figsize=(0.9 * len(strengths) + 1.4, 0.9 * len(base) + 1.2))
    ax.imshow(grid, interpolation="nearest")  # make_grid gives RGB even for 1 channel
    ax.set_xticks(xs, [f"{s:g}" for s in strengths])
    ax.set_yticks(ys, [f"#{i}" for i in base])
    ax.tick_params(length=0, labelsize=8)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xlabel("strength s (each column: z + s * d)", fontsize=9)
    ax.set_ylabel("sample moved (grid number)", fontsize=9)
    ax.set_title(f"d = mean z({dst_name}) - mean z({src_name})", fontsize=9)
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return images


def output_paths(out: str | Path, direction_out: str | Path | None, *,
                 direction: bool) -> tuple[Path, Path | None]:
    """The Fig. 7 file and (with a direction) the Fig. 8 file (default: out with _direction),
    both checked before either is written, so a bad second path leaves no first figure behind."""
    out = check_output_file(out, "--out")
    if out.suffix.lower() != ".png":
        raise DCGANError(f"--out {str(out)!r} must end in .png")
    if not direction:
        return out, None
    if direction_out is None:
        return out, out.with_name(out.stem + "_direction.png")
    dpath = check_output_file(direction_out, "--direction-out")
    if dpath.suffix.lower() != ".png":
        raise DCGANError(f"--direction-out {str(dpath)!r} must end in .png")
    if dpath == out:
        raise DCGANError(f"--direction-out {str(dpath)!r} is --out too; give the two figures different files")
    return out, dpath


def run_arithmetic(G: Generator, z: torch.Tensor, out: str | Path, *, a: Sequence[int], b: Sequence[int],
                   c: Sequence[int], names: Sequence[str] = ("A", "B", "C"), noise_scale: float = 0.25,
                   seed: int = 0, direction_from: Sequence[int] | None = None,
                   direction_to: Sequence[int] | None = None, base: Sequence[int] | None = None,
                   strengths: Sequence[float] = DEFAULT_STRENGTHS, direction_out: str | Path | None = None,
                   direction_names: Sequence[str] | None = None) -> Outcome:
    """Fig. 7 (A - B + C) as `out`, and with both direction groups Fig. 8 as `direction_out`
    (default: out with _direction). Samples are indices into z (a numbered grid)."""
    n = z.shape[0]
    for flag, idx in (("--a", a), ("--b", b), ("--c", c), ("--direction-from", direction_from),
                      ("--direction-to", direction_to), ("--base", base)):
        bad = [i for i in idx or () if not 0 <= i < n]
        if bad:
            raise DCGANError(f"{flag}: sample number(s) {bad} outside the grid of {n}; use 0..{n - 1}")
    if len(names) != 3:
        raise DCGANError(f"--names {','.join(names)!r} needs three labels, e.g. 'smiling woman,neutral woman,neutral man'")
    if (direction_from is None) != (direction_to is None):
        raise DCGANError("give both --direction-from and --direction-to (or neither)")
    if not math.isfinite(noise_scale) or noise_scale < 0:
        raise DCGANError(f"--noise-scale {noise_scale} must be a finite number >= 0")
    if not all(math.isfinite(s) for s in strengths):
        raise DCGANError(f"--strengths {','.join(map(str, strengths))} must be finite numbers")
    out, dpath = output_paths(out, direction_out, direction=direction_from is not None)
    arithmetic_figure(G, z, a, b, c, out, names=names, noise_scale=noise_scale, seed=seed)
    figures = {"arithmetic": out}
    results = {"a": list(a), "b": list(b), "c": list(c), "names": list(names), "noise_scale": noise_scale,
               "seed": seed}
    if direction_from is not None:
        base = list(base) if base is not None else list(c)
        direction_figure(G, z, direction_from, direction_to, base, dpath, strengths=strengths,
                         names=direction_names)
        figures["direction"] = dpath
        results.update(direction_from=list(direction_from), direction_to=list(direction_to),
                       direction_base=base, strengths=list(strengths))
    return Outcome(figures, results)
