"""Loading a diffusion pipeline: weights, precision, VAE override, sampler and memory options.

Memory options (attention slicing, VAE slicing / tiling, model CPU offload) are settings; `auto`
chooses them from the free GPU memory and a rough estimate of what the run needs, and a size
that cannot fit even with all of them on is an error before anything loads.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.diffusion.models import (
    IMG2IMG_CLASSES,
    PIPELINE_CLASSES,
    SINGLE_FILE_TYPES,
    Log,
    ModelRef,
    hub_family,
    resolve_model,
    weights_file,
)
from helpers.settings import DiffusionSettings

GB = 1e9
# Rough sizes for the memory estimate: fp16 weights per family, and bytes per output pixel
# for the UNet's activations (per image and guidance half) and for a full VAE decode.
WEIGHTS_FP16 = {"sd": 2.6 * GB, "sdxl": 7.0 * GB, "ldm": 2.9 * GB}
UNET_BYTES_PER_PIXEL = {"sd": 1200, "sdxl": 800, "ldm": 1200}
VAE_BYTES_PER_PIXEL = 2500
VAE_TILE_PIXELS = 512 * 512
HEADROOM = 0.9  # use at most this share of the free memory
_VARIANT = re.compile(r"\.fp16\.(safetensors|bin)$")


@dataclass
class Loaded:
    """A loaded txt2img pipeline and what the infotext says about it."""

    pipe: Any
    family: str  # "sd" | "sdxl" | "ldm"
    ref: ModelRef
    model_hash: str = ""  # the web UI's short hash: first 10 hex digits of a sha256
    vae_label: str = ""  # the VAE override's name, "" = the model's own
    scheduler_config: dict = field(default_factory=dict)  # the model's own scheduler config


def pick_dtype(precision: str, device: Any) -> Any:
    """fp16 on CUDA and MPS, fp32 on the CPU for "auto"; else the named precision."""
    import torch

    if precision == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def dtype_kwargs(dtype: Any) -> dict[str, Any]:
    """`dtype=` for diffusers versions that renamed `torch_dtype` (and warn about it)."""
    try:
        from diffusers.utils.deprecation_utils import _TORCH_DTYPE_DEPRECATION_MESSAGE  # noqa: F401
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}


def load_pipeline(settings: DiffusionSettings, cache: str | os.PathLike | None = None,
                  log: Log = print, ref: ModelRef | None = None, device: Any = None) -> Loaded:
    """Load the settings' model in its precision, with the VAE override (not yet moved)."""
    from helpers.device import pick_device

    ref = ref or resolve_model(settings.model, cache)
    device = device if device is not None else pick_device(settings.device, log)
    dtype = pick_dtype(settings.precision, device)
    pipe, family, source = _load(ref, settings, dtype, cache, log)
    loaded = Loaded(pipe, family, ref, scheduler_config=dict(pipe.scheduler.config))
    if settings.vae:
        pipe.vae = load_vae(settings.vae, source, dtype, cache)
        loaded.vae_label = Path(settings.vae).stem if Path(settings.vae).exists() else settings.vae
    loaded.model_hash = model_hash(source, cache)
    pipe.set_progress_bar_config(disable=True)
    return loaded


def _load(ref: ModelRef, settings: DiffusionSettings, dtype: Any, cache, log: Log):
    """(pipeline, family, the folder or file its weights came from)."""
    import diffusers

    from helpers.download import cache_dir, fetch

    hub = cache_dir(cache) / "hub"
    if ref.kind == "file":
        family, default_config = SINGLE_FILE_TYPES[ref.file_type]
        cls = getattr(diffusers, PIPELINE_CLASSES[family])
        path = weights_file(Path(ref.spec).expanduser(), cache)
        log(f"loading {ref.label} from the single file {path.name}")
        pipe = cls.from_single_file(str(path), config=settings.model_config or default_config,
                                    cache_dir=hub, **dtype_kwargs(dtype))
        return pipe, family, path
    if ref.kind == "hub":
        family = hub_family(ref.spec, cache)
        return _from_hub(ref.spec, family, dtype, hub, log), family, None
    folder = Path(fetch(ref.spec, cache=cache, log=log)) if ref.kind == "catalogue" \
        else Path(ref.spec).expanduser()
    cls = getattr(diffusers, PIPELINE_CLASSES[ref.family])
    pipe = cls.from_pretrained(folder, variant=_folder_variant(folder), **dtype_kwargs(dtype),
                               **_extras(ref.family))
    return pipe, ref.family, folder


