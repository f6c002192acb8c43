"""The web-UI sampling pieces: the model's schedule, schedule types, noise sources, hires fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.diffusion.families import FAMILIES
from helpers.diffusion.samplers import SCHEDULE_NAMES, get_sampler, schedule_of, split_name
from helpers.diffusion.sampling.denoiser import Denoiser, alphas_cumprod
from helpers.diffusion.sampling.noise import ImageNoise, PhiloxGenerator, brownian
from helpers.diffusion.sampling.schedules import SCHEDULES, sigmas_for

SD15 = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear"}


@pytest.fixture(scope="module")
def model() -> Denoiser:
    return Denoiser(None, SD15, FAMILIES["sd"])


def test_the_models_sigmas_span_sds_range(model):
    assert model.sigma_min == pytest.approx(0.0292, abs=1e-4)
    assert model.sigma_max == pytest.approx(14.6146, abs=1e-4)


def test_alphas_match_diffusers_own_betas():
    from diffusers import DDPMScheduler

    theirs = DDPMScheduler(**SD15).alphas_cumprod
    assert torch.allclose(alphas_cumprod(SD15), theirs, rtol=1e-5)


def test_sigma_and_timestep_convert_both_ways(model):
    t = torch.tensor([0.0, 10.5, 500.25, 999.0])
    assert torch.allclose(model.sigma_to_t(model.t_to_sigma(t)), t, atol=1e-3)


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_every_schedule_type_falls_from_the_top_to_zero(model, schedule):
    sigmas = sigmas_for(schedule, 8, model)
    assert len(sigmas) == 9
    assert torch.all(sigmas[:-1] > sigmas[1:]) or schedule == "KL Optimal"
    ends_at = model.sigma_min if schedule == "KL Optimal" else 0.0  # as the web UI makes it
    assert float(sigmas[-1]) == pytest.approx(ends_at, abs=1e-6)
    assert float(sigmas[0]) <= model.sigma_max * 1.0001


def test_dpm2_drops_the_next_to_last_sigma(model):
    full = sigmas_for("Karras", 6, model)
    dropped = sigmas_for("Karras", 5, model, discard_penultimate=True)
    assert len(dropped) == len(full) - 1  # 5 steps: one more made, one dropped
    assert torch.equal(dropped[:-1], full[:-2]) and float(dropped[-1]) == 0


def test_automatic_is_each_samplers_own_schedule_as_in_the_web_ui():
    assert schedule_of("DPM++ 2M", "Automatic") == "Karras"
    assert schedule_of("DPM++ 2M SDE", "Automatic") == "Exponential"
    assert schedule_of("Euler a", "Automatic") == "Uniform"
    assert schedule_of("DPM2", "Automatic") == "Karras"
    assert schedule_of("Euler a", "Exponential") == "Exponential"
    assert get_sampler("DPM2 a").discard_penultimate and get_sampler("DPM++ SDE").brownian


def test_old_combined_names_read_as_sampler_and_schedule():
    assert split_name("DPM++ 2M Karras") == ("DPM++ 2M", "Karras")
    assert split_name("dpm++ 2m sde exponential") == ("DPM++ 2M SDE", "Exponential")
    assert split_name("Euler a") == ("Euler a", "Automatic")
    assert set(SCHEDULE_NAMES) == {"Automatic", *SCHEDULES}


# --- noise -----------------------------------------------------------------------------------


def test_nv_noise_gives_the_numbers_the_web_ui_publishes_for_nvidia_gpus():
    # the web UI's rng_philox.py: Generator(seed=0).randn(shape=(3, 4)), torch.randn on CUDA
    published = [[-0.92466259, -0.42534415, -2.6438457, 0.14518388],
                 [-0.12086647, -0.57972564, -0.62285122, -0.32838709],
                 [-1.07454231, -0.36314407, -1.67105067, 2.26550497]]
    got = PhiloxGenerator(0).randn((3, 4)).numpy()
    assert np.allclose(got, published, atol=5e-7)


def test_nv_noise_moves_on_with_each_draw_and_depends_on_the_seed():
    g = PhiloxGenerator(7)
    a, b = g.randn((64,)), g.randn((64,))
    assert not torch.equal(a, b)
    assert torch.equal(PhiloxGenerator(7).randn((64,)), a)
    assert abs(float(torch.cat([a, b]).mean())) < 0.3 and 0.7 < float(a.std()) < 1.3


@pytest.mark.parametrize("source", ["cpu", "gpu", "nv"])
def test_each_image_draws_from_its_own_seed_whatever_the_batch(source):
    batch = ImageNoise([5, 9], (4, 3, 3), source)
    alone = ImageNoise([9], (4, 3, 3), source)
    first, second = batch.first(), batch.next()
    assert torch.equal(first[1], alone.first()[0]) and torch.equal(second[1], alone.next()[0])
    assert not torch.equal(first[0], first[1])


def test_cpu_noise_is_torchs_cpu_generator():
    expected = torch.randn((4, 2, 2), generator=torch.Generator().manual_seed(3))
    assert torch.equal(ImageNoise([3], (4, 2, 2), "cpu").first()[0], expected)


def test_brownian_noise_is_reproducible_per_seed_and_unit_variance():
    x = torch.zeros(2, 4, 8, 8)
    sigmas = torch.tensor([10.0, 5.0, 1.0, 0.0])
    a = brownian(x, sigmas, [1, 2])(sigmas[0], sigmas[1])
    b = brownian(x, sigmas, [1, 3])(sigmas[0], sigmas[1])
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
    assert 0.6 < float(a.std()) < 1.4


# --- the hires fix through a whole run -------------------------------------------------------


def test_a_hires_run_doubles_the_size_and_says_so_in_the_infotext(tiny_models, tmp_path):
    from PIL import Image

    from helpers import runs
    from helpers.diffusion import generate
    from helpers.metadata import infotext
    from helpers.settings import DiffusionSettings

    base = {"prompt": "a red cube", "model": "test-tiny-sd", "width": 32, "height": 32,
            "steps": 3, "seed": 5, "device": "cpu", "hires_scale": 2.0, "hires_steps": 2}
    made = {}
    for upscaler in ("latent", "lanczos"):
        settings = DiffusionSettings(**base, hires_upscaler=upscaler, out=str(tmp_path / upscaler))
        (frame,) = runs.list_frames(generate(settings, log=lambda _: None, progress=False))
        made[upscaler] = np.asarray(Image.open(frame)).astype(int)
        info = infotext.parse_infotext(runs.read_image_info(frame)[0])
        assert Image.open(frame).size == (64, 64)
        assert (info["Hires upscale"], info["Hires steps"]) == ("2", "2")
        assert info["Hires upscaler"] == {"latent": "Latent", "lanczos": "Lanczos"}[upscaler]
        assert info["Size"] == "32x32"  # the first pass's size, as the web UI writes it
    assert np.abs(made["latent"] - made["lanczos"]).max() > 0
