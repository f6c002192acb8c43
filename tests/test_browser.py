"""Real-browser smoke tests of the browser-test tools (tests/browser.py) and of notebook 3's form:
small notebooks with ipywidgets, run through Chromium in each front end (JupyterLab 4 with
ipywidgets 8; the classic Notebook 6 with ipywidgets 7.7.1, as on Colab), typed into and clicked as
a person would. A front end this environment lacks skips, saying why."""

from __future__ import annotations

import importlib.metadata
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
    Path("clicked.json").write_text(json.dumps(
        {"value": area.value, "prefix": sys.prefix, "ipywidgets": w.__version__}))

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
def test_a_widget_notebook_runs_reacts_to_typing_and_clicks_and_saves(jupyter):
    from playwright.sync_api import expect

    write_notebook(jupyter.folder / "smoke.ipynb", WIDGETS_CELL, "print('second cell ran')")
    with jupyter.notebook("smoke.ipynb") as nb:
        nb.snap("opened")
        nb.run_all()
        expect(nb.outputs().last).to_contain_text("second cell ran")
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
        clicked = jupyter.wait_for_json("clicked.json")
        # The kernel is this environment's Python, with its ipywidgets (7 in the classic run).
        assert clicked == {"value": "a <b>sea</b>", "prefix": sys.prefix,
                           "ipywidgets": importlib.metadata.version("ipywidgets")}
        nb.snap("clicked")

        nb.save()
        assert nb.console_errors() == []  # e.g. a widget model the front end could not build
    saved = nbformat.read(jupyter.folder / "smoke.ipynb", as_version=4)
    assert [cell.execution_count for cell in saved.cells] == [1, 2]
    assert "second cell ran" in json.dumps(saved.cells[1].outputs)
    assert sorted(p.name for p in jupyter.artifacts.glob("*.png")) == [
        "01-opened.png", "02-ran.png", "03-typed.png", "04-typed-key-by-key.png",
        "05-clicked.png"]


@pytest.mark.browser
def test_run_all_reports_the_failing_cell(jupyter):
    from playwright.sync_api import expect

    write_notebook(jupyter.folder / "broken.ipynb", "1 / 0", "print('never')")
    with jupyter.notebook("broken.ipynb") as nb:
        with pytest.raises(AssertionError, match="ZeroDivisionError: division by zero"):
            nb.run_all()
        assert nb.run_all(check=False) == ["ZeroDivisionError: division by zero"]
        assert nb.run_cell(-1) == []  # the cell that run-all never reached
        expect(nb.outputs().last).to_have_text("never")
        with pytest.raises(AssertionError, match="cell 0 failed"):
            nb.run_cell(0)


@pytest.mark.browser
def test_notebook_3_form_previews_the_prompt_shows_errors_and_saves(jupyter, tiny_models,
                                                                     tmp_path):
    workspace = tmp_path / "ws"
    parameters = {"workspace": str(workspace), "test_models": True, "engine": "diffusion"}
    prompt_text = "a lighthouse:2 | storm clouds:1"
    with jupyter.notebook("notebooks/3_parameters.ipynb", parameters=parameters) as nb:
        nb.run_all()
        nb.snap("form")
        prompt = nb.widget("field", cls="dreamframe-prompt")  # a Text or a Textarea
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
        nb.fill(prompt, prompt_text)
        expect_text(preview, "storm clouds")
        # Not saved yet with this prompt (the notebook's last cell may have saved the form).
        params = workspace / "params.json"
        assert not params.exists() or json.loads(params.read_text())["prompt"] != prompt_text
        nb.widget("button", cls="dreamframe-save").click()
        saved = jupyter.wait_for_json(params, until=lambda data: data["prompt"] == prompt_text)
        nb.snap("saved")
        assert nb.console_errors() == []
    assert saved["prompt"] == prompt_text and saved["kind"] == "diffusion"


def expect_text(locator, text: str) -> None:
    """Wait until the widget shows `text` (the preview updates as one types)."""
    locator.filter(has_text=text).wait_for(timeout=15_000)