def _extras(family: str) -> dict[str, Any]:
    """No safety checker (as in the web UIs): the SD pipelines accept these keywords."""
    return {"safety_checker": None, "requires_safety_checker": False} if family == "sd" else {}


def _folder_variant(folder: Path) -> str | None:
    """'fp16' when the folder's UNet weights exist only as the fp16 variant."""
    unet = folder / "unet"
    files = [p.name for p in unet.iterdir()] if unet.is_dir() else []
    plain = any(n.startswith("diffusion_pytorch_model.") and not _VARIANT.search(n)
                for n in files)
    return "fp16" if not plain and any(_VARIANT.search(n) for n in files) else None


def _from_hub(repo: str, family: str, dtype: Any, hub: Path, log: Log):
    """from_pretrained on a Hub id; the fp16 variant first where fp16 is wanted."""
    import diffusers
    import torch

    cls = getattr(diffusers, PIPELINE_CLASSES[family])
    log(f"loading {repo} from the Hugging Face Hub (cached in {hub})")
    kwargs = {**dtype_kwargs(dtype), "cache_dir": hub, **_extras(family)}
    if dtype == torch.float16:
        try:
            return cls.from_pretrained(repo, variant="fp16", **kwargs)
        except (OSError, ValueError):
            log(f"{repo} has no fp16 variant: loading its full-precision weights")
    return cls.from_pretrained(repo, **kwargs)


def load_vae(spec: str, model_source: Path | None, dtype: Any, cache=None):
    """An AutoencoderKL from a Hub id, a diffusers folder or a single file."""
    from diffusers import AutoencoderKL

    from helpers.download import cache_dir

    path = Path(spec).expanduser()
    hub = cache_dir(cache) / "hub"
    if path.is_file():
        config = model_source if model_source is not None and model_source.is_dir() else None
        if config is None:
            raise ValueError(f"vae: a single-file VAE needs a diffusers model to take its config "
                             f"from; give a VAE folder or Hub id instead of {spec!r}")
        return AutoencoderKL.from_single_file(str(path), config=str(config), subfolder="vae",
                                              **dtype_kwargs(dtype))
    if path.is_dir():
        sub = "vae" if (path / "vae" / "config.json").is_file() else None
        return AutoencoderKL.from_pretrained(path, subfolder=sub, **dtype_kwargs(dtype))
    if re.fullmatch(r"[\w.-]+/[\w.-]+", spec):
        return AutoencoderKL.from_pretrained(spec, cache_dir=hub, **dtype_kwargs(dtype))
    raise FileNotFoundError(f"vae: {spec!r} is not an existing file or folder, or a Hub id")


def img2img_pipeline(loaded: Loaded):
    """The img2img pipeline sharing the loaded components (no copies)."""
    import diffusers

    if loaded.family not in IMG2IMG_CLASSES:
        raise ValueError(f"init_image: the {loaded.family} pipeline has no img2img mode")
    cls = getattr(diffusers, IMG2IMG_CLASSES[loaded.family])
    pipe = cls.from_pipe(loaded.pipe, **_extras(loaded.family))
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --- model hash ---------------------------------------------------------------------------------


def model_hash(source: Path | None, cache=None) -> str:
    """The web UI's short hash (10 hex digits of sha256) of a single file or a folder's UNet."""
    if source is None:
        return ""
    target = source if source.is_file() else _unet_weights(source)
    if target is None:
        return ""
    resolved = target.resolve()
    if re.fullmatch(r"[0-9a-f]{64}", resolved.name):  # a Hub cache blob is named by its sha256
        return resolved.name[:10]
    return _cached_sha256(resolved, cache)[:10]


def _unet_weights(folder: Path) -> Path | None:
    found = sorted((folder / "unet").glob("diffusion_pytorch_model*"))
    return found[0] if found else None


