"""The original latent-diffusion text-to-image pipeline (BERT encoder) through the engine."""

import numpy as np
import pytest
import torch
from common import first_frame, quiet

from helpers.diffusion import generate
from helpers.runs import list_frames
from helpers.settings import DiffusionSettings


@pytest.fixture(scope="module")
def ldm_folder(tiny_models, tmp_path_factory):
    """A random-weight LDMTextToImagePipeline folder (tiny SD's UNet, VAE and tokenizer)."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        LDMTextToImagePipeline,
        UNet2DConditionModel,
    )
    from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import (
        LDMBertConfig,
        LDMBertModel,
    )
    from transformers import CLIPTokenizer

    sd = tiny_models["test-tiny-sd"]
    tokenizer = CLIPTokenizer.from_pretrained(sd / "tokenizer")
    config = LDMBertConfig(vocab_size=len(tokenizer), encoder_layers=2, encoder_ffn_dim=37,
                           encoder_attention_heads=4, head_dim=8, d_model=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        bert = LDMBertModel(config)
    pipe = LDMTextToImagePipeline(AutoencoderKL.from_pretrained(sd / "vae"), bert, tokenizer,
                                  UNet2DConditionModel.from_pretrained(sd / "unet"),
                                  DDIMScheduler(beta_start=0.00085, beta_end=0.012,
                                                beta_schedule="scaled_linear"))
    folder = tmp_path_factory.mktemp("tiny-ldm")
    pipe.save_pretrained(folder)
    return folder


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
