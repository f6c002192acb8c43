"""ControlNets from the catalogue, the Hub, a diffusers folder or a single file.

A ControlNet is refused before its weights load when its family is not the model's: its
cross-attention width (768 for SD 1.x, 1024 for SD 2.x, 2048 for SDXL) or its added conditioning
(SDXL's "text_time") differ from the UNet's. Folders and Hub repos say it in config.json; a
single file says it in its tensors' shapes, read from its header. Single files load through
diffusers' `from_single_file`, which needs a diffusers config of the same architecture:
`config` (a ControlNet folder, offline, or a Hub id) or, by default, the one diffusers picks for
the file (lllyasviel's SD 1.5 canny, or diffusers' SDXL ones), fetched once into the Hub cache.
A `.pth` / `.ckpt` is a pickle: it is read once without running code from it and cached as
`.safetensors` (`models.weights_file`). Union ControlNets (config with `num_control_type`) load
as diffusers' ControlNetUnionModel.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from helpers.files import read_json
from helpers.reporting import Log, logger_level

SINGLE_FILE_SUFFIXES = (".safetensors", ".pth", ".ckpt", ".pt", ".bin")
_CROSS_KEY = re.compile(r"attn2\.to_k\.weight$")
_SDXL_KEYS = ("label_emb.", "control_model.label_emb.", "add_embedding.")
_WIDTHS = {768: "SD 1.x", 1024: "SD 2.x"}


def kind_of(config: dict[str, Any]) -> str:
    """What a UNet or ControlNet config is for, in words: "SDXL", "SD 1.x", "SD 2.x"."""
    if config.get("addition_embed_type") == "text_time":
        return "SDXL"
    width = config.get("cross_attention_dim")
    return _WIDTHS.get(width, f"SD ({width}-wide cross-attention)")


def check_family(config: dict[str, Any], unet_config: Any, label: str) -> None:
    """A `ValueError` naming the control setting when a ControlNet's family is not the
    model's (cross-attention width or added conditioning)."""
    unet = dict(unet_config)
    same = (config.get("cross_attention_dim") == unet.get("cross_attention_dim")
            and config.get("addition_embed_type") == unet.get("addition_embed_type"))
    if same:
        return
    ours, theirs = kind_of(config), kind_of(unet)
    if ours == theirs:
        ours += f" (cross-attention {config.get('cross_attention_dim')})"
        theirs += f" (cross-attention {unet.get('cross_attention_dim')})"
    raise ValueError(f"control: {label} is an {ours} ControlNet; the model is {theirs}")


def controlnet_config(spec: str, cache: str | os.PathLike | None = None) -> dict[str, Any]:
    """What a ControlNet is, read without its weights: its config.json (a catalogue entry's or
    a Hub repo's fetched alone), or a single file's width and added conditioning."""
    kind, where = _resolve(spec)
    if kind == "file":
        return single_file_config(Path(where))
    from helpers.download import fetch, fetch_hub_file, is_cached

    if kind == "catalogue" and (where.test or is_cached(where, cache)):
        kind, where = "folder", Path(fetch(where, cache=cache, progress=False))
    if kind == "folder":
        return read_json(Path(where) / "config.json", f"control: {where}/config.json", dict)
    repo = where.hub_repo if kind == "catalogue" else where
    path = fetch_hub_file(repo, "config.json", cache=cache, kind="controlnet")
    return read_json(Path(path), f"control: {repo}/config.json", dict)


def single_file_config(path: Path) -> dict[str, Any]:
    """A single file's cross-attention width and added conditioning, from its header (a
    pickle: `None` for both, it is only read when loaded)."""
    if path.suffix.lower() != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}  # noqa: SIM118
    except Exception as e:  # safetensors' own error is no ValueError
        raise ValueError(f"control: cannot read {path.name} as safetensors ({e})") from None
    widths = [shape[1] for key, shape in shapes.items() if _CROSS_KEY.search(key)]
    if not widths:
        raise ValueError(f"control: {path.name} is not a ControlNet (no cross-attention "
                         "weights)")
    sdxl = any(k.startswith(_SDXL_KEYS) for k in shapes)
    return {"cross_attention_dim": widths[0],
            "addition_embed_type": "text_time" if sdxl else None}


