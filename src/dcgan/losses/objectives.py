"""The GAN losses as objects that see D and the images, and the zero-centred gradient penalties.

A loss has a D step and a G step:
    d_step(D_pair, real, fake, noise) -> (L_D, D(real), D(fake))
    g_step(D, fake, real, noise)      -> (L_G, D(fake))
`D_pair` is D as the training step calls it for D's update (possibly DDP-wrapped or compiled):
`D_pair(a, b, ...)` returns D of each batch from separate forward passes, so BatchNorm normalises
each batch on its own statistics, as in the paper's code. `D` in the G step is the bare
discriminator with its weights frozen. `real` is given to the G step only when the loss says it
looks at it (`uses_real_in_g`), so the losses that do not draw no extra randomness.

The paper's loss (`bce`) is the original GAN's with G's non-saturating form (Goodfellow et al.
2014, as the paper's code did), computed from logits with BCE-with-logits for stability:
    L_D = BCE(D(x), 1) + BCE(D(G(z)), 0),    L_G = BCE(D(G(z)), 1)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    # Non-saturating: maximise log D(G(z)) rather than minimise log(1 - D(G(z))).
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def zero_centred_penalty(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """E_x ||grad_x D(x)||^2, the batch mean of the squared gradient norm of D's outputs with
    respect to its inputs (R1 on real images, Mescheder et al. 2018; R2 on fake ones). The graph
    is kept, so the penalty's own gradient reaches D's weights."""
    (grad,) = torch.autograd.grad(outputs.float().sum(), inputs, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


class Loss:
    """A GAN objective; subclasses define the two steps."""

    uses_real_in_g = False  # the G step looks at D(real) too (relativistic losses)

    def d_step(self, D_pair: nn.Module, real: torch.Tensor, fake: torch.Tensor,
               noise: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def g_step(self, D: nn.Module, fake: torch.Tensor, real: torch.Tensor | None,
               noise: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class LogitLoss(Loss):
    """A loss that is a function of D's outputs alone: `d_loss(real_out, fake_out)`, `g_loss(fake_out)`."""

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_step(self, D_pair, real, fake, noise):
        real_logits, fake_logits = D_pair(real, fake)
        return self.d_loss(real_logits.float(), fake_logits.float()), real_logits, fake_logits

    def g_step(self, D, fake, real, noise):
        fake_logits = D(fake)
        return self.g_loss(fake_logits.float()), fake_logits


class NonSaturating(LogitLoss):
    """The paper's loss (train.loss=bce)."""

    def d_loss(self, real, fake):
        return d_loss(real, fake)

    def g_loss(self, fake):
        return g_loss(fake)


class Hinge(LogitLoss):
    """D: relu(1 - D(x)) + relu(1 + D(G(z))); G: -D(G(z)) (Lim & Ye 2017; Miyato et al. 2018)."""

    def d_loss(self, real, fake):
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def g_loss(self, fake):
        return -fake.mean()


class LeastSquares(LogitLoss):
    """Mao et al. 2017, the 0-1 coding: D pulls real outputs to 1 and fake ones to 0."""

    def d_loss(self, real, fake):
        return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean()

    def g_loss(self, fake):
        return 0.5 * ((fake - 1) ** 2).mean()


class RelativisticPairing(Loss):
    """RpGAN (Jolicoeur-Martineau 2018): D scores each (real, fake) pair, not each image.
        L_D = softplus(D(G(z)) - D(x)),   L_G = softplus(D(x) - D(G(z)))
    With R1 + R2 it converges locally (Huang et al. 2024, R3GAN). Pairs are formed in batch order."""

    uses_real_in_g = True

    def d_step(self, D_pair, real, fake, noise):
        real_logits, fake_logits = D_pair(real, fake)
        return F.softplus(fake_logits.float() - real_logits.float()).mean(), real_logits, fake_logits

    def g_step(self, D, fake, real, noise):
        fake_logits = D(fake)
        real_logits = D(real)
        return F.softplus(real_logits.float() - fake_logits.float()).mean(), fake_logits


class WassersteinGP(Loss):
    """WGAN-GP (Gulrajani et al. 2017): L_D = D(G(z)) - D(x) + 10 E(||grad D(x_hat)||_2 - 1)^2 on
    random interpolates x_hat of real and fake images; L_G = -D(G(z)). Its paper uses no BN in D
    (model.d_norm=none), 5 D steps per G step and Adam(1e-4, 0, 0.9)."""

    gp_weight = 10.0

    def d_step(self, D_pair, real, fake, noise):
        eps = torch.rand(real.shape[0], 1, 1, 1, generator=noise, device=noise.device).to(real.device, real.dtype)
        x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
        real_logits, fake_logits, hat_logits = D_pair(real, fake, x_hat)
        (grad,) = torch.autograd.grad(hat_logits.float().sum(), x_hat, create_graph=True)
        gp = (grad.float().flatten(1).norm(dim=1) - 1).square().mean()
        loss = fake_logits.float().mean() - real_logits.float().mean() + self.gp_weight * gp
        return loss, real_logits, fake_logits

    def g_step(self, D, fake, real, noise):
        fake_logits = D(fake)
        return -fake_logits.float().mean(), fake_logits
