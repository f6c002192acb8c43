"""Classifier-free and composable guidance, for every sampler path, with prompt editing.

One UNet batch evaluates every piece of both sides (`Guidance.rows`): each image's conditional
pieces, then its unconditional ones, with a cross-attention mask where a side is padded to the
other's length (as when the web UI evaluates sides of different lengths apart). The predictions
combine as the web UI combines them (Liu et al. 2022, "Compositional Visual Generation with
Composable Diffusion Models", arXiv:2206.01714):

    uncond + scale * sum_i w_i (cond_i - uncond),   uncond = sum_j v_j uncond_j

with the AND weights w not normalised and the unconditional weights v summing to 1. Without
guidance (scale <= 1) the unconditional side is evaluated only when the w do not sum to 1.

Two callers: the web-UI samplers call `Denoiser(x, sigma, guidance)` (`sampling.denoiser`), which
applies the whole formula; a diffusers pipeline calls its UNet with its own [uncond, cond]
batch, which `ComposedUNet` answers with [uncond, uncond + sum_i w_i (cond_i - uncond)] so that
the pipeline's own guidance step gives the same formula.

Prompt editing and alternation (`Conditioning`): the embeddings change at the model
evaluations the web UI changes them, counted from 0 in each sampler run (its `CFGDenoiser.step`
with `reconstruct_cond_batch`: the first stretch whose last evaluation is at or after the count,
the first stretch when the count is past them all).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

Stretch = tuple[int, Any, Any]  # (last model evaluation, cond Encoded, uncond Encoded)


@dataclass(frozen=True)
class Conditioning:
    """Both sides' embeddings over a sampler run: one stretch, or several (prompt editing)."""

    stretches: tuple[Stretch, ...]

    @classmethod
    def fixed(cls, cond: Any, uncond: Any) -> Conditioning:
        """The same embeddings throughout."""
        return cls(((0, cond, uncond),))

    @property
    def scheduled(self) -> bool:
        """Whether the embeddings change during the run."""
        return len(self.stretches) > 1

    @property
    def composed(self) -> bool:
        """Whether a pipeline's one prompt cannot say it: several pieces, or a weight not 1."""
        return any(len(c.embeds) > 1 or len(u.embeds) > 1 or float(c.weights[0]) != 1
                   for _, c, u in self.stretches)

    @property
    def padded(self) -> bool:
        """Whether any side is padded to another's length (the UNet must mask it)."""
        return any(s.length is not None for _, c, u in self.stretches for s in (c, u))

    def at(self, evaluation: int) -> tuple[Any, Any]:
        """(cond, uncond) at a model evaluation (0-based), chosen as the web UI chooses."""
        for last, cond, uncond in self.stretches:
            if evaluation <= last:
                return cond, uncond
        return self.stretches[0][1:]


@dataclass
class Rows:
    """The UNet batch of one evaluation: each image's pieces, then its unconditional pieces."""

    per_image: int
    embeds: torch.Tensor
    pooled: torch.Tensor | None  # SDXL's pooled text embeddings, one per row
    mask: torch.Tensor | None = None  # (rows, L): False on padding a side must not see
    uncond: bool = True  # whether the unconditional pieces are in the batch


