"""Write the sample pictures in assets/ (run: `python tools/assets.py`): a small landscape to
start img2img from, a mask over its sky and an outline of it as a control map. Drawn from shapes,
so they are ours to ship under the project's licence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SIZE = 512


def landscape() -> Image.Image:
    """A sky gradient, a sun, two hills and a lake."""
    y = np.linspace(0.0, 1.0, SIZE)[:, None, None]
    sky = (1 - y) * np.array([40, 70, 160]) + y * np.array([250, 180, 120])
    image = Image.fromarray(np.broadcast_to(sky, (SIZE, SIZE, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((300, 90, 400, 190), fill=(255, 230, 150))
    hills(draw, (60, 110, 70), (40, 85, 60))
    draw.ellipse((60, 400, 330, 480), fill=(70, 120, 170))
    return image


def hills(draw: ImageDraw.ImageDraw, near: object, far: object) -> None:
    """The two hills, which cover everything below the sky."""
    draw.polygon([(0, 330), (140, 220), (300, 340), (300, 512), (0, 512)], fill=near)
    draw.polygon([(180, 360), (380, 240), (512, 320), (512, 512), (180, 512)], fill=far)


def sky_mask() -> Image.Image:
    """White where the sky is (to repaint), black elsewhere."""
    mask = Image.new("L", (SIZE, SIZE), 255)
    hills(ImageDraw.Draw(mask), 0, 0)
    return mask


def outline(image: Image.Image) -> Image.Image:
    """White edges on black, as a canny control map looks."""
    edges = image.convert("L").filter(ImageFilter.FIND_EDGES)
    return edges.point(lambda v: 255 if v > 12 else 0)


def main() -> None:
    """Write init.png, mask.png and control.png."""
    image = landscape()
    image.save(ASSETS / "init.png", optimize=True)
    sky_mask().save(ASSETS / "mask.png", optimize=True)
    outline(image).save(ASSETS / "control.png", optimize=True)


if __name__ == "__main__":
    main()
