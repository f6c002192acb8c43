"""Inpainting as the Stable Diffusion web UI's img2img inpaint tab does it (its 1.10 behaviour).

Before any model loads (`prepare`): the mask is made binary (an image with transparency gives
its alpha), inverted for "Inpaint not masked", blurred by a Gaussian of the web UI's kernel
size, and then either resized with the image to the run's size ("whole picture") or, for "only
masked", the masked region plus padding, grown to the run's aspect, is cut out of image and mask
and resized to the run's size. The masked content is filled from the colours around it unless
it is "original". That gives an `Inpainting`: the start image and mask at the run's size, and
the overlay that pastes the untouched pixels back over the result (`paste_back`).

While sampling (`helpers.diffusion.sampling`): the start latents' masked area becomes noise or
nothing ("latent noise", "latent nothing"), every denoised prediction is blended with the start
latents by the mask rounded at the latent size (`masked_model`, as the web UI's CFGDenoiser),
and the result once more (`blend`). A dedicated inpainting model (9-channel UNet) also gets the
rounded mask and the masked image's latents beside its latents (`image_conditioning`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from helpers.reporting import Log

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from helpers.settings import DiffusionSettings

Box = tuple[int, int, int, int]  # left, top, right, bottom (PIL's crop box)
# masking.fill's passes: (Gaussian blur radius, how many times the blurred layer is composited)
FILL_PASSES = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))
ALPHA_THRESHOLD = 128  # an alpha mask is binary: above this opacity = masked


@dataclass(frozen=True)
class Inpainting:
    """An inpaint run's pictures, prepared once: what the model starts from and pastes into."""

    image: Image.Image  # RGB at the run's size: the init image (or its crop), filled as asked
    mask: Image.Image  # L at the run's size: the blurred mask the model's masks come from
    overlay: Image.Image  # RGBA at the output's size: the init image, transparent where masked
    masked_content: str  # "original", "fill", "latent noise" or "latent nothing"
    paste_to: tuple[int, int, int, int] | None = None  # only masked: x, y, width, height


def split_init(init: Any) -> tuple[Any, Inpainting | None]:
    """(the start image, the inpainting or None) of what the check stage resolved."""
    return (init.image, init) if isinstance(init, Inpainting) else (init, None)


# --- the mask, before any model loads -----------------------------------------------------------


def read_mask(spec: str, cache: str | os.PathLike | None = None) -> Image.Image:
    """The mask file (path or URL) as an L image: binary from its alpha where it has
    transparency, else its grey levels; a `ValueError` naming `mask` when unreadable."""
    from helpers.inputs import check_size, local_path, opened

    path = local_path(spec, "mask", cache)
    with opened(path, "mask") as image:
        check_size(image, path, "mask")
        try:
            image.load()
            return binary_mask(image)
        except (OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"mask: cannot read {path} as an image ({e})") from None


def binary_mask(image: Image.Image) -> Image.Image:
    """The web UI's `create_binary_mask`: an image whose alpha is not all opaque gives its
    alpha thresholded at 128 (255 = masked); any other, its grey levels."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        if rgba.getextrema()[-1] != (255, 255):
            return rgba.getchannel("A").point(lambda a: 255 if a > ALPHA_THRESHOLD else 0)
    return image.convert("L")


def blur_kernel_size(radius: int) -> int:
    """The web UI's kernel size for a mask blur: 2 * int(2.5 * radius + 0.5) + 1."""
    return 2 * int(2.5 * radius + 0.5) + 1


def blur_mask(mask: Image.Image, radius: int) -> Image.Image:
    """The web UI's mask blur: OpenCV's Gaussian of sigma `radius` over
    `blur_kernel_size(radius)` pixels, across then down, as OpenCV computes it on 8-bit images:
    the kernel in 1/256ths (`fixed_kernel`), each pass rounded to 8 bits, edges mirrored
    without repeating the edge pixel (its default border; scipy's "mirror")."""
    if radius <= 0:
        return mask
    import numpy as np
    from PIL import Image
    from scipy.ndimage import correlate1d

    pixels = np.asarray(mask.convert("L"), dtype=np.int64)
    kernel = fixed_kernel(blur_kernel_size(radius), radius)
    for axis in (1, 0):
        summed = correlate1d(pixels, kernel, axis=axis, mode="mirror", output=np.int64)
        pixels = np.clip((summed + 128) >> 8, 0, 255)
    return Image.fromarray(pixels.astype(np.uint8), "L")


