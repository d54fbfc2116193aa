"""Sampling from a trained generator: batched, seeded, BN mode explicit.

G is run in eval mode by default, so BatchNorm uses its running statistics and a sample
depends only on its own z. In train mode BN normalises with the statistics of the batch
being generated (as the training loop did), so samples change with batch composition;
`bn_mode="train"` gives that behaviour when wanted. Running statistics are never updated
while sampling.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import save_image

from .atomic import atomic_write, write_bytes
from .models import Generator, sample_z
from .pixels import to_uint8


def noise(n: int, nz: int, dist: str, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """n latent vectors from a seeded CPU generator (identical on every device)."""
    g = torch.Generator().manual_seed(seed)
    return sample_z(n, nz, dist, generator=g).to(device)


@torch.no_grad()
def generate(G: Generator, z: torch.Tensor, *, batch_size: int = 256, bn_mode: str = "eval") -> torch.Tensor:
    """G(z) in batches -> float images in [-1, 1] on z's device. G's mode is restored afterwards."""
    if bn_mode not in ("eval", "train"):
        raise ValueError(f"bn_mode must be eval or train, got {bn_mode!r}")
    was_training = G.training
    saved = None
    if bn_mode == "train":
        # Batch statistics without touching the running averages.
        saved = {k: v.clone() for k, v in G.state_dict().items() if "running" in k or "num_batches" in k}
    G.train(bn_mode == "train")
    try:
        out = torch.cat([G(z[i:i + batch_size]) for i in range(0, z.shape[0], batch_size)])
    finally:
        if saved is not None:
            G.load_state_dict(saved, strict=False)
        G.train(was_training)
    return out


def grid_nrow(n: int) -> int:
    return max(1, int(math.ceil(math.sqrt(n))))


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save images in [-1, 1] (float) or uint8 as one PNG grid (written atomically)."""
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    else:
        images = (images.detach().float().cpu() + 1) / 2
    nrow = nrow or grid_nrow(images.shape[0])
    return atomic_write(path, lambda f: save_image(images.cpu(), f, format="png", nrow=nrow,
                                                   padding=2, pad_value=1.0))


NUMBER_BAND = 12  # px above each tile of a numbered grid, where its index is written


def numbered_grid(images: torch.Tensor, nrow: int | None = None, *, min_tile: int = 64) -> torch.Tensor:
    """A uint8 (3, H, W) grid of images, each with its index in a thin band above it.

    The label covers no pixel of the sample: each image is upscaled (nearest neighbour, by a
    whole factor) to at least `min_tile` px, so a 32 px sample becomes a 64 px tile with a
    12 px band above it holding the index in a small font.
    """
    from PIL import Image, ImageDraw, ImageFont

    u8 = images if images.dtype == torch.uint8 else to_uint8(images)
    u8 = u8.cpu()
    if u8.shape[1] == 1:
        u8 = u8.expand(-1, 3, -1, -1)
    n, S = u8.shape[0], u8.shape[-1]
    nrow = nrow or grid_nrow(n)
    scale = max(1, math.ceil(min_tile / S))
    tile, pad = S * scale, 2
    big = u8.repeat_interleave(scale, -1).repeat_interleave(scale, -2)  # (N, 3, tile, tile)
    num_rows = math.ceil(n / nrow)
    width = nrow * (tile + pad) + pad
    height = num_rows * (NUMBER_BAND + tile + pad) + pad
    im = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=NUMBER_BAND - 2)
    for i in range(n):
        x = pad + (i % nrow) * (tile + pad)
        y = pad + (i // nrow) * (NUMBER_BAND + tile + pad)
        draw.text((x + 1, y), str(i), fill=(0, 0, 0), font=font)
        im.paste(Image.fromarray(big[i].permute(1, 2, 0).numpy()), (x, y + NUMBER_BAND))
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)


def png_bytes(u8: torch.Tensor) -> bytes:
    """A uint8 (C, H, W) image, C = 1 or 3, encoded as PNG at its own size."""
    from PIL import Image

    arr = u8[0].cpu().numpy() if u8.shape[0] == 1 else u8.permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def save_numbered_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """`numbered_grid` written as a PNG (atomically)."""
    return write_bytes(path, png_bytes(numbered_grid(images, nrow)))


def save_folder(images: torch.Tensor, folder: str | Path, start: int = 0) -> list[Path]:
    """Save each image as folder/{index:06d}.png at the model's resolution."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    u8 = images if images.dtype == torch.uint8 else to_uint8(images)
    paths = []
    for i, img in enumerate(u8.cpu()):
        arr = img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
        p = folder / f"{start + i:06d}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths
