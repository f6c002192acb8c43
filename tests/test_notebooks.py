"""The five notebooks: how they are written (static checks) and that they run headless.

Papermill runs them as the README says, with `test_models=True` in a temporary workspace: all
five in order for each engine, and notebook 4 alone on a fresh workspace.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import project

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def code_cells(notebook) -> list:
    return [c for c in notebook.cells if c.cell_type == "code"]


@pytest.mark.parametrize("name", project.NOTEBOOKS)
def test_committed_notebooks_have_no_outputs_or_execution_counts(name):
    for cell in code_cells(load(name)):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("name", project.NOTEBOOKS)
def test_no_cell_defines_a_function_or_class_or_loops(name):
    for cell in code_cells(load(name)):
        tree = ast.parse(cell.source)
        kinds = {type(node).__name__ for node in ast.walk(tree)}
        assert not kinds & {"FunctionDef", "AsyncFunctionDef", "ClassDef", "Lambda", "For",
                            "While", "ListComp", "DictComp", "SetComp", "GeneratorExp"}, \
            cell.source[:80]


@pytest.mark.parametrize("name", project.NOTEBOOKS)
def test_each_notebook_opens_for_an_artist_then_connects_then_takes_parameters(name):
    notebook = load(name)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert not re.search(r"\b(def|class|import|kwargs)\b", first.source)
    connect, parameters, *_ = code_cells(notebook)
    assert connect.source.startswith("# Connect")
    assert f'DREAMFRAME_VERSION = "{project.version()}"' in connect.source
    assert project.install_spec(project.version()) in connect.source
    tagged = [c for c in code_cells(notebook) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [parameters]
    names = {t.id for node in ast.parse(parameters.source).body
             for t in getattr(node, "targets", [])}
    assert {"workspace", "test_models", "engine"} <= names
    if name in ("2_model_choice", "4_run", "5_video"):  # the ones that load, fetch or encode
        assert "quiet" in names and "quiet=quiet" in "".join(c.source for c in code_cells(
            notebook))
    assert all(isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
               for n in ast.parse(parameters.source).body), "plain values only"


def test_the_notebooks_are_what_the_generator_writes():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "notebooks.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_the_readme_links_each_notebook_in_colab():
    readme = (ROOT / "README.md").read_text()
    for name in project.NOTEBOOKS:
        assert project.colab_url(name) in readme, name
    assert "papermill notebooks/4_run.ipynb out.ipynb -p workspace /tmp/ws -p test_models True" \
        in readme


# --- headless runs ---------------------------------------------------------------------------


def execute(name: str, workspace: Path, **parameters) -> nbformat.NotebookNode:
    """Run a notebook with papermill as the README does; fail with the cell's error."""
    import papermill

    out = workspace.parent / f"{workspace.name}-{name}.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), cwd=str(NOTEBOOKS),
                               parameters={"workspace": str(workspace), "test_models": True,
                                           **parameters},
                               kernel_name="python3", progress_bar=False, log_output=False)
    return nbformat.read(out, as_version=4)


def printed(notebook) -> str:
    """Everything the notebook's cells printed."""
    return "".join(o.get("text", "") for c in code_cells(notebook) for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


def shown(notebook) -> str:
    """Everything the notebook's cells show as text: printed, and the text of displays
    (progress bars, widgets)."""
    texts = [o.get("text", "") if o.get("output_type") == "stream" else
             o.get("data", {}).get("text/plain", "")
             for c in code_cells(notebook) for o in c.get("outputs", [])]
    return "".join(t if isinstance(t, str) else "".join(t) for t in texts)


# what only the libraries print while they load or write models
CHATTER = ("Loading pipeline components", "Loading weights", "Writing model shards",
           "requires torchvision", "[transformers]")


def frames_of(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "frames").glob("*.png"))


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["vqgan-clip", "diffusion"])
def test_all_five_notebooks_run_in_order(engine, tiny_models, tmp_path):
    import imageio_ffmpeg

    from helpers.settings import SETTINGS_KINDS, settings_from_json

    ws = tmp_path / "ws"
    setup = execute("1_setup", ws, engine=engine)
    assert "No GPU" in printed(setup) or "GPU:" in printed(setup)
    models = execute("2_model_choice", ws, engine=engine)
    execute("3_parameters", ws, engine=engine, prompt="desert:50 | snow:25")
    made = execute("4_run", ws, engine=engine)
    (run_dir,) = (ws / "runs").iterdir()
    frames = frames_of(run_dir)
    assert frames
    for notebook in (models, made):  # the tiny models are built, then loaded: no chatter
        assert [chatter for chatter in CHATTER if chatter in shown(notebook)] == []
    assert "model.json saved" in printed(models) and "run folder:" in printed(made)
    assert f"{engine}:   0%" in shown(made)  # our bar (a widget: its text as first shown)
    execute("5_video", ws, engine=engine, fps=4)
    video = run_dir / "video.mp4"
    assert imageio_ffmpeg.count_frames_and_secs(str(video))[0] == len(frames)
    assert json.loads((ws / "setup.json").read_text())["dreamframe"] == project.version()
    choice = json.loads((ws / "model.json").read_text())
    assert choice["engine"] == engine
    params = settings_from_json((ws / "params.json").read_text())
    assert isinstance(params, SETTINGS_KINDS[engine]) and params.prompt == "desert:50 | snow:25"
    assert settings_from_json((run_dir / "settings.json").read_text()).prompt == params.prompt


@pytest.mark.slow
def test_notebook_4_alone_on_a_fresh_workspace_then_longer_with_more(tiny_models, tmp_path):
    ws = tmp_path / "fresh"
    execute("4_run", ws, engine="diffusion")
    (run_dir,) = (ws / "runs").iterdir()
    assert len(frames_of(run_dir)) == 1
    finished = printed(execute("4_run", ws, resume="latest"))
    assert "is finished" in finished and "set more = 4 in the parameters cell" in finished
    assert len(frames_of(run_dir)) == 1
    execute("4_run", ws, resume="latest", more=2)
    assert list((ws / "runs").iterdir()) == [run_dir]
    assert len(frames_of(run_dir)) == 3


@pytest.mark.slow
def test_notebook_4_continues_a_stopped_run_with_one_parameter(tiny_models, tmp_path):
    from helpers.diffusion import generate
    from helpers.settings import DiffusionSettings

    ws = tmp_path / "ws"
    settings = DiffusionSettings(prompt="a red cube", model="test-tiny-sd", width=64, height=64,
                                 steps=2, batch_count=3, seed=1, device="cpu", out=str(ws))

    def stop_after_first(path, _image):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(settings, log=lambda _: None, progress=False, on_image=stop_after_first)
    (run_dir,) = (ws / "runs").iterdir()
    assert len(frames_of(run_dir)) == 1
    execute("4_run", ws, resume="latest")
    assert list((ws / "runs").iterdir()) == [run_dir]
    assert len(frames_of(run_dir)) == 3
