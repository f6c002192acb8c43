"""CLIP through `transformers.CLIPModel`: text and image embeddings, several models at once.

The weights are frozen: only the image (the VQGAN latent) is optimised against them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from helpers.reporting import Log
from helpers.settings import parse_clip_spec

# CLIP's own normalisation, used when a model folder carries no image-processor config.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class Clip:
    """One frozen CLIP model with its tokenizer, input size, normalisation and loss weight."""

    name: str
    model: Any  # transformers.CLIPModel
    tokenizer: Any  # transformers.CLIPTokenizer
    input_size: int
    mean: torch.Tensor  # (1, 3, 1, 1)
    std: torch.Tensor  # (1, 3, 1, 1)
    weight: float = 1.0

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return self.mean.device

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Unit-length text embeddings, one row per text."""
        max_length = self.tokenizer.model_max_length
        tokens = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=max_length,
            return_tensors="pt",
        )
        ids = tokens["input_ids"].to(self.device)
        pooled = self.model.text_model(input_ids=ids).pooler_output
        return F.normalize(self.model.text_projection(pooled).float(), dim=-1)

    def cut_off(self, text: str) -> str:
        """The end of `text` beyond the model's context (CLIP's 77 tokens with the start and end
        tokens), which `encode_text` drops; "" when it all fits."""
        max_length = self.tokenizer.model_max_length
        ids = self.tokenizer(text, truncation=False, verbose=False)["input_ids"]  # start ... end
        if len(ids) <= max_length:
            return ""
        return self.tokenizer.decode(ids[max_length - 1 : -1]).strip()

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings of images in [0, 1] at the model's input size (differentiable)."""
        pixels = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        pooled = self.model.vision_model(pixel_values=pixels).pooler_output
        return F.normalize(self.model.visual_projection(pooled).float(), dim=-1)

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """Images resized to the model's input size (bicubic, as CLIP's preprocessing)."""
        size = (self.input_size, self.input_size)
        return F.interpolate(images, size=size, mode="bicubic", align_corners=False)


@dataclass(frozen=True)
class ClipRef:
    """Where a CLIP spec points, read without loading: a folder, a catalogue model or a Hub id."""

    name: str
    folder: Path | None = None  # a local transformers folder
    model: Any = None  # a catalogue Model (CLIP kind), fetched into the cache
    hub_repo: str | None = None  # any other Hub repo, snapshot into the Hub cache


def resolve_clip(name: str) -> ClipRef:
    """What a CLIP name is; `ValueError` naming the `clip` setting for what cannot be one."""
    from helpers.catalog import get_model

    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"clip: {name} has no config.json: not a transformers CLIP folder")
        return ClipRef(name, folder=path)
    try:
        model = get_model(name)
    except ValueError as e:
        if re.fullmatch(r"[\w.-]+/[\w.-]+", name):
            return ClipRef(name, hub_repo=name)
        raise ValueError(f"clip: {e}") from None
    if model.kind != "clip":
        raise ValueError(f"clip: {name!r} is a {model.kind} model, not a CLIP model")
    return ClipRef(name, model=model)


def clip_folder(ref: ClipRef, cache: str | Path | None = None, progress: bool = True,
                log: Log = print) -> Path:
    """The local folder of a resolved CLIP, downloading it if need be."""
    from helpers.download import fetch, fetch_file_from

    if ref.folder is not None:
        return ref.folder
    if ref.model is not None:
        return Path(fetch(ref.model, cache=cache, progress=progress, log=log))
    return Path(fetch_file_from(ref.hub_repo, None, cache=cache, kind="clip",
                                progress=progress, log=log))


def load_clip(
    name: str,
    weight: float = 1.0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache: str | Path | None = None,
) -> Clip:
    """Load one CLIP model (catalogue name, Hub id or folder), frozen, with SDPA attention."""
    return load_clip_from(clip_folder(resolve_clip(name), cache), name, weight, device, dtype)


def load_clip_from(
    folder: Path,
    name: str,
    weight: float = 1.0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Clip:
    """Load the CLIP model in a local transformers folder as `name`, frozen, with SDPA attention."""
    from transformers import CLIPModel, CLIPTokenizer

    from helpers.precision import dtype_kwargs

    model = CLIPModel.from_pretrained(folder, attn_implementation="sdpa",
                                      **dtype_kwargs("transformers", dtype))
    model = model.to(device).eval().requires_grad_(False)
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    mean, std = _normalisation(folder)
    shape = (1, 3, 1, 1)
    return Clip(
        name=name,
        model=model,
        tokenizer=tokenizer,
        input_size=model.config.vision_config.image_size,
        mean=torch.tensor(mean, device=device).view(shape),
        std=torch.tensor(std, device=device).view(shape),
        weight=weight,
    )


def _normalisation(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from helpers.files import read_json

    config = folder / "preprocessor_config.json"
    if config.is_file():
        data = read_json(config, f"clip: {config}", dict)
        return tuple(data.get("image_mean", CLIP_MEAN)), tuple(data.get("image_std", CLIP_STD))
    return CLIP_MEAN, CLIP_STD


def load_clips(
    spec: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache: str | Path | None = None,
) -> list[Clip]:
    """Load every CLIP of a weighted spec; the loss sums over them with these weights."""
    return [load_clip(n, w, device, dtype, cache) for n, w in parse_clip_spec(spec)]
