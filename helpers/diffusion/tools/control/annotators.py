"""Preprocessors (annotators): an image -> the control map a ControlNet was trained on.

The extension's preprocessors that need no model zoo, on kornia and transformers. Most run at
a preprocessor resolution as the extension's `resize_image_with_pad` does: the image scaled so
its short side is the resolution (bicubic up, area down), padded by repeating its last row and
column to multiples of 64, processed, and cut back. `control_map` is the whole path: preprocess,
then fit to the generation size (`images.fit`), pixel-perfect resolution if asked.

- `none`: the image is the map; `invert`: 255 - image (white background, black lines);
- `canny`: kornia's Canny on each channel, without blur, thresholds 100 / 200 of 255, an edge
  where any channel has one (see `canny` for how close it is to OpenCV's);
- `threshold`: white where every channel is above the threshold (127);
- `scribble_xdog`: a difference of Gaussians (sigmas 0.5 and 5), white where it is above the
  threshold (32);
- `lineart_standard`: how much darker each pixel is than its Gaussian blur (sigma 6), scaled by
  the median of the clearly dark ones;
- `tile_resample`: shrunk by the down-sampling rate (area), to be enlarged by the fit;
- `depth` (the extension's `depth_anything`): a transformers depth estimator (Depth Anything,
  DPT / MiDaS, ZoeDepth) on the padded image, bilinearly resized to it, min-max normalised to
  0..255 (near is white, rounded down), grey, cut back;
- `inpaint` (`inpaint_map`): the image with the masked pixels at -255, so that the ControlNet
  input (`to_control`: / 255) has them at -1, the ControlNet inpaint model's protocol.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from helpers.diffusion.tools.control import CROP_AND_RESIZE, DEFAULT_RESOLUTION
from helpers.diffusion.tools.control.images import (
    Map,
    area,
    bicubic,
    fit,
    from_pil,
    pixel_perfect_resolution,
    to_control,
)

DEPTH_MODEL = "LiheYoung/depth-anything-large-hf"  # the extension's depth_anything (ViT-L)


@dataclass(frozen=True)
class Preprocessor:
    """One preprocessor: its function and the extension's defaults for its two sliders."""

    function: Callable[..., Map]  # (map, a, b, model) -> map, at the preprocessor resolution
    resolution: bool = True  # whether it runs at the preprocessor resolution
    a: float | None = None  # the first slider's default (thr_a), None if it has none
    b: float | None = None  # the second slider's default (thr_b)
    module: str = ""  # the extension's name for it, where it is not ours (infotext "Module")


def pad64(side: int) -> int:
    """How many pixels take `side` up to a multiple of 64."""
    return int(math.ceil(side / 64.0) * 64 - side)


def at_resolution(image: Map, resolution: int, function: Callable[[Map], Map]) -> Map:
    """`function` on the image scaled to `resolution` on its short side and padded to multiples
    of 64 (edge pixels repeated), cut back to the scaled size."""
    old_h, old_w = image.shape[1:]
    k = resolution / min(old_h, old_w)
    h, w = round(old_h * k), round(old_w * k)
    scaled = bicubic(image, w, h) if k > 1 else area(image, w, h)
    padded = F.pad(scaled[None], (0, pad64(w), 0, pad64(h)), mode="replicate")[0]
    return function(padded)[:, :h, :w]


def _grey3(x: torch.Tensor) -> Map:
    """A one-channel (H, W) result as three equal channels."""
    return x[None].expand(3, *x.shape).clone()


