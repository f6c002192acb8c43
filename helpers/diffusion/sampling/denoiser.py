"""The UNet as a denoiser D(x, sigma) over the model's discrete schedule, with guidance.

The model's sigmas come from its training betas (the scheduler config's beta range), computed
in float64 and kept in float32 as the original (CompVis) checkpoints keep them; a sigma maps to
a fractional timestep by interpolating log sigma (k-diffusion's CompVis denoiser, which the web
UI uses). Guidance is combined on the denoised images as the web UI combines it:
uncond + scale * sum_i w_i (cond_i - uncond), every piece of both sides in one UNet batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from helpers.diffusion.families import Family


def alphas_cumprod(config: dict[str, Any]) -> torch.Tensor:
    """The model's cumulative alphas from its scheduler config (float64 math, float32 kept)."""
    steps = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
    schedule = config.get("beta_schedule", "scaled_linear")
    if schedule == "scaled_linear":
        betas = torch.linspace(start ** 0.5, end ** 0.5, steps, dtype=torch.float64) ** 2
    elif schedule == "linear":
        betas = torch.linspace(start, end, steps, dtype=torch.float64)
    elif schedule == "squaredcos_cap_v2":
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        alpha_bar = torch.cos((t + 0.008) / 1.008 * torch.pi / 2) ** 2
        betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    else:
        raise ValueError(f"model: beta schedule {schedule!r} is not supported by the web-UI "
                         "samplers; choose DDIM, PLMS, UniPC or LCM")
    return torch.cumprod(1 - betas, 0).float()


class Denoiser:
    """The model's discrete schedule and its UNet as a denoiser (eps or v prediction)."""

    def __init__(self, unet: Any, config: dict[str, Any], family: Family):
        acp = alphas_cumprod(config)
        self.unet, self.family = unet, family
        self.sigmas = ((1 - acp) / acp) ** 0.5
        self.log_sigmas = self.sigmas.log()
        self.v_prediction = config.get("prediction_type", "epsilon") == "v_prediction"

    @property
    def sigma_min(self) -> float:
        """The smallest sigma the model was trained at."""
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        """The largest sigma the model was trained at (14.61 for SD)."""
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """The fractional timestep of each sigma (log sigma interpolated between neighbours)."""
        log_sigmas = self.log_sigmas.to(sigma.device)
        log_sigma = sigma.log()
        dists = log_sigma - log_sigmas[:, None]
        low = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=len(log_sigmas) - 2)
        w = ((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1])).clamp(0, 1)
        return ((1 - w) * low + w * (low + 1)).view(sigma.shape)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """The sigma of a fractional timestep (log sigma interpolated)."""
        t = t.float()
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigmas = self.log_sigmas.to(t.device)
        return ((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp()

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, guidance: Guidance) -> torch.Tensor:
        """The guided denoised image of x at noise level sigma (one per image)."""
        rows = guidance.rows(x.shape[0])
        x_in = x.repeat_interleave(rows.per_image, 0)
        s_in = sigma.repeat_interleave(rows.per_image, 0)
        out = self.denoise(x_in, s_in, rows)
        return guidance.combine(out, x.shape[0])

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, rows: Rows) -> torch.Tensor:
        """Unguided denoised images: x - sigma * eps (or the v-prediction form)."""
        c_in = (1 / (sigma ** 2 + 1) ** 0.5)[:, None, None, None]
        t = self.sigma_to_t(sigma)
        dtype = self.unet.dtype
        out = self.unet((x * c_in).to(dtype), t, encoder_hidden_states=rows.embeds.to(dtype),
                        encoder_attention_mask=rows.mask, added_cond_kwargs=rows.added,
                        return_dict=False)[0].float()
        s = sigma[:, None, None, None]
        if self.v_prediction:
            return x / (s ** 2 + 1) - out * s / (s ** 2 + 1) ** 0.5
        return x - out * s


@dataclass
class Rows:
    """The UNet batch of one step: each image's pieces, then its unconditional pieces."""

    per_image: int
    embeds: torch.Tensor
    added: dict[str, torch.Tensor] | None
    mask: torch.Tensor | None = None  # (rows, L): False on padding a side must not see


@dataclass
class Guidance:
    """What guides a batch: cond and uncond pieces with weights, the scale, SDXL's extras."""

    cond: Any  # conditioning.Encoded: embeds (K, L, D), pooled (K, P) or None, weights (K,)
    uncond: Any  # conditioning.Encoded: (M, L, D), weights summing to 1
    scale: float
    time_ids: torch.Tensor | None = None  # SDXL: (1, 6) sizes and crop

    @property
    def scale_used(self) -> float:
        """The guidance scale applied: a scale <= 1 means none (1: the cond mix itself)."""
        return self.scale if self.scale > 1 else 1.0

    @property
    def needs_uncond(self) -> bool:
        """Whether the unconditional side is evaluated: under guidance, or when the pieces'
        weights do not sum to 1 (AND parts), whose mix is uncond + sum_i w_i (cond_i - uncond)."""
        return self.scale > 1 or abs(float(self.cond.weights.sum()) - 1) > 1e-6

    def sides(self) -> list[Any]:
        return [self.cond, self.uncond] if self.needs_uncond else [self.cond]

    def rows(self, images: int) -> Rows:
        """The pieces of every image, in UNet batch order."""
        sides = self.sides()
        embeds = torch.cat([s.embeds for s in sides]).repeat(images, 1, 1)
        added = None
        if self.time_ids is not None:
            pooled = torch.cat([s.pooled for s in sides]).repeat(images, 1)
            ids = self.time_ids.repeat(len(pooled), 1)
            added = {"text_embeds": pooled, "time_ids": ids}
        return Rows(sum(len(s.embeds) for s in sides), embeds, added, _mask(sides, images))

    def combine(self, out: torch.Tensor, images: int) -> torch.Tensor:
        """uncond + scale * sum_i w_i (cond_i - uncond) per image, as the web UI combines."""
        per_image = out.view(images, -1, *out.shape[1:])
        k = len(self.cond.embeds)
        w = self.cond.weights.to(out)[None, :, None, None, None]
        if not self.needs_uncond:
            return (per_image[:, :k] * w).sum(1)
        v = self.uncond.weights.to(out)[None, :, None, None, None]
        uncond = (per_image[:, k:] * v).sum(1)
        return uncond + ((per_image[:, :k] - uncond[:, None]) * w).sum(1) * self.scale_used


def _mask(sides: list[Any], images: int) -> torch.Tensor | None:
    """The cross-attention mask of the batch: each side sees its own tokens only, as when the
    web UI evaluates sides of different lengths apart; None when nothing is padded."""
    masks = [s.attention_mask() for s in sides]
    if all(m is None for m in masks):
        return None
    full = [m if m is not None else torch.ones(s.embeds.shape[:2], dtype=torch.bool,
                                               device=s.embeds.device)
            for m, s in zip(masks, sides, strict=True)]
    return torch.cat(full).repeat(images, 1)
