"""What the notebooks call: one function per action, so no notebook cell holds logic.

Every notebook opens the workspace (`connect`), then: notebook 1 reports the machine
(`setup`), 2 chooses and downloads the models (`model_form`, `save_models`; for diffusion the
ControlNets too, notebook 3's defaults for its units), 3 sets the parameters
(`parameters_form`, `save_parameters`; for diffusion an image mode, txt2img, img2img, inpaint
or outpaint), 4 runs (`run`), 5 makes the video (`video_form`, `make_video`). Forms show what
the workspace holds; headless (papermill), where widget callbacks never fire, the values of
the `parameters` cell reach the same functions, so "Run all" works everywhere.

What the actions print: our messages and our progress bar (`quiet=True`: only errors); the
libraries' chatter (warnings, "Loading weights" bars) never, as the CLI's `--quiet` does it
(`helpers.reporting.quiet`), but the Hub client's download bars stay while ours do.

Failures: an action that cannot go on (a workspace that is a file, a damaged params.json)
stops its cell with one red line, the CLI's message with how to fix it, and no traceback
(`NotebookError`); a run or a video that fails prints that line and the notebook goes on.
`DEBUG = True` shows Python's traceback instead, for reporting a bug.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from helpers import reporting
from helpers.engines import ENGINES, get_engine
from helpers.reporting import Log, plural
from helpers.workspace import Workspace, open_workspace

DEBUG = False  # True (`notebook.DEBUG = True` in a cell): failures show Python's traceback too
DEFAULT_PROMPT = "a lighthouse in a storm:1 | oil painting:0.5"
# what `more` adds to, by the setting it changes: an example for the message of a finished run
MORE_EXAMPLE = {"iterations": 100, "frames": 30, "batch_count": 4}


F = TypeVar("F", bound=Callable[..., Any])


class NotebookError(Exception):
    """An expected failure of a notebook action (bad input, a damaged file): IPython shows it
    as the one line the CLI prints, in red, and no traceback (`DEBUG` shows it)."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook: these lines replace the traceback
        return [f"\x1b[31merror: {self}\x1b[0m",
                "(to see where it failed, run notebook.DEBUG = True and this cell again)"]


def _plainly(action: F) -> F:
    """The notebook action, its expected failures raised as a `NotebookError`."""
    @functools.wraps(action)
    def plain(*args: Any, **kwargs: Any) -> Any:
        try:
            return action(*args, **kwargs)
        except (ValueError, OSError, RuntimeError) as e:
            if DEBUG:
                raise
            raise NotebookError(str(e)) from None

    return plain  # type: ignore[return-value]


def check_version(written_for: str, log: Log = print) -> str:
    """Warn when the installed package is not the version the notebook was written for."""
    from helpers.project import version

    installed = version()
    if installed != written_for:
        log(f"warning: this notebook was written for Dreamframe {written_for}, and "
            f"{installed} is installed; if something fails, open the notebook of that version")
    return installed


@_plainly
def connect(workspace: str = "", log: Log = print) -> Workspace:
    """Open the workspace (Drive on Colab, mounted here) and say where it is."""
    ws = open_workspace(workspace, log)
    where = "on Google Drive" if ws.colab and ws.persistent else \
        "on this machine's disk (lost on disconnect)" if ws.colab else "here"
    log(f"workspace: {ws.root} ({where})")
    return ws


# --- 1. setup --------------------------------------------------------------------------------


def machine_report() -> dict[str, Any]:
    """The machine: Python, torch, and the GPU (name and memory) or none."""
    import platform

    import torch

    from helpers.project import version

    report: dict[str, Any] = {"dreamframe": version(), "python": platform.python_version(),
                              "torch": torch.__version__.split("+")[0]}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        report["gpu"] = {"name": torch.cuda.get_device_name(), "memory_gb": round(total / 1e9, 1),
                         "free_gb": round(free / 1e9, 1)}
    elif torch.backends.mps.is_available():
        report["gpu"] = {"name": "Apple Metal (MPS)", "memory_gb": None}
    else:
        report["gpu"] = None
    return report


@_plainly
def setup(ws: Workspace, log: Log = print) -> dict[str, Any]:
    """Report the machine in plain words and record it in setup.json."""
    from datetime import datetime

    report = {**machine_report(), "colab": ws.colab, "persistent": ws.persistent,
              "workspace": str(ws.root), "time": datetime.now().isoformat(timespec="seconds")}
    gpu = report["gpu"]
    if gpu:
        memory = f", {gpu['memory_gb']} GB" if gpu.get("memory_gb") else ""
        log(f"GPU: {gpu['name']}{memory}")
    else:
        log("No GPU: everything runs on the CPU, many times slower. A 512x512 image takes "
            "minutes instead of seconds; on Colab choose Runtime > Change runtime type > GPU, "
            "then run this notebook again. The tiny test models (test_models = True) still "
            "run in seconds.")
    log(f"Dreamframe {report['dreamframe']}, Python {report['python']}, torch {report['torch']}")
    report["image_tools"] = install_image_tools(ws.colab, log)
    ws.write("setup.json", report)
    return report


