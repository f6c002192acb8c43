"""The UNet as a denoiser D(x, sigma) over the model's discrete schedule, with guidance.

The model's sigmas come from its training betas (the scheduler config's beta range), computed
in float64 and kept in float32 as the original (CompVis) checkpoints keep them; a sigma maps to
a fractional timestep by interpolating log sigma (k-diffusion's CompVis denoiser, which the web
UI uses). Guidance (`helpers.diffusion.guidance`) is combined on the denoised images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from helpers.diffusion.guidance import Guidance, Rows

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
    """The model's discrete schedule and its UNet as a denoiser (eps or v prediction).

    `image_cond` (an inpainting UNet's mask and masked-image latents, one row per image or one
    for all) is concatenated to each row's scaled latents, unscaled, as the web UI's CompVis
    model concatenates its `c_concat`.
    """

    def __init__(self, unet: Any, config: dict[str, Any], family: Family,
                 image_cond: torch.Tensor | None = None):
        acp = alphas_cumprod(config)
        self.unet, self.family, self.image_cond = unet, family, image_cond
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
        cond = None
        if self.image_cond is not None:  # each image's own, on every row of its pieces
            cond = self.image_cond.to(x.device).expand(x.shape[0], -1, -1, -1)
            cond = cond.repeat_interleave(rows.per_image, 0)
        out = self.denoise(x_in, s_in, rows, guidance.added(rows), cond)
        return guidance.combine(out, rows, x.shape[0])

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, rows: Rows,
                added: dict[str, torch.Tensor] | None = None,
                image_cond: torch.Tensor | None = None) -> torch.Tensor:
        """Unguided denoised images: x - sigma * eps (or the v-prediction form)."""
        c_in = (1 / (sigma ** 2 + 1) ** 0.5)[:, None, None, None]
        t = self.sigma_to_t(sigma)
        dtype = self.unet.dtype
        model_in = x * c_in
        if image_cond is not None:
            model_in = torch.cat([model_in, image_cond.to(model_in)], dim=1)
        out = self.unet(model_in.to(dtype), t, encoder_hidden_states=rows.embeds.to(dtype),
                        encoder_attention_mask=rows.mask, added_cond_kwargs=added,
                        return_dict=False)[0].float()
        s = sigma[:, None, None, None]
        if self.v_prediction:
            return x / (s ** 2 + 1) - out * s / (s ** 2 + 1) ** 0.5
        return x - out * s
