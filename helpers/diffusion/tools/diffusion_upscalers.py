"""Stable Diffusion's own upscalers as upscalers: the x4 upscaler and the latent x2 upscaler.

Both are diffusion models that diffusers' pipelines run whole (`StableDiffusionUpscalePipeline`:
a text-guided latent diffusion UNet over the noised low-resolution picture, Rombach et al. 2022,
"High-Resolution Image Synthesis with Latent Diffusion Models", arXiv:2112.10752;
`StableDiffusionLatentUpscalePipeline`: Katherine Crowson's k-diffusion latent upscaler, the
picture encoded by its own SD VAE). `load_diffusion_upscaler` loads one from its catalogue
entry (fetched into the cache) or a local diffusers folder, `.safetensors` only (no pickle
runs), fp16 on a GPU and fp32 on the CPU; `DiffusionUpscaler.upscale_picture` upscales one
PIL picture at the model's scale with a seeded CPU generator, so a result is reproducible.
`tools.upscale.upscale_image` hands a picture to it whole (it is not tiled).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.reporting import Log, no_log

if TYPE_CHECKING:
    from PIL import Image

FIELD = "upscaler"
PIPELINES = {"sd-x4": "StableDiffusionUpscalePipeline",  # catalogue family -> diffusers class
             "sd-latent-x2": "StableDiffusionLatentUpscalePipeline"}
SCALES = {"sd-x4": 4, "sd-latent-x2": 2}  # each family's own upscale factor
STEPS = 20  # denoising steps: fewer than diffusers' 75, as its latent upscaler example uses
NOISE_LEVEL = 20  # the x4's noise added to the low-res picture (diffusers' default; 0-350)
SEED = 0  # the generator's seed: the same picture upscales to the same result


@dataclass(frozen=True, eq=False)
class DiffusionUpscaler:
    """A loaded diffusers upscale pipeline and how it is called on each picture."""

    pipe: Any  # StableDiffusionUpscalePipeline or StableDiffusionLatentUpscalePipeline
    family: str  # one of PIPELINES
    prompt: str = ""  # text guidance (both models take one; "" upscales without a subject)
    steps: int = STEPS  # denoising steps
    noise_level: int = NOISE_LEVEL  # x4 only: noise added to the low-res picture
    guidance_scale: float | None = None  # None: diffusers' default (9)
    seed: int = SEED  # a CPU generator's seed, so CPU and GPU draw the same noise

    @property
    def scale(self) -> int:
        """The model's own scale: 4 or 2."""
        return SCALES[self.family]

    @property
    def device(self) -> Any:
        """The torch device the pipeline runs on."""
        return self.pipe.unet.device

    @property
    def dtype(self) -> Any:
        """The dtype the pipeline's UNet computes in."""
        return self.pipe.unet.dtype

    def arguments(self) -> dict[str, Any]:
        """The pipeline's keyword arguments for one picture (without the picture)."""
        import torch

        kwargs: dict[str, Any] = {"prompt": self.prompt, "num_inference_steps": self.steps,
                                  "generator": torch.Generator().manual_seed(self.seed)}
        if self.family == "sd-x4":
            kwargs["noise_level"] = self.noise_level
        if self.guidance_scale is not None:
            kwargs["guidance_scale"] = self.guidance_scale
        return kwargs

    def upscale_picture(self, image: Image.Image) -> Image.Image:
        """`image` upscaled at the model's scale (its sides first rounded down to the VAE's
        multiple, as the pipeline does); `ValueError` naming `upscaler` when it is smaller."""
        import torch

        check_options(self)
        factor = self.pipe.vae_scale_factor
        if min(image.size) < factor:
            raise ValueError(f"{FIELD}: the {image.width}x{image.height} picture is too small "
                             f"for {self.family}; give at least {factor}x{factor} pixels")
        with torch.inference_mode():
            return self.pipe(image=image.convert("RGB"), **self.arguments()).images[0]


def check_options(upscaler: DiffusionUpscaler) -> None:
    """`ValueError` naming the upscaler setting for options the pipeline cannot take."""
    if upscaler.steps < 1:
        raise ValueError(f"{FIELD}: {upscaler.steps} steps; give 1 or more")
    top = upscaler.pipe.config.get("max_noise_level", 350)
    if upscaler.family == "sd-x4" and not 0 <= upscaler.noise_level <= top:
        raise ValueError(f"{FIELD}: noise level {upscaler.noise_level} is out of range; "
                         f"give 0 to {top}")


def diffusion_family(name: str) -> str | None:
    """The diffusers upscaler family (`PIPELINES`) of the upscaler `name`: its catalogue
    entry's, or a local diffusers folder's whose model_index.json names one; else None."""
    from helpers.catalog import find_named

    model = find_named("upscaler", name)
    if model is not None:
        return model.family if model.family in PIPELINES else None
    return _folder_family(Path(name.strip()).expanduser())


def _folder_family(folder: Path) -> str | None:
    index = folder / "model_index.json"
    if not index.is_file():
        return None
    try:
        name = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None
    return next((f for f, cls in PIPELINES.items() if cls == name), None)


def load_diffusion_upscaler(name: str, family: str, device: Any = "cpu",
                            cache: str | os.PathLike | None = None, log: Log = no_log,
                            progress: bool = False) -> DiffusionUpscaler:
    """The diffusers upscaler `name` of `family` (a catalogue entry, fetched into the cache,
    or a local folder) on `device` ("auto" picks one), fp16 on a GPU, fp32 on the CPU."""
    import torch

    from helpers.catalog import find_named
    from helpers.device import pick_device
    from helpers.download import DownloadError, fetch
    from helpers.precision import weights_dtype

    device = pick_device(device, log) if isinstance(device, str) else torch.device(device)
    model = find_named("upscaler", name)
    try:
        folder = fetch(model, cache=cache, progress=progress, log=log) if model else \
            Path(name.strip()).expanduser()
    except DownloadError as e:
        raise DownloadError(f"{FIELD}: {e}", e.failures) from None
    log(f"loading {model.name if model else folder} ({family}) on {device}")
    pipe = _from_folder(folder, family, weights_dtype("auto", device))
    pipe.set_progress_bar_config(disable=True)
    return DiffusionUpscaler(pipe.to(device), family, steps=STEPS)


def _from_folder(folder: Path, family: str, dtype: Any) -> Any:
    """from_pretrained on the folder, its weights from .safetensors only; `ValueError` naming
    the setting when they are missing or do not load."""
    import diffusers

    from helpers.precision import dtype_kwargs

    cls = getattr(diffusers, PIPELINES[family])
    try:
        return cls.from_pretrained(folder, use_safetensors=True,
                                   **dtype_kwargs("diffusers", dtype))
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        if type(e).__name__ == "OutOfMemoryError":  # the CLI's own message says what to do
            raise
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"{FIELD}: cannot load {folder} as {PIPELINES[family]} "
                         f"(.safetensors weights only; {reason})") from None


__all__ = ["NOISE_LEVEL", "PIPELINES", "SCALES", "SEED", "STEPS", "DiffusionUpscaler",
           "check_options", "diffusion_family",
           "load_diffusion_upscaler"]
