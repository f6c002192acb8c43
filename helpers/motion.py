"""Frame-to-frame image operations of the animations: 2-D motion, noise, colour coherence.

Images are (1, 3, H, W) tensors in [0, 1]. The motion follows Deforum's 2D mode (itself
OpenCV's conventions): zoom > 1 zooms in, a positive angle turns counter-clockwise (degrees),
positive translation moves the picture right and down (pixels); what comes in at the borders
repeats the edge pixels ("stretch"), or, with the animations' motion_border "outpaint", is
filled from the colours around it (`warp_exposed` says which pixels came from outside the
picture, `fill_exposed` paints them as the web UI's masked content "fill"). Colour coherence
matches each LAB channel's histogram to a reference frame, as Deforum's "LAB" colour coherence
does with scikit-image's `match_histograms`.
"""

from __future__ import annotations

from typing import Any

import torch

# A pixel whose bilinear sample takes more than this share from outside the source is exposed.
EXPOSED_SHARE = 0.01


def warp(image: torch.Tensor, zoom: float = 1.0, angle: float = 0.0, tx: float = 0.0,
         ty: float = 0.0) -> torch.Tensor:
    """The image zoomed and turned about its centre, then moved by (tx, ty) pixels."""
    from kornia.geometry.transform import warp_affine

    if (zoom, angle, tx, ty) == (1.0, 0.0, 0.0, 0.0):
        return image
    height, width = image.shape[-2:]
    matrix = _motion_matrix(height, width, zoom, angle, tx, ty, image.device)
    moved = warp_affine(image.float(), matrix, (height, width), padding_mode="border")
    return moved.clamp(0, 1).to(image.dtype)


