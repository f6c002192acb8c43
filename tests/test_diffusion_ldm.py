"""The original latent-diffusion text-to-image pipeline (BERT encoder) through the engine."""

import numpy as np
import pytest
import torch
from common import first_frame, quiet

from helpers.diffusion import generate
from helpers.runs import list_frames
from helpers.settings import DiffusionSettings


@pytest.fixture(scope="module")
def ldm_folder(tiny_models):
    return tiny_models["test-tiny-ldm"]


def settings(folder, tmp_path, **changes) -> DiffusionSettings:
    base = {"prompt": "a red cube", "model": str(folder), "width": 64, "height": 64,
            "steps": 3, "seed": 3, "cfg_scale": 4.0, "sampler": "DDIM", "out": str(tmp_path)}
    return DiffusionSettings(**{**base, **changes})



def test_ldm_equals_a_plain_diffusers_call(ldm_folder, tmp_path):
    from diffusers import LDMTextToImagePipeline

    ours = generate(settings(ldm_folder, tmp_path), log=quiet)
    pipe = LDMTextToImagePipeline.from_pretrained(ldm_folder)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red cube", height=64, width=64, num_inference_steps=3, guidance_scale=4.0,
                 generator=torch.Generator().manual_seed(3)).images[0]
    assert np.abs(first_frame(ours) - np.asarray(image).astype(int)).max() <= 1


def test_ldm_gets_negative_prompts_and_composable_pieces(ldm_folder, tmp_path):
    plain = generate(settings(ldm_folder, tmp_path / "p"), log=quiet)
    negative = generate(settings(ldm_folder, tmp_path / "n", negative_prompt="blurry"), log=quiet)
    pieces = generate(settings(ldm_folder, tmp_path / "c", prompt="a red cube | a blue ball",
                               batch_size=2), log=quiet)
    assert np.abs(first_frame(plain) - first_frame(negative)).max() > 1
    assert len(list_frames(pieces)) == 2
