"""ControlNet through a run: the `control` setting, the check stage, loading, sampling, the saved
control maps and the infotext, on the tiny SD with the tiny ControlNet (64x64, 3 steps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from helpers import runs
from helpers.cli import main
from helpers.diffusion.tools.control.units import UnitSpec, controlnet_for, parse_control
from helpers.metadata.infotext import parse_infotext
from helpers.settings import DiffusionSettings

BASE = ["diffusion", "--model", "test-tiny-sd", "--prompt", "a house", "--size", "64", "64",
        "--steps", "3", "--seed", "5", "--sampler", "Euler", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("control") / "shapes.png"
    image = Image.new("RGB", (80, 64), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, 40, 50), fill="black")
    draw.ellipse((45, 12, 75, 44), fill=(200, 30, 30))
    image.save(path)
    return path


def make(tmp_path: Path, capsys, name: str, *flags: str) -> Path:
    assert main([*BASE, "--out", str(tmp_path / name), *flags]) == 0
    return Path(capsys.readouterr().out.strip().splitlines()[-1])


def pixels(run_dir: Path) -> np.ndarray:
    return np.asarray(Image.open(runs.list_frames(run_dir)[0]).convert("RGB")).astype(int)


def test_units_parse_from_the_right(tmp_path):
    assert parse_control("canny:a.png") == [UnitSpec("canny", "", "a.png")]
    assert parse_control("canny@test-tiny-controlnet:http://host:8080/a.png:0.5:0.1:0.9\n\n"
                         "none:C:\\maps\\m.png:2") == [
        UnitSpec("canny", "test-tiny-controlnet", "http://host:8080/a.png", 0.5, 0.1, 0.9),
        UnitSpec("none", "", "C:\\maps\\m.png", 2.0)]
    assert controlnet_for(UnitSpec("canny", "", "a"), False) == "controlnet-sd15-canny"
    assert controlnet_for(UnitSpec("canny", "", "a"), True) == "controlnet-sdxl-canny"
    assert controlnet_for(UnitSpec("threshold", "", "a"), False, test_model=True) == \
        "test-tiny-controlnet"
    bad = {"sobel:a.png": "'sobel' is not a preprocessor", "canny:a.png:3": "weight 3",
           "canny:a.png:1:0.5:0.5": "guidance start 0.5 and end 0.5",
           "canny:a.png:1:0.5": "two numbers", "canny": "not TYPE:IMAGE",
           "canny@:a.png": "names no model",
           "inpaint:a.png": "the inpaint preprocessor marks the run's inpaint mask",
           "canny:video": "the image video is each frame of the input video",
           "\n".join(["canny:a.png"] * 5): "at most 4 units"}
    for text, message in bad.items():
        with pytest.raises(ValueError, match="control: ") as error:
            DiffusionSettings(prompt="a", control=text)
        assert message in str(error.value), text


def test_control_is_never_taken_from_a_picture():
    from helpers.settings.picture import picture_fields

    fields = picture_fields(DiffusionSettings)
    assert "control" not in fields and "control_mode" in fields


def test_units_with_their_own_modes_read_back_with_the_first_units_and_a_line(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    from helpers.diffusion.image_info import settings_from_image

    unit = ('"Module: canny, Model: control_v11p_sd15_canny, Weight: 1, Resize Mode: {}, '
            'Processor Res: 512, Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, '
            'Control Mode: {}"')
    text = ("a house\nSteps: 4, Sampler: Euler, Seed: 1, Size: 64x64, ControlNet 0: "
            + unit.format("Just Resize", "Balanced") + ", ControlNet 1: "
            + unit.format("Just Resize", "My prompt is more important"))
    chunk = PngInfo()
    chunk.add_text("parameters", text)
    path = tmp_path / "two.png"
    Image.new("RGB", (64, 64)).save(path, pnginfo=chunk)
    lines: list[str] = []
    read = settings_from_image(path, log=lines.append)
    assert (read.control_mode, read.control_resize) == ("Balanced", "Just Resize")
    assert ("from_image: two.png: the units' Control Mode differ; the first unit's hold for "
            "every unit here") in lines
    same = text.replace("My prompt is more important", "Balanced")
    chunk = PngInfo()
    chunk.add_text("parameters", same)
    Image.new("RGB", (64, 64)).save(path, pnginfo=chunk)
    lines.clear()
    settings_from_image(path, log=lines.append)
    assert not [line for line in lines if "differ" in line]


def test_one_and_two_units_steer_save_their_maps_and_read_back(tiny_models, picture, tmp_path,
                                                               capsys):
    plain = make(tmp_path, capsys, "plain")
    one = make(tmp_path, capsys, "one", "--control", f"canny:{picture}:0.8")
    zero = make(tmp_path, capsys, "zero", "--control", f"canny:{picture}:0")
    assert np.array_equal(pixels(zero), pixels(plain))
    assert np.abs(pixels(one) - pixels(plain)).mean() > 0.5
    control = Image.open(one / "control" / "0.png")
    assert control.size == (64, 64) and set(np.unique(np.asarray(control))) <= {0, 255}
    text, stored = runs.read_image_info(runs.list_frames(one)[0])
    info = parse_infotext(text)
    assert info["ControlNet 0"] == (
        "Module: canny, Model: test-tiny-controlnet, Weight: 0.8, Resize Mode: Crop and Resize, "
        "Low Vram: False, Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance "
        "Start: 0, Guidance End: 1, Pixel Perfect: False, Control Mode: Balanced")
    assert stored["control"] == f"canny:{picture}:0.8"
    again = make(tmp_path, capsys, "again", "--from-image", str(runs.list_frames(one)[0]),
                 "--control", f"canny:{picture}:0.8")
    assert np.array_equal(pixels(again), pixels(one))

    two = make(tmp_path, capsys, "two", "--control", f"canny:{picture}:0.8",
               "--control", f"invert@test-tiny-controlnet:{picture}:1:0:0.5",
               "--control-mode", "ControlNet is more important", "--control-resize",
               "Just Resize", "--control-pixel-perfect", "--control-resolution", "256")
    assert sorted(p.name for p in (two / "control").iterdir()) == ["0.png", "1.png"]
    frame = runs.list_frames(two)[0]
    info = parse_infotext(runs.read_image_info(frame)[0])
    assert "Guidance End: 0.5" in info["ControlNet 1"]
    assert "Module: invert" in info["ControlNet 1"]
    assert "Processor Res" not in info["ControlNet 1"]  # invert runs at the image's size
    assert not np.array_equal(pixels(two), pixels(one))

    logged: list[str] = []
    from helpers.diffusion.image_info import settings_from_image

    read = settings_from_image(frame, log=logged.append)
    assert (read.control, read.control_mode, read.control_resize, read.control_pixel_perfect,
            read.control_resolution) == ("", "ControlNet is more important", "Just Resize",
                                         True, 256)
    assert "control" in logged[0]
    from PIL.PngImagePlugin import PngInfo

    chunk = PngInfo()
    chunk.add_text("parameters", runs.read_image_info(frame)[0])
    only_text = tmp_path / "infotext.png"
    Image.open(frame).save(only_text, pnginfo=chunk)
    logged.clear()
    read = settings_from_image(only_text, log=logged.append)
    assert (read.control, read.control_mode, read.control_resize, read.control_pixel_perfect,
            read.control_resolution) == ("", "ControlNet is more important", "Just Resize",
                                         True, 256)
    assert any("ControlNet 0" in line and "--control" in line for line in logged), logged
    assert not any("not used" in line for line in logged), logged


def test_control_with_img2img_inpaint_and_the_hires_fix(tiny_models, picture, tmp_path,
                                                        capsys):
    flags = ["--control", f"canny:{picture}"]
    made = make(tmp_path, capsys, "i2i", "--init-image", str(picture), *flags)
    assert pixels(made).shape == (64, 64, 3)
    assets = Path(__file__).resolve().parent.parent / "assets"
    made = make(tmp_path, capsys, "inpaint", "--init-image", str(assets / "init.png"), "--mask",
                str(assets / "mask.png"), "--control", f"none:{assets / 'control.png'}")
    assert pixels(made).shape == (64, 64, 3)
    made = make(tmp_path, capsys, "hires", "--hires-scale", "1.5", "--hires-steps", "2", *flags)
    assert pixels(made).shape == (96, 96, 3)


def test_the_memory_plan_counts_the_controlnets():
    from helpers.diffusion.checks import estimate_bytes, plan_memory
    from helpers.diffusion.families import FAMILIES

    sdxl = FAMILIES["sdxl"]
    plain, one = (estimate_bytes(sdxl, 1024, 1024, 1, 2, {}, control=n) for n in (0, 1))
    assert 2.5e9 <= one - plain <= 4e9
    run = DiffusionSettings(prompt="a", model="sdxl-1.0", width=1024, height=1024,
                            control="canny:a.png")
    assert plan_memory(run, sdxl, "cuda", 16e9)  # 1024x1024 SDXL and one ControlNet in 16 GB
    with pytest.raises(ValueError, match="width/height"):
        plan_memory(run.replace(control="\n".join(["canny:a.png"] * 4)), sdxl, "cuda", 8e9)


def bad(tmp_path: Path, capsys, *flags: str) -> str:
    out = tmp_path / "ws"
    assert main([*BASE, "--out", str(out), *flags]) == 2
    assert not out.exists()
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_each_bad_control_is_one_error_line_and_writes_nothing(tiny_models, picture, tmp_path,
                                                               capsys):
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    cases = [
        (["--control", f"canny:{notes}"], "error: control: cannot read"),
        (["--control", f"canny@test-tiny-controlnet-sdxl:{picture}"],
         "error: control: test-tiny-controlnet-sdxl is an SDXL ControlNet; the model is SD"),
        (["--control", f"sobel:{picture}"], "error: control: 'sobel' is not a preprocessor"),
        (["--control", f"canny:{picture}", "--sampler", "DDIM"],
         "error: sampler: ControlNet runs on the web UI's k-diffusion samplers"),
        (["--control", f"canny:{picture}:1:0.2:0.1"], "error: control: guidance start 0.2"),
        (["--control", f"canny:{tmp_path / 'none.png'}"], "error: control: file not found"),
        (["--control-mode", "Balanced!"], "error: control_mode: "),
    ]
    for flags, message in cases:
        assert bad(tmp_path, capsys, *flags).startswith(message), flags


def noise_picture(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def box_mask(path: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> Path:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    mask.save(path)
    return path


def test_the_inpaint_preprocessor_marks_the_runs_mask_in_its_image(tiny_models, tmp_path,
                                                                   capsys):
    from helpers.diffusion.tools import inpaint

    init = noise_picture(tmp_path / "init.png", (64, 64))
    mask = box_mask(tmp_path / "mask.png", (64, 64), (10, 16, 41, 47))
    made = make(tmp_path, capsys, "inpaint", "--init-image", str(init), "--mask", str(mask),
                "--control", f"inpaint:{init}")
    saved = np.asarray(Image.open(made / "control" / "0.png").convert("RGB")).astype(int)
    prepared = inpaint.prepare(Image.open(init).convert("RGB"), Image.open(mask),
                               DiffusionSettings(prompt="a", init_image=str(init),
                                                 mask=str(mask), width=64, height=64))
    masked = np.asarray(prepared.mask) > 127.5  # the blurred mask the run repaints
    assert 0 < masked.sum() < masked.size
    assert (saved[masked] == 0).all()
    assert np.array_equal(saved[~masked], np.asarray(Image.open(init)).astype(int)[~masked])
    frame = runs.list_frames(made)[0]
    info = parse_infotext(runs.read_image_info(frame)[0])
    assert info["ControlNet 0"].startswith("Module: inpaint, Model: test-tiny-controlnet, ")
    assert "Processor Res" not in info["ControlNet 0"]


def test_the_inpaint_hint_reaches_the_controlnet_at_minus_one_and_follows_only_masked(
        tiny_models, tmp_path):
    from helpers.diffusion.checks import check_inputs
    from helpers.diffusion.loading import load_models
    from helpers.diffusion.tools import inpaint
    from helpers.diffusion.tools.control.run import check_control, run_control

    init = noise_picture(tmp_path / "init.png", (96, 80), seed=2)
    mask = box_mask(tmp_path / "mask.png", (96, 80), (40, 30, 59, 49))
    settings = DiffusionSettings(prompt="a", model="test-tiny-sd", init_image=str(init),
                                 mask=str(mask), inpaint_area="only masked", width=64,
                                 height=64, sampler="Euler", device="cpu",
                                 control=f"inpaint:{init}", out=str(tmp_path / "out"))
    checked = check_inputs(settings, log=lambda _: None)
    prepared = checked.init_image
    assert isinstance(prepared, inpaint.Inpainting) and prepared.paste_to is not None
    unit, = checked.control
    masked = np.asarray(prepared.mask) > 127.5
    assert 0 < masked.sum() < masked.size
    cut = np.asarray(prepared.image).astype(np.float32)  # masked content "original": the crop
    shown = unit.map.permute(1, 2, 0).numpy()
    assert (shown[masked] == -255).all() and np.array_equal(shown[~masked], cut[~masked])
    again, = check_control(checked.settings, checked.ref, checked.family, init=prepared)
    assert torch.equal(again.map, unit.map)  # the check stage's inpainting, or the same made
    control = run_control(checked.settings, checked.control, load_models(checked,
                                                                         log=lambda _: None),
                          "cpu")
    hint = control.units[0].image
    assert hint.shape == (1, 3, 64, 64) and hint.min() == -1
    assert int((hint[0, 0] == -1).sum()) == int(masked.sum())
