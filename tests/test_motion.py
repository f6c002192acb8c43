"""Frame-to-frame operations of the animations: motion, noise, colour coherence, slerp."""

from __future__ import annotations

import math

import pytest
import torch

from helpers.motion import add_noise, interp, match_colors, match_histogram, slerp, warp


def ramp(height: int = 16, width: int = 16) -> torch.Tensor:
    """An image whose red channel grows left to right and green top to bottom."""
    x = torch.linspace(0, 1, width).view(1, 1, 1, width).expand(1, 1, height, width)
    y = torch.linspace(0, 1, height).view(1, 1, height, 1).expand(1, 1, height, width)
    return torch.cat([x, y, torch.full_like(x, 0.5)], dim=1)


def test_no_motion_returns_the_image_itself():
    image = ramp()
    assert warp(image) is image


def test_translation_moves_the_picture_right_and_down_by_whole_pixels():
    image = torch.rand(1, 3, 12, 10)
    moved = warp(image, tx=3, ty=2)
    assert torch.allclose(moved[..., 2:, 3:], image[..., :-2, :-3], atol=1e-5)
    assert torch.allclose(moved[..., 2:, 0], image[..., :-2, 0], atol=1e-5)  # edge repeated


def test_zoom_in_magnifies_about_the_centre():
    image = ramp(17, 17)
    zoomed = warp(image, zoom=2.0)
    assert torch.allclose(zoomed[0, :, 8, 8], image[0, :, 8, 8], atol=1e-5)  # centre stays
    # a zoom of 2 doubles every slope of the ramp near the centre
    slope = (zoomed[0, 0, 8, 9] - zoomed[0, 0, 8, 8]) / (image[0, 0, 8, 9] - image[0, 0, 8, 8])
    assert float(slope) == pytest.approx(0.5, rel=1e-3)


def test_a_positive_angle_turns_counter_clockwise():
    image = torch.zeros(1, 3, 21, 21)
    image[..., 10, 15] = 1  # a dot right of the centre
    turned = warp(image, angle=90)
    y, x = divmod(int(turned[0, 0].argmax()), 21)
    assert (y, x) == (5, 10)  # now above the centre: turned counter-clockwise


def test_noise_is_seeded_clamped_and_of_the_asked_size():
    image = torch.full((1, 3, 64, 64), 0.5)
    a = add_noise(image, 0.1, torch.Generator().manual_seed(1))
    b = add_noise(image, 0.1, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert float((a - image).std()) == pytest.approx(0.1, rel=0.1)
    assert float(add_noise(image, 5.0, torch.Generator().manual_seed(1)).max()) <= 1
    assert add_noise(image, 0, torch.Generator()) is image


def test_histogram_matching_gives_the_template_distribution():
    torch.manual_seed(0)
    source, template = torch.rand(400) ** 2, torch.randn(400) * 3 + 10
    matched = match_histogram(source, template)
    assert torch.allclose(matched.sort().values, template.sort().values, atol=1e-5)
    assert torch.equal(matched.argsort(), source.argsort())  # the order of values is kept


def test_matching_an_image_to_itself_changes_nothing():
    image = ramp(8, 8) * 0.9
    assert torch.allclose(match_colors(image, image), image, atol=2e-3)


def test_colour_matching_pulls_a_frame_back_to_the_reference_colours():
    reference = ramp()
    drifted = (reference * torch.tensor([1.0, 0.6, 0.3]).view(1, 3, 1, 1)).clamp(0, 1)
    matched = match_colors(drifted, reference)
    before = (drifted.mean((2, 3)) - reference.mean((2, 3))).abs().max()
    after = (matched.mean((2, 3)) - reference.mean((2, 3))).abs().max()
    assert after < before / 4


def test_interp_matches_numpy():
    import numpy as np

    xp = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    fp = torch.tensor([5.0, 7.0, -1.0], dtype=torch.float64)
    x = torch.tensor([-1.0, 0.0, 0.5, 2.0, 3.0, 9.0], dtype=torch.float64)
    assert np.allclose(interp(x, xp, fp).numpy(), np.interp(x.numpy(), xp.numpy(), fp.numpy()))


def test_slerp_ends_exactly_and_keeps_the_noise_scale():
    a, b = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(0)), \
        torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    middle = slerp(a, b, 0.5)
    assert float(middle.norm()) == pytest.approx(math.sqrt(a.norm() * b.norm()), rel=0.05)
    assert float((a + b).div(2).norm()) < 0.8 * float(middle.norm())  # a plain mean shrinks