def fixed_kernel(size: int, sigma: float) -> Any:
    """OpenCV's 8-bit Gaussian kernel: the normalised Gaussian of `size` taps in 1/256ths, the
    rounding error of each outer tap carried to the next, the centre tap what makes 256."""
    import numpy as np

    half = size // 2
    values = np.exp(-np.arange(-half, 0, dtype=np.float64) ** 2 / (2 * float(sigma) ** 2))
    values = values * (1 / (2 * values.sum() + 1))
    taps, carried = [], 0.0
    for value in values:
        wanted = value * 256 + carried
        taps.append(round(wanted))  # to even, as OpenCV's cvRound
        carried = wanted - taps[-1]
    return np.array([*taps, 256 - 2 * sum(taps), *taps[::-1]], dtype=np.int64)


def prepared_mask(mask: Image.Image, invert: bool, blur: int) -> Image.Image:
    """The binary mask inverted ("Inpaint not masked") if asked, then blurred."""
    from PIL import ImageOps

    mask = ImageOps.invert(mask.convert("L")) if invert else mask.convert("L")
    return blur_mask(mask, blur)


def check_mask(mask: Image.Image, settings: DiffusionSettings) -> None:
    """A mask that repaints nothing is an error naming the setting that made it."""
    if mask.getbbox() is not None:
        return
    if settings.invert_mask:
        raise ValueError("mask: nothing to repaint: with invert_mask, white is kept and black "
                         f"repainted, and {settings.mask or 'the mask'} is all white")
    if settings.mask_prompt.strip():
        raise ValueError(f"mask_prompt: {settings.mask_prompt!r} was found nowhere in the init "
                         f"image at threshold {settings.mask_threshold:g}; lower mask_threshold "
                         "or name something it shows")
    raise ValueError(f"mask: nothing to repaint: {settings.mask} is all black (white = "
                     "repaint, black = keep)")


def crop_region(mask: Image.Image, padding: int) -> Box | None:
    """The box around the mask's non-zero pixels, grown by `padding` within the image (the
    web UI's `get_crop_region_v2`); None for an all-black mask."""
    box = mask.getbbox()
    if box is None or not padding:
        return box
    width, height = mask.size
    x1, y1, x2, y2 = box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, width), \
        min(y2 + padding, height)


def expand_crop_region(box: Box, width: int, height: int, image_width: int,
                       image_height: int) -> Box:
    """The box grown along one side to the run's aspect width : height, kept inside the
    image (the web UI's `expand_crop_region`: centred, then shifted back in, then clipped)."""
    x1, y1, x2, y2 = box
    if (x2 - x1) / (y2 - y1) > width / height:
        y1, y2 = _grow(y1, y2, int((x2 - x1) / (width / height) - (y2 - y1)), image_height)
    else:
        x1, x2 = _grow(x1, x2, int((y2 - y1) * (width / height) - (x2 - x1)), image_width)
    return x1, y1, x2, y2


def _grow(low: int, high: int, by: int, limit: int) -> tuple[int, int]:
    """One side of a box grown by `by` pixels around its middle, moved back inside 0..limit."""
    low, high = low - by // 2, high + by - by // 2
    if high >= limit:
        low, high = low - (high - limit), limit
    if low < 0:
        low, high = 0, high - low
    return low, min(high, limit)


