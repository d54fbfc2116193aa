"""A label-free, download-free feature network: a small self-supervised encoder (SimCLR).

Where there are no class labels (a `folder`, CelebA, LSUN) the project's classifier cannot be
trained, and where there is no internet Inception's weights cannot be fetched. This encoder needs
neither: it is trained once per dataset on the dataset itself, with SimCLR's recipe (Chen et al.
2020): two random augmentations of each image (random resized crop, flip, a small translation,
colour jitter and random grayscale for RGB, brightness/contrast for grayscale), pulled together
by the NT-Xent loss against every other image of the batch. Its 128 penultimate features give
`fd_ssl`, `kid_ssl` and `pr_ssl`; its numbers are comparable only between evaluations that name the
same encoder (`features` in the record: dataset, size, channels, seed, steps and the data's
content fingerprint, and a digest of its weights in the statistics' cache key).

The trained network is cached on disk like the classifier (`~/.cache/dcgan/ssl/`), keyed by the
data's content (`data_fingerprint`) so a changed folder trains a new one, and loaded with
`weights_only=True`: a corrupt or hostile cache file is trained again, never unpickled.

Augmentations draw one set of parameters per image: torchvision's v2 transforms draw one set
per call (for a whole batch), so the crop, flip and translation are one batched `affine_grid`
per view, and the colour jitter is batched arithmetic (`v2.functional.rgb_to_grayscale` for the
grayscale step). Images larger than ENCODER_SIZE are area-downsampled to it first, so the
encoder costs the same at 64 px as at 32 px (a 2-core CPU trains it in a few minutes); detail
finer than that is not seen by these scores.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import load_cache, save_cache
from ..config import DataConfig
from ..data import data_fingerprint, load_images
from ..errors import DCGANError
from ..pixels import to_model_range
from .classifier import weights_digest

log = logging.getLogger(__name__)

FEATURE_DIM = 128  # the features behind fd_ssl / kid_ssl / pr_ssl
PROJECTION_DIM = 64  # the NT-Xent head's output (discarded after training, as in SimCLR)
ENCODER_SIZE = 32  # larger images are area-downsampled to this before the encoder
DEFAULT_STEPS = 1000  # eval.ssl_steps: ~3-6 min on a 2-core CPU at batch 128 (x2 views)
BATCH_SIZE = 128
TEMPERATURE = 0.5  # SimCLR's choice for small batches
LR = 2e-3
FORMAT = 1  # bump when the network or the recipe changes: old cache files are then not used


class Encoder(nn.Module):
    """Images (B, C, S, S) in [-1, 1] -> features (B, 128); `project` -> (B, 64) for NT-Xent."""

    def __init__(self, channels: int, width: int = 16) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.body = nn.Sequential(
            block(channels, w, 2),  # (B, w, 16, 16) at 32 px
            block(w, 2 * w, 2),  # (B, 2w, 8, 8)
            block(2 * w, 4 * w, 2),  # (B, 4w, 4, 4)
            block(4 * w, FEATURE_DIM, 1),  # (B, 128, 4, 4)
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),  # (B, 128)
        )
        self.head = nn.Sequential(nn.Linear(FEATURE_DIM, FEATURE_DIM), nn.ReLU(inplace=True),
                                  nn.Linear(FEATURE_DIM, PROJECTION_DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(_resize(x))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self(x))


def _resize(x: torch.Tensor) -> torch.Tensor:
    s = x.shape[-1]
    return F.adaptive_avg_pool2d(x, ENCODER_SIZE) if s > ENCODER_SIZE else x


# --- augmentations, one parameter set per image -------------------------------------------------


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def augment(x: torch.Tensor, g: torch.Generator, *, scale: tuple[float, float] = (0.3, 1.0),
            translate: float = 0.125) -> torch.Tensor:
    """One random view of each image in `x` (B, C, S, S) in [-1, 1]: random resized crop (area
    `scale`, aspect 3/4..4/3), horizontal flip, a translation of up to `translate` of the size,
    then colour jitter (RGB: brightness, contrast, saturation, p=0.8; grayscale p=0.2; one
    channel: brightness and contrast)."""
    from torchvision.transforms.v2 import functional as TF

    b, c = x.shape[:2]
    area = _uniform(b, *scale, g)
    log_ratio = _uniform(b, math.log(3 / 4), math.log(4 / 3), g)
    ratio = log_ratio.exp()
    sw = (area * ratio).sqrt().clamp(max=1.0)  # crop width / image width
    sh = (area / ratio).sqrt().clamp(max=1.0)
    cx = (torch.rand(b, generator=g) * 2 - 1) * (1 - sw) + (torch.rand(b, generator=g) * 2 - 1) * 2 * translate
    cy = (torch.rand(b, generator=g) * 2 - 1) * (1 - sh) + (torch.rand(b, generator=g) * 2 - 1) * 2 * translate
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sw * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = sh, cy
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid.to(x.device), mode="bilinear", padding_mode="border", align_corners=False)
    jitter = (torch.rand(b, generator=g) < 0.8).to(x.dtype).view(b, 1, 1, 1).to(x.device)

    def factor(lo: float, hi: float) -> torch.Tensor:
        f = _uniform(b, lo, hi, g).to(x.dtype).view(b, 1, 1, 1).to(x.device)
        return 1 + jitter * (f - 1)

    x = (x + 1) / 2  # [0, 1] for the colour operations
    x = x * factor(0.6, 1.4)  # brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor(0.6, 1.4) + mean  # contrast
    if c == 3:
        gray = TF.rgb_to_grayscale(x.clamp(0, 1), num_output_channels=3)
        x = (x - gray) * factor(0.6, 1.4) + gray  # saturation
        to_gray = (torch.rand(b, generator=g) < 0.2).view(b, 1, 1, 1).to(x.device)
        x = torch.where(to_gray, TF.rgb_to_grayscale(x.clamp(0, 1), num_output_channels=3), x)
    return x.clamp(0, 1) * 2 - 1


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy: each view must pick its partner among the
    2B - 1 other views of the batch."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


# --- the trained encoder, cached by content ------------------------------------------------------------


@dataclass
class TrainedEncoder:
    """An encoder with what it was trained on."""

    net: Encoder
    info: dict[str, Any]  # dataset, split, image_size, channels, seed, steps, fingerprint, final_loss, ...
    path: Path | None = None

    @property
    def name(self) -> str:
        """The feature network's name in reports and cache keys (the cache file's stem)."""
        if self.path is not None:
            return self.path.stem
        i = self.info
        return encoder_key(i["dataset"], i["split"], i["image_size"], i["channels"], i["seed"], i["steps"],
                           i["fingerprint"])

    @property
    def digest(self) -> str:
        """A short hash of the weights (for cache keys)."""
        return weights_digest(self.net)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> dict[str, np.ndarray]:
        """uint8 images (N, C, S, S) -> {"features": (N, 128)} float64."""
        self.net.eval()
        device = next(self.net.parameters()).device
        feats = [self.net(to_model_range(images[i:i + batch_size].to(device))).double().cpu()
                 for i in range(0, images.shape[0], batch_size)]
        return {"features": torch.cat(feats).numpy()}


def encoder_key(dataset: str, split: str, image_size: int, channels: int, seed: int, steps: int,
                fingerprint: str) -> str:
    return f"ssl-{dataset}-{split}-{image_size}px-{channels}ch-seed{seed}-s{steps}-v{FORMAT}-{fingerprint}"


def encoder_path(data_cfg: DataConfig, *, split: str = "train", seed: int = 0, steps: int = DEFAULT_STEPS) -> Path:
    """The cache file: keyed by the data's content (`data_fingerprint`: every file's name, size,
    mtime and ctime and the settings that change the images), so a changed folder trains anew."""
    key = encoder_key(data_cfg.name, split, data_cfg.image_size, data_cfg.channels, seed, steps,
                      data_fingerprint(data_cfg, split))
    return Path(data_cfg.cache_dir).expanduser() / "ssl" / f"{key}.pt"


def train_encoder(data_cfg: DataConfig, *, split: str = "train", steps: int = DEFAULT_STEPS, seed: int = 0,
                  batch_size: int = BATCH_SIZE, lr: float = LR, device: torch.device | str = "cpu",
                  save: bool = True, images: torch.Tensor | None = None) -> TrainedEncoder:
    """Train the encoder with NT-Xent on `split` (Adam, warm-up then cosine); labels are never read."""
    device = torch.device(device)
    if images is None:
        images = load_images(data_cfg, split).images
    n = images.shape[0]
    if n < 2:
        raise DCGANError(f"{data_cfg.name} ({split}) has {n} images; the self-supervised encoder needs at least 2")
    batch_size = min(batch_size, n)
    torch.manual_seed(seed)
    net = Encoder(data_cfg.channels).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-6)
    warm = max(1, steps // 20)  # linear warm-up over 5% of the steps, then cosine to 0
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: min(1.0, (t + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps)))
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    net.train()
    recent: list[float] = []
    for step in range(steps):
        idx = torch.randint(0, n, (batch_size,), generator=g)
        x = to_model_range(images[idx]).to(device)
        loss = nt_xent(net.project(augment(x, g)), net.project(augment(x, g)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        recent = (recent + [loss.item()])[-50:]
        if (step + 1) % 200 == 0:
            log.info("ssl encoder step %d/%d: NT-Xent %.3f", step + 1, steps, sum(recent) / len(recent))
    seconds = time.perf_counter() - start
    info: dict[str, Any] = {
        "dataset": data_cfg.name, "split": split, "image_size": data_cfg.image_size,
        "channels": data_cfg.channels, "seed": seed, "steps": steps, "batch_size": batch_size,
        "fingerprint": data_fingerprint(data_cfg, split), "num_train_images": n, "format": FORMAT,
        "final_loss": round(sum(recent) / max(1, len(recent)), 4), "train_seconds": round(seconds, 1),
    }
    enc = TrainedEncoder(net.eval(), info)
    log.info("ssl encoder: %d steps on %d %s images in %.0f s (final NT-Xent %.3f)", steps, n, split, seconds,
             info["final_loss"])
    if save:
        enc.path = save_cache({"state": net.state_dict(), "info": info},
                              encoder_path(data_cfg, split=split, seed=seed, steps=steps), "ssl encoder")
    return enc


def load_encoder(path: str | Path, device: torch.device | str = "cpu") -> TrainedEncoder:
    """An encoder file written by `train_encoder`, loaded without running code (weights_only)."""
    path = Path(path)
    try:
        blob = load_cache(path)
        info = dict(blob["info"])
        if info.get("format") != FORMAT:
            raise ValueError("another format")
        net = Encoder(int(info["channels"]))
        net.load_state_dict(blob["state"])
    except Exception as e:  # unreadable, torn, another format, or a pickle that would run code
        raise DCGANError(f"{str(path)!r} is not an ssl encoder written by this version ({type(e).__name__}); "
                         "delete it to train it again") from None
    return TrainedEncoder(net.to(device).eval(), info, path)


def get_encoder(data_cfg: DataConfig, *, split: str = "train", seed: int = 0, steps: int = DEFAULT_STEPS,
                device: torch.device | str = "cpu", force: bool = False) -> TrainedEncoder:
    """The cached encoder for this data (by content), trained first if missing, unreadable (a
    corrupt or hostile file is replaced, with a warning) or with `force`."""
    path = encoder_path(data_cfg, split=split, seed=seed, steps=steps)
    if path.is_file() and not force:
        try:
            return load_encoder(path, device)
        except DCGANError:
            log.warning("the cached ssl encoder %s is unreadable; training it again", path)
    log.info("training the self-supervised evaluation encoder on %s %s (%dpx, %d steps, once; cached at %s)",
             data_cfg.name, split, data_cfg.image_size, steps, path)
    return train_encoder(data_cfg, split=split, steps=steps, seed=seed, device=device)
