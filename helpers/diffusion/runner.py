"""A diffusion run end to end: check inputs, load the model, run, save every image.

Order matters: settings, input files, the model reference and the memory budget are checked
before any model loads, and the run folder is made only after the model loaded, so bad input
writes nothing. Every image is saved as soon as its batch is done, with the web UI's infotext
and its own settings (its seed, batch of one), so an interruption keeps finished images and
`--from-image` re-makes any one of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.diffusion.loading import (
    Loaded,
    apply_memory,
    choose_memory,
    free_gpu_bytes,
    load_pipeline,
    pick_dtype,
)
from helpers.diffusion.loop import Generated, decode_latents, fast_preview, run, run_pipeline
from helpers.diffusion.models import CATALOGUE_FAMILIES, ModelRef, hub_family, resolve_model
from helpers.diffusion.samplers import get_sampler, infotext_sampler, make_scheduler
from helpers.settings import DiffusionSettings, random_seed

Log = Callable[[str], object]
OnImage = Callable[[Path, Any], object]  # (saved PNG, PIL image)
OnPreview = Callable[[int, int, Any], object]  # (step, steps in all, PIL image)
MULTIPLE = 8  # the VAE's downscaling factor: sizes are rounded down to it
TRAJECTORY = "trajectory"  # run_dir/trajectory/<image index>/frames/000001.png, ...


@dataclass
class Checked:
    """What was checked before loading: the model and its family, device and memory plan."""

    ref: ModelRef
    family: str
    device: Any
    memory: dict[str, bool]
    init_image: Any = None  # PIL image resized to the run's size, or None


def prepare(settings: DiffusionSettings, log: Log = print) -> DiffusionSettings:
    """Round the size down to a multiple of 8 (with a message) and fix a random seed."""
    changes: dict[str, Any] = {}
    for name in ("width", "height"):
        value = getattr(settings, name)
        if value % MULTIPLE:
            changes[name] = value - value % MULTIPLE
            log(f"{name} {value} rounded down to {changes[name]} (a multiple of {MULTIPLE})")
    if settings.seed is None:
        changes["seed"] = random_seed()
    return settings.replace(**changes) if changes else settings


def check_inputs(settings: DiffusionSettings, cache: str | os.PathLike | None = None,
                 log: Log = print) -> Checked:
    """Everything that can be checked before a model loads; ValueError names the setting."""
    from helpers.device import pick_device
    from helpers.inputs import open_image

    ref = resolve_model(settings.model, cache)
    if settings.model_config and ref.kind != "file":
        raise ValueError(f"model_config: only for single-file models, and {settings.model!r} "
                         f"is a {ref.kind} model (got {settings.model_config!r})")
    family = ref.family or hub_family(ref.spec, cache)
    _check_family(settings, family)
    make_scheduler(settings.sampler, {})  # a missing torchsde shows here, not after loading
    init = None
    if settings.init_image:
        init = open_image(settings.init_image, "init_image", cache)
        init = init.resize((settings.width, settings.height), _lanczos())
    device = pick_device(settings.device, log)
    dtype_bytes = pick_dtype(settings.precision, device).itemsize
    memory = choose_memory(settings, family, device.type, free_gpu_bytes(device), dtype_bytes)
    return Checked(ref, family, device, memory, init)


def _check_family(settings: DiffusionSettings, family: str) -> None:
    if settings.sdxl_original_size and family != "sdxl":
        raise ValueError(f"sdxl_original_size: only for SDXL models; {settings.model!r} is "
                         f"an {family.upper()} model")
    if family != "ldm":
        return
    problems = {"init_image": settings.init_image, "vae": settings.vae,
                "preview_every": settings.preview_every,
                "save_trajectory": settings.save_trajectory,
                "clip_skip": settings.clip_skip != 1}
    for name, value in problems.items():
        if value:
            raise ValueError(f"{name}: not available with the latent-diffusion (ldm) model "
                             f"(got {getattr(settings, name)!r})")
    if get_sampler(settings.sampler).sigma_space:
        raise ValueError(f"sampler: the latent-diffusion (ldm) pipeline cannot run "
                         f"{settings.sampler!r}; use DDIM, PLMS, DPM++ 2M (Karras), "
                         "DPM++ 2M SDE (Karras), UniPC or LCM")


def _lanczos() -> Any:
    from PIL import Image

    return Image.Resampling.LANCZOS


def generate(settings: DiffusionSettings, cache: str | os.PathLike | None = None,
             log: Log = print, on_image: OnImage | None = None,
             on_preview: OnPreview | None = None, loaded: Loaded | None = None) -> Path:
    """Run `settings` and return the run folder (`loaded`: a pipeline to reuse)."""
    from helpers.runs import new_run

    settings = prepare(settings, log)
    checked = check_inputs(settings, cache, log)
    if loaded is None:
        loaded = load_pipeline(settings, cache, log, checked.ref, checked.device)
    pipe = run_pipeline(loaded, checked.init_image)
    apply_memory(pipe, checked.memory, checked.device)
    run_dir = new_run(Path(settings.out), settings.prompt, settings.to_json())
    on_step = _on_step(settings, loaded, run_dir, on_preview)
    saved = 0
    try:
        for item in run(settings, loaded, checked.init_image, on_step, pipe):
            path = save_image(run_dir, item, settings, loaded)
            saved += 1
            if on_image:
                on_image(path, item.image)
    except KeyboardInterrupt:
        log(f"interrupted: {saved} finished image(s) kept in {run_dir}")
        raise
    log(f"{saved} image(s) in {run_dir}")
    return run_dir


def _on_step(settings: DiffusionSettings, loaded: Loaded, run_dir: Path,
             on_preview: OnPreview | None):
    """The step callback: previews every N steps and trajectory frames, or None."""
    previews = on_preview is not None and settings.preview_every > 0
    if not previews and not settings.save_trajectory:
        return None

    def on_step(batch: int, step: int, total: int, latents: Any, pipe: Any) -> None:
        if previews and (step + 1) % settings.preview_every == 0:
            if settings.preview_mode == "vae":
                image = decode_latents(pipe, latents[:1])[0]
            else:
                image = fast_preview(latents[:1], loaded.family)[0]
            on_preview(step + 1, total, image)
        if settings.save_trajectory:
            _save_trajectory(run_dir, batch, step, decode_latents(pipe, latents), settings)

    return on_step


def _save_trajectory(run_dir: Path, batch: int, step: int, images: list,
                     settings: DiffusionSettings) -> None:
    from helpers.runs import save_frame

    for k, image in enumerate(images):
        folder = run_dir / TRAJECTORY / f"{batch * settings.batch_size + k + 1:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        save_frame(folder, step + 1, image, f"trajectory step {step + 1}", settings.to_json(),
                   overwrite=True)


# --- what each image carries --------------------------------------------------------------------


def image_settings(settings: DiffusionSettings, seed: int) -> DiffusionSettings:
    """The settings that re-make one image alone: its seed, one batch of one."""
    return settings.replace(seed=seed, batch_count=1, batch_size=1)


def infotext_params(settings: DiffusionSettings, seed: int, loaded: Loaded) -> dict[str, Any]:
    """The web UI's params line of one image."""
    sampler, schedule = infotext_sampler(settings.sampler)
    return {
        "Steps": settings.steps, "Sampler": sampler, "Schedule type": schedule,
        "CFG scale": f"{settings.cfg_scale:g}", "Seed": seed,
        "Size": f"{settings.width}x{settings.height}",
        "Model hash": loaded.model_hash or None, "Model": loaded.ref.label,
        "VAE": loaded.vae_label or None,
        "Denoising strength": f"{settings.strength:g}" if settings.init_image else None,
        "Clip skip": settings.clip_skip, "Prompt mode": settings.prompt_mode,
    }


