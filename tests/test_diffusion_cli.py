"""`python -m helpers diffusion` offline on the tiny Stable Diffusion."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import runs
from helpers.cli import main
from helpers.metadata import infotext


def diffusion(capsys, *flags: str) -> list:
    assert main(["diffusion", "--model", "test-tiny-sd", "--steps", "2", "--quiet", *flags]) == 0
    run_dir = capsys.readouterr().out.strip().splitlines()[-1]
    return runs.list_frames(run_dir)


@pytest.mark.parametrize("mode", ["composable", "blend"])
def test_txt2img_writes_frames_with_infotext(tiny_models, tmp_path, capsys, mode):
    frames = diffusion(capsys, "--prompt", "desert:50 | snow:25", "--negative", "blurry",
                       "--prompt-mode", mode, "--size", "64", "64", "--seed", "7",
                       "--batch-size", "2", "--out", str(tmp_path))
    assert len(frames) == 2
    text, saved = runs.read_image_info(frames[1])
    info = infotext.parse_infotext(text)
    assert info["Prompt"] == "desert:50 | snow:25" and info["Negative prompt"] == "blurry"
    assert info["Seed"] == "8" and info["Size"] == "64x64" and info["Steps"] == "2"
    assert saved["prompt_mode"] == mode and saved["kind"] == "diffusion"
    assert main(["info", str(frames[0])]) == 0
    assert "Negative prompt: blurry" in capsys.readouterr().out


def test_from_image_reruns_the_same_picture(tiny_models, tmp_path, capsys):
    first = diffusion(capsys, "--prompt", "a red cube", "--size", "64", "64", "--seed", "3",
                      "--out", str(tmp_path / "a"))[0]
    assert main(["diffusion", "--from-image", str(first), "--out", str(tmp_path / "b"),
                 "--quiet"]) == 0
    again = runs.list_frames(capsys.readouterr().out.strip().splitlines()[-1])[0]
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))


def test_img2img_from_an_init_image(tiny_models, tmp_path, capsys):
    init = tmp_path / "init.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(init)
    frames = diffusion(capsys, "--prompt", "a cat", "--init-image", str(init), "--strength",
                       "0.5", "--size", "64", "64", "--out", str(tmp_path / "ws"))
    info = infotext.parse_infotext(runs.read_image_info(frames[0])[0])
    assert info["Denoising strength"] == "0.5"


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--prompt", "a:1:0.5"], "stop"),
        (["--prompt", "a", "--strength", "1.5", "--init-image", "x.png"], "strength"),
        (["--prompt", "a", "--init-image", "missing.png"], "missing.png"),
        (["--prompt", "a", "--model", "sd-15"], "sd-1.5"),
        (["--prompt", "a", "--sdxl-original-size", "512", "512"], "sdxl"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tiny_models, tmp_path, capsys, flags, match):
    out = tmp_path / "ws"
    args = ["diffusion", "--model", "test-tiny-sd", "--out", str(out), "--quiet", *flags]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and match in err, err
    assert not out.exists()
