"""The VAE, both ways, for every sampling path: images to latents (img2img, the hires fix) and
latents to images (results, previews, trajectories), with SDXL's fp16 VAE run in fp32.

Latents here are unit scale (the VAE's own latents times its `scaling_factor`), as samplers and
diffusers' schedulers use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def encode_latents(pipe: Any, image: Any) -> torch.Tensor:
    """A PIL image -> its latents (unit scale): the mean of the VAE's latent distribution."""
    return encode_pixels(pipe, pipe.image_processor.preprocess(image))


def encode_pixels(pipe: Any, pixels: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) on the -1..1 scale -> their latents (unit scale): the mean of the
    VAE's latent distribution."""
    vae = pipe.vae
    with torch.no_grad(), upcast_vae(vae):
        pixels = pixels.to(vae.device, vae.dtype)
        latents = vae.encode(pixels).latent_dist.mode()
    return latents.float() * vae.config.scaling_factor


def decode(pipe: Any, latents: torch.Tensor) -> list:
    """Latents (unit scale) -> PIL images through the VAE."""
    vae = pipe.vae
    with torch.no_grad(), upcast_vae(vae):
        scaled = (latents / vae.config.scaling_factor).to(vae.device, vae.dtype)
        pixels = vae.decode(scaled, return_dict=False)[0]
    return pipe.image_processor.postprocess(pixels.float(), output_type="pil")


@contextmanager
def upcast_vae(vae: Any) -> Iterator[None]:
    """SDXL's VAE overflows in fp16: run it in fp32 inside the block, as the pipelines do."""
    dtype = vae.dtype
    needed = dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if needed:
        vae.to(torch.float32)
    try:
        yield
    finally:
        if needed:
            vae.to(dtype)
