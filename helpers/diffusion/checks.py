"""Diffusion, stage 1: everything that can be checked before a model loads.

Settings, the output and cache folders, the device and precision, the model and VAE
references, family-specific settings, the init image and the memory budget (GPU memory on
CUDA, RAM on the CPU). Bad input fails here with a `ValueError` naming the setting, and
nothing has been written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.diffusion.extras import Extra, check_extras
from helpers.diffusion.families import FAMILIES, Family
from helpers.diffusion.models import ModelRef, model_family, resolve_model
from helpers.diffusion.samplers import get_sampler, make_scheduler, runs_on_unet
from helpers.files import read_json
from helpers.reporting import Log
from helpers.settings import DiffusionSettings
from helpers.settings.base import MAX_FRAMES, MOTION

# Rough sizes for the memory estimate (the family's own figures are in its record): bytes per
# output pixel for a full VAE decode.
VAE_BYTES_PER_PIXEL = 2500
VAE_TILE_PIXELS = 512 * 512
# Inpainting's own tensors per output pixel and image, in fp32: the start latents, the latent
# mask and an inpainting UNet's 5 extra input channels, each a 1/64 of the pixels (4 + 1 + 5 + 4
# floats): a rounding error beside the UNet's activations, counted all the same.
INPAINT_BYTES_PER_PIXEL = (4 + 1 + 5 + 4) * 4 / 64
# A ControlNet's fp16 weights (SD 1.5's, SDXL's); its activations are about the UNet encoder
# half's, and the units run one after another
CONTROLNET_FP16 = (0.72e9, 2.5e9)
CONTROLNET_ACTIVATIONS = 0.5
# a face restorer (GFPGAN, CodeFormer: fp32 weights of 350-380 MB) kept on the device, and one
# 512x512 face pass (about 0.75 GB measured on the CPU; tools.faces.face_pass_bytes)
FACE_RESTORER_BYTES = (400e6, float(1 << 30))
MEMORY_OPTIONS = ("vae_slicing", "vae_tiling", "attention_slicing", "cpu_offload")
VAE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


@dataclass
class Checked:
    """A run's settings as it will run (seed fixed, size rounded) and what was checked."""

    settings: DiffusionSettings
    ref: ModelRef
    family: Family
    device: Any
    memory: dict[str, bool]
    extras: list[Extra]  # the LoRAs and textual-inversion embeddings the prompts use
    init_image: Any = None  # PIL image resized to the run's size; inpaint.Inpainting;
    #                         sd_upscale.Upscaling (enlarged, to be tiled); or None
    control: list = field(default_factory=list)  # control.run.CheckedUnit, one per unit
    faces: Any = None  # tools.faces.FaceRestorer with restore_faces, loaded; else None


def prepare(settings: DiffusionSettings, family: Family, log: Log = print) -> DiffusionSettings:
    """Round the size down and the outpaint borders up to the family's multiple (with a
    message) and fix a random seed."""
    changes: dict[str, Any] = {}
    for name in ("width", "height"):
        value = getattr(settings, name)
        if family.rounded(value) != value:
            changes[name] = family.rounded(value)
            log(f"{name} {value} rounded down to {changes[name]} (a multiple of "
                f"{family.multiple})")
    if settings.outpaint.strip():
        from helpers.diffusion.tools.borders import parse_outpaint

        borders = parse_outpaint(settings.outpaint)
        rounded = borders.rounded(family.multiple)
        if rounded != borders or rounded.text() != settings.outpaint:
            changes["outpaint"] = rounded.text()
            if rounded != borders:
                log(f"outpaint {settings.outpaint} rounded up to {rounded.text()} (a multiple "
                    f"of {family.multiple})")
    settings = settings.replace(**changes) if changes else settings
    return settings.with_seed()