def canny(image: Map, low: float = 100, high: float = 200) -> Map:
    """Canny edges (Canny 1986) through kornia: white on black.

    OpenCV's Canny, which the extension runs on the RGB image, takes each channel's 3x3 Sobel
    gradient, keeps per pixel the channel with the largest L1 norm |gx| + |gy|, and compares it
    with the thresholds on the 0..255 scale. Here kornia's Canny runs on each channel (0..1, so
    the thresholds are t / 255; its blur off: kernel size 1; its norm L2) and a pixel is an edge
    where any channel has one. Against OpenCV on the same images: every edge pixel of the
    sample photo (assets/init.png) are found, and 90% of ours are OpenCV's (IoU 0.90); flat
    shapes IoU 0.99; with pixel noise (sigma 12) IoU 0.39, half of OpenCV's edges found, as the
    L2 norm (below the L1 by up to sqrt(2) on diagonals) leaves more weak noise out. On a grey
    image it is OpenCV's with L2gradient=True (IoU 0.94 to 1).

    The hysteresis is kornia's (a weak pixel joins the edges when an 8-neighbour chain of weak
    pixels links it to a strong one) done as connected components (scipy's label), the same
    edges in one pass where kornia's loop takes a step per pixel of the longest chain (45 s
    for the sample photo at 512 px on a CPU, 0.7 s here).
    """
    import kornia
    import numpy as np
    from scipy import ndimage

    _, edges = kornia.filters.canny(image[:, None] / 255.0, low / 255.0, high / 255.0,
                                    kernel_size=1, hysteresis=False)  # weak 0.5, strong 1
    kept = []
    for channel in edges[:, 0].cpu().numpy():
        labels, _ = ndimage.label(channel > 0, structure=np.ones((3, 3)))
        strong = np.unique(labels[channel == 1])
        kept.append(np.isin(labels, strong[strong > 0]))
    return _grey3(torch.from_numpy(np.stack(kept)).any(0).float() * 255)


def threshold(image: Map, level: float = 127) -> Map:
    """White where every channel is above `level` (the extension's `threshold`)."""
    return _grey3((image.min(0).values > level).float() * 255)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """OpenCV's GaussianBlur of a float image with a size from sigma (round(8 sigma + 1) made
    odd) and its default border (reflect-101)."""
    import kornia

    size = round(sigma * 8 + 1) | 1
    return kornia.filters.gaussian_blur2d(x[None], (size, size), (sigma, sigma),
                                          border_type="reflect")[0]


def scribble_xdog(image: Map, level: float = 32) -> Map:
    """An XDoG scribble: white where twice the fine-minus-coarse blur difference is above
    `level` (Winnemöller 2011; the extension's `scribble_xdog`)."""
    dog = (255 - (_blur(image, 5.0) - _blur(image, 0.5)).min(0).values).clamp(0, 255).floor()
    return _grey3((2 * (255 - dog) > level).float() * 255)


def lineart_standard(image: Map) -> Map:
    """Lines: how much darker than its blur (sigma 6) each pixel is, over the median darkness of
    the pixels darker by more than 8 (at least 16), times 127 (the extension's
    `lineart_standard`)."""
    intensity = (_blur(image, 6.0) - image).min(0).values.clamp(0, 255)
    dark = intensity[intensity > 8]
    median = float(torch.quantile(dark.double(), 0.5)) if dark.numel() else 0.0
    return _grey3((intensity / max(16.0, median) * 127).clamp(0, 255).floor())


def tile_resample(image: Map, rate: float = 1.0) -> Map:
    """The image shrunk by `rate` (area); below 1.1, the image itself (the extension's
    `tile_resample`: the fit then enlarges it to the generation size)."""
    if rate < 1.1:
        return image
    h, w = image.shape[1:]
    return area(image, int(w / rate), int(h / rate))


def depth(image: Map, estimator: tuple[Any, Any]) -> Map:
    """Relative depth from a transformers (model, image processor) pair, bilinearly resized to
    the image, min-max normalised to 0..255 (rounded down), grey (near is white).

    The processor sizes the model's input: Depth Anything's DPT processor to multiples of 14
    around 518 px, scaling as little as possible; the extension's transform takes the larger
    of the two scales. They agree but for an image under 518 px on both sides (a preprocessor
    resolution under 512), which transformers enlarges less."""
    model, processor = estimator
    from PIL import Image

    picture = Image.fromarray(image.permute(1, 2, 0).to(torch.uint8).cpu().numpy())
    inputs = processor(images=picture, return_tensors="pt").to(model.device)
    with torch.no_grad():
        predicted = model(pixel_values=inputs.pixel_values.to(model.dtype)).predicted_depth
    predicted = F.interpolate(predicted[:, None].float(), size=image.shape[1:],
                              mode="bilinear", align_corners=False)[0, 0].cpu()
    low, high = predicted.min(), predicted.max()
    scaled = (predicted - low) / (high - low) * 255 if high > low else predicted * 0
    return _grey3(scaled.floor())


