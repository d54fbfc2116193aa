"""Operations in the latent space z (paper §6.1 and §6.3), and the picture of Fig. 7.

Below the paper's experiments (`dcgan paper walk`, `dcgan paper arithmetic`) and the explorer
(`dcgan serve`), which both walk, interpolate and do vector arithmetic on z and both draw
A - B + C in Fig. 7's layout; it imports torch and, from this package, only sampling and pixels.

§6.1: walks between two z. The paper interpolated linearly; spherical interpolation (White 2016,
"Sampling Generative Networks") is the later convention: it keeps the norm profile of the
endpoints instead of cutting through the low-norm centre of the prior.

§6.3: "Experiments working on only single samples per concept were unstable, but averaging the Z
vector for three exemplars showed consistent and stable generations": concepts are means of z,
A - B + C is arithmetic on the means, and "adding noise with scale +-0.25 to Y yields 8 more
samples" (Fig. 7). The "turn" vector of Fig. 8 generalises to any two groups: d = mean z(to) -
mean z(from), added to base samples with growing strength.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .pixels import to_uint8
from .sampling import noise

MODES = ("linear", "spherical")  # the paper's, and slerp; paper/constants.WALK_MODES (torch-free) for the CLI


# --- §6.1 walks ----------------------------------------------------------------------------------


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(nz,), (nz,), (T,) -> (T, nz) on the segment z0 -> z1."""
    t = t[:, None].to(z0)
    return (1 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(nz,), (nz,), (T,) -> (T, nz) along the great circle from z0 to z1 (norms interpolated).

    Falls back to `lerp` for (anti)parallel endpoints, where the great circle is undefined.
    """
    t = t[:, None].to(z0)
    cos = torch.dot(z0 / z0.norm(), z1 / z1.norm()).clamp(-1, 1)
    omega = torch.arccos(cos)
    so = torch.sin(omega)
    if so.abs() < 1e-6:
        return lerp(z0, z1, t[:, 0])
    return torch.sin((1 - t) * omega) / so * z0 + torch.sin(t * omega) / so * z1


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int, mode: str = "linear") -> torch.Tensor:
    """`steps` points from z0 to z1 inclusive: (steps, nz); the first is z0 and the last z1."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    t = torch.linspace(0, 1, steps)
    z = (lerp if mode == "linear" else slerp)(z0, z1, t)
    z[0], z[-1] = z0, z1  # exact endpoints (no rounding in the trigonometry)
    return z


def walk_latents(nz: int, dist: str, *, rows: int = 8, steps: int = 10, seed: int = 0,
                 mode: str = "linear") -> torch.Tensor:
    """(rows * steps, nz): row r walks from the r-th to the (rows + r)-th z of `noise(2 * rows)`."""
    ends = noise(2 * rows, nz, dist, seed)
    return torch.cat([interpolate(ends[r], ends[rows + r], steps, mode) for r in range(rows)])


# --- §6.3 arithmetic -----------------------------------------------------------------------------


def concept_mean(z: torch.Tensor, idx: Sequence[int]) -> torch.Tensor:
    """The mean z of the named samples: (N, nz), [i, j, k] -> (nz,)."""
    return z[list(idx)].mean(0)


def arithmetic(z: torch.Tensor, a: Sequence[int], b: Sequence[int], c: Sequence[int]) -> torch.Tensor:
    """mean z(A) - mean z(B) + mean z(C), e.g. smiling woman - neutral woman + neutral man."""
    return concept_mean(z, a) - concept_mean(z, b) + concept_mean(z, c)


def with_noise(z: torch.Tensor, num: int = 8, scale: float = 0.25, seed: int = 0) -> torch.Tensor:
    """(nz,) -> (1 + num, nz): z itself, then z + U[-scale, scale] noise (Fig. 7's 3x3 block)."""
    g = torch.Generator().manual_seed(seed)
    eps = (torch.rand(num, z.shape[0], generator=g) * 2 - 1) * scale
    return torch.cat([z[None], z[None] + eps.to(z)])


def direction(z: torch.Tensor, src: Sequence[int], dst: Sequence[int]) -> torch.Tensor:
    """The vector from one group to another, e.g. left-facing -> right-facing faces (Fig. 8)."""
    return concept_mean(z, dst) - concept_mean(z, src)


def apply_direction(z_base: torch.Tensor, d: torch.Tensor, strengths: Sequence[float]) -> torch.Tensor:
    """(K, nz) bases -> (K * len(strengths), nz), row k = z_base[k] + s * d for each s."""
    s = torch.tensor(list(strengths), dtype=z_base.dtype, device=z_base.device)
    return (z_base[:, None, :] + s[None, :, None] * d).reshape(-1, z_base.shape[1])


# --- Fig. 7 --------------------------------------------------------------------------------------

CENTRE = [1, 2, 3, 4, 0, 5, 6, 7, 8]  # with_noise's rows in the 3x3 block: the exact result in the centre


@dataclass
class Fig7:
    """The z behind Fig. 7: the exemplars of A, B, C (rows of a grid's z), their means, and the
    3x3 block around A - B + C. `latents` lists every z the figure draws, in the order `image`
    reads their samples."""

    groups: list[list[int]]  # sample numbers of A, B, C
    means: torch.Tensor  # (3, nz): mean z of A, B, C
    block: torch.Tensor  # (9, nz): A - B + C at index 4, the 8 noisy samples around it

    @property
    def result(self) -> torch.Tensor:
        """(nz,): mean z(A) - mean z(B) + mean z(C)."""
        return self.block[4]

    def latents(self, z: torch.Tensor) -> torch.Tensor:
        """(sum of group sizes + 12, nz): the exemplars, the 3 means, the 9 results."""
        return torch.cat([z[[i for g in self.groups for i in g]], self.means, self.block])

    def split(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """G(latents) -> (the exemplar images of A, B, C, the 3 mean images, the 9 result images)."""
        cuts = [0]
        for g in self.groups:
            cuts.append(cuts[-1] + len(g))
        exemplars = [images[cuts[i]:cuts[i + 1]] for i in range(3)]
        return exemplars, images[cuts[3]:cuts[3] + 3], images[cuts[3] + 3:]

    def image(self, images: torch.Tensor, names: Sequence[str] = ("A", "B", "C")) -> torch.Tensor:
        """G(latents) in [-1, 1] -> the figure as uint8 (3, H, W): see `fig7_image`."""
        exemplars, means, block = self.split(images)
        return fig7_image(exemplars, means, block, self.groups, names)


def fig7(z: torch.Tensor, groups: Sequence[Sequence[int]], *, noise_scale: float = 0.25, seed: int = 0) -> Fig7:
    """A - B + C for groups (A, B, C) of rows of z, with `with_noise`'s 8 neighbours (§6.3)."""
    groups = [list(g) for g in groups]
    means = torch.stack([concept_mean(z, g) for g in groups])  # (3, nz)
    block = with_noise(means[0] - means[1] + means[2], 8, noise_scale, seed)[CENTRE]
    return Fig7(groups, means, block)


HEADER = 18  # px per line of text above the tiles
FONT = 14  # its size


def _wrap(draw, text: str, width: float, font) -> list[str]:
    """Greedy lines of `text` no wider than `width` px, broken after spaces and commas; a piece
    wider than a line on its own is cut to fit."""
    pieces, piece = [], ""
    for ch in text:
        piece += ch
        if ch in " ,":
            pieces.append(piece)
            piece = ""
    pieces.append(piece)
    lines = [""]
    for p in filter(None, pieces):
        if lines[-1] and draw.textlength(lines[-1] + p, font=font) > width:
            lines.append("")
        lines[-1] += p
        while len(lines[-1]) > 1 and draw.textlength(lines[-1], font=font) > width:
            lines[-1] = lines[-1][:-1]
    return [line.rstrip() for line in lines]


def _head(draw, name: str, numbers: str, width: float, font) -> list[str]:
    """A column's header: "name: #i,j,k" on one line, else the name and the numbers each on
    lines of their own."""
    whole = _wrap(draw, f"{name}: {numbers}", width, font)
    return whole if len(whole) == 1 else _wrap(draw, f"{name}:", width, font) + _wrap(draw, numbers, width, font)


def fig7_image(exemplars: Sequence[torch.Tensor], means: torch.Tensor, block: torch.Tensor,
               groups: Sequence[Sequence[int]], names: Sequence[str] = ("A", "B", "C")) -> torch.Tensor:
    """Fig. 7's layout as uint8 (3, H, W): for A, B, C a column of exemplars headed by the name and
    sample numbers, the sample of their mean z framed at its foot with the signs between columns
    (A - B + C =), then the 3x3 block of results (A - B + C itself in the centre). Images in
    [-1, 1]; tiles are upscaled by a whole factor to about 64 px (nearest neighbour)."""
    from PIL import Image, ImageDraw, ImageFont

    S = means.shape[-1]
    T = S * max(1, 64 // S)
    gap, op = 4, max(24, T // 2)  # between tiles; the sign column
    x0 = 3 * (T + op)  # where the 3x3 block starts
    width = x0 + 3 * (T + gap) + gap
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    try:
        font = ImageFont.load_default(size=FONT)
        sign_font = ImageFont.load_default(size=max(16, op // 2))
    except TypeError:  # Pillow < 10.1: one bitmap size
        font = sign_font = ImageFont.load_default()
    heads = [_head(probe, n, "#" + ",".join(map(str, g)), T + op - 4, font) for n, g in zip(names, groups)]
    heads.append(_wrap(probe, f"{names[0]} - {names[1]} + {names[2]} (centre) + noise", width - x0 - 4, font))
    top = HEADER * max(map(len, heads))
    rows = max(len(g) for g in exemplars) + 1
    height = top + max(rows, 3) * (T + gap) + gap
    im = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(im)

    def tile(img: torch.Tensor) -> Image.Image:
        u8 = to_uint8(img[None])[0].expand(3, -1, -1)
        return Image.fromarray(u8.permute(1, 2, 0).cpu().numpy()).resize((T, T), Image.NEAREST)

    for col, lines in enumerate(heads):  # first: a descender may reach into the tiles below
        for k, line in enumerate(lines):
            draw.text((col * (T + op) + 2, 2 + HEADER * k), line, fill=(0, 0, 0), font=font)
    for col, images in enumerate(exemplars):
        x = col * (T + op)
        for r, img in enumerate(images):
            im.paste(tile(img), (x, top + r * (T + gap)))
        y_mean = top + (rows - 1) * (T + gap) + gap
        im.paste(tile(means[col]), (x, y_mean))
        draw.rectangle([x - 1, y_mean - 1, x + T, y_mean + T], outline=(200, 0, 0))
        draw.text((x + T + op // 2, y_mean + T // 2), "-+="[col], fill=(0, 0, 0), font=sign_font, anchor="mm")
    for i in range(9):
        im.paste(tile(block[i]), (x0 + (i % 3) * (T + gap), top + (i // 3) * (T + gap)))
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
