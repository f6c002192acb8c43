"""Stable Diffusion's x4 and latent x2 upscalers as upscalers: the tiny models in the real
diffusers layout, our upscale equal to diffusers' pipeline called directly on the same folder
(and a different seed giving a different picture, so the comparison can fail), and the
`upscale` command writing the larger picture with its postprocessing chunk. No spandrel."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.catalog import get_model, list_models
from helpers.cli import main
from helpers.diffusion.tools.diffusion_upscalers import DiffusionUpscaler, diffusion_family
from helpers.diffusion.tools.upscale import read_postprocess, upscale_by
from helpers.diffusion.tools.upscalers import load_upscaler

X4, LATENT = "test-tiny-sd-x4-upscaler", "test-tiny-sd-latent-upscaler"


@pytest.fixture(scope="module")
def folders(session_cache) -> dict[str, Path]:
    from helpers.download import fetch

    return {name: fetch(name, cache=session_cache, progress=False) for name in (X4, LATENT)}


def _picture(size: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _diffusers(folder: Path, cls_name: str, image: Image.Image, seed: int, **kwargs):
    """diffusers' own pipeline on the folder, called as a user of diffusers would."""
    import diffusers

    pipe = getattr(diffusers, cls_name).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt="", image=image, num_inference_steps=2,
                generator=torch.Generator().manual_seed(seed), **kwargs).images[0]


def _differ(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max())


def test_tiny_upscalers_are_saved_in_the_real_diffusers_layout(folders):
    x4 = folders[X4]
    assert json.loads((x4 / "model_index.json").read_text())["_class_name"] == \
        "StableDiffusionUpscalePipeline"
    unet = json.loads((x4 / "unet" / "config.json").read_text())
    vae = json.loads((x4 / "vae" / "config.json").read_text())
    assert unet["in_channels"] == 7 and unet["num_class_embeds"] == 1000
    assert len(vae["block_out_channels"]) == 3 and vae["scaling_factor"] == 0.08333
    assert json.loads((x4 / "low_res_scheduler" / "scheduler_config.json").read_text())[
        "_class_name"] == "DDPMScheduler"
    latent = folders[LATENT]
    assert json.loads((latent / "model_index.json").read_text())["_class_name"] == \
        "StableDiffusionLatentUpscalePipeline"
    unet = json.loads((latent / "unet" / "config.json").read_text())
    assert (unet["in_channels"], unet["out_channels"]) == (8, 5)
    for folder in (x4, latent):
        weights = [p.suffix for p in folder.rglob("*")
                   if p.suffix in (".safetensors", ".bin", ".ckpt", ".pth", ".pt")]
        assert len(weights) == 3 and set(weights) == {".safetensors"}  # no pickles
        assert diffusion_family(str(folder)) in ("sd-x4", "sd-latent-x2")


def test_catalogue_lists_both_sd_upscalers_as_hub_repos_with_safetensors_only():
    for name, repo, family in (("SD x4 upscaler", "stabilityai/stable-diffusion-x4-upscaler",
                                "sd-x4"),
                               ("SD latent x2 upscaler", "stabilityai/sd-x2-latent-upscaler",
                                "sd-latent-x2")):
        model = get_model(name)
        assert (model.kind, model.hub_repo, model.family) == ("upscaler", repo, family)
        assert "Open RAIL++-M" in model.licence
        files = [*model.allow_patterns, *model.weights]
        assert all(not f.endswith((".bin", ".ckpt")) for f in files)
        assert "unet/diffusion_pytorch_model.safetensors" in model.weights
        assert diffusion_family(name.upper()) == family
    assert diffusion_family("R-ESRGAN 4x+") is None
    assert {m.family for m in list_models("upscaler") if m.test} >= {"sd-x4", "sd-latent-x2"}


@pytest.mark.parametrize(("name", "cls_name", "size", "extra"), [
    (X4, "StableDiffusionUpscalePipeline", 32, {"noise_level": 20}),
    (LATENT, "StableDiffusionLatentUpscalePipeline", 64, {}),
], ids=["x4", "latent-x2"])
def test_our_upscale_equals_diffusers_pipeline_called_directly(folders, name, cls_name, size,
                                                               extra):
    upscaler = load_upscaler(name, "cpu")
    scale = 4 if name == X4 else 2
    assert (upscaler.name, upscaler.scale, upscaler.is_model) == (name, scale, True)
    assert isinstance(upscaler.model, DiffusionUpscaler)
    assert upscaler.model.dtype == torch.float32  # fp32 on the CPU
    quick = dataclasses.replace(upscaler, model=dataclasses.replace(upscaler.model, steps=2))
    picture = _picture(size)
    ours = upscale_by(quick, picture, scale)
    direct = _diffusers(folders[name], cls_name, picture, seed=0, **extra)
    assert ours.size == direct.size == (size * scale, size * scale)
    assert _differ(ours, direct) <= 1
    other = _diffusers(folders[name], cls_name, picture, seed=1, **extra)
    assert _differ(ours, other) > 8  # another seed's noise: the comparison can fail


def test_a_bad_option_or_a_too_small_picture_is_an_error_naming_the_upscaler():
    upscaler = load_upscaler(X4, "cpu")
    noisy = dataclasses.replace(upscaler.model, noise_level=351)
    with pytest.raises(ValueError, match=r"^upscaler: noise level 351 is out of range"):
        noisy.upscale_picture(_picture(32))
    with pytest.raises(ValueError, match=r"^upscaler: the 2x2 picture is too small"):
        upscaler.model.upscale_picture(_picture(2))


def test_a_folder_without_safetensors_is_an_error_naming_the_upscaler(folders, tmp_path):
    import shutil

    folder = shutil.copytree(folders[X4], tmp_path / "x4")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"^upscaler: cannot load .*\.safetensors weights only"):
        load_upscaler(str(folder), "cpu")


@pytest.mark.parametrize(("name", "cls_name", "size", "scale"), [
    (X4, "StableDiffusionUpscalePipeline", 32, 4),
    (LATENT, "StableDiffusionLatentUpscalePipeline", 64, 2),
], ids=["x4", "latent-x2"])
def test_upscale_command_writes_the_models_picture_naming_the_upscaler(
        tmp_path, capsys, monkeypatch, folders, name, cls_name, size, scale):
    from helpers.diffusion.tools import diffusion_upscalers

    monkeypatch.setattr(diffusion_upscalers, "STEPS", 2)  # the loaded upscaler's steps
    picture = tmp_path / "a.png"
    _picture(size).save(picture)
    assert main(["upscale", str(picture), "--upscaler", name, "--scale", str(scale),
                 "--device", "cpu"]) == 0
    made = Path(capsys.readouterr().out.split()[-1])
    assert made.parent == tmp_path and made != picture
    with Image.open(made) as image:
        assert image.size == (size * scale, size * scale)
        ours = image.convert("RGB")
    assert read_postprocess(made) == {"Postprocess upscale by": f"{scale}",
                                      "Postprocess upscaler": name}
    assert _differ(ours, _diffusers(folders[name], cls_name, _picture(size), seed=0)) <= 1
