"""motion_border: what fills the borders an animation's motion exposes (stretch or outpaint)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from common import all_frames, quiet

from helpers import runs
from helpers.motion import EXPOSED_SHARE, moved_frame, warp, warp_exposed
from helpers.settings import DiffusionSettings, VQGANClipSettings


def old_warp(image, zoom=1.0, angle=0.0, tx=0.0, ty=0.0):
    """`warp` as it was before motion_border (the stretch every animation made until then)."""
    from kornia.geometry.transform import get_rotation_matrix2d, warp_affine

    height, width = image.shape[-2:]
    options = {"device": image.device, "dtype": torch.float32}
    center = torch.tensor([[(width - 1) / 2, (height - 1) / 2]], **options)
    matrix = get_rotation_matrix2d(center, torch.tensor([float(angle)], **options),
                                   torch.tensor([[float(zoom), float(zoom)]], **options))
    matrix[:, 0, 2] += tx
    matrix[:, 1, 2] += ty
    moved = warp_affine(image.float(), matrix, (height, width), padding_mode="border")
    return moved.clamp(0, 1).to(image.dtype)


MOTIONS = [(0.8, 0, 0, 0), (1.1, 3, 1, -2), (1, 0, 8, 0), (0.93, -7.5, -2.5, 3.25)]


# --- the exposed pixels ----------------------------------------------------------------------


@pytest.mark.parametrize("motion", MOTIONS)
def test_stretch_is_the_warp_of_before_bit_for_bit(motion):
    image = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(3))
    before = old_warp(image, *motion)
    assert torch.equal(warp(image, *motion), before)
    assert torch.equal(warp_exposed(image, *motion)[0], before)
    moved, exposed = moved_frame(image, motion, "stretch")
    assert torch.equal(moved, before) and exposed is None


@pytest.mark.parametrize(("tx", "ty", "band"), [
    (8, 0, np.s_[:, :8]), (-8, 0, np.s_[:, -8:]), (0, 8, np.s_[:8, :]), (0, -8, np.s_[-8:, :])])
def test_a_move_of_8_pixels_exposes_exactly_an_8_pixel_band(tx, ty, band):
    _moved, exposed = warp_exposed(torch.rand(1, 3, 32, 40), tx=tx, ty=ty)
    want = np.zeros((32, 40), dtype=bool)
    want[band] = True
    assert exposed.shape == (1, 1, 32, 40) and exposed.dtype == torch.bool
    assert np.array_equal(exposed[0, 0].numpy(), want)


@pytest.mark.parametrize("zoom", [0.8, 0.65])
def test_a_zoom_out_exposes_the_frame_around_the_shrunk_picture(zoom):
    height, width = 32, 48
    _moved, exposed = warp_exposed(torch.rand(1, 3, height, width), zoom=zoom)

    def outside(n: int) -> np.ndarray:  # where each output pixel samples the source, per axis
        centre = (n - 1) / 2
        source = (np.arange(n) - centre) / zoom + centre
        return (source < -EXPOSED_SHARE) | (source > n - 1 + EXPOSED_SHARE)

    want = outside(height)[:, None] | outside(width)[None, :]
    assert np.array_equal(exposed[0, 0].numpy(), want)
    assert want[:, 0].all() and not want[height // 2, width // 2]  # a band, a kept middle


def test_zooming_in_or_not_moving_exposes_nothing():
    image = torch.rand(1, 3, 16, 16)
    for motion in [(1.0, 0, 0, 0), (1.25, 0, 0, 0), (1.5, 4, 0, 0)]:
        assert not warp_exposed(image, *motion)[1].any()


def test_a_turn_exposes_the_corners():
    _moved, exposed = warp_exposed(torch.rand(1, 3, 33, 33), angle=20)
    corners = exposed[0, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.all() and not exposed[0, 0, 8:25, 8:25].any()


# --- the fill --------------------------------------------------------------------------------


def test_outpaint_keeps_the_moved_pixels_and_fills_the_band_from_around():
    image = torch.zeros(1, 3, 32, 32)
    image[..., 0] = 1  # a white left edge on black: stretching it draws a white band
    image[..., 12:20, 12:20] = torch.tensor([0.2, 0.6, 0.9]).view(1, 3, 1, 1)
    stretched = warp(image, tx=8)
    filled, exposed = moved_frame(image, (1, 0, 8, 0), "outpaint")
    kept = ~exposed.expand_as(filled)
    assert torch.equal(filled[kept], stretched[kept])  # every unexposed pixel as moved
    band = filled[..., :8]
    assert float(stretched[..., :8].min()) == 1  # the stretch: the edge's white, drawn out
    assert float(band.max()) < 0.75 and float(band.mean()) < 0.5  # the fill: mostly the black
    assert float((band - stretched[..., :8]).abs().mean()) > 0.4


def test_nothing_exposed_leaves_the_frame_as_warped():
    image = torch.rand(1, 3, 16, 16)
    filled, exposed = moved_frame(image, (1.2, 0, 0, 0), "outpaint")
    assert not exposed.any() and torch.equal(filled, warp(image, 1.2))


def test_an_unknown_border_is_refused():
    with pytest.raises(ValueError, match="motion_border: 'mirror'"):
        moved_frame(torch.rand(1, 3, 8, 8), (0.9, 0, 0, 0), "mirror")


# --- the diffusion 2d mode's latent noise ----------------------------------------------------


def band_mask(size: int = 64, band: int = 8):
    from PIL import Image

    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (0, 0, band, size))
    return mask


def test_the_start_latents_get_the_seeds_first_draw_where_exposed(pipe):
    from helpers.diffusion.animate import _noised_encode
    from helpers.diffusion.sampling.noise import ImageNoise
    from helpers.diffusion.sampling.vae import encode_latents

    image = band_mask().convert("RGB")  # any picture: its latents must differ from noise
    plain = encode_latents(pipe, image)
    with _noised_encode(pipe.vae, band_mask(), 7, "cpu"):
        noised = encode_latents(pipe, image)
    noise = ImageNoise([7], plain.shape[1:], "cpu").first()
    assert plain.shape[-1] == 8  # 64 px at the tiny VAE's factor 8: an 8 px band is 1 column
    assert torch.allclose(noised[..., :1], noise[..., :1], atol=1e-5)
    assert torch.equal(noised[..., 1:], plain[..., 1:])
    assert "encode" not in pipe.vae.__dict__  # unwrapped after the block
    assert torch.equal(encode_latents(pipe, image), plain)


def test_diffusers_img2img_samples_the_noise_where_exposed(pipe):
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import (
        retrieve_latents,
    )

    from helpers.diffusion.animate import _noised_encode
    from helpers.diffusion.sampling.noise import ImageNoise

    pixels = pipe.image_processor.preprocess(band_mask().convert("RGB"))
    plain = retrieve_latents(pipe.vae.encode(pixels), torch.Generator().manual_seed(1))
    with _noised_encode(pipe.vae, band_mask(), 7, "cpu"):
        noised = retrieve_latents(pipe.vae.encode(pixels), torch.Generator().manual_seed(1))
    noise = ImageNoise([7], plain.shape[1:], "cpu").first() / pipe.vae.config.scaling_factor
    assert torch.allclose(noised[..., :1], noise[..., :1], atol=1e-5)
    assert torch.equal(noised[..., 1:], plain[..., 1:])  # the same draws elsewhere


# --- tiny runs -------------------------------------------------------------------------------


def two_d(tmp_path, **changes) -> DiffusionSettings:
    base = {"model": "test-tiny-sd", "prompt": "a red cube", "width": 64, "height": 64,
            "steps": 2, "seed": 21, "device": "cpu", "animate": "2d", "frames": 3,
            "zoom": "0.8", "strength": 0.6, "color_coherence": "none", "out": str(tmp_path)}
    return DiffusionSettings(**{**base, **changes})


def diffuse(settings):
    from helpers.diffusion import generate

    return generate(settings, log=quiet, progress=False)


def recording_starts(monkeypatch) -> list:
    """The start image of every frame the 2d mode draws, recorded as drawn."""
    import helpers.diffusion.animate as animate

    starts, draw = [], animate._draw

    def recorded(pipes, settings, frame, seed, image, *rest):
        starts.append(image)
        return draw(pipes, settings, frame, seed, image, *rest)

    monkeypatch.setattr(animate, "_draw", recorded)
    return starts


@pytest.mark.parametrize("sampler", ["DPM++ 2M", "DDIM"])  # our sampler path, diffusers'
def test_a_2d_zoom_out_outpaints_its_border(tiny_models, tmp_path, monkeypatch, sampler):
    import helpers.diffusion.animate as animate

    starts = recording_starts(monkeypatch)
    stretch = all_frames(diffuse(two_d(tmp_path / "s", sampler=sampler)))
    run_dir = diffuse(two_d(tmp_path / "o", sampler=sampler, motion_border="outpaint"))
    outpaint = all_frames(run_dir)
    assert runs.read_run_settings(run_dir)["motion_border"] == "outpaint"
    assert len(outpaint) == 3
    assert np.array_equal(outpaint[0], stretch[0])  # frame 1 is txt2img: nothing moved yet
    assert all(np.abs(outpaint[k] - stretch[k]).max() > 0 for k in (1, 2))
    # frame 2's start: frame 1 zoomed out; only what the zoom exposed starts otherwise
    _moved, exposed = warp_exposed(torch.zeros(1, 3, 64, 64), zoom=0.8)
    band = exposed[0, 0].numpy()
    assert band[:, :6].all() and band.mean() < 0.4
    stretched, filled = (np.asarray(starts[k], dtype=int) for k in (1, 4))
    assert np.array_equal(stretched[~band], filled[~band])
    assert np.abs(stretched[band] - filled[band]).mean() > 5
    monkeypatch.setattr(animate, "_latent_noise", lambda *_args: animate.nullcontext())
    pixels_only = all_frames(diffuse(two_d(tmp_path / "p", sampler=sampler,
                                           motion_border="outpaint")))
    assert np.array_equal(np.asarray(starts[7], dtype=int), filled)  # the same start image
    assert np.abs(pixels_only[1] - outpaint[1]).max() > 0  # the latent noise did something


def test_a_2d_outpaint_animation_resumes_to_the_same_frames(tiny_models, tmp_path):
    whole = all_frames(diffuse(two_d(tmp_path / "whole", motion_border="outpaint")))
    run_dir = diffuse(two_d(tmp_path / "part", motion_border="outpaint", frames=2))
    from helpers.diffusion import generate

    generate(None, log=quiet, progress=False, resume=run_dir, changes={"frames": 3})
    for want, have in zip(whole, all_frames(run_dir), strict=True):
        assert np.array_equal(want, have)


def zoom_settings(tmp_path, **changes) -> VQGANClipSettings:
    base = {"prompt": "desert", "vqgan": "test-tiny-vqgan", "clip": "test-tiny-clip",
            "width": 64, "height": 64, "cutn": 2, "seed": 4, "device": "cpu",
            "animate": "zoom", "frames": 3, "iterations_per_frame": 2, "zoom": "0.8",
            "out": str(tmp_path)}
    return VQGANClipSettings(**{**base, **changes})


def test_a_vqgan_clip_zoom_out_outpaints_its_border(tiny_models, tmp_path):
    from helpers.vqgan_clip import generate

    stretch = all_frames(generate(zoom_settings(tmp_path / "s"), log=quiet, progress=False))
    run_dir = generate(zoom_settings(tmp_path / "o", motion_border="outpaint"), log=quiet,
                       progress=False)
    outpaint = all_frames(run_dir)
    assert runs.read_run_settings(run_dir)["motion_border"] == "outpaint"
    assert len(outpaint) == 3
    assert np.array_equal(outpaint[0], stretch[0])  # frame 1: no motion yet
    assert all(np.abs(outpaint[k] - stretch[k]).max() > 0 for k in (1, 2))