def check_inputs(settings: DiffusionSettings, cache: str | os.PathLike | None = None,
                 log: Log = print) -> Checked:
    """Check a run before anything loads; `ValueError` naming the setting when it cannot run."""
    from helpers.device import pick_device
    from helpers.download import cache_folder
    from helpers.files import writable_folder
    from helpers.inputs import open_image
    from helpers.precision import weights_dtype

    writable_folder(settings.out, "out")
    cache_folder(cache)
    device = pick_device(settings.device, log)
    dtype_bytes = weights_dtype(settings.precision, device).itemsize
    ref = resolve_model(settings.model, cache)
    if settings.model_config:
        check_model_config(settings.model_config, settings.model, ref)
    family = model_family(ref, cache)
    settings = prepare(settings, family, log)
    check_family(settings, family)
    extras = check_extras(settings, family)
    if settings.animate:
        check_animation(settings)
    if settings.vae:
        check_vae(settings.vae, ref)
    check_sampler(settings.sampler)
    init = open_image(settings.init_image, "init_image", cache) if settings.init_image else None
    from helpers.memory import free_memory

    memory = plan_memory(settings, family, device.type, free_memory(device), dtype_bytes)
    if init is not None and inpaints(settings):
        from helpers.diffusion.tools.inpaint import inpainting_of

        init = inpainting_of(settings, init, cache, log)
    elif init is not None and settings.outpaint.strip():
        from helpers.diffusion.tools.outpaint import outpainting_of

        init = outpainting_of(settings, init)
    elif init is not None and settings.sd_upscale > 1:  # enlarged, not resized: tiles of the size
        from helpers.diffusion.tools.sd_upscale import upscaling_of

        init = upscaling_of(settings, init, device, cache, log=log)
    elif init is not None:
        init = init.resize((settings.width, settings.height), _lanczos())
    from helpers.diffusion.tools.control.run import check_control

    control = check_control(settings, ref, family, cache, log, init, device)
    check_hires_upscaler(settings, device, cache, log)
    faces = None
    if settings.restore_faces:
        from helpers.diffusion.tools.faces import load_face_restorer

        faces = load_face_restorer(settings.restore_faces, device, cache, log)
        settings = settings.replace(restore_faces=faces.name)  # the catalogue's spelling
    return Checked(settings, ref, family, device, memory, extras, init, control, faces)


def inpaints(settings: DiffusionSettings) -> bool:
    """Whether a run inpaints: a mask, or a mask from words."""
    return bool(settings.mask or settings.mask_prompt.strip())


def catalogue_models(choice: Mapping[str, str], cache: str | os.PathLike | None = None) -> list:
    """The catalogue model a model choice (notebook 2's `model`) names, resolved (an error
    naming the field) before anything downloads; none for a model of your own."""
    from helpers.catalog import find_model

    ref = resolve_model(choice.get("model", ""), cache)
    return [find_model(ref.spec)] if ref.kind == "catalogue" else []


def check_model_config(spec: str, model: str, ref: ModelRef) -> None:
    """A single-file model's configs: a Hub id, or a diffusers folder of the file's family
    with every part's config (no weights needed)."""
    from helpers.diffusion.models import check_parts, folder_family

    if ref.kind != "file":
        raise ValueError(f"model_config: only for single-file models, and {model!r} is a "
                         f"{ref.kind} model (got {spec!r})")
    path = Path(spec).expanduser()
    if path.is_dir():
        found = folder_family(path, "model_config")
        if found != ref.family:
            raise ValueError(f"model_config: {spec} is an {FAMILIES[found].title} model, and "
                             f"{model!r} is an {FAMILIES[ref.family].title} checkpoint")
        check_parts(path, found, "model_config", weights=False)
    elif path.exists():
        raise ValueError(f"model_config: {spec} is a file; give a diffusers folder (the one "
                         "that holds model_index.json) or a Hub id")
    elif not re.fullmatch(r"[\w.-]+/[\w.-]+", spec):
        raise ValueError(f"model_config: {spec!r} is not an existing folder, or a Hub id")


