"""The diffusion loop: batches of txt2img / img2img / inpaint images from a loaded pipeline.

`run` yields finished images and reports steps through a callback; it never saves or prints
(`generate` in `helpers.diffusion.runner` does). Each image has its own seeded CPU
`torch.Generator`, so an image depends on its seed only (not on the batch it was made in) and
is the same on any device, as with the web UI's CPU RNG.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from helpers.diffusion.conditioning import Encoded, PromptPlan, encode_schedule, plan_prompts
from helpers.diffusion.families import Family
from helpers.diffusion.frames import image_seeds
from helpers.diffusion.guidance import Conditioning, Guidance, composed_unet
from helpers.diffusion.loading import Loaded, pipeline_for
from helpers.diffusion.samplers import get_sampler, runs_on_unet
from helpers.diffusion.sampling.vae import decode
from helpers.diffusion.tools.inpaint import Inpainting, paste_back, split_init
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
        skip: set[int] | frozenset[int] = frozenset(),
        plan: PromptPlan | None = None, control: Any = None) -> Iterator[Generated]:
    """Generate the run's images batch by batch (txt2img, img2img with `init_image`, or
    inpaint when it is an `inpaint.Inpainting`); batches whose images (1-based indices) are all
    in `skip` are not made. `plan`: what the text encoders get (`extras.applied` makes it),
    else the settings' prompts as written; `control`: the ControlNet units
    (`control.run.RunControl`). SD upscale (`tools.sd_upscale`) calls `call_pipeline` per
    tile."""
    init_image, inpaint = split_init(init_image)
    pipe = pipe if pipe is not None else pipeline_for(loaded, settings.sampler,
                                                      init_image is not None)
    plan = plan or plan_prompts(settings.prompt, settings.negative_prompt, settings.prompt_mode)
    first, hires = conditioning_of(pipe, plan, settings, loaded.family, init_image is not None)
    seeds = image_seeds(settings)
    size = settings.batch_size
    for batch in range(settings.batch_count):
        indices = range(batch * size + 1, (batch + 1) * size + 1)
        if all(i in skip for i in indices):
            continue
        batch_seeds = seeds[batch * size:(batch + 1) * size]
        callback = step_callback(batch, on_step) if on_step else None
        images = call_pipeline(pipe, loaded.family, settings, first, batch_seeds, init_image,
                               callback, hires=hires, inpaint=inpaint, control=control)
        for k, image in enumerate(images):
            yield Generated(indices[k], batch_seeds[k], image)


def sd_upscale(settings: DiffusionSettings, loaded: Loaded, upscaling: Any,
               on_step: OnStep | None = None, pipe: Any = None,
               skip: set[int] | frozenset[int] = frozenset(), plan: Any = None,
               control: Any = None) -> Iterator[Generated]:
    """The run's pictures (1-based indices not in `skip`), each the enlarged init image
    img2img'd tile by tile on one pipeline (tile k with the picture's seed + k) and joined."""
    from helpers.diffusion.tools.sd_upscale import (
        join_tiles,
        split_tiles,
        tile_control,
        tile_report,
    )

    seeds = image_seeds(settings)
    todo = [i for i in range(1, len(seeds) + 1) if i not in skip]
    if not todo:
        return
    pipe = pipe if pipe is not None else pipeline_for(loaded, settings.sampler, True)
    plan = plan or plan_prompts(settings.prompt, settings.negative_prompt, settings.prompt_mode)
    conditioning, _ = conditioning_of(pipe, plan, settings, loaded.family, True)
    grid = split_tiles(upscaling.image, settings.width, settings.height,
                       settings.sd_upscale_overlap)
    tiles = grid.tiles()
    for index in todo:
        seed, batch = seeds[index - 1], (index - 1) // settings.batch_size
        made = []
        for k, tile in enumerate(tiles):
            report = tile_report(on_step, batch, k, len(tiles)) if on_step else None
            made += call_pipeline(pipe, loaded.family, settings, conditioning, [seed + k],
                                  tile.image, report, control=tile_control(settings, control,
                                                                           tile.image))
        yield Generated(index, seed, join_tiles(grid.with_images(made)))


def conditioning_of(pipe, plan: PromptPlan, settings: DiffusionSettings, family: Family,
                    img2img: bool = False) -> tuple[Conditioning, Conditioning | None]:
    """The plan's conditioning for the first pass and, with the hires fix, for its pass.

    Prompt editing counts model evaluations as the web UI does: steps times the sampler's
    evaluations per step (2 for second-order samplers), the hires pass after the first.
    """
    per_step = getattr(get_sampler(settings.sampler), "evaluations_per_step", 1)
    total = settings.steps * per_step
    first = encode_schedule(pipe, plan, settings.clip_skip, total)
    if settings.hires_scale <= 1 or img2img or not runs_on_unet(settings.sampler, family):
        return first, None
    hires_total = (settings.hires_steps or settings.steps) * per_step
    return first, encode_schedule(pipe, plan, settings.clip_skip, total, hires_total)


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


def call_pipeline(pipe, family: Family, settings: DiffusionSettings, conditioning: Conditioning,
                  seeds: list[int], init_image: Any, report: Report | None,
                  extra: dict[str, Any] | None = None,
                  hires: Conditioning | None = None,
                  inpaint: Inpainting | None = None, control: Any = None) -> list:
    """One batch: a web-UI (k-diffusion) sampler in helpers.diffusion.sampling, or a diffusers
    scheduler through the pipeline (`extra`: more pipeline arguments; `hires`: the hires pass's
    conditioning, when it differs; `inpaint`: the mask of an inpaint run, whose untouched pixels
    are pasted back over each image; `control`: the ControlNet units, web-UI samplers only);
    returns PIL images."""
    import torch

    if runs_on_unet(settings.sampler, family):
        from helpers.diffusion.sampling.pipeline import generate_batch

        start = (extra or {}).get("latents")
        images = generate_batch(pipe, family, settings, conditioning, seeds, init_image,
                                report, start, hires, inpaint, control)
        return images if inpaint is None else [paste_back(im, inpaint) for im in images]
    if control is not None:  # the check stage refuses it
        raise ValueError(f"sampler: ControlNet runs on the web UI's samplers only, not on "
                         f"{settings.sampler!r}")
    if inpaint is not None or family.inpainting:  # the check stage refuses both
        raise ValueError(f"sampler: inpainting runs on the web UI's samplers only, not on "
                         f"{settings.sampler!r}")
    callback = _diffusers_callback(report) if report else None
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    kwargs = {"num_inference_steps": settings.steps, "guidance_scale": settings.cfg_scale,
              "generator": generators, "output_type": "pil"}
    wrap = not family.takes_embeddings or conditioning.composed or conditioning.scheduled \
        or conditioning.padded  # padded: pieces of different lengths, masked
    if not family.takes_embeddings:  # the UNet is wrapped: the prompts are ours
        kwargs.update(prompt=[""] * len(seeds), height=settings.height, width=settings.width)
    else:
        kwargs.update(_embeds(family, *conditioning.at(0)), num_images_per_prompt=len(seeds))
        kwargs.update(_image_args(family, settings, init_image))
        if callback:
            kwargs.update(callback_on_step_end=callback,
                          callback_on_step_end_tensor_inputs=["latents"])
    kwargs.update(extra or {})
    with torch.no_grad():
        if not wrap:
            return pipe(**kwargs).images
        guidance = Guidance(conditioning, settings.cfg_scale)
        with composed_unet(pipe.unet, guidance, len(seeds)):
            return pipe(**kwargs).images


def _embeds(family: Family, cond: Encoded, uncond: Encoded) -> dict[str, Any]:
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


