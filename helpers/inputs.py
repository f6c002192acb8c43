"""Input images (init images, image prompts) from a path or URL, read before any model loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def open_image(spec: str, field: str, cache: str | Path | None = None) -> Any:
    """A PIL image from a path or URL; a clear `ValueError` naming the field when unreadable."""
    from PIL import Image, UnidentifiedImageError

    from helpers.download import cache_dir, fetch_file_from

    try:
        path = fetch_file_from(spec, cache_dir(cache) / "inputs", cache=cache, kind="image",
                               progress=False, log=lambda _: None)
    except FileNotFoundError:
        raise ValueError(f"{field}: file not found: {spec!r}") from None
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"{field}: cannot read {spec!r} as an image ({e})") from None
