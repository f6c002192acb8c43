"""Outpainting: the canvas grows past the init image, and the new border is inpainted.

`--outpaint 64` (every side) or `--outpaint left=128,right=128,up=0,down=64`. The init image is
resized to the run's size as for img2img, pasted on a canvas grown by the borders (each rounded
up to the model's multiple, so the canvas stays one), and the border starts from `outpaint_fill`:

- `fill`: the colours around it (the web UI's masked content "fill", `inpaint.fill`);
- `latent noise`: the same pixels, and noise in the border's start latents (the web UI's
  masked content "latent noise");
- `mirror`: the picture reflected at its edges; `stretch`: its edge pixels drawn out (what
  outpainting scripts and Deforum's border modes start from).

The mask is the border plus a seam of twice the mask blur inside the picture on each grown side,
as the web UI's "Poor man's outpainting" draws it; the inpaint machinery then blurs it (a soft
seam), samples, and pastes the untouched pixels back exactly. It works with inpainting and
ordinary checkpoints alike, as inpainting does. No torch here: settings validate with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

    from helpers.diffusion.inpaint import Inpainting
    from helpers.settings import DiffusionSettings

FIELD = "outpaint"
SIDES = ("left", "right", "up", "down")
MAX_BORDER = 4096  # pixels on one side; the memory plan decides what really fits
MAX_CHARS = 200
# outpaint_fill -> the inpaint masked content that starts the border
MASKED_CONTENT = {"fill": "fill", "latent noise": "latent noise", "mirror": "original",
                  "stretch": "original"}
NUMPY_PADS = {"mirror": "symmetric", "stretch": "edge"}


@dataclass(frozen=True)
class Borders:
    """Pixels added on each side of the picture."""

    left: int = 0
    right: int = 0
    up: int = 0
    down: int = 0

    def __bool__(self) -> bool:
        return any(getattr(self, side) for side in SIDES)

    def grown(self, width: int, height: int) -> tuple[int, int]:
        """The canvas size around a picture of width x height."""
        return width + self.left + self.right, height + self.up + self.down

    def rounded(self, multiple: int) -> Borders:
        """Each side rounded up to a multiple (the canvas of a rounded size stays rounded)."""
        return Borders(*(-(-getattr(self, side) // multiple) * multiple for side in SIDES))

    def text(self) -> str:
        """The setting's own spelling: one number when the sides agree, else side=px pairs."""
        values = [getattr(self, side) for side in SIDES]
        if len(set(values)) == 1:
            return str(values[0])
        return ",".join(f"{side}={value}" for side, value in zip(SIDES, values, strict=True))


def parse_outpaint(text: str) -> Borders:
    """`"64"` (every side) or `"left=128,right=128,up=0,down=64"` (a side left out: 0); empty:
    no outpaint. `ValueError` naming `outpaint` for anything else."""
    if not isinstance(text, str):
        raise ValueError(f"{FIELD} must be text, not {type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise ValueError(f"{FIELD} has {len(text)} characters; at most {MAX_CHARS}")
    text = text.strip()
    if not text:
        return Borders()
    if "=" not in text:
        return Borders(*[_pixels(text, "every side")] * 4)
    sides: dict[str, int] = {}
    for part in text.split(","):
        side, equals, value = (p.strip() for p in part.partition("="))
        side = side.lower()
        if not equals or side not in SIDES:
            raise ValueError(f"{FIELD}: {part.strip()!r} is not side=pixels; the sides are "
                             f"{', '.join(SIDES)} (or one number for every side)")
        if side in sides:
            raise ValueError(f"{FIELD}: {side} is given twice")
        sides[side] = _pixels(value, side)
    return Borders(**sides)


def _pixels(value: str, side: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"{FIELD}: {side}: {value!r} is not a whole number of pixels")
    pixels = int(value)
    if pixels > MAX_BORDER:
        raise ValueError(f"{FIELD}: {side}: {pixels} pixels is more than {MAX_BORDER}")
    return pixels


def check_outpaint(text: str) -> Borders:
    """The borders of a run that outpaints: parsed, and growing at least one side."""
    borders = parse_outpaint(text)
    if not borders:
        raise ValueError(f"{FIELD}: {text.strip()!r} grows no side; give the pixels to add")
    return borders


def outpaint_canvas(image: Image.Image, borders: Borders, fill: str = "fill",
                    seam: int = 0) -> tuple[Image.Image, Image.Image]:
    """(the grown RGB canvas, its binary L mask: 255 = paint) for a picture: the border started
    as `fill` says, the mask the border plus `seam` pixels inside each grown side."""
    import numpy as np
    from PIL import Image, ImageDraw

    width, height = borders.grown(*image.size)
    mask = Image.new("L", (width, height), 255)
    kept = (borders.left + (seam if borders.left else 0),
            borders.up + (seam if borders.up else 0),
            width - borders.right - (seam if borders.right else 0),
            height - borders.down - (seam if borders.down else 0))
    if kept[0] < kept[2] and kept[1] < kept[3]:
        ImageDraw.Draw(mask).rectangle((kept[0], kept[1], kept[2] - 1, kept[3] - 1), fill=0)
    picture = np.asarray(image.convert("RGB"))
    pads = ((borders.up, borders.down), (borders.left, borders.right), (0, 0))
    if fill in NUMPY_PADS:
        return Image.fromarray(np.pad(picture, pads, mode=NUMPY_PADS[fill])), mask
    from helpers.diffusion.inpaint import fill as fill_from_around

    canvas = Image.fromarray(np.pad(picture, pads))
    border = Image.new("L", canvas.size, 255)
    border.paste(0, (borders.left, borders.up, borders.left + image.width,
                     borders.up + image.height))
    return fill_from_around(canvas, border), mask


def outpainting_of(settings: DiffusionSettings, init: Image.Image) -> Inpainting:
    """An outpaint run's pictures: the init image resized to the run's size, on the canvas grown
    by the settings' borders (rounded already by the check stage), prepared as inpainting of
    the whole picture."""
    from PIL import Image

    from helpers.diffusion.inpaint import prepared_mask, whole_picture

    picture = init.convert("RGB").resize((settings.width, settings.height),
                                         Image.Resampling.LANCZOS)
    canvas, mask = outpaint_canvas(picture, parse_outpaint(settings.outpaint),
                                   settings.outpaint_fill, 2 * settings.mask_blur)
    mask = prepared_mask(mask, False, settings.mask_blur)
    return whole_picture(canvas, mask, canvas.size, MASKED_CONTENT[settings.outpaint_fill])
