"""The image tools in the notebooks: notebook 1 installs spandrel on Colab (and says how
elsewhere), notebook 2 offers and downloads upscalers, face restorers and caption models,
notebook 5 upscales a run's frames before the video (papermill, headless)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from PIL import Image

from helpers import notebook
from helpers.workspace import open_workspace


@pytest.fixture
def displayed(monkeypatch) -> list:
    import IPython.display

    shown: list = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.extend(objs))
    return shown


def test_notebook_1_installs_spandrel_on_colab_only(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    here = {"spandrel": None, "torchvision": object()}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: here[name] if name in here else real(name, *a))
    calls: list = []

    def pip(args, check):
        calls.append(args[1:])
        here["spandrel"] = object()  # installed now

    monkeypatch.setattr(subprocess, "run", pip)
    lines: list[str] = []
    assert notebook.install_image_tools(False, lines.append) is False and calls == []
    assert "pip install spandrel" in lines[-1]
    assert notebook.install_image_tools(True, lines.append) is True
    assert calls == [["-m", "pip", "install", "-q", "spandrel>=0.4"]]
    assert notebook.install_image_tools(True, lines.append) is True and len(calls) == 1


def test_notebook_2_offers_and_downloads_the_image_tools(tmp_path, displayed,
                                                         session_cache) -> None:
    from helpers.widgets.models import tool_options

    names = [name for _label, name in tool_options()]
    assert {"R-ESRGAN 4x+", "GFPGAN", "CodeFormer", "blip-large"} <= set(names)
    ws = open_workspace(tmp_path / "ws", log=lambda _: None)
    with pytest.raises(notebook.NotebookError, match=r"tools: 'sd-1.5' is not a catalogue "
                       r"upscaler, face restorer or caption model; one of .*R-ESRGAN 4x\+"):
        notebook.model_form(ws, "diffusion", True, tools="sd-1.5")
    choice = notebook.model_form(ws, "vqgan-clip", True, tools="test-tiny-esrgan")
    assert choice.tools in choice.box.children
    lines: list[str] = []
    saved = notebook.save_models(ws, choice, log=lines.append)
    assert saved["tools"] == ["test-tiny-esrgan"] and (ws.models / "test-tiny-esrgan").is_dir()
    assert "tools = test-tiny-esrgan" in lines[-1]
    again = notebook.model_form(ws, "vqgan-clip", True)  # model.json's choice comes back
    assert again.tools.value == ("test-tiny-esrgan",)


@pytest.mark.slow
def test_notebook_5_upscales_the_frames_before_the_video(tiny_models, tmp_path) -> None:
    import imageio_ffmpeg
    from test_notebooks import execute

    from helpers.diffusion import generate
    from helpers.settings import DiffusionSettings

    ws = tmp_path / "ws"
    settings = DiffusionSettings(prompt="a red cube", model="test-tiny-sd", width=64, height=64,
                                 steps=2, batch_count=2, seed=1, device="cpu", out=str(ws))
    run_dir = generate(settings, log=lambda _: None, progress=False)
    execute("5_video", ws, engine="diffusion", fps=4, upscale=2, upscaler="Lanczos")
    folder = run_dir / "upscaled-x2-lanczos"
    frames = sorted(folder.glob("*.png"))
    assert [f.name for f in frames] == [f.name for f in sorted((run_dir / "frames").glob("*.png"))]
    with Image.open(frames[0]) as frame:
        assert frame.size == (128, 128)
    (video,) = [p for p in folder.iterdir() if p.suffix == ".mp4"]
    reader = imageio_ffmpeg.read_frames(str(video))
    assert next(reader)["size"] == (128, 128)
    assert sorted(p.name for p in (run_dir / "frames").glob("*.png")) == \
        ["000001.png", "000002.png"]  # the originals stay
    assert Path(run_dir / "frames" / "000001.png").stat().st_size > 0


def test_notebook_3_describes_an_image_into_the_prompt(tmp_path, displayed,
                                                       session_cache) -> None:
    from helpers.metadata import exif

    ws = open_workspace(tmp_path / "ws", log=lambda _: None)
    form = notebook.parameters_form(ws, "diffusion", True, prompt="old words")
    assert form.describe in displayed
    picture = exif.save_with_info(tmp_path / "a.png", Image.new("RGB", (16, 16)),
                                  "a lighthouse at dusk\nSteps: 20, Seed: 3")
    form.describe.path.value = str(picture)
    form.describe.button.click()  # a picture with infotext: its prompt, no model loaded
    assert form.controls["prompt"].widget.value == "a lighthouse at dusk"
    assert form.values()["prompt"] == "a lighthouse at dusk"
    Image.new("RGB", (16, 16), (200, 30, 90)).save(tmp_path / "plain.png")
    form.describe.path.value = str(tmp_path / "plain.png")
    form.describe.mode.value = "caption"
    form.describe.button.click()  # the tiny captioner (random words, but words)
    made = form.controls["prompt"].widget.value
    assert made != "a lighthouse at dusk" and "error" not in form.describe.status.value


@pytest.mark.slow
def test_notebook_2_downloads_the_tools_headless(tiny_models, tmp_path) -> None:
    import json

    from test_notebooks import execute, printed

    ws = tmp_path / "ws"
    made = execute("2_model_choice", ws, engine="diffusion", tools="test-tiny-esrgan")
    assert "tools = test-tiny-esrgan" in printed(made)
    assert json.loads((ws / "model.json").read_text())["tools"] == ["test-tiny-esrgan"]
    assert (ws / "models" / "test-tiny-esrgan").is_dir()
