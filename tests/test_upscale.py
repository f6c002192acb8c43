"""Upscalers: the tiny Real-ESRGANs in the real key layout, loading through spandrel without
running pickle code, tiled upscaling equal to untiled (and to spandrel's model called
directly), the catalogue's Real-ESRGAN entries, and the `upscale` command on pictures and
run folders. Tests that run spandrel skip where it cannot import (it imports torchvision)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from common import HAS_SPANDREL, needs_spandrel, spandrel_direct
from PIL import Image

from helpers.catalog import get_model, list_models
from helpers.cli import main
from helpers.diffusion.tools import upscale
from helpers.diffusion.tools.upscale import plan_tile, upscale_by, upscale_image

LANCZOS, NEAREST = Image.Resampling.LANCZOS, Image.Resampling.NEAREST


@pytest.fixture(scope="module")
def tiny(session_cache) -> dict[str, Path]:
    from helpers.download import fetch

    return {name: fetch(name, cache=session_cache, progress=False)
            for name in ("test-tiny-esrgan", "test-tiny-esrgan-x2")}


def _picture(width: int = 90, height: int = 70, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _load(path: Path):
    from helpers.diffusion.tools.upscalers import load_upscaler

    return load_upscaler(str(path), "cpu")


# --- the tiny models and the catalogue (no spandrel needed) ---------------------------------


def test_tiny_esrgans_are_saved_in_real_esrgans_key_layout(tiny):
    for name, in_channels in (("test-tiny-esrgan", 3), ("test-tiny-esrgan-x2", 12)):
        pth = tiny[name]
        saved = torch.load(pth, weights_only=True)
        state = saved["params_ema"]  # as RealESRGAN_x4plus.pth holds it
        assert {"conv_first.weight", "body.0.rdb1.conv1.weight", "body.0.rdb3.conv5.bias",
                "conv_body.weight", "conv_up1.weight", "conv_up2.weight", "conv_hr.weight",
                "conv_last.weight"} <= state.keys()
        assert state["conv_first.weight"].shape[1] == in_channels
        from safetensors.torch import load_file

        flat = load_file(pth.with_suffix(".safetensors"))
        assert flat.keys() == state.keys()
        assert all(torch.equal(flat[k], state[k]) for k in state)


def test_catalogue_lists_real_esrgan_by_the_web_uis_names_with_checksums_and_licence():
    upscalers = {m.name: m for m in list_models("upscaler") if not m.test}
    assert {"R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B"} <= upscalers.keys()
    for name, file, release in (("R-ESRGAN 4x+", "RealESRGAN_x4plus.pth", "v0.1.0"),
                                ("R-ESRGAN 4x+ Anime6B", "RealESRGAN_x4plus_anime_6B.pth",
                                 "v0.2.2.4")):
        model = get_model(name)
        (only,) = model.files
        assert only.name == file and len(only.sha256) == 64 and only.size
        first, mirror = only.sources
        assert first.location == (f"https://github.com/xinntao/Real-ESRGAN/releases/download/"
                                   f"{release}/{file}")
        assert mirror.kind == "hub" and mirror.filename.endswith(file) and mirror.revision
        assert "BSD-3-Clause" in model.licence and model.family == "spandrel"


# --- loading and tiling (spandrel) ----------------------------------------------------------


@needs_spandrel
@pytest.mark.parametrize("name", ["test-tiny-esrgan", "test-tiny-esrgan-x2"])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_untiled_upscale_is_spandrels_model_called_directly(tiny, name, suffix):
    path = tiny[name].with_suffix(suffix)
    image = _picture()
    ours = np.asarray(upscale_image(_load(path).model, image, tile=0))
    assert np.array_equal(ours, spandrel_direct(path, image))


def _seams(length: int, tile: int, overlap: int, scale: int) -> np.ndarray:
    """Output positions inside an overlap of two tiles along one side."""
    spans = upscale._spans(length, tile, overlap)
    seam = np.zeros(length * scale, bool)
    for (start, size), (after, _) in itertools.pairwise(spans):
        seam[after * scale:(start + size) * scale] = True
    return seam


@needs_spandrel
@pytest.mark.parametrize("name", ["test-tiny-esrgan", "test-tiny-esrgan-x2"])
@pytest.mark.parametrize(("tile", "overlap"), [(40, 32), (48, upscale.OVERLAP)])
def test_tiled_equals_untiled_within_1_255_off_the_seams_and_2_255_on_them(tiny, name, tile,
                                                                           overlap):
    model = _load(tiny[name]).model
    image = _picture(90, 70)
    whole = np.asarray(upscale_image(model, image, tile=0)).astype(int)
    tiled = np.asarray(upscale_image(model, image, tile=tile, overlap=overlap)).astype(int)
    assert whole.shape == tiled.shape == (70 * model.scale, 90 * model.scale, 3)
    rows = _seams(70, tile, overlap, model.scale)
    cols = _seams(90, tile, overlap, model.scale)
    on_seam = rows[:, None] | cols[None, :]
    assert on_seam.any() and (~on_seam).any()
    diff = np.abs(whole - tiled).max(axis=-1)
    assert diff[~on_seam].max() <= 1 and diff[on_seam].max() <= 2


@needs_spandrel
def test_tiles_without_a_zero_weight_margin_would_show_the_seams(tiny):
    # the check above can fail: tiles that barely overlap leave the tiny model's edge errors
    model = _load(tiny["test-tiny-esrgan-x2"]).model
    image = _picture(90, 70)
    whole = np.asarray(upscale_image(model, image, tile=0)).astype(int)
    tiled = np.asarray(upscale_image(model, image, tile=32, overlap=4)).astype(int)
    assert np.abs(whole - tiled).max() > 2


@needs_spandrel
def test_a_scale_other_than_the_models_is_its_upscale_then_lanczos(tiny):
    upscaler = _load(tiny["test-tiny-esrgan"])
    image = _picture(30, 20)
    ours = upscale_by(upscaler, image, 3, tile=0)
    expected = upscale_image(upscaler.model, image, tile=0).resize((90, 60), LANCZOS)
    assert ours.size == (90, 60) and ours.tobytes() == expected.tobytes()
    eight = upscale_by(upscaler, image, 8, tile=0)  # two 4x passes
    assert eight.size == (240, 160)


@needs_spandrel
def test_pickle_code_in_an_upscaler_file_never_runs(tiny, tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))

    state = torch.load(tiny["test-tiny-esrgan"], weights_only=True)
    path = tmp_path / "evil.pth"
    torch.save({**state, "extra": Evil()}, path)
    upscaler = _load(path)
    assert not marker.exists() and upscaler.scale == 4


@needs_spandrel
def test_an_unknown_architecture_is_an_error_naming_the_setting(tmp_path):
    path = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"encoder.layer.0.weight": torch.zeros(4, 4)}, path)
    with pytest.raises(ValueError, match=r"^upscaler: .*not a model architecture spandrel"):
        _load(path)


@needs_spandrel
def test_the_tile_comes_from_the_free_memory(tiny):
    model = _load(tiny["test-tiny-esrgan"]).model
    size = (2048, 2048)
    assert plan_tile(model, size, free=1e15, ram=1e15) == 0  # the whole picture fits
    tile = plan_tile(model, size, free=8e9, ram=1e15)
    assert 0 < tile < 2048 and upscale.tile_bytes(tile * tile, 4, False) <= 0.9 * 8e9
    with pytest.raises(ValueError, match=r"^tile: "):
        plan_tile(model, size, free=1e6, ram=1e15)
    with pytest.raises(ValueError, match=r"^scale: .*result needs"):
        plan_tile(model, size, free=1e15, ram=1e8)


def test_a_4x_upscale_of_a_2048_picture_is_planned_to_fit_a_16_gb_gpu() -> None:
    from types import SimpleNamespace

    gb = 1024**3
    for dtype in (torch.float16, torch.float32):
        gpu = SimpleNamespace(dtype=dtype, device=torch.device("cuda"), scale=4)
        tile = plan_tile(gpu, (2048, 2048), free=16 * gb, ram=12 * gb)
        assert 0 < tile < 2048, dtype  # tiled: the whole picture would not fit
        assert upscale.tile_bytes(tile * tile, 4, dtype == torch.float16) <= 0.9 * 16 * gb
        assert tile >= 256, dtype  # not needlessly small: few tiles, little overlap work
    cpu = SimpleNamespace(dtype=torch.float32, device=torch.device("cpu"), scale=4)
    assert plan_tile(cpu, (2048, 2048), free=20 * gb, ram=20 * gb) > 0  # the result in RAM


# --- the upscale command ---------------------------------------------------------------------


def _run(tmp_path: Path, frames: int = 3) -> Path:
    run = tmp_path / "run"
    (run / "frames").mkdir(parents=True)
    for i in range(1, frames + 1):
        _picture(24, 16, seed=i).save(run / "frames" / f"{i:06d}.png")
    return run


@needs_spandrel
def test_upscale_writes_a_new_file_beside_the_picture_and_never_over_one(tiny, tmp_path,
                                                                          capsys):
    picture = tmp_path / "a.png"
    _picture(24, 16).save(picture)
    args = ["upscale", str(picture), "--upscaler", "test-tiny-esrgan", "--device", "cpu"]
    assert main(args) == 0 and main(args) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "a-x4.png"), str(tmp_path / "a-x4-2.png")]
    with Image.open(printed[0]) as first:
        assert first.size == (96, 64)
        expected = upscale_image(_load(tiny["test-tiny-esrgan"]).model, _picture(24, 16), 0)
        assert first.tobytes() == expected.tobytes()


@needs_spandrel
def test_upscale_of_a_run_streams_its_frames_into_a_folder_and_resumes(tiny, tmp_path,
                                                                      capsys):
    run = _run(tmp_path)
    args = ["upscale", str(run), "--upscaler", "test-tiny-esrgan", "--scale", "2",
            "--device", "cpu", "--quiet"]
    assert main(args) == 0
    dest = Path(capsys.readouterr().out.split()[-1])
    assert dest == run / "upscaled-x2-test-tiny-esrgan"
    made = sorted(p.name for p in dest.iterdir())
    assert made == ["000001.png", "000002.png", "000003.png"]
    before = {name: (dest / name).read_bytes() for name in made}
    (dest / "000002.png").unlink()
    stamp = (dest / "000001.png").stat().st_mtime_ns
    assert main(args) == 0
    assert (dest / "000001.png").stat().st_mtime_ns == stamp  # done before: skipped
    assert {name: (dest / name).read_bytes() for name in made} == before


@pytest.mark.parametrize(("name", "resample"), [("Lanczos", LANCZOS), ("nearest", NEAREST)])
def test_pil_upscalers_are_pils_resize(tmp_path, capsys, name, resample):
    picture = tmp_path / "a.png"
    _picture(24, 16).save(picture)
    assert main(["upscale", str(picture), "--upscaler", name, "--scale", "2.5"]) == 0
    with Image.open(capsys.readouterr().out.split()[-1]) as made:
        assert made.tobytes() == _picture(24, 16).resize((60, 40), resample).tobytes()


@pytest.mark.parametrize(("args", "setting"), [
    (["--upscaler", "Lanczos", "--scale", "9"], "scale"),
    (["--upscaler", "Lanczos", "--scale", "0.5"], "scale"),
    (["--upscaler", "no-such-upscaler"], "upscaler"),
    (["--upscaler", "Lanczos", "--tile", "-1"], "tile"),
    (["--upscaler", "Lanczos", "NOT_AN_IMAGE"], "image"),
], ids=["scale-high", "scale-low", "upscaler", "tile", "image"])
def test_bad_input_is_one_error_line_naming_the_setting_and_writes_nothing(tmp_path, capsys,
                                                                           args, setting):
    picture = tmp_path / "a.png"
    _picture(24, 16).save(picture)
    (tmp_path / "not.png").write_text("not a picture")
    source = str(tmp_path / "not.png") if "NOT_AN_IMAGE" in args else str(picture)
    args = [a for a in args if a != "NOT_AN_IMAGE"]
    before = sorted(tmp_path.rglob("*"))
    assert main(["upscale", source, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {setting}: ")
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.skipif(HAS_SPANDREL, reason="spandrel imports here")
def test_without_spandrel_a_model_upscaler_is_one_error_saying_what_to_install(tmp_path,
                                                                               capsys):
    picture = tmp_path / "a.png"
    _picture(24, 16).save(picture)
    assert main(["upscale", str(picture), "--upscaler", "test-tiny-esrgan",
                 "--device", "cpu"]) == 2
    assert "error: upscaler: model upscalers need spandrel" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_an_upscaled_picture_keeps_its_infotext_and_says_how_it_was_upscaled(tmp_path,
                                                                             capsys):
    from helpers.diffusion.tools.upscale import read_postprocess
    from helpers.metadata import exif

    picture = exif.save_with_info(tmp_path / "a.png", _picture(24, 16),
                                  "a cat\nSteps: 20, Seed: 7, Size: 24x16")
    assert read_postprocess(picture) == {}
    assert main(["upscale", str(picture), "--upscaler", "lanczos", "--scale", "2.5"]) == 0
    made = Path(capsys.readouterr().out.split()[-1])
    assert read_postprocess(made) == {"Postprocess upscale by": "2.5",
                                      "Postprocess upscaler": "Lanczos"}
    with Image.open(made) as image:
        assert image.info["parameters"] == "a cat\nSteps: 20, Seed: 7, Size: 24x16"
        assert image.info["postprocessing"] == \
            "Postprocess upscale by: 2.5, Postprocess upscaler: Lanczos"
    assert main(["info", str(made)]) == 0
    shown = capsys.readouterr().out
    assert "Size: 24x16\nPostprocess upscale by: 2.5, Postprocess upscaler: Lanczos" in shown
