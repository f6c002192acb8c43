"""Inpainting as the web UI's img2img inpaint tab does it, on the tiny SD and tiny SD inpainting.

The mask preparation against hand-computed values (and values OpenCV 5.0 computes, recorded
once); the untouched pixels kept exactly for every masked content, both inpaint areas and an
inverted mask; the web UI's latent blend; the dedicated inpainting model's extra channels; the
equivalence with diffusers' `StableDiffusionInpaintPipeline` where the two agree; the CLI end to
end with its infotext read back; and each bad input.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from helpers import runs
from helpers.cli import main
from helpers.diffusion.families import FAMILIES
from helpers.diffusion.tools import inpaint
from helpers.metadata.infotext import parse_infotext
from helpers.settings import DiffusionSettings

SIZE, STEPS, SEED = 64, 3, 11
MASKED_CONTENT = ("original", "fill", "latent noise", "latent nothing")


def settings(**changes) -> DiffusionSettings:
    values = {"prompt": "a red cube", "init_image": "init.png", "mask": "mask.png",
              "width": SIZE, "height": SIZE, "steps": STEPS, "seed": SEED, "sampler": "Euler",
              "device": "cpu", **changes}
    return DiffusionSettings(**values)


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)  # PIL boxes include both corners
    return mask


@pytest.fixture(scope="module")
def inpaint_model(session_cache) -> Path:
    from helpers.download import fetch

    return fetch("test-tiny-sd-inpaint", cache=session_cache, progress=False)


@pytest.fixture(scope="module")
def loaded_sd(tiny_models):
    from helpers.diffusion.loading import load_pipeline

    return load_pipeline(settings(model="test-tiny-sd"), log=lambda _: None)


@pytest.fixture(scope="module")
def loaded_inpaint(inpaint_model):
    from helpers.diffusion.loading import load_pipeline

    return load_pipeline(settings(model="test-tiny-sd-inpaint"), log=lambda _: None)


def generate(loaded, run_settings: DiffusionSettings, init: Image.Image, mask: Image.Image):
    """The run's first image and its prepared inpainting."""
    from helpers.diffusion.loop import run

    prepared = inpaint.prepare(init, inpaint.binary_mask(mask), run_settings, log=lambda _: None)
    return next(iter(run(run_settings, loaded, prepared))).image, prepared


# --- the mask, by hand ------------------------------------------------------------------------


def test_the_blur_kernel_is_the_web_uis_size_in_opencvs_256ths():
    assert [inpaint.blur_kernel_size(r) for r in (1, 2, 4, 64)] == [7, 11, 21, 321]
    # sigma 1: exp(-x^2 / 2) for x = 3, 2, 1 normalised by 2.50595 is 0.00443, 0.05401, 0.24204;
    # times 256 with the error carried: 1.13 -> 1, 13.96 -> 14, 61.92 -> 62; centre 256 - 154
    assert inpaint.fixed_kernel(7, 1).tolist() == [1, 14, 62, 102, 62, 14, 1]
    assert inpaint.fixed_kernel(11, 2).sum() == 256


def test_the_mask_blur_is_opencvs_across_then_down():
    dot = np.zeros((7, 7), dtype=np.uint8)
    dot[3, 3] = 255
    blurred = np.asarray(inpaint.blur_mask(Image.fromarray(dot), 1))
    # across: (255 * 102 + 128) >> 8 = 102 in the middle; down: (102 * 102 + 128) >> 8 = 41
    assert blurred[3, 3] == 41 and blurred[3, 2] == blurred[2, 3] == 25
    assert blurred.tolist() == [  # cv2.GaussianBlur((7, 1), 1) then ((1, 7), 1), OpenCV 5.0
        [0, 0, 0, 1, 0, 0, 0], [0, 1, 3, 6, 3, 1, 0], [0, 3, 15, 25, 15, 3, 0],
        [1, 6, 25, 41, 25, 6, 1], [0, 3, 15, 25, 15, 3, 0], [0, 1, 3, 6, 3, 1, 0],
        [0, 0, 0, 1, 0, 0, 0]]
    half = np.zeros((3, 5), dtype=np.uint8)
    half[:, :2] = 255  # a kernel of 11 on 5 pixels: the mirror (without the edge) repeats
    assert np.asarray(inpaint.blur_mask(Image.fromarray(half), 2)).tolist() == [
        [141, 128, 95, 64, 52]] * 3
    assert inpaint.blur_mask(Image.fromarray(half), 0) is not None


