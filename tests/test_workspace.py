"""The workspace the notebooks share, the notebook actions' plumbing, and the project facts."""

from __future__ import annotations

import json
import os
import sys
import types

import pytest

from helpers import notebook, project, workspace
from helpers.workspace import Workspace, open_workspace


def test_a_workspace_has_its_folders_and_points_the_model_cache_at_them(tmp_path, monkeypatch):
    monkeypatch.setenv("DREAMFRAME_CACHE", "elsewhere")
    ws = open_workspace(tmp_path / "ws", log=lambda _: None)
    assert all(p.is_dir() for p in (ws.root, ws.models, ws.runs, ws.uploads))
    assert os.environ["DREAMFRAME_CACHE"] == str(ws.models)
    assert (ws.colab, ws.persistent) == (False, True)


def test_locally_the_default_workspace_is_in_the_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(project, "checkout_root", lambda: tmp_path)
    assert open_workspace("", log=lambda _: None).root == tmp_path / "workspace"


def fake_colab(monkeypatch, tmp_path, mounts: bool) -> list:
    """Pretend to be on Colab with a Drive that mounts (or is refused)."""
    calls = []

    def mount(where):
        calls.append(where)
        if not mounts:
            raise RuntimeError("mount failed: the user refused")
        (tmp_path / "drive" / "MyDrive").mkdir(parents=True)

    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mount)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(workspace, "DRIVE", tmp_path / "drive")
    monkeypatch.setattr(workspace, "DRIVE_FOLDER", tmp_path / "drive" / "MyDrive" / "Dreamframe")
    monkeypatch.setattr(workspace, "COLAB_LOCAL", tmp_path / "local")
    return calls


def test_on_colab_the_workspace_is_on_drive(monkeypatch, tmp_path):
    calls = fake_colab(monkeypatch, tmp_path, mounts=True)
    ws = open_workspace("", log=lambda _: None)
    assert ws.root == tmp_path / "drive" / "MyDrive" / "Dreamframe"
    assert (ws.colab, ws.persistent) == (True, True) and len(calls) == 1
    open_workspace("", log=lambda _: None)
    assert len(calls) == 1  # mounted once: quick the second time


def test_without_drive_colab_warns_that_the_work_is_lost_on_disconnect(monkeypatch, tmp_path):
    fake_colab(monkeypatch, tmp_path, mounts=False)
    lines: list[str] = []
    ws = open_workspace("", log=lines.append)
    assert ws.root == tmp_path / "local" and not ws.persistent
    assert any("LOST when the machine disconnects" in line for line in lines)


def test_damaged_workspace_files_are_named(tmp_path):
    ws = open_workspace(tmp_path, log=lambda _: None)
    assert ws.read("params.json") is None
    (tmp_path / "params.json").write_text("{oops")
    with pytest.raises(ValueError, match=r"params.json is damaged"):
        ws.read("params.json")
    (tmp_path / "model.json").write_text("[]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        ws.read("model.json")
    with pytest.raises(ValueError, match="not one of"):
        ws.read("secrets.json")


def test_runs_are_listed_newest_first(tmp_path):
    ws = open_workspace(tmp_path, log=lambda _: None)
    for name in ("20260101-000000-a", "20260301-000000-c", "20260201-000000-b"):
        (ws.runs / name).mkdir()
        (ws.runs / name / "settings.json").write_text("{}")
    (ws.runs / "stray").mkdir()  # not a run: no settings.json
    assert [p.name[-1] for p in ws.run_folders()] == ["c", "b", "a"]
    assert ws.latest_run().name.endswith("c")


# --- what the notebooks take from the workspace ----------------------------------------------


def make(tmp_path) -> Workspace:
    return open_workspace(tmp_path, log=lambda _: None)


def test_the_engine_comes_from_the_parameter_then_the_model_choice(tmp_path):
    ws = make(tmp_path)
    assert notebook.engine_of(ws) == "vqgan-clip"
    ws.write("model.json", {"engine": "diffusion", "model": "sd-2.1"})
    assert notebook.engine_of(ws) == "diffusion"
    assert notebook.engine_of(ws, "vqgan-clip") == "vqgan-clip"
    with pytest.raises(ValueError, match="engine: 'gan'"):
        notebook.engine_of(ws, "gan")


def test_settings_take_params_then_models_then_the_test_models(tmp_path):
    from helpers.settings import DiffusionSettings

    ws = make(tmp_path)
    ws.write("params.json", json.loads(DiffusionSettings(prompt="a fox", steps=9,
                                                         model="sd-1.5").to_json()))
    ws.write("model.json", {"engine": "diffusion", "model": "sdxl-1.0"})
    settings = notebook.load_settings(ws)
    assert (settings.prompt, settings.steps, settings.model) == ("a fox", 9, "sdxl-1.0")
    assert settings.out == str(ws.root)
    tiny = notebook.load_settings(ws, test_models=True, prompt="a cat", seed=None)
    assert (tiny.model, tiny.prompt, tiny.steps) == ("test-tiny-sd", "a cat", 9)


def shown_form(monkeypatch) -> list:
    """What the notebook actions display, kept instead of shown."""
    import IPython.display

    displayed: list = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs: displayed.extend(objs))
    return displayed


