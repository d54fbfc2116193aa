"""The GAN algorithm: one training iteration (D steps, then G steps) over a loss object.

The losses (`train.loss`; the paper's is `bce`) live in `dcgan.losses`, declared once in its
`LOSSES` table; each sees D and the real and fake batches. On top of any loss, the zero-centred
gradient penalties R1 (real images, `train.r1_gamma`) and R2 (fake images, `train.r2_gamma`)
can be added to D's loss as gamma / 2 * E||grad_x D(x)||^2, lazily: every `train.reg_every` D
steps, scaled by that interval (StyleGAN2's lazy regularisation), in the same forward pass as
D's loss. The gradient is taken with respect to the images before augmentation.
D sees the real and the fake batch in separate forward passes, so BatchNorm normalises each
batch on its own statistics, as in the paper's code and pytorch/examples.

`GANStep` does no host synchronisation: it returns detached scalar tensors, and the training
loop reads them only at logging steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext

import torch
from torch import nn

from .losses import build_loss
from .losses.objectives import Loss, zero_centred_penalty
from .models import sample_z


class DPair(nn.Module):
    """D on a real and a fake batch (and any further batch a loss needs), as separate forward
    passes inside one module call.

    One call per D update keeps DistributedDataParallel to one forward per backward while BN
    still sees each batch separately.
    """

    def __init__(self, D: nn.Module) -> None:
        super().__init__()
        self.D = D

    def forward(self, *batches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.D(x) for x in batches)


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
                 loss: str | Loss = "bce",
                 augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                 r1_gamma: float = 0.0, r2_gamma: float = 0.0, reg_every: int = 1) -> None:
        self.G, self.D_pair, self.D = G_train, D_pair, D
        self.loss = build_loss(loss) if isinstance(loss, str) else loss
        # DiffAugment: the same differentiable augmentation for every image D sees, real or fake.
        self.augment = augment or (lambda x, g: x)
        self.opt_G, self.opt_D = opt_G, opt_D
        self.nz, self.z_dist = nz, z_dist
        self.d_steps, self.g_steps = d_steps, g_steps
        self.autocast, self.scaler, self.to_input = autocast, scaler, to_input
        self.r1_gamma, self.r2_gamma, self.reg_every = r1_gamma, r2_gamma, reg_every

    def _backward_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
        else:
            loss.backward()
            opt.step()

    def _d_update(self, real: torch.Tensor, fake: torch.Tensor, noise: torch.Generator, d_index: int):
        """One D update on a real and a (detached) fake batch; R1/R2 when `d_index` is due."""
        due = d_index % self.reg_every == 0
        r1, r2 = (self.r1_gamma > 0 and due), (self.r2_gamma > 0 and due)
        # The penalties differentiate D's outputs w.r.t. the images before augmentation.
        real = real.detach().requires_grad_(True) if r1 else real
        fake = fake.detach().requires_grad_(True) if r2 else fake.detach()
        with self.autocast():
            loss_d, real_logits, fake_logits = self.loss.d_step(
                self.D_pair, self.augment(real, noise), self.augment(fake, noise), noise)
            if r1:  # lazy: every reg_every D steps, scaled by the interval
                loss_d = loss_d + self.r1_gamma / 2 * self.reg_every * zero_centred_penalty(real_logits, real)
            if r2:
                loss_d = loss_d + self.r2_gamma / 2 * self.reg_every * zero_centred_penalty(fake_logits, fake)
        self.opt_D.zero_grad(set_to_none=True)
        self._backward_step(loss_d, self.opt_D)
        return loss_d, real_logits, fake_logits

    def __call__(self, batches: Iterator[torch.Tensor], noise: torch.Generator, step: int = 0) -> torch.Tensor:
        """Run iteration `step` on the next `d_steps` real batches (uint8, on the device); the step
        number only decides when lazy R1/R2 are due.

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
            loss_d, real_logits, fake_logits = self._d_update(real, fake, noise, step * self.d_steps + k)

        self.D.requires_grad_(False)
        for k in range(self.g_steps):
            if k > 0:
                z = sample_z(real.shape[0], self.nz, self.z_dist, device=dev, generator=noise)
                with self.autocast():
                    fake = self.G(z)
            with self.autocast():
                fake_in = self.augment(fake, noise)
                real_in = self.augment(real, noise) if self.loss.uses_real_in_g else None
                loss_g, fake_logits_after = self.loss.g_step(self.D, fake_in, real_in, noise)
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
