"""Our web-UI samplers against the web UI's own: k-diffusion's sampler functions over its
CompVis denoiser, with the web UI's guidance, noise and schedule types, on the tiny SD.

The reference side is k-diffusion itself (its `sampling` and `external` modules, loaded from
the installed package without its training-code `__init__`), the CompVis model wrapper the web
UI gives it, and transcriptions of the web UI's schedule formulas that k-diffusion lacks.
Every sampler with every schedule type, with SD 1.5's scheduler config and with an SDXL-style
one ("leading" timestep spacing): the web UI ignores the config's spacing, and so must we.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.diffusion.families import FAMILIES
from helpers.diffusion.samplers import SAMPLERS, SCHEDULE_NAMES, get_sampler, schedule_of
from helpers.settings import DiffusionSettings

# Restart is the web UI's own sampler (sd_samplers_extra), not k-diffusion's: its golden values
# are in test_samplers_extra.py
K_SAMPLERS = sorted(name for name, s in SAMPLERS.items() if s.kind == "k" and name != "Restart")
SCHEDULES = [s for s in SCHEDULE_NAMES]
SIZE, STEPS, CFG, SEED = 32, 5, 6.0, 1234
SD15 = {"_class_name": "PNDMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
        "beta_end": 0.012, "beta_schedule": "scaled_linear", "skip_prk_steps": True,
        "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon",
        "timestep_spacing": "leading"}
SDXL_STYLE = {"_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000,
              "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
              "steps_offset": 1, "prediction_type": "epsilon", "timestep_spacing": "leading",
              "interpolation_type": "linear", "use_karras_sigmas": False}


def load_k_diffusion() -> types.ModuleType:
    """k-diffusion's `sampling` and `external` modules, without the package's `__init__`."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None:
        pytest.skip("k-diffusion is not installed (pip install --no-deps k-diffusion)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    package = types.ModuleType("kdiff")
    package.__path__ = [str(folder)]
    utils = types.ModuleType("kdiff.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    sys.modules.update({"kdiff": package, "kdiff.utils": utils})
    package.utils = utils
    for name in ("sampling", "external"):
        module_spec = importlib.util.spec_from_file_location(f"kdiff.{name}",
                                                             folder / f"{name}.py")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[f"kdiff.{name}"] = module
        module_spec.loader.exec_module(module)
        setattr(package, name, module)
    return package


@pytest.fixture(scope="module")
def kd():
    return load_k_diffusion()


@pytest.fixture(scope="module")
def sides(pipe):
    from helpers.diffusion.conditioning import encode_plan, plan_prompts

    return encode_plan(pipe, plan_prompts("a red cube on a table", "blurry"))


class CompVisModel(torch.nn.Module):
    """What the web UI hands k-diffusion: the model's alphas_cumprod (CompVis computes them in
    float64 and keeps float32) and `apply_model(x, t, cond)` -> eps."""

    def __init__(self, unet, config):
        super().__init__()
        betas = np.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5,
                            config["num_train_timesteps"], dtype=np.float64) ** 2
        self.register_buffer("alphas_cumprod",
                             torch.tensor(np.cumprod(1.0 - betas), dtype=torch.float32))
        self.unet = unet

    def apply_model(self, x, t, cond):
        return self.unet(x, t, encoder_hidden_states=cond).sample


def web_ui_cfg(denoiser, cond, uncond, scale):
    """The web UI's CFGDenoiser for one prompt: [cond, uncond] in one batch, combined on the
    denoised images."""
    def model(x, sigma):
        out = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]),
                       cond=torch.cat([cond, uncond]))
        c, u = out.chunk(2)
        return u + (c - u) * scale

    return model


