"""Operations in z (dcgan.latent): walks (§6.1), arithmetic (§6.3) and Fig. 7's picture, on
vectors whose answers are known and on a tiny seeded generator, CPU."""

from __future__ import annotations

import math

import pytest
import torch

from dcgan import latent
from dcgan.config import ModelConfig
from dcgan.models import Generator
from dcgan.pixels import to_uint8
from dcgan.sampling import generate, noise

# --- §6.1 interpolation --------------------------------------------------------------------------


def test_lerp_runs_the_segment():
    z0, z1 = torch.tensor([1.0, -2.0, 4.0]), torch.tensor([3.0, 2.0, 0.0])
    z = latent.lerp(z0, z1, torch.tensor([0.0, 0.25, 0.5, 1.0]))
    torch.testing.assert_close(z[0], z0)
    torch.testing.assert_close(z[1], torch.tensor([1.5, -1.0, 3.0]))
    torch.testing.assert_close(z[2], (z0 + z1) / 2)
    torch.testing.assert_close(z[3], z1)


def test_slerp_turns_at_a_constant_rate_along_the_great_circle():
    z0, z1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    t = torch.tensor([0.0, 1 / 3, 0.5, 1.0])
    z = latent.slerp(z0, z1, t)
    angle = t * math.pi / 2
    torch.testing.assert_close(z, torch.stack([angle.cos(), angle.sin()], 1))


def test_slerp_keeps_the_norm_of_equal_norm_endpoints_and_lerp_cuts_inside():
    z0, z1 = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 3.0])
    z = latent.interpolate(z0, z1, 7, "spherical")
    torch.testing.assert_close(z.norm(dim=1), torch.full((7,), 3.0))
    mid = latent.interpolate(z0, z1, 3, "linear")[1]
    torch.testing.assert_close(mid.norm(), torch.tensor(3.0 / math.sqrt(2)))


def test_slerp_of_parallel_endpoints_is_lerp():
    z0 = torch.tensor([1.0, 2.0])
    t = torch.linspace(0, 1, 5)
    torch.testing.assert_close(latent.slerp(z0, 2 * z0, t), latent.lerp(z0, 2 * z0, t))


@pytest.mark.parametrize("mode", latent.MODES)
def test_interpolate_has_exact_endpoints(mode):
    z0, z1 = noise(2, 100, "normal", 3)
    z = latent.interpolate(z0, z1, 9, mode)
    assert z.shape == (9, 100)
    assert torch.equal(z[0], z0) and torch.equal(z[-1], z1)
    assert not torch.allclose(z[4], z0) and not torch.allclose(z[4], z1)


def test_interpolate_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        latent.interpolate(torch.ones(2), torch.zeros(2), 3, "cubic")


def test_walk_rows_go_from_the_first_half_of_the_noise_to_the_second():
    rows, steps = 3, 4
    z = latent.walk_latents(10, "uniform", rows=rows, steps=steps, seed=5, mode="spherical")
    ends = noise(2 * rows, 10, "uniform", 5)
    grid = z.reshape(rows, steps, 10)
    assert torch.equal(grid[:, 0], ends[:rows]) and torch.equal(grid[:, -1], ends[rows:])


# --- §6.3 arithmetic -----------------------------------------------------------------------------