@pytest.mark.parametrize("start", ["vqgan-clip", "diffusion"])
def test_with_test_models_every_engine_switch_offers_the_tiny_models(tmp_path, monkeypatch,
                                                                      start):
    pytest.importorskip("ipywidgets")
    shown_form(monkeypatch)
    ws = make(tmp_path)
    ws.write("model.json", {"engine": "diffusion", "model": "sd-1.5", "vqgan": "wikiart_16384"})
    form = notebook.model_form(ws, start, test_models=True)
    tiny = {"vqgan-clip": {"vqgan": "test-tiny-vqgan", "clip": "test-tiny-clip", "tools": []},
            "diffusion": {"model": "test-tiny-sd", "vae": "", "model_config": "",
                          "controlnets": [], "tools": []}}
    for engine in [start, *(e for e in notebook.ENGINES if e != start), start]:
        form.engine.value = engine  # as the dropdown does
        assert form.values() == {"engine": engine, **tiny[engine]}
        shown = [field.value for field in form.box.children]  # a multi-select's: a tuple
        assert shown == [tuple(v) if isinstance(v, list) else v for v in tiny[engine].values()]


def test_without_test_models_the_model_choice_comes_from_model_json(tmp_path, monkeypatch):
    pytest.importorskip("ipywidgets")
    shown_form(monkeypatch)
    ws = make(tmp_path)
    ws.write("model.json", {"engine": "diffusion", "model": "sd-2.1"})
    form = notebook.model_form(ws, "vqgan-clip")
    form.engine.value = "diffusion"
    assert form.values()["model"] == "sd-2.1"


def test_an_unknown_model_is_said_plainly_and_nothing_is_written(tmp_path):
    ws = make(tmp_path)
    lines: list[str] = []
    choice = {"engine": "diffusion", "model": "sd-15", "vae": "", "model_config": ""}
    assert notebook.save_models(ws, choice, log=lines.append) == {}
    assert lines[-1].startswith("error: model: unknown model 'sd-15'") and "sd-1.5" in lines[-1]
    assert ws.read("model.json") is None


def test_resuming_an_empty_workspace_says_there_is_nothing(tmp_path):
    pytest.importorskip("ipywidgets")
    lines: list[str] = []
    assert notebook.run(make(tmp_path), resume="latest", log=lines.append) is None
    assert lines == [f"error: resume: the workspace {tmp_path} has no run to continue"]
    notebook.run(make(tmp_path), resume="latest", log=lines.append, quiet=True)
    assert lines[-1].startswith("error: resume:")  # quiet keeps the errors


@pytest.mark.parametrize(("more", "resume", "says"), [
    (-1, "latest", "more: give a whole number, 0 or more (got -1)"),
    (2.5, "latest", "more: give a whole number"),
    (True, "latest", "more: give a whole number"),
    (10, "", 'more: it makes a run longer; set resume = "latest"')])
def test_more_is_checked_before_anything_runs(tmp_path, monkeypatch, more, resume, says):
    pytest.importorskip("ipywidgets")
    displayed = shown_form(monkeypatch)
    lines: list[str] = []
    assert notebook.run(make(tmp_path), resume=resume, more=more, log=lines.append) is None
    assert len(lines) == 1 and lines[0].startswith(f"error: {says}")
    (picture,) = displayed
    assert [c.layout.display for c in picture.children] == ["none", "none"]  # nothing shown
    assert list((tmp_path / "runs").iterdir()) == []


def test_quiet_keeps_only_errors_and_turns_our_progress_bar_off():
    from helpers import reporting

    assert reporting.voice(print, quiet=False) == {"log": print, "progress": True}
    assert reporting.voice(print, quiet=True) == {"log": reporting.no_log, "progress": False}


def test_a_version_other_than_the_notebooks_is_warned_about():
    lines: list[str] = []
    assert notebook.check_version(project.version(), lines.append) == project.version()
    assert lines == []
    notebook.check_version("0.0.1", lines.append)
    assert "written for Dreamframe 0.0.1" in lines[0]


# --- the project facts -----------------------------------------------------------------------


def test_the_version_is_the_one_in_pyproject():
    import re
    from pathlib import Path

    pyproject = (Path(project.__file__).parent.parent / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1) == project.version()


def test_colab_links_and_installs_come_from_the_one_repository_url():
    owner_repo = project.REPOSITORY.removeprefix("https://github.com/")
    assert project.colab_url("4_run") == (f"https://colab.research.google.com/github/{owner_repo}"
                                          f"/blob/{project.BRANCH}/notebooks/4_run.ipynb")
    assert project.install_spec("1.2.3") == f"dreamframe @ git+{project.REPOSITORY}@v1.2.3"


def test_on_colab_uploads_go_through_colabs_own_button_into_the_workspace(monkeypatch,
                                                                          tmp_path):
    ws = make(tmp_path / "ws")
    lines: list[str] = []
    assert notebook.upload(ws, enabled=False, log=lines.append) == [] and lines == []
    assert notebook.upload(ws, log=lines.append) == []  # not Colab: a hint only
    assert "type a path" in lines[-1]
    colab = types.ModuleType("google.colab")
    colab.files = types.SimpleNamespace(upload=lambda: {"my init.png": b"\x89PNG big"})
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    (saved,) = notebook.upload(ws, log=lines.append)
    assert saved.parent == ws.uploads and saved.read_bytes() == b"\x89PNG big"
    assert str(saved) in lines[-1]