SPANDREL = "spandrel>=0.4"  # the upscaler and face models (it imports torchvision)


def install_image_tools(colab: bool, log: Log = print) -> bool:
    """Make sure spandrel (upscalers, face restoration) imports: on Colab, whose torch comes
    with its torchvision, pip installs it once; elsewhere say how. Whether it imports now."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("spandrel") is not None:
        return True
    if not colab or importlib.util.find_spec("torchvision") is None:
        log("Upscalers and face restoration need spandrel: pip install spandrel, with the "
            "torchvision made for your torch (Colab has it; the other tools work without).")
        return False
    log(f"installing {SPANDREL} for the upscalers and face restoration")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", SPANDREL], check=True)
    importlib.invalidate_caches()
    return importlib.util.find_spec("spandrel") is not None


# --- settings in the workspace ---------------------------------------------------------------


def engine_of(ws: Workspace, engine: str = "") -> str:
    """The engine: as given, else the workspace's model choice, else VQGAN+CLIP."""
    engine = engine.strip() or (ws.read("model.json") or {}).get("engine", "") or next(
        iter(ENGINES))
    return get_engine(engine).name


def workspace_values(ws: Workspace, engine: str, test_models: bool) -> dict[str, Any]:
    """The settings values the workspace holds for an engine: params.json, then the models of
    model.json (or the test models), the workspace as `out`."""
    values: dict[str, Any] = {"prompt": DEFAULT_PROMPT}
    record = get_engine(engine)
    if test_models:
        values.update(record.test_settings)
    params = ws.read("params.json") or {}
    if params.get("kind") == engine:
        values.update({k: v for k, v in params.items() if k != "kind"})
    models = ws.read("model.json") or {}
    if models.get("engine") == engine:
        values.update({k: models[k] for k in record.model_fields if k in models})
    if test_models:
        values.update(tiny_models_of(engine, keep=values))
    values["out"] = str(ws.root)
    return values


def settings_class(engine: str) -> type:
    """The settings class of an engine."""
    return get_engine(engine).settings


@_plainly
def load_settings(ws: Workspace, engine: str = "", test_models: bool = False,
                  **given: Any) -> Any:
    """The settings a run uses: what the workspace holds, with `given` values on top."""
    engine = engine_of(ws, engine)
    values = {**workspace_values(ws, engine, test_models), **_given(given)}
    return settings_class(engine).from_dict(values)


def _given(given: dict[str, Any]) -> dict[str, Any]:
    """Parameter-cell values that were set (None and "" mean: keep the workspace's)."""
    return {k: v for k, v in given.items() if v is not None and v != ""}


# --- 2. models -------------------------------------------------------------------------------


@_plainly
def model_form(ws: Workspace, engine: str = "", test_models: bool = False,
               **given: Any) -> Any:
    """Show the model choice for an engine: catalogue dropdowns (size, licence, cached) or a
    source of your own, for diffusion the ControlNets (`controlnets`: names, "a, b"), and the
    image tools (`tools`: upscalers, face restorers, caption models); it starts from
    model.json."""
    from IPython.display import display

    from helpers.widgets.models import (
        CONTROLNETS,
        TOOLS,
        ModelForm,
        checked_controlnets,
        checked_tools,
    )

    engine = engine_of(ws, engine)
    given = _given(given)
    values = {**(ws.read("model.json") or {}), **given, "engine": engine}
    if test_models:  # every engine's: switching the engine keeps to the tiny models
        values.update(tiny_models_of(*ENGINES, keep=values))
    if CONTROLNETS in given:  # those of model.json that no longer fit are just not chosen
        values[CONTROLNETS] = checked_controlnets(given[CONTROLNETS], values.get("model", ""))
    if TOOLS in given:
        values[TOOLS] = checked_tools(given[TOOLS])
    form = ModelForm(values, cache=ws.models)
    display(form.widget)
    return form


