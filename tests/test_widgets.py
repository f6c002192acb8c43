"""Notebook forms generated from the settings metadata (helpers.widgets), on ipywidgets 7 and 8.

Pure Python widget objects, no browser: values are set as the front end would set them, and
callbacks fire as they do in a kernel. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
from datetime import datetime, timezone
from io import BytesIO
from pathlib import Path
from typing import ClassVar

import ipywidgets as w
import pytest
from common import png_bytes

from helpers import runs
from helpers.metadata.infotext import format_infotext
from helpers.settings import (
    MAX_SEED,
    DiffusionSettings,
    VideoSettings,
    VQGANClipSettings,
    setting,
    settings_from_json,
)
from helpers.widgets import RunPicture, SettingsForm, prompt_preview, read_upload, schedule_check
from helpers.widgets.compat import tooltip_of
from helpers.widgets.controls import MAX_ROWS, MIN_ROWS, ROW_CHARS, text_rows
from helpers.widgets.preview import BAR_PX, prompt_schedule_preview

CLASSES = (VQGANClipSettings, DiffusionSettings, VideoSettings)
RED = "color:#c62828"
BAR = re.compile(r'class="df-bar( df-neg)?" style="[^"]*width:(\d+)px')


def descendants(widget: w.Widget):
    """The widget and every widget inside it."""
    yield widget
    for child in getattr(widget, "children", ()):
        yield from descendants(child)


def accordion_of(form: SettingsForm) -> w.Accordion:
    (accordion,) = [x for x in descendants(form.widget) if isinstance(x, w.Accordion)]
    return accordion


def defaults(cls: type) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def upload(widget: w.FileUpload, name: str, data: bytes, size: int | None = None) -> None:
    """What the browser does to a FileUpload: ipywidgets 7 fills a dict, 8 a tuple of dicts."""
    size = len(data) if size is None else size
    if isinstance(widget.value, dict):  # ipywidgets 7 (value is read-only there)
        meta = {"name": name, "type": "image/png", "size": size, "lastModified": 0}
        widget.set_trait("value", {name: {"metadata": meta, "content": data}})
    else:
        widget.value = ({"name": name, "type": "image/png", "size": size,
                         "content": memoryview(data),
                         "last_modified": datetime.now(timezone.utc)},)


def text(shown: str | w.HTML) -> str:
    """What an HTML value reads as: tags dropped, entities decoded."""
    import html

    return html.unescape(re.sub("<[^>]+>", "", getattr(shown, "value", shown)))


def bars(html: str) -> list[tuple[bool, int]]:
    """(negative, width in px) of each bar of a preview."""
    return [(bool(neg), int(px)) for neg, px in BAR.findall(html)]


# --- the form is generated from the metadata ----------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.kind)
def test_every_field_has_a_widget_basic_shown_advanced_folded(cls) -> None:
    form = SettingsForm(cls)
    tree = {id(x) for x in descendants(form.widget)}
    accordion = accordion_of(form)
    folded = {id(x) for x in descendants(accordion)}
    assert accordion.selected_index is None
    assert accordion.get_title(0) == "Advanced"
    for f in dataclasses.fields(cls):
        widget = form.field(f.name)
        assert id(widget) in tree, f.name
        advanced = f.metadata["setting"].advanced
        assert (id(widget) in folded) == advanced, f.name


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.kind)
def test_untouched_form_gives_the_class_defaults(cls) -> None:
    form = SettingsForm(cls)
    assert form.values() == defaults(cls)
    if cls is VideoSettings:
        assert form.settings() == VideoSettings()
    else:
        form.field("prompt").value = "a lighthouse"
        assert form.settings() == cls(prompt="a lighthouse")
    assert form.message.value == ""


def headings(sections: tuple[w.Widget, ...]) -> list[str]:
    return [re.sub("<[^>]+>", "", box.children[0].value) for box in sections]


def test_sections_follow_the_group_order() -> None:
    form = SettingsForm(DiffusionSettings)
    *basic, accordion, _, message = form.widget.children
    assert message is form.message
    assert headings(basic) == ["Prompt", "Image", "Control", "Model", "Sampling", "Hires",
                               "Postprocess", "Run", "Animation"]
    assert headings(accordion.children[0].children) == [
        "Prompt", "Image", "Control", "Model", "Sampling", "Postprocess", "Run", "Animation",
        "Output", "Device"]
    video = SettingsForm(VideoSettings)
    assert headings(video.widget.children[:-3]) == ["Timing", "Encoding", "Output"]


def test_widgets_follow_the_metadata() -> None:
    form = SettingsForm(DiffusionSettings)
    kinds = {"prompt": w.Textarea, "negative_prompt": w.Textarea, "prompt_schedule": w.Textarea,
             "sampler": w.Dropdown,
             "save_trajectory": w.Checkbox, "steps": w.BoundedIntText, "width": w.IntText,
             "cfg_scale": w.BoundedFloatText, "seed": w.IntText, "sdxl_original_size": w.Text,
             "init_image": w.Text}
    for name, kind in kinds.items():
        assert type(form.field(name)) is kind, name
    assert type(SettingsForm(VQGANClipSettings).field("augments")) is w.SelectMultiple
    assert type(SettingsForm(VQGANClipSettings).field("prompt")) is w.Textarea
    assert form.field("width").description == "width (px)"
    assert tooltip_of(form.field("steps")).startswith("denoising steps; img2img runs")
    assert "between 1 and 1000 steps" in form.controls["steps"].help.value
    assert form.field("animate").options[0] == ("(none)", "")


def test_widgets_carry_css_classes_for_browser_tests() -> None:
    form = SettingsForm(DiffusionSettings)
    assert "dreamframe-cfg-scale" in form.field("cfg_scale")._dom_classes
    assert "dreamframe-prompt" in form.field("prompt")._dom_classes
    assert "dreamframe-negative-prompt" in form.field("negative_prompt")._dom_classes
    assert "dreamframe-preview" in form.controls["prompt"].live._dom_classes
    negative = form.controls["negative_prompt"].live
    assert "dreamframe-negative-prompt-preview" in negative._dom_classes
    assert "dreamframe-message" in form.message._dom_classes
    assert "dreamframe-advanced" in accordion_of(form)._dom_classes


@pytest.mark.parametrize("name", ["prompt", "negative_prompt"])
def test_prompt_boxes_grow_with_their_lines_and_length(name) -> None:
    form = SettingsForm(DiffusionSettings)
    box = form.field(name)
    assert box.rows == MIN_ROWS["long"]  # empty: a small box, yet taller than one line
    pasted = "a castle on a hill, (masterpiece:1.2),\nBREAK\nfog, dusk, oil painting"
    box.value = pasted  # three lines pasted from the web UI
    assert box.rows == 3
    box.value = "word " * 60  # 300 characters on one line wrap over five rows
    assert box.rows == math.ceil(300 / ROW_CHARS) == 5
    box.value = "\n".join(["line"] * 40)
    assert box.rows == MAX_ROWS  # then it scrolls
    box.value = "short"
    assert box.rows == MIN_ROWS["long"]
    assert form.values()[name] == "short"


def test_a_long_prompt_from_the_workspace_opens_in_a_box_that_fits_it() -> None:
    prompt = "a lighthouse in a storm:1 |\noil painting:0.5 |\nmoody, dramatic light:0.3"
    form = SettingsForm(VQGANClipSettings, {"prompt": prompt})
    assert form.field("prompt").rows == 3
    assert form.settings().prompt == prompt  # the line breaks are kept, and parse


def test_text_rows_counts_lines_and_wraps_long_ones() -> None:
    assert text_rows("") == 1
    assert text_rows("", min_rows=4) == 4
    assert text_rows("a\nb\nc") == 3
    assert text_rows("x" * (ROW_CHARS + 1)) == 2
    assert text_rows("x" * (ROW_CHARS * 3) + "\n\nend") == 5
    assert text_rows("\n" * 100, max_rows=6) == 6


def test_excluded_fields_get_no_widget_and_keep_their_value() -> None:
    form = SettingsForm(DiffusionSettings, {"prompt": "a fox", "model": "sd-2.1", "out": "/ws"},
                        exclude=("out", "model"))
    for name in ("out", "model"):
        with pytest.raises(KeyError, match="excluded"):
            form.field(name)
    form.fill({"model": "other", "out": "/elsewhere", "kind": "diffusion", "steps": 9})
    settings = form.settings()
    assert (settings.model, settings.out, settings.prompt, settings.steps) == (
        "sd-2.1", "/ws", "a fox", 9)
    with pytest.raises(ValueError, match="nope"):
        SettingsForm(DiffusionSettings, exclude=("nope",))


def test_widget_values_give_the_expected_diffusion_settings_and_json(tmp_path) -> None:
    form = SettingsForm(DiffusionSettings)
    form.field("prompt").value = "a castle:2 | fog:-0.5"
    form.field("negative_prompt").value = "blurry"
    form.fill({"sampler": "dpm++ 2m", "schedule": "karras"})  # casefold: canonical names kept
    form.field("steps").value = 30
    form.field("cfg_scale").value = 6.5
    form.field("save_trajectory").value = True
    form.field("seed").value = -1
    form.field("sdxl_original_size").value = "1024 768"
    form.size_preset.value = "768x512"
    form.field("prompt_schedule").value = "0: a\n10: b"
    expected = DiffusionSettings(
        prompt="a castle:2 | fog:-0.5", negative_prompt="blurry", sampler="DPM++ 2M",
        schedule="Karras", steps=30, cfg_scale=6.5, save_trajectory=True, seed=None,
        sdxl_original_size=(1024, 768), width=768, height=512, prompt_schedule="0: a\n10: b")
    assert form.settings() == expected
    assert form.save(tmp_path / "params.json")
    assert json.loads((tmp_path / "params.json").read_text()) == json.loads(expected.to_json())


def test_widget_values_give_the_expected_vqgan_settings() -> None:
    form = SettingsForm(VQGANClipSettings)
    form.field("prompt").value = "desert:50 | snow:25"
    form.field("augments").value = ("jitter", "noise")
    form.fill({"optimizer": "adamw"})
    form.field("lr").value = 0.05
    form.field("iterations").value = 120
    form.field("seed").value = 42
    settings = form.settings()
    assert (settings.augments, settings.optimizer, settings.lr, settings.iterations,
            settings.seed) == (("jitter", "noise"), "AdamW", 0.05, 120, 42)
    form.field("augments").value = ()
    assert form.settings().augments == ()


def test_random_button_puts_a_fresh_seed_in_range() -> None:
    form = SettingsForm(DiffusionSettings, {"prompt": "a"})
    control = form.controls["seed"]
    seeds = set()
    for _ in range(3):
        control.button.click()
        seed = form.field("seed").value
        assert 0 <= seed <= MAX_SEED
        assert form.settings().seed == seed
        seeds.add(seed)
    assert len(seeds) > 1
    form.field("seed").value = -1
    assert form.settings().seed is None


def test_size_preset_sets_both_sides_and_follows_typed_sizes() -> None:
    form = SettingsForm(DiffusionSettings, {"prompt": "a"})
    assert form.size_preset.value == "512x512"
    form.size_preset.value = "1024x576"
    assert (form.field("width").value, form.field("height").value) == (1024, 576)
    form.field("height").value = 600
    assert form.size_preset.value == "custom"
    assert (form.settings().width, form.settings().height) == (1024, 600)
    form.field("height").value = 1024
    assert form.size_preset.value == "1024x1024"
    assert SettingsForm(VideoSettings).size_preset is None


def test_a_field_added_to_a_settings_class_appears_in_the_form() -> None:
    @dataclasses.dataclass(frozen=True)
    class Extended(DiffusionSettings):
        kind: ClassVar[str] = "diffusion"
        eta: float = setting(0.0, "ancestral noise eta, a test-only field", min=0, max=1,
                             group="sampling")
        tile: bool = setting(False, "seamless tiling, another test-only field", advanced=True,
                             group="image")

    form = SettingsForm(Extended, {"prompt": "a"})
    assert type(form.field("eta")) is w.BoundedFloatText
    assert "ancestral noise eta" in tooltip_of(form.field("eta"))
    assert "ancestral noise eta" in form.controls["eta"].help.value
    assert id(form.field("tile")) in {id(x) for x in descendants(accordion_of(form))}
    form.field("eta").value = 0.25
    form.field("tile").value = True
    assert (form.settings().eta, form.settings().tile) == (0.25, True)


def test_fill_ignores_unknown_keys_and_names_values_it_cannot_take() -> None:
    form = SettingsForm(DiffusionSettings, {"prompt": "a"})
    form.fill({"kind": "diffusion", "nonsense": 1, "steps": 12, "sdxl_original_size": [64, 64]})
    assert form.settings().steps == 12
    assert form.settings().sdxl_original_size == (64, 64)
    form.fill({"steps": 5000, "sampler": "no such sampler", "cfg_scale": 3})
    assert RED in form.message.value
    assert "steps: must be between 1 and 1000" in text(form.message)  # not clamped silently
    assert "sampler: 'no such sampler' is not one of" in text(form.message)
    assert (form.field("steps").value, form.field("cfg_scale").value) == (12, 3.0)


# --- validation in the form, writes only when valid -------------------------------------------


def test_invalid_prompt_shows_its_error_and_saves_nothing(tmp_path) -> None:
    form = SettingsForm(VQGANClipSettings)
    form.field("prompt").value = "a || b"
    preview = form.controls["prompt"].live.value
    assert RED in preview and "piece 2 (character 4) is empty" in preview
    assert "prompt: piece 2" in form.message.value and RED in form.message.value
    assert form.save(tmp_path / "params.json") is False
    assert list(tmp_path.iterdir()) == []
    assert "Traceback" not in form.message.value


def test_out_of_range_value_shows_the_settings_message_and_saves_nothing(tmp_path) -> None:
    form = SettingsForm(DiffusionSettings, {"prompt": "a fox"})
    form.field("width").value = 5000
    assert form.check() is False
    assert "width: must be between 8 and 4096 (got 5000)" in form.message.value
    assert form.save(tmp_path / "params.json") is False
    assert list(tmp_path.iterdir()) == []
    form.field("sdxl_original_size").value = "1024 abc"
    with pytest.raises(ValueError, match="sdxl_original_size: give whole numbers"):
        form.values()
    assert form.check() is False and "sdxl_original_size" in form.message.value


def test_valid_form_saves_json_that_reads_back_equal(tmp_path) -> None:
    form = SettingsForm(VQGANClipSettings, {"prompt": "a lighthouse:2 | fog:-1", "seed": 7})
    path = tmp_path / "ws" / "params.json"
    assert form.save(path) is True
    assert settings_from_json(path.read_text()) == form.settings()
    assert "saved to" in form.message.value and RED not in form.message.value
    assert [p.name for p in path.parent.iterdir()] == ["params.json"]  # no temporary left


def test_schedule_fields_are_checked_live() -> None:
    form = SettingsForm(DiffusionSettings, {"prompt": "a"})
    form.field("zoom").value = "0:(1"
    assert RED in form.controls["zoom"].live.value and "zoom:" in form.controls["zoom"].live.value
    form.field("zoom").value = "0:(1.0), 30:(1.05)"
    assert form.controls["zoom"].live.value == ""
    assert form.controls["strength_schedule"].live.value == ""  # empty = the strength
    form.field("prompt_schedule").value = "0: a:2 | b\n30: c"
    shown = form.controls["prompt_schedule"].live.value
    assert "frame 0" in shown and "frame 30" in shown and "share 67%" in shown


# --- previews -------------------------------------------------------------------------------------


def test_prompt_preview_draws_bars_proportional_to_weights() -> None:
    html = prompt_preview("desert:4 | snow:2 | fog:-1")
    assert bars(html) == [(False, BAR_PX), (False, BAR_PX // 2), (True, BAR_PX // 4)]
    assert "push away" in html and "desert" in html and "3 pieces" in html


def test_prompt_preview_shows_stop_values_and_zero_weights() -> None:
    html = prompt_preview("a cat:1:0.5 | dog:0 | bird")
    assert "stop 0.5" in html and "no effect (weight 0)" in html
    assert bars(html) == [(False, BAR_PX), (False, 0), (False, BAR_PX)]


def test_prompt_preview_for_diffusion_gives_shares_and_negative_pieces() -> None:
    html = prompt_preview("a castle:3 | fog:1 | blurry:-2", "diffusion")
    assert "share 75%" in html and "share 25%" in html
    assert "joins the negative prompt" in html
    assert bars(html) == [(False, BAR_PX), (False, 53), (True, 107)]
    negative = prompt_preview("blurry:3 | text", "negative")
    assert "share 75%" in negative and all(neg for neg, _ in bars(negative))


def test_prompt_preview_errors_are_red_and_name_the_piece() -> None:
    html = prompt_preview("a || b")
    assert html.startswith(f'<span style="{RED}">')
    assert "piece 2 (character 4) is empty" in html
    assert "piece 1 'desert:5O' (character 1)" in text(prompt_preview("desert:5O"))
    stop = prompt_preview("a cat:1:0.5", "diffusion")
    assert RED in stop and "stop has no meaning for diffusion" in stop
    assert RED in prompt_preview("a:1 | b:-1", "negative")
    assert "<script>" not in prompt_preview("<script>:2")


def test_prompt_preview_of_empty_text_is_a_hint() -> None:
    for kind in ("vqgan-clip", "diffusion", "negative"):
        html = prompt_preview("  ", kind)
        assert RED not in html and "df-bar" not in html and html
    with pytest.raises(ValueError, match="kind"):
        prompt_preview("a", "nope")


def test_schedule_check_is_empty_or_the_red_error() -> None:
    assert schedule_check("0:(1.0), 30:(1.05)", "zoom") == ""
    assert schedule_check("1 + sin(t)", "angle") == ""
    error = schedule_check("0:(1", "zoom")
    assert error.startswith(f'<span style="{RED}">') and "zoom: missing" in error
    assert "empty schedule" in schedule_check("", "zoom")
    assert schedule_check(" ", "strength_schedule", allow_empty=True) == ""
    assert "line 2" in prompt_schedule_preview("0: a\nb")


# --- loading from runs and images --------------------------------------------------------------


def test_load_from_a_run_folder(tmp_path) -> None:
    saved = VQGANClipSettings(prompt="a harbour at dusk", seed=3, iterations=80,
                              augments=("noise",), out=str(tmp_path))
    run_dir = runs.new_run(tmp_path, saved.prompt, saved.to_json())
    form = SettingsForm(VQGANClipSettings)
    assert form.load(str(run_dir)) is True
    assert form.settings() == saved
    assert "filled from the run" in form.message.value


def test_load_from_a_settings_json_file(tmp_path) -> None:
    path = tmp_path / "params.json"
    path.write_text(VideoSettings(fps=24, format="webm", crf=30).to_json())
    form = SettingsForm(VideoSettings)
    assert form.load(path) is True
    assert form.settings() == VideoSettings(fps=24, format="webm", crf=30)


def _our_png(tmp_path: Path, settings) -> Path:
    from PIL import Image

    run_dir = runs.new_run(tmp_path, settings.prompt, settings.to_json())
    text = format_infotext(settings.prompt, "", {"Steps": 5, "Seed": settings.seed})
    return runs.save_frame(run_dir, 1, Image.new("RGB", (8, 8)), text, settings.to_json())


@pytest.mark.parametrize("cls", [VQGANClipSettings, DiffusionSettings], ids=lambda c: c.kind)
def test_load_from_our_png(tmp_path, cls) -> None:
    saved = cls(prompt="a red fox in snow:2 | trees", seed=99, width=320, height=256,
                out=str(tmp_path))
    form = SettingsForm(cls)
    own_out = cls.__dataclass_fields__["out"].default  # the form's own folder
    assert form.load(str(_our_png(tmp_path, saved))) is True
    assert form.settings() == saved.replace(out=own_out)  # a picture never chooses the folder
    assert RED not in form.message.value
    assert "not taken from the picture" in form.message.value and "out" in form.message.value


def _web_ui_png(tmp_path: Path) -> Path:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", format_infotext(
        "a castle on a hill, (masterpiece:1.2)", "blurry, lowres",
        {"Steps": 28, "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": 6.5,
         "Seed": 1234, "Size": "640x448", "Model hash": "abc123", "Model": "someone-elses"}))
    path = tmp_path / "webui.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def test_load_diffusion_form_from_a_web_ui_png(tmp_path) -> None:
    form = SettingsForm(DiffusionSettings, exclude=("model",))
    assert form.load(_web_ui_png(tmp_path)) is True
    s = form.settings()
    assert (s.prompt, s.negative_prompt, s.steps, s.sampler, s.schedule, s.cfg_scale, s.seed,
            s.width, s.height) == ("a castle on a hill, (masterpiece:1.2)", "blurry, lowres",
                                   28, "DPM++ 2M", "Karras", 6.5, 1234, 640, 448)
    assert (form.field("width").value, form.field("schedule").value) == (640, "Karras")


def test_load_vqgan_form_takes_prompt_seed_size_steps_of_an_infotext(tmp_path) -> None:
    form = SettingsForm(VQGANClipSettings, {"cutn": 16})
    assert form.load(_web_ui_png(tmp_path)) is True
    s = form.settings()
    assert (s.prompt, s.seed, s.width, s.height, s.iterations, s.cutn) == (
        "a castle on a hill, (masterpiece:1.2)", 1234, 640, 448, 28, 16)
    assert "from the infotext" in form.message.value


@pytest.mark.parametrize(("source", "says"), [
    ("nope.png", "not found"), ("", "is not a run folder"), ("run", "holds 'video' settings"),
    ("plain.png", "holds no generation settings"), ("bad.json", "cannot read")])
def test_load_errors_are_shown_and_leave_the_form_unchanged(tmp_path, source, says) -> None:
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    (tmp_path / "bad.json").write_text("{not json")
    run_dir = runs.new_run(tmp_path / "ws", "x", VideoSettings().to_json())
    form = SettingsForm(DiffusionSettings, {"prompt": "keep me", "steps": 11})
    before = form.values()
    assert form.load(str(run_dir if source == "run" else tmp_path / source)) is False
    assert RED in form.message.value and "load:" in form.message.value
    assert says in text(form.message)
    assert form.values() == before


# --- uploads -------------------------------------------------------------------------------------


def test_read_upload_reads_ipywidgets_7_and_8_values() -> None:
    seven = {"a.png": {"metadata": {"name": "a.png", "size": 3}, "content": b"abc"}}
    eight = ({"name": "b.png", "type": "image/png", "size": 2, "content": memoryview(b"xy")},)
    assert read_upload(seven) == [("a.png", b"abc")]
    assert read_upload(eight) == [("b.png", b"xy")]
    assert read_upload(w.FileUpload()) == []


def test_read_upload_refuses_an_empty_colab_upload() -> None:
    big = {"big.png": {"metadata": {"name": "big.png", "size": 2_000_000}, "content": b""}}
    with pytest.raises(ValueError, match=r"big.png arrived empty.*google.colab.files.upload"):
        read_upload(big)
    with pytest.raises(ValueError, match=r"google\.colab\.files\.upload"):
        read_upload(({"name": "c.png", "size": 2_000_000, "content": memoryview(b"")},))


def test_upload_is_saved_and_sets_the_field_and_thumbnail(tmp_path) -> None:
    uploads = tmp_path / "uploads"
    form = SettingsForm(DiffusionSettings, {"prompt": "a"}, uploads=uploads)
    control = form.controls["init_image"]
    upload(control.upload, "my photo.png", png_bytes((40, 30), (200, 30, 60)))
    saved = uploads / "my_photo.png"
    assert saved.read_bytes() == png_bytes((40, 30), (200, 30, 60))
    assert form.field("init_image").value == str(saved)
    (thumb,) = control.thumbnails.children
    assert isinstance(thumb, w.Image) and bytes(thumb.value).startswith(b"\x89PNG")
    assert form.settings().init_image == str(saved)
    assert "saved" in form.message.value


def test_image_prompt_uploads_are_added_as_pieces(tmp_path) -> None:
    form = SettingsForm(VQGANClipSettings, {"image_prompts": "x.png:0.5"}, uploads=tmp_path)
    upload(form.controls["image_prompts"].upload, "b.png", png_bytes((40, 30), (200, 30, 60)))
    assert form.field("image_prompts").value == f"x.png:0.5 | {tmp_path / 'b.png'}"


def test_empty_upload_says_what_to_do_and_saves_nothing(tmp_path) -> None:
    form = SettingsForm(DiffusionSettings, {"prompt": "a"}, uploads=tmp_path / "uploads")
    upload(form.controls["init_image"].upload, "big.png", b"", size=2_000_000)
    assert RED in form.message.value and "google.colab.files.upload()" in form.message.value
    assert not (tmp_path / "uploads").exists()
    assert form.field("init_image").value == ""


def test_upload_without_an_uploads_folder_asks_for_a_path() -> None:
    form = SettingsForm(DiffusionSettings, {"prompt": "a"})
    upload(form.controls["init_image"].upload, "a.png", png_bytes((40, 30), (200, 30, 60)))
    assert "no uploads folder" in form.message.value and form.field("init_image").value == ""


def test_thumbnail_follows_the_path_and_shows_errors_beside_it(tmp_path) -> None:
    image = tmp_path / "init.png"
    image.write_bytes(png_bytes((300, 200), (200, 30, 60)))
    form = SettingsForm(DiffusionSettings, {"prompt": "a", "init_image": str(image)})
    control = form.controls["init_image"]
    (thumb,) = control.thumbnails.children
    from PIL import Image

    assert Image.open(BytesIO(bytes(thumb.value))).size == (96, 64)
    form.field("init_image").value = str(tmp_path / "missing.png")
    assert control.thumbnails.children == () and "not found" in control.note.value
    (tmp_path / "bad.png").write_bytes(b"not an image")
    form.field("init_image").value = str(tmp_path / "bad.png")
    assert "cannot read" in control.note.value and RED in control.note.value
    form.field("init_image").value = "https://example.org/a.png"
    assert "fetched when the run starts" in control.note.value


# --- the picture of a run (notebook 4) ----------------------------------------------------------


def shown(widget: w.Widget) -> bool:
    """Whether the browser shows the widget (its layout is not display: none)."""
    return widget.layout.display != "none"


def test_run_picture_is_hidden_until_the_first_frame() -> None:
    picture = RunPicture()
    assert bytes(picture.image.value) == b"" and not shown(picture.image)  # no broken icon
    assert shown(picture.placeholder) and "first frame" in text(picture.placeholder)
    assert not picture.visible
    assert picture.widget.children == (picture.placeholder, picture.image)


def test_run_picture_shows_each_frame_in_place_of_the_placeholder() -> None:
    from PIL import Image

    picture = RunPicture()
    picture.show(Image.new("RGB", (16, 8), (200, 30, 60)))
    assert shown(picture.image) and not shown(picture.placeholder) and picture.visible
    assert Image.open(BytesIO(bytes(picture.image.value))).size == (16, 8)
    picture.show(Image.new("RGB", (4, 4)))
    assert Image.open(BytesIO(bytes(picture.image.value))).size == (4, 4)
    picture.ended()
    assert picture.visible  # a run that ends keeps its last frame


def test_a_run_that_ends_without_a_frame_leaves_nothing_shown() -> None:
    picture = RunPicture()
    picture.ended()
    assert not shown(picture.image) and not shown(picture.placeholder)
    assert not picture.visible


def test_run_picture_follows_the_diffusion_images() -> None:
    from PIL import Image

    picture = RunPicture()
    (name, callback), = picture.callbacks("diffusion").items()
    assert name == "on_image"
    callback(Path("000001.png"), Image.new("RGB", (8, 8)))
    assert picture.visible and picture.frames == 1


# --- light imports --------------------------------------------------------------------------------


def test_import_helpers_widgets_imports_no_torch() -> None:
    code = ("import sys, helpers.widgets as hw\n"
            "from helpers.settings import SETTINGS_KINDS\n"
            "for cls in SETTINGS_KINDS.values(): hw.SettingsForm(cls).values()\n"
            "hw.prompt_preview('a:1 | b:-1', 'diffusion')\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') "
            "if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
