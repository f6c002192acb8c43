"""ControlNet: the controlled UNet against diffusers' own ControlNet computation and pipeline,
the extension's schedule and control modes, preprocessors, resize modes, loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.diffusion.tools.control import (
    BALANCED,
    CONTROL,
    CROP_AND_RESIZE,
    JUST_RESIZE,
    PROMPT,
    RESIZE_AND_FILL,
)
from helpers.diffusion.tools.control.unet import (
    ControlledUNet,
    ControlUnit,
    conditional_rows,
    soft_weights,
)

SIZE, STEPS, CFG, SEED = 64, 4, 6.0, 1234


@pytest.fixture(scope="module")
def nets(session_cache):
    """The tiny ControlNets' folders (SD, SDXL), built once per session."""
    from helpers.download import fetch

    return {name: fetch(f"test-tiny-{name}", cache=session_cache, progress=False)
            for name in ("controlnet", "controlnet-sdxl")}


@pytest.fixture(scope="module")
def net(nets):
    from diffusers import ControlNetModel

    return ControlNetModel.from_pretrained(nets["controlnet"])


@pytest.fixture(scope="module")
def sides(pipe):
    from helpers.diffusion.conditioning import encode_plan, plan_prompts

    return encode_plan(pipe, plan_prompts("a red cube on a table", "blurry"))


