"""CLIP guidance for VQGAN+CLIP: cutouts, prompt losses, straight-through quantisation.

The method is Katherine Crowson's VQGAN+CLIP (2021; described in Crowson et al., "VQGAN-CLIP:
Open Domain Image Generation and Editing with Natural Language Guidance", arXiv:2204.08583).
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
    return forward.detach() - backward.detach() + backward


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


def _augment(name: str, size: int) -> nn.Module:
    import kornia.augmentation as K

    factories = {
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
        raise ValueError(f"augments: unknown augmentation {name!r}; use {', '.join(factories)}")
    return factories[name]()


class Cutouts(nn.Module):
    """`cutn` random crops resized to CLIP's input, then kornia augmentations.

    method "classic": crops of side rand**cut_pow between the cut size and the image's short
    side, average-pooled to the cut size; "pooled": the whole image average- and max-pooled,
    repeated cutn times, so the augmentations alone make the views differ.
    """

    def __init__(self, cut_size: int, cutn: int, cut_pow: float = 1.0,
                 augments: Sequence[str] = (), method: str = "classic"):
        super().__init__()
        if method not in ("classic", "pooled"):
            raise ValueError(f"cut_method: must be 'classic' or 'pooled' (got {method!r})")
        self.cut_size, self.cutn, self.cut_pow, self.method = cut_size, cutn, cut_pow, method
        self.augs = nn.Sequential(*(_augment(a, cut_size) for a in augments))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) in [0, 1] -> (cutn, 3, cut_size, cut_size)."""
        crops = self._pooled(image) if self.method == "pooled" else self._classic(image)
        return self.augs(crops) if len(self.augs) else crops

    def _classic(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[2:]
        max_size = min(h, w)
        min_size = min(h, w, self.cut_size)
        sizes = torch.rand(self.cutn).pow(self.cut_pow) * (max_size - min_size) + min_size
        crops = []
        for size in sizes.long().tolist():
            y = int(torch.randint(0, h - size + 1, ()))
            x = int(torch.randint(0, w - size + 1, ()))
            crop = image[:, :, y : y + size, x : x + size]
            crops.append(F.adaptive_avg_pool2d(crop, self.cut_size))
        return torch.cat(crops)

    def _pooled(self, image: torch.Tensor) -> torch.Tensor:
        avg = F.adaptive_avg_pool2d(image, self.cut_size)
        mx = F.adaptive_max_pool2d(image, self.cut_size)
        return ((avg + mx) / 2).repeat(self.cutn, 1, 1, 1)
