"""The diffusion loop: batches of txt2img / img2img images from a loaded pipeline.

`run` yields finished images and reports steps through a callback; it never saves or prints
(`generate` in `helpers.diffusion.runner` does). Each image has its own seeded CPU
`torch.Generator`, so an image depends on its seed only (not on the batch it was made in) and
is the same on any device, as with the web UI's CPU RNG.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from helpers.diffusion.conditioning import Encoded, composed_unet, encode_plan, plan_prompts
from helpers.diffusion.families import Family
from helpers.diffusion.frames import image_seeds
from helpers.diffusion.loading import Loaded, run_pipeline
from helpers.diffusion.samplers import runs_on_unet
from helpers.diffusion.sampling.vae import decode
from helpers.settings import DiffusionSettings

# (batch number, step index, steps in all, latents after the step, decode: latents -> images)
OnStep = Callable[[int, int, int, Any, Callable[[Any], list]], None]
Report = Callable[[int, int, Any, Callable[[Any], list]], None]  # one batch's OnStep


@dataclass(frozen=True)
class Generated:
    """One finished image."""

    index: int  # 1-based, over the whole run
    seed: int
    image: Any  # PIL.Image.Image


def run(settings: DiffusionSettings, loaded: Loaded, init_image: Any = None,
        on_step: OnStep | None = None, pipe: Any = None,
        skip: set[int] | frozenset[int] = frozenset()) -> Iterator[Generated]:
    """Generate the run's images batch by batch (txt2img, or img2img with `init_image`);
    batches whose images (1-based indices) are all in `skip` are not made."""
    pipe = pipe if pipe is not None else run_pipeline(loaded, settings.sampler,
                                                      init_image is not None)
    plan = plan_prompts(settings.prompt, settings.negative_prompt, settings.prompt_mode)
    cond, uncond = encode_plan(pipe, plan, settings.clip_skip)
    wrap = plan.composed or not loaded.family.takes_embeddings or cond.length is not None \
        or uncond.length is not None  # lengths: pieces of different lengths, masked
    seeds = image_seeds(settings)
    size = settings.batch_size
    for batch in range(settings.batch_count):
        indices = range(batch * size + 1, (batch + 1) * size + 1)
        if all(i in skip for i in indices):
            continue
        batch_seeds = seeds[batch * size:(batch + 1) * size]
        callback = step_callback(batch, on_step) if on_step else None
        images = call_pipeline(pipe, loaded.family, settings, (cond, uncond, wrap), batch_seeds,
                       init_image, callback)
        for k, image in enumerate(images):
            yield Generated(indices[k], batch_seeds[k], image)


def step_callback(batch: int, on_step: OnStep) -> Report:
    """The per-batch step report of `on_step`."""
    return lambda i, total, latents, decode: on_step(batch, i, total, latents, decode)


def _diffusers_callback(report: Report):
    """A diffusers `callback_on_step_end` feeding the step report."""
    def callback(pipe, i, t, tensors):
        total = getattr(pipe, "num_timesteps", None) or len(pipe.scheduler.timesteps)
        report(i, total, tensors["latents"], lambda latents: decode(pipe, latents))
        return {}

    return callback


def call_pipeline(pipe, family: Family, settings: DiffusionSettings, conditioning, seeds: list[int],
                  init_image: Any, report: Report | None,
                  extra: dict[str, Any] | None = None) -> list:
    """One batch: a web-UI (k-diffusion) sampler in helpers.diffusion.sampling, or a diffusers
    scheduler through the pipeline (`extra`: more pipeline arguments); returns PIL images."""
    import torch

    cond, uncond, wrap = conditioning
    if runs_on_unet(settings.sampler, family):
        from helpers.diffusion.sampling.pipeline import generate

        start = (extra or {}).get("latents")
        return generate(pipe, family, settings, cond, uncond, seeds, init_image, report, start)
    callback = _diffusers_callback(report) if report else None
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    kwargs = {"num_inference_steps": settings.steps, "guidance_scale": settings.cfg_scale,
              "generator": generators, "output_type": "pil"}
    if not family.takes_embeddings:  # the UNet is wrapped: the prompts are ours
        kwargs.update(prompt=[""] * len(seeds), height=settings.height, width=settings.width)
    else:
        kwargs.update(_embeds(family, cond, uncond, wrap), num_images_per_prompt=len(seeds))
        kwargs.update(_image_args(family, settings, init_image))
        if callback:
            kwargs.update(callback_on_step_end=callback,
                          callback_on_step_end_tensor_inputs=["latents"])
    kwargs.update(extra or {})
    with torch.no_grad():
        if not wrap:
            return pipe(**kwargs).images
        with composed_unet(pipe.unet, cond, uncond, len(seeds)):
            return pipe(**kwargs).images


def _embeds(family: Family, cond: Encoded, uncond: Encoded, wrap: bool) -> dict[str, Any]:
    """The pipeline's embedding arguments (the first piece's when the UNet is wrapped)."""
    kwargs = {"prompt_embeds": cond.embeds[:1], "negative_prompt_embeds": uncond.embeds[:1]}
    if family.pooled:
        kwargs.update(pooled_prompt_embeds=cond.pooled[:1],
                      negative_pooled_prompt_embeds=uncond.pooled[:1])
    return kwargs


def _image_args(family: Family, settings: DiffusionSettings, init_image: Any) -> dict[str, Any]:
    if init_image is not None:
        kwargs = {"image": init_image, "strength": settings.strength}
    else:
        kwargs = {"height": settings.height, "width": settings.width}
    if family.size_conditioning and settings.sdxl_original_size:
        width, height = settings.sdxl_original_size
        kwargs["original_size"] = (height, width)
    return kwargs


# --- previews -----------------------------------------------------------------------------------


def fast_preview(latents, family: Family) -> list:
    """PIL previews of latents (B, 4, h, w) by a linear map to RGB, at latent resolution."""
    import torch
    from PIL import Image

    matrix = torch.tensor(family.latent_rgb, dtype=torch.float32)
    rgb = torch.einsum("bchw,cr->bhwr", latents.float().cpu(), matrix)
    pixels = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    return [Image.fromarray(p) for p in pixels]