def test_a_mask_with_transparency_gives_its_alpha_thresholded():
    rgba = Image.new("RGBA", (4, 1), (0, 0, 0, 0))
    for x, alpha in enumerate((0, 128, 129, 255)):
        rgba.putpixel((x, 0), (10, 10, 10, alpha))
    assert list(inpaint.binary_mask(rgba).getdata()) == [0, 0, 255, 255]
    opaque = Image.new("RGBA", (2, 1), (200, 200, 200, 255))
    assert list(inpaint.binary_mask(opaque).getdata()) == [200, 200]  # grey levels as they are


def test_invert_mask_repaints_what_the_mask_keeps():
    mask = box_mask((8, 8), (2, 2, 5, 5))
    inverted = np.asarray(inpaint.prepared_mask(mask, True, 0))
    assert inverted[0, 0] == 255 and inverted[3, 3] == 0


def test_the_latent_mask_is_rounded_to_zero_or_one():
    def latent(level: int) -> set[float]:
        mask = Image.new("L", (64, 64), level)  # a flat grey survives any resize as it is
        return set(inpaint.latent_mask(mask, (8, 8)).flatten().tolist())

    assert latent(127) == {0.0} and latent(128) == {1.0}  # 0.498 -> 0, 0.502 -> 1
    edge = inpaint.latent_mask(box_mask((64, 64), (0, 0, 31, 63)), (8, 8))
    assert edge.shape == (1, 1, 8, 8) and edge[0, 0, :, :4].eq(1).all()
    assert edge[0, 0, :, 4:].eq(0).all()


def test_the_crop_region_is_the_mask_plus_padding_grown_to_the_runs_aspect():
    mask = box_mask((100, 80), (40, 30, 49, 34))
    assert inpaint.crop_region(mask, 0) == (40, 30, 50, 35)
    assert inpaint.crop_region(mask, 8) == (32, 22, 58, 43)
    # 26 x 21 to 1:1: int(26 - 21) = 5 more rows, 2 above and 3 below
    assert inpaint.expand_crop_region((32, 22, 58, 43), 64, 64, 100, 80) == (32, 20, 58, 46)
    # at the bottom edge, to 2:1: 58 x 14 wants 15 more rows; 7 above and 8 below would pass the
    # edge, so the box moves up by 8
    bottom = inpaint.crop_region(box_mask((100, 80), (10, 70, 59, 79)), 4)
    assert bottom == (6, 66, 64, 80)
    assert inpaint.expand_crop_region(bottom, 64, 32, 100, 80) == (6, 51, 64, 80)
    # a tall box to 1:1 grows sideways, moved right from the left edge
    assert inpaint.expand_crop_region((0, 10, 4, 30), 64, 64, 100, 80) == (0, 10, 20, 30)
    assert inpaint.crop_region(Image.new("L", (9, 9)), 4) is None


def test_resize_and_fill_fits_the_crop_and_stretches_its_edges():
    image = Image.new("RGB", (20, 10), (0, 0, 0))
    ImageDraw.Draw(image).line((0, 0, 19, 0), fill=(255, 0, 0))  # a red top row
    filled = np.asarray(inpaint.resize_and_fill(image, 20, 20))
    assert filled.shape == (20, 20, 3)
    assert (filled[:5, :, 0] > 200).all()  # the band above repeats the top row


