"""The VQGAN+CLIP loop: a VQGAN latent optimised so that CLIP agrees with weighted prompts.

Katherine Crowson's method (2021; arXiv:2204.08583): each step quantises z against the codebook
(straight-through), decodes, takes cutouts, embeds them with CLIP and takes an optimiser step on
the prompt losses. `run` is a generator of `Step`s: it never prints, saves or displays.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from helpers.clip import Clip
from helpers.guidance import Cutouts, Target, clamp_with_grad, noise_target, prompt_loss
from helpers.prompts import (
    Prompt,
    parse_prompt_schedule,
    parse_prompts,
    parse_story,
    prompts_at,
    story_prompts,
)
from helpers.settings import VQGANClipSettings
from helpers.vqgan import VQGAN

PromptsAt = Callable[[int], list[Prompt]]


@dataclass
class Models:
    """The loaded models of a VQGAN+CLIP run."""

    vqgan: VQGAN
    clips: list[Clip]
    device: torch.device


@dataclass
class Step:
    """One finished iteration: its number (1-based), image in [0, 1] and loss terms.

    `state` is the resume point after this iteration's update (z, optimiser, RNG).
    """

    i: int
    image: torch.Tensor  # (1, 3, H, W) in [0, 1], on the CPU
    losses: list[float]
    state: dict[str, Any] = field(repr=False)

    @property
    def loss(self) -> float:
        """The total loss of this iteration."""
        return sum(self.losses)


def latent_shape(settings: VQGANClipSettings, factor: int) -> tuple[int, int]:
    """(tokens high, tokens wide) for the requested size, rounded down to the VQGAN's factor."""
    return settings.height // factor, settings.width // factor


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting on a device; None means plain fp32."""
    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else None
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision: 'fp16' needs a CUDA GPU (device is {device.type})")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _image_to_tensor(image: Any, width: int, height: int, device: torch.device) -> torch.Tensor:
    """A PIL image -> (1, 3, H, W) in [0, 1], resized with Lanczos."""
    import numpy as np
    from PIL import Image

    image = image.convert("RGB").resize((width, height), Image.LANCZOS)
    array = torch.from_numpy(np.asarray(image).copy()).float().div(255)
    return array.permute(2, 0, 1).unsqueeze(0).to(device)


def noise_image(kind: str, height: int, width: int, device: torch.device) -> torch.Tensor:
    """A random start image in [0, 1]: "pixels" (random colours) or "gradient" (two colours)."""
    if kind == "pixels":
        return torch.rand(1, 3, height, width).to(device)
    ends = torch.rand(2, 3, 1, 1)
    t = torch.linspace(0, 1, width).view(1, 1, 1, width)
    horizontal = bool(torch.rand(()) < 0.5)
    if horizontal:
        t = torch.linspace(0, 1, height).view(1, 1, height, 1)
    image = ends[0] * (1 - t) + ends[1] * t
    return image.expand(1, 3, height, width).contiguous().to(device)


def initial_z(settings: VQGANClipSettings, models: Models, init: Any = None) -> torch.Tensor:
    """z from an init image (PIL), a noise image, or random codebook tokens."""
    vqgan, device = models.vqgan, models.device
    toks_y, toks_x = latent_shape(settings, vqgan.factor)
    height, width = toks_y * vqgan.factor, toks_x * vqgan.factor
    if init is not None:
        image = _image_to_tensor(init, width, height, device)
    elif settings.init_noise:
        image = noise_image(settings.init_noise, height, width, device)
    else:
        tokens = torch.randint(vqgan.n_embed, (toks_y * toks_x,)).to(device)
        z = F.embedding(tokens, vqgan.codebook).T.reshape(1, vqgan.e_dim, toks_y, toks_x)
        return z.float()
    with torch.no_grad():
        return vqgan.encode(image * 2 - 1).float()


@torch.no_grad()
def text_targets(clip: Clip, prompts: list[Prompt]) -> list[Target]:
    """One target per text prompt, embedded by one CLIP."""
    if not prompts:
        return []
    embeds = clip.encode_text([p.text for p in prompts])
    return [Target(e[None], p.weight, p.stop) for e, p in zip(embeds, prompts, strict=True)]


@torch.no_grad()
def image_targets(clip: Clip, cutouts: Cutouts, images: list[tuple[Any, Prompt]],
                  size: tuple[int, int]) -> list[Target]:
    """One target per image prompt: its cutouts, embedded (several rows per target)."""
    targets = []
    for image, p in images:
        tensor = _image_to_tensor(image, size[1], size[0], clip.device)
        targets.append(Target(clip.encode_image(cutouts(tensor)), p.weight, p.stop))
    return targets


def noise_targets(clip: Clip, prompts: list[Prompt]) -> list[Target]:
    """Noise prompts: "seed:weight" pieces -> seeded random directions in this CLIP's space."""
    dim = clip.model.config.projection_dim
    return [
        _move(noise_target(_seed_of(p.text), dim, p.weight, p.stop), clip.device) for p in prompts
    ]


