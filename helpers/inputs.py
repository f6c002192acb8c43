"""Input images (init images, image prompts) from a path or URL, read before any model loads.

Every failure is a `ValueError` that names the setting: a missing file, a URL that could not
be fetched (and why: among others, slower than `DOWNLOAD_SECONDS` in all or larger than
`DOWNLOAD_BYTES`, leaving no partial file), a file that is not an image, or an image too large
to read safely.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb warning limit: about 9459 x 9459
DOWNLOAD_SECONDS = 60.0  # an input image's download, in all (a trickling server is cut off)
DOWNLOAD_BYTES = 50 * 10**6  # the largest input image downloaded


@contextlib.contextmanager
def opened(path: str | Path, field: str) -> Iterator[Any]:
    """`PIL.Image.open` with the size checked from the header, before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        what = "is a folder, not an image" if path.is_dir() else "not found"
        raise ValueError(f"{field}: {path} {what}")
    with _no_pillow_limit():
        try:
            image = Image.open(path)
        except (OSError, UnidentifiedImageError, SyntaxError) as e:
            raise ValueError(f"{field}: cannot read {path} as an image ({e})") from None
        except ValueError as e:  # Pillow's limits on text chunks: "Decompressed data too large"
            raise ValueError(f"{field}: {path}: cannot read its metadata ({e})") from None
    with image:
        yield image


def check_size(image: Any, path: str | Path, field: str) -> None:
    """`ValueError` with the image's size when it has more than `MAX_PIXELS` pixels."""
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ValueError(f"{field}: {path} is {width}x{height} pixels "
                         f"({width * height / 1e6:.0f} megapixels), more than the "
                         f"{MAX_PIXELS / 1e6:.0f} megapixels read safely; scale it down first")


@contextlib.contextmanager
def _no_pillow_limit() -> Iterator[None]:
    """Open without Pillow's own bomb check, which refuses before telling the size."""
    import warnings

    from PIL import Image

    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def read_rgb(path: str | Path, field: str) -> Any:
    """An RGB PIL image from a local file, size-checked before decoding."""
    with opened(path, field) as image:
        check_size(image, path, field)
        try:
            with _no_pillow_limit():
                image.load()
            return image.convert("RGB")
        except (OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"{field}: cannot read {path} as an image ({e})") from None


def local_path(spec: str, field: str, cache: str | Path | None = None) -> Path:
    """The local file of an input spec: a path as it is, a URL or Drive id fetched once into
    the cache's `inputs/` folder."""
    from helpers.download import (
        DownloadError,
        Limits,
        cache_dir,
        fetch_file_from,
        resolve_user_source,
    )

    try:
        found = resolve_user_source(spec)
    except ValueError:
        found = Path(spec).expanduser()
    if not isinstance(found, Path) and found.kind == "hub":  # `inits/a.png` is a path here
        found = Path(spec).expanduser()
    if isinstance(found, Path):
        if not found.exists():
            raise ValueError(f"{field}: file not found: {spec!r}")
        return found
    try:
        return fetch_file_from(found, cache_dir(cache) / "inputs", cache=cache, kind="image",
                               progress=False, log=lambda _: None, retries=0,
                               limits=Limits(DOWNLOAD_SECONDS, DOWNLOAD_BYTES))
    except DownloadError as e:
        reasons = "; ".join(f.reason for f in e.failures) or str(e).splitlines()[0]
        raise ValueError(f"{field}: could not fetch {spec} ({reasons})") from None


def open_image(spec: str, field: str, cache: str | Path | None = None) -> Any:
    """An RGB PIL image from a path or URL; a `ValueError` naming the field when unreadable."""
    return read_rgb(local_path(spec, field, cache), field)