def tiny_models_of(*engines: str, keep: dict[str, Any] | None = None) -> dict[str, str]:
    """The model fields of these engines set to the tiny test models; those `keep` sets to
    another catalogue test model (e.g. test-tiny-sd-inpaint) keep it."""
    from helpers.catalog import find_model

    tiny = {name: value for record in map(get_engine, engines)
            for name, value in record.test_settings.items() if name in record.model_fields}
    for name, value in (keep or {}).items():
        model = find_model(value) if name in tiny and isinstance(value, str) else None
        if model is not None and model.test:
            tiny[name] = value
    return tiny


def save_models(ws: Workspace, form: Any, log: Log = print, quiet: bool = False) -> dict:
    """Check the chosen models, download what is missing into the workspace, write
    model.json; a problem is shown plainly (nothing written). `quiet`: only errors."""
    choice = dict(form) if isinstance(form, dict) else form.values()
    say = reporting.voice(log, quiet)
    try:
        with reporting.quiet(downloads=not quiet):
            download_models(choice, ws, say["log"], say["progress"])
    except (ValueError, OSError, RuntimeError) as e:
        _show_error(e, log)
        return {}
    ws.write("model.json", choice)
    shown = {k: ", ".join(v) if isinstance(v, (list, tuple)) else v for k, v in choice.items()}
    say["log"](f"model.json saved: {', '.join(f'{k} = {v}' for k, v in shown.items() if v)}")
    return choice


def download_models(choice: dict[str, Any], ws: Workspace, log: Log, progress: bool) -> None:
    """Resolve each model of a choice before anything downloads (its ControlNets checked
    against the model's family), then fetch the catalogue ones."""
    from helpers.catalog import get_model
    from helpers.download import fetch_all
    from helpers.widgets.models import CONTROLNETS, TOOLS, checked_controlnets, checked_tools

    module = get_engine(engine_of(ws, choice.get("engine", ""))).module()
    models = module.catalogue_models(choice, ws.models)
    controlnets = checked_controlnets(choice.get(CONTROLNETS, ()), choice.get("model", ""))
    tools = checked_tools(choice.get(TOOLS, ()))
    models += [get_model(name) for name in (*controlnets, *tools)]
    fetch_all(models, ws.models, progress=progress, log=log)


# --- 3. parameters ---------------------------------------------------------------------------


def upload(ws: Workspace, enabled: bool = True, log: Log = print) -> list[Path]:
    """On Colab, Colab's own upload button (the form's one fails for files of 1 MB or more);
    the files land in the workspace's uploads folder. Elsewhere: a hint to type a path."""
    from helpers.widgets.uploads import save_upload
    from helpers.workspace import in_colab

    if not enabled:
        return []
    if not in_colab():
        log("upload: Colab's upload button is for Colab; here, type a path in the form or use "
            "its Upload button")
        return []
    from google.colab import files

    saved = [save_upload(ws.uploads, name, data) for name, data in files.upload().items()]
    for path in saved:
        log(f"saved {path}: type it as the init image or an image prompt in the form")
    return saved


@_plainly
def parameters_form(ws: Workspace, engine: str = "", test_models: bool = False,
                    mode: str = "", **given: Any) -> Any:
    """Show the form of the engine's settings, filled with what the workspace holds and the
    parameter cell's values; the models come from notebook 2, and so do the ControlNets its
    units default to. `mode` (diffusion: txt2img, img2img, inpaint or outpaint; empty: the one
    the values make) decides which image fields the settings keep."""
    import dataclasses
    import html

    from IPython.display import HTML, display

    from helpers.widgets import SettingsForm
    from helpers.widgets.models import CONTROLNETS

    engine = engine_of(ws, engine)
    given = _given(given)
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(settings_class(engine))})
    if unknown:  # e.g. a mask for VQGAN+CLIP: said, not dropped
        raise ValueError(f"{unknown[0]}: not a {engine} setting; leave it empty for this "
                         "engine")
    values = {**workspace_values(ws, engine, test_models), **given}
    models = ws.read("model.json") or {}
    chosen = models.get(CONTROLNETS) if models.get("engine") == engine else None
    chosen = [name for name in chosen if isinstance(name, str)] if isinstance(chosen, list) \
        else []
    form = SettingsForm(settings_class(engine), values,
                        exclude=("out", *get_engine(engine).model_fields),
                        uploads=ws.uploads, mode=(mode or "").strip(), cache=ws.models,
                        controlnets=tuple(chosen))
    named = ", ".join(f"{k}: {values[k]}" for k in get_engine(engine).model_fields
                      if values.get(k))
    controlnets = f", ControlNets: {', '.join(chosen)}" if chosen else ""
    display(HTML(f"<b>{engine}</b> with {html.escape(named or 'the default models')}"
                 f"{html.escape(controlnets)} <i>(change them in notebook 2)</i>"))
    form.describe = _describe_button(ws, form, values, test_models)
    display(form.widget, form.describe, _save_button(lambda: save_parameters(ws, form)))
    return form


