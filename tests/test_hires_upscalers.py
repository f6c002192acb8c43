"""The hires fix's upscalers by the web UI's names: the latents' interpolation modes, the image
upscalers' PIL resizes, the setting and its old values, the infotext both ways; and an old
infotext's `First pass size` read as the web UI reads it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from common import needs_spandrel, spandrel_direct
from PIL import Image

from helpers.diffusion.image_info import USED_KEYS, infotext_params, settings_from_image
from helpers.diffusion.sampling.upscale import (
    HIRES_UPSCALERS,
    model_upscaler_names,
    upscale_for_hires,
    upscale_image,
)
from helpers.metadata import exif
from helpers.metadata.infotext import format_infotext
from helpers.settings import DiffusionSettings

# the web UI's `shared.latent_upscale_modes`: name -> torch's mode and antialias
WEB_UI_LATENT = {
    "Latent": ("bilinear", False), "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False), "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False), "Latent (nearest-exact)": ("nearest-exact", False),
}
LANCZOS, NEAREST = Image.Resampling.LANCZOS, Image.Resampling.NEAREST


@pytest.fixture(scope="module")
def tiny_pipe(session_cache):
    """Only the tiny SD pipeline (its VAE decodes and encodes the image upscalers' images)."""
    from common import load_tiny_sd

    from helpers.download import fetch

    return load_tiny_sd(fetch("test-tiny-sd", cache=session_cache, progress=False))


def _latents(height: int = 4, width: int = 6) -> torch.Tensor:
    return torch.randn((2, 4, height, width), generator=torch.Generator().manual_seed(3))


def _picture(size: tuple[int, int]) -> Image.Image:
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=torch.Generator()
                           .manual_seed(1), dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


# --- upscaling ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", WEB_UI_LATENT)
def test_latent_modes_are_torchs_interpolate_as_the_web_ui_calls_it(name) -> None:
    latents = _latents()
    ours = upscale_for_hires(SimpleNamespace(vae_scale_factor=8), latents, 80, 56, name)
    mode, antialias = WEB_UI_LATENT[name]
    expected = torch.nn.functional.interpolate(latents, size=(7, 10), mode=mode,
                                               antialias=antialias)
    assert ours.shape == (2, 4, 7, 10) and torch.equal(ours, expected)


@pytest.mark.parametrize(("name", "resample"), [("None", LANCZOS), ("Lanczos", LANCZOS),
                                                ("Nearest", NEAREST)], ids=str)
def test_image_upscalers_are_pils_resize_of_the_decoded_image(tiny_pipe, name,
                                                              resample) -> None:
    from helpers.diffusion.sampling.vae import decode, encode_latents

    latents = _latents(4, 4)
    ours = upscale_for_hires(tiny_pipe, latents, 64, 64, name)
    expected = torch.cat([encode_latents(tiny_pipe, image.resize((64, 64), resample))
                          for image in decode(tiny_pipe, latents)])
    assert ours.shape == (2, 4, 8, 8) and torch.equal(ours, expected)


def test_lanczos_and_nearest_take_the_web_uis_steps_where_the_scale_is_uneven() -> None:
    # 40x24 -> 64x40: scale max(1.6, 1.67); one step to 66x40, Lanczos to 64x40 (rounded to 8)
    image = _picture((40, 24))
    assert upscale_image(image, 64, 40, "Lanczos").tobytes() == \
        image.resize((66, 40), LANCZOS).resize((64, 40), LANCZOS).tobytes()
    assert upscale_image(image, 64, 40, "Nearest").tobytes() == \
        image.resize((66, 40), NEAREST).resize((64, 40), LANCZOS).tobytes()
    assert upscale_image(image, 64, 40, "None").tobytes() == \
        image.resize((64, 40), LANCZOS).tobytes()


@needs_spandrel
def test_a_model_upscaler_is_its_passes_then_lanczos_of_the_decoded_image(tiny_pipe,
                                                                            session_cache):
    from helpers.diffusion.sampling.vae import decode, encode_latents
    from helpers.diffusion.tools.upscalers import load_for_run
    from helpers.download import fetch

    path = fetch("test-tiny-esrgan", cache=session_cache, progress=False)
    load_for_run("test-tiny-esrgan", "cpu", session_cache)
    latents = _latents(4, 4)  # 32x32 pictures, 4x by the model, Lanczos down to 48x48
    ours = upscale_for_hires(tiny_pipe, latents, 48, 48, "test-tiny-esrgan")
    expected = torch.cat([
        encode_latents(tiny_pipe, Image.fromarray(spandrel_direct(path, image))
                       .resize((48, 48), LANCZOS)) for image in decode(tiny_pipe, latents)])
    assert ours.shape == (2, 4, 6, 6) and torch.equal(ours, expected)


def test_model_upscalers_are_spelt_as_the_catalogue_spells_them() -> None:
    for given in ("r-esrgan 4x+", "RealESRGAN_x4plus", " R-ESRGAN 4X+ "):
        assert DiffusionSettings(prompt="x", hires_upscaler=given).hires_upscaler == \
            "R-ESRGAN 4x+"
    assert DiffusionSettings(prompt="x", hires_upscaler="models/4x_foo.pth").hires_upscaler \
        == "models/4x_foo.pth"
    with pytest.raises(ValueError, match=r"^hires_upscaler: 'SwinIR 9x' is not one of .*"
                       r"R-ESRGAN 4x\+.*\.safetensors file"):
        DiffusionSettings(prompt="x", hires_upscaler="SwinIR 9x")


# --- the setting ----------------------------------------------------------------------------


def test_the_setting_takes_the_web_uis_names_in_any_case_and_our_old_ones() -> None:
    assert DiffusionSettings().hires_upscaler == "Latent"
    for name in HIRES_UPSCALERS:
        assert DiffusionSettings(prompt="x", hires_upscaler=name.upper()).hires_upscaler == name
    old = DiffusionSettings(prompt="x").to_dict()
    for value, now in (("latent", "Latent"), ("lanczos", "Lanczos")):
        assert DiffusionSettings.from_dict({**old, "hires_upscaler": value}).hires_upscaler == now


def test_the_cli_and_the_forms_offer_every_name(monkeypatch) -> None:
    import argparse
    import dataclasses

    from helpers.cli import add_settings_flags
    from helpers.settings import meta_of

    field = next(f for f in dataclasses.fields(DiffusionSettings) if f.name == "hires_upscaler")
    assert (*WEB_UI_LATENT, "None", "Lanczos", "Nearest") == HIRES_UPSCALERS
    assert meta_of(field).choices == (*HIRES_UPSCALERS, *model_upscaler_names())
    assert "R-ESRGAN 4x+" in meta_of(field).choices and meta_of(field).open_choices
    monkeypatch.setenv("COLUMNS", "10000")  # the help on one line each
    parser = argparse.ArgumentParser()
    add_settings_flags(parser, DiffusionSettings)
    assert f"one of: {', '.join(meta_of(field).choices)}; default Latent" in parser.format_help()
    given = parser.parse_args(["--hires-upscaler", "latent (nearest-exact)"]).hires_upscaler
    assert DiffusionSettings(prompt="x", hires_upscaler=given).hires_upscaler == \
        "Latent (nearest-exact)"


# --- the infotext ---------------------------------------------------------------------------


def _loaded() -> SimpleNamespace:
    return SimpleNamespace(model_hash="0123456789", ref=SimpleNamespace(label="test-tiny-sd"),
                           vae_label="")


def _save(tmp_path: Path, text: str) -> Path:
    return exif.save_with_info(tmp_path / "webui.png", Image.new("RGB", (8, 8)), text)


@pytest.mark.parametrize("name", HIRES_UPSCALERS)
def test_every_name_is_written_as_the_web_ui_writes_it_and_read_back(tmp_path, name) -> None:
    s = DiffusionSettings(prompt="a cat", model="test-tiny-sd", sampler="Euler a", seed=7,
                          hires_scale=2, hires_upscaler=name, out=str(tmp_path))
    params = infotext_params(s, s.seed, _loaded(), hashes={})
    assert params["Hires upscaler"] == name
    text = format_infotext(s.prompt, s.negative_prompt, params)
    assert settings_from_image(_save(tmp_path, text), log=print, out=s.out) == s
    shouted = text.replace(f"Hires upscaler: {name}", f"Hires upscaler: {name.upper()}")
    assert settings_from_image(_save(tmp_path, shouted), log=print).hires_upscaler == name


def test_an_unknown_upscaler_in_an_infotext_is_an_error_naming_it(tmp_path) -> None:
    text = "a cat\nSteps: 20, Size: 64x64, Hires upscale: 2, Hires upscaler: 4x-Foolhardy"
    with pytest.raises(ValueError, match=r"^from_image: Hires upscaler '4x-Foolhardy' is not "
                       r"one of .*give --hires-upscaler"):
        settings_from_image(_save(tmp_path, text), log=print)


# --- First pass size (the web UI before 1.0) ------------------------------------------------

OLD = ("a castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: {size}, "
       "Model hash: 7460a6fa, Denoising strength: 0.6, First pass size: {first}")


def _old(tmp_path: Path, size: str, first: str, lines: list | None = None,
         **overrides) -> DiffusionSettings:
    """The settings of an old hires infotext; `lines` gets what is logged."""
    log = print if lines is None else lines.append
    return settings_from_image(_save(tmp_path, OLD.format(size=size, first=first)), log=log,
                               model="test-tiny-sd", **overrides)


@pytest.mark.parametrize(("size", "first", "read"), [
    ("1024x1024", "512x512", (512, 512, 2.0)),
    ("768x1152", "512x768", (512, 768, 1.5)),
    ("1024x1024", "0x0", (512, 512, 2.0)),  # 0x0: the old automatic first pass (~512x512)
])
def test_first_pass_size_is_the_first_pass_and_size_the_hires_size(tmp_path, size, first,
                                                                   read) -> None:
    lines: list[str] = []
    s = _old(tmp_path, size, first, lines)
    assert (s.width, s.height, s.hires_scale) == read
    assert (s.hires_strength, s.hires_upscaler, s.sampler) == (0.6, "Latent", "Euler a")
    assert lines == [] and "First pass size" in USED_KEYS


def test_an_uneven_scale_still_makes_the_written_size(tmp_path) -> None:
    s = _old(tmp_path, "408x408", "168x168")
    assert (s.width, int(s.width * s.hires_scale)) == (168, 408)  # 408 / 168 falls short


@pytest.mark.parametrize(("size", "first", "message"), [
    ("1024x768", "512x512", "First pass size 512x512 with Size 1024x768"),
    ("1024x768", "0x0", r"First pass size 0x0 \(automatic: 640x448\) with Size 1024x768"),
    ("512x512", "0x0", r"First pass size 0x0 \(automatic: 512x512\) with Size 512x512"),
])
def test_a_first_pass_we_cannot_make_is_an_error_naming_it(tmp_path, size, first,
                                                           message) -> None:
    with pytest.raises(ValueError, match=f"^from_image: {message} .*give --hires-scale"):
        _old(tmp_path, size, first)
    assert _old(tmp_path, size, first, hires_scale=1.5).hires_scale == 1.5


# --- a hires run with a model upscaler ------------------------------------------------------


def _hires_cli(tmp_path: Path, upscaler: str) -> list[str]:
    from common import TINY_SD_CLI

    return [*TINY_SD_CLI, "--hires-scale", "1.5", "--hires-upscaler", upscaler,
            "--out", str(tmp_path / "runs"), "--quiet"]


@needs_spandrel
def test_a_hires_run_with_a_model_upscaler_writes_and_reads_back_its_name(tmp_path, capsys,
                                                                          session_cache):
    from helpers.cli import main
    from helpers.runs import list_frames

    assert main([*_hires_cli(tmp_path, "TEST-TINY-ESRGAN"), "--cache",
                 str(session_cache)]) == 0
    (frame,) = list_frames(Path(capsys.readouterr().out.split()[-1]))
    with Image.open(frame) as made:
        assert made.size == (96, 96)
    s = settings_from_image(frame, log=print)
    assert (s.hires_upscaler, s.hires_scale) == ("test-tiny-esrgan", 1.5)


@pytest.mark.parametrize("upscaler", ["missing.pth", "NOT_A_MODEL"])
def test_a_bad_model_upscaler_is_one_error_naming_hires_upscaler_before_any_run(
        tmp_path, capsys, session_cache, upscaler) -> None:
    from helpers.cli import main

    if upscaler == "NOT_A_MODEL":
        upscaler = str(tmp_path / "not.safetensors")
        Path(upscaler).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    assert main([*_hires_cli(tmp_path, upscaler), "--cache", str(session_cache)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: hires_upscaler: "), err
    assert not (tmp_path / "runs").exists()
