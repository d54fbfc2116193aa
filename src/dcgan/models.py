"""The DCGAN generator and discriminator (paper §3), for any power-of-two size and channel count.

Architecture guidelines, as the paper states them:
- no pooling: strided convs in D, fractionally-strided (transposed) convs in G;
- no fully connected hidden layers: G starts with "project and reshape" of z, D ends with a
  single logit from its last 4x4 map;
- BatchNorm in both nets except G's output layer and D's input layer;
- ReLU in G with Tanh on the output, LeakyReLU(0.2) in D.
D returns logits: the loss is BCE-with-logits, never Sigmoid + BCELoss.

`Generator.from_pretrained(DIR)` rebuilds G from a folder written by `dcgan export` (offline) or
from a Hub repository of one. This module reads no file format: that method goes through the
export-format table (`dcgan.formats`) to the Hub layout's reader in `dcgan.share.hub`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import IMAGE_SIZES, ModelConfig
from .errors import CheckpointError, ConfigError
from .tables import D_NORMS


def _num_stages(image_size: int) -> int:
    """Number of 2x up/down-sampling stages between the 4x4 map and the image."""
    if image_size not in IMAGE_SIZES:
        raise ConfigError(
            f"data.image_size={image_size} is not supported; use one of {', '.join(map(str, IMAGE_SIZES))}"
        )
    return int(math.log2(image_size)) - 2


def _updown_padding(kernel_size: int) -> tuple[int, int]:
    """(padding, output_padding) that make a stride-2 conv exactly halve / a transposed conv double."""
    if kernel_size == 4:
        return 1, 0
    if kernel_size == 5:
        return 2, 1
    raise ConfigError(f"model.kernel_size={kernel_size} is not supported; use 4 or 5")


def init_weights(module: nn.Module) -> None:
    """§4: all weights from N(0, 0.02); BN scale from N(1, 0.02), every bias 0.

    Applied to every conv, transposed conv and linear layer (the common port bug is to match
    only `Conv2d`, which leaves `ConvTranspose2d` at PyTorch's default init).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class _Pretrained:
    """`from_pretrained` for G and D, in eval mode; the work is the Hub layout's (`dcgan.share.hub`)."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **options: Any) -> Any:
        """The network of a folder written by `dcgan export` (offline), or of a Hub repository of
        one; `options`: `map_location` and huggingface_hub's download options (`revision`,
        `token`, `cache_dir`, `force_download`, `local_files_only`). The folder is checked before
        anything is built, and the weights are loaded strictly and checked finite."""
        from .formats import from_pretrained

        return from_pretrained(cls, pretrained_model_name_or_path, **options)


@dataclass(frozen=True)
class DNorm:
    """A normalisation of D (`model.d_norm`, table `dcgan.tables.D_NORMS`)."""

    batch_norm: bool  # BatchNorm after every conv but the first
    wrap_conv: Callable[[nn.Conv2d], Any] | None = None  # applied to every conv after the init


BATCH_NORM = DNorm(batch_norm=True)  # §3: the paper's D
# Miyato et al. 2018: every conv's weight divided by its largest singular value (one power iteration
# per forward), so each layer is 1-Lipschitz; no BN.
SPECTRAL_NORM = DNorm(batch_norm=False, wrap_conv=nn.utils.parametrizations.spectral_norm)
NO_NORM = DNorm(batch_norm=False)


class Generator(nn.Module, _Pretrained):
    """z (B, nz) -> image (B, C, S, S) in [-1, 1].

    `stages[0]` projects z to a (B, ngf * 2**(n-1), 4, 4) map; each further stage doubles the
    resolution and halves the channels; the last one maps to C channels with Tanh and no BN.
    """

    def __init__(self, cfg: ModelConfig, image_size: int, channels: int) -> None:
        super().__init__()
        self.nz, self.image_size, self.channels = cfg.nz, image_size, channels
        n = _num_stages(image_size)
        pad, out_pad = _updown_padding(cfg.kernel_size)
        widths = [cfg.ngf * 2 ** (n - 1 - i) for i in range(n)]  # e.g. 64px: 512, 256, 128, 64
        self.c0 = widths[0]

        stages: list[nn.Module] = []
        if cfg.projection == "linear":
            # §3: "project and reshape": a matrix multiply of z, reshaped to 4x4 x c0 (the reference blog post's
            # Linear + BatchNorm1d form; the authors' Theano code did the same).
            stages.append(nn.Sequential(
                nn.Linear(cfg.nz, widths[0] * 16, bias=False),
                nn.BatchNorm1d(widths[0] * 16),
                nn.ReLU(inplace=True),
                nn.Unflatten(1, (widths[0], 4, 4)),
            ))
        else:
            # PyTorch-port form: z as a (nz, 1, 1) map, a 4x4 transposed conv to 4x4.
            stages.append(nn.Sequential(
                nn.Unflatten(1, (cfg.nz, 1, 1)),
                nn.ConvTranspose2d(cfg.nz, widths[0], 4, 1, 0, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
            ))
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            # §3: fractionally-strided convs do the upsampling (no fixed upsampling layers).
            stages.append(nn.Sequential(
                nn.ConvTranspose2d(c_in, c_out, cfg.kernel_size, 2, pad, out_pad, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ))
        # §3: no BN on G's output layer (it made samples oscillate); Tanh to the [-1, 1] pixels.
        stages.append(nn.Sequential(
            nn.ConvTranspose2d(widths[-1], channels, cfg.kernel_size, 2, pad, out_pad, bias=True),
            nn.Tanh(),
        ))
        self.stages = nn.ModuleList(stages)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z
        for stage in self.stages:
            x = stage(x)
        return x  # (B, C, S, S)

    def features(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output, lowest resolution first; the last entry is the image."""
        out, x = [], z
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class Discriminator(nn.Module, _Pretrained):
    """image (B, C, S, S) -> logit (B,).

    `stages[i]` halves the resolution with a strided conv (§3: learned downsampling, no pooling);
    the first stage has no BN (§3), the widths double from ndf to ndf * 2**(n-1) at 4x4.
    """

    def __init__(self, cfg: ModelConfig, image_size: int, channels: int) -> None:
        super().__init__()
        self.image_size, self.channels = image_size, channels
        n = _num_stages(image_size)
        pad, _ = _updown_padding(cfg.kernel_size)
        widths = [cfg.ndf * 2**i for i in range(n)]  # e.g. 64px: 64, 128, 256, 512

        stages: list[nn.Module] = [nn.Sequential(
            # §3: no BN on D's input layer.
            nn.Conv2d(channels, widths[0], cfg.kernel_size, 2, pad, bias=True),
            nn.LeakyReLU(0.2, inplace=True),
        )]
        norm: DNorm = D_NORMS.load(cfg.d_norm)  # the paper's BN, or (beyond the paper) spectral / none
        batch_norm = norm.batch_norm
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            stages.append(nn.Sequential(
                nn.Conv2d(c_in, c_out, cfg.kernel_size, 2, pad, bias=not batch_norm),
                nn.BatchNorm2d(c_out) if batch_norm else nn.Identity(),
                nn.LeakyReLU(0.2, inplace=True),
            ))
        self.stages = nn.ModuleList(stages)
        if cfg.d_head == "conv":
            # §3: the last conv map -> a single output (a 4x4 valid conv == flatten + linear).
            self.head = nn.Sequential(nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=True), nn.Flatten(0))
        else:
            # The reference blog post's global-average-pool head: a strided conv to one channel, then the mean.
            self.head = nn.Sequential(
                nn.Conv2d(widths[-1], 1, cfg.kernel_size, 2, pad, bias=True),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(0),
            )
        # No BN (and no sigmoid) after the head: the reference blog post's BN-on-the-output bug broke training.
        init_weights(self)
        if norm.wrap_conv is not None:  # after the N(0, 0.02) init
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    norm.wrap_conv(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.head(x)  # (B,) logits

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every conv stage's activation, highest resolution first (paper §5.1's feature source)."""
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


def load_state(module: torch.nn.Module, state: dict[str, Any], what: str, where: str | Path) -> None:
    """load_state_dict with a one-line error when the architecture differs or the entry is not
    a state dict at all."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{what} in {str(where)!r} is a {type(state).__name__}, not a state dict of "
                              "weights; pass a checkpoint written by `dcgan train`")
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError, AttributeError) as e:
        lines = str(e).splitlines()
        first = lines[1].strip() if len(lines) > 1 else str(e)
        raise CheckpointError(
            f"{what} in {str(where)!r} has another architecture than the config ({first[:120]}); "
            "use the model.* and data.image_size/channels settings it was trained with"
        ) from None


