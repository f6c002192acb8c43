"""Outpainting: the borders' syntax, the grown canvas and its mask, the soft seam, the picture's
pixels kept exactly on the tiny SD and the tiny SD inpainting model, the infotext read back,
the memory plan, and each bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import runs
from helpers.cli import main
from helpers.diffusion.families import FAMILIES
from helpers.diffusion.tools.borders import Borders, check_outpaint, parse_outpaint
from helpers.diffusion.tools.outpaint import MASKED_CONTENT, outpaint_canvas, outpainting_of
from helpers.metadata.infotext import parse_infotext
from helpers.settings import DiffusionSettings

SIZE = 64
FILLS = ("fill", "latent noise", "mirror", "stretch")


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def settings(**changes) -> DiffusionSettings:
    values = {"prompt": "a red cube", "init_image": "init.png", "outpaint": "16",
              "width": SIZE, "height": SIZE, "steps": 3, "seed": 5, "sampler": "Euler",
              "device": "cpu", **changes}
    return DiffusionSettings(**values)


# --- the borders ------------------------------------------------------------------------------


def test_one_number_grows_every_side_and_pairs_grow_theirs():
    assert parse_outpaint("64") == Borders(64, 64, 64, 64)
    assert parse_outpaint(" left=128, RIGHT = 8,down=64 ") == Borders(128, 8, 0, 64)
    assert parse_outpaint("") == Borders() and not parse_outpaint("  ")
    assert parse_outpaint("up=0") == Borders() and parse_outpaint("up=1")


@pytest.mark.parametrize("borders", [Borders(8, 8, 8, 8), Borders(128, 0, 16, 64),
                                     Borders(0, 0, 0, 3)])
def test_the_text_of_borders_parses_back_to_them(borders):
    assert parse_outpaint(borders.text()) == borders


def test_borders_round_up_to_the_multiple_and_grow_the_size():
    assert Borders(1, 8, 9, 0).rounded(8) == Borders(8, 8, 16, 0)
    assert Borders(100, 0, 0, 28).grown(512, 256) == (612, 284)


@pytest.mark.parametrize(("text", "message"), [
    ("left=8,middle=8", r"^outpaint: 'middle=8' is not side=pixels; the sides are left, right"),
    ("left=8,left=16", r"^outpaint: left is given twice$"),
    ("left=-8", r"^outpaint: left: '-8' is not a whole number of pixels$"),
    ("8.5", r"^outpaint: every side: '8.5' is not a whole number"),
    ("left 8", r"^outpaint: every side: 'left 8' is not a whole number"),
    ("down=5000", r"^outpaint: down: 5000 pixels is more than 4096$"),
    ("１６", r"^outpaint: every side: '１６' is not a whole number"),
    ("8" * 300, r"^outpaint has 300 characters; at most 200$"),
])
def test_bad_borders_are_errors_naming_outpaint(text, message):
    with pytest.raises(ValueError, match=message):
        parse_outpaint(text)


def test_a_run_that_outpaints_must_grow_a_side():
    with pytest.raises(ValueError, match=r"^outpaint: 'up=0' grows no side"):
        check_outpaint("up=0")


# --- the canvas and its mask ------------------------------------------------------------------


@pytest.mark.parametrize("fill", FILLS)
def test_the_canvas_holds_the_picture_and_the_mask_its_border_and_seam(fill):
    picture = noise_image(40, 24)
    borders = Borders(8, 0, 16, 4)
    canvas, mask = outpaint_canvas(picture, borders, fill, seam=3)
    assert canvas.size == mask.size == (48, 44) and canvas.mode == "RGB" and mask.mode == "L"
    inside = np.asarray(canvas)[16:40, 8:48]
    assert np.array_equal(inside, np.asarray(picture))
    painted = np.asarray(mask) == 255
    assert set(np.unique(mask)) == {0, 255}
    expected = np.ones((44, 48), bool)
    expected[16 + 3:40 - 3, 8 + 3:48] = False  # a seam on the grown sides only (not right)
    assert np.array_equal(painted, expected)


def test_mirror_reflects_and_stretch_draws_the_edges_out():
    picture = noise_image(20, 10, 1)
    borders = Borders(4, 3, 2, 5)
    pads = ((2, 5), (4, 3), (0, 0))
    mirrored, _ = outpaint_canvas(picture, borders, "mirror")
    stretched, _ = outpaint_canvas(picture, borders, "stretch")
    assert np.array_equal(np.asarray(mirrored), np.pad(np.asarray(picture), pads, "symmetric"))
    assert np.array_equal(np.asarray(stretched)[:, 0], np.asarray(stretched)[:, 3])
    assert np.array_equal(np.asarray(stretched)[2:12, 0], np.asarray(picture)[:, 0])


def test_fill_takes_the_colours_around_not_black():
    picture = Image.new("RGB", (16, 16), (200, 40, 90))
    canvas, _ = outpaint_canvas(picture, Borders(16, 16, 16, 16), "fill")
    border = np.asarray(canvas).astype(int)[:8, :8]  # 8-bit alpha rounding: a little noise
    assert np.abs(border - np.array([200, 40, 90])).mean(axis=(0, 1)).max() <= 12


def test_the_seam_is_soft_and_the_border_fully_painted():
    prepared = outpainting_of(settings(outpaint="left=16", mask_blur=4), noise_image(SIZE, SIZE))
    mask = np.asarray(prepared.mask).astype(int)
    assert prepared.image.size == (80, 64) and prepared.mask.size == (80, 64)
    assert (mask[:, :16] >= 250).all()  # the new border: repainted
    seam = mask[32, 16:40]
    assert (np.diff(seam) <= 0).all() and 0 < seam[8] < 255  # fading into the picture
    assert (mask[:, 48:] == 0).all()  # the rest of the picture: kept


@pytest.mark.parametrize("fill", FILLS)
def test_the_fill_chooses_the_masked_content(fill):
    prepared = outpainting_of(settings(outpaint_fill=fill), noise_image(30, 30))
    assert prepared.masked_content == MASKED_CONTENT[fill]
    assert prepared.image.size == (SIZE + 32, SIZE + 32)


# --- runs -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inpaint_model(session_cache) -> Path:
    from helpers.download import fetch

    return fetch("test-tiny-sd-inpaint", cache=session_cache, progress=False)


def run(tmp_path: Path, capsys, name: str, *flags: str) -> Path:
    assert main(["diffusion", "--prompt", "a stormy sky", "--steps", "3", "--seed", "3",
                 "--size", "64", "48", "--device", "cpu", "--sampler", "Euler", "--quiet",
                 "--out", str(tmp_path / name), *flags]) == 0
    return runs.list_frames(capsys.readouterr().out.strip().splitlines()[-1])[0]


@pytest.mark.parametrize(("model", "fill"), [("test-tiny-sd", "mirror"),
                                             ("test-tiny-sd", "latent noise"),
                                             ("test-tiny-sd-inpaint", "fill")])
def test_the_picture_is_kept_exactly_and_the_border_painted(tiny_models, inpaint_model,
                                                            tmp_path, capsys, model, fill):
    init = tmp_path / "init.png"
    noise_image(100, 70, 2).save(init)
    frame = run(tmp_path, capsys, "a", "--model", model, "--init-image", str(init),
                "--outpaint", "left=16,down=8", "--outpaint-fill", fill, "--mask-blur", "2")
    made = np.asarray(Image.open(frame).convert("RGB")).astype(int)
    assert made.shape == (48 + 8, 64 + 16, 3)
    picture = np.asarray(Image.open(init).resize((64, 48), Image.Resampling.LANCZOS))
    reach = 2 * 2 + 6  # the seam (2 x blur) and the blur's reach
    kept = made[:48 - reach, 16 + reach:]
    assert np.abs(kept - picture[:48 - reach, reach:]).max() == 0
    border = made[:, :12]
    start, _ = outpaint_canvas(Image.fromarray(picture.astype(np.uint8)), Borders(16, 0, 0, 8),
                               fill if fill in ("mirror", "stretch") else "fill")
    assert np.abs(border - np.asarray(start).astype(int)[:, :12]).mean() > 3  # painted anew


def test_the_infotext_has_the_borders_and_reads_back_to_the_same_image(tiny_models, tmp_path,
                                                                       capsys):
    init = tmp_path / "init.png"
    noise_image(64, 48, 4).save(init)
    frame = run(tmp_path, capsys, "a", "--model", "test-tiny-sd", "--init-image", str(init),
                "--outpaint", "left=12,up=3", "--outpaint-fill", "stretch")
    text, stored = runs.read_image_info(frame)
    info = parse_infotext(text)
    assert info["Size"] == "80x56" and Image.open(frame).size == (80, 56)
    assert (info["Outpaint"], info["Outpaint fill"], info["Mask blur"]) == (
        "left=16,right=0,up=8,down=0", "stretch", "4")
    assert stored["outpaint"] == "left=16,right=0,up=8,down=0"  # rounded up, stored so
    assert (stored["width"], stored["height"]) == (64, 48)
    from PIL.PngImagePlugin import PngInfo

    only_text = tmp_path / "infotext.png"
    chunk = PngInfo()
    chunk.add_text("parameters", text)
    Image.open(frame).save(only_text, pnginfo=chunk)
    again = run(tmp_path, capsys, "b", "--from-image", str(only_text), "--init-image",
                str(init), "--model", "test-tiny-sd")
    assert np.array_equal(np.asarray(Image.open(frame)), np.asarray(Image.open(again)))


def test_an_outpaint_larger_than_the_size_in_an_infotext_is_an_error(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    from helpers.diffusion.image_info import settings_from_image

    chunk = PngInfo()
    chunk.add_text("parameters", "a\nSteps: 3, Sampler: Euler, Seed: 1, Size: 64x64, "
                   "Outpaint: 64")
    path = tmp_path / "p.png"
    Image.new("RGB", (64, 64)).save(path, pnginfo=chunk)
    with pytest.raises(ValueError, match=r"^from_image: Outpaint 64 is larger than Size 64x64"):
        settings_from_image(path, log=lambda _: None)


def test_the_memory_plan_counts_the_canvas_and_names_outpaint():
    from helpers.diffusion.checks import estimate_bytes, plan_memory
    from helpers.memory import HEADROOM

    off = {"vae_tiling": "off", "vae_slicing": "off", "attention_slicing": "off"}
    between = (estimate_bytes(FAMILIES["sd"], SIZE, SIZE, 1, 4, {}, inpaint=True)
               + estimate_bytes(FAMILIES["sd"], 96, 96, 1, 4, {}, inpaint=True)) / 2
    assert plan_memory(settings(outpaint="", init_image="", mask_blur=0, **off),
                       FAMILIES["sd"], "cpu", between / HEADROOM, 4)
    with pytest.raises(ValueError, match=r"^outpaint: 16 grows the canvas to 96x96 with batch "
                                         r"size 1 needs"):
        plan_memory(settings(**off), FAMILIES["sd"], "cpu", between / HEADROOM, 4)


# --- bad input --------------------------------------------------------------------------------


def test_each_bad_outpaint_is_one_error_line_and_writes_nothing(tiny_models, tmp_path, capsys):
    init = tmp_path / "init.png"
    noise_image(64, 64).save(init)
    mask = tmp_path / "mask.png"
    Image.new("L", (64, 64), 255).save(mask)
    cases = [
        (["--outpaint", "16"], "error: outpaint: outpainting grows an image: give init_image"),
        (["--init-image", str(init), "--outpaint", "16", "--mask", str(mask)],
         "error: mask: outpaint paints the new border, its own mask"),
        (["--init-image", str(init), "--outpaint", "16", "--masked-content", "fill"],
         "error: masked_content: not with outpaint: outpaint_fill says"),
        (["--init-image", str(init), "--outpaint", "16", "--invert-mask"],
         "error: invert_mask: not with outpaint"),
        (["--init-image", str(init), "--outpaint", "16", "--inpaint-area", "only masked"],
         "error: inpaint_area: not with outpaint"),
        (["--init-image", str(init), "--outpaint", "16", "--sampler", "DDIM"],
         "error: sampler: outpainting runs on the web UI's k-diffusion samplers"),
        (["--init-image", str(init), "--outpaint", "left=4040"],
         "error: outpaint: the canvas would be 4104x64; at most 4096"),
        (["--init-image", str(init), "--outpaint", "sideways=8"],
         "error: outpaint: 'sideways=8' is not side=pixels"),
        (["--init-image", str(init), "--outpaint", "0"], "error: outpaint: '0' grows no side"),
        (["--init-image", str(init), "--outpaint", "8", "--outpaint-fill", "blur"],
         "error: outpaint_fill: 'blur' is not one of"),
        (["--init-image", str(init), "--outpaint", "8", "--animate", "2d", "--frames", "2"],
         "error: outpaint: animations do not outpaint frames"),
    ]
    for flags, message in cases:
        out = tmp_path / "ws"
        assert main(["diffusion", "--model", "test-tiny-sd", "--prompt", "a", "--size", "64",
                     "64", "--steps", "2", "--device", "cpu", "--out", str(out), "--quiet",
                     *flags]) == 2, flags
        assert not out.exists()
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith(message), flags


def test_an_inpaint_controlnet_unit_sees_the_grown_canvas_and_its_border(tiny_models, tmp_path,
                                                                         capsys):
    init = tmp_path / "init.png"
    noise_image(64, 48, 6).save(init)
    frame = run(tmp_path, capsys, "a", "--model", "test-tiny-sd", "--init-image", str(init),
                "--outpaint", "left=16", "--control", f"inpaint:{init}")
    hint = np.asarray(Image.open(frame.parent.parent / "control" / "0.png").convert("RGB"))
    assert hint.shape == (48, 80, 3)
    assert (hint[:, :16] == 0).all()  # the border: masked (-1, saved black)
    picture = np.asarray(Image.open(init).resize((64, 48), Image.Resampling.LANCZOS))
    assert np.abs(hint[:, 40:].astype(int) - picture[:, 24:]).max() <= 1  # the picture, placed
