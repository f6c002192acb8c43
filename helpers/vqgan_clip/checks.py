"""VQGAN+CLIP, stage 1: everything that can be checked before a model loads.

Settings, the output and cache folders, the device and precision, the VQGAN and CLIP
references, the size against the VQGAN's factor, the input images and the memory budget. Bad
input fails here with a `ValueError` naming the setting, and nothing has been written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.reporting import Log
from helpers.settings import VQGANClipSettings, parse_clip_spec
from helpers.settings.base import MOTION

# Measured on the f16 decoder: activations kept for the backward pass per output pixel (fp32),
# with the rest of the step; the classic notebook fills 16 GB near 700x700.
BYTES_PER_PIXEL = 33_000
BYTES_PER_PIXEL_CHECKPOINTED = 14_000
WEIGHTS_BYTES = 1_000_000_000  # VQGAN + CLIP weights and workspace


@dataclass(frozen=True)
class VQGANRef:
    """Where the VQGAN comes from, read without loading: a local checkpoint or the catalogue."""

    spec: str
    factor: int  # pixels per latent token along a side
    ckpt: Path | None = None  # a local .ckpt (its .yaml beside it) or converted .safetensors
    model: Any = None  # a catalogue Model, fetched into the cache when loading


@dataclass
class Inputs:
    """Loaded input images of a run (PIL images), read before the models load."""

    init: Any = None
    image_prompts: list[tuple[Any, Any]] = field(default_factory=list)  # (image, Prompt)


@dataclass
class Checked:
    """A run's settings as it will run (seed fixed, size fitted) and what was checked."""

    settings: VQGANClipSettings
    device: Any
    vqgan: VQGANRef
    clips: list[tuple[Any, float]]  # (ClipRef, weight)
    inputs: Inputs
    checkpointing: bool


def check_inputs(settings: VQGANClipSettings, cache: str | os.PathLike | None = None,
                 log: Log = print) -> Checked:
    """Check a run before anything loads; `ValueError` naming the setting when it cannot run."""
    from helpers.device import pick_device
    from helpers.download import cache_folder
    from helpers.files import writable_folder
    from helpers.memory import free_memory
    from helpers.precision import autocast_dtype
    from helpers.vqgan_clip.clip import resolve_clip

    settings = animation_plan(settings.with_seed())
    check_motion_values(settings)
    writable_folder(settings.out, "out")
    cache_folder(cache)
    device = pick_device(settings.device, log)
    autocast_dtype(settings.precision, device)
    vqgan = resolve_vqgan(settings.vqgan)
    settings = fit_size(settings, vqgan.factor, log)
    clips = [(resolve_clip(name), weight) for name, weight in parse_clip_spec(settings.clip)]
    inputs = read_inputs(settings, cache)
    checkpointing = plan_memory(settings, device, free_memory(device), log)
    return Checked(settings, device, vqgan, clips, inputs, checkpointing)


def catalogue_models(choice: Mapping[str, str], cache: str | os.PathLike | None = None) -> list:
    """The catalogue models a model choice (notebook 2's `vqgan`, `clip`) names, each resolved
    (an error naming the field) before anything downloads."""
    from helpers.vqgan_clip.clip import resolve_clip

    found = [resolve_vqgan(choice.get("vqgan", "")).model]
    found += [resolve_clip(name).model for name, _ in parse_clip_spec(choice.get("clip", ""))]
    return [model for model in found if model is not None]


def check_motion_values(settings: VQGANClipSettings) -> None:
    """A zoom animation's motion schedules, within their limits at every frame."""
    from helpers.animation import check_schedule_values

    if settings.animate:
        for name in MOTION:
            check_schedule_values(getattr(settings, name), name, settings.frames)


def animation_plan(settings: VQGANClipSettings) -> VQGANClipSettings:
    """A zoom animation runs frames x iterations_per_frame iterations and saves every frame."""
    if not settings.animate:
        return settings
    return settings.replace(iterations=settings.frames * settings.iterations_per_frame,
                            save_every=settings.iterations_per_frame)


def resolve_vqgan(spec: str) -> VQGANRef:
    """A VQGAN spec: a catalogue name or a checkpoint path (with its yaml), and its factor."""
    from helpers.catalog import get_model
    from helpers.vqgan_clip.vqgan import checkpoint_in, read_factor

    path = checkpoint_in(Path(spec).expanduser())
    if path.suffix in (".ckpt", ".safetensors") or path.exists():
        if not path.is_file():
            raise ValueError(f"vqgan: checkpoint not found: {spec!r}")
        return VQGANRef(spec, read_factor(path), ckpt=path)
    try:
        model = get_model(spec)
    except ValueError as e:
        raise ValueError(f"vqgan: {e}") from None
    if model.kind != "vqgan":
        raise ValueError(f"vqgan: {spec!r} is a {model.kind} model, not a VQGAN")
    return VQGANRef(spec, model.factor or 16, model=model)


def fit_size(settings: VQGANClipSettings, factor: int, log: Log) -> VQGANClipSettings:
    """The size rounded down to the VQGAN's factor (with a message); at least one token."""
    width, height = (settings.width // factor) * factor, (settings.height // factor) * factor
    if not width or not height:
        raise ValueError(
            f"size: {settings.width}x{settings.height} is smaller than one latent token of this "
            f"VQGAN ({factor}x{factor} pixels)"
        )
    if (width, height) != (settings.width, settings.height):
        log(f"size {settings.width}x{settings.height} rounded down to {width}x{height} "
            f"(a multiple of the VQGAN's factor {factor})")
    return settings.replace(width=width, height=height)


def read_inputs(settings: VQGANClipSettings, cache: str | os.PathLike | None = None) -> Inputs:
    """Read the init image and image prompts (paths or URLs)."""
    from helpers.inputs import open_image
    from helpers.prompts import parse_prompts

    inputs = Inputs()
    if settings.init_image:
        inputs.init = open_image(settings.init_image, "init_image", cache)
    if settings.image_prompts.strip():
        for p in parse_prompts(settings.image_prompts):
            inputs.image_prompts.append((open_image(p.text, "image_prompts", cache), p))
    return inputs


def estimate_memory(settings: VQGANClipSettings, mixed: bool = False,
                    checkpointing: bool = False) -> int:
    """A rough estimate, in bytes, of the memory a run of this size needs.

    The f16 VQGAN decoder's activations kept for the backward pass dominate (see
    BYTES_PER_PIXEL); half with mixed precision; plus the weights and the CLIP cutouts.
    """
    per_pixel = BYTES_PER_PIXEL_CHECKPOINTED if checkpointing else BYTES_PER_PIXEL
    if mixed:
        per_pixel //= 2
    cutouts = settings.cutn * 3 * 224 * 224 * 4 * 40
    return settings.width * settings.height * per_pixel + cutouts + WEIGHTS_BYTES


def plan_memory(settings: VQGANClipSettings, device: Any, free: float | None,
                log: Log = print) -> bool:
    """Whether to checkpoint the decoder, given `free` bytes; `ValueError` with the estimate
    if nothing fits."""
    from helpers import memory
    from helpers.precision import autocast_dtype

    mixed = autocast_dtype(settings.precision, device) is not None
    chosen = memory.plan(
        lambda o: estimate_memory(settings, mixed, o["checkpointing"]),
        {"checkpointing": settings.checkpointing}, ("checkpointing",),
        free, f"size: {settings.width}x{settings.height}", device.type)
    if chosen["checkpointing"] and settings.checkpointing == "auto":
        log("decoder checkpointing on: this size needs it to fit in memory (about 25% slower)")
    return chosen["checkpointing"]
