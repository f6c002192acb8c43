"""Notebook 3's Image section in a real browser, in each front end (JupyterLab 4 with ipywidgets
8; the classic Notebook 6 with ipywidgets 7.7.1, as on Colab): the mode buttons show and hide
the fields, an init image typed in shows its thumbnail, a mask its red overlay, an outpaint
border the grown canvas, and Save keeps what the mode uses."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["browser"]

ROOT = Path(__file__).resolve().parent.parent
INIT = ROOT / "assets" / "init.png"
MASK = ROOT / "assets" / "mask.png"


@pytest.mark.browser
def test_the_image_mode_shows_its_fields_and_previews_its_pictures(jupyter, tiny_models,
                                                                   tmp_path):
    from playwright.sync_api import expect

    workspace = tmp_path / "ws"
    parameters = {"workspace": str(workspace), "test_models": True, "engine": "diffusion",
                  "init_image": str(INIT), "mask": str(MASK)}
    with jupyter.notebook("notebooks/3_parameters.ipynb", parameters=parameters) as nb:
        nb.run_all()

        def mode(name: str) -> None:
            nb.locator(".dreamframe-image-mode .widget-toggle-button").filter(
                has_text=name).click()

        def field(name: str):
            return nb.widget("field", cls=f"dreamframe-{name.replace('_', '-')}")

        def loaded(image) -> int:
            return image.evaluate("(e) => e.complete && e.naturalWidth")

        init, mask, outpaint = field("init_image"), field("mask"), field("outpaint")
        # The parameters made an inpaint form; its overlay is drawn once the page shows it,
        # before anyone touches anything (the kernel hears of the view).
        active = nb.locator(".dreamframe-image-mode .widget-toggle-button.mod-active")
        expect(active).to_have_text("inpaint")
        overlay = nb.locator(".dreamframe-mask-preview-image")
        expect(overlay).to_be_visible()
        assert loaded(overlay) == 256
        expect(nb.locator(".dreamframe-mask-preview-note")).to_contain_text("red: repainted")
        expect(field("masked_content")).to_be_visible()
        expect(outpaint).to_be_hidden()
        nb.snap("inpaint as opened", overlay)

        mode("txt2img")
        for hidden in (init, mask, outpaint, field("strength")):
            expect(hidden).to_be_hidden()
        expect(field("width")).to_be_visible()
        nb.snap("txt2img")

        mode("img2img")
        expect(init).to_be_visible()
        expect(field("strength")).to_be_visible()
        expect(mask).to_be_hidden()
        thumbnail = nb.locator(".dreamframe-init-image-thumbnails img")
        nb.fill(init, "")
        expect(thumbnail).to_have_count(0)
        nb.fill(init, str(INIT))  # typed in: its thumbnail follows
        expect(thumbnail).to_be_visible()
        assert loaded(thumbnail) == 96
        nb.snap("img2img with its thumbnail", thumbnail)

        mode("inpaint")
        expect(mask).to_be_visible()
        nb.fill(mask, "")
        expect(overlay).to_be_hidden()  # nothing to show: no broken image either
        nb.fill(mask, str(MASK))
        expect(overlay).to_be_visible()
        nb.locator(".dreamframe-mask-source .widget-toggle-button").filter(
            has_text="words").click()
        expect(field("mask_prompt")).to_be_visible()
        expect(mask).to_be_hidden()
        expect(nb.widget("button", cls="dreamframe-preview-mask")).to_be_visible()
        nb.snap("inpaint with words")

        mode("outpaint")
        expect(outpaint).to_be_visible()
        expect(field("masked_content")).to_be_hidden()
        expect(field("mask_prompt")).to_be_hidden()
        nb.fill(outpaint, "16")
        canvas = nb.locator(".dreamframe-outpaint-preview-image")
        expect(canvas).to_be_visible()
        expect(nb.locator(".dreamframe-outpaint-preview-note")).to_contain_text(
            "canvas 96x96: the picture at 64x64, and 16 px on every side painted")
        nb.snap("outpaint canvas", canvas)

        nb.widget("button", cls="dreamframe-save").click()
        params = workspace / "params.json"
        saved = jupyter.wait_for_json(params, until=lambda data: data["outpaint"] == "16")
        assert nb.console_errors() == []
    assert (saved["init_image"], saved["mask"], saved["mask_prompt"]) == (str(INIT), "", "")