def test_a_mask_of_another_size_is_resized_with_a_message():
    messages: list[str] = []
    prepared = inpaint.prepare(noise_image(64, 64), box_mask((32, 32), (8, 8, 15, 15)),
                               settings(mask_blur=0), log=messages.append)
    assert messages == ["mask: 32x32 resized to the init image's 64x64"]
    assert prepared.mask.size == (64, 64) and np.asarray(prepared.mask)[24, 24] == 255


# --- untouched pixels -------------------------------------------------------------------------


@pytest.mark.parametrize("area", ["whole picture", "only masked"])
@pytest.mark.parametrize("content", MASKED_CONTENT)
@pytest.mark.parametrize("invert", [False, True])
def test_pixels_outside_the_blurred_mask_are_the_init_images(loaded_sd, area, content, invert):
    init = noise_image(96, 80)  # not the run's size: only masked pastes into the init image
    mask = box_mask((96, 80), (36, 26, 63, 53))
    if invert:
        mask = Image.eval(mask, lambda v: 255 - v)
    run_settings = settings(inpaint_area=area, masked_content=content, invert_mask=invert,
                            inpaint_padding=8, strength=0.9)
    image, prepared = generate(loaded_sd, run_settings, init, mask)
    made = np.asarray(image).astype(int)
    if area == "only masked":
        original, overlay = np.asarray(init).astype(int), prepared.overlay
        assert image.size == init.size
    else:
        original = np.asarray(init.resize((SIZE, SIZE), Image.Resampling.LANCZOS)).astype(int)
        overlay = prepared.overlay
        assert image.size == (SIZE, SIZE)
    kept = np.asarray(overlay)[..., 3] == 255  # the blurred mask is 0 there
    assert 0 < kept.sum() < kept.size
    assert np.abs(made - original)[kept].max() == 0
    repainted = np.asarray(overlay)[..., 3] <= 64  # mostly the generated image there
    assert repainted.any() and np.abs(made - original)[repainted].mean() > 5


def test_the_inpainting_model_keeps_the_untouched_pixels_too(loaded_inpaint):
    init, mask = noise_image(64, 64), box_mask((64, 64), (16, 16, 40, 40))
    for area in ("whole picture", "only masked"):
        image, prepared = generate(loaded_inpaint, settings(inpaint_area=area,
                                                            masked_content="fill"), init, mask)
        kept = np.asarray(prepared.overlay)[..., 3] == 255
        assert kept.any()
        assert np.array_equal(np.asarray(image)[kept], np.asarray(init)[kept])


# --- while sampling ---------------------------------------------------------------------------


def test_every_denoised_prediction_keeps_the_start_latents_outside_the_mask(loaded_sd,
                                                                               monkeypatch):
    """The web UI's formula, where it applies it (CFGDenoiser, after guidance, "mask before
    denoising" off): denoised = init * (1 - mask) + mask * denoised, at every model call, and
    once more on the result. diffusers' inpaint pipeline differs here (after each scheduler
    step it blends the init latents noised to the next timestep), so this is tested directly,
    not against it."""
    from helpers.diffusion.conditioning import encode_plan, plan_prompts
    from helpers.diffusion.guidance import Conditioning
    from helpers.diffusion.loading import pipeline_for
    from helpers.diffusion.sampling import pipeline as batch
    from helpers.diffusion.sampling.vae import encode_latents

    pipe = pipeline_for(loaded_sd, "Euler", img2img=True)
    run_settings = settings(strength=0.8, steps=4)
    prepared = inpaint.prepare(noise_image(64, 64), box_mask((64, 64), (0, 0, 31, 63)),
                               run_settings)
    mask = inpaint.latent_mask(prepared.mask, (8, 8))
    assert mask[..., :4].eq(1).all() and mask[..., 4:].eq(0).all()  # repaint the left half
    start = encode_latents(pipe, prepared.image)
    seen, finals = [], []
    decode = batch.decode
    monkeypatch.setattr(batch, "decode", lambda p, latents: finals.append(latents) or
                        decode(p, latents))
    conditioning = Conditioning.fixed(*encode_plan(pipe, plan_prompts("a cube", "")))
    batch.generate_batch(pipe, FAMILIES["sd"], run_settings, conditioning, [SEED],
                         prepared.image, lambda i, n, denoised, d: seen.append(denoised),
                         inpaint=prepared)
    assert len(seen) == 4 and len(finals) == 1
    for latents in (*seen, finals[0]):
        assert torch.equal(latents[..., 4:], start[..., 4:])  # kept exactly
        assert (latents - start)[..., :4].abs().mean() > 0.01  # repainted