def inpaint_map(image: Map, mask: Map) -> Map:
    """The image with the masked pixels (mask above half) at -255: `to_control` of it is the
    ControlNet inpaint model's input, -1 where to repaint; `images.to_pil` shows them black."""
    masked = (mask.mean(0) > 127.5).float()
    return image * (1 - masked) - 255 * masked


def inpaint_hint(image: Map, mask: Map) -> torch.Tensor:
    """The ControlNet inpaint model's input, (1, 3, H, W): the image in 0..1 with the masked
    pixels (mask above half) at -1 (the extension's inpaint protocol)."""
    return to_control(inpaint_map(image, mask))


PREPROCESSORS: dict[str, Preprocessor] = {
    "none": Preprocessor(lambda x, a, b, m: x, resolution=False),
    "invert": Preprocessor(lambda x, a, b, m: 255 - x, resolution=False),
    "canny": Preprocessor(lambda x, a, b, m: canny(x, a, b), a=100, b=200),
    "threshold": Preprocessor(lambda x, a, b, m: threshold(x, a), a=127),
    "scribble_xdog": Preprocessor(lambda x, a, b, m: scribble_xdog(x, a), a=32),
    "lineart_standard": Preprocessor(lambda x, a, b, m: lineart_standard(x)),
    "tile_resample": Preprocessor(lambda x, a, b, m: tile_resample(x, a), resolution=False,
                                  a=1.0),
    "depth": Preprocessor(lambda x, a, b, m: depth(x, m), module="depth_anything"),
    "inpaint": Preprocessor(lambda x, a, b, m: inpaint_map(x, m), resolution=False),
}
NEEDS = {"depth": "a depth estimator (load_depth_estimator)", "inpaint": "the inpaint mask"}


def preprocess(name: str, image: Any, resolution: int = DEFAULT_RESOLUTION,
               a: float | None = None, b: float | None = None, model: Any = None) -> Map:
    """The control map of an image (PIL or map) by a preprocessor, at its resolution; `a`, `b`:
    its sliders (None: the extension's defaults); `model`: `depth`'s estimator, `inpaint`'s
    mask (a map of the image's size)."""
    found = PREPROCESSORS.get(name)
    if found is None:
        raise ValueError(f"control preprocessor: {name!r} is not one of "
                         f"{', '.join(PREPROCESSORS)}")
    if name in NEEDS and model is None:
        raise ValueError(f"control preprocessor: {name} needs {NEEDS[name]}")
    image = image if torch.is_tensor(image) else from_pil(image)
    a = found.a if a is None else a
    b = found.b if b is None else b
    run = lambda x: found.function(x, a, b, model)  # noqa: E731
    return at_resolution(image, resolution, run) if found.resolution else run(image)


def control_map(name: str, image: Any, width: int, height: int, mode: str = CROP_AND_RESIZE,
                pixel_perfect: bool = False, resolution: int = DEFAULT_RESOLUTION,
                a: float | None = None, b: float | None = None, model: Any = None) -> Map:
    """An image's control map at the generation size: preprocessed (at the pixel-perfect
    resolution if asked), then fitted by the resize mode. `images.to_control` of it is the
    ControlNet's input; `images.to_pil` of it the map to save and show."""
    image = image if torch.is_tensor(image) else from_pil(image)
    if pixel_perfect:
        resolution = pixel_perfect_resolution(*image.shape[1:], height, width, mode)
    return fit(preprocess(name, image, resolution, a, b, model), width, height, mode)


def load_depth_estimator(spec: str = DEPTH_MODEL, cache: str | Path | None = None,
                         device: Any = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """A transformers depth-estimation model and its image processor, from a Hub id (into our
    Hub cache) or a folder."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    from helpers.download import hub_cache

    where = {} if Path(spec).expanduser().is_dir() else {"cache_dir": hub_cache(cache)}
    model = AutoModelForDepthEstimation.from_pretrained(spec, **where)
    try:
        processor = AutoImageProcessor.from_pretrained(spec, **where)
    except ImportError:  # transformers 5.x without torchvision: DPT's PIL processor
        from transformers import DPTImageProcessor

        processor = DPTImageProcessor.from_pretrained(spec, **where)
    model = model.to(device, dtype) if dtype is not None else model.to(device)
    return model.eval(), processor
