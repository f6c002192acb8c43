"""Upscalers by name: the PIL ones (Lanczos, Nearest) and models spandrel loads.

A model upscaler is named by its catalogue entry (the web UI's names, "R-ESRGAN 4x+", in any
case, or its file's stem, "RealESRGAN_x4plus"), a local `.pth` / `.safetensors` file, an
http(s) URL or a Hub file (`owner/repo/file.pth`), fetched once into the cache's
`upscalers/` folder. Its weights are read without running pickle code (`helpers.safeload`)
and spandrel (chaiNNer's library, as the web UI, ComfyUI and InvokeAI use) finds the
architecture in them: ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, ... spandrel imports
torchvision, so it is imported only when a model upscaler is asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.reporting import Log, no_log

FIELD = "upscaler"
PIL_UPSCALERS = ("Lanczos", "Nearest")  # the hires fix's names for PIL's filters
MODEL_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


@dataclass(frozen=True)
class Upscaler:
    """An upscaler ready to run: a PIL filter, or a spandrel model and its native scale."""

    name: str  # as the user gave it, spelt as the catalogue or the hires fix spells it
    scale: int  # the model's own scale; 1 for a PIL filter (it takes any scale)
    model: Any = None  # spandrel's ImageModelDescriptor (None: a PIL filter)
    pil_filter: str | None = None  # "LANCZOS" or "NEAREST" for a PIL upscaler

    @property
    def is_model(self) -> bool:
        """Whether a network (not a PIL filter) upscales."""
        return self.model is not None


def pil_upscaler(name: str) -> str | None:
    """The hires fix's spelling of a PIL upscaler name, whatever its case; else None."""
    return {n.casefold(): n for n in PIL_UPSCALERS}.get(name.strip().casefold())


def catalogue_upscaler(name: str) -> Any:
    """The catalogue upscaler called `name` (any case, or its file's stem), or None."""
    from helpers.catalog import find_named

    return find_named("upscaler", name)


def upscaler_file(name: str, cache: str | os.PathLike | None = None, log: Log = no_log,
                  progress: bool = False) -> Path:
    """The weights file of a model upscaler: a catalogue entry fetched into the cache, a
    local file, or a URL / Hub file fetched once into `<cache>/upscalers/`."""
    return weights_file(name, "upscaler", FIELD, _known(), cache, log, progress)


FOLDERS = {"upscaler": "upscalers", "face": "faces"}  # a kind's files from URLs, in the cache


def weights_file(name: str, kind: str, field: str, known: str,
                 cache: str | os.PathLike | None = None, log: Log = no_log,
                 progress: bool = False) -> Path:
    """The single weights file a setting names: the catalogue entry of `kind` fetched into
    the cache, a local file, or a URL / Hub file fetched once into the kind's cache folder;
    errors name `field` (`known`: the names it takes, for the message)."""
    from helpers.catalog import find_named
    from helpers.download import DownloadError, cache_dir, fetch, fetch_file_from

    model = find_named(kind, name)
    try:
        if model is not None:
            found = fetch(model, cache=cache, progress=progress, log=log)
            return found if found.is_file() else found / model.files[0].name
        path = fetch_file_from(name, cache_dir(cache) / FOLDERS[kind], cache=cache,
                               kind=kind, progress=progress, log=log)
    except FileNotFoundError:
        raise ValueError(f"{field}: file not found: {name!r}") from None
    except ValueError:
        raise ValueError(f"{field}: {name!r} is not {known}, an existing file, a URL "
                         "or a Hub file") from None
    except DownloadError as e:
        raise DownloadError(f"{field}: {e}", e.failures) from None
    if not path.is_file():
        raise ValueError(f"{field}: {path} is a folder; give the model's .pth or "
                         ".safetensors file")
    return path


def check_name(name: str) -> None:
    """Before anything is fetched: `name` is a PIL upscaler, a catalogue upscaler, or a file
    (which must exist), URL or Hub file; and a model upscaler has spandrel."""
    if pil_upscaler(name) is not None:
        return
    if catalogue_upscaler(name) is None:
        from helpers.download.sources import resolve_user_source

        try:
            found = resolve_user_source(name)
        except ValueError:
            raise ValueError(f"{FIELD}: {name!r} is not {_known()}, an existing file, a URL "
                             "or a Hub file") from None
        if isinstance(found, Path) and not found.is_file():
            raise ValueError(f"{FIELD}: file not found: {name!r}")
    require_spandrel()


def renamed(error: Exception, field: str) -> str:
    """An upscaler's error message naming `field`, the setting that named the upscaler."""
    text = str(error)
    return f"{field}: {text.removeprefix(f'{FIELD}: ')}" if text.startswith(f"{FIELD}: ") \
        else text


def _known() -> str:
    from helpers.catalog import list_models

    names = [m.name for m in list_models("upscaler") if not m.test]
    return f"one of {', '.join([*PIL_UPSCALERS, *names])}"