def _describe_button(ws: Workspace, form: Any, values: dict[str, Any],
                     test_models: bool) -> Any:
    """"Describe an image": a picture's prompt (its stored one, else BLIP + CLIP's terms)
    into the form's prompt; the test models' tiny captioner and CLIP with test_models."""
    from helpers.widgets.describe import describe_button

    options: dict[str, Any] = {"cache": ws.models, "device": values.get("device", "auto")}
    if test_models:
        options.update(caption_model="test-tiny-blip", clip_model="test-tiny-clip")
    return describe_button(form.controls["prompt"].widget, options)


def _save_button(save: Any) -> Any:
    """A Save button for interactive use (headless, the notebook's next cell saves)."""
    from ipywidgets import Button

    button = Button(description="Save", button_style="success", icon="check")
    button.add_class("dreamframe-save")
    button.on_click(lambda _button: save())
    return button


def save_parameters(ws: Workspace, form: Any, log: Log = print) -> bool:
    """Write params.json when the form's settings are valid; else show why (nothing written):
    in the form, and as a line, which a headless run shows too."""
    saved = bool(form.save(ws.root / "params.json"))
    if not saved and getattr(form, "problem", ""):
        log(f"error: {form.problem}; params.json not saved")
    return saved


# --- 4. run ----------------------------------------------------------------------------------


def run(ws: Workspace, engine: str = "", test_models: bool = False, resume: str = "",
        log: Log = print, *, more: int = 0, quiet: bool = False, **given: Any) -> Path | None:
    """Run the workspace's settings into a new run folder, or continue one (`resume`: a run
    folder or "latest"; `more`: iterations, images or frames to add to it), with a progress
    bar and the picture updated in place. `quiet`: no bar and no messages but errors."""
    picture, resume = _picture(), (resume or "").strip()
    try:
        with reporting.quiet(downloads=not quiet):
            return _run(ws, engine, test_models, (resume, _more(resume, more)), picture,
                        reporting.voice(log, quiet), given)
    except KeyboardInterrupt as e:  # a RunStopped says what was kept
        message = getattr(e, "message", "stopped")
        log(f"{message}\nTo continue here, set resume = \"latest\" in the parameters cell and "
            "run this notebook again.")
    except (ValueError, OSError, RuntimeError) as e:
        _show_error(e, log)
    finally:
        picture.ended()
    return None


def _more(resume: str, more: int | None) -> int:
    """`more` checked: a whole number, 0 or more, and only with `resume`."""
    more = more or 0
    if isinstance(more, bool) or not isinstance(more, int) or more < 0:
        raise ValueError(f"more: give a whole number, 0 or more (got {more!r})")
    if more and not resume:
        raise ValueError('more: it makes a run longer; set resume = "latest" (or a run folder) '
                         "too")
    return more


def _run(ws: Workspace, engine: str, test_models: bool, resume: tuple[str, int], picture: Any,
         options: dict[str, Any], given: dict[str, Any]) -> Path:
    from helpers import runs

    folder, more = resume
    run_dir = _resume_folder(ws, folder) if folder else None
    engine = engine_of(ws, engine if run_dir is None else _resume_engine(run_dir, engine))
    module = get_engine(engine).module()
    options = {**options, "cache": ws.models, **picture.callbacks(engine)}
    if run_dir is not None:
        _continue(module, run_dir, engine, more, options, given)
    else:
        run_dir = module.generate(load_settings(ws, engine, test_models, **given), **options)
    last = runs.latest_frame(run_dir)
    if last is not None:
        picture.show(runs.read_frame(run_dir, int(last.stem)))
    return run_dir


def _continue(module: Any, run_dir: Path, engine: str, more: int, options: dict[str, Any],
              given: dict[str, Any]) -> Path:
    """Continue a run folder, `more` longer; a finished run without `more` is told how to
    give it."""
    changes = _given(given)
    if more:
        name, count, _unit = run_length(run_dir, engine)
        changes[name] = count + more
    try:
        return module.generate(resume=run_dir, changes=changes, **options)
    except ValueError as e:  # the engines name the setting a finished run lacks
        if more:
            raise
        name, count, unit = run_length(run_dir, engine)
        if not str(e).startswith(f"{name}:"):
            raise
        raise ValueError(f"resume: the run {run_dir.name} is finished: it has its {count} "
                         f"{unit}. To make it longer, set more = {MORE_EXAMPLE[name]} in the "
                         f"parameters cell ({unit} to add) and run this notebook again") from None