def test_concept_mean_and_arithmetic_of_known_vectors():
    z = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 6.0], [2.0, 2.0]])
    torch.testing.assert_close(latent.concept_mean(z, [0, 1]), torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(latent.concept_mean(z, [0, 1, 2]), torch.tensor([4 / 3, 2.0]))
    # mean(A) - mean(B) + mean(C) = (2, 0) - (0, 6) + (2, 2)
    torch.testing.assert_close(latent.arithmetic(z, [0, 1], [2], [3]), torch.tensor([4.0, -4.0]))
    torch.testing.assert_close(latent.direction(z, [2], [0, 1]), torch.tensor([2.0, -6.0]))


def test_with_noise_keeps_z_first_and_stays_within_its_scale():
    z = torch.tensor([0.5, -1.0, 2.0])
    y = latent.with_noise(z, 8, 0.25, seed=4)
    assert y.shape == (9, 3) and torch.equal(y[0], z)
    assert (y[1:] - z).abs().max() <= 0.25 and (y[1:] - z).abs().min() > 0
    assert torch.equal(y, latent.with_noise(z, 8, 0.25, seed=4))
    assert not torch.equal(y, latent.with_noise(z, 8, 0.25, seed=5))
    assert torch.equal(latent.with_noise(z, 8, 0.0), z.expand(9, 3))


def test_direction_with_zero_strength_is_the_base():
    z = noise(10, 6, "uniform", 0)
    moved = latent.apply_direction(z[[0, 1]], latent.direction(z, [2, 3], [4, 5]), [0.0, 1.0])
    torch.testing.assert_close(moved[0], z[0])
    torch.testing.assert_close(moved[3], z[1] + z[[4, 5]].mean(0) - z[[2, 3]].mean(0))


# --- Fig. 7 --------------------------------------------------------------------------------------


def test_fig7_puts_a_minus_b_plus_c_in_the_centre_of_its_block():
    z = noise(12, 8, "uniform", 1)
    fig = latent.fig7(z, ([0, 1, 2], [3], [4, 5]), noise_scale=0.25, seed=7)
    torch.testing.assert_close(fig.result, latent.arithmetic(z, [0, 1, 2], [3], [4, 5]))
    torch.testing.assert_close(fig.means[1], z[3])
    others = fig.block[[0, 1, 2, 3, 5, 6, 7, 8]]
    assert (others - fig.result).abs().max() <= 0.25 and not torch.equal(others[0], fig.result)
    zs = fig.latents(z)
    assert zs.shape == (6 + 3 + 9, 8)
    exemplars, means, block = fig.split(zs)
    assert [len(e) for e in exemplars] == [3, 1, 2] and torch.equal(exemplars[2], z[[4, 5]])
    assert torch.equal(means, fig.means) and torch.equal(block, fig.block)


def test_fig7_image_places_each_sample_in_its_tile():
    torch.manual_seed(0)
    G = Generator(ModelConfig(ngf=8, ndf=8), 16, 1).eval()
    z = noise(8, G.nz, "uniform", 0)
    fig = latent.fig7(z, ([0, 1, 2], [3], [4, 5]))
    images = generate(G, fig.latents(z))
    im = fig.image(images)
    exemplars, means, block = fig.split(images)
    T, op, gap, top = 64, 32, 4, 18  # 16 px samples shown 4x; one header line

    def tile(x: int, y: int) -> torch.Tensor:
        return im[:, y:y + T, x:x + T]

    def upscaled(img: torch.Tensor) -> torch.Tensor:
        return to_uint8(img[None])[0].expand(3, -1, -1).repeat_interleave(4, 1).repeat_interleave(4, 2)

    assert im.dtype == torch.uint8 and im.shape == (3, top + 4 * (T + gap) + gap, 3 * (T + op) + 3 * (T + gap) + gap)
    assert torch.equal(tile(0, top + 2 * (T + gap)), upscaled(exemplars[0][2]))  # A's third exemplar
    assert torch.equal(tile(T + op, top), upscaled(exemplars[1][0]))  # B's only one
    assert torch.equal(tile(2 * (T + op), top + 3 * (T + gap) + gap), upscaled(means[2]))  # C's mean, at the foot
    x0 = 3 * (T + op)
    assert torch.equal(tile(x0 + T + gap, top + T + gap), upscaled(block[4]))  # the result, in the centre
    assert torch.equal(tile(x0, top), upscaled(block[0]))


def test_fig7_headers_wrap_instead_of_losing_sample_numbers():
    from PIL import Image, ImageDraw, ImageFont

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = ImageFont.load_default(size=latent.FONT)
    text = "smiling woman: #100,120,199,201"
    lines = latent._wrap(draw, text, 92, font)
    assert len(lines) > 1 and all(draw.textlength(line, font=font) <= 92 for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")  # nothing cut
    fig = latent.fig7(torch.zeros(3, 4), ([0], [1], [2]))
    images = torch.zeros(3 + 3 + 9, 1, 16, 16)  # the exemplars, the means, the block
    short = fig.image(images)
    long = fig.image(images, names=("smiling woman", "neutral woman", "neutral man"))
    assert long.shape[1] > short.shape[1] and long.shape[2] == short.shape[2]
