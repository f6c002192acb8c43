"""CLIP guidance for VQGAN+CLIP: cutouts, augmentations, prompt losses, gradient tricks.

The method is Katherine Crowson's VQGAN+CLIP (2021; described in Crowson et al., "VQGAN-CLIP:
Open Domain Image Generation and Editing with Natural Language Guidance", arXiv:2204.08583).
The cutouts follow her notebook and nerdyrodent/VQGAN-CLIP exactly (Lanczos resampling, the
augmentation presets, per-cutout noise, the order of the random draws);
tests/test_vqgan_clip_reference.py holds them to a transcription of those formulas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def replace_grad(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """The value of `forward` with the gradient of `backward`."""
    return forward.detach() + (backward - backward.detach())  # exactly `forward`


class _ClampWithGrad(torch.autograd.Function):
    """Clamp whose gradient is kept only where it pushes a value back into range."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bounds = (lo, hi)
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        outside = x - x.clamp(*ctx.bounds)
        return grad * (grad * outside >= 0), None, None


def clamp_with_grad(x: torch.Tensor, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """Clamp `x` to [lo, hi]; outside values still get gradients that move them inwards."""
    return _ClampWithGrad.apply(x, lo, hi)


def spherical_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance between unit vectors (halved chord -> arcsin, times 2)."""
    return (x - y).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


@dataclass
class Target:
    """One prompt term: unit embeddings (n, D), a signed weight and a stop floor."""

    embeds: torch.Tensor
    weight: float = 1.0
    stop: float = float("-inf")


def prompt_loss(image_embeds: torch.Tensor, target: Target) -> torch.Tensor:
    """|w| * sign(w) * spherical distance, averaged over cutouts, no gradient below `stop`."""
    dists = spherical_distance(image_embeds.unsqueeze(1), target.embeds.unsqueeze(0))
    dists = dists * math.copysign(1.0, target.weight)
    floored = torch.clamp(dists, min=target.stop)
    return abs(target.weight) * replace_grad(dists, floored).mean()


def noise_target(seed: int, dim: int, weight: float = 1.0, stop: float = float("-inf")) -> Target:
    """A seeded random direction in CLIP space (a "noise prompt")."""
    gen = torch.Generator().manual_seed(seed)
    embed = torch.randn(1, dim, generator=gen)
    return Target(F.normalize(embed, dim=-1), weight, stop)


# --- augmentations --------------------------------------------------------------------------


def _crowson2021() -> list[nn.Module]:
    """Katherine Crowson's 2021 notebook (z+quantize with augmentations), in its order.

    The notebook ran kornia 0.5, whose `ColorJitter` kornia renamed `ColorJiggle` in 2022
    (kornia PR #1611) when `ColorJitter` became torchvision's formulas; the behaviour is kept.
    """
    import kornia.augmentation as K

    return [
        K.RandomHorizontalFlip(p=0.5),
        K.RandomSharpness(0.3, p=0.4),
        K.RandomAffine(degrees=30, translate=0.1, p=0.8, padding_mode="border"),
        K.RandomPerspective(0.2, p=0.4),
        K.ColorJiggle(hue=0.01, saturation=0.01, p=0.7),
    ]


def _nerdyrodent() -> list[nn.Module]:
    """nerdyrodent/VQGAN-CLIP's default augments (Af, Pe, Ji, Er of its generate.py, kornia 0.5)."""
    import kornia.augmentation as K

    return [
        K.RandomAffine(degrees=15, translate=0.1, shear=5, p=0.7, padding_mode="zeros",
                       keepdim=True),
        K.RandomPerspective(distortion_scale=0.7, p=0.7),
        K.ColorJiggle(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.1, p=0.7),
        K.RandomErasing(scale=(0.1, 0.4), ratio=(0.3, 1 / 0.3), same_on_batch=True, p=0.7),
    ]


AUGMENT_PRESETS = {"crowson2021": _crowson2021, "nerdyrodent": _nerdyrodent}


def _augment(name: str, size: int) -> nn.Module:
    import kornia.augmentation as K

    factories = {
        "flip": lambda: K.RandomHorizontalFlip(p=0.5),
        "affine": lambda: K.RandomAffine(degrees=15, translate=(0.1, 0.1), shear=5, p=0.7,
                                         padding_mode="border"),
        "perspective": lambda: K.RandomPerspective(0.7, p=0.7),
        "jitter": lambda: K.ColorJitter(hue=0.1, saturation=0.1, p=0.7),
        "erasing": lambda: K.RandomErasing((0.1, 0.4), (0.3, 1 / 0.3), same_on_batch=True, p=0.7),
        "sharpness": lambda: K.RandomSharpness(0.3, p=0.4),
        "noise": lambda: K.RandomGaussianNoise(mean=0.0, std=0.1, p=0.5),
        "rotation": lambda: K.RandomRotation(degrees=15, p=0.7),
        "resized_crop": lambda: K.RandomResizedCrop((size, size), scale=(0.1, 1), p=0.5),
        "thin_plate_spline": lambda: K.RandomThinPlateSpline(scale=0.8, same_on_batch=True, p=0.5),
    }
    if name not in factories:
        known = ", ".join([*AUGMENT_PRESETS, *factories])
        raise ValueError(f"augments: unknown augmentation {name!r}; use {known}")
    return factories[name]()


def augment_pipeline(names: Sequence[str], cut_size: int) -> nn.Sequential:
    """The cutouts' kornia augmentations: a preset's exact pipeline (a preset name alone), or
    the named augmentations in the order given."""
    names = tuple(names)
    presets = [n for n in names if n in AUGMENT_PRESETS]
    if presets and len(names) > 1:
        raise ValueError(f"augments: the preset {presets[0]!r} stands alone (got "
                         f"{', '.join(names)}); name augmentations without it for your own list")
    if presets:
        return nn.Sequential(*AUGMENT_PRESETS[presets[0]]())
    return nn.Sequential(*(_augment(a, cut_size) for a in names))


# --- resampling and noise -------------------------------------------------------------------


def lanczos_taps(ratio: float, a: int = 2) -> torch.Tensor:
    """Lanczos-`a` low-pass taps for shrinking by `ratio` (< 1), one per input pixel, sum 1.

    sinc(x) sinc(x / a) with x in output pixels, sampled every `ratio` of one, out to the last
    whole step inside `a / ratio + 1`: the taps of the VQGAN+CLIP notebooks' `resample`.
    """
    half = math.ceil(a / ratio + 1) - 2
    x = torch.arange(-half, half + 1, dtype=torch.float64) * ratio
    taps = torch.where(x.abs() < a, torch.sinc(x) * torch.sinc(x / a), x.new_zeros(()))
    return (taps / taps.sum()).float()


def _lowpass(x: torch.Tensor, ratio: float, dim: int) -> torch.Tensor:
    """Lanczos low-pass of (N, C, H, W) along rows (dim 2) or columns (dim 3), reflect-padded.

    A product with the taps over sliding windows: what a 1-D convolution computes, many times
    faster than conv2d on the CPU for these one-off shapes.
    """
    taps = lanczos_taps(ratio).to(x.device, x.dtype)
    pad = (len(taps) - 1) // 2
    padding = (0, 0, pad, pad) if dim == 2 else (pad, pad, 0, 0)
    return F.pad(x, padding, mode="reflect").unfold(dim, len(taps), 1) @ taps


def resample(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, *size): a separable Lanczos-2 low-pass along each axis that
    shrinks (no aliasing), then bicubic interpolation with align_corners=True."""
    height, width = image.shape[2:]
    if size[0] < height:
        image = _lowpass(image, size[0] / height, dim=2)
    if size[1] < width:
        image = _lowpass(image, size[1] / width, dim=3)
    return F.interpolate(image, size, mode="bicubic", align_corners=True)


def add_noise(batch: torch.Tensor, noise_fac: float) -> torch.Tensor:
    """Each cutout plus Gaussian noise of its own strength, drawn uniformly from [0, noise_fac]."""
    if not noise_fac:
        return batch
    strength = torch.empty(len(batch), 1, 1, 1, device=batch.device, dtype=batch.dtype)
    return batch + strength.uniform_(0, noise_fac) * torch.randn_like(batch)


# --- cutouts --------------------------------------------------------------------------------


class Cutouts(nn.Module):
    """`cutn` views of the image at CLIP's input size: cutouts, augmentations, then noise.

    method "classic" (Crowson's notebook): squares of side rand**cut_pow between the cut size
    and the image's short side at random places, each `resample`d to the cut size; "pooled"
    (nerdyrodent's "latest"): the whole image average- and max-pooled, repeated cutn times, so
    the augmentations and noise alone make the views differ. The random draws come in the
    reference's order (per cutout its side, x, y; the augmentations; then the noise), so a seed
    gives the reference's views. Without augmentations and noise the views are clamped to
    [0, 1] with `clamp_with_grad`, as in the references' plain cutouts (Crowson's first
    notebook, nerdyrodent's cut method "original"); their augmented cutouts are not clamped.
    """

    def __init__(self, cut_size: int, cutn: int, cut_pow: float = 1.0,
                 augments: Sequence[str] = (), method: str = "classic", noise_fac: float = 0.1):
        super().__init__()
        if method not in ("classic", "pooled"):
            raise ValueError(f"cut_method: must be 'classic' or 'pooled' (got {method!r})")
        self.cut_size, self.cutn, self.cut_pow, self.method = cut_size, cutn, cut_pow, method
        self.noise_fac = noise_fac
        self.augs = augment_pipeline(augments, cut_size)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) in [0, 1] -> (cutn, 3, cut_size, cut_size)."""
        if self.method == "pooled":
            views = self.pooled(image)
        else:
            views = self.crops(image, self.boxes(*image.shape[2:]))
        if not len(self.augs) and not self.noise_fac:
            return clamp_with_grad(views, 0.0, 1.0)  # the plain cutouts: Lanczos overshoot clamped
        if len(self.augs):
            views = self.augs(views)
        return add_noise(views, self.noise_fac)

    def boxes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """`cutn` random squares (y, x, side) inside a height x width image."""
        max_size, min_size = min(height, width), min(height, width, self.cut_size)
        boxes = []
        for _ in range(self.cutn):
            size = int(torch.rand(()) ** self.cut_pow * (max_size - min_size) + min_size)
            x = int(torch.randint(0, width - size + 1, ()))
            y = int(torch.randint(0, height - size + 1, ()))
            boxes.append((y, x, size))
        return boxes

    def crops(self, image: torch.Tensor, boxes: Sequence[tuple[int, int, int]]) -> torch.Tensor:
        """The squares (y, x, side) of the image, each resampled to the cut size."""
        size = (self.cut_size, self.cut_size)
        return torch.cat([resample(image[:, :, y : y + s, x : x + s], size) for y, x, s in boxes])

    def pooled(self, image: torch.Tensor) -> torch.Tensor:
        """The whole image, (average pool + max pool) / 2 to the cut size, cutn times."""
        avg = F.adaptive_avg_pool2d(image, self.cut_size)
        mx = F.adaptive_max_pool2d(image, self.cut_size)
        return ((avg + mx) / 2).repeat(self.cutn, 1, 1, 1)