def _cached_sha256(path: Path, cache=None) -> str:
    """sha256 of a file, remembered by path, size and mtime (big checkpoints take seconds)."""
    from helpers.download import cache_dir
    from helpers.download.hashes import sha256
    from helpers.files import atomic_write_text

    record = cache_dir(cache) / "model-hashes.json"
    try:
        known = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    if key not in known:
        known[key] = sha256(path)
        atomic_write_text(record, json.dumps(known, indent=1))
    return known[key]


# --- memory -------------------------------------------------------------------------------------


def estimate_bytes(family: str, width: int, height: int, batch: int, dtype_bytes: int,
                   options: dict[str, bool]) -> float:
    """Rough peak GPU memory of a run with the given memory options."""
    scale = dtype_bytes / 2
    weights = WEIGHTS_FP16[family] * scale
    if options.get("cpu_offload"):
        weights *= 0.75  # only the largest model (the UNet) is on the GPU at a time
    pixels = width * height
    unet = 2 * batch * pixels * UNET_BYTES_PER_PIXEL[family] * scale
    if options.get("attention_slicing"):
        unet /= 2
    decoded = 1 if options.get("vae_slicing") else batch
    vae = min(pixels, VAE_TILE_PIXELS) if options.get("vae_tiling") else pixels
    return weights + max(unet, decoded * vae * VAE_BYTES_PER_PIXEL * scale)


def choose_memory(settings: DiffusionSettings, family: str, device_type: str,
                  free_bytes: float | None, dtype_bytes: int = 2) -> dict[str, bool]:
    """Memory options: the settings' on/off, and `auto` ones chosen from free GPU memory.

    On CUDA, an `auto` option is switched on only when the run would not fit without it, in
    order: VAE slicing, VAE tiling, attention slicing, model CPU offload. Raises ValueError
    when the size does not fit even with every option on. Elsewhere `auto` leaves them off,
    except VAE slicing for batches (it costs nothing) and attention slicing on MPS.
    """
    names = ("vae_slicing", "vae_tiling", "attention_slicing", "cpu_offload")
    chosen = {n: getattr(settings, n) == "on" for n in names}
    auto = [n for n in names if getattr(settings, n) == "auto"]
    if chosen["cpu_offload"] and device_type != "cuda":
        raise ValueError(f"cpu_offload: needs a CUDA GPU (the device is {device_type})")
    if device_type != "cuda" or free_bytes is None:
        chosen["vae_slicing"] |= "vae_slicing" in auto and settings.batch_size > 1
        chosen["attention_slicing"] |= "attention_slicing" in auto and device_type == "mps"
        return chosen
    args = (family, settings.width, settings.height, settings.batch_size, dtype_bytes)
    for name in auto:
        if estimate_bytes(*args, chosen) <= HEADROOM * free_bytes:
            break
        chosen[name] = True
    need = estimate_bytes(*args, dict.fromkeys(names, True))
    if need > HEADROOM * free_bytes:
        raise ValueError(
            f"width/height: {settings.width}x{settings.height} with batch size "
            f"{settings.batch_size} needs about {need / GB:.1f} GB of GPU memory even with "
            f"every memory option on; this GPU has {free_bytes / GB:.1f} GB free")
    return chosen


def free_gpu_bytes(device: Any) -> float | None:
    """Free memory of a CUDA device in bytes (None elsewhere)."""
    from helpers.device import free_memory

    return free_memory(device) if device.type == "cuda" else None


def apply_memory(pipe, options: dict[str, bool], device: Any) -> None:
    """Move the pipeline to its device with the chosen memory options."""
    if options.get("cpu_offload"):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if options.get("attention_slicing"):
        pipe.enable_attention_slicing()
    vae = getattr(pipe, "vae", None) or getattr(pipe, "vqvae", None)
    if options.get("vae_slicing") and hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
    if options.get("vae_tiling") and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()


def family_of(settings: DiffusionSettings, cache=None) -> tuple[ModelRef, str]:
    """The model's reference and family, reading a Hub repo's index if need be."""
    ref = resolve_model(settings.model, cache)
    return ref, ref.family or hub_family(ref.spec, cache)