def check_hires_upscaler(settings: DiffusionSettings, device: Any,
                         cache: str | os.PathLike | None, log: Log) -> None:
    """Load the hires fix's model upscaler, if it has one, before the diffusion model (so a
    bad file fails first); errors name `hires_upscaler`."""
    from helpers.diffusion.sampling.upscale import is_model_upscaler

    if settings.hires_scale <= 1 or settings.init_image or \
            not is_model_upscaler(settings.hires_upscaler):
        return
    from helpers.diffusion.tools.upscalers import load_for_run, renamed

    try:
        load_for_run(settings.hires_upscaler, device, cache, log)
    except ValueError as e:
        raise ValueError(renamed(e, "hires_upscaler")) from None


def check_sampler(name: str) -> None:
    """A sampler's own needs, before anything loads: torchsde for the SDE samplers."""
    sampler = get_sampler(name)
    if sampler.kind == "diffusers":
        make_scheduler(name, {})
    elif sampler.brownian:
        try:
            import torchsde  # noqa: F401
        except ImportError:
            raise ValueError(f"sampler: {name!r} needs the torchsde package (pip install "
                             "torchsde); or choose another sampler such as 'DPM++ 2M'") from None


def check_family(settings: DiffusionSettings, family: Family) -> None:
    """Settings the model's family cannot honour."""
    if settings.sdxl_original_size and not family.size_conditioning:
        raise ValueError(f"sdxl_original_size: only for SDXL models; {settings.model!r} is "
                         f"an {family.title} model")
    problems = {  # setting: (used, what the family must offer)
        "init_image": (settings.init_image, family.img2img),
        "vae": (settings.vae, family.vae_override),
        "animate": (settings.animate, family.img2img and family.takes_embeddings
                    and not family.inpainting),
        "preview_every": (settings.preview_every, family.reports_steps),
        "save_trajectory": (settings.save_trajectory, family.reports_steps),
        "clip_skip": (settings.clip_skip != 1, family.clip_skip)}
    for name, (used, offered) in problems.items():
        if used and not offered:
            raise ValueError(f"{name}: not available with the {family.title} model "
                             f"(got {getattr(settings, name)!r})")
    if not family.k_samplers and get_sampler(settings.sampler).sigma_space:
        raise ValueError(f"sampler: the {family.title} pipeline cannot run "
                         f"{settings.sampler!r}; use DDIM, PLMS, DPM++ 2M (Karras), "
                         "DPM++ 2M SDE (Karras), UniPC or LCM")
    if family.inpainting and not runs_on_unet(settings.sampler, family):
        raise ValueError(f"sampler: an {family.title} model runs on the web UI's k-diffusion "
                         f"samplers for now, not on {settings.sampler!r} (DDIM, PLMS, UniPC "
                         "and LCM are diffusers schedulers); choose Euler a, DPM++ 2M or another")


def check_animation(settings: DiffusionSettings) -> None:
    """An animation's keyframes and input video, read before anything loads."""
    from helpers.diffusion.frames import walk_keyframes

    if settings.animate == "walk":
        check_walk_prompts(settings, walk_keyframes(settings))
    frames = settings.frames
    if settings.animate == "video":
        frames = min(frames or MAX_FRAMES, check_video(settings.init_video))
    check_schedules(settings, frames)


def check_walk_prompts(settings: DiffusionSettings, keys: list) -> None:
    """A walk blends one embedding per keyframe: no text may change during sampling there."""
    from helpers.diffusion.prompt_schedule import is_scheduled

    field = "prompt_schedule" if settings.prompt_schedule.strip() else "prompt"
    texts = [(field, f"keyframe {k.frame}", k.prompt) for k in keys]
    texts.append(("negative_prompt", "the negative prompt", settings.negative_prompt))
    for name, where, text in texts:
        if is_scheduled(text):
            raise ValueError(f"{name}: {where} uses prompt editing or alternation ([a:b:when], "
                             "[a|b]), which a walk cannot blend (it blends one embedding per "
                             "keyframe); use it in images, 2d or video animations")