def resize_and_fill(image: Image.Image, width: int, height: int) -> Image.Image:
    """The web UI's "resize and fill" (`resize_image` mode 2, no upscaler): the image fitted
    inside width x height with Lanczos, centred, the bands left over stretched from its edge
    rows or columns. An RGB image, as the web UI makes it, whatever the input's mode."""
    from PIL import Image

    ratio, source = width / height, image.width / image.height
    fit_w = width if ratio < source else image.width * height // image.height
    fit_h = height if ratio >= source else image.height * width // image.width
    fitted = image.resize((fit_w, fit_h), Image.Resampling.LANCZOS)
    result = Image.new("RGB", (width, height))
    result.paste(fitted, (width // 2 - fit_w // 2, height // 2 - fit_h // 2))
    if ratio < source and (band := height // 2 - fit_h // 2) > 0:
        result.paste(fitted.resize((width, band), box=(0, 0, width, 0)), (0, 0))
        result.paste(fitted.resize((width, band), box=(0, fit_h, width, fit_h)),
                     (0, band + fit_h))
    elif ratio > source and (band := width // 2 - fit_w // 2) > 0:
        result.paste(fitted.resize((band, height), box=(0, 0, 0, height)), (0, 0))
        result.paste(fitted.resize((band, height), box=(fit_w, 0, fit_w, height)),
                     (band + fit_w, 0))
    return result


def crop_and_resize(image: Image.Image, width: int, height: int) -> Image.Image:
    """The web UI's "crop and resize" (`resize_image` mode 1, no upscaler): the image covering
    width x height with Lanczos, centred, the overhang cut off."""
    from PIL import Image

    ratio, source = width / height, image.width / image.height
    cover_w = width if ratio > source else image.width * height // image.height
    cover_h = height if ratio <= source else image.height * width // image.width
    covered = image.resize((cover_w, cover_h), Image.Resampling.LANCZOS)
    result = Image.new("RGB", (width, height))
    result.paste(covered, (width // 2 - cover_w // 2, height // 2 - cover_h // 2))
    return result


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The masked area filled from the colours around it (the web UI's `masking.fill`): the
    unmasked pixels, blurred ever less (radius 256 down to 0), composited layer over layer."""
    from PIL import Image, ImageFilter, ImageOps

    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    filled = Image.new("RGBA", image.size)
    for radius, times in FILL_PASSES:
        layer = kept.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(times):
            filled.alpha_composite(layer)
    return filled.convert("RGB")


def overlay(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The init image as an RGBA layer whose opacity is the mask's inverse: pasted over a
    result, it keeps every pixel the mask leaves at 0 exactly."""
    from PIL import Image, ImageOps

    layer = Image.new("RGBa", image.size)
    layer.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    return layer.convert("RGBA")


def prepare(init: Image.Image, mask: Image.Image, settings: DiffusionSettings,
            log: Log = print) -> Inpainting:
    """An inpaint run's pictures from the init image and the binary mask, both at the init
    image's own size (a mask of another size is resized to it, with a message)."""
    from PIL import Image

    if mask.size != init.size:
        log(f"mask: {mask.width}x{mask.height} resized to the init image's "
            f"{init.width}x{init.height}")
        mask = mask.resize(init.size, Image.Resampling.LANCZOS)
    mask = prepared_mask(mask, settings.invert_mask, settings.mask_blur)
    check_mask(mask, settings)
    size = (settings.width, settings.height)
    if settings.inpaint_area == "only masked":
        box = expand_crop_region(crop_region(mask, settings.inpaint_padding), *size, *init.size)
        work_mask = resize_and_fill(mask.crop(box), *size).convert("L")
        image = resize_and_fill(init.crop(box), *size)
        layer, paste_to = overlay(init, mask), (box[0], box[1], box[2] - box[0], box[3] - box[1])
    else:
        return whole_picture(init, mask, size, settings.masked_content)
    if settings.masked_content != "original":
        image = fill(image, work_mask)
    return Inpainting(image, work_mask, layer, settings.masked_content, paste_to)


def whole_picture(image: Image.Image, mask: Image.Image, size: tuple[int, int],
                  masked_content: str) -> Inpainting:
    """Inpaint area "whole picture": image and prepared mask resized to the run's `size`, the
    masked area filled unless `masked_content` is "original". The web UI doubles the mask for
    the overlay there: only its outer half blends."""
    from PIL import Image

    work_mask = mask.resize(size, Image.Resampling.LANCZOS)
    image = image.resize(size, Image.Resampling.LANCZOS)
    layer = overlay(image, work_mask.point(lambda v: min(2 * v, 255)))
    if masked_content != "original":
        image = fill(image, work_mask)
    return Inpainting(image, work_mask, layer, masked_content)


def inpainting_of(settings: DiffusionSettings, init: Image.Image,
                  cache: str | os.PathLike | None = None, log: Log = print) -> Inpainting:
    """The settings' mask (a file, or words through CLIPSeg) over the init image (its own
    size), prepared; `ValueError` naming the setting for a bad mask."""
    if settings.mask_prompt.strip():
        from helpers.diffusion.tools.mask_words import mask_from_words

        mask = mask_from_words(init, settings.mask_prompt, settings.mask_threshold,
                               settings.mask_dilation, cache, log, settings.mask_model)
    else:
        mask = read_mask(settings.mask, cache)
    return prepare(init, binary_mask(mask), settings, log)


def paste_back(image: Image.Image, inpainting: Inpainting) -> Image.Image:
    """A generated image with the untouched pixels pasted back (the web UI's
    `apply_overlay`): only masked, the image is first fitted into its region of the init
    image (crop and resize); the result has the output's size."""
    from PIL import Image

    if inpainting.paste_to is not None:
        x, y, width, height = inpainting.paste_to
        canvas = Image.new("RGBA", inpainting.overlay.size)
        canvas.paste(crop_and_resize(image, width, height), (x, y))
        image = canvas
    image = image.convert("RGBA")
    image.alpha_composite(inpainting.overlay)
    return image.convert("RGB")


# --- while sampling -------------------------------------------------------------------------


def latent_mask(mask: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """(1, 1, h, w) float32: 1 where to repaint, the mask resized to the latent `size` (w, h)
    as the web UI resizes it (PIL's default bicubic, on its RGB copy) and rounded to 0 / 1."""
    import numpy as np
    import torch

    small = np.asarray(mask.convert("RGB").resize(size), dtype=np.float32)[..., 0] / 255
    return torch.from_numpy(small).round()[None, None]


def start_latents(init: torch.Tensor, mask: torch.Tensor, masked_content: str,
                  noise: torch.Tensor) -> torch.Tensor:
    """The latents sampling starts from: the masked area replaced by `noise` (latent noise,
    each image's first draw as in the web UI) or by zeros (latent nothing)."""
    if masked_content == "latent noise":
        return init * (1 - mask) + noise * mask
    if masked_content == "latent nothing":
        return init * (1 - mask)
    return init


def blend(denoised: torch.Tensor, init: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The denoised latents inside the mask, the start latents outside it."""
    return denoised * mask + init * (1 - mask)


def masked_model(model: Callable[[Any, Any], Any], init: torch.Tensor,
                 mask: torch.Tensor) -> Callable[[Any, Any], Any]:
    """A denoiser whose every prediction is blended with the start latents by the mask: the web
    UI's CFGDenoiser after guidance (its "mask before denoising" is off by default)."""
    return lambda x, sigma: blend(model(x, sigma), init, mask)


def image_conditioning(pipe: Any, inpainting: Inpainting | None,
                       size: tuple[int, int]) -> torch.Tensor:
    """(1, 5, h, w): what an inpainting UNet takes beside its latents (the web UI's
    `inpainting_image_conditioning`, mask weight 1): the mask rounded at full size then
    taken to the latent size (nearest), and the latents of the start image with the masked
    area grey (image x (1 - mask), on the -1..1 scale). Without a mask (txt2img, img2img):
    all masked, the latents of a grey image."""
    import numpy as np
    import torch

    from helpers.diffusion.sampling.vae import encode_pixels

    width, height = size
    if inpainting is None:
        pixels, mask = torch.zeros(1, 3, height, width), torch.ones(1, 1, height, width)
    else:
        image = np.asarray(inpainting.image.convert("RGB"), dtype=np.float32) / 127.5 - 1
        pixels = torch.from_numpy(image).permute(2, 0, 1)[None]
        mask = torch.from_numpy(np.asarray(inpainting.mask.convert("L"), dtype=np.float32)
                                / 255).round()[None, None]
    latents = encode_pixels(pipe, pixels * (1 - mask))
    mask = torch.nn.functional.interpolate(mask, size=latents.shape[-2:])
    return torch.cat([mask.to(latents), latents], dim=1)