def _seed_of(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"noise_prompts: {text!r} is not a seed (a whole number)")
    return int(text)


def _move(target: Target, device: torch.device) -> Target:
    return Target(target.embeds.to(device), target.weight, target.stop)


def prompt_plan(settings: VQGANClipSettings) -> tuple[list[list[Prompt]], PromptsAt]:
    """The text prompt sets of a run and a function giving the set of iteration i (1-based).

    A keyframed `prompt_schedule` (keys are iterations), story mode ("^" between sets, switching
    every `story_every` iterations), or one set.
    """
    if settings.prompt_schedule.strip():
        schedule = parse_prompt_schedule(settings.prompt_schedule)
        return list(schedule.values()), lambda i: prompts_at(schedule, i - 1)
    if settings.story_every:
        story = parse_story(settings.prompt)
        return story, lambda i: story_prompts(story, i - 1, settings.story_every)
    sets = [parse_prompts(settings.prompt) if settings.prompt.strip() else []]
    return sets, lambda i: sets[0]


def _optimizer(settings: VQGANClipSettings, z: torch.Tensor) -> torch.optim.Optimizer:
    return getattr(torch.optim, settings.optimizer)([z], lr=settings.lr)


def _snapshot(i: int, z: torch.Tensor, opt: torch.optim.Optimizer) -> dict[str, Any]:
    state = {
        "i": i,
        "z": z.detach().cpu().clone(),
        "optimizer": _cpu(opt.state_dict()),
        "rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def _cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cpu(v) for v in value]
    return value


def _restore(state: dict[str, Any], z: torch.Tensor, opt: torch.optim.Optimizer) -> int:
    with torch.no_grad():
        z.copy_(state["z"].to(z.device))
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["i"])


@dataclass
class Inputs:
    """Loaded input images of a run (PIL images), read before the loop starts."""

    init: Any = None
    image_prompts: list[tuple[Any, Prompt]] = field(default_factory=list)


