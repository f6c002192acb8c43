"""A UNet steered by ControlNets, called as the UNet is called.

`ControlledUNet(unet, units, conditional_rows(guidance))` answers
`unet(sample, timestep, encoder_hidden_states=..., added_cond_kwargs=...,
encoder_attention_mask=..., return_dict=False)` and has the `dtype`, `config` and `device` the
samplers read, so `Denoiser(ControlledUNet(...), ...)` needs no change. Each active unit's
ControlNet runs on the same inputs (SDXL's added conditioning too) and its residuals, times the
unit's weight, are summed over the units (as diffusers' MultiControlNetModel sums them) and added
to the UNet's skip connections and middle block.

As the web UI's ControlNet extension does (its hook.py and controlnet.py):

- a unit steers while the sampling progress is within [start, end]; the progress is the step
  the sampler last reported over the steps of the pass (the web UI's `state.sampling_step /
  state.sampling_steps`): 0 until the first step's callback, then i / total after step i's. The
  sampler's callback tells the wrapper (`set_step`, or the callback `stepping` returns);
- "My prompt is more important" scales residual i (of the ControlNet's 13, or SDXL's 10) by
  0.825 ** (12 - i) ("soft injection"); "ControlNet is more important" does that too and adds
  the control to the conditional rows only, so classifier-free guidance pushes towards it;
- a weight of 0, or a progress outside [start, end], leaves the unit out (the UNet's own output
  when no unit is left).

Rows are in `Guidance.rows` order (each image's conditional pieces, then its unconditional
ones); a control image of one picture applies to every row, one per image to that image's rows.
Where the sides are padded to one length (`encoder_attention_mask`), the ControlNet, which takes
no cross-attention mask, runs on each group of rows with its own length, unpadded. An
inpainting UNet's extra input channels (mask and masked image) are not given to the ControlNet,
which takes the latents alone (as the extension does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from helpers.diffusion.tools.control import BALANCED, CONTROL, CONTROL_MODES, PROMPT

Residuals = list[torch.Tensor]  # the down-block residuals, then the middle block's
SOFT_BASE = 0.825  # the extension's soft-injection ratio between neighbouring residuals


@dataclass(frozen=True)
class ControlUnit:
    """One ControlNet unit: the model, its control map, and how strongly and when it steers."""

    net: Any  # a diffusers ControlNetModel (or ControlNetUnionModel)
    image: torch.Tensor  # (1 or images, 3, H, W) in 0..1 at the generation size (`images.fit`)
    weight: float = 1.0  # the extension's "Control Weight"
    start: float = 0.0  # guidance start: the fraction of the steps before it steers
    end: float = 1.0  # guidance end: the fraction of the steps after which it stops
    mode: str = BALANCED  # one of CONTROL_MODES
    union_type: int | None = None  # union ControlNets: the control type (UNION_TYPES)

    def __post_init__(self) -> None:
        if self.mode not in CONTROL_MODES:
            raise ValueError(f"control mode: {self.mode!r} is not one of {CONTROL_MODES}")
        if not 0 <= self.start <= self.end <= 1:
            raise ValueError(f"control: guidance start {self.start} and end {self.end} must "
                             "satisfy 0 <= start <= end <= 1")

    def active(self, progress: float) -> bool:
        """Whether the unit steers at this sampling progress (the extension's test)."""
        return self.weight != 0 and self.start <= progress <= self.end


def soft_weights(count: int) -> list[float]:
    """The soft-injection scale of each residual: 0.825 ** (12 - i), the extension's 13 values
    taken from the first (SDXL's 10 residuals get the first 10)."""
    return [SOFT_BASE ** float(12 - i) for i in range(count)]


def conditional_rows(guidance: Any) -> Callable[[int], torch.Tensor]:
    """For a `Guidance`: which rows of an n-row UNet batch are conditional (True), as
    `guidance.rows` lays them out for the coming evaluation. The Denoiser asks the guidance for
    its rows just before calling the UNet, and `Guidance.mix` counts the evaluation only after,
    so both see the same conditioning."""
    def rows(n: int) -> torch.Tensor:
        layout = guidance.rows(1)
        pieces = len(guidance.current()[0].embeds)
        return torch.arange(n) % layout.per_image < pieces

    return rows


class ControlledUNet:
    """A UNet with ControlNet units: the UNet's call signature, its dtype, config and device.

    `conditional` says which rows are conditional (`conditional_rows(guidance)`; None: all, as
    the extension falls back to); `total` is the pass's step count (the web UI's
    `state.sampling_steps`: the steps in txt2img, t_enc + 1 in img2img and the hires pass).
    """

    def __init__(self, unet: Any, units: Sequence[ControlUnit],
                 conditional: Callable[[int], torch.Tensor] | None = None, total: int = 1):
        self.unet = unet
        self.units = tuple(units)
        self.conditional = conditional  # n -> (n,) bool: the conditional rows (None: all)
        self.step, self.total = 0, max(int(total), 1)

    @property
    def dtype(self) -> torch.dtype:
        """The UNet's dtype."""
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        """The UNet's device."""
        return self.unet.device

    @property
    def config(self) -> Any:
        """The UNet's config."""
        return self.unet.config

    @property
    def progress(self) -> float:
        """The sampling progress the units are scheduled by: last reported step / total."""
        return self.step / self.total

    def set_step(self, step: int, total: int | None = None) -> None:
        """Tell the wrapper the step the sampler just reported (and the pass's step count)."""
        self.step = int(step)
        if total is not None:
            self.total = max(int(total), 1)

    def stepping(self, callback: Callable[..., Any] | None = None) -> Callable[..., Any]:
        """A sampler callback `(i, x, denoised)` that reports step i here, then calls
        `callback`."""
        def report(i: int, *args: Any) -> Any:
            self.set_step(i)
            return callback(i, *args) if callback is not None else None

        return report

    def __call__(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states=None,
                 added_cond_kwargs=None, encoder_attention_mask=None, return_dict: bool = True,
                 **kwargs: Any) -> Any:
        """The UNet's output, with the residuals of the units active at this progress."""
        progress = self.progress
        active = [u for u in self.units if u.active(progress)]
        if active:
            down, mid = self.residuals(active, sample, timestep, encoder_hidden_states,
                                       added_cond_kwargs, encoder_attention_mask)
            kwargs["down_block_additional_residuals"] = down
            kwargs["mid_block_additional_residual"] = mid
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                         added_cond_kwargs=added_cond_kwargs,
                         encoder_attention_mask=encoder_attention_mask,
                         return_dict=return_dict, **kwargs)

    def residuals(self, units: Sequence[ControlUnit], sample: torch.Tensor, timestep: Any,
                  states: torch.Tensor, added: dict | None, mask: torch.Tensor | None
                  ) -> tuple[Residuals, torch.Tensor]:
        """(down residuals, middle residual): the weighted sum over `units`."""
        total: Residuals | None = None
        for unit in units:
            outs = unit_residuals(unit, sample, timestep, states, added, mask)
            scales = _scales(unit, len(outs))
            rows = self._row_mask(unit, sample)
            outs = [r * s if rows is None else r * s * rows
                    for r, s in zip(outs, scales, strict=True)]
            total = outs if total is None else [t + r for t, r in zip(total, outs, strict=True)]
        return total[:-1], total[-1]

    def _row_mask(self, unit: ControlUnit, sample: torch.Tensor) -> torch.Tensor | None:
        """ControlNet is more important: 1 on the conditional rows, 0 on the others."""
        if unit.mode != CONTROL or self.conditional is None:
            return None
        rows = self.conditional(sample.shape[0]).to(sample.device)
        return rows.to(sample.dtype)[:, None, None, None]


