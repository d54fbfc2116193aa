"""Visualising D's features with guided backpropagation (paper §6.2.1, Fig. 5).

Fig. 5 shows, for the trained D and for a random D of the same architecture, "guided
backpropagation visualizations of maximal axis-aligned responses for the first 6 learned
convolutional features from the last convolution layer in the discriminator". Here: for each
of the first `num_features` channels of D's last conv stage, the real images whose maximum
response in that channel is largest are found, and the gradient of that maximum w.r.t. the
image is computed with guided backpropagation (Springenberg et al. 2015): at every
(Leaky)ReLU only positive gradients flowing through positive activations pass, so negative
paths are ignored.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ..atomic import save_figure
from ..config import ModelConfig
from ..data import ImageData
from ..errors import DCGANError
from ..models import Discriminator
from ..pixels import to_model_range
from .common import Outcome
from .constants import BN_POOL


class _GuidedLeakyReLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        return nn.functional.leaky_relu(x, slope)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        # Guided backprop: pass only where the forward input was positive AND the gradient is.
        return grad.clamp(min=0) * (x > 0).to(grad.dtype), None


class GuidedLeakyReLU(nn.Module):
    """LeakyReLU forward, guided-backprop backward (ReLU is the slope-0 case)."""

    def __init__(self, negative_slope: float = 0.0) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GuidedLeakyReLUFn.apply(x, self.negative_slope)


def guided(D: nn.Module) -> nn.Module:
    """A copy of D, in eval mode, whose ReLU / LeakyReLU layers backpropagate the guided way."""
    D = copy.deepcopy(D).eval()
    for module in D.modules():
        for name, child in module.named_children():
            if isinstance(child, nn.LeakyReLU):
                setattr(module, name, GuidedLeakyReLU(child.negative_slope))
            elif isinstance(child, nn.ReLU):
                setattr(module, name, GuidedLeakyReLU(0.0))
    return D


def last_features(D: Discriminator, x: torch.Tensor) -> torch.Tensor:
    """D's last conv stage activation: (B, C_last, 4, 4) for the paper's D."""
    for stage in D.stages:
        x = stage(x)
    return x


@torch.no_grad()
def top_images(D: Discriminator, images: torch.Tensor, channels: list[int], k: int,
               batch_size: int = 256) -> torch.Tensor:
    """For each channel, the indices of the k images with the largest maximum response: (F, k)."""
    D = D.eval()
    acts = []
    for i in range(0, images.shape[0], batch_size):
        h = last_features(D, to_model_range(images[i:i + batch_size]))
        acts.append(h[:, channels].amax((-1, -2)))  # (B, F)
    return torch.cat(acts).topk(k, dim=0).indices.T  # (F, k)


def guided_backprop(D: Discriminator, x: torch.Tensor, channel: int) -> torch.Tensor:
    """d max_{h,w} D_last[channel] / d x, guided: x (B, C, S, S) in [-1, 1] -> gradients (B, C, S, S).

    Pass a model from `guided(D)`; with a plain D this is the ordinary gradient.
    """
    x = x.detach().clone().requires_grad_(True)
    h = last_features(D, x)[:, channel]  # (B, H, W)
    h.flatten(1).amax(1).sum().backward()
    return x.grad.detach()


def normalise(grad: torch.Tensor) -> torch.Tensor:
    """Gradients -> images in [-1, 1] for display: each image scaled by its own max |g|."""
    m = grad.flatten(1).abs().amax(1).clamp(min=1e-12)[:, None, None, None]
    return grad / m


def visualise(D: Discriminator, images: torch.Tensor, *, num_features: int = 6,
              per_feature: int = 8, batch_size: int = 256) -> torch.Tensor:
    """Rows = the first `num_features` last-layer features, columns = their top images' guided
    gradients (normalised to [-1, 1]): (num_features * per_feature, C, S, S). D is not modified."""
    num_features = min(num_features, D.stages[-1][0].out_channels)
    channels = list(range(num_features))
    top = top_images(D, images, channels, per_feature, batch_size)
    Dg = guided(D)
    rows = []
    for f, c in enumerate(channels):
        x = to_model_range(images[top[f]])
        rows.append(normalise(guided_backprop(Dg, x, c)))
    return torch.cat(rows)


def filters_figure(D_trained: Discriminator, D_random: Discriminator, images: torch.Tensor,
                   path: str | Path, *, num_features: int = 6, per_feature: int = 8) -> Path:
    """Fig. 5: random D on the left, trained D on the right, one row per feature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    fig, axes = plt.subplots(1, 2, figsize=(2 * 0.55 * per_feature + 0.6, 0.6 * num_features + 0.6))
    for ax, D, title in ((axes[0], D_random, "random filters"), (axes[1], D_trained, "trained filters")):
        v = visualise(D, images, num_features=num_features, per_feature=per_feature)
        grid = make_grid((v + 1) / 2, nrow=per_feature, padding=2, pad_value=1.0)
        ax.imshow(grid.permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def run_filters(D: Discriminator, cfg_model: ModelConfig, train: ImageData, test: ImageData,
                out: str | Path, *, num_features: int = 6, per_feature: int = 8, num_images: int = 2000,
                seed: int = 0, device: torch.device | str = "cpu") -> Outcome:
    """Fig. 5 as `out`: the trained D and a random D of the same architecture (seeded), both
    with BN statistics re-estimated on BN_POOL training images, searched over `num_images`
    seeded test images."""
    from .features import random_discriminator, reestimate_bn

    for flag, value in (("--num-features", num_features), ("--per-feature", per_feature),
                        ("--num-images", num_images)):
        if value <= 0:
            raise DCGANError(f"{flag} {value} must be > 0")
    g = torch.Generator().manual_seed(seed)
    images = test.images[torch.randperm(len(test), generator=g)[:num_images]]
    if images.shape[0] < per_feature:
        raise DCGANError(f"--per-feature {per_feature} exceeds the {images.shape[0]} test images")
    pool = train.images[torch.randperm(len(train), generator=g)[:BN_POOL]]
    D_trained = reestimate_bn(D, pool, device=device)
    D_random = reestimate_bn(random_discriminator(D, cfg_model, seed), pool, device=device)
    path = filters_figure(D_trained, D_random, images.to(device), out, num_features=num_features,
                          per_feature=per_feature)
    return Outcome({"filters": path}, {"num_features": num_features, "per_feature": per_feature,
                                       "num_images": int(images.shape[0]), "bn_pool": int(pool.shape[0]),
                                       "seed": seed})
