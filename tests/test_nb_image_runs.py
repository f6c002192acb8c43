"""Notebooks 2, 3 and 4 run headless (papermill, the tiny models) in each image mode: outpaint,
img2img with a ControlNet unit, txt2img after them, and inpaint with the tiny inpainting model.
The images are checked, not only made: their sizes, the pixels a mode keeps, the control map,
and the settings each run recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_notebooks import execute, frames_of, printed

ROOT = Path(__file__).resolve().parent.parent
INIT = ROOT / "assets" / "init.png"  # 512x512
CONTROL = ROOT / "assets" / "control.png"
SIZE = 64  # the tiny models' size (the engine's test settings)


def run_of(ws: Path, before: set[Path]) -> Path:
    """The one run folder made since `before`."""
    (made,) = set((ws / "runs").iterdir()) - before
    return made


def settings_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "settings.json").read_text())


def image_of(run_dir: Path) -> np.ndarray:
    (frame,) = frames_of(run_dir)
    return np.asarray(Image.open(frame).convert("RGB")).astype(int)


def init_at(size: int) -> np.ndarray:
    """The init image as a run resizes it."""
    with Image.open(INIT) as image:
        resized = image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(resized).astype(int)


@pytest.mark.slow
def test_outpaint_then_img2img_with_a_controlnet_then_txt2img(tiny_models, tmp_path):
    ws = tmp_path / "ws"
    chosen = printed(execute("2_model_choice", ws, engine="diffusion",
                             controlnets="test-tiny-controlnet"))
    assert "controlnets = test-tiny-controlnet" in chosen
    assert json.loads((ws / "model.json").read_text())["controlnets"] == ["test-tiny-controlnet"]

    execute("3_parameters", ws, engine="diffusion", mode="outpaint", init_image=str(INIT),
            outpaint="16")
    execute("4_run", ws, engine="diffusion")
    outpainted = run_of(ws, set())
    stored = settings_of(outpainted)
    assert (stored["outpaint"], stored["init_image"], stored["mask"]) == ("16", str(INIT), "")
    made = image_of(outpainted)
    assert made.shape == (SIZE + 32, SIZE + 32, 3)  # grown by 16 px on every side
    # the picture's middle (clear of the seam and its blur) is the init image's, exactly
    assert np.array_equal(made[40:56, 40:56], init_at(SIZE)[24:40, 24:40])

    execute("3_parameters", ws, engine="diffusion", mode="img2img",
            control=f"canny:{CONTROL}")
    params = json.loads((ws / "params.json").read_text())
    assert (params["outpaint"], params["init_image"]) == ("", str(INIT))  # img2img drops it
    execute("4_run", ws, engine="diffusion")
    controlled = run_of(ws, {outpainted})
    stored = settings_of(controlled)
    assert stored["control"] == f"canny:{CONTROL}" and stored["outpaint"] == ""
    assert image_of(controlled).shape == (SIZE, SIZE, 3)
    control_map = np.asarray(Image.open(controlled / "control" / "0.png"))
    assert control_map.shape[:2] == (SIZE, SIZE)
    assert set(np.unique(control_map)) == {0, 255}  # canny's edges, white on black

    execute("3_parameters", ws, engine="diffusion", mode="txt2img")
    params = json.loads((ws / "params.json").read_text())
    assert (params["init_image"], params["strength"]) == ("", 0.75)  # the image fields cleared
    assert params["control"] == f"canny:{CONTROL}"  # a ControlNet steers txt2img as well


@pytest.mark.slow
def test_inpaint_with_the_inpainting_model_keeps_the_unmasked_pixels(tiny_models, tmp_path):
    ws = tmp_path / "ws"
    mask = tmp_path / "right-half.png"
    pixels = np.zeros((512, 512), np.uint8)
    pixels[:, 256:] = 255  # repaint the right half
    Image.fromarray(pixels).save(mask)
    execute("2_model_choice", ws, engine="diffusion", model="test-tiny-sd-inpaint")
    assert json.loads((ws / "model.json").read_text())["model"] == "test-tiny-sd-inpaint"

    execute("3_parameters", ws, engine="diffusion", init_image=str(INIT), mask=str(mask))
    execute("4_run", ws, engine="diffusion")  # the mode came from the mask
    run_dir = run_of(ws, set())
    stored = settings_of(run_dir)
    assert (stored["model"], stored["mask"], stored["init_image"]) == (
        "test-tiny-sd-inpaint", str(mask), str(INIT))
    made, init = image_of(run_dir), init_at(SIZE)
    assert made.shape == (SIZE, SIZE, 3)
    assert np.array_equal(made[:, :24], init[:, :24])  # left of the mask and its blur: kept
    assert np.abs(made[:, 40:] - init[:, 40:]).mean() > 5  # the right half: repainted