def save_image(run_dir: Path, item: Generated, settings: DiffusionSettings,
               loaded: Loaded) -> Path:
    """Save one image as a frame with its infotext and settings."""
    from helpers.runs import format_infotext, save_frame

    infotext = format_infotext(settings.prompt, settings.negative_prompt,
                               infotext_params(settings, item.seed, loaded))
    own = image_settings(settings, item.seed).to_json()
    return save_frame(run_dir, item.index, item.image, infotext, own)


def settings_from_image(png: str | os.PathLike, **overrides: Any) -> DiffusionSettings:
    """Settings stored in an image (ours, or a web UI infotext), with `overrides` applied."""
    from helpers.runs import parse_infotext, read_image_info

    infotext, stored = read_image_info(Path(png))
    if stored is not None:
        if stored.get("kind") != DiffusionSettings.kind:
            raise ValueError(f"from_image: {png} was made by a {stored.get('kind')!r} run, "
                             "not a diffusion run")
        return DiffusionSettings.from_dict(stored).replace(**overrides)
    if infotext is None:
        raise ValueError(f"from_image: {png} holds no generation settings")
    return DiffusionSettings(**{**_from_infotext(parse_infotext(infotext), overrides),
                                **overrides})


def _from_infotext(info: dict[str, str], overrides: dict[str, Any]) -> dict[str, Any]:
    """Our settings from a web UI infotext (its Model is kept only if we know it).

    Values that `overrides` replace are not read, so an override fixes what we cannot read.
    """
    from helpers.diffusion.samplers import sampler_from_infotext

    values: dict[str, Any] = {"prompt": info["Prompt"], "negative_prompt": info["Negative prompt"]}
    numbers = {"Steps": ("steps", int), "CFG scale": ("cfg_scale", float), "Seed": ("seed", int),
               "Size-1": ("width", int), "Size-2": ("height", int),
               "Denoising strength": ("strength", float), "Clip skip": ("clip_skip", int)}
    for key, (name, kind) in numbers.items():
        if key in info and name not in overrides:
            try:
                values[name] = kind(info[key])
            except ValueError:
                raise ValueError(f"from_image: {key} {info[key]!r} is not a number") from None
    if "Sampler" in info and "sampler" not in overrides:
        values["sampler"] = sampler_from_infotext(info["Sampler"], info.get("Schedule type", ""))
    if info.get("Model") in CATALOGUE_FAMILIES:
        values["model"] = info["Model"]
    if info.get("Prompt mode") in DiffusionSettings.PROMPT_MODES:
        values["prompt_mode"] = info["Prompt mode"]
    return values
