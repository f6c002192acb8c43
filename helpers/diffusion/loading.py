"""Diffusion, stage 2: the pipeline of a checked run, loaded once in its precision.

The loaded pipeline is never changed by a run: each run makes its own pipeline object on the
same components (`pipeline_for`, with its own scheduler) and its memory options are undone
when it ends (`memory_options`), so the next run that reuses it starts from the same state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.diffusion.checks import Checked, check_loaded
from helpers.diffusion.families import SINGLE_FILE_TYPES, Family
from helpers.diffusion.models import ModelRef, model_family, resolve_model, weights_file
from helpers.reporting import Log, logger_level
from helpers.settings import DiffusionSettings

_VARIANT = re.compile(r"\.fp16\.(safetensors|bin)$")


@dataclass
class Loaded:
    """A loaded txt2img pipeline and what the infotext says about it."""

    pipe: Any
    family: Family
    ref: ModelRef
    model_hash: str = ""  # the web UI's short hash: first 10 hex digits of a sha256
    vae_label: str = ""  # the VAE override's name, "" = the model's own
    scheduler_config: dict = field(default_factory=dict)  # the model's own scheduler config
    controlnets: dict = field(default_factory=dict)  # ControlNet spec -> the loaded model


def dtype_kwargs(dtype: Any) -> dict[str, Any]:
    """diffusers' `from_pretrained` keyword for a dtype."""
    from helpers.precision import dtype_kwargs as kwargs

    return kwargs("diffusers", dtype)


def load_models(checked: Checked, cache: str | os.PathLike | None = None, log: Log = print,
                progress: bool = True) -> Loaded:
    """Load the checked run's pipeline (downloading it if need be) and check what only the
    loaded model can tell."""
    from helpers.reporting import library_bars

    with library_bars(progress):
        loaded = load_pipeline(checked.settings, cache, log, checked.ref, checked.device,
                               checked.family)
        if checked.control:
            from helpers.diffusion.tools.control.run import load_controlnets

            load_controlnets(loaded, checked.control, cache, log)
    check_loaded(checked.settings, loaded.pipe)
    return loaded


def load_pipeline(settings: DiffusionSettings, cache: str | os.PathLike | None = None,
                  log: Log = print, ref: ModelRef | None = None, device: Any = None,
                  family: Family | None = None) -> Loaded:
    """Load the settings' model in its precision, with the VAE override (not yet moved);
    `ref`, `device` and `family`: as the check stage resolved them (else resolved here)."""
    from helpers.device import pick_device
    from helpers.precision import weights_dtype

    ref = ref or resolve_model(settings.model, cache)
    family = family or model_family(ref, cache)
    device = device if device is not None else pick_device(settings.device, log)
    dtype = weights_dtype(settings.precision, device)
    pipe, source = _load(ref, family, settings, dtype, cache, log)
    loaded = Loaded(pipe, family, ref, scheduler_config=dict(pipe.scheduler.config))
    if settings.vae:
        pipe.vae = load_vae(settings.vae, source, dtype, cache)
        loaded.vae_label = Path(settings.vae).stem if Path(settings.vae).exists() else settings.vae
    loaded.model_hash = model_hash(source, cache)
    pipe.set_progress_bar_config(disable=True)
    return loaded


def _load(ref: ModelRef, family: Family, settings: DiffusionSettings, dtype: Any, cache,
          log: Log):
    """(pipeline, the folder or file its weights came from)."""
    import diffusers

    from helpers.download import fetch, hub_cache

    hub = hub_cache(cache)
    if ref.kind == "file":
        default_config = SINGLE_FILE_TYPES[ref.file_type][1]
        cls = getattr(diffusers, family.pipeline)
        path = weights_file(Path(ref.spec).expanduser(), cache)
        log(f"loading {ref.label} from the single file {path.name}")
        pipe = cls.from_single_file(str(path), config=settings.model_config or default_config,
                                    cache_dir=hub, **dtype_kwargs(dtype))
        return pipe, path
    if ref.kind == "hub":
        return _from_hub(ref.spec, family, dtype, hub, log), None
    folder = Path(fetch(ref.spec, cache=cache, log=log)) if ref.kind == "catalogue" \
        else Path(ref.spec).expanduser()
    return _from_folder(folder, family, dtype), folder


def _from_folder(folder: Path, family: Family, dtype: Any):
    """from_pretrained on a diffusers folder; a `ValueError` naming the `model` setting when
    its files do not load (what `models.check_parts` cannot see, such as a damaged .bin)."""
    import pickle

    import diffusers

    cls = getattr(diffusers, family.pipeline)
    try:  # diffusers logs an error for a part without .safetensors, then loads its .bin
        with logger_level("diffusers.models.modeling_utils", logging.CRITICAL):
            return cls.from_pretrained(folder, variant=_folder_variant(folder),
                                       **dtype_kwargs(dtype), **_extras(family))
    except (OSError, ValueError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as e:
        if type(e).__name__ == "OutOfMemoryError":  # the CLI's own message says what to do
            raise
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"model: cannot load {folder} ({reason})") from None


