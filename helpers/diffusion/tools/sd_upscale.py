"""SD upscale: the web UI's img2img script of that name.

The check stage enlarges the init image (at its own size, not resized to the run's)
`sd_upscale` times with `sd_upscale_upscaler` (`tools.upscale.upscale_by`; a model upscaler is
loaded on the run's device and let go) into an `Upscaling`, after checking that the picture is
at least a tile large and that joining it fits the RAM (the GPU holds one tile at a time, which
`checks.plan_memory` counts). The loop (`loop.sd_upscale`) cuts it into tiles of the run's size that
overlap by at least `sd_upscale_overlap` pixels (`split_tiles`, the web UI's
`images.split_grid`), img2imgs each tile with the run's prompt and strength on the one loaded
pipeline (`loop.call_pipeline`, the path a plain img2img run takes), and joins the tiles with a
linear blend across the first `overlap` pixels of each (`join_tiles`, the web UI's
`images.combine_grid`). As in the web UI, tile k (row by row) of a picture of seed s is made
with seed s + k (its script makes each tile a batch and gives the next one the last seed + 1),
and the infotext's `Size` is the tile size.

A ControlNet `tile_resample` unit takes each tile as its image, as the extension's unit
without an image of its own takes the img2img tile; other units keep their image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from helpers.reporting import Log, no_log

if TYPE_CHECKING:
    from PIL import Image

    from helpers.settings import DiffusionSettings

FIELD = "sd_upscale"
# RAM per pixel of the joined picture: the enlarged image, its tiles cut and made (uint8), the
# float32 canvas they are blended on, the picture and its PNG (a model upscaler's float output
# too): a generous bound, the GPU holds one tile at a time (`checks.plan_memory` counts it)
RESULT_BYTES_PER_PIXEL = 32
TILE_PREPROCESSOR = "tile_resample"


@dataclass(frozen=True)
class Tile:
    """One tile: where it sits in the picture and its pixels."""

    x: int
    y: int
    image: Image.Image  # RGB, tile_w x tile_h


@dataclass(frozen=True)
class Grid:
    """A picture cut into overlapping tiles, row by row (the web UI's `images.Grid`)."""

    rows: tuple[tuple[Tile, ...], ...]
    tile_w: int
    tile_h: int
    image_w: int
    image_h: int
    overlap: int

    def tiles(self) -> list[Tile]:
        """The tiles row by row, left to right."""
        return [tile for row in self.rows for tile in row]

    def with_images(self, images: list[Image.Image]) -> Grid:
        """The grid with other tile pixels, in `tiles()` order (the img2img'd tiles)."""
        found = iter(images)
        rows = tuple(tuple(replace(tile, image=next(found)) for tile in row)
                     for row in self.rows)
        return replace(self, rows=rows)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles along one side start: as few as cover `length` with at least `overlap`
    pixels shared, spread evenly, the last one flush with the end (the web UI's
    `split_grid`)."""
    if not 0 <= overlap < tile <= length:
        raise ValueError(f"{FIELD}: tiles of {tile} pixels overlapping by {overlap} cannot "
                         f"cover {length} pixels")
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1) if count > 1 else 0
    return [min(int(i * step), length - tile) for i in range(count)]


def split_tiles(image: Image.Image, tile_w: int, tile_h: int, overlap: int) -> Grid:
    """`image` cut into tiles of `tile_w` x `tile_h` overlapping by at least `overlap`."""
    image = image.convert("RGB")
    xs = tile_starts(image.width, tile_w, overlap)
    rows = tuple(tuple(Tile(x, y, image.crop((x, y, x + tile_w, y + tile_h))) for x in xs)
                 for y in tile_starts(image.height, tile_h, overlap))
    return Grid(rows, tile_w, tile_h, image.width, image.height, overlap)


def blend_weights(overlap: int) -> Any:
    """The weights (float32, `overlap` of them) of a tile across the first pixels it shares
    with the one before it, 0 rising linearly by 1/overlap; the earlier tile has 1 - them."""
    import numpy as np

    return np.arange(overlap, dtype=np.float32) / max(overlap, 1)


def _lay(canvas: Any, piece: Any, at: int, weights: Any) -> None:
    """Put `piece` on `canvas` at row `at`: its first rows blended by `weights` with what
    is there (the first piece, at 0, whole)."""
    end = at + piece.shape[0]
    if at == 0:
        canvas[:end] = piece
        return
    shared = len(weights)
    w = weights.reshape(-1, *([1] * (piece.ndim - 1)))
    canvas[at:at + shared] = canvas[at:at + shared] * (1 - w) + piece[:shared] * w
    canvas[at + shared:end] = piece[shared:]


def join_tiles(grid: Grid) -> Image.Image:
    """The tiles joined into one picture: each row's tiles blended left to right across
    their overlaps, then the rows top to bottom (the web UI's `combine_grid`)."""
    import numpy as np
    from PIL import Image

    weights = blend_weights(grid.overlap)
    picture = np.zeros((grid.image_h, grid.image_w, 3), np.float32)
    for row in grid.rows:
        band = np.zeros((grid.tile_h, grid.image_w, 3), np.float32)
        for tile in row:  # across: the band and the tile with x first
            pixels = np.asarray(tile.image.convert("RGB"), np.float32)
            _lay(band.swapaxes(0, 1), pixels.swapaxes(0, 1), tile.x, weights)
        _lay(picture, band, row[0].y, weights)
    return Image.fromarray(np.rint(picture).clip(0, 255).astype(np.uint8))


# --- the check stage -------------------------------------------------------------------------


@dataclass(frozen=True)
class Upscaling:
    """An SD upscale run's start, made by the check stage: the init image enlarged."""

    image: Image.Image  # RGB at the run's output size, to be cut into tiles


def upscaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """The enlarged picture's size, as `upscale.upscale_by` rounds it."""
    return round(size[0] * scale), round(size[1] * scale)


def result_bytes(size: tuple[int, int]) -> float:
    """Rough peak RAM of enlarging, tiling and joining a picture of `size`."""
    return size[0] * size[1] * RESULT_BYTES_PER_PIXEL


def check_result(settings: DiffusionSettings, size: tuple[int, int],
                 free: float | None) -> None:
    """The enlarged picture: at least a tile large, tiles overlapping by less than a side,
    readable back (`inputs.MAX_PIXELS`), and joined within `free` bytes of RAM."""
    from helpers.inputs import MAX_PIXELS
    from helpers.memory import GB, HEADROOM

    width, height = settings.width, settings.height
    if settings.sd_upscale_overlap >= min(width, height):
        raise ValueError(f"sd_upscale_overlap: the tiles are the size, {width}x{height}: they "
                         f"overlap by less than {min(width, height)} pixels (got "
                         f"{settings.sd_upscale_overlap})")
    big = f"{settings.sd_upscale:g} enlarges the init image to {size[0]}x{size[1]}"
    if size[0] < width or size[1] < height:
        raise ValueError(f"{FIELD}: {big}, smaller than a tile (the size, {width}x{height}); "
                         "give a larger factor or a smaller size")
    if size[0] * size[1] > MAX_PIXELS:
        raise ValueError(f"{FIELD}: {big}, more than the {MAX_PIXELS / 1e6:.0f} megapixels a "
                         "picture may have here; give a smaller factor")
    need = result_bytes(size)
    if free is not None and need > HEADROOM * free:
        raise ValueError(f"{FIELD}: {big}, which needs about {need / GB:.1f} GB of memory to "
                         f"join, {free / GB:.1f} GB is free; give a smaller factor")


def check_upscaler(name: str) -> None:
    """The upscaler's name before anything loads: a PIL one, a catalogue upscaler, an
    existing file, a URL or a Hub file; a model upscaler needs spandrel."""
    from helpers.diffusion.tools.upscalers import check_name, renamed

    try:
        check_name(name)
    except ValueError as e:
        raise ValueError(renamed(e, "sd_upscale_upscaler")) from None


def upscaling_of(settings: DiffusionSettings, init: Image.Image, device: Any = "cpu",
                 cache: str | os.PathLike | None = None, free: float | None = None,
                 log: Log = no_log) -> Upscaling:
    """An SD upscale run's start: its init image enlarged by the run's upscaler (a model one
    loaded on `device` and let go after), once the size and the RAM (`free` bytes, else
    measured) allow it; `ValueError` naming the setting when the picture cannot be made."""
    from helpers.diffusion.tools.upscale import upscale_by
    from helpers.diffusion.tools.upscalers import load_upscaler, renamed
    from helpers.memory import available_ram

    size = upscaled_size(init.size, settings.sd_upscale)
    check_result(settings, size, available_ram() if free is None else free)
    check_upscaler(settings.sd_upscale_upscaler)
    try:
        upscaler = load_upscaler(settings.sd_upscale_upscaler, device, cache, log)
    except ValueError as e:
        raise ValueError(renamed(e, "sd_upscale_upscaler")) from None
    return Upscaling(upscale_by(upscaler, init.convert("RGB"), settings.sd_upscale))


# --- the run ---------------------------------------------------------------------------------


def tile_control(settings: DiffusionSettings, control: Any, tile: Image.Image) -> Any:
    """The run's ControlNet units for one tile: a `tile_resample` unit's map made from it."""
    if control is None or TILE_PREPROCESSOR not in control.preprocessors:
        return control
    from helpers.diffusion.tools.control import images
    from helpers.diffusion.tools.control.run import maps

    _, fitted, _ = maps(settings, TILE_PREPROCESSOR, images.from_pil(tile))
    image = images.to_control(fitted)
    units = tuple(replace(unit, image=image) if p == TILE_PREPROCESSOR else unit
                  for unit, p in zip(control.units, control.preprocessors, strict=True))
    return replace(control, units=units)


def tile_report(on_step: Callable[..., None], batch: int, tile: int, tiles: int
                ) -> Callable[[int, int, Any, Callable[[Any], list]], None]:
    """One tile's step report as steps of the whole picture (tile k's step i is step
    k * steps + i of tiles * steps), so progress counts every tile."""
    def report(i: int, total: int, latents: Any, decode: Callable[[Any], list]) -> None:
        on_step(batch, tile * total + i, tiles * total, latents, decode)

    return report
