"""A batch of images with a web-UI sampler on a diffusers pipeline's components.

The pipeline gives the UNet, the VAE and its image processor; the sampling is ours
(`sampling.run`). img2img starts from the VAE's latents of the init image (the mean of its
latent distribution); the hires fix makes the image at the run's size, upscales its latents
or its pixels by the web UI's hires upscaler (`upscale`), and refines it with an img2img pass
of its own steps and strength, with fresh noise from the same seeds, as the web UI does.
Inpainting (`helpers.diffusion.tools.inpaint`) gives the job its latent mask and start
latents, and an inpainting model its mask and masked-image latents beside the latents.
ControlNet units (`helpers.diffusion.tools.control`) wrap the UNet of each pass
(`ControlledUNet`), the hires pass's with its maps fitted to the hires size; the sampler's step
reports tell the wrapper the progress its units' guidance start and end are fractions of.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from helpers.diffusion.guidance import Conditioning, Guidance
from helpers.diffusion.samplers import get_sampler
from helpers.diffusion.sampling.denoiser import Denoiser
from helpers.diffusion.sampling.noise import ImageNoise
from helpers.diffusion.sampling.run import Job, sample, sdxl_time_ids
from helpers.diffusion.sampling.upscale import upscale_for_hires
from helpers.diffusion.sampling.vae import decode, encode_latents
from helpers.diffusion.tools.control import ControlledUNet, conditional_rows
from helpers.diffusion.tools.inpaint import (
    Inpainting,
    image_conditioning,
    latent_mask,
    start_latents,
)

if TYPE_CHECKING:
    from helpers.diffusion.families import Family

Decode = Callable[[torch.Tensor], list]
StepReport = Callable[[int, int, torch.Tensor, Decode], Any]  # (step, steps, denoised, decode)


def generate_batch(pipe: Any, family: Family, settings: Any, conditioning: Conditioning,
                   seeds: list[int], init_image: Any = None, report: StepReport | None = None,
                   start_noise: torch.Tensor | None = None,
                   hires: Conditioning | None = None,
                   inpaint: Inpainting | None = None, control: Any = None) -> list:
    """PIL images of one batch (`report` gets every step's denoised latents; `hires`: the
    hires pass's conditioning when prompt editing gives it its own schedule; `inpaint`: the
    mask and masked content of an inpaint run, whose start image is `init_image`; `control`: the
    ControlNet units, a `control.run.RunControl`)."""
    device = pipe.unet.device
    size = settings.canvas_size()
    init = encode_latents(pipe, init_image) if init_image is not None else None
    job = Job(settings.sampler, settings.schedule, settings.steps, list(seeds), settings.rng,
              init=init, strength=settings.strength, start_noise=start_noise)
    image_cond = None
    if inpaint is not None:
        job = inpaint_job(job, inpaint, size, pipe.vae_scale_factor, device)
        if family.inpainting:
            image_cond = image_conditioning(pipe, inpaint, size)
    units = control.units if control is not None else ()
    latents = _sample(pipe, family, settings, conditioning, job, size, report, image_cond, units)
    if settings.hires_scale > 1 and init is None:
        latents = hires_pass(pipe, family, settings, hires or conditioning, latents, seeds,
                             report, control)
    return decode(pipe, latents.to(device))


def inpaint_job(job: Job, inpaint: Inpainting, size: tuple[int, int], factor: int,
                device: Any) -> Job:
    """The job with the latent mask and the start latents of the masked content (latent
    noise: each image's first draw, as the web UI draws it for its seed)."""
    mask = latent_mask(inpaint.mask, (size[0] // factor, size[1] // factor)).to(device)
    init = job.init.to(device)
    noise = None
    if inpaint.masked_content == "latent noise":
        noise = ImageNoise(job.seeds, init.shape[1:], job.rng, device).first()
    return replace(job, init=start_latents(init, mask, inpaint.masked_content, noise),
                   mask=mask)


def _sample(pipe: Any, family: Family, settings: Any, conditioning: Conditioning, job: Job,
            size: tuple[int, int], report: StepReport | None,
            image_cond: torch.Tensor | None = None, units: tuple = ()) -> torch.Tensor:
    """Sampled latents at `size`; an inpainting model without `image_cond` gets the one of
    no mask (all of a grey image masked), as the web UI gives it outside inpainting; `units`:
    ControlNet units with their maps at `size`."""
    width, height = size
    time_ids = None
    if family.size_conditioning:
        time_ids = sdxl_time_ids(width, height, settings.sdxl_original_size, pipe.unet.dtype)
    if family.inpainting and image_cond is None:
        image_cond = image_conditioning(pipe, None, size)
    guidance = Guidance(conditioning, settings.cfg_scale, time_ids)
    unet = pipe.unet
    if units:
        total = job.steps if job.init is None else job.encoded_steps + 1
        unet = ControlledUNet(pipe.unet, units, conditional_rows(guidance), total)
    denoiser = Denoiser(unet, dict(pipe.scheduler.config), family, image_cond)
    factor = pipe.vae_scale_factor
    shape = (pipe.unet.config.out_channels, height // factor, width // factor)
    callback = _callback(pipe, report, job) if report else None
    if units:  # the wrapper counts the steps even without a report
        callback = unet.stepping(callback)
    return sample(denoiser, guidance, job, shape, pipe.unet.device, callback)


def _callback(pipe: Any, report: StepReport, job: Job):
    total = get_sampler(job.sampler).reports(job.steps if job.init is None
                                             else job.encoded_steps + 1)

    def callback(i: int, _x: torch.Tensor, denoised: torch.Tensor) -> None:
        report(i, total, denoised, lambda latents: decode(pipe, latents))

    return callback


def hires_pass(pipe: Any, family: Family, settings: Any, conditioning: Conditioning,
               latents: torch.Tensor, seeds: list[int],
               report: StepReport | None, control: Any = None) -> torch.Tensor:
    """The hires fix's second pass: upscaled latents refined by img2img (`control`: the
    ControlNet units, their maps fitted to the hires size)."""
    width, height = (family.rounded(int(side * settings.hires_scale))
                     for side in settings.canvas_size())
    upscaled = upscale_for_hires(pipe, latents, width, height, settings.hires_upscaler)
    steps = settings.hires_steps or settings.steps  # the web UI's fixed-steps img2img:
    total = int(steps / min(settings.hires_strength, 0.999))  # `steps` of a longer schedule
    job = Job(settings.sampler, settings.schedule, total, list(seeds), settings.rng,
              init=upscaled, t_enc=steps - 1)
    units = control.at(width, height) if control is not None else ()
    return _sample(pipe, family, settings, conditioning, job, (width, height), report,
                   units=units)