def _extras(family: Family) -> dict[str, Any]:
    """No safety checker (as in the web UIs), for the pipelines that have one."""
    if family.without_safety_checker:
        return {"safety_checker": None, "requires_safety_checker": False}
    return {}


def _folder_variant(folder: Path) -> str | None:
    """'fp16' when the folder's UNet weights exist only as the fp16 variant."""
    unet = folder / "unet"
    files = [p.name for p in unet.iterdir()] if unet.is_dir() else []
    plain = any(n.startswith("diffusion_pytorch_model.") and not _VARIANT.search(n)
                for n in files)
    return "fp16" if not plain and any(_VARIANT.search(n) for n in files) else None


def _from_hub(repo: str, family: Family, dtype: Any, hub: Path, log: Log):
    """from_pretrained on a Hub id; the fp16 variant first where fp16 is wanted."""
    import diffusers
    import torch

    cls = getattr(diffusers, family.pipeline)
    log(f"loading {repo} from the Hugging Face Hub (cached in {hub})")
    kwargs = {**dtype_kwargs(dtype), "cache_dir": hub, **_extras(family)}
    if dtype == torch.float16:
        try:
            return cls.from_pretrained(repo, variant="fp16", **kwargs)
        except (OSError, ValueError):
            log(f"{repo} has no fp16 variant: loading its full-precision weights")
    return cls.from_pretrained(repo, **kwargs)


def load_vae(spec: str, model_source: Path | None, dtype: Any, cache=None):
    """An AutoencoderKL from a Hub id, a diffusers folder or a single file; a `ValueError`
    naming the `vae` setting when it cannot be loaded as one."""
    try:
        return _load_vae(spec, model_source, dtype, cache)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
        if str(e).startswith("vae:"):
            raise
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise ValueError(f"vae: cannot load {spec!r} as a VAE ({reason})") from None


def _load_vae(spec: str, model_source: Path | None, dtype: Any, cache=None):
    from diffusers import AutoencoderKL

    from helpers.download import hub_cache

    path = Path(spec).expanduser()
    hub = hub_cache(cache)
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


def pipeline_for(loaded: Loaded, sampler: str, img2img: bool = False):
    """A run's own pipeline on the loaded components (no copies): txt2img, or img2img, with a
    fresh scheduler for `sampler`, so the run never changes the loaded pipeline."""
    import diffusers

    from helpers.diffusion.samplers import make_scheduler, runs_on_unet

    family = loaded.family
    if img2img and not family.img2img:
        raise ValueError(f"init_image: the {family.title} pipeline has no img2img mode")
    name = family.img2img if img2img else family.pipeline
    scheduler = type(loaded.pipe.scheduler).from_config(loaded.scheduler_config) \
        if runs_on_unet(sampler, family) else make_scheduler(sampler, loaded.scheduler_config)
    # from_pipe casts every component to the dtype it is given (float32 by default): give it
    # theirs, and hush the warning diffusers logs for any cast, this one a no-op
    with logger_level("diffusers.models.modeling_utils", logging.ERROR):
        pipe = getattr(diffusers, name).from_pipe(loaded.pipe, scheduler=scheduler,
                                                  **dtype_kwargs(loaded.pipe.dtype),
                                                  **_extras(family))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@contextlib.contextmanager
def memory_options(pipe, options: dict[str, bool], device: Any) -> Iterator[None]:
    """Move the pipeline to its device with the chosen memory options; undo the options after.

    Attention processors and the VAE's slicing / tiling flags are put back as they were, and
    model CPU offload's hooks removed, so the shared components leave the run as they came.
    """
    unet = getattr(pipe, "unet", None)
    processors = dict(unet.attn_processors) if unet is not None else None
    vae = getattr(pipe, "vae", None) or getattr(pipe, "vqvae", None)
    flags = {k: getattr(vae, k) for k in ("use_slicing", "use_tiling") if hasattr(vae, k)}
    _apply_memory(pipe, options, device, vae)
    try:
        yield
    finally:
        if options.get("cpu_offload"):
            pipe.remove_all_hooks()
        if processors is not None:
            unet.set_attn_processor(processors)
        for key, value in flags.items():
            setattr(vae, key, value)


def _apply_memory(pipe, options: dict[str, bool], device: Any, vae) -> None:
    if options.get("cpu_offload"):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if options.get("attention_slicing"):
        pipe.enable_attention_slicing()
    if options.get("vae_slicing") and hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
    if options.get("vae_tiling") and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()


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
    from helpers.files import atomic_write_text, load_json

    record = cache_dir(cache) / "model-hashes.json"
    try:
        known = load_json(record.read_text(encoding="utf-8"), str(record), dict)
    except (OSError, ValueError):
        known = {}
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    if key not in known:
        known[key] = sha256(path)
        atomic_write_text(record, json.dumps(known, indent=1))
    return known[key]
