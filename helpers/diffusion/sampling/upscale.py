"""The hires fix's upscalers, by the web UI's names (its `Hires upscaler`).

The `Latent` modes resize the first pass's latents with torch's `interpolate` (the web UI's
`shared.latent_upscale_modes`); `None`, `Lanczos` and `Nearest` decode the image, resize it as
the web UI's `images.resize_image` does with that upscaler, and encode it again. `None` is a
single Lanczos resize to the size; `Lanczos` and `Nearest` run the web UI's `Upscaler.upscale`:
steps of the whole scale with their filter (one step when the scale is above 1), a Lanczos
resize to the size rounded down to 8, then to the size. A model upscaler (a catalogue name
such as "R-ESRGAN 4x+", or a .pth / .safetensors file, URL or Hub file) runs the same way: the
model's own passes (tiled, `helpers.diffusion.tools.upscale`) until the picture is at least
the size rounded down to 8, then Lanczos. Nothing heavy is imported here: the settings read
the names.
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
MODEL_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


def model_upscaler_names() -> tuple[str, ...]:
    """The catalogue's model upscalers (not the test ones), by the web UI's names."""
    from helpers.catalog import list_models

    return tuple(m.name for m in list_models("upscaler") if not m.test)


def hires_upscaler(name: str) -> str:
    """`name` spelt as the web UI spells it, whatever its case (our old "latent" and "lanczos"
    too): one of ours, a catalogue upscaler, or a model file, URL or Hub file (kept as it is);
    any other name is a ValueError that lists them."""
    from helpers.diffusion.tools.upscalers import catalogue_upscaler

    found = {n.casefold(): n for n in HIRES_UPSCALERS}.get(name.strip().casefold())
    if found is not None:
        return found
    model = catalogue_upscaler(name)
    if model is not None:
        return model.name
    if name.strip().lower().endswith(MODEL_SUFFIXES):
        return name.strip()
    raise ValueError(f"{name!r} is not one of {', '.join(HIRES_UPSCALERS)}, a model upscaler "
                     f"({', '.join(model_upscaler_names())}; python -m helpers models --kind "
                     "upscaler) or a .pth / .safetensors file, URL or Hub file")


def is_model_upscaler(name: str) -> bool:
    """Whether the hires upscaler `name` (as `hires_upscaler` spells it) is a network."""
    return name not in HIRES_UPSCALERS


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

    model = None
    if is_model_upscaler(name):
        from helpers.diffusion.tools.upscalers import run_upscaler

        model = run_upscaler(name, latents.device)
    images = [upscale_image(image, width, height, name, model)
              for image in decode(pipe, latents)]
    return torch.cat([encode_latents(pipe, image) for image in images])


def upscale_latents(latents: torch.Tensor, size: tuple[int, int], name: str) -> torch.Tensor:
    """Latents resized to `size` (rows, columns) by a `Latent` mode."""
    import torch

    mode, antialias = LATENT_MODES[name]
    return torch.nn.functional.interpolate(latents, size=size, mode=mode, antialias=antialias)


def upscale_image(image: Image.Image, width: int, height: int, name: str,
                  model: Any = None) -> Image.Image:
    """A decoded image resized as the web UI's `images.resize_image(0, ...)` with the
    upscaler `name` (None, Lanczos, Nearest, or a model upscaler given loaded as `model`, a
    `helpers.diffusion.tools.upscalers.Upscaler`)."""
    from PIL import Image

    lanczos = Image.Resampling.LANCZOS
    if model is None and IMAGE_UPSCALERS[name] is None:
        return image.resize((width, height), lanczos)
    scale = max(width / image.width, height / image.height)
    if scale > 1:
        step = _model_step(model) if model is not None else _pil_step(IMAGE_UPSCALERS[name])
        image = _upscaler_steps(image, scale, step)
    return image if image.size == (width, height) else image.resize((width, height), lanczos)


def _pil_step(resample: str) -> Any:
    """One upscaling step of a PIL filter: the whole scale at once."""
    from PIL import Image

    def step(image: Image.Image, scale: float) -> Image.Image:
        return image.resize((int(image.width * scale), int(image.height * scale)),
                            Image.Resampling[resample])

    return step


def _model_step(model: Any) -> Any:
    """One upscaling step of a model: a pass at its own scale (tiled as memory allows)."""
    from helpers.diffusion.tools.upscale import upscale_image as run_model

    return lambda image, scale: run_model(model.model, image)


def _upscaler_steps(image: Image.Image, scale: float, step: Any) -> Image.Image:
    """The web UI's `Upscaler.upscale`: up to three steps until the image reaches the size
    rounded down to 8, then Lanczos to exactly that size."""
    from PIL import Image

    goal = (int(image.width * scale // 8 * 8), int(image.height * scale // 8 * 8))
    for _ in range(3):
        before = image.size
        image = step(image, scale)
        if image.size == before or (image.width >= goal[0] and image.height >= goal[1]):
            break
    if image.size != goal:
        image = image.resize(goal, Image.Resampling.LANCZOS)
    return image