def warp_exposed(image: torch.Tensor, zoom: float = 1.0, angle: float = 0.0, tx: float = 0.0,
                 ty: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(`warp`'s image, the pixels the motion exposed): (1, 1, H, W) bool, True where the moved
    picture samples more than `EXPOSED_SHARE` from outside its source."""
    from kornia.geometry.transform import warp_affine

    height, width = image.shape[-2:]
    moved = warp(image, zoom, angle, tx, ty)
    if moved is image:
        return moved, torch.zeros(1, 1, height, width, dtype=torch.bool, device=image.device)
    matrix = _motion_matrix(height, width, zoom, angle, tx, ty, image.device)
    inside = torch.ones(1, 1, height, width, device=image.device)
    inside = warp_affine(inside, matrix, (height, width), padding_mode="zeros")
    return moved, inside < 1 - EXPOSED_SHARE


def _motion_matrix(height: int, width: int, zoom: float, angle: float, tx: float, ty: float,
                   device: Any) -> torch.Tensor:
    """(1, 2, 3) float32: the affine map of `warp` (OpenCV's rotation matrix, then the move)."""
    from kornia.geometry.transform import get_rotation_matrix2d

    options = {"device": device, "dtype": torch.float32}
    center = torch.tensor([[(width - 1) / 2, (height - 1) / 2]], **options)
    matrix = get_rotation_matrix2d(center, torch.tensor([float(angle)], **options),
                                   torch.tensor([[float(zoom), float(zoom)]], **options))
    matrix[:, 0, 2] += tx
    matrix[:, 1, 2] += ty
    return matrix


def fill_exposed(image: torch.Tensor, exposed: torch.Tensor) -> torch.Tensor:
    """`image` with its `exposed` pixels ((1, 1, H, W) bool) painted from the colours around
    them (the web UI's masked content "fill", `inpaint.fill`, in 8 bits); every other pixel is
    `image`'s own."""
    if not bool(exposed.any()):
        return image
    from helpers.diffusion.tools.inpaint import fill

    filled = to_tensor(fill(to_pil(image), mask_image(exposed)), image.device)
    return torch.where(exposed, filled.to(image.dtype), image)


def mask_image(mask: torch.Tensor) -> Any:
    """A (1, 1, H, W) bool mask -> a PIL "L" image, 255 where True (the inpaint masks' way)."""
    from PIL import Image

    return Image.fromarray(mask[0, 0].cpu().numpy().astype("uint8") * 255)


def moved_frame(image: torch.Tensor, motion: tuple[float, float, float, float],
                border: str = "stretch") -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the frame moved by (zoom, angle, tx, ty), the pixels it exposed): with `border`
    "stretch", `warp` alone (the edge pixels drawn out; no mask: None); with "outpaint", the
    exposed pixels filled from the colours around them (`fill_exposed`)."""
    if border == "stretch":
        return warp(image, *motion), None
    if border != "outpaint":
        raise ValueError(f"motion_border: {border!r} is not stretch or outpaint")
    moved, exposed = warp_exposed(image, *motion)
    return fill_exposed(moved, exposed), exposed


def add_noise(image: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise of standard deviation `amount` (in [0, 1] units), seeded, clamped."""
    if amount <= 0:
        return image
    noise = torch.randn(image.shape, generator=generator, dtype=torch.float32)
    return (image + amount * noise.to(image.device, image.dtype)).clamp(0, 1)


def match_colors(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`image` with each LAB channel's histogram matched to `reference`'s (same device)."""
    from kornia.color import lab_to_rgb, rgb_to_lab

    lab = rgb_to_lab(image.float())
    target = rgb_to_lab(reference.float())
    matched = torch.stack([match_histogram(lab[:, c], target[:, c]) for c in range(3)], dim=1)
    return lab_to_rgb(matched).clamp(0, 1).to(image.dtype)


def match_histogram(source: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """`source`'s values mapped so their distribution is `template`'s (quantile matching)."""
    _values, inverse, counts = torch.unique(source.flatten(), return_inverse=True,
                                           return_counts=True)
    t_values, t_counts = torch.unique(template.flatten(), return_counts=True)
    quantiles = counts.cumsum(0).double() / source.numel()
    t_quantiles = t_counts.cumsum(0).double() / template.numel()
    mapped = interp(quantiles, t_quantiles, t_values.double())
    return mapped[inverse].reshape(source.shape).to(source.dtype)


# torch has no interp: this one keeps match_colors on its tensors' device (no NumPy round trip).
def interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """numpy.interp for 1-D tensors: piecewise linear through (xp, fp), held at the ends."""
    if len(xp) == 1:
        return fp.expand_as(x).clone()
    right = torch.searchsorted(xp, x).clamp(1, len(xp) - 1)
    left = right - 1
    span = (xp[right] - xp[left]).clamp_min(torch.finfo(xp.dtype).tiny)
    u = ((x - xp[left]) / span).clamp(0, 1)
    return fp[left] + u * (fp[right] - fp[left])


def to_tensor(image: Any, device: Any = "cpu") -> torch.Tensor:
    """A PIL image -> (1, 3, H, W) float in [0, 1]."""
    import numpy as np

    array = torch.from_numpy(np.asarray(image.convert("RGB")).copy())
    return array.permute(2, 0, 1).unsqueeze(0).float().div(255).to(device)


def to_pil(image: torch.Tensor) -> Any:
    """(1, 3, H, W) in [0, 1] -> a PIL image (rounded to 8 bits)."""
    from PIL import Image

    array = image[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def slerp(a: torch.Tensor, b: torch.Tensor, u: float) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (linear where they are parallel);
    u = 0 gives exactly `a` and u = 1 exactly `b`."""
    if u == 0:
        return a
    if u == 1:
        return b
    a64, b64 = a.double(), b.double()
    cos = (a64 * b64).sum() / (a64.norm() * b64.norm())
    theta = torch.arccos(cos.clamp(-1, 1))
    if theta.abs() < 1e-4:
        return ((1 - u) * a64 + u * b64).to(a.dtype)
    mixed = (torch.sin((1 - u) * theta) * a64 + torch.sin(u * theta) * b64) / torch.sin(theta)
    return mixed.to(a.dtype)