def test_masked_model_blends_after_the_model():
    init, mask = torch.zeros(1, 4, 2, 2), torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    model = inpaint.masked_model(lambda x, sigma: x + sigma, init, mask)
    out = model(torch.ones(1, 4, 2, 2), torch.tensor(2.0))
    assert out[0, :, 0, 0].eq(3).all() and out[0, :, 0, 1].eq(0).all()


def test_latent_noise_is_each_images_first_draw_and_latent_nothing_zeros():
    from helpers.diffusion.sampling.noise import ImageNoise
    from helpers.diffusion.sampling.pipeline import inpaint_job
    from helpers.diffusion.sampling.run import Job

    prepared = inpaint.prepare(noise_image(64, 64), box_mask((64, 64), (0, 0, 31, 63)),
                               settings(masked_content="latent noise"))
    init = torch.full((1, 4, 8, 8), 3.0)
    job = inpaint_job(Job("Euler", "Automatic", 4, [5, 6], init=init), prepared, (64, 64), 8,
                      "cpu")
    draws = ImageNoise([5, 6], (4, 8, 8)).first()
    assert torch.equal(job.init[..., :4], draws[..., :4]) and job.init[..., 4:].eq(3).all()
    nothing = inpaint.start_latents(init, job.mask, "latent nothing", draws)
    assert nothing[..., :4].eq(0).all() and nothing[..., 4:].eq(3).all()


def test_the_inpainting_unet_gets_the_mask_and_masked_image_beside_its_latents(loaded_inpaint,
                                                                                monkeypatch):
    """The web UI's `inpainting_image_conditioning` (mask weight 1) against diffusers' inpaint
    pipeline's own preparation of the same mask and image: the mask rounded, then to the latent
    size (nearest), and the latents of image x (1 - mask)."""
    from diffusers import StableDiffusionInpaintPipeline

    from helpers.diffusion.loading import pipeline_for
    from helpers.diffusion.sampling.vae import encode_pixels

    pipe = pipeline_for(loaded_inpaint, "Euler", img2img=True)
    prepared = inpaint.prepare(noise_image(64, 64), box_mask((64, 64), (10, 20, 41, 50)),
                               settings(masked_content="fill", mask_blur=6))
    ours = inpaint.image_conditioning(pipe, prepared, (64, 64))
    ref = StableDiffusionInpaintPipeline(**pipe.components)
    mask = ref.mask_processor.preprocess(prepared.mask, height=64, width=64)
    image = ref.image_processor.preprocess(prepared.image, height=64, width=64)
    masked = image * (mask < 0.5)
    mask_latent, masked_latents = ref.prepare_mask_latents(
        mask, encode_pixels(pipe, masked), 1, 64, 64, torch.float32, "cpu", None, False)
    assert ours.shape == (1, 5, 8, 8) and 0 < ours[:, 0].mean() < 1
    assert torch.equal(ours[:, :1], mask_latent)
    assert torch.allclose(ours[:, 1:], masked_latents, atol=1e-5)
    seen = []
    forward = pipe.unet.forward
    monkeypatch.setattr(pipe.unet, "forward", lambda sample, *a, **k: seen.append(sample) or
                        forward(sample, *a, **k))
    from helpers.diffusion.conditioning import encode_plan, plan_prompts
    from helpers.diffusion.guidance import Conditioning
    from helpers.diffusion.sampling.pipeline import generate_batch

    conditioning = Conditioning.fixed(*encode_plan(pipe, plan_prompts("a cube", "")))
    generate_batch(pipe, FAMILIES["sd-inpaint"], settings(steps=2), conditioning, [SEED, 4],
                   prepared.image, inpaint=prepared)
    assert seen and all(s.shape == (4, 9, 8, 8) for s in seen)  # 2 images x (cond, uncond)
    assert all(torch.equal(s[:, 4:], ours.expand(4, -1, -1, -1)) for s in seen)


