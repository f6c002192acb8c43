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
ordinary checkpoints alike, as inpainting does. The setting's syntax is `borders`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from helpers.diffusion.tools.borders import Borders, parse_outpaint

if TYPE_CHECKING:
    from PIL import Image

    from helpers.diffusion.tools.inpaint import Inpainting
    from helpers.settings import DiffusionSettings

# outpaint_fill -> the inpaint masked content that starts the border
MASKED_CONTENT = {"fill": "fill", "latent noise": "latent noise", "mirror": "original",
                  "stretch": "original"}
NUMPY_PADS = {"mirror": "symmetric", "stretch": "edge"}


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
    from helpers.diffusion.tools.inpaint import fill as fill_from_around

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

    from helpers.diffusion.tools.inpaint import prepared_mask, whole_picture

    picture = init.convert("RGB").resize((settings.width, settings.height),
                                         Image.Resampling.LANCZOS)
    canvas, mask = outpaint_canvas(picture, parse_outpaint(settings.outpaint),
                                   settings.outpaint_fill, 2 * settings.mask_blur)
    mask = prepared_mask(mask, False, settings.mask_blur)
    return whole_picture(canvas, mask, canvas.size, MASKED_CONTENT[settings.outpaint_fill])
