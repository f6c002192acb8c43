"""Control maps fitted to the generation size, as the ControlNet extension fits them.

A map here is a (3, H, W) float tensor holding 0..255 integers: the extension's uint8 HWC
array, with its rounding kept wherever it had a uint8 (so the maps agree value for value where
the resampling filters agree). `to_control` gives what a ControlNet takes: (1, 3, H, W) in 0..1.

The resize modes (the extension's `ResizeMode` and `detectmap_proc`), to width x height:
- "Just Resize": stretched to the size;
- "Crop and Resize": scaled by max(height / H, width / W) to round(H k) x round(W k), then the
  centre cut out (offsets (new - target) // 2);
- "Resize and Fill": scaled by the min, centred on a canvas of the median colour of the map's
  border pixels.
The resampling is the extension's `high_quality_resize`: nearest for maps of 3..199 colours
(segmentation), area when shrinking, bicubic when enlarging; a binary map (two colours, the
darkest under 16 and the brightest over 240: edges, scribbles) is resampled, averaged over the
channels and binarised again at Otsu's threshold. The extension also thins one-pixel edges after
enlarging them (its `nake_nms` and `lvmin_thin`): not done here, so an enlarged edge map keeps
edges about as wide as the scale (none are enlarged with pixel-perfect resolution).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from helpers.diffusion.tools.control import (
    CROP_AND_RESIZE,
    JUST_RESIZE,
    RESIZE_AND_FILL,
    RESIZE_MODES,
)

Map = torch.Tensor  # (3, H, W) float32, 0..255 integers


def from_pil(image: Any) -> Map:
    """A PIL image (any mode) as a map: RGB, 0..255."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def to_pil(control: torch.Tensor) -> Any:
    """A map (3, H, W) of 0..255 or a control tensor (1, 3, H, W) of 0..1 as a PIL image, to
    save or show."""
    from PIL import Image

    x = control[0] * 255 if control.ndim == 4 else control
    array = x.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def to_control(control_map: Map) -> torch.Tensor:
    """What a ControlNet takes: (1, 3, H, W) in 0..1 (the extension's map / 255)."""
    return (control_map / 255.0)[None]


def pixel_perfect_resolution(height: int, width: int, target_height: int, target_width: int,
                             mode: str = CROP_AND_RESIZE) -> int:
    """The preprocessor resolution at which the map needs no rescaling for the target: the
    image's short side scaled as the resize mode scales it ("Resize and Fill": by the smaller
    of the two ratios, else the larger), rounded (the extension's `pixel_perfect_resolution`)."""
    _check_mode(mode)
    ratios = (target_height / height, target_width / width)
    k = min(ratios) if mode == RESIZE_AND_FILL else max(ratios)
    return round(k * min(height, width))


def fit(control_map: Map, width: int, height: int, mode: str = CROP_AND_RESIZE) -> Map:
    """The map at width x height by the resize mode (the extension's `detectmap_proc`)."""
    _check_mode(mode)
    if mode == JUST_RESIZE:
        return resize(control_map, width, height)
    old_h, old_w = control_map.shape[1:]
    ratios = (height / old_h, width / old_w)
    k = min(ratios) if mode == RESIZE_AND_FILL else max(ratios)
    scaled = resize(control_map, round(old_w * k), round(old_h * k))
    new_h, new_w = scaled.shape[1:]
    if mode == RESIZE_AND_FILL:
        canvas = border_median(control_map)[:, None, None].expand(3, height, width).clone()
        top, left = max(0, (height - new_h) // 2), max(0, (width - new_w) // 2)
        canvas[:, top:top + new_h, left:left + new_w] = scaled
        return canvas
    top, left = max(0, (new_h - height) // 2), max(0, (new_w - width) // 2)
    return scaled[:, top:top + height, left:left + width]


def border_median(control_map: Map) -> torch.Tensor:
    """The median colour (per channel, rounded down) of the map's four borders."""
    borders = torch.cat([control_map[:, 0], control_map[:, -1], control_map[:, :, 0],
                         control_map[:, :, -1]], dim=1)
    return torch.quantile(borders.double(), 0.5, dim=1).floor().float()


def resize(control_map: Map, width: int, height: int) -> Map:
    """The extension's `high_quality_resize`: the filter chosen by the map's colours and the
    direction; binary maps binarised again (Otsu)."""
    _, old_h, old_w = control_map.shape
    if (old_h, old_w) == (height, width):
        return control_map
    rgb = control_map.round().long()
    colours = len(torch.unique((rgb[0] * 256 + rgb[1]) * 256 + rgb[2]))  # one number a colour
    binary = colours == 2 and control_map.min() < 16 and control_map.max() > 240
    if 2 < colours < 200:
        out = nearest(control_map, width, height)
    elif width * height < old_w * old_h:
        out = area(control_map, width, height)
    else:
        out = bicubic(control_map, width, height)
    if binary:
        grey = out.mean(0).clamp(0, 255).floor()
        out = otsu(grey)[None].expand(3, height, width).clone()
    return out


def nearest(control_map: Map, width: int, height: int) -> Map:
    """Nearest neighbour, source index floor(i * old / new) (OpenCV's INTER_NEAREST)."""
    return F.interpolate(control_map[None], size=(height, width), mode="nearest")[0]


def bicubic(control_map: Map, width: int, height: int) -> Map:
    """Bicubic (a = -0.75, pixel centres aligned, as OpenCV's INTER_CUBIC), rounded to 0..255."""
    out = F.interpolate(control_map[None], size=(height, width), mode="bicubic",
                        align_corners=False)[0]
    return out.round().clamp(0, 255)


def area(control_map: Map, width: int, height: int) -> Map:
    """Each output pixel the mean of the input area it covers (OpenCV's INTER_AREA when
    shrinking), rounded to 0..255."""
    rows = _area_weights(control_map.shape[1], height)
    cols = _area_weights(control_map.shape[2], width)
    out = torch.einsum("ij,cjk,lk->cil", rows, control_map.double(), cols)
    return out.round().clamp(0, 255).float()


def _area_weights(old: int, new: int) -> torch.Tensor:
    """(new, old): the share of each input pixel in each output pixel's span."""
    scale = old / new
    start = torch.arange(new, dtype=torch.float64)[:, None] * scale
    j = torch.arange(old, dtype=torch.float64)[None]
    overlap = (torch.minimum(start + scale, j + 1) - torch.maximum(start, j)).clamp(min=0)
    return overlap / overlap.sum(1, keepdim=True)


def otsu(grey: torch.Tensor) -> torch.Tensor:
    """255 where a 0..255 grey image is above Otsu's threshold (the between-class variance
    of its histogram at its largest; Otsu 1979), else 0."""
    hist = torch.bincount(grey.long().flatten(), minlength=256).double()
    p = hist / hist.sum()
    omega = p.cumsum(0)
    mu = (p * torch.arange(256, dtype=torch.float64)).cumsum(0)
    between = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega))
    threshold = int(torch.nan_to_num(between, nan=-1.0, posinf=-1.0).argmax())
    return (grey > threshold).float() * 255


def _check_mode(mode: str) -> None:
    if mode not in RESIZE_MODES:
        raise ValueError(f"control resize mode: {mode!r} is not one of {RESIZE_MODES}")