def run(settings: VQGANClipSettings, models: Models, inputs: Inputs | None = None,
        resume: dict[str, Any] | None = None) -> Iterator[Step]:
    """Optimise a VQGAN latent towards the prompts; yield a `Step` per iteration."""
    inputs = inputs or Inputs()
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    vqgan, device = models.vqgan, models.device
    z = initial_z(settings, models, inputs.init).requires_grad_(True)
    z_orig = z.detach().clone()
    opt = _optimizer(settings, z)
    losses_of = _loss_fn(settings, models, inputs)  # image targets draw cutouts: before restore
    start = _restore(resume, z, opt) if resume else 0
    book = vqgan.codebook
    z_min = book.min(0).values.view(1, -1, 1, 1).float()
    z_max = book.max(0).values.view(1, -1, 1, 1).float()
    dtype = autocast_dtype(settings.precision, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    for i in range(start + 1, settings.iterations + 1):
        opt.zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            image = clamp_with_grad(vqgan.decode(vqgan.quantize(z)).add(1).div(2))
            losses = losses_of(image, i)
            if settings.init_weight:
                losses.append(F.mse_loss(z, z_orig) * (settings.init_weight / 2))
        scaler.scale(sum(losses)).backward()
        scaler.step(opt)
        scaler.update()
        with torch.no_grad():
            z.copy_(z.maximum(z_min).minimum(z_max))
        yield Step(i, image.detach().float().cpu(), [float(v.detach()) for v in losses],
                   _snapshot(i, z, opt))


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _loss_fn(settings: VQGANClipSettings, models: Models, inputs: Inputs):
    """A function (image, i) -> list of loss terms, summed over the CLIP models."""
    sets, prompts_for = prompt_plan(settings)
    noise = parse_prompts(settings.noise_prompts) if settings.noise_prompts.strip() else []
    vqgan = models.vqgan
    size = tuple(n * vqgan.factor for n in latent_shape(settings, vqgan.factor))
    per_clip = []
    for clip in models.clips:
        cutouts = Cutouts(clip.input_size, settings.cutn, settings.cut_pow, settings.augments,
                          settings.cut_method)
        fixed = image_targets(clip, cutouts, inputs.image_prompts, size)
        fixed += noise_targets(clip, noise)
        texts = {id(s): text_targets(clip, s) for s in sets}  # embedded once per set
        per_clip.append((clip, cutouts, fixed, texts))

    def losses(image: torch.Tensor, i: int) -> list[torch.Tensor]:
        key = id(prompts_for(i))
        terms = []
        for clip, cutouts, fixed, texts in per_clip:
            embeds = clip.encode_image(cutouts(image))
            terms += [clip.weight * prompt_loss(embeds, t) for t in texts[key] + fixed]
        return terms

    return losses


def estimate_memory(settings: VQGANClipSettings, mixed: bool = False,
                    checkpointing: bool = False) -> int:
    """A rough estimate, in bytes, of the memory a run of this size needs.

    The f16 VQGAN decoder's activations kept for the backward pass dominate: measured at about
    27 kB per output pixel in fp32 (33 kB with the rest of the step; the classic notebook fills
    16 GB near 700x700), 12 kB with decoder checkpointing, half with mixed precision; plus
    about 1 GB of weights and CLIP cutouts.
    """
    per_pixel = 14_000 if checkpointing else 33_000
    if mixed:
        per_pixel //= 2
    cutouts = settings.cutn * 3 * 224 * 224 * 4 * 40
    return settings.width * settings.height * per_pixel + cutouts + 1_000_000_000


def plan_memory(settings: VQGANClipSettings, device: torch.device) -> bool:
    """Whether to checkpoint the decoder; `ValueError` with the estimate if nothing fits."""
    from helpers.device import free_memory

    mixed = autocast_dtype(settings.precision, device) is not None
    free = free_memory(device)
    if settings.checkpointing == "auto":
        use = free is not None and estimate_memory(settings, mixed) > free
    else:
        use = settings.checkpointing == "on"
    need = estimate_memory(settings, mixed, use)
    if free is not None and need > free:
        _too_big(settings, device, need, free)
    return use


def _too_big(settings: VQGANClipSettings, device: torch.device, need: int, free: int) -> None:
    where = "GPU memory" if device.type == "cuda" else "memory"
    raise ValueError(
        f"size: {settings.width}x{settings.height} needs about {need / 1e9:.1f} GB of "
        f"{where}, {free / 1e9:.1f} GB is free; use a smaller size or fewer cutouts"
    )


def frame_due(settings: VQGANClipSettings, i: int) -> bool:
    """Whether iteration i is saved as a frame: every `save_every` and the last one."""
    return i % settings.save_every == 0 or i == settings.iterations


def to_pil(image: torch.Tensor) -> Any:
    """(1, 3, H, W) in [0, 1] -> PIL image."""
    from PIL import Image

    array = image[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


__all__ = ["Inputs", "Models", "Step", "estimate_memory", "frame_due", "run", "to_pil"]