def check_schedules(settings: DiffusionSettings, frames: int) -> None:
    """The schedules an animation uses, within their limits at each of its `frames`."""
    from helpers.animation import check_schedule_values

    names = [*MOTION, "noise_schedule"] if settings.animate == "2d" else []
    if settings.animate in ("2d", "video") and settings.strength_schedule.strip():
        names.append("strength_schedule")
    for name in names:
        check_schedule_values(getattr(settings, name), name, frames)


def check_video(path: str) -> int:
    """The input video must exist and be readable by ffmpeg; its number of frames as ffmpeg
    estimates it (`MAX_FRAMES` where it cannot)."""
    import imageio_ffmpeg

    file = Path(path).expanduser()
    if not file.is_file():
        what = "is a folder, not a video" if file.is_dir() else "not found"
        raise ValueError(f"init_video: {path!r} {what}")
    try:
        reader = imageio_ffmpeg.read_frames(str(file))
        meta = next(reader)
        reader.close()
    except (OSError, RuntimeError, StopIteration) as e:
        reason = (str(e).strip().splitlines() or ["no frames"])[-1][:120]
        raise ValueError(f"init_video: cannot read {path!r} as a video ({reason})") from None
    if not meta.get("size") or 0 in meta["size"]:
        raise ValueError(f"init_video: {path!r} has no video stream")
    count = meta.get("nframes")
    return int(count) if isinstance(count, (int, float)) and 0 < count < MAX_FRAMES \
        else MAX_FRAMES


def check_vae(spec: str, ref: ModelRef) -> None:
    """A VAE override must be a VAE: a checkpoint with encoder and decoder weights, a diffusers
    AutoencoderKL folder, or a Hub id."""
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() not in VAE_FILE_SUFFIXES:
            raise ValueError(f"vae: {path.name} is not a checkpoint (.safetensors, .ckpt, .pt)")
        if ref.kind == "file":
            raise ValueError(f"vae: a single-file VAE needs a diffusers model to take its config "
                             f"from, and {ref.spec!r} is a single file too; give a VAE folder "
                             f"or Hub id instead of {spec!r}")
        _check_vae_keys(path)
    elif path.is_dir():
        _check_vae_folder(path / "vae" if (path / "vae").is_dir() else path, spec)
    elif not re.fullmatch(r"[\w.-]+/[\w.-]+", spec):
        raise ValueError(f"vae: {spec!r} is not an existing file or folder, or a Hub id")


def _check_vae_folder(folder: Path, spec: str) -> None:
    """A diffusers AutoencoderKL folder: its config.json says so, and it holds weights."""
    from helpers.diffusion.models import weights_problem

    config = folder / "config.json"
    try:
        name = read_json(config, f"vae: {config}").get("_class_name")
    except (OSError, ValueError, AttributeError):
        name = None
    if name != "AutoencoderKL":
        raise ValueError(f"vae: {spec} holds no AutoencoderKL config (config.json); give a "
                         "diffusers VAE folder")
    problem = weights_problem(folder, "diffusers")
    if problem:
        raise ValueError(f"vae: {folder}/{problem}")


def _check_vae_keys(path: Path) -> None:
    """The file's tensor names must include a VAE's encoder and decoder."""
    keys = _tensor_names(path)
    found = {part for key in keys for part in ("encoder.", "decoder.") if part in key}
    if found != {"encoder.", "decoder."}:
        raise ValueError(f"vae: {path.name} is not a VAE checkpoint (it has no encoder and "
                         "decoder weights); give the VAE's .safetensors or .ckpt file")


def _tensor_names(path: Path) -> list[str]:
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return list(f.keys())
        except Exception as e:
            raise ValueError(f"vae: cannot read {path.name} as safetensors ({e})") from None
    from helpers.safeload import load_state_dict

    try:
        state = load_state_dict(path, depth=1)
    except ValueError:
        raise ValueError(f"vae: {path.name} is not a readable checkpoint") from None
    return [k for k in state if isinstance(k, str)] if state is not None else []


def _lanczos() -> Any:
    from PIL import Image

    return Image.Resampling.LANCZOS


# --- memory ----------------------------------------------------------------------------------


