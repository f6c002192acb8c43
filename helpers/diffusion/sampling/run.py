"""A batch from guidance to latents with a web-UI sampler: txt2img, img2img, or given noise.

txt2img starts from each image's first draw times the first sigma; img2img (and the hires
fix's second pass) keeps the last int(strength x steps) + 1 sigmas of a schedule of `steps` and
starts from the image's latents plus noise at the first of them, as the web UI does. Inpainting
adds a latent mask: the sampler's model is wrapped so that every denoised prediction keeps the
start latents outside it, and the result is blended once more (`helpers.diffusion.tools.inpaint`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from helpers.diffusion.guidance import Guidance
from helpers.diffusion.samplers import get_sampler, schedule_of
from helpers.diffusion.sampling.denoiser import Denoiser
from helpers.diffusion.sampling.noise import ImageNoise, brownian
from helpers.diffusion.sampling.samplers import FUNCTIONS
from helpers.diffusion.sampling.schedules import sigmas_for
from helpers.diffusion.tools.inpaint import blend, masked_model


@dataclass
class Job:
    """What one sampler call needs besides the model."""

    sampler: str  # the web UI's sampler name
    schedule: str  # schedule type ("Automatic" resolved here)
    steps: int
    seeds: list[int]
    rng: str = "cpu"  # "cpu", "gpu" or "nv"
    init: torch.Tensor | None = None  # img2img: the start latents (unit scale)
    strength: float = 1.0  # img2img: how much of the schedule runs
    start_noise: torch.Tensor | None = None  # a walk's start noise instead of the first draw
    t_enc: int | None = None  # img2img: steps run - 1, when not from strength (hires fix)
    mask: torch.Tensor | None = None  # inpaint: 1 where to repaint, at the latent size; every
    #                                   denoised prediction is `init` outside it

    @property
    def encoded_steps(self) -> int:
        """img2img: how many steps of the schedule are skipped from the end, less one."""
        if self.t_enc is not None:
            return self.t_enc
        return int(min(self.strength, 0.999) * self.steps)


def sigma_schedule(denoiser: Denoiser, job: Job) -> tuple[torch.Tensor, torch.Tensor]:
    """(the whole schedule, the part this job runs)."""
    sampler = get_sampler(job.sampler)
    sigmas = sigmas_for(schedule_of(job.sampler, job.schedule), job.steps, denoiser,
                        sampler.discard_penultimate)
    if job.init is None:
        return sigmas, sigmas
    return sigmas, sigmas[job.steps - job.encoded_steps - 1:]


def sample(denoiser: Denoiser, guidance: Guidance, job: Job, shape: tuple[int, ...],
           device: Any, callback: Any = None) -> torch.Tensor:
    """The sampled latents (unit scale) of a batch, one image per seed."""
    sampler = get_sampler(job.sampler)
    sigmas, run = sigma_schedule(denoiser, job)
    sigmas, run = sigmas.to(device), run.to(device)
    noise = ImageNoise(job.seeds, shape, job.rng, device)
    x = noise.first()
    if job.start_noise is not None:
        x = job.start_noise.to(device, torch.float32)
    x = x * run[0] if job.init is None else job.init.to(device, torch.float32) + x * run[0]
    steps = noise.sampler()
    if sampler.brownian:
        steps = brownian(x, sigmas, job.seeds)
    function = FUNCTIONS[sampler.function]
    model, finish = guided_model(denoiser, guidance, job, device)
    return finish(function(model, x, run, steps, callback, **sampler.options,
                           **sigma_range(denoiser, job, function)))


def guided_model(denoiser: Denoiser, guidance: Guidance, job: Job, device: Any
                 ) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                            Callable[[torch.Tensor], torch.Tensor]]:
    """(the sampler's model, what finishes its result): the guided denoiser; inpainting, its
    predictions blended with the start latents by the mask, and the result blended again."""
    def model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return denoiser(x, sigma, guidance)

    if job.mask is None:
        return model, lambda x: x
    init, mask = job.init.to(device, torch.float32), job.mask.to(device, torch.float32)
    return masked_model(model, init, mask), lambda x: blend(x, init, mask)


def sigma_range(denoiser: Denoiser, job: Job, function: Any) -> dict[str, Any]:
    """What DPM fast and DPM adaptive get in txt2img, as in the web UI: the model's whole
    sigma range (and the step count, where the function takes `n`), so the schedule type sets
    only the start noise's scale; in img2img they take the range (and length) of the
    schedule's kept part, their default."""
    if not get_sampler(job.sampler).sigma_range or job.init is not None:
        return {}
    found = {"sigma_min": denoiser.sigma_min, "sigma_max": denoiser.sigma_max, "n": job.steps}
    accepted = inspect.signature(function).parameters
    return {k: v for k, v in found.items() if k in accepted}


def sdxl_time_ids(width: int, height: int, original: tuple[int, ...] = (),
                  dtype: Any = torch.float32) -> torch.Tensor:
    """SDXL's size conditioning: original (H, W), crop (0, 0), target (H, W)."""
    orig_w, orig_h = original if original else (width, height)
    return torch.tensor([[orig_h, orig_w, 0, 0, height, width]], dtype=dtype)
