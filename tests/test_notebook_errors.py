"""A notebook action that cannot go on stops its cell with the CLI's one line, in red, and how
to fix it, never a traceback; `notebook.DEBUG = True` shows the traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import notebook
from helpers.notebook import NotebookError

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
HINT = "(to see where it failed, run notebook.DEBUG = True and this cell again)"


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


def _workspace(tmp_path: Path, name: str, text: str):
    ws = notebook.connect(str(tmp_path / "ws"), log=lambda _m: None)
    (ws.root / name).write_text(text)
    return ws


CASES = [
    ("workspace-is-a-file", lambda t: notebook.connect(str(_file(t))),
     r"^workspace: .*a-file is a file, not a folder; give a folder$"),
    ("workspace-under-a-file", lambda t: notebook.connect(str(_file(t) / "ws")),
     r"^workspace: cannot make the folder .*a-file/ws: .*a-file is a file$"),
    ("workspace-not-writable", lambda t: notebook.connect("/proc/dreamframe-ws"),
     r"^workspace: "),
    ("params-json-broken", lambda t: notebook.parameters_form(
        _workspace(t, "params.json", "{broken"), "diffusion"),
     r"params.json is damaged \(the file is not valid JSON: .*\); delete it and run its "
     r"notebook again$"),
    ("model-json-a-list", lambda t: notebook.model_form(_workspace(t, "model.json", "[]")),
     r"model.json must hold a JSON object; delete it and run its notebook again$"),
    ("engine-unknown", lambda t: notebook.parameters_form(
        notebook.connect(str(t / "ws"), log=lambda _m: None), "dall-e"),
     r"^engine: 'dall-e' is not one of vqgan-clip, diffusion$"),
]


@pytest.mark.parametrize(("action", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_failing_action_is_one_red_line_and_a_hint(tmp_path, action, match, capsys):
    with pytest.raises(NotebookError) as caught:
        action(tmp_path)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    line, hint = caught.value._render_traceback_()  # what IPython shows in place of a traceback
    assert line.startswith("\x1b[31merror: ") and line.endswith("\x1b[0m")
    assert re.search(match, line[len("\x1b[31merror: "):-len("\x1b[0m")]), line
    assert hint == HINT


def test_debug_shows_the_original_error_and_its_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(notebook, "DEBUG", True)
    with pytest.raises(ValueError, match="is a file, not a folder") as caught:
        notebook.connect(str(_file(tmp_path)))
    assert caught.traceback  # the real one, down to where it failed
    monkeypatch.setattr(notebook, "DEBUG", False)
    with pytest.raises(NotebookError):
        notebook.connect(str(_file(tmp_path)))


def test_in_a_kernel_the_cell_shows_only_our_lines(tmp_path):
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out = tmp_path / "out.ipynb"
    with pytest.raises(PapermillExecutionError) as caught:
        papermill.execute_notebook(str(NOTEBOOKS / "3_parameters.ipynb"), str(out),
                                   cwd=str(NOTEBOOKS), kernel_name="python3",
                                   parameters={"workspace": str(_file(tmp_path))},
                                   progress_bar=False, log_output=False)
    assert caught.value.ename == "NotebookError"
    errors = [o for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    (error,) = errors
    assert error["traceback"] == [f"\x1b[31merror: workspace: {tmp_path / 'a-file'} is a file, "
                                  "not a folder; give a folder\x1b[0m", HINT]
    assert json.dumps(error).count("Traceback") == 0
