"""The ControlNet depth preprocessor in runs: the `depth_model` estimator (the tiny Depth
Anything), its maps against a direct transformers call resized as the extension's
`depth_anything` resizes, the estimator let go after the maps, the CLI end to end, bad input."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from common import quiet
from PIL import Image, ImageDraw

from helpers import runs
from helpers.cli import main
from helpers.metadata.infotext import parse_infotext
from helpers.settings import DiffusionSettings

BASE = ["diffusion", "--model", "test-tiny-sd", "--prompt", "a house", "--size", "64", "64",
        "--steps", "3", "--seed", "5", "--sampler", "Euler", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def estimator_folder(session_cache) -> Path:
    from helpers.download import fetch

    return fetch("test-tiny-depth", cache=session_cache, progress=False)


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("depth") / "room.png"
    image = Image.new("RGB", (80, 60), (40, 60, 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle((8, 20, 36, 58), fill=(230, 220, 40))
    draw.ellipse((44, 6, 76, 38), fill=(200, 30, 30))
    image.save(path)
    return path


def run_settings(tmp_path: Path, picture: Path, **changes) -> DiffusionSettings:
    values = {"prompt": "a house", "model": "test-tiny-sd", "width": 64, "height": 64,
              "steps": 3, "seed": 5, "sampler": "Euler", "device": "cpu",
              "control": f"depth:{picture}", "depth_model": "test-tiny-depth",
              "out": str(tmp_path / "out"), **changes}
    return DiffusionSettings(**values)


def checked_units(settings: DiffusionSettings, cache: Path) -> list:
    from helpers.diffusion.checks import check_inputs

    return check_inputs(settings, cache, log=quiet).control


# --- the tiny estimator -------------------------------------------------------------------------


def test_tiny_depth_is_a_depth_anything_folder_whose_depth_follows_the_image(estimator_folder):
    from helpers.diffusion.tools.control.annotators import depth
    from helpers.diffusion.tools.control.depth import load_estimator
    from helpers.files import read_json

    assert read_json(estimator_folder / "config.json", "config", dict)["model_type"] == \
        "depth_anything"
    processor = read_json(estimator_folder / "preprocessor_config.json", "processor", dict)
    assert (processor["image_processor_type"], processor["ensure_multiple_of"],
            processor["keep_aspect_ratio"], processor["resample"]) == ("DPTImageProcessor",
                                                                       14, True, 3)
    estimator = load_estimator(str(estimator_folder))
    assert type(estimator[0]).__name__ == "DepthAnythingForDepthEstimation"
    g = torch.Generator().manual_seed(0)
    first, second = (torch.randint(0, 256, (3, 42, 56), generator=g).float() for _ in range(2))
    made = depth(first, estimator)
    assert made.shape == (3, 42, 56) and made.min() == 0 and made.max() == 255
    assert len(made.unique()) > 50  # a depth that varies, as a trained model's
    assert not torch.equal(made, depth(second, estimator))


# --- the maps -----------------------------------------------------------------------------------


def reference_map(folder: Path, picture: Path, resolution: int, width: int, height: int):
    """The extension's `depth_anything` on a direct transformers call: the image's short side
    scaled to the resolution (bicubic up), padded to multiples of 64 by repeating its edge,
    the model on it through its own processor, the depth bilinearly resized to the padded
    size, (d - min) / (max - min) * 255 cast to uint8, cut back, then fitted (crop and
    resize)."""
    from transformers import AutoModelForDepthEstimation

    from helpers.diffusion.tools.control.images import bicubic, fit

    try:
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(folder)
    except ImportError:  # transformers 5.x without torchvision
        from transformers import DPTImageProcessor

        processor = DPTImageProcessor.from_pretrained(folder)
    model = AutoModelForDepthEstimation.from_pretrained(folder).eval()
    image = torch.from_numpy(np.asarray(Image.open(picture).convert("RGB"), np.float32))
    image = image.permute(2, 0, 1)
    k = resolution / min(image.shape[1:])
    h, w = round(image.shape[1] * k), round(image.shape[2] * k)
    scaled = bicubic(image, w, h)
    pad_h, pad_w = -h % 64, -w % 64
    padded = F.pad(scaled[None], (0, pad_w, 0, pad_h), mode="replicate")[0]
    pixels = Image.fromarray(padded.permute(1, 2, 0).numpy().astype(np.uint8))
    with torch.no_grad():
        predicted = model(**processor(images=pixels, return_tensors="pt")).predicted_depth
    predicted = F.interpolate(predicted[None], size=padded.shape[1:], mode="bilinear",
                              align_corners=False)[0, 0].numpy()
    low, high = predicted.min(), predicted.max()
    grey = ((predicted - low) / (high - low) * 255.0).astype(np.uint8)[:h, :w]
    detected = torch.from_numpy(grey.astype(np.float32))[None].expand(3, h, w).clone()
    return detected, fit(detected, width, height)


def test_depth_maps_equal_a_direct_transformers_call_resized_as_the_extension_does(
        tiny_models, estimator_folder, picture, tmp_path, session_cache):
    settings = run_settings(tmp_path, picture, control_resolution=100)
    unit, = checked_units(settings, session_cache)
    detected, fitted = reference_map(estimator_folder, picture, 100, 64, 64)
    assert unit.detected.shape == (3, 100, 133)  # 60x80 scaled to 100 on its short side
    assert torch.equal(unit.detected, detected) and torch.equal(unit.map, fitted)
    assert unit.map.shape == (3, 64, 64) and len(unit.map.unique()) > 20
    assert unit.estimator is None  # a fixed image's unit keeps no estimator


def test_the_estimator_is_let_go_once_the_maps_are_made(tiny_models, estimator_folder, picture,
                                                         tmp_path, session_cache, monkeypatch):
    from helpers.diffusion.tools.control import depth

    models, load = [], depth.load_estimator

    def remembered(*args, **kwargs):
        model, processor = load(*args, **kwargs)
        models.append(weakref.ref(model))
        return model, processor

    monkeypatch.setattr(depth, "load_estimator", remembered)
    two = f"depth:{picture}\ndepth@test-tiny-controlnet:{picture}:0.5"
    units = checked_units(run_settings(tmp_path, picture, control=two), session_cache)
    gc.collect()
    assert len(units) == 2 and len(models) == 1  # loaded once for both units
    assert models[0]() is None  # and freed


# --- a run ----------------------------------------------------------------------------------------


def make(tmp_path: Path, capsys, name: str, *flags: str) -> Path:
    assert main([*BASE, "--out", str(tmp_path / name), *flags]) == 0
    return Path(capsys.readouterr().out.strip().splitlines()[-1])


def test_the_cli_saves_the_depth_map_and_steers_the_image(tiny_models, estimator_folder,
                                                          picture, tmp_path, capsys,
                                                          session_cache):
    made = make(tmp_path, capsys, "depth", "--control", f"depth:{picture}", "--depth-model",
                "test-tiny-depth")
    plain = make(tmp_path, capsys, "plain")
    saved = np.asarray(Image.open(made / "control" / "0.png").convert("RGB"))
    _, fitted = reference_map(estimator_folder, picture, 512, 64, 64)
    assert np.array_equal(saved, fitted.permute(1, 2, 0).numpy().astype(np.uint8))
    frame = runs.list_frames(made)[0]
    image = np.asarray(Image.open(frame).convert("RGB")).astype(int)
    other = np.asarray(Image.open(runs.list_frames(plain)[0]).convert("RGB")).astype(int)
    assert np.abs(image - other).mean() > 0.5
    info = parse_infotext(runs.read_image_info(frame)[0])
    assert info["ControlNet 0"] == (
        "Module: depth_anything, Model: test-tiny-controlnet, Weight: 1, Resize Mode: Crop and "
        "Resize, Low Vram: False, Processor Res: 512, Guidance Start: 0, Guidance End: 1, "
        "Pixel Perfect: False, Control Mode: Balanced")
    assert runs.read_image_info(frame)[1]["depth_model"] == "test-tiny-depth"


def bad(tmp_path: Path, capsys, *flags: str) -> str:
    out = tmp_path / "ws"
    assert main([*BASE, "--out", str(out), *flags]) == 2
    assert not out.exists()
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_each_bad_depth_model_is_one_error_line_and_writes_nothing(tiny_models, picture,
                                                                   estimator_folder, tmp_path,
                                                                   capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (no_weights / name).write_bytes((estimator_folder / name).read_bytes())
    unit = ["--control", f"depth:{picture}"]
    cases = [
        (["--depth-model", "depth-anythin"], "error: depth_model: unknown model "
                                             "'depth-anythin'. Did you mean 'depth-anything'"),
        (["--depth-model", "test-tiny-sd"], "error: depth_model: 'test-tiny-sd' is a diffusion "
                                            "model, not a depth estimator"),
        (["--depth-model", str(empty)], f"error: depth_model: {empty} has no config.json"),
        (["--depth-model", str(tiny_models["test-tiny-clip"])],
         f"error: depth_model: {tiny_models['test-tiny-clip']} holds a 'clip' model, not a "
         "depth estimator"),
        (["--depth-model", str(no_weights)], f"error: depth_model: cannot load {no_weights} "
                                             "as a depth estimator ("),
        (["--depth-model", " "], "error: depth_model: the depth preprocessor needs a depth "
                                 "estimator"),
    ]
    for flags, message in cases:
        assert bad(tmp_path, capsys, *unit, *flags).startswith(message), flags
    assert main([*BASE, "--out", str(tmp_path / "unused"), "--depth-model", "nowhere"]) == 0
    capsys.readouterr()  # without a depth unit the setting is not used


def test_a_hub_depth_model_out_of_reach_names_the_setting(tiny_models, picture, tmp_path,
                                                          capsys):
    out = tmp_path / "ws"
    assert main([*BASE, "--out", str(out), "--control", f"depth:{picture}", "--depth-model",
                 "someone/no-such-depth-model"]) == 2
    assert not out.exists()
    first = capsys.readouterr().err.strip().splitlines()[0]
    assert first.startswith("error: depth_model: could not get the depth estimator "
                            "'someone/no-such-depth-model': "), first
