"""The depth preprocessor's estimator: the `depth_model` setting, resolved and loaded.

A catalogue name (`depth-anything`: Depth Anything ViT-L, the weights of the ControlNet
extension's `depth_anything`; `depth-anything-small`; `test-tiny-depth`), a Hugging Face Hub id
or a transformers folder holding a depth-estimation model (any of transformers' depth
estimation classes: Depth Anything, DPT / MiDaS, ZoeDepth, GLPN, ...) and its image processor.
The check stage loads it, makes the maps and lets it go (`run.check_control`); every error
here names the setting.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.reporting import Log

if TYPE_CHECKING:
    from helpers.catalog import Model

FIELD = "depth_model"  # the setting every error here names
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def depth_folder(name: str, cache: Any = None, log: Log = print) -> Path:
    """The local folder of a depth estimator (catalogue name, Hub id or folder), fetched if
    need be; `ValueError` or `DownloadError` naming `depth_model` when it cannot be."""
    from helpers.download import DownloadError, fetch

    name = name.strip()
    if not name:
        raise ValueError(f"{FIELD} is empty: name the depth estimator (e.g. depth-anything)")
    path = Path(name).expanduser()
    if path.is_dir():
        return _checked_folder(path, name)
    entry = _catalogue_entry(name)
    try:
        return _checked_folder(Path(fetch(entry, cache=cache, log=log)), name)
    except DownloadError as e:
        raise DownloadError(f"{FIELD}: could not get the depth estimator {name!r}: {e}",
                            e.failures) from None


def _catalogue_entry(name: str) -> Model:
    """The catalogue's depth estimator called `name`, or one made for a Hub id."""
    from helpers.catalog import DEPTH_FILES, DEPTH_WEIGHTS, Model, get_model

    try:
        entry = get_model(name)
    except ValueError as e:
        if not _HUB_ID.fullmatch(name):
            raise ValueError(f"{FIELD}: {e}") from None
        return Model(name, "depth", "user-supplied Hub repo", "see the repo's model card",
                     hub_repo=name, allow_patterns=DEPTH_FILES, weights=DEPTH_WEIGHTS)
    if entry.kind != "depth":
        raise ValueError(f"{FIELD}: {name!r} is a {entry.kind} model, not a depth estimator "
                         "(e.g. depth-anything)")
    return entry


def _checked_folder(folder: Path, name: str) -> Path:
    """`folder` if its config.json is one of transformers' depth-estimation models."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES

    from helpers.files import read_json

    config = folder / "config.json"
    if not config.is_file():
        raise ValueError(f"{FIELD}: {name} has no config.json: not a transformers depth "
                         "estimator folder")
    kind = read_json(config, f"{FIELD}: {config}", dict).get("model_type")
    if kind not in MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES:
        raise ValueError(f"{FIELD}: {name} holds a {kind!r} model, not a depth estimator "
                         f"(one of {', '.join(sorted(MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES))})")
    return folder


def load_estimator(name: str, cache: Any = None, log: Log = print, device: Any = "cpu",
                   dtype: Any = None) -> tuple[Any, Any]:
    """The (model, image processor) of the `depth_model` setting, frozen, on `device`."""
    from helpers.diffusion.tools.control.annotators import load_depth_estimator

    folder = depth_folder(name, cache, log)
    try:
        model, processor = load_depth_estimator(str(folder), device=device, dtype=dtype)
    except (OSError, ValueError, RuntimeError, KeyError, ImportError, TypeError) as e:
        if type(e).__name__ == "OutOfMemoryError":
            raise
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"{FIELD}: cannot load {name} as a depth estimator ({reason})") from None
    return model.requires_grad_(False), processor


def release(device: Any) -> None:
    """Give the memory of an estimator no longer referenced back (GPU memory to the driver's
    pool, so the diffusion model loading next finds it free)."""
    import gc

    import torch

    gc.collect()
    if getattr(device, "type", str(device)).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