def run_length(run_dir: Path, engine: str) -> tuple[str, int, str]:
    """What `more` adds to in a run folder: (the setting, its value now, the unit it counts)."""
    from helpers import runs

    settings = runs.resumed_settings(run_dir, settings_class(engine), {}, ())
    if settings.animate:
        return "frames", _frames(settings, run_dir), "frames"
    record = get_engine(engine)
    unit = record.unit if getattr(settings, "batch_size", 1) == 1 else \
        f"batches of {settings.batch_size} {record.unit}"
    return record.length, getattr(settings, record.length), unit


def _frames(settings: Any, run_dir: Path) -> int:
    """An animation's frames: as set, or as a diffusion walk or video makes them."""
    from helpers import runs

    if settings.kind != "diffusion":
        return settings.frames
    from helpers.diffusion.frames import frame_count

    count = frame_count(settings)
    return count if count is not None else len(runs.list_frames(run_dir))


def _resume_folder(ws: Workspace, resume: str) -> Path:
    folder = ws.latest_run() if resume.strip() == "latest" else Path(resume).expanduser()
    if folder is None:
        raise ValueError(f"resume: the workspace {ws.root} has no run to continue")
    return folder


def _resume_engine(run_dir: Path, engine: str) -> str:
    """The engine of the run to continue (its settings' kind), else `engine`."""
    from helpers import runs

    return runs.read_run_settings(run_dir).get("kind", "") or engine


def _picture() -> Any:
    """A run's picture, shown here: hidden until the first frame."""
    from IPython.display import display

    from helpers.widgets.picture import RunPicture

    picture = RunPicture()
    display(picture.widget)
    return picture


def _show_error(error: Exception, log: Log) -> None:
    """An expected failure in one plain line, never a traceback (unless `DEBUG`)."""
    if DEBUG:
        raise error
    log(f"error: {error}")


def upscale_frames(ws: Workspace, run_dir: str | Path, scale: float, upscaler: str = "",
                   test_models: bool = False, log: Log = print, quiet: bool = False) -> Path:
    """Upscale every frame of a run into its `upscaled-x<scale>-<upscaler>/` folder (frames
    done before are kept); the upscaler's default is R-ESRGAN 4x+ (the tiny one with
    `test_models`)."""
    from helpers.diffusion.tools.upscale import upscale_path

    name = upscaler.strip() or ("test-tiny-esrgan" if test_models else "R-ESRGAN 4x+")
    with reporting.quiet(imports=False):
        voice = reporting.voice(log, quiet)
        return upscale_path(run_dir, name, float(scale), cache=ws.models, log=voice["log"],
                            progress=voice["progress"])


# --- 5. video --------------------------------------------------------------------------------


@_plainly
def video_form(ws: Workspace, run: str = "", **given: Any) -> Any:
    """Show the run picker (newest first) and the video settings."""
    from IPython.display import display
    from ipywidgets import Dropdown

    from helpers.runs import list_frames
    from helpers.settings import VideoSettings
    from helpers.widgets import SettingsForm

    folders = ws.run_folders()
    options = [(f"{p.name} ({plural(len(list_frames(p)), 'frame')})", str(p)) for p in folders]
    chosen = str(_resume_folder(ws, run)) if run and run != "latest" else \
        (options[0][1] if options else None)
    picker = Dropdown(options=options, value=chosen, description="run")
    form = SettingsForm(VideoSettings, _given(given), exclude=("out",))
    display(picker, form.widget)
    form.run_picker = picker
    return form


def make_video(ws: Workspace, form: Any, log: Log = print, quiet: bool = False,
               upscale: float = 0, upscaler: str = "", test_models: bool = False
               ) -> Path | None:
    """Assemble the picked run's frames (upscaled first by `upscale` with `upscaler`, into a
    folder beside them), show the video here, offer it for download on Colab; `quiet`: no bar
    and no messages but errors."""
    from IPython.display import display

    from helpers.video import assemble, offer_download, show_video

    run_dir = getattr(form, "run_picker", None) and form.run_picker.value
    try:
        if not run_dir:
            raise ValueError(f"run: the workspace {ws.root} has no run yet; make one in "
                             "notebook 4")
        settings = form.settings()  # checked before any frame is upscaled
        if upscale and upscale != 1:
            run_dir = upscale_frames(ws, run_dir, upscale, upscaler, test_models, log, quiet)
        with reporting.quiet(imports=False):  # a video needs neither diffusers nor transformers
            path = assemble(run_dir, settings, **reporting.voice(log, quiet))
    except (ValueError, OSError, RuntimeError) as e:
        _show_error(e, log)
        return None
    display(show_video(path))
    offer_download(path)
    return path