def control_image(seed: int = 0, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def unet_inputs(rows: int = 2, seed: int = 0, width: int = 32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, 4, SIZE // 8, SIZE // 8, generator=g),
            torch.tensor([500.0, 321.5] * (rows // 2)),
            torch.randn(rows, 7, width, generator=g))


def plain(unet, x, t, states, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return unet(x, t, encoder_hidden_states=states, return_dict=False, **kwargs)[0]


def controlled(unet, units, x, t, states, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return ControlledUNet(unet, units, **kwargs)(x, t, encoder_hidden_states=states,
                                                     return_dict=False)[0]


# --- the UNet call against diffusers' ---------------------------------------------------------


def test_controlled_unet_equals_the_controlnet_then_the_unet(pipe, net):
    x, t, states = unet_inputs()
    image = control_image()
    with torch.no_grad():
        down, mid = net(x, t, encoder_hidden_states=states, controlnet_cond=image.expand(2, -1,
                        -1, -1), conditioning_scale=0.7, return_dict=False)
    theirs = plain(pipe.unet, x, t, states, down_block_additional_residuals=down,
                   mid_block_additional_residual=mid)
    ours = controlled(pipe.unet, [ControlUnit(net, image, weight=0.7)], x, t, states)
    assert torch.equal(ours, theirs)
    assert (ours - plain(pipe.unet, x, t, states)).abs().max() > 1e-3  # the control counts


def test_controlled_unet_has_what_the_denoiser_reads(pipe, net):
    wrapped = ControlledUNet(pipe.unet, [ControlUnit(net, control_image())])
    assert wrapped.dtype == pipe.unet.dtype and wrapped.device == pipe.unet.device
    assert wrapped.config is pipe.unet.config


def test_several_units_sum_as_diffusers_multi_controlnet(pipe, net):
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    x, t, states = unet_inputs()
    first, second = control_image(1), control_image(2)
    with torch.no_grad():
        down, mid = MultiControlNetModel([net, net])(
            x, t, encoder_hidden_states=states, controlnet_cond=[first.expand(2, -1, -1, -1),
                                                                 second.expand(2, -1, -1, -1)],
            conditioning_scale=[0.5, 1.2], return_dict=False)
    theirs = plain(pipe.unet, x, t, states, down_block_additional_residuals=down,
                   mid_block_additional_residual=mid)
    units = [ControlUnit(net, first, weight=0.5), ControlUnit(net, second, weight=1.2)]
    ours = controlled(pipe.unet, units, x, t, states)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("unit", [{"weight": 0.0}, {"start": 0.5}, {"end": 0.2}])
def test_a_unit_off_leaves_the_unet_exactly_as_it_is(pipe, net, unit):
    x, t, states = unet_inputs()
    wrapped = ControlledUNet(pipe.unet, [ControlUnit(net, control_image(), **unit)], total=10)
    wrapped.set_step(3)  # progress 0.3
    with torch.no_grad():
        ours = wrapped(x, t, encoder_hidden_states=states, return_dict=False)[0]
    assert torch.equal(ours, plain(pipe.unet, x, t, states))


def test_one_control_image_per_image_goes_to_that_images_rows(pipe, net):
    x, t, states = unet_inputs(rows=4)  # two images, two rows each
    images = torch.cat([control_image(1), control_image(2)])
    per_row = torch.cat([images[:1], images[:1], images[1:], images[1:]])
    with torch.no_grad():
        down, mid = net(x, t, encoder_hidden_states=states, controlnet_cond=per_row,
                        return_dict=False)
    theirs = plain(pipe.unet, x, t, states, down_block_additional_residuals=down,
                   mid_block_additional_residual=mid)
    assert torch.equal(controlled(pipe.unet, [ControlUnit(net, images)], x, t, states), theirs)


def test_the_sdxl_controlnet_gets_the_added_conditioning(tiny_models, nets):
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_models["test-tiny-sdxl"], subfolder="unet")
    xl = ControlNetModel.from_pretrained(nets["controlnet-sdxl"])
    x, t, states = unet_inputs(width=64)
    added = {"text_embeds": torch.randn(2, 32, generator=torch.Generator().manual_seed(3)),
             "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)}
    image = control_image()
    with torch.no_grad():
        down, mid = xl(x, t, encoder_hidden_states=states, controlnet_cond=image.expand(2, -1, -1,
                       -1), added_cond_kwargs=added, return_dict=False)
        theirs = unet(x, t, encoder_hidden_states=states, added_cond_kwargs=added,
                      down_block_additional_residuals=down, mid_block_additional_residual=mid,
                      return_dict=False)[0]
        ours = ControlledUNet(unet, [ControlUnit(xl, image)])(
            x, t, encoder_hidden_states=states, added_cond_kwargs=added, return_dict=False)[0]
    assert torch.equal(ours, theirs)


# --- control modes ----------------------------------------------------------------------------


def test_soft_weights_are_the_extensions_formula():
    assert soft_weights(13) == [0.825 ** (12 - i) for i in range(13)]
    assert soft_weights(13)[-1] == 1.0 and abs(soft_weights(13)[0] - 0.0995) < 1e-4
    assert soft_weights(10) == soft_weights(13)[:10]  # SDXL's 10 residuals: the first 10


def test_my_prompt_is_more_important_scales_each_residual(pipe, net):
    x, t, states = unet_inputs()
    image = control_image()
    with torch.no_grad():
        down, mid = net(x, t, encoder_hidden_states=states,
                        controlnet_cond=image.expand(2, -1, -1, -1), return_dict=False)
    scaled = [r * (0.9 * 0.825 ** (12 - i)) for i, r in enumerate([*down, mid])]
    theirs = plain(pipe.unet, x, t, states, down_block_additional_residuals=scaled[:-1],
                   mid_block_additional_residual=scaled[-1])
    ours = controlled(pipe.unet, [ControlUnit(net, image, weight=0.9, mode=PROMPT)], x, t,
                      states)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_controlnet_is_more_important_steers_only_the_conditional_rows(pipe, net, sides):
    from helpers.diffusion.guidance import Conditioning, Guidance

    guidance = Guidance(Conditioning.fixed(*sides), CFG)
    rows = guidance.rows(2)
    assert conditional_rows(guidance)(4).tolist() == [True, False, True, False]
    x, t, _ = unet_inputs(rows=4)
    states = rows.embeds
    image = control_image()
    ours = controlled(pipe.unet, [ControlUnit(net, image, mode=CONTROL)], x, t, states,
                      conditional=conditional_rows(guidance))
    soft = controlled(pipe.unet, [ControlUnit(net, image, mode=PROMPT)], x, t, states)
    free = plain(pipe.unet, x, t, states)
    assert torch.equal(ours[1::2], free[1::2])  # unconditional rows: as without control
    assert torch.equal(ours[0::2], soft[0::2])  # conditional rows: the soft injection
    assert (ours[0::2] - free[0::2]).abs().max() > 1e-3


def test_conditional_rows_follow_the_guidance_pieces(pipe):
    from helpers.diffusion.conditioning import encode_plan, plan_prompts
    from helpers.diffusion.guidance import Conditioning, Guidance

    composed = encode_plan(pipe, plan_prompts("a red cube AND a blue ball", "blurry"))
    assert conditional_rows(Guidance(Conditioning.fixed(*composed), CFG))(6).tolist() == [
        True, True, False, True, True, False]
    one = encode_plan(pipe, plan_prompts("a red cube", "blurry"))
    assert conditional_rows(Guidance(Conditioning.fixed(*one), 1.0))(2).tolist() == [True, True]


def test_padded_sides_run_the_controlnet_on_each_length_unpadded(pipe, net):
    x, t, states = unet_inputs()
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 4:] = False  # the second row's side is 4 tokens long, padded to 7
    image = control_image()
    with torch.no_grad():
        wrapped = ControlledUNet(pipe.unet, [ControlUnit(net, image)])
        ours = wrapped(x, t, encoder_hidden_states=states, encoder_attention_mask=mask,
                       return_dict=False)[0]
        alone = [net(x[i:i + 1], t[i:i + 1], encoder_hidden_states=states[i:i + 1, :n],
                     controlnet_cond=image, return_dict=False) for i, n in ((0, 7), (1, 4))]
    down = [torch.cat(pair) for pair in zip(alone[0][0], alone[1][0], strict=True)]
    mid = torch.cat([alone[0][1], alone[1][1]])
    theirs = plain(pipe.unet, x, t, states, encoder_attention_mask=mask,
                   down_block_additional_residuals=down, mid_block_additional_residual=mid)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


# --- the schedule -----------------------------------------------------------------------------


class Spy:
    """A UNet that records whether each call had ControlNet residuals."""

    def __init__(self, unet):
        self.unet, self.calls = unet, []
        self.dtype, self.device, self.config = unet.dtype, unet.device, unet.config

    def __call__(self, *args, **kwargs):
        self.calls.append("down_block_additional_residuals" in kwargs)
        return self.unet(*args, **kwargs)


@pytest.mark.parametrize(("start", "end", "expected"), [
    (0.0, 1.0, [True] * 4),
    (0.3, 0.6, [False, False, False, True]),  # progress 0, 0, 1/4, 2/4 at the evaluations
    (0.0, 0.2, [True, True, False, False]),
    (0.5, 1.0, [False, False, False, True]),
])
def test_guidance_start_and_end_follow_the_web_uis_last_reported_step(pipe, net, sides, start,
                                                                      end, expected):
    """The web UI's progress during step i's evaluation is the step its sampler last reported
    (i - 1, or 0 before the first report) over the steps."""
    latents_of(pipe, sides, [ControlUnit(net, control_image(), start=start, end=end)],
               spy := Spy(pipe.unet))
    assert spy.calls == expected


# --- a whole run against diffusers' ControlNet pipeline ----------------------------------------


def latents_of(pipe, sides, units, unet=None, sampler: str = "Euler") -> torch.Tensor:
    """Our sampler's latents with the units (txt2img, batch of one)."""
    from helpers.diffusion.families import FAMILIES
    from helpers.diffusion.guidance import Conditioning, Guidance
    from helpers.diffusion.sampling.denoiser import Denoiser
    from helpers.diffusion.sampling.run import Job, sample

    guidance = Guidance(Conditioning.fixed(*sides), CFG)
    wrapped = ControlledUNet(unet or pipe.unet, units, conditional_rows(guidance), total=STEPS)
    denoiser = Denoiser(wrapped, dict(pipe.scheduler.config), FAMILIES["sd"])
    job = Job(sampler, "Automatic", STEPS, [SEED])
    return sample(denoiser, guidance, job, (4, SIZE // 8, SIZE // 8), "cpu", wrapped.stepping())


def diffusers_image(pipe, sides, controlnet, image, scale) -> np.ndarray:
    """StableDiffusionControlNetPipeline with Euler on the timesteps our Uniform schedule
    takes: 4 steps over 999 are whole timesteps (999, 666, 333, 0), so no interpolation."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionControlNetPipeline

    scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config,
                                                   timestep_spacing="linspace")
    theirs = StableDiffusionControlNetPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
        controlnet=controlnet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    theirs.set_progress_bar_config(disable=True)
    cond, uncond = sides
    out = theirs(prompt_embeds=cond.embeds, negative_prompt_embeds=uncond.embeds, image=image,
                 height=SIZE, width=SIZE, num_inference_steps=STEPS, guidance_scale=CFG,
                 controlnet_conditioning_scale=scale,
                 generator=torch.Generator().manual_seed(SEED)).images[0]
    return np.asarray(out).astype(int)


def our_image(pipe, latents) -> np.ndarray:
    from helpers.diffusion.sampling.vae import decode

    return np.asarray(decode(pipe, latents)[0]).astype(int)


def test_a_euler_run_equals_diffusers_controlnet_pipeline(pipe, net, sides):
    image = control_image(5)
    ours = our_image(pipe, latents_of(pipe, sides, [ControlUnit(net, image, weight=0.8)]))
    theirs = diffusers_image(pipe, sides, net, image, 0.8)
    assert np.abs(ours - theirs).max() <= 1
    free = our_image(pipe, latents_of(pipe, sides, []))
    assert np.abs(ours - free).max() > 5  # the control shows in the image


def test_a_multi_controlnet_run_equals_diffusers_pipeline(pipe, net, sides):
    first, second = control_image(6), control_image(7)
    units = [ControlUnit(net, first, weight=0.6), ControlUnit(net, second, weight=0.9)]
    ours = our_image(pipe, latents_of(pipe, sides, units))
    theirs = diffusers_image(pipe, sides, [net, net], [first, second], [0.6, 0.9])
    assert np.abs(ours - theirs).max() <= 1


def test_an_sdxl_euler_run_equals_diffusers_sdxl_controlnet_pipeline(tiny_models, nets):
    from diffusers import (
        ControlNetModel,
        EulerDiscreteScheduler,
        StableDiffusionXLControlNetPipeline,
        StableDiffusionXLPipeline,
    )

    from helpers.diffusion.conditioning import encode_plan, plan_prompts
    from helpers.diffusion.families import FAMILIES
    from helpers.diffusion.guidance import Conditioning, Guidance
    from helpers.diffusion.sampling.denoiser import Denoiser
    from helpers.diffusion.sampling.run import Job, sample, sdxl_time_ids

    xl = StableDiffusionXLPipeline.from_pretrained(tiny_models["test-tiny-sdxl"])
    xl.set_progress_bar_config(disable=True)
    net = ControlNetModel.from_pretrained(nets["controlnet-sdxl"])
    cond, uncond = encode_plan(xl, plan_prompts("a red cube", "blurry"))
    image = control_image(8)
    guidance = Guidance(Conditioning.fixed(cond, uncond), CFG, sdxl_time_ids(SIZE, SIZE))
    wrapped = ControlledUNet(xl.unet, [ControlUnit(net, image, weight=0.7)],
                             conditional_rows(guidance), total=STEPS)
    denoiser = Denoiser(wrapped, dict(xl.scheduler.config), FAMILIES["sdxl"])
    latents = sample(denoiser, guidance, Job("Euler", "Automatic", STEPS, [SEED]),
                     (4, SIZE // 8, SIZE // 8), "cpu", wrapped.stepping())
    scheduler = EulerDiscreteScheduler.from_config(xl.scheduler.config,
                                                   timestep_spacing="linspace")
    theirs = StableDiffusionXLControlNetPipeline(**xl.components, controlnet=net)
    theirs.scheduler = scheduler
    theirs.set_progress_bar_config(disable=True)
    out = theirs(prompt_embeds=cond.embeds, pooled_prompt_embeds=cond.pooled,
                 negative_prompt_embeds=uncond.embeds, negative_pooled_prompt_embeds=uncond.pooled,
                 image=image, height=SIZE, width=SIZE, num_inference_steps=STEPS,
                 guidance_scale=CFG, controlnet_conditioning_scale=0.7,
                 generator=torch.Generator().manual_seed(SEED)).images[0]
    assert np.abs(our_image(xl, latents) - np.asarray(out).astype(int)).max() <= 1


def test_a_union_controlnet_gets_its_control_type(tiny_models, tmp_path):
    import json

    from diffusers import ControlNetUnionModel, UNet2DConditionModel

    from helpers.diffusion.tools.control.loading import load_controlnet

    unet = UNet2DConditionModel.from_pretrained(tiny_models["test-tiny-sdxl"], subfolder="unet")
    torch.manual_seed(0)
    shaped = ControlNetUnionModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16,
                                                                                     16))
    union = ControlNetUnionModel.from_config(shaped.config, num_trans_channel=32,
                                             num_trans_head=4, num_proj_channel=32)
    with torch.no_grad():
        for conv in (union.controlnet_cond_embedding.conv_out, *union.controlnet_down_blocks,
                     union.controlnet_mid_block):
            torch.nn.init.normal_(conv.weight, std=0.05)
    x, t, states = unet_inputs(width=64)
    added = {"text_embeds": torch.zeros(2, 32), "time_ids": torch.tensor([[64.0] * 6] * 2)}
    image = control_image()
    kind = torch.zeros(2, union.config.num_control_type)
    kind[:, 3] = 1
    with torch.no_grad():
        down, mid = union(x, t, encoder_hidden_states=states, controlnet_cond=[image.expand(2, -1,
                          -1, -1)], control_type=kind, control_type_idx=[3],
                          conditioning_scale=0.8, added_cond_kwargs=added, return_dict=False)
        theirs = unet(x, t, encoder_hidden_states=states, added_cond_kwargs=added,
                      down_block_additional_residuals=down, mid_block_additional_residual=mid,
                      return_dict=False)[0]
        wrapped = ControlledUNet(unet, [ControlUnit(union, image, weight=0.8, union_type=3)])
        ours = wrapped(x, t, encoder_hidden_states=states, added_cond_kwargs=added,
                       return_dict=False)[0]
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match="control type"):
            ControlledUNet(unet, [ControlUnit(union, image)])(
                x, t, encoder_hidden_states=states, added_cond_kwargs=added)
    union.save_pretrained(tmp_path / "union")  # a config that does not say it is a union:
    config = json.loads((tmp_path / "union" / "config.json").read_text())
    config.pop("num_control_type")
    config["_class_name"] = "ControlNetModel"
    (tmp_path / "union" / "config.json").write_text(json.dumps(config))
    loaded = load_controlnet(str(tmp_path / "union"), unet.config, log=lambda _m: None)
    assert isinstance(loaded, ControlNetUnionModel)  # its weights do


def test_a_unit_refuses_an_unknown_mode_or_a_start_after_its_end(net):
    with pytest.raises(ValueError, match="control mode: 'Prompt'"):
        ControlUnit(net, control_image(), mode="Prompt")
    with pytest.raises(ValueError, match=r"start 0\.8 and end 0\.5"):
        ControlUnit(net, control_image(), start=0.8, end=0.5)
    assert ControlUnit(net, control_image()).mode == BALANCED


# --- preprocessors ----------------------------------------------------------------------------


def square(size: int = 64, low: int = 16, high: int = 48) -> torch.Tensor:
    """A white square on black, as a map (3, size, size) of 0..255."""
    image = torch.zeros(3, size, size)
    image[:, low:high, low:high] = 255
    return image


def test_canny_edges_land_on_the_squares_border():
    from helpers.diffusion.tools.control.annotators import preprocess

    edges = preprocess("canny", square(), resolution=64)
    assert edges.shape == (3, 64, 64) and set(edges.unique().tolist()) == {0.0, 255.0}
    ys, xs = (edges[0] > 0).nonzero(as_tuple=True)
    on_border = ((ys - 15.5).abs() <= 1) | ((ys - 47.5).abs() <= 1) | \
        ((xs - 15.5).abs() <= 1) | ((xs - 47.5).abs() <= 1)
    inside = (ys >= 14) & (ys <= 49) & (xs >= 14) & (xs <= 49)
    assert bool((on_border & inside).all())
    for side in (edges[0, 15:17, 20:44], edges[0, 47:49, 20:44], edges[0, 20:44, 15:17].T,
                 edges[0, 20:44, 47:49].T):
        assert bool((side.amax(0) > 0).all())  # every side is traced without gaps


def test_canny_thresholds_are_on_opencvs_0_to_255_scale():
    """A vertical step of d levels has a Sobel gradient of 4 d: an edge when 4 d > 200 (the
    high threshold), none below."""
    from helpers.diffusion.tools.control.annotators import canny

    def step(d: int) -> torch.Tensor:
        image = torch.full((3, 32, 32), 100.0)
        image[:, :, 16:] += d
        return image

    assert canny(step(45)).max() == 0  # 180 < 200: not even a strong seed
    assert canny(step(55))[:, :, 15:17].amax(2).min() == 255  # 220 > 200: a whole line
    assert canny(step(55), low=100, high=230).max() == 0


@pytest.mark.parametrize("noise", [0, 12, 30])
def test_canny_hysteresis_keeps_the_edges_kornias_loop_keeps(noise):
    import kornia

    from helpers.diffusion.tools.control.annotators import canny
    from helpers.diffusion.tools.control.images import bicubic

    g = torch.Generator().manual_seed(noise)
    image = (bicubic(torch.rand(3, 12, 16, generator=g) * 255, 96, 72)
             + torch.randn(3, 72, 96, generator=g) * noise).clamp(0, 255).round()
    _, theirs = kornia.filters.canny(image[:, None] / 255, 100 / 255, 200 / 255, kernel_size=1)
    _, unlinked = kornia.filters.canny(image[:, None] / 255, 100 / 255, 200 / 255,
                                       kernel_size=1, hysteresis=False)
    ours = canny(image)
    assert torch.equal(ours[0], theirs.amax(0)[0] * 255) and ours.max() == 255
    weak_or_strong, strong = unlinked.amax(0)[0] > 0, unlinked.amax(0)[0] == 1
    kept = ours[0] > 0
    assert kept.sum() > strong.sum()  # weak pixels linked to strong ones joined
    assert kept.sum() < weak_or_strong.sum()  # unlinked weak ones left out


def test_canny_runs_at_the_preprocessor_resolution_and_the_fit_sizes_it():
    from helpers.diffusion.tools.control.annotators import control_map, preprocess

    assert preprocess("canny", square(), resolution=128).shape == (3, 128, 128)
    wide = torch.zeros(3, 40, 80)
    assert preprocess("canny", wide, resolution=100).shape == (3, 100, 200)
    fitted = control_map("canny", square(), 96, 64, pixel_perfect=True)
    assert fitted.shape == (3, 64, 96)


def test_simple_preprocessors_do_what_the_extensions_do():
    from helpers.diffusion.tools.control.annotators import preprocess

    image = torch.randint(0, 256, (3, 32, 48)).float()
    assert torch.equal(preprocess("none", image), image)
    assert torch.equal(preprocess("invert", image), 255 - image)
    bright = preprocess("threshold", image, resolution=32, a=100)
    assert torch.equal(bright[0], (image.min(0).values > 100).float() * 255)
    assert torch.equal(preprocess("tile_resample", image, a=1.0), image)
    assert preprocess("tile_resample", image, a=2.0).shape == (3, 16, 24)
    with pytest.raises(ValueError, match="'openpose' is not one of"):
        preprocess("openpose", image)


@pytest.mark.parametrize("name", ["scribble_xdog", "lineart_standard"])
def test_line_preprocessors_make_a_dark_line_white(name):
    from helpers.diffusion.tools.control.annotators import preprocess

    image = torch.full((3, 64, 64), 255.0)
    image[:, :, 30:33] = 0  # a black vertical line on white
    lines = preprocess(name, image, resolution=64)
    assert lines[:, :, 30:33].mean() > 100
    assert lines[:, :, :20].max() == 0 and lines[:, :, 44:].max() == 0


def test_inpaint_hint_marks_the_masked_pixels_minus_one():
    from helpers.diffusion.tools.control.annotators import inpaint_hint

    image = torch.full((3, 8, 8), 51.0)
    mask = torch.zeros(3, 8, 8)
    mask[:, :4] = 255
    hint = inpaint_hint(image, mask)
    assert hint.shape == (1, 3, 8, 8)
    assert bool((hint[:, :, :4] == -1).all()) and torch.allclose(hint[:, :, 4:], torch.tensor(0.2))


def tiny_depth_estimator(folder):
    """A random-weight DPT depth model and its processor, saved and loaded back."""
    from transformers import DPTConfig, DPTForDepthEstimation

    try:
        from transformers import DPTImageProcessorPil as Processor
    except ImportError:  # transformers 4.x
        from transformers import DPTImageProcessor as Processor
    config = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                       intermediate_size=37, image_size=32, patch_size=8,
                       backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[16, 16, 16, 16],
                       fusion_hidden_size=16, reassemble_factors=[4, 2, 1, 0.5])
    torch.manual_seed(0)
    DPTForDepthEstimation(config).save_pretrained(folder)
    Processor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(folder)


def test_depth_maps_come_from_a_transformers_depth_model(tmp_path):
    from helpers.diffusion.tools.control.annotators import depth, load_depth_estimator, preprocess

    tiny_depth_estimator(tmp_path / "dpt")
    estimator = load_depth_estimator(str(tmp_path / "dpt"))
    image = torch.randint(0, 256, (3, 40, 60), generator=torch.Generator().manual_seed(0))
    whole = depth(image.float(), estimator)
    assert whole.shape == (3, 40, 60) and whole.min() == 0 and whole.max() == 255  # min-max
    assert torch.equal(whole[0], whole[1]) and torch.equal(whole[0], whole[2])  # grey
    assert preprocess("depth", image.float(), resolution=64, model=estimator).shape == (3, 64,
                                                                                       96)
    with pytest.raises(ValueError, match="depth estimator"):
        preprocess("depth", image)


# --- resize modes and pixel-perfect resolution ------------------------------------------------


def gradient(height: int, width: int) -> torch.Tensor:
    """A map with many colours (so the fit resamples bicubic or by area)."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([ys * 255.0 / height, xs * 255.0 / width, (ys + xs) % 256.0]).floor()


def test_just_resize_stretches_to_the_size():
    from helpers.diffusion.tools.control.images import fit

    assert fit(gradient(40, 80), 64, 64, JUST_RESIZE).shape == (3, 64, 64)


def test_crop_and_resize_scales_to_cover_and_cuts_the_centre():
    from helpers.diffusion.tools.control.images import fit, resize

    source = gradient(40, 80)  # k = max(64/40, 64/80) = 1.6: 128 x 64, then columns 32..95
    assert torch.equal(fit(source, 64, 64, CROP_AND_RESIZE), resize(source, 128, 64)[:, :,
                                                                                     32:96])
    tall = gradient(90, 30)  # k = max(64/90, 48/30) = 1.6: 48 x 144, then rows 40..103
    assert torch.equal(fit(tall, 48, 64, CROP_AND_RESIZE), resize(tall, 48, 144)[:, 40:104])


def test_resize_and_fill_scales_to_fit_on_the_border_colour():
    from helpers.diffusion.tools.control.images import fit, resize

    source = torch.full((3, 40, 80), 100.0)
    source[:, 5:35, 5:75] = gradient(30, 70)
    fitted = fit(source, 64, 64, RESIZE_AND_FILL)  # k = 0.8: 64 x 32 at rows 16..47
    assert fitted.shape == (3, 64, 64)
    assert bool((fitted[:, :16] == 100).all()) and bool((fitted[:, 48:] == 100).all())
    assert torch.equal(fitted[:, 16:48], resize(source, 64, 32))


@pytest.mark.parametrize(("size", "target", "mode"), [
    ((512, 768), (512, 512), CROP_AND_RESIZE), ((400, 600), (512, 768), CROP_AND_RESIZE),
    ((1000, 500), (512, 512), RESIZE_AND_FILL), ((1000, 500), (512, 512), CROP_AND_RESIZE),
    ((333, 500), (512, 512), JUST_RESIZE), ((480, 640), (1024, 768), RESIZE_AND_FILL),
])
def test_pixel_perfect_resolution_is_the_extensions_formula(size, target, mode):
    """The extension: k = min (Resize and Fill) or max (else) of the two side ratios, times
    the short side, rounded (numpy's round half to even)."""
    from helpers.diffusion.tools.control.images import pixel_perfect_resolution

    (h, w), (th, tw) = size, target
    pick = min if mode == RESIZE_AND_FILL else max
    expected = int(np.round(pick(th / h, tw / w) * min(h, w)))
    assert pixel_perfect_resolution(h, w, th, tw, mode) == expected


def test_the_resampling_follows_the_maps_colours():
    from helpers.diffusion.tools.control.images import area, resize

    edges = torch.zeros(3, 16, 16)
    edges[:, 8] = 255  # a binary map stays binary when enlarged (Otsu)
    assert set(resize(edges, 40, 40).unique().tolist()) == {0.0, 255.0}
    segments = torch.zeros(3, 16, 16)
    segments[:, :, 4:] = 60
    segments[:, :, 10:] = 120  # 3 colours: nearest, no new colours
    assert set(resize(segments, 40, 40).unique().tolist()) == {0.0, 60.0, 120.0}
    blocks = torch.arange(16.0).reshape(1, 4, 4).expand(3, 4, 4) * 10
    assert torch.equal(area(blocks, 2, 2)[0], torch.tensor([[25.0, 45], [105, 125]]))


# --- loading ------------------------------------------------------------------------------------


def tiny_unet_config(tiny_models, name="test-tiny-sd"):
    from helpers.files import read_json

    return read_json(tiny_models[name] / "unet" / "config.json", "unet config", dict)


def test_a_controlnet_loads_from_its_folder_and_its_catalogue_name(tiny_models, nets, net):
    from helpers.diffusion.tools.control.loading import load_controlnet

    config = tiny_unet_config(tiny_models)
    for spec in (str(nets["controlnet"]), "test-tiny-controlnet"):
        loaded = load_controlnet(spec, config, log=lambda _m: None)
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                      net.state_dict().values(), strict=True))


def test_a_single_file_controlnet_loads_with_a_local_config(tiny_models, nets, net, tmp_path):
    from safetensors.torch import save_file

    from helpers.diffusion.tools.control.loading import controlnet_config, load_controlnet

    path = tmp_path / "tiny_canny.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    assert controlnet_config(str(path)) == {"cross_attention_dim": 32,
                                            "addition_embed_type": None}
    loaded = load_controlnet(str(path), tiny_unet_config(tiny_models), config=str(nets[
        "controlnet"]), log=lambda _m: None)
    assert torch.equal(loaded.controlnet_mid_block.weight, net.controlnet_mid_block.weight)


def test_a_controlnet_of_another_family_is_refused_before_its_weights_load(tiny_models, nets,
                                                                          monkeypatch):
    import diffusers

    from helpers.diffusion.tools.control.loading import check_family, load_controlnet

    def never(*_args, **_kwargs):
        raise AssertionError("weights loaded")

    monkeypatch.setattr(diffusers.ControlNetModel, "from_pretrained", never)
    with pytest.raises(ValueError, match=r"^control: test-tiny-controlnet-sdxl is an SDXL "
                                         r"ControlNet; the model is SD \(32-wide"):
        load_controlnet("test-tiny-controlnet-sdxl", tiny_unet_config(tiny_models))
    sdxl = {"cross_attention_dim": 2048, "addition_embed_type": "text_time"}
    with pytest.raises(ValueError, match=r"is an SD 1\.x ControlNet; the model is SDXL"):
        check_family({"cross_attention_dim": 768}, sdxl, "control_v11p_sd15_canny")
    with pytest.raises(ValueError, match=r"is an SD 2.x ControlNet; the model is SD 1.x"):
        check_family({"cross_attention_dim": 1024}, {"cross_attention_dim": 768}, "x")
    check_family({**sdxl, "num_control_type": 6}, sdxl, "union")  # same family: no error


def test_bad_control_specs_name_the_setting(tmp_path):
    from helpers.diffusion.tools.control.loading import controlnet_config

    with pytest.raises(ValueError, match=r"'sd-1\.5' is a diffusion model, not a ControlNet"):
        controlnet_config("sd-1.5")
    with pytest.raises(FileNotFoundError, match=r"control: 'nowhere\.safetensors'"):
        controlnet_config("nowhere.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no config\.json"):
        controlnet_config(str(tmp_path / "empty"))
    text = tmp_path / "notes.txt"
    text.write_text("x")
    with pytest.raises(ValueError, match=r"not a \.safetensors"):
        controlnet_config(str(text))


# --- catalogue and tiny builders ----------------------------------------------------------------


def test_the_catalogue_has_the_common_controlnets_with_their_licences():
    from helpers.catalog import list_models

    found = {m.name: m for m in list_models("controlnet") if not m.test}
    kinds = ("canny", "depth", "lineart", "softedge", "scribble", "tile", "inpaint")
    assert {f"controlnet-sd15-{k}" for k in kinds} <= set(found)
    assert {"controlnet-sdxl-canny", "controlnet-sdxl-depth", "controlnet-sdxl-union"} <= set(found)
    for model in found.values():
        assert model.hub_repo and model.allow_patterns == ("config.json",), model.name
        assert model.weights[0].endswith(".safetensors") and model.licence, model.name
        assert model.family == ("sdxl" if "sdxl" in model.name else "sd"), model.name
    assert found["controlnet-sd15-canny"].licence.startswith("OpenRAIL")
    assert found["controlnet-sdxl-union"].licence == "Apache-2.0"


@pytest.mark.parametrize("name", ["tiny_controlnet", "tiny_controlnet_sdxl"])
def test_the_tiny_controlnets_are_seeded_random_models(tmp_path, name):
    from safetensors.torch import load_file

    from helpers import testing

    builder = getattr(testing, name)
    assert "random" in builder.__doc__ and "noise, not art" in builder.__doc__
    first, again, other = (load_file(builder(tmp_path / k, seed=s) /
                                     "diffusion_pytorch_model.safetensors")
                           for k, s in (("a", 3), ("b", 3), ("c", 4)))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["controlnet_mid_block.weight"],
                           other["controlnet_mid_block.weight"])
    assert first["controlnet_mid_block.weight"].abs().max() > 0  # not the zero convolutions


def test_a_control_image_of_another_size_than_the_pass_is_a_clear_error(pipe, net):
    x, t, states = unet_inputs()
    with pytest.raises(ValueError, match="control image is 32x32; this pass needs 64x64"):
        controlled(pipe.unet, [ControlUnit(net, torch.rand(1, 3, 32, 32))], x, t, states)


def test_the_hires_pass_forces_soft_injection_for_canny_as_the_extension():
    from helpers.diffusion.tools.control.unet import hires_unit

    unit = ControlUnit(None, control_image(), weight=0.5)
    bigger = torch.rand(1, 3, 128, 128)
    assert hires_unit(unit, bigger, "canny").mode == PROMPT
    assert hires_unit(unit, bigger, "canny").image is bigger
    assert hires_unit(unit, bigger, "depth").mode == BALANCED
    assert hires_unit(ControlUnit(None, bigger, mode=CONTROL), bigger, "canny").mode == CONTROL


def test_a_control_map_round_trips_to_the_controlnet_input_and_a_picture():
    from PIL import Image

    from helpers.diffusion.tools.control.annotators import control_map
    from helpers.diffusion.tools.control.images import to_control, to_pil

    picture = Image.fromarray(square(48).permute(1, 2, 0).numpy().astype(np.uint8))
    found = control_map("invert", picture, 64, 32, mode=JUST_RESIZE)
    control = to_control(found)
    assert control.shape == (1, 3, 32, 64) and control.min() >= 0 and control.max() <= 1
    assert np.array_equal(np.asarray(to_pil(control)), np.asarray(to_pil(found)))
    assert to_pil(found).size == (64, 32)
