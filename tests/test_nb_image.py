"""Notebook 3's Image section and ControlNet units, and notebook 2's ControlNets, as widget
objects (no browser): the mode shows the fields it uses and decides the settings, the previews
draw the mask, the grown canvas and the control maps (only once the form is shown), and the
ControlNets chosen in notebook 2 are downloaded and become the units' defaults."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import ipywidgets as w
import numpy as np
import pytest
from PIL import Image

from helpers import notebook
from helpers.settings import DiffusionSettings, VQGANClipSettings
from helpers.widgets import SettingsForm
from helpers.widgets.control_units import controlnet_of, with_chosen
from helpers.widgets.image_section import (
    BORDER_COLOR,
    IMAGE_FIELDS,
    MODE_FIELDS,
    TINT,
    mode_of,
)
from helpers.widgets.models import ModelForm, checked_controlnets, controlnet_options
from helpers.workspace import open_workspace

RED = "color:#c62828"
DEFAULTS = {f.name: f.default for f in dataclasses.fields(DiffusionSettings)}


@pytest.fixture
def pictures(tmp_path) -> dict[str, Path]:
    """An init image (a left-to-right ramp), a mask of its right half, a control image."""
    ramp = np.tile(np.linspace(0, 255, 120, dtype=np.uint8)[None, :, None], (80, 1, 3))
    init = tmp_path / "init.png"
    Image.fromarray(ramp).save(init)
    mask = np.zeros((80, 120), np.uint8)
    mask[:, 60:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    control = np.zeros((64, 64, 3), np.uint8)
    control[16:48, 16:48] = 255  # a white square: canny draws its outline
    Image.fromarray(control).save(tmp_path / "control.png")
    return {"init": init, "mask": tmp_path / "mask.png", "control": tmp_path / "control.png"}


def form_of(values: dict | None = None, **options) -> SettingsForm:
    return SettingsForm(DiffusionSettings, {"prompt": "a", "model": "test-tiny-sd", "width": 64,
                                            "height": 64, **(values or {})},
                        exclude=("out", "model", "vae", "model_config"), **options)


def on_page(form: SettingsForm) -> None:
    """What the front end does when it shows the form: it counts the views."""
    form.image.mode._view_count = 1
    form.units.add._view_count = 1


def shown(form: SettingsForm) -> set[str]:
    return {n for n in IMAGE_FIELDS if form.controls[n].box.layout.display != "none"}


def image_of(widget: w.Image) -> Image.Image:
    return Image.open(io.BytesIO(bytes(widget.value))).convert("RGB")


def text(shown: str | w.HTML) -> str:
    """What an HTML value reads as: tags dropped, entities decoded."""
    import html
    import re

    return html.unescape(re.sub("<[^>]+>", "", getattr(shown, "value", shown)))


# --- the mode -------------------------------------------------------------------------------------


def test_each_mode_shows_the_fields_it_uses_and_no_other(pictures) -> None:
    form = form_of()
    assert form.mode == "txt2img" and shown(form) == set()
    assert form.image.source_row.layout.display == "none"
    form.set_mode("img2img")
    assert shown(form) == {"init_image", "strength"}
    form.set_mode("outpaint")
    assert shown(form) == {"init_image", "strength", "outpaint", "outpaint_fill", "mask_blur"}
    form.set_mode("INPAINT")  # any case
    assert form.mode == "inpaint" and form.image.source_row.layout.display != "none"
    assert shown(form) == {"init_image", "strength", "mask", "mask_blur", "masked_content",
                           "inpaint_area", "invert_mask"}
    form.image.source.value = "words"
    assert shown(form) == {"init_image", "strength", "mask_prompt", "mask_model",
                           "mask_threshold", "mask_dilation", "mask_blur", "masked_content",
                           "inpaint_area", "invert_mask"}
    form.field("inpaint_area").value = "only masked"
    assert "inpaint_padding" in shown(form)
    assert set(MODE_FIELDS["inpaint"]) == shown(form) | {"mask"}
    for name in ("width", "height", "seed", "control"):  # not the mode's: always shown
        assert form.controls[name].box.layout.display != "none"


def test_an_animation_that_takes_strength_shows_it_in_txt2img() -> None:
    form = form_of()
    form.field("animate").value = "2d"
    assert shown(form) == {"strength"}
    form.field("strength").value = 0.4
    form.field("frames").value = 3
    assert form.settings().strength == 0.4


def test_switching_to_txt2img_keeps_the_boxes_but_not_the_settings(pictures) -> None:
    form = form_of({"init_image": str(pictures["init"]), "mask": str(pictures["mask"]),
                    "masked_content": "fill", "mask_blur": 8, "strength": 0.5})
    assert form.mode == "inpaint"
    settings = form.settings()
    assert (settings.mask, settings.masked_content, settings.strength) == (
        str(pictures["mask"]), "fill", 0.5)
    form.set_mode("txt2img")
    settings = form.settings()  # valid: no mask without an init image, and so on
    assert {n: getattr(settings, n) for n in IMAGE_FIELDS} == {n: DEFAULTS[n]
                                                                for n in IMAGE_FIELDS}
    assert form.field("mask").value == str(pictures["mask"])  # kept in its (hidden) box
    form.set_mode("img2img")
    assert (form.settings().init_image, form.settings().mask) == (str(pictures["init"]), "")
    form.set_mode("inpaint")
    assert form.settings().mask == str(pictures["mask"])  # back as it was


def test_outpaint_gets_the_inpaint_options_it_refuses_at_their_defaults(pictures) -> None:
    form = form_of({"init_image": str(pictures["init"]), "mask": str(pictures["mask"]),
                    "masked_content": "fill", "invert_mask": True})
    form.set_mode("outpaint")
    form.field("outpaint").value = "left=32"
    settings = form.settings()
    assert (settings.outpaint, settings.mask, settings.masked_content, settings.invert_mask) == (
        "left=32", "", "original", False)
    assert form.check() and form.message.value == ""


def test_the_mode_follows_what_a_fill_holds_and_a_hidden_input_set_switches_it(pictures,
                                                                                tmp_path) -> None:
    cases = [({}, "txt2img"), ({"init_image": "a.png"}, "img2img"),
             ({"init_image": "a.png", "mask": "m.png"}, "inpaint"),
             ({"init_image": "a.png", "mask_prompt": "the sky"}, "inpaint"),
             ({"init_image": "a.png", "outpaint": "64"}, "outpaint")]
    for values, mode in cases:
        assert mode_of(values) == mode
        assert form_of(values).mode == mode, values
    assert form_of({"mask_prompt": "the sky"}).image.source.value == "words"
    form = form_of({"init_image": "a.png", "outpaint": "64"})
    form.fill(DiffusionSettings(prompt="b").to_dict())  # a txt2img run's settings
    assert form.mode == "txt2img"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "settings.json").write_text(DiffusionSettings(
        prompt="c", init_image=str(pictures["init"]), strength=0.3).to_json())
    assert form.load(tmp_path / "run") and form.mode == "img2img"
    assert form.settings().strength == 0.3
    form.field("outpaint").value = "8"  # hidden in img2img: a program sets it
    assert form.mode == "outpaint"
    form.field("mask_prompt").value = "the sea"
    assert (form.mode, form.image.source.value) == ("inpaint", "words")


def test_the_mode_is_checked_and_only_diffusion_forms_have_one() -> None:
    with pytest.raises(ValueError, match=r"^mode: 'sketch' is not one of 'txt2img'"):
        form_of(mode="sketch")
    assert form_of({"init_image": "a.png"}, mode="txt2img").settings().init_image == ""
    vqgan = SettingsForm(VQGANClipSettings)
    assert vqgan.image is None and vqgan.mode == ""
    with pytest.raises(ValueError, match="mode: the vqgan-clip form has no image modes"):
        vqgan.set_mode("img2img")


def test_a_mode_without_what_it_needs_says_so_and_saves_nothing(tmp_path) -> None:
    ws = open_workspace(tmp_path / "ws", log=lambda _: None)
    form, lines = form_of(mode="img2img"), []
    assert not notebook.save_parameters(ws, form, log=lines.append)
    assert lines == ["error: init_image: img2img starts from a picture: give its path or URL, "
                     "or upload one (or choose txt2img); params.json not saved"]
    assert RED in form.message.value
    form.field("init_image").value = "a.png"
    assert form.check()
    form.set_mode("inpaint")  # said at once
    assert "mask: inpaint repaints what the mask shows white" in text(form.message)
    form.image.source.value = "words"
    assert "mask_prompt: give the words of what to repaint" in text(form.message)
    form.set_mode("outpaint")
    assert "outpaint: give the pixels to add" in text(form.message)
    form.field("outpaint").value = "8"
    assert form.message.value == "" and notebook.save_parameters(ws, form)
    assert json.loads((ws.root / "params.json").read_text())["outpaint"] == "8"


def test_the_mask_box_takes_uploads(tmp_path) -> None:
    from common import png_bytes
    from test_widgets import upload

    form = form_of({"init_image": "a.png"}, uploads=tmp_path)
    form.set_mode("inpaint")
    upload(form.controls["mask"].upload, "mask.png", png_bytes((8, 8), (255, 255, 255)))
    assert form.field("mask").value == str(tmp_path / "mask.png")


# --- previews -------------------------------------------------------------------------------------


def test_no_preview_is_drawn_before_the_form_is_on_a_page(pictures, monkeypatch,
                                                        tmp_path) -> None:
    import helpers.widgets.control_units as units
    import helpers.widgets.image_section as section

    drawn = []
    small = Image.new("RGB", (4, 4))
    for module, name, gives in ((section, "mask_overlay", small),
                                (section, "outpaint_preview", (small, "")),
                                (units, "map_png", b""), (units, "unit_html", "")):
        monkeypatch.setattr(module, name,
                            lambda *a, name=name, gives=gives: drawn.append(name) or gives)
    values = {"init_image": str(pictures["init"]), "mask": str(pictures["mask"]),
              "outpaint": "16", "control": f"canny:{pictures['control']}"}
    for mode in ("inpaint", "outpaint"):  # what a headless notebook 3 does: build, then save
        form = form_of(values, mode=mode)
        assert form.save(tmp_path / "params.json"), form.message.value
        assert drawn == [] and form.units.units.children == ()
    on_page(form)  # the front end shows it
    assert drawn == ["outpaint_preview", "unit_html"]


def test_the_mask_preview_tints_what_is_repainted_red(pictures) -> None:
    form = form_of({"init_image": str(pictures["init"]), "mask": str(pictures["mask"]),
                    "mask_blur": 0})
    assert not form.image.mask_preview.visible
    on_page(form)
    preview = form.image.mask_preview
    assert preview.visible and "red: repainted" in preview.note.value
    tinted = np.asarray(image_of(preview.image)).astype(int)
    ramp = np.asarray(Image.open(pictures["init"]).convert("RGB")).astype(int)
    assert tinted.shape == ramp.shape  # smaller than the preview size: as it is
    assert np.array_equal(tinted[:, :58], ramp[:, :58])  # kept: untouched
    right = tinted[:, 62:] - ramp[:, 62:]  # repainted: redder, less green
    assert (right[..., 0] >= 0).all() and right[..., 0].mean() > 30
    assert (right[..., 1] <= 0).all() and right[..., 1].mean() < -30
    form.field("invert_mask").value = True  # the preview follows, as the run would invert
    inverted = np.asarray(image_of(preview.image)).astype(int)
    assert np.array_equal(inverted[:, 62:], ramp[:, 62:])
    assert not np.array_equal(inverted[:, :58], ramp[:, :58])


def test_the_mask_preview_says_what_is_wrong_and_never_raises(pictures, tmp_path) -> None:
    form = form_of({"init_image": str(pictures["init"]), "mask": str(tmp_path / "nope.png")})
    on_page(form)
    assert "not found" in form.image.mask_preview.note.value
    assert RED in form.image.mask_preview.note.value and not form.image.mask_preview.visible
    form.field("mask").value = "https://example.org/mask.png"
    assert "fetched when the run starts" in form.image.mask_preview.note.value
    form.field("mask").value = str(pictures["mask"])
    form.field("init_image").value = ""
    assert form.image.mask_preview.visible
    assert "no init image yet" in form.image.mask_preview.note.value


def test_the_first_change_after_the_form_is_built_draws_the_previews(pictures) -> None:
    form = form_of({"init_image": str(pictures["init"]), "mask": str(pictures["mask"])})
    assert not form.image.mask_preview.visible
    form.field("mask_blur").value = 2  # a person's change: the form is on a page after all
    assert form.image.mask_preview.visible


def test_the_outpaint_preview_shows_the_grown_canvas_and_its_size(pictures) -> None:
    form = form_of({"init_image": str(pictures["init"]), "outpaint": "left=32,up=12",
                    "outpaint_fill": "stretch", "mask_blur": 0})
    on_page(form)
    preview = form.image.canvas_preview
    note = text(preview.note)
    assert "canvas 96x80: the picture at 64x64, and left 32 px, up 16 px painted" in note
    canvas = np.asarray(image_of(preview.image)).astype(int)
    assert canvas.shape == (160, 192, 3)  # drawn twice as large, its pixels kept
    picture = canvas[32:, 64:]  # below the top border, right of the left one: not tinted
    left, right = picture[:, :3].mean(), picture[:, -3:].mean()
    assert left < 40 < 215 < right  # the ramp, dark to light
    assert np.ptp(picture[:, 60], axis=0).max() == 0  # grey: no tint
    border = canvas[:, :64]  # what gets painted: tinted blue
    assert (border[..., 2] > border[..., 0] + 50).all()
    assert np.allclose(border[-1, 0], np.array(BORDER_COLOR) * TINT, atol=2)  # black stretched
    form.field("outpaint").value = "left=nine"
    assert RED in preview.note.value and "outpaint" in preview.note.value
    assert not preview.visible
    form.field("outpaint").value = ""
    assert "give the pixels to add" in preview.note.value


def test_preview_mask_finds_the_words_with_the_forms_clipseg_settings(pictures, tmp_path,
                                                                      monkeypatch) -> None:
    import helpers.diffusion.tools.mask_words as mask_words

    calls = []

    def found(image, words, threshold, dilation, cache, log, model):
        calls.append((image.size, words, threshold, dilation, cache, model))
        log("mask_prompt: 50% of the image is masked")
        mask = np.zeros((image.height, image.width), np.uint8)
        mask[:, 60:] = 255
        return Image.fromarray(mask)

    monkeypatch.setattr(mask_words, "mask_from_words", found)
    form = form_of({"init_image": str(pictures["init"]), "mask_prompt": "the bright side",
                    "mask_threshold": 0.3, "mask_dilation": 6, "mask_model": "my-clipseg",
                    "mask_blur": 0}, cache=tmp_path / "models")
    on_page(form)
    assert calls == [] and not form.image.words_preview.visible  # only the button runs it
    form.image.words_button.click()
    assert calls == [((120, 80), "the bright side", 0.3, 6, tmp_path / "models", "my-clipseg")]
    preview = form.image.words_preview
    assert preview.visible and "50% of the image is masked" in preview.note.value
    tinted = np.asarray(image_of(preview.image)).astype(int)
    assert tinted[0, 100, 0] > tinted[0, 100, 2] + 50 and tinted[0, 10, 0] == tinted[0, 10, 2]
    form.field("mask_threshold").value = 0.5
    assert not preview.visible and "press Preview mask again" in preview.note.value
    form.field("init_image").value = ""
    form.image.words_button.click()
    assert RED in preview.note.value and "give the init image" in preview.note.value


@pytest.mark.slow
def test_preview_mask_runs_the_tiny_clipseg(pictures, session_cache) -> None:
    form = form_of({"init_image": str(pictures["init"]), "mask_prompt": "the sky",
                    "mask_model": "test-tiny-clipseg", "mask_threshold": 0.0},
                   cache=session_cache)
    on_page(form)
    assert form.image.preview_words(), form.image.words_preview.note.value
    assert "100% of the image is masked" in form.image.words_preview.note.value  # threshold 0


# --- ControlNet units -----------------------------------------------------------------------------


def test_each_unit_says_which_controlnet_it_uses_and_why() -> None:
    from helpers.diffusion.tools.control.units import parse_unit

    canny = parse_unit("canny:a.png")
    assert controlnet_of(canny, "sd-1.5") == ("controlnet-sd15-canny", "the default for canny")
    assert controlnet_of(canny, "sdxl-1.0", ("controlnet-sdxl-union",)) == (
        "controlnet-sdxl-union", "chosen in notebook 2")
    assert controlnet_of(canny, "sd-1.5", ("controlnet-sdxl-union", "controlnet-sd15-canny")) \
        == ("controlnet-sd15-canny", "the default for canny, chosen in notebook 2")
    assert controlnet_of(canny, "test-tiny-sd")[0] == "test-tiny-controlnet"
    assert controlnet_of(parse_unit("canny@mine:a.png"), "sd-1.5", ("controlnet-sd15-canny",)) \
        == ("mine", "named in the line")
    with pytest.raises(ValueError, match="no default ControlNet for the preprocessor none"):
        controlnet_of(parse_unit("none:a.png"), "sd-1.5")


def test_units_without_a_model_get_the_one_chosen_in_notebook_2_in_the_settings() -> None:
    text = "canny:a.png:0.5\n\nlineart_standard:b.png\ncanny@mine:c.png\nbad line"
    union = ("controlnet-sdxl-union",)
    assert with_chosen(text, "sdxl-1.0", union) == (
        "canny@controlnet-sdxl-union:a.png:0.5\n\nlineart_standard@controlnet-sdxl-union:b.png"
        "\ncanny@mine:c.png\nbad line")
    assert with_chosen(text, "sd-1.5", ("controlnet-sd15-canny",)) == text  # the defaults
    form = SettingsForm(DiffusionSettings, {"prompt": "a", "model": "sdxl-1.0",
                                            "control": "canny:a.png"},
                        exclude=("model",), controlnets=union)
    assert form.settings().control == "canny@controlnet-sdxl-union:a.png"
    assert form.field("control").value == "canny:a.png"  # the box keeps what was typed


def test_the_add_row_offers_notebook_2s_controlnets_and_writes_a_line(pictures) -> None:
    form = SettingsForm(DiffusionSettings, {"prompt": "a", "model": "sd-1.5"},
                        exclude=("model",),
                        controlnets=("controlnet-sd15-lineart", "controlnet-sd15-scribble"))
    units = form.units
    assert [value for _label, value in units.net.options] == [
        "", "controlnet-sd15-lineart", "controlnet-sd15-scribble"]
    assert units.net.value == ""  # canny: neither serves it
    units.kind.value = "threshold"
    assert units.net.value == "controlnet-sd15-scribble"
    assert not units.add_unit() and "give the unit's image" in text(units.note)
    units.image.value = str(pictures["control"])
    units.weight.value = 0.8
    assert units.add_unit()
    units.kind.value, units.net.value, units.weight.value = "canny", "", 1
    units.image.value = "https://example.org/c.png"
    assert units.add_unit()
    assert form.field("control").value == (
        f"threshold@controlnet-sd15-scribble:{pictures['control']}:0.8\n"
        "canny:https://example.org/c.png")
    assert form.check()


def test_the_units_preview_lists_them_with_images_errors_and_maps(pictures) -> None:
    form = form_of({"control": f"canny:{pictures['control']}:0.5:0.1:0.9\nnope:x.png"})
    units = form.units
    assert units.units.children == ()  # not on a page yet
    on_page(form)
    good, bad = units.units.children
    line, thumbnail = good.children
    assert "1. canny" in text(line) and "test-tiny-controlnet" in text(line)
    assert "weight 0.5" in text(line) and "steps 10% to 90%" in text(line)
    assert isinstance(thumbnail, w.Image)
    assert RED in bad.value and "2. control: 'nope' is not a preprocessor" in text(bad)
    form.field("control").value = f"canny:{pictures['control']}"
    (good,) = units.units.children
    assert len(good.children) == 2  # no map until asked for
    units.maps_button.click()
    (good,) = units.units.children
    control_map = np.asarray(image_of(good.children[2]))
    assert control_map.shape[:2] == (64, 64)  # the run's size
    assert set(np.unique(control_map)) == {0, 255}  # edges, white on black
    assert control_map[32, 32].max() == 0 and control_map[:, 14:19].max() == 255  # the outline
    form.field("width").value = 128  # the maps follow the size from now on
    (good,) = units.units.children
    assert image_of(good.children[2]).size == (128, 64)


# --- notebook 2's ControlNets ---------------------------------------------------------------------


def test_notebook_2_offers_the_controlnets_of_the_models_family(tmp_path) -> None:
    assert [name for _label, name in controlnet_options("test-tiny-sd")] == [
        "test-tiny-controlnet"]
    sdxl = [name for _label, name in controlnet_options("sdxl-inpainting")]
    assert "controlnet-sdxl-union" in sdxl and "controlnet-sd15-canny" not in sdxl
    assert controlnet_options("ldm-text2im-256") == []
    form = ModelForm({"engine": "diffusion", "model": "sd-1.5",
                      "controlnets": ["controlnet-sd15-canny", "controlnet-sdxl-canny"]},
                     cache=tmp_path)
    assert form.controlnets in form.box.children
    assert form.values()["controlnets"] == ["controlnet-sd15-canny"]  # the SDXL one: no
    assert "sd-1.5-inpainting" in form.fields["model"].options
    assert "inpainting and outpainting" in form.table.value
    assert "controlnet-sd15-canny" in form.table.value and "steers SD models" in form.table.value
    form.fields["model"].value = "sdxl-1.0"
    assert form.values()["controlnets"] == []
    form.engine.value = "vqgan-clip"
    assert form.controlnets not in form.box.children and "controlnets" not in form.values()
    with pytest.raises(ValueError, match=r"^controlnets: 'canny' is not a catalogue ControlNet"):
        checked_controlnets("canny", "sd-1.5")
    with pytest.raises(ValueError, match=r"controlnet-sdxl-canny steers SDXL models, and the "
                       r"model sd-1\.5 takes SD ones"):
        checked_controlnets("controlnet-sd15-canny, controlnet-sdxl-canny", "sd-1.5")


@pytest.fixture
def displayed(monkeypatch) -> list:
    import IPython.display

    shown: list = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.extend(objs))
    return shown


def test_notebook_2_downloads_the_controlnets_and_notebook_3_offers_them(tmp_path,
                                                                         displayed) -> None:
    ws = open_workspace(tmp_path / "ws", log=lambda _: None)
    lines: list[str] = []
    with pytest.raises(notebook.NotebookError, match="controlnets: controlnet-sd15-canny"):
        notebook.model_form(ws, "diffusion", False, controlnets="controlnet-sdxl-union, "
                            "controlnet-sd15-canny", model="sdxl-1.0")
    choice = notebook.model_form(ws, "diffusion", True, model="test-tiny-sd-inpaint",
                                 controlnets="test-tiny-controlnet")
    assert choice.values()["model"] == "test-tiny-sd-inpaint"  # a test model stays
    assert notebook.save_models(ws, choice, log=lines.append)["controlnets"] == [
        "test-tiny-controlnet"]
    assert (ws.models / "test-tiny-controlnet").is_dir()
    assert "controlnets = test-tiny-controlnet" in lines[-1]
    displayed.clear()
    form = notebook.parameters_form(ws, "diffusion", True, mode="inpaint")
    assert form.units.chosen == ("test-tiny-controlnet",) and form.mode == "inpaint"
    assert "ControlNets: test-tiny-controlnet" in displayed[0].data
    assert form.values()["model"] == "test-tiny-sd-inpaint"
    with pytest.raises(notebook.NotebookError, match="mask: not a vqgan-clip setting"):
        notebook.parameters_form(ws, "vqgan-clip", True, mask="m.png")


def test_a_choice_of_another_family_is_shown_plainly_and_saves_nothing(tmp_path,
                                                                       displayed) -> None:
    ws = open_workspace(tmp_path / "ws", log=lambda _: None)
    lines: list[str] = []
    choice = {"engine": "diffusion", "model": "sd-1.5", "controlnets": ["controlnet-sdxl-canny"]}
    assert notebook.save_models(ws, choice, log=lines.append) == {}
    assert lines == ["error: controlnets: controlnet-sdxl-canny steers SDXL models, and the "
                     "model sd-1.5 takes SD ones"]
    assert not (ws.root / "model.json").exists()
    assert json.dumps(choice)  # untouched