def estimate_bytes(family: Family, width: int, height: int, batch: int, dtype_bytes: int,
                   options: dict[str, bool], inpaint: bool = False, control: int = 0,
                   faces: bool = False) -> float:
    """Rough peak memory of a run with the given memory options (`inpaint`: with a mask;
    `control`: its ControlNet units; `faces`: a face restorer beside the model)."""
    scale = dtype_bytes / 2
    weights = family.weights_fp16 * scale
    if options.get("cpu_offload"):
        weights *= 0.75  # only the largest model (the UNet) is on the GPU at a time
    pixels = width * height
    unet = 2 * batch * pixels * family.unet_bytes_per_pixel * scale
    if options.get("attention_slicing"):
        unet /= 2
    if control:  # the ControlNets stay on the device; one runs at a time beside the UNet
        weights += control * CONTROLNET_FP16[bool(family.size_conditioning)] * scale
        unet *= 1 + CONTROLNET_ACTIVATIONS
    # start latents, mask, an inpainting UNet's 5 channels: held from start to decode
    held = batch * pixels * INPAINT_BYTES_PER_PIXEL if inpaint or family.inpainting else 0
    # the VAE: a decode of the batch; the init (and masked) image's encodes run one image at
    # a time before sampling and need no more than a decode of one
    decoded = 1 if options.get("vae_slicing") else batch
    vae = min(pixels, VAE_TILE_PIXELS) if options.get("vae_tiling") else pixels
    face_weights, face_pass = FACE_RESTORER_BYTES if faces else (0, 0)  # after the decode
    return weights + face_weights + held + max(unet, decoded * vae * VAE_BYTES_PER_PIXEL * scale,
                                               face_pass)


def plan_memory(settings: DiffusionSettings, family: Family, device_type: str,
                free: float | None, dtype_bytes: int = 2) -> dict[str, bool]:
    """Memory options: the settings' on/off, and `auto` ones switched on, in the order of
    `MEMORY_OPTIONS`, until the run fits the free memory (GPU memory on CUDA, RAM on the CPU).

    `ValueError` when it does not fit with every option on; model CPU offload needs CUDA.
    """
    from helpers import memory

    switches = {n: getattr(settings, n) for n in MEMORY_OPTIONS}
    order = MEMORY_OPTIONS
    if device_type != "cuda":
        if switches.pop("cpu_offload") == "on":
            raise ValueError(f"cpu_offload: needs a CUDA GPU (the device is {device_type})")
        order = tuple(n for n in MEMORY_OPTIONS if n != "cpu_offload")
        if settings.batch_size > 1 and switches["vae_slicing"] == "auto":
            switches["vae_slicing"] = "on"  # costs nothing where no GPU memory is measured
    if device_type == "mps" and switches["attention_slicing"] == "auto":
        switches["attention_slicing"] = "on"
    width, height = settings.canvas_size()
    args = (family, width, height, settings.batch_size, dtype_bytes)
    from helpers.diffusion.tools.control.units import parse_control

    units = len(parse_control(settings.control))
    masked = inpaints(settings) or bool(settings.outpaint.strip())
    what = (f"outpaint: {settings.outpaint} grows the canvas to {width}x{height}"
            if settings.outpaint.strip() else f"width/height: {width}x{height}")
    faces = bool(settings.restore_faces)
    chosen = memory.plan(lambda options: estimate_bytes(*args, options, masked, units, faces),
                         switches, order, free, f"{what} with batch size {settings.batch_size}",
                         device_type)
    return {"cpu_offload": False, **chosen}


def check_loaded(settings: DiffusionSettings, pipe: Any) -> None:
    """What only the loaded model can tell: clip skip against its text encoder's layers."""
    encoder = getattr(pipe, "text_encoder", None)
    layers = getattr(getattr(encoder, "config", None), "num_hidden_layers", None)
    if isinstance(layers, int) and settings.clip_skip > layers:
        raise ValueError(f"clip_skip: {settings.clip_skip} is more than the {layers} layers of "
                         f"this model's text encoder; use 1 to {layers}")
