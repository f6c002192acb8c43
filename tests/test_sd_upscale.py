"""SD upscale (the web UI's img2img script): the tiles and their linear blend, each tile the
plain img2img of its crop on the tiny SD, the output size, the infotext read back, resume, the
memory plan, and each bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from helpers import runs
from helpers.cli import main
from helpers.diffusion.families import FAMILIES
from helpers.diffusion.tools.sd_upscale import (
    Grid,
    Tile,
    blend_weights,
    check_result,
    join_tiles,
    result_bytes,
    split_tiles,
    tile_starts,
    upscaled_size,
)
from helpers.memory import GB
from helpers.metadata.infotext import parse_infotext
from helpers.settings import DiffusionSettings

TILE, OVERLAP = 64, 16
INIT = (48, 40)  # enlarged twice: 96x80, four tiles of 64 at x 0, 32 and y 0, 16


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def settings(tmp_path: Path, **changes) -> DiffusionSettings:
    values = {"prompt": "a red cube", "model": "test-tiny-sd", "init_image": str(tmp_path /
              "init.png"), "sd_upscale": 2.0, "sd_upscale_overlap": OVERLAP, "width": TILE,
              "height": TILE, "steps": 3, "seed": 5, "sampler": "Euler", "device": "cpu",
              "out": str(tmp_path / "ws"), **changes}
    return DiffusionSettings(**values)


# --- the grid ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "tile", "overlap", "starts"), [
    (1024, 512, 64, [0, 256, 512]),  # the web UI's split_grid: 3 tiles, spread evenly
    (512, 512, 64, [0]), (96, 64, 16, [0, 32]), (100, 64, 0, [0, 36]),
    (200, 64, 16, [0, 45, 90, 136])])
def test_tiles_start_where_the_web_uis_split_grid_puts_them(length, tile, overlap, starts):
    assert tile_starts(length, tile, overlap) == starts


@pytest.mark.parametrize(("size", "overlap"), [((96, 80), 16), ((200, 64), 16), ((100, 70), 0),
                                               ((64, 64), 32), ((131, 97), 63)])
def test_joining_the_split_tiles_gives_the_picture_back_exactly(size, overlap):
    picture = noise_image(*size, seed=size[0])
    grid = split_tiles(picture, 64, 64, overlap)
    assert all(t.image.size == (64, 64) for t in grid.tiles())
    assert np.array_equal(pixels(join_tiles(grid)), pixels(picture))


def test_the_blend_across_an_overlap_is_linear_and_its_weights_sum_to_one():
    weights = blend_weights(OVERLAP)
    assert np.allclose(weights, np.arange(OVERLAP) / OVERLAP)  # 0, 1/16, ..., 15/16
    left, right = (Image.new("RGB", (TILE, TILE), (v, v, v)) for v in (40, 240))
    grid = Grid(((Tile(0, 0, left), Tile(32, 0, right)),), TILE, TILE, 96, TILE, OVERLAP)
    row = pixels(join_tiles(grid))[10, :, 0]
    assert (row[:32] == 40).all() and (row[32 + OVERLAP:] == 240).all()
    expected = 40 * (1 - weights) + 240 * weights  # the two weights of each pixel sum to 1
    assert np.array_equal(row[32:32 + OVERLAP], np.rint(expected))
    assert np.allclose(np.diff(row[32:32 + OVERLAP]), 200 / OVERLAP, atol=1)  # a straight line
    top, bottom = (Image.new("RGB", (TILE, TILE), (v, 0, 0)) for v in (0, 160))
    grid = Grid(((Tile(0, 0, top),), (Tile(0, 32, bottom),)), TILE, TILE, TILE, 96, OVERLAP)
    column = pixels(join_tiles(grid))[:, 5, 0]
    assert np.array_equal(column[32:32 + OVERLAP], np.rint(160 * weights))
    assert (column[:32] == 0).all() and (column[32 + OVERLAP:] == 160).all()


def test_a_grid_takes_new_tile_pixels_in_order():
    grid = split_tiles(noise_image(96, 80), TILE, TILE, OVERLAP)
    grey = [Image.new("RGB", (TILE, TILE), (k, k, k)) for k in range(len(grid.tiles()))]
    assert [(t.x, t.y) for t in grid.tiles()] == [(0, 0), (32, 0), (0, 16), (32, 16)]
    assert [t.image.getpixel((0, 0))[0] for t in grid.with_images(grey).tiles()] == [0, 1, 2, 3]


def test_a_tile_resample_unit_takes_each_tile_as_its_image(tmp_path):
    from dataclasses import dataclass

    import torch

    from helpers.diffusion.tools.control import images
    from helpers.diffusion.tools.control.run import RunControl
    from helpers.diffusion.tools.sd_upscale import tile_control

    @dataclass(frozen=True)
    class Unit:
        image: object

    canny = Unit("the canny map")
    control = RunControl((Unit(None), canny), (None, None), ("tile_resample", "canny"),
                         "Crop and Resize")
    tile = noise_image(TILE, TILE, seed=9)
    made = tile_control(settings(tmp_path), control, tile)
    assert torch.equal(made.units[0].image, images.to_control(images.from_pil(tile)))
    assert made.units[1] is canny and tile_control(settings(tmp_path), None, tile) is None


# --- runs on the tiny SD -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def upscaled(session_cache, tiny_models, tmp_path_factory):
    """An SD upscale run of two pictures, the loaded model kept for more runs."""
    from helpers.diffusion.checks import check_inputs
    from helpers.diffusion.loading import load_models
    from helpers.diffusion.runner import generate

    folder = tmp_path_factory.mktemp("sd-upscale")
    noise_image(*INIT, seed=3).save(folder / "init.png")
    first = settings(folder, batch_count=2)
    loaded = load_models(check_inputs(first, session_cache, _quiet), session_cache, _quiet,
                         False)
    run_dir = generate(first, cache=session_cache, log=_quiet, progress=False, loaded=loaded)
    return folder, loaded, run_dir


def _quiet(_message: str) -> None:
    pass


def _generate(upscaled, settings_: DiffusionSettings, session_cache) -> Path:
    from helpers.diffusion.runner import generate

    return generate(settings_, cache=session_cache, log=_quiet, progress=False,
                    loaded=upscaled[1])


def test_the_picture_is_the_init_image_enlarged(upscaled):
    _, _, run_dir = upscaled
    frames = runs.list_frames(run_dir)
    assert len(frames) == 2
    assert all(Image.open(f).size == upscaled_size(INIT, 2) == (96, 80) for f in frames)
    assert upscaled_size((100, 75), 1.5) == (150, 112)  # rounded as upscale_by rounds


def test_each_tile_is_the_plain_img2img_of_its_crop_with_the_seed_plus_its_number(
        upscaled, session_cache):
    from helpers.diffusion.tools.upscale import upscale_by
    from helpers.diffusion.tools.upscalers import load_upscaler

    folder, _, run_dir = upscaled
    made = pixels(Image.open(runs.list_frames(run_dir)[0]))
    enlarged = upscale_by(load_upscaler("Lanczos"), Image.open(folder / "init.png"), 2)
    grid = split_tiles(enlarged, TILE, TILE, OVERLAP)
    # the pixels no blend touches: from past the overlap with the tile before to the next tile
    spans = {0: slice(0, 32), 32: slice(32 + OVERLAP, 96)}
    rows = {0: slice(0, 16), 16: slice(16 + OVERLAP, 80)}
    for k, tile in enumerate(grid.tiles()):
        crop = folder / f"tile{k}.png"
        tile.image.save(crop)
        plain = settings(folder, init_image=str(crop), sd_upscale=1.0, seed=5 + k)
        alone = pixels(Image.open(runs.list_frames(_generate(upscaled, plain,
                                                             session_cache))[0]))
        ys, xs = rows[tile.y], spans[tile.x]
        inside = alone[ys.start - tile.y:ys.stop - tile.y, xs.start - tile.x:xs.stop - tile.x]
        assert np.abs(made[ys, xs] - inside).max() <= 1, k
    other_seed = settings(folder, init_image=str(folder / "tile1.png"), sd_upscale=1.0, seed=5)
    alone = pixels(Image.open(runs.list_frames(_generate(upscaled, other_seed,
                                                         session_cache))[0]))
    assert np.abs(made[0:16, 48:96] - alone[0:16, 16:64]).max() > 8  # the seed matters


def test_the_infotext_is_the_web_uis_and_reads_back_to_the_settings(upscaled, tmp_path):
    from helpers.diffusion.image_info import settings_from_image

    _, _, run_dir = upscaled
    frame = runs.list_frames(run_dir)[1]
    text = Image.open(frame).info["parameters"]
    info = parse_infotext(text)
    assert info["Size"] == f"{TILE}x{TILE}" and info["SD upscale overlap"] == str(OVERLAP)
    assert info["SD upscale upscaler"] == "Lanczos" and info["SD upscale factor"] == "2"
    assert info["Seed"] == "6" and info["Denoising strength"] == "0.75"
    only_text = tmp_path / "web-ui.png"  # no settings of ours: the infotext alone
    chunk = PngInfo()
    chunk.add_text("parameters", text)
    Image.open(frame).save(only_text, pnginfo=chunk)
    read = settings_from_image(only_text, log=_quiet, init_image="x.png")
    ours = settings_from_image(frame, log=_quiet, init_image="x.png")
    for name in ("sd_upscale", "sd_upscale_overlap", "sd_upscale_upscaler", "width", "height",
                 "strength", "seed", "steps"):
        assert getattr(read, name) == getattr(ours, name), name
    assert (read.sd_upscale, read.sd_upscale_overlap, read.seed) == (2.0, OVERLAP, 6)


def test_an_infotext_without_the_factor_asks_for_it(tmp_path):
    from helpers.diffusion.image_info import settings_from_image

    chunk = PngInfo()
    chunk.add_text("parameters", "a\nSteps: 3, Sampler: Euler, Seed: 1, Size: 128x128, "
                   "Denoising strength: 0.3, SD upscale overlap: 64, SD upscale upscaler: "
                   "R-ESRGAN 4x+")
    path = tmp_path / "p.png"
    Image.new("RGB", (256, 256)).save(path, pnginfo=chunk)
    with pytest.raises(ValueError, match=r"^from_image: the image was SD upscaled.*"
                                         r"give --sd-upscale$"):
        settings_from_image(path, log=_quiet)
    read = settings_from_image(path, log=_quiet, sd_upscale=2.0, init_image="x.png")
    assert (read.sd_upscale_upscaler, read.sd_upscale_overlap) == ("R-ESRGAN 4x+", 64)


def test_a_stopped_run_continues_with_the_same_pictures(upscaled, session_cache):
    from helpers.diffusion.runner import generate

    _, _, run_dir = upscaled
    second = runs.list_frames(run_dir)[1]
    before = pixels(Image.open(second))
    second.unlink()  # as if the run had been stopped while making it
    generate(resume=run_dir, cache=session_cache, log=_quiet, progress=False,
             loaded=upscaled[1])
    assert np.array_equal(pixels(Image.open(second)), before)


# --- memory ------------------------------------------------------------------------------------


def test_a_512_picture_upscaled_to_2048_in_512_tiles_is_planned_to_fit_16_gb(tmp_path):
    from helpers.diffusion.checks import estimate_bytes, plan_memory

    upscale = settings(tmp_path, width=512, height=512, sd_upscale=4.0, sd_upscale_overlap=64)
    plain = settings(tmp_path, width=512, height=512, sd_upscale=1.0)
    family = FAMILIES["sd"]
    chosen = plan_memory(upscale, family, "cuda", 16 * GB)  # one tile, not the whole picture
    assert chosen == plan_memory(plain, family, "cuda", 16 * GB)
    assert estimate_bytes(family, 512, 512, 1, 2, chosen) < 16 * GB
    size = upscaled_size((512, 512), 4.0)
    assert size == (2048, 2048) and len(split_tiles(Image.new("RGB", size), 512, 512,
                                                    64).tiles()) == 25
    check_result(upscale, size, 16 * GB)  # the joined picture fits the RAM
    assert result_bytes(size) < 0.2 * GB
    with pytest.raises(ValueError, match=r"^sd_upscale: 4 enlarges the init image to 2048x2048,"
                                         r" which needs about 0.1 GB of memory to join"):
        check_result(upscale, size, 0.1 * GB)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "message"), [
    ({"init_image": ""}, "sd_upscale: SD upscale enlarges the init image: give init_image too"),
    ({"sd_upscale_overlap": 64}, "sd_upscale_overlap: the tiles are the size, 64x64: they "
                                 "overlap by less than 64 pixels"),
    ({"outpaint": "16"}, "outpaint: not with sd_upscale"),
    ({"mask": "m.png"}, "mask: not with sd_upscale"),
    ({"mask_prompt": "the sky"}, "mask_prompt: not with sd_upscale"),
    ({"animate": "2d", "frames": 2}, "animate: not with sd_upscale"),
    ({"hires_scale": 2.0}, "hires_scale: not with sd_upscale"),
    ({"sd_upscale_upscaler": " "}, "sd_upscale_upscaler: must not be empty")])
def test_each_bad_combination_is_a_value_error_naming_the_field(tmp_path, changes, message):
    with pytest.raises(ValueError) as caught:
        settings(tmp_path, **changes)
    assert str(caught.value).startswith(message)
    assert settings(tmp_path, sd_upscale=1.0, **{k: v for k, v in changes.items()
                                                 if k in ("init_image", "sd_upscale_overlap")})


def test_each_bad_sd_upscale_is_one_error_line_and_writes_nothing(tiny_models, tmp_path,
                                                                  capsys):
    init = tmp_path / "init.png"
    noise_image(*INIT).save(init)
    cases = [
        (["--sd-upscale", "2"], "error: sd_upscale: SD upscale enlarges the init image: give "
                                "init_image too"),
        (["--init-image", str(init), "--sd-upscale", "2", "--sd-upscale-overlap", "64"],
         "error: sd_upscale_overlap: the tiles are the size, 64x64"),
        (["--init-image", str(init), "--sd-upscale", "2", "--outpaint", "16"],
         "error: outpaint: not with sd_upscale"),
        (["--init-image", str(init), "--sd-upscale", "2", "--sd-upscale-upscaler", "Foo"],
         "error: sd_upscale_upscaler: 'Foo' is not one of Lanczos, Nearest"),
        (["--init-image", str(init), "--sd-upscale", "2", "--sd-upscale-upscaler",
          str(tmp_path / "missing.pth")], "error: sd_upscale_upscaler: file not found"),
        (["--init-image", str(init), "--sd-upscale", "1.2"],
         "error: sd_upscale: 1.2 enlarges the init image to 58x48, smaller than a tile"),
        (["--init-image", str(init), "--sd-upscale", "5"],
         "error: sd_upscale: must be between 1 and 4"),
    ]
    for flags, message in cases:
        out = tmp_path / "ws"
        assert main(["diffusion", "--model", "test-tiny-sd", "--prompt", "a", "--size", "64",
                     "64", "--steps", "2", "--device", "cpu", "--out", str(out), "--quiet",
                     "--sd-upscale-overlap", "16", *flags]) == 2, flags  # the last flag wins
        assert not out.exists()
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith(message), (flags, lines[-1])