@dataclass
class Guidance:
    """What guides a batch: the conditioning, the scale, SDXL's size conditioning."""

    conditioning: Conditioning
    scale: float
    time_ids: torch.Tensor | None = None  # SDXL: (1, 6) sizes and crop
    evaluations: int = field(default=0)  # model evaluations so far in this sampler run

    @property
    def scale_used(self) -> float:
        """The guidance scale applied: a scale <= 1 means none (1: the cond mix itself)."""
        return self.scale if self.scale > 1 else 1.0

    def current(self) -> tuple[Any, Any]:
        """(cond, uncond) of the coming evaluation."""
        return self.conditioning.at(self.evaluations)

    def needs_uncond(self) -> bool:
        """Whether the unconditional side is evaluated: under guidance, or when the pieces'
        weights do not sum to 1 (AND parts), whose mix is uncond + sum_i w_i (cond_i - uncond)."""
        return self.scale > 1 or not _unit(self.current()[0])

    def rows(self, images: int, uncond: bool | None = None) -> Rows:
        """The pieces of every image, in UNet batch order (`uncond`: force the side in or out)."""
        cond, negative = self.current()
        both = self.needs_uncond() if uncond is None else uncond or not _unit(cond)
        sides = [cond, negative] if both else [cond]
        embeds = torch.cat([s.embeds for s in sides]).repeat(images, 1, 1)
        pooled = None
        if cond.pooled is not None:
            pooled = torch.cat([s.pooled for s in sides]).repeat(images, 1)
        per_image = sum(len(s.embeds) for s in sides)
        return Rows(per_image, embeds, pooled, _mask(sides, images), both)

    def added(self, rows: Rows) -> dict[str, torch.Tensor] | None:
        """SDXL's added conditioning of the rows: pooled embeddings and size ids."""
        if self.time_ids is None:
            return None
        return {"text_embeds": rows.pooled, "time_ids": self.time_ids.repeat(len(rows.pooled), 1)}

    def mix(self, out: torch.Tensor, rows: Rows, images: int
            ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Per image: (uncond, sum_i w_i (cond_i - uncond)), or (None, sum_i w_i cond_i) when
        the unconditional side was not evaluated; then one evaluation is done."""
        cond, negative = self.current()
        self.evaluations += 1
        per_image = out.view(images, rows.per_image, *out.shape[1:])
        k = len(cond.embeds)
        w = cond.weights.to(out)[None, :, None, None, None]
        if not rows.uncond:
            return None, (per_image[:, :k] * w).sum(1)
        v = negative.weights.to(out)[None, :, None, None, None]
        u = (per_image[:, k:] * v).sum(1)
        return u, ((per_image[:, :k] - u[:, None]) * w).sum(1)

    def combine(self, out: torch.Tensor, rows: Rows, images: int) -> torch.Tensor:
        """uncond + scale * sum_i w_i (cond_i - uncond) per image, as the web UI combines."""
        u, delta = self.mix(out, rows, images)
        return delta if u is None else u + delta * self.scale_used


def _unit(cond: Any) -> bool:
    """Whether the conditional pieces' weights sum to 1."""
    return abs(float(cond.weights.sum()) - 1) <= 1e-6


def _mask(sides: list[Any], images: int) -> torch.Tensor | None:
    """The cross-attention mask of the batch: each side sees its own tokens only; None when
    nothing is padded."""
    masks = [s.attention_mask() for s in sides]
    if all(m is None for m in masks):
        return None
    full = [m if m is not None else torch.ones(s.embeds.shape[:2], dtype=torch.bool,
                                               device=s.embeds.device)
            for m, s in zip(masks, sides, strict=True)]
    return torch.cat(full).repeat(images, 1)


# --- a diffusers pipeline's UNet call ------------------------------------------------------


class ComposedUNet:
    """A UNet forward answering a pipeline's call with our pieces, in one batched call.

    The pipeline's batch is [uncond (B), cond (B)] under guidance or [cond (B)] without; its
    halves hold the same latents, so each image's latents are taken once and repeated per
    piece (`Guidance.rows`). Returned in the form the UNet returns: [u, u + delta] (or the cond
    mix alone). The pipeline's own encoder states are ignored: the pieces are ours.
    """

    def __init__(self, forward, guidance: Guidance, images: int):
        self.forward = forward  # the UNet's own forward (with any offload hooks)
        self.guidance = guidance
        self.images = images  # B: images per pipeline call

    def __call__(self, sample, timestep, encoder_hidden_states=None, **kwargs):
        n, b = sample.shape[0], self.images
        if n not in (b, 2 * b):
            raise RuntimeError(f"composable prompts: UNet batch {n} is neither {b} nor {2 * b}")
        rows = self.guidance.rows(b, uncond=n == 2 * b)

        def expand(value):  # a per-sample tensor: the cond half, once per row
            if not (torch.is_tensor(value) and value.ndim > 0 and value.shape[0] == n):
                return value  # a scalar timestep, a flag, a per-call tensor
            return value[n - b:].repeat_interleave(rows.per_image, 0)

        added = dict(kwargs.pop("added_cond_kwargs", None) or {})
        kwargs = {k: expand(v) for k, v in kwargs.items()}
        if added:
            kwargs["added_cond_kwargs"] = {k: expand(v) for k, v in added.items()}
            if rows.pooled is not None and "text_embeds" in added:
                kwargs["added_cond_kwargs"]["text_embeds"] = rows.pooled.to(
                    sample.device, added["text_embeds"].dtype)
        if rows.mask is not None:
            kwargs["encoder_attention_mask"] = rows.mask.to(sample.device)
        states = rows.embeds.to(sample.device, sample.dtype)
        out = self.forward(expand(sample), expand(timestep), encoder_hidden_states=states,
                           **kwargs)
        noise = out[0] if isinstance(out, tuple) else out.sample
        u, delta = self.guidance.mix(noise, rows, b)
        if u is None:
            combined = delta
        else:
            combined = u + delta
            combined = torch.cat([u, combined]) if n == 2 * b else combined
        return (combined,) if isinstance(out, tuple) else type(out)(sample=combined)


@contextmanager
def composed_unet(unet, guidance: Guidance, images: int) -> Iterator[ComposedUNet]:
    """Within the block, calling `unet` runs a `ComposedUNet`; its forward is restored after."""
    own = vars(unet).get("forward")  # an instance-level forward (accelerate's offload hooks)
    wrapper = ComposedUNet(unet.forward, guidance, images)
    unet.forward = wrapper
    try:
        yield wrapper
    finally:
        if own is not None:
            unet.forward = own
        else:
            del unet.forward