def check_finite(module: torch.nn.Module, what: str, where: str | Path) -> None:
    """A one-line error when a loaded network holds NaN or infinite weights (a diverged run)."""
    bad = [name for name, t in module.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{what} in {str(where)!r} has non-finite (NaN/inf) weights ({bad[0]}"
                              f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}); the run diverged before "
                              "this save: use (or export) an earlier checkpoint (checkpoints/step-N.pt or best.pt)")


def load_weights(module: torch.nn.Module, state: Any, what: str, where: str | Path) -> None:
    """The one way a network is filled for use (checkpoints and exports alike): `load_state`
    (strict, one-line errors), then `check_finite`."""
    load_state(module, state, what, where)
    check_finite(module, what, where)


def build_models(cfg: ModelConfig, image_size: int, channels: int) -> tuple[Generator, Discriminator]:
    if channels not in (1, 3):
        raise ConfigError(f"data.channels={channels} is not supported; use 1 or 3")
    return Generator(cfg, image_size, channels), Discriminator(cfg, image_size, channels)


def sample_z(n: int, nz: int, dist: str = "uniform", *, device: torch.device | str = "cpu",
             generator: torch.Generator | None = None) -> torch.Tensor:
    """§4: z ~ U[-1, 1]^nz (or N(0, I) with `dist="normal"`). Shape (n, nz)."""
    if dist == "uniform":
        return torch.rand(n, nz, device=device, generator=generator).mul_(2).sub_(1)
    if dist == "normal":
        return torch.randn(n, nz, device=device, generator=generator)
    raise ConfigError(f"model.z_dist={dist!r} is not supported; use uniform or normal")