def read_weights(path: str | os.PathLike, field: str = FIELD) -> dict:
    """A model file's tensors, without running pickle code, unwrapped as spandrel expects
    (`params_ema`, `state_dict`, a `module.` prefix, ...); errors name `field`."""
    from spandrel import canonicalize_state_dict

    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except Exception as e:  # safetensors raises its own error types for a bad header
            raise ValueError(f"{field}: cannot read {path} as safetensors ({e})") from None
    else:
        from helpers.safeload import load_state_dict

        try:
            state = load_state_dict(path, depth=0)
        except ValueError as e:
            raise ValueError(f"{field}: {e}") from None
    if not state:
        raise ValueError(f"{field}: {path} holds no weights (no state dict in it)")
    return canonicalize_state_dict(state)


def spandrel_model(state: dict, path: str | os.PathLike) -> Any:
    """spandrel's model descriptor of the weights; `ValueError` naming the setting for an
    architecture spandrel does not know or a model that is not an image upscaler."""
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    try:
        descriptor = ModelLoader().load_from_state_dict(state)
    except UnsupportedModelError:
        raise ValueError(f"{FIELD}: {path} is not a model architecture spandrel knows "
                         "(ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, ...; see spandrel's list)"
                         ) from None
    except (RuntimeError, KeyError, IndexError, ValueError, AssertionError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"{FIELD}: {path} looks like a {_arch_guess(state)} model, but its "
                         f"weights do not fit it ({first})") from None
    if not isinstance(descriptor, ImageModelDescriptor):
        raise ValueError(f"{FIELD}: {path} is a {descriptor.architecture.name} model for "
                         f"{descriptor.purpose}, not an image upscaler")
    return descriptor.eval()


def _arch_guess(state: dict) -> str:
    from spandrel import MAIN_REGISTRY

    found = [a.architecture.name for a in MAIN_REGISTRY.architectures()
             if a.architecture.detect(state)]
    return found[0] if found else "known"


def require_spandrel() -> None:
    """`ValueError` naming the setting when spandrel (or its torchvision) cannot import."""
    try:
        import spandrel  # noqa: F401
    except ImportError as e:
        raise ValueError(f"{FIELD}: model upscalers need spandrel and torchvision matching "
                         f"torch (pip install spandrel torchvision); {e}") from None


def load_upscaler(name: str, device: Any = "cpu", cache: str | os.PathLike | None = None,
                  log: Log = no_log, progress: bool = False) -> Upscaler:
    """The upscaler `name`: a PIL one, or a model loaded onto `device` (a name: "auto" picks
    one once the model is found; fp16 on CUDA when the model supports it)."""
    pil = pil_upscaler(name)
    if pil is not None:
        return Upscaler(pil, 1, pil_filter=pil.upper())
    if not name.strip():
        raise ValueError(f"{FIELD}: empty; give {_known()}, a file, a URL or a Hub file")
    from helpers.diffusion.tools.diffusion_upscalers import (
        diffusion_family,
        load_diffusion_upscaler,
    )

    family = diffusion_family(name)
    if family is not None:  # Stable Diffusion's x4 / latent x2 upscalers: diffusers runs them
        model = load_diffusion_upscaler(name, family, device, cache, log, progress)
        entry = catalogue_upscaler(name)
        return Upscaler(entry.name if entry else name, model.scale, model)
    require_spandrel()
    path = upscaler_file(name, cache, log, progress)
    descriptor = spandrel_model(read_weights(path), path)
    import torch

    from helpers.device import pick_device

    device = pick_device(device, log) if isinstance(device, str) else torch.device(device)
    descriptor = descriptor.to(device)
    if device.type == "cuda" and descriptor.supports_half:
        descriptor = descriptor.half()
    model = catalogue_upscaler(name)
    return Upscaler(model.name if model else name, descriptor.scale, descriptor)


# The model upscaler of the run in progress (the hires fix's), loaded once by the check stage
# with the run's cache folder: {name: Upscaler}; one at a time.
_FOR_RUN: dict[str, Upscaler] = {}


def load_for_run(name: str, device: Any, cache: str | os.PathLike | None = None,
                 log: Log = no_log, progress: bool = False) -> Upscaler:
    """Load the model upscaler `name` for a run (before the diffusion model, so a bad file
    fails first) and keep it for `run_upscaler`; the one kept before is dropped."""
    _FOR_RUN.clear()
    _FOR_RUN[name] = load_upscaler(name, device, cache, log, progress)
    return _FOR_RUN[name]


def run_upscaler(name: str, device: Any) -> Upscaler:
    """The run's model upscaler `name` (loaded by `load_for_run`), moved to `device`; loaded
    from the default cache when no run loaded it."""
    import torch

    upscaler = _FOR_RUN.get(name) or load_for_run(name, device)
    if upscaler.model.device != torch.device(device):
        upscaler = load_for_run(name, device)
    return upscaler


__all__ = [
    "FIELD",
    "FOLDERS",
    "PIL_UPSCALERS",
    "Upscaler",
    "catalogue_upscaler",
    "check_name",
    "load_for_run",
    "load_upscaler",
    "pil_upscaler",
    "read_weights",
    "renamed",
    "require_spandrel",
    "run_upscaler",
    "spandrel_model",
    "upscaler_file",
    "weights_file",
]
