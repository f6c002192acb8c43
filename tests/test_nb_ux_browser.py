"""Real-browser checks, in each front end (JupyterLab with ipywidgets 8, the classic Notebook with
ipywidgets 7.7.1 as on Colab), of what the kernel-side tests cannot see: the prompt box grows on
the page as the text does, and notebook 4's picture is never a broken image."""

from __future__ import annotations

import pytest

pytest_plugins = ["browser"]


@pytest.mark.browser
def test_the_prompt_box_grows_on_the_page_with_a_pasted_prompt(jupyter, tmp_path):
    from playwright.sync_api import expect

    parameters = {"workspace": str(tmp_path / "ws"), "test_models": True, "engine": "diffusion"}
    with jupyter.notebook("notebooks/3_parameters.ipynb", parameters=parameters) as nb:
        nb.run_all()
        prompt = nb.widget("textarea", cls="dreamframe-prompt")
        expect(prompt).to_have_attribute("rows", "2")
        before = prompt.bounding_box()["height"]
        nb.fill(prompt, "a castle on a hill, (masterpiece:1.2),\nBREAK\nfog, dusk,\noil painting")
        expect(prompt).to_have_attribute("rows", "4")
        assert prompt.bounding_box()["height"] > before * 1.5
        assert prompt.input_value().count("\n") == 3  # the kernel's answer kept the text
        expect(nb.widget("html", cls="dreamframe-prompt-preview")).to_contain_text("oil painting")
        nb.snap("grown prompt", prompt)


@pytest.mark.browser
def test_notebook_4_shows_no_broken_picture(jupyter, tmp_path):
    from playwright.sync_api import expect

    parameters = {"workspace": str(tmp_path / "ws"), "test_models": True, "engine": "diffusion"}
    with jupyter.notebook("notebooks/4_run.ipynb", parameters=parameters) as nb:
        nb.run_all()
        picture = nb.locator(".dreamframe-run-picture")
        expect(picture).to_be_visible()
        assert picture.evaluate("(e) => e.complete && e.naturalWidth") == 64  # a real image
        expect(nb.locator(".dreamframe-run-placeholder")).to_be_hidden()
        nb.snap("picture", picture)


@pytest.mark.browser
def test_notebook_4_shows_nothing_for_a_run_that_fails_before_a_frame(jupyter, tmp_path):
    from playwright.sync_api import expect

    parameters = {"workspace": str(tmp_path / "ws"), "test_models": True, "engine": "diffusion",
                  "resume": str(tmp_path / "nowhere")}
    with jupyter.notebook("notebooks/4_run.ipynb", parameters=parameters) as nb:
        nb.run_all()
        expect(nb.outputs().last).to_contain_text("error: resume:")
        expect(nb.locator(".dreamframe-run-picture")).to_be_hidden()
        expect(nb.locator(".dreamframe-run-placeholder")).to_be_hidden()
        nb.snap("failed run")
