"""Real-browser smoke test of the browser-test tools (tests/browser.py): a small notebook with
ipywidgets, run in JupyterLab through Chromium, typed into and clicked as a person would."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

pytest_plugins = ["browser"]

WIDGETS_CELL = '''\
import html, json, sys
from pathlib import Path

import ipywidgets as w
from IPython.display import display

import helpers  # the repository's package: the kernel is this venv's Python

area = w.Textarea(description="Prompt", placeholder="a prompt")
area.add_class("smoke-prompt")
preview = w.HTML()
preview.add_class("smoke-preview")
button = w.Button(description="Save")

def show(change):
    preview.value = f'<span style="color:red">{html.escape(change["new"].upper())}</span>'

def save(_):
    Path("clicked.json").write_text(json.dumps({"value": area.value, "prefix": sys.prefix}))

area.observe(show, names="value")
button.on_click(save)
display(w.VBox([area, preview, button]))
'''


def write_notebook(path: Path, *cells: str) -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in cells],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}})
    nbformat.write(notebook, path)


@pytest.mark.browser
def test_a_widget_notebook_runs_reacts_to_typing_and_clicks_and_saves(lab):
    from playwright.sync_api import expect

    write_notebook(lab.folder / "smoke.ipynb", WIDGETS_CELL, "print('second cell ran')")
    with lab.notebook("smoke.ipynb") as nb:
        nb.snap("opened")
        nb.run_all()
        expect(nb.locator(".jp-OutputArea-output").last).to_contain_text("second cell ran")
        area = nb.widget("textarea", description="Prompt")
        preview = nb.widget("html", cls="smoke-preview")
        expect(area).to_be_visible()
        nb.snap("ran")

        nb.fill(area, "desert:50 | snow:25")
        expect(preview).to_have_text("DESERT:50 | SNOW:25")
        expect(preview.locator("span")).to_have_css("color", "rgb(255, 0, 0)")
        assert nb.style(preview.locator("span"), "color") == "rgb(255, 0, 0)"
        nb.snap("typed", area)

        nb.fill(area, "a <b>sea</b>", typing=True)  # key by key: one update per key
        expect(preview).to_have_text("A <B>SEA</B>")
        nb.snap("typed-key-by-key", area)

        nb.widget("button", description="Save").click()
        clicked = lab.wait_for_json("clicked.json")
        assert clicked == {"value": "a <b>sea</b>", "prefix": sys.prefix}
        nb.snap("clicked")

        nb.save()
    saved = nbformat.read(lab.folder / "smoke.ipynb", as_version=4)
    assert [cell.execution_count for cell in saved.cells] == [1, 2]
    assert "second cell ran" in json.dumps(saved.cells[1].outputs)
    assert sorted(p.name for p in lab.artifacts.glob("*.png")) == [
        "01-opened.png", "02-ran.png", "03-typed.png", "04-typed-key-by-key.png",
        "05-clicked.png"]


@pytest.mark.browser
def test_run_all_reports_the_failing_cell(lab):
    from playwright.sync_api import expect

    write_notebook(lab.folder / "broken.ipynb", "1 / 0", "print('never')")
    with lab.notebook("broken.ipynb") as nb:
        with pytest.raises(AssertionError, match="ZeroDivisionError: division by zero"):
            nb.run_all()
        assert nb.run_all(check=False) == ["ZeroDivisionError: division by zero"]
        assert nb.run_cell(-1) == []  # the cell that run-all never reached
        expect(nb.locator(".jp-OutputArea-output").last).to_have_text("never")
        with pytest.raises(AssertionError, match="cell 0 failed"):
            nb.run_cell(0)


@pytest.mark.browser
def test_notebook_3_form_previews_the_prompt_shows_errors_and_saves(lab, tiny_models, tmp_path):
    workspace = tmp_path / "ws"
    parameters = {"workspace": str(workspace), "test_models": True, "engine": "diffusion"}
    with lab.notebook("notebooks/3_parameters.ipynb", parameters=parameters) as nb:
        nb.run_all()
        nb.snap("form")
        prompt = nb.widget("field", cls="dreamframe-prompt")
        preview = nb.widget("html", cls="dreamframe-prompt-preview")
        nb.fill(prompt, "a lighthouse:2 | storm clouds:1 | people:-0.5")
        expect_text(preview, "storm clouds")
        expect_text(preview, "people")
        nb.snap("weighted prompt preview", preview)
        nb.fill(prompt, "a lighthouse:2 |")
        error = preview.locator("span").filter(has_text="empty")
        error.wait_for()
        assert nb.style(error, "color") == "rgb(198, 40, 40)"  # the red error
        nb.snap("broken prompt", preview)
        nb.fill(prompt, "a lighthouse:2 | storm clouds:1")
        expect_text(preview, "storm clouds")
        assert not (workspace / "params.json").exists() or \
            json.loads((workspace / "params.json").read_text())["prompt"] != \
            "a lighthouse:2 | storm clouds:1"
        nb.widget("button", cls="dreamframe-save").click()
        saved = lab.wait_for_json(workspace / "params.json")
        nb.snap("saved")
    assert saved["prompt"] == "a lighthouse:2 | storm clouds:1" and saved["kind"] == "diffusion"


def expect_text(locator, text: str) -> None:
    """Wait until the widget shows `text` (the preview updates as one types)."""
    locator.filter(has_text=text).wait_for(timeout=15_000)