def web_ui_sigmas(kd, denoiser, schedule: str, n: int) -> torch.Tensor:
    """The web UI's schedule types: k-diffusion's functions, or its own formulas."""
    s = kd.sampling
    low, high = denoiser.sigmas[0].item(), denoiser.sigmas[-1].item()
    t_of = denoiser.sigma_to_t
    if schedule == "Uniform":
        return denoiser.get_sigmas(n)
    if schedule == "Karras":
        return s.get_sigmas_karras(n, low, high)
    if schedule == "Exponential":
        return s.get_sigmas_exponential(n, low, high)
    if schedule == "Polyexponential":
        return s.get_sigmas_polyexponential(n, low, high)
    if schedule in ("SGM Uniform", "Normal"):
        start, end = t_of(torch.tensor(high)), t_of(torch.tensor(low))
        ts = torch.linspace(start, end, n + 1)[:-1] if schedule == "SGM Uniform" \
            else torch.linspace(start, end, n)
        return torch.FloatTensor([*[denoiser.t_to_sigma(t) for t in ts], 0.0])
    if schedule == "KL Optimal":
        a_min, a_max = torch.arctan(torch.tensor(low)), torch.arctan(torch.tensor(high))
        i = torch.arange(n + 1)
        return torch.tan(i / n * a_min + (1.0 - i / n) * a_max)
    if schedule == "Align Your Steps":
        table = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]
        ys = np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(table)),
                       np.log(table[::-1]))
        return torch.FloatTensor([*np.exp(ys)[::-1], 0.0])
    if schedule == "Simple":
        ss = len(denoiser.sigmas) / n
        return torch.FloatTensor([*[float(denoiser.sigmas[-(1 + int(x * ss))])
                                    for x in range(n)], 0.0])
    if schedule == "DDIM":
        ss = max(len(denoiser.sigmas) // n, 1)
        picked = [float(denoiser.sigmas[x]) for x in range(1, len(denoiser.sigmas), ss)]
        return torch.FloatTensor([*picked[::-1], 0.0])
    if schedule == "Beta":
        from scipy import stats

        ts = [stats.beta.ppf(x, 0.6, 0.6) for x in 1 - np.linspace(0, 1, n)]
        return torch.FloatTensor([*[low + x * (high - low) for x in ts], 0.0])
    raise AssertionError(schedule)


def web_ui_range(function, denoiser, sigmas: torch.Tensor, img2img: bool) -> dict:
    """What the web UI gives DPM fast and DPM adaptive instead of sigmas (the keywords their
    functions take): txt2img the model's sigma range and the step count, img2img the range and
    length of the kept schedule."""
    if img2img:
        found = {"sigma_min": sigmas[-2], "sigma_max": sigmas[0], "n": len(sigmas) - 1}
    else:
        found = {"sigma_min": denoiser.sigmas[0].item(), "sigma_max": denoiser.sigmas[-1].item(),
                 "n": len(sigmas) - 1}
    accepted = inspect.signature(function).parameters
    return {k: v for k, v in found.items() if k in accepted}


def reference_image(kd, pipe, sides, sampler: str, schedule: str) -> np.ndarray:
    """The web UI's image: its noise, sigmas, sampler and guidance (txt2img, batch of one)."""
    found = get_sampler(sampler)
    denoiser = kd.external.CompVisDenoiser(CompVisModel(pipe.unet, SD15), quantize=False)
    n = STEPS + 1 if found.discard_penultimate else STEPS
    sigmas = web_ui_sigmas(kd, denoiser, schedule_of(sampler, schedule), n).float()
    if found.discard_penultimate:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    generator = torch.Generator("cpu").manual_seed(SEED)
    x = torch.randn((4, SIZE // 8, SIZE // 8), generator=generator)[None] * sigmas[0]
    kwargs = dict(found.options)
    if found.brownian:
        positive = sigmas[sigmas > 0]
        kwargs["noise_sampler"] = kd.sampling.BrownianTreeNoiseSampler(
            x, positive.min(), sigmas.max(), seed=[SEED])
    elif found.ancestral:
        kwargs["noise_sampler"] = lambda s, sn: torch.randn(
            (4, SIZE // 8, SIZE // 8), generator=generator)[None]
    function = getattr(kd.sampling, f"sample_{found.function}")
    cond, uncond = sides
    model = web_ui_cfg(denoiser, cond.embeds, uncond.embeds, CFG)
    with torch.no_grad():
        if found.sigma_range:
            latents = function(model, x, disable=True, **kwargs,
                               **web_ui_range(function, denoiser, sigmas, False))
        else:
            latents = function(model, x, sigmas, disable=True, **kwargs)
    return pixels(pipe, latents)


def pixels(pipe, latents) -> np.ndarray:
    from helpers.diffusion.sampling.pipeline import decode

    return np.asarray(decode(pipe, latents)[0]).astype(int)


def our_image(pipe, sides, sampler: str, schedule: str, config: dict) -> np.ndarray:
    from helpers.diffusion.guidance import Conditioning
    from helpers.diffusion.sampling.pipeline import generate_batch

    settings = DiffusionSettings(prompt="x", sampler=sampler, schedule=schedule, steps=STEPS,
                                 cfg_scale=CFG, width=SIZE, height=SIZE, seed=SEED)
    image = generate_batch(pipe, FAMILIES["sd"], settings, Conditioning.fixed(*sides), [SEED])[0]
    return np.asarray(image).astype(int)


DIFFERENCES: dict[tuple[str, str], int] = {}  # (sampler, schedule) -> max |ours - theirs|


def compare(kd, pipe, sides, sampler: str, schedule: str) -> int:
    """The largest pixel difference from the web UI's image, over both scheduler configs."""
    from diffusers import EulerDiscreteScheduler, PNDMScheduler

    theirs = reference_image(kd, pipe, sides, sampler, schedule)
    worst = 0
    for config, cls in ((SD15, PNDMScheduler), (SDXL_STYLE, EulerDiscreteScheduler)):
        pipe.scheduler = cls.from_config(config)
        ours = our_image(pipe, sides, sampler, schedule, config)
        worst = max(worst, int(np.abs(ours - theirs).max()))
    DIFFERENCES[(sampler, schedule)] = worst
    return worst


@pytest.fixture(scope="module", autouse=True)
def table():
    """After the tests: the differences as a table (tests/artifacts/web-ui-samplers.md)."""
    yield
    if not DIFFERENCES:
        return
    import os

    folder = Path(os.environ.get("DREAMFRAME_ARTIFACTS", Path(__file__).parent / "artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    schedules = [s for s in SCHEDULES if any(k[1] == s for k in DIFFERENCES)]
    lines = ["| sampler | " + " | ".join(schedules) + " |", "|---" * (len(schedules) + 1) + "|"]
    for sampler in K_SAMPLERS:
        cells = [str(DIFFERENCES.get((sampler, s), "")) for s in schedules]
        lines.append(f"| {sampler} | " + " | ".join(cells) + " |")
    (folder / "web-ui-samplers.md").write_text(
        "Max pixel difference (of 255) from k-diffusion's sampler over the web UI's CompVis "
        "denoiser, over SD 1.5's and an SDXL-style scheduler config\n\n" + "\n".join(lines)
        + "\n")


@pytest.mark.parametrize("sampler", K_SAMPLERS)
def test_each_sampler_with_its_automatic_schedule_gives_the_web_uis_image(kd, pipe, sides,
                                                                          sampler):
    assert compare(kd, pipe, sides, sampler, "Automatic") <= 2


@pytest.mark.slow
@pytest.mark.parametrize("schedule", [s for s in SCHEDULES if s != "Automatic"])
@pytest.mark.parametrize("sampler", K_SAMPLERS)
def test_every_sampler_with_every_schedule_type_gives_the_web_uis_image(kd, pipe, sides,
                                                                        sampler, schedule):
    assert compare(kd, pipe, sides, sampler, schedule) <= 2


def test_the_karras_sigmas_start_at_the_models_full_sigma_max(kd, pipe):
    from helpers.diffusion.sampling.denoiser import Denoiser
    from helpers.diffusion.sampling.schedules import sigmas_for

    ours = sigmas_for("Uniform", 10, Denoiser(pipe.unet, SDXL_STYLE, FAMILIES["sd"]))
    assert math.isclose(float(ours[0]), 14.6146, rel_tol=1e-4)  # not the 11.03 of "leading"


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "DPM fast"])
def test_the_hires_fix_is_the_web_uis_second_pass(kd, pipe, sides, sampler):
    """First pass, latents upscaled bilinear, then img2img of `Hires steps` steps of a longer
    schedule, with fresh noise from the same seed at the new size."""
    from helpers.diffusion.guidance import Conditioning
    from helpers.diffusion.sampling.pipeline import generate_batch

    pipe.scheduler = type(pipe.scheduler).from_config(SD15)
    found = get_sampler(sampler)
    denoiser = kd.external.CompVisDenoiser(CompVisModel(pipe.unet, SD15), quantize=False)
    cond, uncond = sides
    model = web_ui_cfg(denoiser, cond.embeds, uncond.embeds, CFG)

    def run(x, sigmas, generator, shape, img2img=False):
        kwargs = dict(found.options)
        if found.ancestral:
            kwargs["noise_sampler"] = lambda s, sn: torch.randn(shape, generator=generator)[None]
        function = getattr(kd.sampling, f"sample_{found.function}")
        with torch.no_grad():
            if found.sigma_range:
                return function(model, x, disable=True, **kwargs,
                                **web_ui_range(function, denoiser, sigmas, img2img))
            return function(model, x, sigmas, disable=True, **kwargs)

    small, big = (4, SIZE // 8, SIZE // 8), (4, SIZE // 4, SIZE // 4)
    sigmas = web_ui_sigmas(kd, denoiser, schedule_of(sampler, "Automatic"), STEPS)
    generator = torch.Generator().manual_seed(SEED)
    first = run(torch.randn(small, generator=generator)[None] * sigmas[0], sigmas, generator,
                small)
    upscaled = torch.nn.functional.interpolate(first, size=big[1:], mode="bilinear",
                                               antialias=False)
    hires_steps, strength = 3, 0.6
    total = int(hires_steps / strength)
    longer = web_ui_sigmas(kd, denoiser, schedule_of(sampler, "Automatic"), total)
    tail = longer[total - (hires_steps - 1) - 1:]
    generator = torch.Generator().manual_seed(SEED)
    theirs = pixels(pipe, run(upscaled + torch.randn(big, generator=generator)[None] * tail[0],
                              tail, generator, big, img2img=True))
    settings = DiffusionSettings(prompt="x", sampler=sampler, steps=STEPS, cfg_scale=CFG,
                                 width=SIZE, height=SIZE, seed=SEED, hires_scale=2,
                                 hires_steps=hires_steps, hires_strength=strength)
    made = generate_batch(pipe, FAMILIES["sd"], settings, Conditioning.fixed(*sides), [SEED])
    ours = np.asarray(made[0]).astype(int)
    assert ours.shape == (2 * SIZE, 2 * SIZE, 3)
    assert int(np.abs(ours - theirs).max()) <= 2
