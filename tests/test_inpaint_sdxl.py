"""SDXL inpainting (the 9-channel SDXL UNet, as SDXL 1.0 inpainting 0.1) on the tiny SDXL
inpainting model: against diffusers' `StableDiffusionXLInpaintPipeline` where the web UI and
diffusers agree, and a run end to end that keeps the untouched pixels exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from common import quiet
from PIL import Image, ImageDraw

from helpers import runs
from helpers.diffusion.tools import inpaint
from helpers.settings import DiffusionSettings

SIZE, SEED = 64, 11


@pytest.fixture(scope="module")
def model(session_cache) -> Path:
    from helpers.download import fetch

    return fetch("test-tiny-sdxl-inpaint", cache=session_cache, progress=False)


def noise_image(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))


def settings(**changes) -> DiffusionSettings:
    values = {"prompt": "a red cube", "negative_prompt": "blurry",
              "model": "test-tiny-sdxl-inpaint", "init_image": "init.png", "mask": "mask.png",
              "width": SIZE, "height": SIZE, "steps": 4, "seed": SEED, "cfg_scale": 6.0,
              "sampler": "Euler", "device": "cpu", **changes}
    return DiffusionSettings(**values)


def test_the_tiny_sdxl_inpainting_model_is_an_sdxl_inpainting_folder(model):
    from helpers.diffusion.models import resolve_model
    from helpers.files import read_json

    assert read_json(model / "model_index.json", "index", dict)["_class_name"] == \
        "StableDiffusionXLInpaintPipeline"
    assert read_json(model / "unet" / "config.json", "unet", dict)["in_channels"] == 9
    assert resolve_model(str(model)).family == "sdxl-inpaint"
    assert resolve_model("test-tiny-sdxl-inpaint").family == "sdxl-inpaint"


def test_a_white_mask_matches_diffusers_sdxl_inpaint_pipeline(model):
    """As tests/test_inpaint.py does for SD's 9-channel model: all of the image repainted from
    pure noise (a white mask, latent nothing, strength 1), Euler against diffusers'
    EulerDiscreteScheduler with linspace timesteps (4 whole timesteps), the same noise, the same
    embeddings (both encoders' and the pooled one), SDXL's size ids (64, 64, 0, 0, 64, 64) on
    both sides, and our masked-image latents (the VAE's mean) given to diffusers. Within 1/255."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLInpaintPipeline

    from helpers.diffusion.conditioning import encode_plan, plan_prompts
    from helpers.diffusion.guidance import Conditioning
    from helpers.diffusion.loading import load_pipeline, pipeline_for
    from helpers.diffusion.sampling.noise import ImageNoise
    from helpers.diffusion.sampling.pipeline import generate_batch

    run_settings = settings(masked_content="latent nothing", strength=1.0)
    loaded = load_pipeline(run_settings, log=quiet)
    assert loaded.family.inpainting and loaded.family.size_conditioning
    pipe = pipeline_for(loaded, "Euler", img2img=True)
    prepared = inpaint.prepare(noise_image(), Image.new("L", (SIZE, SIZE), 255), run_settings)
    cond, uncond = encode_plan(pipe, plan_prompts("a red cube", "blurry"))
    ours = generate_batch(pipe, loaded.family, run_settings, Conditioning.fixed(cond, uncond),
                          [SEED], prepared.image, inpaint=prepared)[0]
    masked = inpaint.image_conditioning(pipe, prepared, (SIZE, SIZE))[:, 1:]
    scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config,
                                                   timestep_spacing="linspace")
    ref = StableDiffusionXLInpaintPipeline(**{**pipe.components, "scheduler": scheduler})
    ref.set_progress_bar_config(disable=True)
    theirs = ref(prompt_embeds=cond.embeds[:1], negative_prompt_embeds=uncond.embeds[:1],
                 pooled_prompt_embeds=cond.pooled[:1],
                 negative_pooled_prompt_embeds=uncond.pooled[:1], image=prepared.image,
                 mask_image=prepared.mask, masked_image_latents=masked,
                 latents=ImageNoise([SEED], (4, SIZE // 8, SIZE // 8)).first(), strength=1.0,
                 num_inference_steps=4, guidance_scale=6.0, height=SIZE, width=SIZE).images[0]
    a, b = np.asarray(ours).astype(int), np.asarray(theirs).astype(int)
    assert a.std() > 10 and np.abs(a - b).max() <= 1
    other = ref(prompt_embeds=cond.embeds[:1], negative_prompt_embeds=uncond.embeds[:1],
                pooled_prompt_embeds=cond.pooled[:1],
                negative_pooled_prompt_embeds=uncond.pooled[:1], image=prepared.image,
                mask_image=prepared.mask, masked_image_latents=masked,
                latents=ImageNoise([SEED + 1], (4, SIZE // 8, SIZE // 8)).first(),
                strength=1.0, num_inference_steps=4, guidance_scale=6.0, height=SIZE,
                width=SIZE).images[0]
    assert np.abs(a - np.asarray(other).astype(int)).max() > 1  # the comparison can fail


@pytest.mark.parametrize("area", ["whole picture", "only masked"])
def test_a_run_keeps_the_pixels_outside_the_mask(model, tmp_path, area):
    from helpers.diffusion import generate

    init, mask = tmp_path / "init.png", tmp_path / "mask.png"
    noise_image(3).save(init)
    box = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(box).rectangle((12, 20, 43, 51), fill=255)
    box.save(mask)
    run_dir = generate(settings(init_image=str(init), mask=str(mask), inpaint_area=area,
                                masked_content="fill", steps=3, out=str(tmp_path / "out")),
                       log=quiet, progress=False)
    frame = runs.list_frames(run_dir)[0]
    made = np.asarray(Image.open(frame).convert("RGB")).astype(int)
    original = np.asarray(Image.open(init)).astype(int)
    prepared = inpaint.prepare(Image.open(init).convert("RGB"), box,
                               settings(inpaint_area=area, masked_content="fill"))
    kept = np.asarray(prepared.overlay)[..., 3] == 255
    assert 0 < kept.sum() < kept.size
    assert np.array_equal(made[kept], original[kept])
    inside = np.zeros((SIZE, SIZE), bool)
    inside[24:48, 16:40] = True  # well inside the box, past the blur
    assert np.abs(made - original)[inside].mean() > 5
    assert "Conditional mask weight: 1.0" in runs.read_image_info(frame)[0]
