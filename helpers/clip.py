"""CLIP through `transformers.CLIPModel`: text and image embeddings, several models at once.

The weights are frozen: only the image (the VQGAN latent) is optimised against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from helpers.prompts import parse_prompts

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

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings of images in [0, 1] at the model's input size (differentiable)."""
        pixels = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        pooled = self.model.vision_model(pixel_values=pixels).pooler_output
        return F.normalize(self.model.visual_projection(pooled).float(), dim=-1)

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """Images resized to the model's input size (bicubic, as CLIP's preprocessing)."""
        size = (self.input_size, self.input_size)
        return F.interpolate(images, size=size, mode="bicubic", align_corners=False)


def parse_clip_spec(spec: str) -> list[tuple[str, float]]:
    """`"openai/clip-vit-base-patch32:1 | openai/clip-vit-base-patch16:0.5"` -> [(name, weight)]."""
    pieces = parse_prompts(spec)
    for p in pieces:
        if p.stop != float("-inf"):
            raise ValueError(f"clip: a model takes a weight, not a stop value ({p.text!r})")
        if p.weight <= 0:
            raise ValueError(f"clip: weights must be positive (got {p.weight} for {p.text!r})")
    return [(p.text, p.weight) for p in pieces]


def _model_folder(name: str, cache: str | Path | None) -> Path:
    """A local folder for a catalogue name, a Hub id, or a folder path."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    from helpers.catalog import get_model
    from helpers.download import fetch, fetch_file_from

    try:
        model = get_model(name)
    except ValueError:
        if "/" not in name:
            raise
        return Path(fetch_file_from(name, None, cache=cache))
    if model.kind != "clip":
        raise ValueError(f"clip: {name!r} is a {model.kind} model, not a CLIP model")
    return Path(fetch(model, cache=cache))


def load_clip(
    name: str,
    weight: float = 1.0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache: str | Path | None = None,
) -> Clip:
    """Load one CLIP model (catalogue name, Hub id or folder), frozen, with SDPA attention."""
    from transformers import CLIPModel, CLIPTokenizer

    folder = _model_folder(name, cache)
    model = CLIPModel.from_pretrained(folder, attn_implementation="sdpa", torch_dtype=dtype)
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
    import json

    config = folder / "preprocessor_config.json"
    if config.is_file():
        data = json.loads(config.read_text())
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
