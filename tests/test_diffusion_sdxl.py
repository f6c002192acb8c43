"""SDXL through the same engine: two text encoders, pooled embeddings, zero unconditional."""

import numpy as np
import pytest
import torch
from common import first_frame, quiet
from PIL import Image

from helpers.diffusion import generate
from helpers.runs import list_frames
from helpers.settings import DiffusionSettings


@pytest.fixture(scope="module")
def sdxl_folder(tiny_models, tmp_path_factory):
    """A random-weight SDXL pipeline folder built from the tiny SD's tokenizer and VAE."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    sd = tiny_models["test-tiny-sd"]
    tokenizer = CLIPTokenizer.from_pretrained(sd / "tokenizer")
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37,
                          num_hidden_layers=3, num_attention_heads=4, projection_dim=32,
                          max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64,
            attention_head_dim=(2, 4), use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + 32)
        encoders = CLIPTextModel(text), CLIPTextModelWithProjection(text)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                       beta_schedule="scaled_linear")
    pipe = StableDiffusionXLPipeline(AutoencoderKL.from_pretrained(sd / "vae"), *encoders,
                                     tokenizer, tokenizer, unet, scheduler)
    folder = tmp_path_factory.mktemp("tiny-sdxl")
    pipe.save_pretrained(folder)
    return folder


def settings(folder, tmp_path, **changes) -> DiffusionSettings:
    base = {"prompt": "a red cube", "model": str(folder), "width": 64, "height": 64,
            "steps": 3, "seed": 7, "cfg_scale": 5.0, "sampler": "Euler", "out": str(tmp_path)}
    return DiffusionSettings(**{**base, **changes})



def plain(folder, **kwargs) -> np.ndarray:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red cube", num_inference_steps=3, guidance_scale=5.0, height=64, width=64,
                 generator=torch.Generator().manual_seed(7), **kwargs).images[0]
    return np.asarray(image.convert("RGB")).astype(int)


@pytest.mark.parametrize("negative", ["", "blurry"])
def test_sdxl_txt2img_equals_a_plain_diffusers_call(sdxl_folder, tmp_path, negative):
    ours = generate(settings(sdxl_folder, tmp_path, negative_prompt=negative), log=quiet)
    theirs = plain(sdxl_folder, negative_prompt=negative or None)  # None: zero unconditional
    assert np.abs(first_frame(ours) - theirs).max() <= 1


def test_sdxl_original_size_reaches_the_micro_conditioning(sdxl_folder, tmp_path):
    ours = generate(settings(sdxl_folder, tmp_path, sdxl_original_size=(32, 48)), log=quiet)
    assert np.abs(first_frame(ours) - plain(sdxl_folder, original_size=(48, 32))).max() <= 1
    assert np.abs(first_frame(ours) - plain(sdxl_folder)).max() > 1


def test_sdxl_composable_pieces_carry_their_pooled_embeddings(sdxl_folder, tmp_path):
    whole = generate(settings(sdxl_folder, tmp_path / "w"), log=quiet)
    halves = generate(settings(sdxl_folder, tmp_path / "h", prompt="a red cube | a red cube"),
                      log=quiet)
    other = generate(settings(sdxl_folder, tmp_path / "o", prompt="a red cube | a blue ball"),
                     log=quiet)
    assert np.abs(first_frame(whole) - first_frame(halves)).max() <= 1
    assert np.abs(first_frame(whole) - first_frame(other)).max() > 1


def test_sdxl_img2img_runs_at_the_requested_size(sdxl_folder, tmp_path):
    init = tmp_path / "init.png"
    Image.new("RGB", (100, 80), (200, 30, 30)).save(init)
    run_dir = generate(settings(sdxl_folder, tmp_path, init_image=str(init), strength=0.5,
                                width=48, height=64), log=quiet)
    assert Image.open(list_frames(run_dir)[0]).size == (48, 64)
