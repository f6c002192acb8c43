"""Notebook 4's action (`helpers.notebook.run`) as a newcomer meets it: a finished run made
longer with `more`, the picture, and only our messages and bar (the libraries' chatter hidden).

The tiny models run through the real engines; displays go to a list instead of a page.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import notebook, runs
from helpers.workspace import open_workspace

pytest.importorskip("ipywidgets")

# What the libraries print when they load the tiny models, and what only they print.
CHATTER = ("Loading pipeline components", "Loading weights", "Writing model shards",
           "requires torchvision", "[transformers]")


@pytest.fixture
def displayed(monkeypatch) -> list:
    """What the notebook actions display, kept instead of shown."""
    import IPython.display

    shown: list = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.extend(objs))
    return shown


def frames(run_dir: Path) -> list[str]:
    return [p.name for p in runs.list_frames(run_dir)]


def stored(run_dir: Path) -> dict:
    return json.loads((run_dir / "settings.json").read_text())


@pytest.mark.slow
def test_a_finished_run_names_more_and_more_makes_it_longer(tiny_models, tmp_path, displayed):
    ws = open_workspace(tmp_path / "ws", log=lambda _: None)
    lines: list[str] = []
    run_dir = notebook.run(ws, "vqgan-clip", test_models=True, log=lines.append)
    assert frames(run_dir) == ["000001.png", "000002.png", "000003.png"]  # 6 iterations, every 2
    assert displayed[-1].children[1].layout.display != "none"  # the picture shows the last frame

    lines.clear()
    assert notebook.run(ws, resume="latest", log=lines.append) is None
    (message,) = lines
    assert f"the run {run_dir.name} is finished: it has its 6 iterations" in message
    assert "set more = 100 in the parameters cell (iterations to add)" in message
    assert "give more" not in message  # the CLI's wording, which notebook 4 cannot act on
    assert len(frames(run_dir)) == 3 and stored(run_dir)["iterations"] == 6

    assert notebook.run(ws, resume="latest", more=4, log=lines.append) == run_dir
    assert frames(run_dir) == [f"00000{i}.png" for i in range(1, 6)]  # iterations 8 and 10
    assert stored(run_dir)["iterations"] == 10
    assert list(ws.runs.iterdir()) == [run_dir]  # continued, not a new run


@pytest.mark.slow
def test_more_adds_images_to_a_finished_diffusion_run(tiny_models, tmp_path, displayed):
    ws = open_workspace(tmp_path / "ws", log=lambda _: None)
    lines: list[str] = []
    run_dir = notebook.run(ws, "diffusion", test_models=True, log=lines.append)
    assert len(frames(run_dir)) == 1
    notebook.run(ws, resume=str(run_dir), log=lines.append)
    assert "set more = 4 in the parameters cell (images to add)" in lines[-1]
    assert notebook.run(ws, resume="latest", more=2, log=lines.append) == run_dir
    assert len(frames(run_dir)) == 3 and stored(run_dir)["batch_count"] == 3


@pytest.mark.slow
def test_quiet_true_silences_our_messages_and_bar_too(tiny_models, tmp_path, displayed, capfd):
    ws = open_workspace(tmp_path / "ws", log=lambda _: None)
    lines: list[str] = []
    assert notebook.run(ws, "diffusion", test_models=True, log=lines.append)
    out = "".join(capfd.readouterr())
    assert any(line.startswith("run folder:") for line in lines)
    assert "diffusion:" in out and "step/s" in out  # our bar, by default
    lines.clear()
    assert notebook.run(ws, "diffusion", test_models=True, log=lines.append, quiet=True)
    out = "".join(capfd.readouterr())
    assert lines == [] and "diffusion:" not in out and "step/s" not in out
    assert not any(chatter in out for chatter in CHATTER)


SCRIPT = """
import sys
from helpers import notebook
from helpers.workspace import open_workspace

ws = open_workspace(sys.argv[2], log=print)
for engine in ("diffusion", "vqgan-clip"):
    if sys.argv[1] == "notebook":
        notebook.run(ws, engine, test_models=True)
    else:  # the engine alone, as before the notebooks hid the libraries
        import importlib
        settings = notebook.load_settings(ws, engine, test_models=True)
        importlib.import_module("helpers." + engine.replace("-", "_")).generate(settings)
"""


def fresh_process(mode: str, workspace: Path, cache: Path) -> str:
    """What a new Python process prints (stdout and stderr) running both engines' tiny models:
    a fresh process, so warnings a library gives once per process are seen."""
    env = {**os.environ, "DREAMFRAME_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), mode,
                             str(workspace)], capture_output=True, text=True, env=env,
                            check=True, timeout=600)
    return result.stdout + result.stderr


@pytest.mark.slow
def test_notebook_runs_show_our_messages_and_bar_and_no_library_chatter(tiny_models,
                                                                          session_cache,
                                                                          tmp_path):

    alone = fresh_process("engine", tmp_path / "alone", session_cache)
    # the control: these library versions do chatter (which lines depends on the versions)
    assert [chatter for chatter in CHATTER if chatter in alone], alone
    shown = fresh_process("notebook", tmp_path / "notebook", session_cache)
    assert [chatter for chatter in CHATTER if chatter in shown] == []
    assert shown.count("run folder:") == 2 and "1 image in" in shown  # our messages
    assert "diffusion: 100%" in shown and "vqgan-clip: 100%" in shown  # our bars
