"""The GAN algorithm: losses and one training iteration (D steps, then G steps).

The paper's loss (`train.loss=bce`, the default) is the original GAN's with G's
non-saturating form (Goodfellow et al. 2014, as used by the paper's code), computed from
logits with BCE-with-logits for numerical stability:
    L_D = BCE(D(x), 1) + BCE(D(G(z)), 0)
    L_G = BCE(D(G(z)), 1)
Beyond the paper, `LOSSES` also holds the hinge loss (Lim & Ye 2017; Miyato et al. 2018) and
the least-squares loss (Mao et al. 2017).
D sees the real and the fake batch in separate forward passes, so BatchNorm normalises each
batch on its own statistics, as in the paper's code and pytorch/examples.

`GANStep` does no host synchronisation: it returns detached scalar tensors, and the training
loop reads them only at logging steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from .models import sample_z


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    # Non-saturating: maximise log D(G(z)) rather than minimise log(1 - D(G(z))).
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def hinge_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def lsgan_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    # Mao et al. 2017, the 0-1 coding: D pulls real outputs to 1 and fake ones to 0.
    return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean()


def lsgan_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((fake - 1) ** 2).mean()


# train.loss -> (D's loss of (real outputs, fake outputs), G's loss of fake outputs)
LOSSES: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                        Callable[[torch.Tensor], torch.Tensor]]] = {
    "bce": (d_loss, g_loss),  # the paper
    "hinge": (hinge_d_loss, hinge_g_loss),
    "lsgan": (lsgan_d_loss, lsgan_g_loss),
}


class DPair(nn.Module):
    """D on a real and a fake batch, as two forward passes inside one module call.

    One call per D update keeps DistributedDataParallel to one forward per backward while BN
    still sees the two batches separately.
    """

    def __init__(self, D: nn.Module) -> None:
        super().__init__()
        self.D = D

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.D(real), self.D(fake)


class GANStep:
    """One training iteration: `d_steps` D updates, then `g_steps` G updates.

    G_train / D_pair are what the step calls (possibly DDP-wrapped or compiled); D is the bare
    discriminator used for G's loss (its weight gradients are switched off there: G's update
    needs gradients w.r.t. the image only).
    """

    def __init__(self, *, G_train: nn.Module, D_pair: nn.Module, D: nn.Module,
                 opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer,
                 nz: int, z_dist: str, d_steps: int = 1, g_steps: int = 1,
                 autocast: Callable[[], object] = nullcontext,
                 scaler: torch.amp.GradScaler | None = None,
                 to_input: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
                 loss: str = "bce",
                 augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None) -> None:
        self.G, self.D_pair, self.D = G_train, D_pair, D
        self.d_loss, self.g_loss = LOSSES[loss]
        # DiffAugment: the same differentiable augmentation for every image D sees, real or fake.
        self.augment = augment or (lambda x, g: x)
        self.opt_G, self.opt_D = opt_G, opt_D
        self.nz, self.z_dist = nz, z_dist
        self.d_steps, self.g_steps = d_steps, g_steps
        self.autocast, self.scaler, self.to_input = autocast, scaler, to_input

    def _backward_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
        else:
            loss.backward()
            opt.step()

    def __call__(self, batches: Iterator[torch.Tensor], noise: torch.Generator) -> torch.Tensor:
        """Run one iteration on the next `d_steps` real batches (uint8, on the device).

        Returns the detached stats [loss_d, loss_g, D(x), D(G(z)) before, D(G(z)) after].
        """
        dev = noise.device
        fake = None
        for k in range(self.d_steps):
            real = self.to_input(next(batches))
            z = sample_z(real.shape[0], self.nz, self.z_dist, device=dev, generator=noise)
            last = k == self.d_steps - 1
            with self.autocast():
                # The last fake batch keeps its graph so that G's first step can reuse it.
                with torch.no_grad() if not last else nullcontext():
                    fake = self.G(z)
                real_logits, fake_logits = self.D_pair(self.augment(real, noise), self.augment(fake.detach(), noise))
                loss_d = self.d_loss(real_logits.float(), fake_logits.float())
            self.opt_D.zero_grad(set_to_none=True)
            self._backward_step(loss_d, self.opt_D)

        self.D.requires_grad_(False)
        for k in range(self.g_steps):
            if k > 0:
                z = sample_z(real.shape[0], self.nz, self.z_dist, device=dev, generator=noise)
                with self.autocast():
                    fake = self.G(z)
            with self.autocast():
                fake_logits_after = self.D(self.augment(fake, noise))
                loss_g = self.g_loss(fake_logits_after.float())
            self.opt_G.zero_grad(set_to_none=True)
            self._backward_step(loss_g, self.opt_G)
        self.D.requires_grad_(True)
        if self.scaler is not None:
            self.scaler.update()

        with torch.no_grad():
            return torch.stack([
                loss_d.detach(), loss_g.detach(),
                torch.sigmoid(real_logits.detach().float()).mean(),
                torch.sigmoid(fake_logits.detach().float()).mean(),
                torch.sigmoid(fake_logits_after.detach().float()).mean(),
            ])


STAT_NAMES = ("loss_d", "loss_g", "d_real", "d_fake", "d_fake_after")
