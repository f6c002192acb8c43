"""The hires fix's upscalers, by the web UI's names (its `Hires upscaler`).

The `Latent` modes resize the first pass's latents with torch's `interpolate` (the web UI's
`shared.latent_upscale_modes`); `None`, `Lanczos` and `Nearest` decode the image, resize it as
the web UI's `images.resize_image` does with that upscaler, and encode it again. `None` is a
single Lanczos resize to the size; `Lanczos` and `Nearest` run the web UI's `Upscaler.upscale`:
steps of the whole scale with their filter (one step when the scale is above 1), a Lanczos
resize to the size rounded down to 8, then to the size. Model upscalers (R-ESRGAN, SwinIR, ...)
are not available yet. Nothing heavy is imported here: the settings read the names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL import Image

# name -> (torch interpolate mode, antialias), as the web UI's `latent_upscale_modes`
LATENT_MODES = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
# name -> the PIL filter of its upscaling steps (None: no upscaler, one Lanczos resize)
IMAGE_UPSCALERS = {"None": None, "Lanczos": "LANCZOS", "Nearest": "NEAREST"}
HIRES_UPSCALERS = (*LATENT_MODES, *IMAGE_UPSCALERS)
MODEL_UPSCALERS = "R-ESRGAN 4x+, ESRGAN_4x, SwinIR 4x, ScuNET, LDSR, DAT"  # the web UI's own


def hires_upscaler(name: str) -> str:
    """`name` spelt as the web UI spells it, whatever its case (our old "latent" and "lanczos"
    too); any other name is a ValueError that lists ours."""
    found = {n.casefold(): n for n in HIRES_UPSCALERS}.get(name.casefold())
    if found is None:
        raise ValueError(f"{name!r} is not one of {', '.join(HIRES_UPSCALERS)}; the web UI's "
                         f"model upscalers ({MODEL_UPSCALERS}, ...) are not available yet")
    return found


def upscale_for_hires(pipe: Any, latents: torch.Tensor, width: int, height: int,
                      name: str) -> torch.Tensor:
    """First-pass latents (unit scale) -> the hires pass's start latents, for `width` x
    `height` pixels, upscaled by the hires upscaler `name`."""
    name = hires_upscaler(name)
    factor = pipe.vae_scale_factor
    if name in LATENT_MODES:
        return upscale_latents(latents, (height // factor, width // factor), name)
    import torch

    from helpers.diffusion.sampling.vae import decode, encode_latents

    images = [upscale_image(image, width, height, name) for image in decode(pipe, latents)]
    return torch.cat([encode_latents(pipe, image) for image in images])


def upscale_latents(latents: torch.Tensor, size: tuple[int, int], name: str) -> torch.Tensor:
    """Latents resized to `size` (rows, columns) by a `Latent` mode."""
    import torch

    mode, antialias = LATENT_MODES[name]
    return torch.nn.functional.interpolate(latents, size=size, mode=mode, antialias=antialias)


def upscale_image(image: Image.Image, width: int, height: int, name: str) -> Image.Image:
    """A decoded image resized as the web UI's `images.resize_image(0, ...)` with the
    upscaler `name` (None, Lanczos or Nearest)."""
    from PIL import Image

    lanczos = Image.Resampling.LANCZOS
    if IMAGE_UPSCALERS[name] is None:
        return image.resize((width, height), lanczos)
    scale = max(width / image.width, height / image.height)
    if scale > 1:
        image = _upscaler_steps(image, scale, Image.Resampling[IMAGE_UPSCALERS[name]])
    return image if image.size == (width, height) else image.resize((width, height), lanczos)


def _upscaler_steps(image: Image.Image, scale: float, resample: Any) -> Image.Image:
    """The web UI's `Upscaler.upscale`: up to three steps of `scale` until the image reaches the
    size rounded down to 8, then Lanczos to exactly that size."""
    from PIL import Image

    goal = (int(image.width * scale // 8 * 8), int(image.height * scale // 8 * 8))
    for _ in range(3):
        before = image.size
        image = image.resize((int(image.width * scale), int(image.height * scale)), resample)
        if image.size == before or (image.width >= goal[0] and image.height >= goal[1]):
            break
    if image.size != goal:
        image = image.resize(goal, Image.Resampling.LANCZOS)
    return image
