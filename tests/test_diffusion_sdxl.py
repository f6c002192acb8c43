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
def sdxl_folder(tiny_models):
    return tiny_models["test-tiny-sdxl"]


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
