"""CLIP guidance pieces: cutouts, resampling, augmentations, the gradient tricks, losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helpers.settings import VQGANClipSettings
from helpers.settings.vqgan_clip import AUGMENT_PRESETS, AUGMENTS
from helpers.vqgan_clip import losses as guidance
from helpers.vqgan_clip.losses import (
    Cutouts,
    Target,
    add_noise,
    augment_pipeline,
    clamp_with_grad,
    lanczos_taps,
    noise_target,
    prompt_loss,
    replace_grad,
    resample,
    spherical_distance,
)


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def windows(image: torch.Tensor, size: int) -> torch.Tensor:
    """Every size x size window of a (1, C, H, W) image, as (n, C, size, size)."""
    c = image.shape[1]
    patches = image.unfold(2, size, 1).unfold(3, size, 1)  # (1, C, nh, nw, size, size)
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, size, size)


def is_one_of(crop: torch.Tensor, candidates: torch.Tensor) -> bool:
    return bool(((candidates - crop).abs().amax(dim=(1, 2, 3)) < 1e-6).any())


# --- cutouts --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["classic", "pooled"])
@pytest.mark.parametrize("augments", [("affine", "jitter"), ("crowson2021",), ("nerdyrodent",)])
def test_cutouts_have_clip_input_size(method, augments):
    cut = Cutouts(32, cutn=5, cut_pow=1.0, augments=augments, method=method)
    out = cut(torch.rand(1, 3, 80, 48))
    assert out.shape == (5, 3, 32, 32)


def test_pooled_cutouts_without_noise_stay_within_the_image_value_range():
    image = torch.rand(1, 3, 40, 56) * 0.5 + 0.25  # in [0.25, 0.75]
    out = Cutouts(16, cutn=6, method="pooled", noise_fac=0)(image)
    assert float(out.min()) >= float(image.min()) - 1e-6
    assert float(out.max()) <= float(image.max()) + 1e-6


def test_classic_cutouts_keep_a_flat_image_flat():
    torch.manual_seed(0)
    out = Cutouts(16, cutn=6, method="classic", noise_fac=0)(torch.full((1, 3, 40, 56), 0.3))
    torch.testing.assert_close(out, torch.full_like(out, 0.3))


def test_classic_cutouts_are_different_views():
    torch.manual_seed(0)
    out = Cutouts(16, cutn=4, method="classic", noise_fac=0)(torch.rand(1, 3, 64, 64))
    assert all(not torch.allclose(out[0], view) for view in out[1:])


def test_classic_cutouts_with_a_huge_cut_pow_are_exact_windows_of_the_cut_size():
    torch.manual_seed(0)
    image = torch.rand(1, 3, 24, 20)
    out = Cutouts(8, cutn=5, cut_pow=1e6, method="classic", noise_fac=0)(image)  # side 8
    candidates = windows(image, 8)
    assert all(is_one_of(crop, candidates) for crop in out)


def test_classic_cutouts_with_cut_pow_zero_span_the_short_side():
    torch.manual_seed(0)
    image = torch.rand(1, 3, 24, 16)
    out = Cutouts(8, cutn=5, cut_pow=0.0, method="classic", noise_fac=0)(image)  # side 16
    # 16x16 windows resampled down to 8x8; clamped, as plain cutouts are (the references')
    candidates = resample(windows(image, 16), (8, 8)).clamp(0, 1)
    assert all(is_one_of(crop, candidates) for crop in out)


def test_classic_cutouts_of_an_image_smaller_than_the_cut_are_scaled_up():
    torch.manual_seed(0)
    image = torch.rand(1, 3, 10, 12)
    out = Cutouts(32, cutn=3, method="classic", noise_fac=0)(image)
    assert out.shape == (3, 3, 32, 32)
    # the short side, bicubic up, no low-pass; bicubic overshoots [0, 1], and plain cutouts
    # (no augmentations, no noise) are clamped as the references' are
    upscaled = F.interpolate(windows(image, 10), size=(32, 32), mode="bicubic",
                             align_corners=True)
    assert float(upscaled.min()) < 0 or float(upscaled.max()) > 1
    candidates = upscaled.clamp(0, 1)
    assert all(is_one_of(crop, candidates) for crop in out)


def test_cutout_boxes_lie_inside_the_image_with_sides_between_the_cut_and_the_short_side():
    torch.manual_seed(0)
    boxes = Cutouts(8, cutn=50, method="classic").boxes(20, 30)
    assert len(boxes) == 50
    assert all(8 <= s <= 20 and 0 <= y <= 20 - s and 0 <= x <= 30 - s for y, x, s in boxes)
    assert len({s for _, _, s in boxes}) > 3


def test_pooled_cutouts_without_augments_or_noise_are_one_view_repeated():
    image = torch.rand(1, 3, 48, 32)
    out = Cutouts(16, cutn=4, method="pooled", noise_fac=0)(image)
    expected = (F.adaptive_avg_pool2d(image, 16) + F.adaptive_max_pool2d(image, 16)) / 2
    assert all(torch.allclose(view, expected[0]) for view in out)


def test_noise_has_a_strength_of_its_own_per_cutout_up_to_noise_fac():
    torch.manual_seed(0)
    image = torch.full((1, 3, 64, 64), 0.5)
    out = Cutouts(32, cutn=16, method="pooled", noise_fac=0.1)(image)
    spread = (out - 0.5).std(dim=(1, 2, 3))
    assert float(spread.max()) < 0.1 * 1.1  # a standard normal times a strength <= 0.1
    assert float(spread.max() - spread.min()) > 0.02  # strengths differ between cutouts
    assert torch.equal(add_noise(image, 0.0), image)


# --- resampling -----------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.9, 0.5, 0.3, 0.1])
def test_lanczos_taps_are_a_normalised_symmetric_low_pass(ratio):
    taps = lanczos_taps(ratio)
    assert len(taps) % 2 == 1
    assert math.isclose(float(taps.sum()), 1.0, rel_tol=1e-6)
    torch.testing.assert_close(taps, taps.flip(0))
    assert int(taps.argmax()) == len(taps) // 2
    assert len(taps) * ratio >= 4 - 2 * ratio  # it spans Lanczos-2's support, +-2 output pixels


def test_lanczos_taps_vanish_at_whole_output_pixels():
    taps = lanczos_taps(0.5)  # one tap per half output pixel: x = -1.5 ... 1.5
    assert len(taps) == 7
    torch.testing.assert_close(taps[[1, 5]], torch.zeros(2))


def test_resampling_removes_the_aliasing_of_plain_bicubic():
    stripes = torch.arange(64).remainder(2).float().expand(1, 3, 64, 64)  # the finest detail
    plain = F.interpolate(stripes, size=(16, 16), mode="bicubic", align_corners=True)
    filtered = resample(stripes, (16, 16))
    assert float(plain.std()) > 0.3  # aliased: the stripes come back as a coarse pattern
    assert float(filtered.std()) < 0.02  # low-passed first: an even grey


def test_resampling_filters_only_the_axis_that_shrinks():
    image = torch.rand(2, 3, 40, 10)
    out = resample(image, (20, 30))  # rows shrink, columns grow
    rows_only = F.conv2d(F.pad(image.reshape(6, 1, 40, 10), (0, 0, 3, 3), mode="reflect"),
                         lanczos_taps(0.5).view(1, 1, -1, 1)).view(2, 3, 40, 10)
    expected = F.interpolate(rows_only, size=(20, 30), mode="bicubic", align_corners=True)
    torch.testing.assert_close(out, expected)


# --- augmentations --------------------------------------------------------------------------


def test_cutouts_with_augments_repeat_under_the_same_seed():
    cut = Cutouts(16, cutn=4, augments=("affine", "jitter", "noise"), method="classic")
    image = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(7)
    first = cut(image)
    torch.manual_seed(7)
    again = cut(image)
    torch.manual_seed(8)
    other = cut(image)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("name", AUGMENTS + AUGMENT_PRESETS)
def test_every_named_augment_keeps_the_cutout_shape(name):
    torch.manual_seed(0)
    out = Cutouts(16, cutn=3, augments=(name,), method="classic")(torch.rand(1, 3, 40, 24))
    assert out.shape == (3, 3, 16, 16)
    assert bool(torch.isfinite(out).all())


def test_the_settings_name_every_augmentation_and_preset_there_is():
    assert set(AUGMENT_PRESETS) == set(guidance.AUGMENT_PRESETS)
    for name in AUGMENTS:
        assert len(augment_pipeline((name,), 16)) == 1


def test_unknown_augment_is_named():
    with pytest.raises(ValueError, match="wobble") as error:
        Cutouts(32, 2, augments=("wobble",))
    assert str(error.value).startswith("augments: ")
    assert ", ".join(AUGMENT_PRESETS + AUGMENTS) in str(error.value)


def test_a_preset_stands_alone():
    with pytest.raises(ValueError, match=r"^augments: the preset 'nerdyrodent' stands alone"):
        augment_pipeline(("flip", "nerdyrodent"), 32)
    with pytest.raises(ValueError, match=r"^augments: the preset crowson2021 stands alone"):
        VQGANClipSettings(prompt="a", augments=("crowson2021", "flip"))


def test_unknown_cut_method_is_named():
    with pytest.raises(ValueError, match=r"^cut_method: must be 'classic' or 'pooled' "
                                         r"\(got 'zoom'\)$"):
        Cutouts(32, 2, method="zoom")


# --- gradient tricks ------------------------------------------------------------------------


def test_replace_grad_has_the_value_of_one_and_the_gradient_of_the_other():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    out = replace_grad(torch.tensor([5.0, 7.0]), 3 * x)
    assert out.tolist() == [5.0, 7.0]
    out.sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_replace_grad_passes_no_gradient_to_the_forward_value():
    x = torch.tensor([1.0], requires_grad=True)
    y = torch.tensor([1.0], requires_grad=True)
    replace_grad(x * 10, y).sum().backward()
    assert x.grad is None or float(x.grad.abs().sum()) == 0.0
    assert y.grad.tolist() == [1.0]


def test_clamp_keeps_only_gradients_that_push_back_into_range():
    x = torch.tensor([-0.5, 0.5, 1.5], requires_grad=True)
    y = clamp_with_grad(x)
    assert y.tolist() == [0.0, 0.5, 1.0]
    y.backward(torch.tensor([1.0, 1.0, 1.0]))  # descent moves every value down
    assert x.grad.tolist() == [0.0, 1.0, 1.0]  # -0.5 would go further out: no gradient
    x.grad = None
    clamp_with_grad(x).backward(torch.tensor([-1.0, -1.0, -1.0]))  # descent moves values up
    assert x.grad.tolist() == [-1.0, -1.0, 0.0]


def test_clamp_with_grad_uses_the_given_bounds():
    x = torch.tensor([-3.0, 0.0, 3.0], requires_grad=True)
    y = clamp_with_grad(x, -1.0, 2.0)
    assert y.tolist() == [-1.0, 0.0, 2.0]
    y.backward(torch.tensor([-1.0, 1.0, 1.0]))  # descent: up, down, down
    assert x.grad.tolist() == [-1.0, 1.0, 1.0]  # every step goes back towards [-1, 2]


# --- distances and prompt losses ------------------------------------------------------------


def test_spherical_distance_is_half_the_squared_angle():
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    y = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    angle = torch.arccos((x * y).sum(-1))
    assert torch.allclose(spherical_distance(x, y), angle**2 / 2, atol=1e-5)


def test_spherical_distance_at_zero_right_and_straight_angles():
    x = unit(3, 8)
    assert torch.allclose(spherical_distance(x, x), torch.zeros(3))
    e1, e2 = torch.eye(8)[:2]
    assert math.isclose(float(spherical_distance(e1, e2)), math.pi**2 / 8, rel_tol=1e-6)
    # opposite points: arcsin is steep next to 1, so float32 keeps only about 3 digits
    assert torch.allclose(spherical_distance(x, -x), torch.full((3,), math.pi**2 / 2), rtol=1e-3)


def test_spherical_distance_is_symmetric_and_broadcasts_pairs():
    x, y = unit(4, 8, seed=1), unit(3, 8, seed=2)
    pairs = spherical_distance(x.unsqueeze(1), y.unsqueeze(0))
    assert pairs.shape == (4, 3)
    assert torch.allclose(pairs, spherical_distance(y.unsqueeze(0), x.unsqueeze(1)))
    assert torch.isclose(pairs[2, 1], spherical_distance(x[2], y[1]))


def test_prompt_loss_sign_weight_and_stop():
    torch.manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1).requires_grad_(True)
    target = torch.nn.functional.normalize(torch.randn(1, 8), dim=-1)
    base = spherical_distance(image.unsqueeze(1), target.unsqueeze(0)).mean()
    assert torch.isclose(prompt_loss(image, Target(target, 2.0)), 2 * base)
    assert torch.isclose(prompt_loss(image, Target(target, -0.5)), -0.5 * base)
    floored = prompt_loss(image, Target(target, 1.0, stop=10.0))  # every distance below stop
    assert torch.isclose(floored, base)  # the value is kept ...
    floored.backward()
    assert torch.count_nonzero(image.grad) == 0  # ... but it no longer pulls


def test_prompt_loss_averages_over_every_cutout_and_target_embedding():
    image, targets = unit(5, 8, seed=3), unit(2, 8, seed=4)
    pairs = [float(spherical_distance(i, t)) for i in image for t in targets]
    expected = sum(pairs) / len(pairs)
    assert math.isclose(float(prompt_loss(image, Target(targets, 1.0))), expected, rel_tol=1e-5)


def _near_and_far(target: torch.Tensor) -> torch.Tensor:
    """Two unit embeddings: one close to `target`, one nearly opposite."""
    noise = unit(1, 8, seed=9)
    near = F.normalize(target + 0.1 * noise, dim=-1)
    far = F.normalize(-target + 0.1 * noise, dim=-1)
    return torch.cat([near, far]).requires_grad_(True)


def test_stop_floor_stops_only_the_cutouts_already_close_enough():
    target = unit(1, 8, seed=5)
    image = _near_and_far(target)
    dists = spherical_distance(image.detach(), target)
    stop = float(dists.mean())
    assert dists[0] < stop < dists[1]  # the premise: one below the floor, one above
    prompt_loss(image, Target(target, 1.0, stop=stop)).backward()
    assert torch.count_nonzero(image.grad[0]) == 0  # close enough: no pull
    assert torch.count_nonzero(image.grad[1]) > 0  # still far: pulled in


def test_negative_prompt_stops_pushing_once_far_enough():
    target = unit(1, 8, seed=6)
    image = _near_and_far(target)
    dists = spherical_distance(image.detach(), target)
    stop = -float(dists.mean())  # a negative weight negates distances: the floor is below 0
    prompt_loss(image, Target(target, -1.0, stop=stop)).backward()
    assert torch.count_nonzero(image.grad[0]) > 0  # too close: pushed away
    assert torch.count_nonzero(image.grad[1]) == 0  # far enough: left alone


@pytest.mark.parametrize(("weight", "closer"), [(1.0, True), (-1.0, False)])
def test_a_descent_step_moves_towards_positive_and_away_from_negative_prompts(weight, closer):
    target = unit(1, 8, seed=7)
    image = unit(3, 8, seed=8).requires_grad_(True)
    before = spherical_distance(image.detach(), target).mean()
    prompt_loss(image, Target(target, weight)).backward()
    stepped = F.normalize(image.detach() - 0.05 * image.grad, dim=-1)
    after = spherical_distance(stepped, target).mean()
    assert (after < before) == closer


# --- noise prompts --------------------------------------------------------------------------


def test_noise_targets_are_seeded_unit_vectors():
    a, b, c = noise_target(1, 16), noise_target(1, 16), noise_target(2, 16)
    assert torch.equal(a.embeds, b.embeds) and not torch.equal(a.embeds, c.embeds)
    assert math.isclose(float(a.embeds.norm()), 1.0, rel_tol=1e-5)


def test_noise_target_has_one_embedding_and_keeps_weight_and_stop():
    target = noise_target(3, 32, weight=-0.5, stop=-0.2)
    assert target.embeds.shape == (1, 32)
    assert (target.weight, target.stop) == (-0.5, -0.2)
    assert noise_target(3, 32).weight == 1.0 and noise_target(3, 32).stop == float("-inf")


def test_noise_target_leaves_the_global_random_stream_alone():
    torch.manual_seed(11)
    expected = torch.rand(4)
    torch.manual_seed(11)
    noise_target(5, 16)
    assert torch.equal(torch.rand(4), expected)