def _scales(unit: ControlUnit, count: int) -> list[float]:
    """Each residual's scale: the weight, times the soft weights but in Balanced mode."""
    if unit.mode == BALANCED:
        return [unit.weight] * count
    return [unit.weight * s for s in soft_weights(count)]


def unit_residuals(unit: ControlUnit, sample: torch.Tensor, timestep: Any,
                   states: torch.Tensor, added: dict | None, mask: torch.Tensor | None
                   ) -> Residuals:
    """A unit's ControlNet residuals (unscaled), in the sample's dtype: one call, or one per
    group of rows of one unpadded length when the sides are padded."""
    n = sample.shape[0]
    net = unit.net
    sample = sample[:, :net.config.in_channels]  # an inpainting UNet's 9: the latents alone
    _check_size(unit.image, sample, net)
    image = per_row(unit.image, n).to(sample.device, net.dtype)
    if mask is None:
        return _call(net, unit, sample, timestep, states, image, added, sample.dtype)
    lengths = mask.sum(1)
    outs: Residuals | None = None
    for length in lengths.unique().tolist():
        idx = (lengths == length).nonzero().flatten().to(sample.device)
        pick = lambda v, idx=idx: _rows(v, idx, n)  # noqa: E731
        part = _call(net, unit, sample[idx], pick(timestep), states[idx, :length], image[idx],
                     _picked(added, pick), sample.dtype)
        if outs is None:
            outs = [r.new_zeros((n, *r.shape[1:])) for r in part]
        for full, r in zip(outs, part, strict=True):
            full[idx] = r
    return outs


