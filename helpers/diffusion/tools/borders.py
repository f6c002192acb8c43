"""The outpaint setting's syntax: the pixels added on each side (no torch, no images).

`"64"` grows every side by 64 pixels; `"left=128,right=128,up=0,down=64"` each side by its own
(a side left out: 0). Settings validate with it; `outpaint` grows the pictures.
"""

from __future__ import annotations

from dataclasses import dataclass

FIELD = "outpaint"
SIDES = ("left", "right", "up", "down")
MAX_BORDER = 4096  # pixels on one side; the memory plan decides what really fits
MAX_CHARS = 200
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