def load_controlnet(spec: str, unet_config: Any, cache: str | os.PathLike | None = None,
                    dtype: Any = None, device: Any = None, log: Log = print,
                    config: str | None = None) -> Any:
    """A ControlNet for the model whose UNet has `unet_config`, in `dtype` on `device`;
    `config`: a single file's diffusers config (folder or Hub id)."""
    label = Path(spec).name if Path(spec).expanduser().exists() else spec
    found = controlnet_config(spec, cache)
    if found:
        check_family(found, unet_config, label)
    kind, where = _resolve(spec)
    try:
        with logger_level("diffusers.models.modeling_utils", logging.CRITICAL):
            net = _load(kind, where, found, dtype, cache, log, config)
    except (OSError, ValueError, RuntimeError, KeyError, EOFError) as e:
        if str(e).startswith("control:") or type(e).__name__ == "OutOfMemoryError":
            raise
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"control: cannot load {label} as a ControlNet ({reason})") from None
    if not found:  # a pickle: known only now
        check_family(dict(net.config), unet_config, label)
    return net.to(device) if device is not None else net


def _load(kind: str, where: Any, config: dict[str, Any], dtype: Any, cache, log: Log,
          single_config: str | None) -> Any:
    from helpers.download import fetch, hub_cache
    from helpers.precision import dtype_kwargs

    kwargs = dtype_kwargs("diffusers", dtype) if dtype is not None else {}
    if kind == "file":
        from helpers.diffusion.models import weights_file

        path = weights_file(Path(where), cache)
        log(f"loading the ControlNet {path.name} from its single file")
        return _class(config, [path]).from_single_file(
            str(path), config=single_config, cache_dir=hub_cache(cache), **kwargs)
    if kind == "hub":
        log(f"loading the ControlNet {where} from the Hugging Face Hub")
        return _from_hub(_class(config), where, hub_cache(cache), kwargs, log)
    folder = Path(fetch(where.name, cache=cache, log=log)) if kind == "catalogue" else where
    cls = _class(config, sorted(folder.glob("*.safetensors")))
    return cls.from_pretrained(folder, variant=_variant(folder), **kwargs)


def _from_hub(cls: Any, repo: str, hub: Path, kwargs: dict[str, Any], log: Log) -> Any:
    """from_pretrained on a Hub id: the fp16 variant first where fp16 is wanted."""
    import torch

    if torch.float16 in kwargs.values():
        try:
            return cls.from_pretrained(repo, variant="fp16", cache_dir=hub, **kwargs)
        except (OSError, ValueError):
            log(f"{repo} has no fp16 variant: loading its full-precision weights")
    return cls.from_pretrained(repo, cache_dir=hub, **kwargs)


def _class(config: dict[str, Any], files: list[Path] = ()) -> Any:
    """diffusers' class for a ControlNet: the union model's when its config says so or its
    weights have a union's task embeddings, else the plain one."""
    import diffusers

    union = "num_control_type" in config or "Union" in str(config.get("_class_name", ""))
    union = union or any(_has_key(f, "task_embedding") for f in files)
    return diffusers.ControlNetUnionModel if union else diffusers.ControlNetModel


def _has_key(path: Path, key: str) -> bool:
    """Whether a .safetensors file holds a tensor named `key` (read from its header)."""
    if path.suffix != ".safetensors":
        return False
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return key in f.keys()  # noqa: SIM118


def _variant(folder: Path) -> str | None:
    """'fp16' when the folder's weights exist only as the fp16 variant."""
    names = [p.name for p in folder.glob("diffusion_pytorch_model*")]
    plain = any(n.split(".")[1] in ("safetensors", "bin") for n in names)
    return "fp16" if not plain and any(".fp16." in n for n in names) else None


def _resolve(spec: str) -> tuple[str, Any]:
    """("catalogue", Model) | ("folder", Path) | ("file", Path) | ("hub", repo id)."""
    from helpers.catalog import find_model

    spec = spec.strip()
    model = find_model(spec)
    if model is not None:
        if model.kind != "controlnet":
            raise ValueError(f"control: {spec!r} is a {model.kind} model, not a ControlNet")
        return "catalogue", model
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"control: {path} has no config.json: not a diffusers ControlNet "
                             "folder")
        return "folder", path
    if path.is_file():
        if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise ValueError(f"control: {path.name} is not a .safetensors or .pth ControlNet")
        return "file", path
    hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", spec)
    if hub_id and path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        return "hub", spec
    raise FileNotFoundError(f"control: {spec!r} is not a catalogue ControlNet, an existing file "
                            "or folder, or a Hugging Face Hub id")