def _call(net: Any, unit: ControlUnit, sample: torch.Tensor, timestep: Any,
          states: torch.Tensor, image: torch.Tensor, added: dict | None,
          dtype: torch.dtype) -> Residuals:
    """One ControlNet call (conditioning scale 1): its residuals as one list, in `dtype`."""
    kwargs: dict[str, Any] = {"added_cond_kwargs": added} if added else {}
    cast = net.dtype
    if hasattr(net.config, "num_control_type"):  # a union ControlNet: one control type
        count = net.config.num_control_type
        if unit.union_type is None or not 0 <= unit.union_type < count:
            raise ValueError(f"control: a union ControlNet needs a control type 0..{count - 1} "
                             f"(union_type), not {unit.union_type}")
        kind = torch.zeros(sample.shape[0], count, device=sample.device, dtype=cast)
        kind[:, unit.union_type] = 1
        kwargs.update(controlnet_cond=[image], control_type=kind,
                      control_type_idx=[unit.union_type], conditioning_scale=1.0)
    else:
        kwargs.update(controlnet_cond=image, conditioning_scale=1.0)
    down, mid = net(sample.to(cast), timestep, encoder_hidden_states=states.to(cast),
                    return_dict=False, **kwargs)
    return [r.to(dtype) for r in (*down, mid)]


def _check_size(image: torch.Tensor, sample: torch.Tensor, net: Any) -> None:
    """A control image must be the pass's size (the latents' times the ControlNet's factor)."""
    factor = 2 ** (len(net.config.conditioning_embedding_out_channels) - 1)
    wanted = (sample.shape[-2] * factor, sample.shape[-1] * factor)
    if tuple(image.shape[-2:]) != wanted:
        raise ValueError(f"control: the control image is {image.shape[-1]}x{image.shape[-2]}; "
                         f"this pass needs {wanted[1]}x{wanted[0]} (fit it to the size)")


def hires_unit(unit: ControlUnit, image: torch.Tensor, preprocessor: str) -> ControlUnit:
    """The unit for the hires fix's pass: its control image at the hires size and, for canny
    and mlsd maps, the soft injection the extension forces there ("Balanced" becomes "My
    prompt is more important", which differs from it by the soft weights alone)."""
    forced = unit.mode == BALANCED and ("canny" in preprocessor or "mlsd" in preprocessor)
    return replace(unit, image=image, mode=PROMPT if forced else unit.mode)


def per_row(image: torch.Tensor, n: int) -> torch.Tensor:
    """The control image of each of n rows: one picture for all, or one per image (its rows
    follow one another, as in `Guidance.rows`)."""
    if image.ndim == 3:
        image = image[None]
    b = image.shape[0]
    if b == 1:
        return image.expand(n, *image.shape[1:])
    if n % b:
        raise ValueError(f"control: {b} control images for a batch of {n} UNet rows")
    return image.repeat_interleave(n // b, 0)


def _rows(value: Any, idx: torch.Tensor, n: int) -> Any:
    """The rows `idx` of a per-row tensor; anything else as it is."""
    if torch.is_tensor(value) and value.ndim > 0 and value.shape[0] == n:
        return value[idx]
    return value


def _picked(added: dict | None, pick: Callable[[Any], Any]) -> dict | None:
    return {k: pick(v) for k, v in added.items()} if added else added
