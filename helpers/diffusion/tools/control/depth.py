"""The depth preprocessor's estimator: the `depth_model` setting, resolved and loaded.

A catalogue name (`depth-anything`: Depth Anything ViT-L, the weights of the ControlNet
extension's `depth_anything`; `depth-anything-small`; `test-tiny-depth`), a Hugging Face Hub id
or a transformers folder holding a depth-estimation model (any of transformers' depth
estimation classes: Depth Anything, DPT / MiDaS, ZoeDepth, GLPN, ...) and its image processor.
The check stage loads it, makes the maps and lets it go (`run.check_control`); every error
here names the setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers.reporting import Log

FIELD = "depth_model"  # the setting every error here names


def depth_folder(name: str, cache: Any = None, log: Log = print) -> Path:
    """The local folder of a depth estimator (catalogue name, Hub id or folder), fetched if
    need be; `ValueError` or `DownloadError` naming `depth_model` when it cannot be."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES

    from helpers.catalog import DEPTH_FILES, DEPTH_WEIGHTS
    from helpers.download import FolderKind, fetch_model_folder

    name = name.strip()
    if not name:
        raise ValueError(f"{FIELD} is empty: name the depth estimator (e.g. depth-anything)")
    what = FolderKind("depth", FIELD, "depth estimator", "depth estimator", "depth-anything",
                      DEPTH_FILES, DEPTH_WEIGHTS)
    return fetch_model_folder(name, what, MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES, cache, log)


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
