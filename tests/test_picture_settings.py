"""A picture's metadata sets what makes the picture, never paths, URLs, the machine or models
outside the catalogue (`helpers.settings.picture`): `--from-image` and the forms' "fill from a
picture" alike."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from PIL import Image

from helpers import runs
from helpers.cli import main
from helpers.settings import DiffusionSettings, VQGANClipSettings
from helpers.settings.picture import picture_fields
from helpers.widgets.sources import read_source


def crafted(path: Path, **stored) -> Path:
    """A PNG whose `dreamframe` chunk holds `stored`, as a picture found on the web could."""
    path.write_bytes(runs.encode_png(Image.new("RGB", (8, 8)), "a picture", json.dumps(stored)))
    return path


def evil_diffusion(tmp_path: Path, url: str, **changes) -> dict:
    return {"kind": "diffusion", "model": "test-tiny-sd", "prompt": "desert", "steps": 2,
            "width": 64, "height": 64, "seed": 5, "out": str(tmp_path / "evil_ws"),
            "init_image": url, "device": "cuda:7", "precision": "fp16", **changes}


def test_from_image_takes_no_folder_url_or_device_from_the_picture(tiny_models, tmp_path,
                                                                   httpserver, capsys):
    httpserver.expect_request("/ok.png").respond_with_data(b"", status=200)
    png = crafted(tmp_path / "found.png", **evil_diffusion(tmp_path, httpserver.url_for("/ok.png")))
    code = main(["diffusion", "--from-image", str(png), "--out", str(tmp_path / "ws")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert not (tmp_path / "evil_ws").exists()
    assert httpserver.log == []  # the URL was never fetched
    run_dir = Path(out.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / "ws" / "runs"
    stored = runs.read_run_settings(run_dir)
    assert (stored["prompt"], stored["seed"], stored["steps"]) == ("desert", 5, 2)  # taken
    assert (stored["init_image"], stored["device"], stored["precision"]) == ("", "auto", "auto")
    (line,) = [x for x in err.splitlines() if "not taken from the picture" in x]
    assert line.endswith(": init_image, precision, device")  # --out was given: not named


@pytest.mark.parametrize("model", ["someone/evil-repo", "/etc/passwd", "../../models/x.ckpt"])
def test_a_model_outside_the_catalogue_is_asked_for(tiny_models, tmp_path, capsys, model):
    png = crafted(tmp_path / "found.png", **evil_diffusion(tmp_path, "", model=model))
    code = main(["diffusion", "--from-image", str(png), "--out", str(tmp_path / "ws"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: model: the picture found.png was made with {model!r}, which "
                          "is not in the catalogue; give --model"), err
    assert not (tmp_path / "ws").exists()
    assert main(["diffusion", "--from-image", str(png), "--model", "test-tiny-sd", "--out",
                 str(tmp_path / "ws"), "--quiet"]) == 0  # the user's own choice is taken


def test_vae_outside_the_catalogue_is_left_out_and_named(tmp_path):
    from helpers.diffusion.image_info import settings_from_image

    png = crafted(tmp_path / "found.png", **evil_diffusion(
        tmp_path, "", out="workspace", device="auto", precision="auto",
        vae="https://example.org/vae.safetensors", model_config="someone/config"))
    lines: list[str] = []
    settings = settings_from_image(png, log=lines.append)
    assert (settings.vae, settings.model_config, settings.model) == ("", "", "test-tiny-sd")
    assert lines == ["from_image: found.png: not taken from the picture (it never sets paths, "
                     "URLs, the machine or models outside the catalogue): model_config, vae"]


def test_the_vqgan_form_fills_what_makes_the_picture_only(tmp_path):
    stored = {"kind": "vqgan-clip", "prompt": "sea", "seed": 3, "iterations": 7,
              "vqgan": "test-tiny-vqgan", "clip": "test-tiny-clip:1",
              "image_prompts": "http://127.0.0.1:9/a.png", "init_image": "/etc/passwd",
              "out": "/tmp/elsewhere", "device": "cuda"}
    png = crafted(tmp_path / "found.png", **stored)
    current = {"prompt": "mine", "out": "my-ws", "device": "cpu"}
    values, note = read_source(VQGANClipSettings, png, current)
    assert values == {"prompt": "sea", "seed": 3, "iterations": 7, "vqgan": "test-tiny-vqgan",
                      "clip": "test-tiny-clip:1"}
    assert note.endswith("not taken from the picture (it never sets paths, URLs, the machine or "
                         "models outside the catalogue): out, image_prompts, init_image, device")
    with pytest.raises(ValueError, match=r"^load: clip: the picture found.png was made with "
                                         r"'evil/clip:1', which is not in the catalogue"):
        read_source(VQGANClipSettings, crafted(tmp_path / "found.png",
                                               **{**stored, "clip": "evil/clip:1"}), current)


def test_the_diffusion_form_keeps_its_own_folder_and_machine(tiny_models, tmp_path):
    png = crafted(tmp_path / "found.png", **evil_diffusion(tmp_path, "http://127.0.0.1:9/x.png"))
    values, note = read_source(DiffusionSettings, png, {"model": "test-tiny-sd"})
    assert values["prompt"] == "desert" and values["seed"] == 5
    assert not {"out", "init_image", "device", "precision"} & set(values)
    assert "not taken from the picture" in note


def names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_what_a_picture_may_set_is_named_by_the_settings_metadata():
    never = names(DiffusionSettings) - set(picture_fields(DiffusionSettings))
    assert never == {"out", "init_image", "init_video", "mask", "control", "device", "precision",
                     "attention_slicing", "vae_slicing", "vae_tiling", "cpu_offload"}
    never = names(VQGANClipSettings) - set(picture_fields(VQGANClipSettings))
    assert never == {"out", "init_image", "image_prompts", "device", "precision",
                     "checkpointing"}


def test_upscaler_and_face_model_files_are_left_out_and_named(tmp_path):
    from helpers.diffusion.image_info import settings_from_image

    evil = {"hires_scale": 2, "hires_upscaler": "https://example.org/x.pth",
            "restore_faces": "/tmp/face.pth", "sd_upscale_upscaler": "../up.safetensors"}
    png = crafted(tmp_path / "found.png", **evil_diffusion(
        tmp_path, "", out="workspace", device="auto", precision="auto", **evil))
    lines: list[str] = []
    settings = settings_from_image(png, log=lines.append)
    assert (settings.hires_upscaler, settings.restore_faces, settings.sd_upscale_upscaler) == \
        ("Latent", "", "Lanczos")
    assert set(lines[0].split(": ")[-1].split(", ")) == {"hires_upscaler", "restore_faces",
                                                         "sd_upscale_upscaler"}
    good = {"hires_scale": 2, "hires_upscaler": "R-ESRGAN 4x+", "restore_faces": "CodeFormer",
            "sd_upscale_upscaler": "Nearest"}
    png = crafted(tmp_path / "good.png", **evil_diffusion(
        tmp_path, "", out="workspace", device="auto", precision="auto", **good))
    settings = settings_from_image(png, log=print)
    assert (settings.hires_upscaler, settings.restore_faces, settings.sd_upscale_upscaler) == \
        ("R-ESRGAN 4x+", "CodeFormer", "Nearest")


@pytest.mark.parametrize(("key", "value", "read"), [
    ("Hires upscaler", "r-esrgan 4x+", "R-ESRGAN 4x+"),
    ("Hires upscaler", "/tmp/evil.pth", None),
    ("Hires upscaler", "https://example.org/evil.safetensors", None),
    ("Face restoration", "codeformer", "CodeFormer"),
    ("Face restoration", "/tmp/face.pth", None),
])
def test_an_infotext_names_catalogue_upscalers_and_face_models_only(tmp_path, key, value,
                                                                    read):
    from helpers.diffusion.image_info import settings_from_image
    from helpers.metadata import exif

    text = f"a cat\nSteps: 20, Seed: 3, Size: 64x64, Model: test-tiny-sd, Hires upscale: 2, " \
           f"{key}: {value}"
    png = exif.save_with_info(tmp_path / "webui.png", Image.new("RGB", (8, 8)), text)
    field = "hires_upscaler" if key == "Hires upscaler" else "restore_faces"
    if read is None:
        with pytest.raises(ValueError, match=f"^from_image: {key} .*give --"):
            settings_from_image(png, log=print)
    else:
        assert getattr(settings_from_image(png, log=print), field) == read
