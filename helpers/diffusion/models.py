"""Diffusion pipelines from a catalogue name, a Hub id, a diffusers folder or a single file.

`resolve_model` reads what a model is (its family: a name in `families.FAMILIES`) without
loading any weights, so bad input fails before anything heavy happens; `load_pipeline` then
loads it.

Single files (`.safetensors` / `.ckpt`, the format of model-sharing sites) go through diffusers'
`from_single_file`. It needs the diffusers configs of the model's architecture: `model_config`
(a diffusers folder, offline, or a Hub id) or, by default, the configs of the Hub repo that
matches the file's keys (SD 1.x, SD 2.x, SDXL base), downloaded once into the Hub cache (a few
kB, no weights). Offline, pass a local folder of the same architecture as `model_config`.
A `.ckpt` is a pickle: it is read once with a loader that never runs code from it and cached as
`.safetensors` beside the Hub cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from helpers.diffusion.families import (
    FAMILIES,
    PIPELINE_FAMILIES,
    SINGLE_FILE_TYPES,
    Family,
    unet_family,
)
from helpers.files import read_json

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
_UNET_KEY = "model.diffusion_model."
_VAE_KEYS = ("first_stage_model.",)
_TEXT_KEYS = ("cond_stage_model.", "conditioner.")


@dataclass(frozen=True)
class ModelRef:
    """What a model spec points to, read without loading weights."""

    spec: str  # as the user gave it
    kind: str  # "catalogue" | "folder" | "file" | "hub"
    family: str | None  # a `FAMILIES` name; None for a Hub id until its index is read
    label: str  # the infotext's "Model": catalogue name, file stem, folder name or Hub id
    file_type: str = ""  # single files: diffusers' model type ("v1", "v2", "xl_base")


def resolve_model(spec: str, cache: str | os.PathLike | None = None) -> ModelRef:
    """Read what `spec` is; ValueError / FileNotFoundError for what cannot be a model."""
    from helpers.catalog import find_model, unknown_model
    from helpers.download import resolve_user_source

    spec = spec.strip()
    model = find_model(spec)
    if model is not None:
        if model.kind != "diffusion":
            raise ValueError(f"model: {spec!r} is a {model.kind} model, not a diffusion model")
        return ModelRef(spec, "catalogue", model.family, spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        family = folder_family(path)
        check_parts(path, family)
        return ModelRef(spec, "folder", family, path.name)
    if path.is_file():
        return _file_ref(spec, path, cache)
    try:
        found = resolve_user_source(spec)
    except ValueError:
        found = None
    if getattr(found, "kind", None) == "hub" and not found.filename:
        return ModelRef(spec, "hub", None, spec)
    if path.suffix.lower() in SINGLE_FILE_SUFFIXES or (isinstance(found, Path) and (
            "/" in spec or "\\" in spec)):
        raise FileNotFoundError(f"model: {spec!r} does not exist")
    raise ValueError(f"model: {unknown_model(spec)}")


def model_family(ref: ModelRef, cache: str | os.PathLike | None = None) -> Family:
    """The family record of a resolved model (a Hub id's read from its model_index.json)."""
    return FAMILIES[ref.family or hub_family(ref.spec, cache)]


def folder_family(folder: Path, field: str = "model") -> str:
    """The family of a diffusers folder, from its model_index.json (errors name `field`)."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise ValueError(f"{field}: {folder} has no model_index.json: not a diffusers pipeline "
                         "folder (give the folder that holds model_index.json, unet/, vae/)")
    name = read_json(index, f"{field}: {index}", dict).get("_class_name", "")
    if name not in PIPELINE_FAMILIES:
        raise ValueError(f"{field}: {folder} holds a {name or 'unknown'} pipeline; supported: "
                         f"{', '.join(sorted(PIPELINE_FAMILIES))}")
    return unet_family(PIPELINE_FAMILIES[name], _unet_channels(folder))


def _unet_channels(folder: Path) -> int:
    """The input channels of a folder's UNet, from unet/config.json (4 where it says none)."""
    config = folder / "unet" / "config.json"
    try:
        channels = read_json(config, str(config), dict).get("in_channels", 4)
    except (OSError, ValueError):
        return 4  # no readable config: check_parts names what is missing
    return channels if isinstance(channels, int) else 4


def check_parts(folder: Path, family: str, field: str = "model", weights: bool = True) -> None:
    """Every part the folder's model_index.json lists must be there, as diffusers loads it:
    a folder with its config and, for a model, weights (unless `weights` is False: configs
    only); `ValueError` naming `field` and what is missing or damaged."""
    index = read_json(folder / "model_index.json", f"{field}: {folder / 'model_index.json'}",
                      dict)
    for name, entry in index.items():
        skipped = name == "safety_checker" and FAMILIES[family].without_safety_checker
        if name.startswith("_") or skipped or not (
                isinstance(entry, list) and len(entry) == 2 and
                all(isinstance(x, str) for x in entry)):
            continue  # settings, parts listed as [null, null], parts we pass as None
        problem = _part_problem(folder / name, entry, weights)
        if problem:
            raise ValueError(f"{field}: {folder} is incomplete or damaged: {name}/{problem}")


def _part_problem(part: Path, entry: list[str], weights: bool = True) -> str | None:
    """What is wrong with one part's folder ("" after `part/`), or None."""
    library, cls = entry
    if not part.is_dir():
        return " is missing (no such folder)"
    if cls.endswith("Scheduler"):
        return _missing(part, "scheduler_config.json")
    if cls.endswith(("ImageProcessor", "FeatureExtractor")):
        return _missing(part, "preprocessor_config.json")
    if "Tokenizer" in cls:
        return None if any(p.is_file() for p in part.iterdir()) else " is empty"
    return _missing(part, "config.json") or (weights_problem(part, library) if weights
                                              else None)


def _missing(part: Path, name: str) -> str | None:
    """None if `part/name` is a file holding a JSON object, else what is wrong."""
    if not (part / name).is_file():
        return f"{name} is a folder, not a file" if (part / name).is_dir() else \
            f"{name} is missing"
    try:
        read_json(part / name, name, dict)
    except (OSError, ValueError) as e:
        return str(e)
    return None


def weights_problem(part: Path, library: str) -> str | None:
    """None if a model's folder holds weights (.safetensors with a readable header, or .bin),
    else what is wrong, after `part/` ("diffusers" or "transformers" file names)."""
    files = sorted(p for p in part.iterdir()
                   if p.suffix in (".safetensors", ".bin") and p.is_file())
    if not files:
        expected = "diffusion_pytorch_model" if library == "diffusers" else "model"
        return f"{expected}.safetensors is missing (no weights file)"
    from safetensors import safe_open

    for file in (f for f in files if f.suffix == ".safetensors"):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except Exception as e:  # safetensors' own error is no ValueError
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
            return f"{file.name} cannot be read as safetensors ({reason})"
    return None


def _file_ref(spec: str, path: Path, cache: str | os.PathLike | None) -> ModelRef:
    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise ValueError(f"model: {path.name} is not a .safetensors or .ckpt checkpoint")
    file_type = single_file_type(weights_file(path, cache))
    return ModelRef(spec, "file", SINGLE_FILE_TYPES[file_type][0], path.stem, file_type)


def weights_file(path: Path, cache: str | os.PathLike | None = None) -> Path:
    """A .safetensors to read: the file itself, or a pickle checkpoint converted once."""
    if path.suffix.lower() == ".safetensors":
        return path
    from helpers.download import cache_dir
    from helpers.download.hashes import sha256

    target = cache_dir(cache) / "converted" / f"{path.stem}-{sha256(path)[:10]}.safetensors"
    if not target.is_file():
        _convert_pickle(path, target)
    return target


def _convert_pickle(path: Path, target: Path) -> None:
    """Save a pickled checkpoint's tensors as .safetensors (never running code from it)."""
    import torch
    from safetensors.torch import save_file

    from helpers.files import atomic_replace
    from helpers.safeload import load_state_dict

    state = load_state_dict(path)
    if state is None:
        raise ValueError(f"model: {path.name} holds no state dict: not a Stable Diffusion "
                         "checkpoint")
    tensors, seen = {}, set()
    for key, value in state.items():
        if torch.is_tensor(value):
            pointer = value.untyped_storage().data_ptr()
            tensors[key] = value.clone() if pointer in seen else value.contiguous()
            seen.add(pointer)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    save_file(tensors, str(partial))
    atomic_replace(partial, target)


def single_file_type(path: Path) -> str:
    """diffusers' model type of a single .safetensors file, read from its header only."""
    import torch
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}  # noqa: SIM118
    except Exception as e:
        raise ValueError(f"model: cannot read {path.name} as safetensors ({e})") from None
    missing = [what for what, prefixes in (("UNet", (_UNET_KEY,)), ("VAE", _VAE_KEYS),
                                           ("text encoder", _TEXT_KEYS))
               if not any(k.startswith(prefixes) for k in shapes)]
    if missing:
        raise ValueError(f"model: {path.name} is not a Stable Diffusion checkpoint (no "
                         f"{', '.join(missing)} weights); a LoRA, VAE or embedding goes elsewhere")
    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    kind = infer_diffusers_model_type(meta)
    if kind not in SINGLE_FILE_TYPES:
        raise ValueError(f"model: {path.name} is a {kind!r} checkpoint; supported are SD 1.x, "
                         "SD 2.x and SDXL base text-to-image checkpoints, and the SD 1.5 and "
                         "SDXL inpainting ones")
    return kind


def hub_family(repo: str, cache: str | os.PathLike | None = None) -> str:
    """A Hub repo's family, from its model_index.json (downloaded alone, a few hundred bytes)."""
    from helpers.download import DownloadError, fetch_hub_file

    try:  # one quick attempt: offline, the catalogue's message and the test models
        index = fetch_hub_file(repo, "model_index.json", cache=cache, kind="diffusion")
    except DownloadError as e:
        if e.offline:
            raise
        reason = e.failures[0].reason if e.failures else e
        raise ValueError(f"model: cannot read {repo}/model_index.json from the Hugging Face "
                         f"Hub ({reason}); is it a diffusers pipeline repo?") from None
    return folder_family(Path(index).parent)