@pytest.mark.parametrize("model", ["test-tiny-sd", "test-tiny-sd-inpaint"])
def test_a_white_mask_matches_diffusers_inpaint_pipeline(model, tiny_models, inpaint_model):
    """Where the web UI and diffusers agree: all of the image repainted from pure noise (a white
    mask, latent nothing, strength 1), so no blend changes anything; Euler against diffusers'
    EulerDiscreteScheduler with linspace timesteps (4 steps: whole timesteps, no log-sigma
    interpolation), the same noise and embeddings, the 9-channel model given our masked-image
    latents (diffusers samples them from the VAE's distribution, the web UI and we take its
    mean). Within 1/255."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionInpaintPipeline

    from helpers.diffusion.conditioning import encode_plan, plan_prompts
    from helpers.diffusion.guidance import Conditioning
    from helpers.diffusion.loading import load_pipeline, pipeline_for
    from helpers.diffusion.sampling.noise import ImageNoise
    from helpers.diffusion.sampling.pipeline import generate_batch

    run_settings = settings(model=model, masked_content="latent nothing", strength=1.0,
                            steps=4, cfg_scale=6.0)
    loaded = load_pipeline(run_settings, log=lambda _: None)
    pipe = pipeline_for(loaded, "Euler", img2img=True)
    prepared = inpaint.prepare(noise_image(64, 64), Image.new("L", (64, 64), 255), run_settings)
    cond, uncond = encode_plan(pipe, plan_prompts("a red cube", "blurry"))
    ours = generate_batch(pipe, loaded.family, run_settings, Conditioning.fixed(cond, uncond),
                          [SEED], prepared.image, inpaint=prepared)[0]
    masked = inpaint.image_conditioning(pipe, prepared, (64, 64))[:, 1:] \
        if loaded.family.inpainting else None
    scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config,
                                                   timestep_spacing="linspace")
    ref = StableDiffusionInpaintPipeline(**{**pipe.components, "scheduler": scheduler})
    ref.set_progress_bar_config(disable=True)
    theirs = ref(prompt_embeds=cond.embeds[:1], negative_prompt_embeds=uncond.embeds[:1],
                 image=prepared.image, mask_image=prepared.mask, masked_image_latents=masked,
                 latents=ImageNoise([SEED], (4, 8, 8)).first(), strength=1.0,
                 num_inference_steps=4, guidance_scale=6.0, height=64, width=64).images[0]
    a, b = np.asarray(ours).astype(int), np.asarray(theirs).astype(int)
    assert a.std() > 10 and np.abs(a - b).max() <= 1


# --- settings, infotext, the CLI --------------------------------------------------------------


def test_the_infotext_has_the_web_uis_inpaint_keys_where_it_writes_them():
    from helpers.diffusion.image_info import infotext_params
    from helpers.diffusion.loading import Loaded
    from helpers.diffusion.models import ModelRef

    def params(family: str, **changes) -> dict:
        loaded = Loaded(None, FAMILIES[family], ModelRef("m", "folder", family, "m"))
        return {k: v for k, v in infotext_params(settings(**changes), SEED, loaded, {}).items()
                if v is not None}

    plain = params("sd")
    assert plain["Mask blur"] == 4 and "Masked content" not in plain and "Mask mode" not in plain
    assert "Inpaint area" not in plain and "Conditional mask weight" not in plain
    every = params("sd-inpaint", invert_mask=True, inpaint_area="Only masked", mask_blur=0,
                   inpaint_padding=0, masked_content="latent noise")
    keys = list(every)
    assert keys.index("Denoising strength") + 1 == keys.index("Conditional mask weight")
    assert [k for k in keys if k in ("Mask mode", "Inpaint area", "Masked area padding",
                                     "Masked content")] == ["Mask mode", "Inpaint area",
                                                            "Masked area padding",
                                                            "Masked content"]
    assert (every["Mask mode"], every["Inpaint area"], every["Masked area padding"],
            every["Masked content"]) == ("Inpaint not masked", "Only masked", 0, "latent noise")
    assert "Mask blur" not in every and every["Conditional mask weight"] == 1.0
    assert "Mask blur" not in params("sd", mask="")  # img2img: no inpaint keys


def test_a_web_ui_inpaint_infotext_reads_back(tmp_path):
    from helpers.diffusion.image_info import USED_KEYS, settings_from_image

    png = tmp_path / "webui.png"
    text = ("a cube\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 64x64, Model: "
            "test-tiny-sd-inpaint, Denoising strength: 0.6, Conditional mask weight: 1.0, "
            "Mask mode: Inpaint not masked, Mask blur: 9, Inpaint area: Only masked, "
            "Masked area padding: 40, Masked content: latent nothing")
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", text)
    Image.new("RGB", (8, 8)).save(png, pnginfo=info)
    logged: list[str] = []
    read = settings_from_image(png, log=logged.append, init_image="a.png", mask="m.png")
    assert (read.invert_mask, read.mask_blur, read.inpaint_area, read.inpaint_padding,
            read.masked_content, read.strength) == (True, 9, "only masked", 40,
                                                    "latent nothing", 0.6)
    assert not logged  # every key used
    assert set(parse_infotext(text)) - {"Prompt", "Negative prompt"} <= USED_KEYS
    info = PngInfo()
    info.add_text("parameters", text.replace("Conditional mask weight: 1.0",
                                             "Conditional mask weight: 0.5"))
    Image.new("RGB", (8, 8)).save(png, pnginfo=info)
    settings_from_image(png, log=logged.append, init_image="a.png", mask="m.png")
    assert logged and "Conditional mask weight" in logged[0]


def test_a_picture_never_sets_the_mask_path(tmp_path):
    from helpers.settings.picture import picture_values

    logged: list[str] = []
    stored = {**settings(mask="/etc/passwd").to_dict(), "mask_prompt": "the sky"}
    taken = picture_values(DiffusionSettings, stored, "x.png", log=logged.append)
    assert "mask" not in taken and taken["mask_prompt"] == "the sky"
    assert "mask" in logged[0].split(": ")[-1].split(", ")


def write_pictures(folder: Path) -> tuple[Path, Path]:
    init, mask = folder / "init.png", folder / "mask.png"
    noise_image(64, 64, 3).save(init)
    box_mask((64, 64), (12, 20, 43, 51)).save(mask)
    return init, mask


def test_the_cli_inpaints_and_from_image_reads_the_keys_back(inpaint_model, tmp_path, capsys):
    init, mask = write_pictures(tmp_path)
    flags = ["--init-image", str(init), "--mask", str(mask), "--mask-blur", "3",
             "--inpaint-area", "only masked", "--inpaint-padding", "12", "--masked-content",
             "fill", "--invert-mask", "--sampler", "Euler a", "--steps", "3", "--seed", "9",
             "--size", "64", "64", "--device", "cpu", "--quiet"]
    assert main(["diffusion", "--model", "test-tiny-sd-inpaint", "--prompt", "a cube",
                 "--out", str(tmp_path / "a"), *flags]) == 0
    frame = runs.list_frames(capsys.readouterr().out.strip().splitlines()[-1])[0]
    text, stored = runs.read_image_info(frame)
    info = parse_infotext(text)
    assert (info["Mask blur"], info["Mask mode"], info["Inpaint area"],
            info["Masked area padding"], info["Masked content"],
            info["Conditional mask weight"]) == ("3", "Inpaint not masked", "Only masked", "12",
                                                 "fill", "1.0")
    assert stored["mask"] == str(mask) and stored["masked_content"] == "fill"
    assert main(["diffusion", "--from-image", str(frame), "--init-image", str(init), "--mask",
                 str(mask), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    again = runs.list_frames(capsys.readouterr().out.strip().splitlines()[-1])[0]
    assert np.array_equal(np.asarray(Image.open(frame)), np.asarray(Image.open(again)))
    only_text = tmp_path / "infotext.png"
    from PIL.PngImagePlugin import PngInfo

    chunk = PngInfo()
    chunk.add_text("parameters", text)
    Image.open(frame).save(only_text, pnginfo=chunk)
    from helpers.diffusion.image_info import settings_from_image

    read = settings_from_image(only_text, log=lambda _: None, init_image=str(init),
                               mask=str(mask))
    assert (read.mask_blur, read.invert_mask, read.inpaint_area, read.inpaint_padding,
            read.masked_content) == (3, True, "only masked", 12, "fill")


def test_the_mask_prompt_calls_mask_from_words_with_its_settings(tiny_models, tmp_path,
                                                                 monkeypatch):
    from helpers.diffusion.checks import check_inputs

    init, _ = write_pictures(tmp_path)
    calls = []

    def mask_from_words(image, words, threshold, dilation, cache, log, model):
        calls.append((image.size, words, threshold, dilation, cache, model))
        return box_mask(image.size, (0, 0, 20, 20))

    fake = types.ModuleType("helpers.diffusion.tools.mask_words")
    fake.mask_from_words = mask_from_words
    monkeypatch.setitem(sys.modules, "helpers.diffusion.tools.mask_words", fake)
    run_settings = settings(model="test-tiny-sd", init_image=str(init), mask="",
                            mask_prompt="the sky", mask_threshold=0.3, mask_dilation=6,
                            mask_model="my-clipseg", out=str(tmp_path / "ws"))
    checked = check_inputs(run_settings, cache=tmp_path / "cache", log=lambda _: None)
    assert calls == [((64, 64), "the sky", 0.3, 6, tmp_path / "cache", "my-clipseg")]
    assert isinstance(checked.init_image, inpaint.Inpainting)
    assert np.asarray(checked.init_image.mask)[5, 5] == 255
    fake.mask_from_words = lambda image, *a: Image.new("L", image.size, 0)
    with pytest.raises(ValueError, match=r"^mask_prompt: 'the sky' was found nowhere"):
        check_inputs(run_settings, cache=tmp_path / "cache", log=lambda _: None)


def test_the_memory_plan_counts_the_inpainting_tensors():
    from helpers.diffusion.checks import INPAINT_BYTES_PER_PIXEL, estimate_bytes, plan_memory
    from helpers.memory import HEADROOM

    plain = estimate_bytes(FAMILIES["sd"], 512, 512, 2, 2, {})
    masked = estimate_bytes(FAMILIES["sd"], 512, 512, 2, 2, {}, inpaint=True)
    assert masked - plain == 2 * 512 * 512 * INPAINT_BYTES_PER_PIXEL
    assert estimate_bytes(FAMILIES["sd-inpaint"], 512, 512, 2, 2, {}) == masked
    off = {"vae_tiling": "off", "vae_slicing": "off", "attention_slicing": "off"}
    between = (estimate_bytes(FAMILIES["sd"], SIZE, SIZE, 1, 4, {}) +
               estimate_bytes(FAMILIES["sd"], SIZE, SIZE, 1, 4, {}, inpaint=True)) / 2
    assert plan_memory(settings(mask="", **off), FAMILIES["sd"], "cpu", between / HEADROOM, 4)
    with pytest.raises(ValueError, match=r"^width/height: 64x64 with batch size 1 needs"):
        plan_memory(settings(**off), FAMILIES["sd"], "cpu", between / HEADROOM, 4)


def test_a_9_channel_unet_in_an_ordinary_folder_is_an_inpainting_model(inpaint_model,
                                                                        tmp_path):
    import json
    import shutil

    from helpers.diffusion.models import resolve_model

    folder = tmp_path / "model"
    shutil.copytree(inpaint_model, folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name":
                                                         "StableDiffusionPipeline"}))
    assert resolve_model(str(folder)).family == "sd-inpaint"
    assert resolve_model(str(inpaint_model)).family == "sd-inpaint"


# --- bad input --------------------------------------------------------------------------------


def bad(tmp_path: Path, capsys, *flags: str) -> str:
    out = tmp_path / "ws"
    assert main(["diffusion", "--model", "test-tiny-sd", "--prompt", "a", "--size", "64", "64",
                 "--steps", "2", "--device", "cpu", "--out", str(out), "--quiet", *flags]) == 2
    assert not out.exists()
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_each_bad_mask_is_one_error_line_and_writes_nothing(tiny_models, inpaint_model,
                                                            tmp_path, capsys):
    init, mask = write_pictures(tmp_path)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    black = tmp_path / "black.png"
    Image.new("L", (64, 64), 0).save(black)
    white = tmp_path / "white.png"
    Image.new("L", (64, 64), 255).save(white)
    cases = [
        (["--mask", str(mask)], "error: mask: inpainting needs the image to repaint"),
        (["--init-image", str(init), "--mask", str(text)], "error: mask: cannot read"),
        (["--init-image", str(init), "--mask", str(black)],
         "error: mask: nothing to repaint: "),
        (["--init-image", str(init), "--mask", str(white), "--invert-mask"],
         "error: mask: nothing to repaint: with invert_mask"),
        (["--init-image", str(init), "--mask", str(mask), "--sampler", "DDIM"],
         "error: sampler: inpainting runs on the web UI's k-diffusion samplers"),
        (["--init-image", str(init), "--mask", str(mask), "--mask-prompt", "sky"],
         "error: mask_prompt: give a mask or a mask prompt, not both"),
        (["--init-image", str(init), "--mask", str(tmp_path / "none.png")],
         "error: mask: file not found"),
        (["--init-image", str(init), "--mask", str(mask), "--mask-blur", "65"],
         "error: mask_blur: must be between 0 and 64"),
        (["--init-image", str(init), "--mask", str(mask), "--masked-content", "noise"],
         "error: masked_content: 'noise' is not one of"),
        (["--model", "test-tiny-sd-inpaint", "--sampler", "UniPC"],
         "error: sampler: an SD inpainting model runs on the web UI's k-diffusion samplers"),
    ]
    for flags, message in cases:
        assert bad(tmp_path, capsys, *flags).startswith(message), flags


def test_an_all_white_mask_repaints_everything(tiny_models, tmp_path, capsys):
    init, _ = write_pictures(tmp_path)
    white = tmp_path / "white.png"
    Image.new("L", (64, 64), 255).save(white)
    assert main(["diffusion", "--model", "test-tiny-sd", "--prompt", "a", "--size", "64", "64",
                 "--steps", "2", "--device", "cpu", "--init-image", str(init), "--mask",
                 str(white), "--out", str(tmp_path / "ws"), "--quiet"]) == 0
    frame = runs.list_frames(capsys.readouterr().out.strip().splitlines()[-1])[0]
    made = np.asarray(Image.open(frame).convert("RGB")).astype(int)
    assert np.abs(made - np.asarray(Image.open(init)).astype(int)).mean() > 5
