"""Real-browser tests of notebooks, in two front ends on 127.0.0.1 driven through Debian's Chromium
by Playwright: JupyterLab 4 with ipywidgets 8, and the classic Notebook 6 with ipywidgets 7 (what
Google Colab ships: ipywidgets 7.7.1, and a front end close to notebook 6.5 with
widgetsnbextension 3.6). Not a test file: a test file brings its fixtures in with
``pytest_plugins``::

    import pytest

    pytest_plugins = ["browser"]

    @pytest.mark.browser
    def test_the_form(jupyter, tmp_path):  # or `lab` / `classic` for one front end
        from playwright.sync_api import expect

        with jupyter.notebook("notebooks/3_parameters.ipynb",
                              parameters={"workspace": str(tmp_path), "test_models": True}) as nb:
            nb.run_all()
            nb.fill(nb.widget("field", cls="dreamframe-prompt"), "desert:50 | snow:25")
            expect(nb.widget("html", cls="dreamframe-prompt-preview")).to_contain_text("snow")
            nb.snap("typed")

Fixtures: ``lab`` (JupyterLab), ``classic`` (the classic Notebook) and ``jupyter``, which runs a
test once in each (ids ``[lab]`` and ``[classic]``). One driver serves both: what differs between
the front ends (where cells and outputs are, how to run, save and tell an idle kernel, how the
server starts) is in the FRONT_ENDS table and the two server classes; the ipywidgets DOM classes
are the same in 7 and 8 (WIDGETS). Test files reach everything through these fixtures (importing
this module there would keep pytest from rewriting its asserts).

Each server and Chromium start once per session. Each test gets its own folder under the server's
root (``jupyter.folder``: a notebook of the repository is copied there before it is opened, so the
repository's file never changes) and its own folder of screenshots and browser console logs
(``jupyter.artifacts``, under ``$DREAMFRAME_ARTIFACTS`` or ``tests/artifacts/``; the servers' logs
are ``jupyterlab.log`` and ``notebook6.log`` there). The tests skip, saying why, when playwright or
Chromium is missing, when JupyterLab or ipywidgets 8 is missing (``lab``: ipywidgets 7's front
end does not load in JupyterLab 4), and when the classic Notebook 6 with widgetsnbextension
enabled is missing (``classic``). ``.ci/run`` installs them: ipywidgets 8 and JupyterLab in the
main environment, Colab's notebook 6.5.7 and ipywidgets 7.7.1 in a second one.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# Debian's Chromium, started so that it never reaches for the (closed) network.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 1400}

# Timeouts, in seconds: generous, but every wait ends.
SERVER_START = 60.0
PAGE_LOAD = 60.0
KERNEL_IDLE = 60.0
RUN_ALL = 180.0
ACTION = 30.0  # Playwright's default for clicks, fills and expect() in these tests

# ipywidgets' DOM, the same in 7 (widgetsnbextension 3, the classic Notebook) and 8 (JupyterLab 4):
# kind -> (CSS class of the widget's outer element, the element in it that a person acts on or
# reads; None: the outer element itself).
WIDGETS: dict[str, tuple[str, str | None]] = {
    "field": (".widget-inline-hbox", "input, textarea, select"),  # any of the next kinds
    "textarea": (".widget-textarea", "textarea"),
    "text": (".widget-text:has(> input[type=text])", "input"),
    "number": (".widget-text:has(> input[type=number])", "input"),  # Int/FloatText, Bounded*
    "html": (".widget-html", ".widget-html-content"),
    "label": ("div.widget-label", None),  # the Label widget (not a description's <label>)
    "button": (".widget-button", None),
    "toggle": (".widget-toggle-button", None),
    "checkbox": (".widget-checkbox", "input[type=checkbox]"),
    "dropdown": (".widget-dropdown", "select"),
    "slider": (".widget-slider", ".widget-readout"),  # fill() the readout: it presses Enter
    "image": (".widget-image", None),
    "output": (".widget-output", None),
    "box": (".widget-box", None),
    "accordion": (".widget-accordion", None),
}
LABELS = ".widget-label, .widget-label-basic"  # where ipywidgets writes a `description`
# An Accordion section's title bar (8, then 7); the section follows it, lm-mod-hidden when folded.
COLLAPSE_HEADER = ".jupyter-widget-Collapse-header, .p-Collapse-header"

# The classic Notebook's page: Jupyter.notebook when it shows the notebook at `path`.
_CLASSIC = """
const J = window.Jupyter;
const nbOf = (path) => (J && J.notebook && J.notebook.notebook_path === path) ? J.notebook : null;
"""

# JupyterLab (started with --expose-app-in-browser): the notebook panel of a path, its commands.
_LAB = """
const app = window.jupyterapp;
const panelOf = (path) => {
  if (!app || !app.shell) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.sessionContext) return w;
  }
  return null;
};
const command = async (path, name) => {
  app.shell.activateById(panelOf(path).id);
  return await app.commands.execute(name);
};
"""


@dataclass(frozen=True)
class FrontEnd:
    """What the driver does differently in one front end. The JavaScript entries are functions
    of one argument (the notebook's path, or [path, ...]), evaluated after `prelude`."""

    name: str  # the fixture's name and the test id's suffix
    title: str  # for messages
    log: str  # the server's log, in the artifacts folder
    url: str  # a notebook's page: a format of `path`, `query` (the token) and `workspace`
    notebook: str  # CSS: the element that holds the cells and their outputs
    output: str  # CSS: one output of a cell (a stream, a result, a widget view)
    prelude: str
    init_script: str | None  # run in the page before its own scripts
    loaded: str  # truthy once the notebook is loaded and its kernel connected
    widgets_ready: str | None  # truthy once ipywidgets' front end takes the kernel's widgets
    after_open: str | None  # run once after loading (e.g. autosave off)
    idle: str  # truthy when the kernel is idle and no cell runs or waits
    command: str  # [path, name] -> run a named command/action of the front end
    run_all: str
    run_cell: str  # [path, index]; index -1: the last cell
    errors: str  # [path, index or null] -> ['Name: message', ...]
    save: str  # resolves once the notebook is written
    saved: str  # truthy when the notebook has no unsaved changes


LAB = FrontEnd(
    name="lab", title="JupyterLab", log="jupyterlab.log",
    url="/lab/workspaces/{workspace}/tree/{path}?{query}",
    notebook=".jp-NotebookPanel .jp-Notebook", output=".jp-OutputArea-output",
    prelude=_LAB,
    init_script=None,
    loaded="(path) => panelOf(path) && panelOf(path).context.isReady",
    widgets_ready=None,  # the widget manager comes with the notebook panel
    after_open=None,  # autosave is off in LAB_SETTINGS
    idle="""(path) => {
        const w = panelOf(path);
        const kernel = w && w.sessionContext.session && w.sessionContext.session.kernel;
        if (!kernel || !w.sessionContext.isReady || kernel.status !== 'idle'
            || kernel.connectionStatus !== 'connected') return false;
        return ![...w.node.querySelectorAll('.jp-InputPrompt')]
          .some((p) => p.textContent.includes('*'));
    }""",
    command="async ([path, name]) => await command(path, name)",
    run_all="async (path) => { await command(path, 'notebook:run-all-cells'); }",
    run_cell="""async ([path, index]) => {
        const notebook = panelOf(path).content;
        notebook.activeCellIndex = index < 0 ? notebook.widgets.length + index : index;
        notebook.deselectAll();
        await command(path, 'notebook:run-cell');
    }""",
    errors="""([path, index]) => {
        let cells = panelOf(path).content.widgets;
        if (index !== null) cells = [cells.at(index)];
        return cells.filter((cell) => cell.model.type === 'code')
          .flatMap((cell) => cell.model.outputs.toJSON())
          .filter((out) => out.output_type === 'error')
          .map((out) => `${out.ename}: ${out.evalue}`);
    }""",
    save="async (path) => { await command(path, 'docmanager:save'); }",
    saved="(path) => !panelOf(path).context.model.dirty",
)

CLASSIC = FrontEnd(
    name="classic", title="the classic Notebook 6", log="notebook6.log",
    url="/notebooks/{path}?{query}",
    notebook="#notebook-container", output=".output_subarea",
    prelude=_CLASSIC,
    # No "migrate to Notebook 7" bar over the page: notebook 6.5.7 hides it for good once a
    # person has said so (its --NotebookApp.show_banner=False throws on every page instead).
    init_script="localStorage.setItem('showNotebookNews', 'false');",
    loaded="""(path) => {
        const nb = nbOf(path);
        return nb && nb._fully_loaded && nb.kernel && nb.kernel.is_connected();
    }""",
    # widgetsnbextension registers the comm target of ipywidgets' models on each kernel, then asks
    # the kernel for its widgets; once that answer is in, it re-renders every output that shows a
    # widget, and a view shown before (a cell run meanwhile) is removed for good. So the driver
    # waits for the answer to a request of its own, sent after the manager's (the kernel answers
    # in order; ClassicNotebookServer's kernels import ipywidgets at start, so the manager's
    # request is the one-message "jupyter.widget.control" comm and not a slower fallback).
    widgets_ready="""(path) => {
        const kernel = nbOf(path).kernel;
        if (!(kernel.comm_manager && kernel.comm_manager.targets['jupyter.widget'])) return false;
        if (kernel.dreamframeAnswered === undefined) {
          kernel.dreamframeAnswered = false;
          kernel.comm_info('jupyter.widget', () => { kernel.dreamframeAnswered = true; });
        }
        return kernel.dreamframeAnswered;
    }""",
    after_open="(path) => { nbOf(path).set_autosave_interval(0); }",
    idle="""(path) => {
        const nb = nbOf(path);
        if (!nb || !nb.kernel || !nb.kernel.is_connected()) return false;
        if (!document.querySelector('#kernel_indicator_icon.kernel_idle_icon')) return false;
        return !nb.get_cells().some((cell) => cell.element[0].classList.contains('running')
          || (cell.cell_type === 'code' && cell.input_prompt_number === '*'));
    }""",
    command="([path, name]) => { J.actions.call(name); }",
    run_all="(path) => { nbOf(path).execute_all_cells(); }",
    run_cell="""([path, index]) => {
        const nb = nbOf(path);
        nb.execute_cells([index < 0 ? nb.ncells() + index : index]);
    }""",
    errors="""([path, index]) => {
        let cells = nbOf(path).get_cells();
        if (index !== null) cells = [cells.at(index)];
        return cells.filter((cell) => cell.cell_type === 'code')
          .flatMap((cell) => cell.output_area.outputs)
          .filter((out) => out.output_type === 'error')
          .map((out) => `${out.ename}: ${out.evalue}`);
    }""",
    save="async (path) => { await nbOf(path).save_notebook(); }",
    saved="(path) => !nbOf(path).dirty",
)
FRONT_ENDS = {front.name: front for front in (LAB, CLASSIC)}

# JupyterLab user settings: no news, update checks or extension manager (no network), kernels
# start without asking, every cell in the page (no windowing), no autosave behind a test's back.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                    "checkForUpdates": False},
    "@jupyterlab/extensionmanager-extension/plugin": {"enabled": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none",
                                               "autoStartDefaultKernel": True},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
}


def chromium_path() -> str | None:
    """The Chromium to drive: $DREAMFRAME_CHROMIUM, else `chromium` on PATH; None if absent."""
    given = os.environ.get("DREAMFRAME_CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which("chromium")


def version_of(package: str) -> str | None:
    """The installed version of a distribution, or None if it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def browser_missing() -> str | None:
    """Why Playwright cannot drive Chromium here, or None when it can."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    if chromium_path() is None:
        return "Chromium is not installed (apt-get install -y chromium; .ci/run does it)"
    return None


def lab_missing() -> str | None:
    """Why the JupyterLab tests cannot run here, or None when they can."""
    widgets = version_of("ipywidgets")
    if widgets is not None and int(widgets.split(".")[0]) < 8:
        return (f"ipywidgets {widgets} is installed: its front end does not load in JupyterLab 4 "
                "(the classic Notebook 6 tests run ipywidgets 7)")
    for module, package in (("jupyterlab", "jupyterlab"), ("jupyterlab_widgets", "ipywidgets>=8")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install -r requirements-dev.txt)"
    return browser_missing()


def classic_missing() -> str | None:
    """Why the classic Notebook 6 tests cannot run here, or None when they can (whether
    widgetsnbextension is enabled, the running server says: ClassicNotebookServer.broken)."""
    notebook = version_of("notebook")
    if notebook is None or not notebook.startswith("6."):
        found = f"notebook {notebook} is installed" if notebook else "notebook is not installed"
        return (f"the classic Notebook 6 is not installed ({found}): pip install notebook==6.5.7 "
                "widgetsnbextension==3.6.10 ipywidgets==7.7.1, Colab's versions")
    if version_of("widgetsnbextension") is None:
        return "widgetsnbextension (ipywidgets' classic-notebook front end) is not installed"
    return browser_missing()


def artifacts_root() -> Path:
    """Where screenshots and logs go: $DREAMFRAME_ARTIFACTS, else tests/artifacts/."""
    return Path(os.environ.get("DREAMFRAME_ARTIFACTS") or REPO / "tests" / "artifacts")


def safe_name(text: str) -> str:
    """A file-name-safe form of a test id or a step name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:120] or "x"


def wait_until(probe: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy, and return it; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def read_json(path: Path) -> Any:
    """The JSON in `path`, or None while it is missing or half written."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServer:
    """A Jupyter server on 127.0.0.1 with a random token, isolated from ~/.jupyter, its kernels
    on this interpreter. A subclass says how to start its front end."""

    front: ClassVar[FrontEnd]

    def __init__(self, root: Path, state: Path, log: Path, env: dict[str, str] | None = None):
        self.root, self.state, self.log = root, state, log
        self.extra_env = env or {}
        self.token = secrets.token_hex(16)
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The server's base URL, without the token."""
        return f"http://127.0.0.1:{self.port}"

    def _configure(self) -> None:
        """Write the front end's own settings into the state folder."""

    def _prepare(self) -> dict[str, str]:
        """Write the kernelspec and settings into the state folder; the environment to run in."""
        kernels = self.state / "path" / "kernels" / "python3"
        kernels.mkdir(parents=True, exist_ok=True)
        # This interpreter (the venv's, where `pip install -e .` put helpers), not any python3.
        (kernels / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)", "language": "python",
            "metadata": {"debugger": False},
        }))
        self._configure()
        env = dict(os.environ)
        for variable in ("JUPYTER_TOKEN", "JUPYTER_CONFIG_PATH", "JUPYTER_PREFER_ENV_PATH"):
            env.pop(variable, None)
        # The environment's own data and config (sys.prefix/share|etc/jupyter: nbextensions,
        # labextensions, nbconfig) stay in the search paths; the user's do not.
        env.update({
            "JUPYTER_PATH": str(self.state / "path"),  # first in the data path: our kernelspec
            "JUPYTER_DATA_DIR": str(self.state / "data"),  # not ~/.local/share/jupyter
            "JUPYTER_CONFIG_DIR": str(self.state / "config"),  # not ~/.jupyter
            "JUPYTER_RUNTIME_DIR": str(self.state / "runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "IPYTHONDIR": str(self.state / "ipython"),
            "PYTHONUNBUFFERED": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # ipykernel 6's debugger: no frozen-modules note
            **self.extra_env,
        })
        return env

    def command(self) -> list[str]:
        """The command line that starts the server on self.port."""
        raise NotImplementedError

    def _serve(self, module: str, app: str, token: str, root: str, *extra: str) -> list[str]:
        """`python -m module` on 127.0.0.1:port with our token and root, no browser, no
        terminals, quiet; `app` names the server application's options (they differ between
        jupyter_server and Notebook 6), `extra` the front end's own."""
        return [
            sys.executable, "-m", module, "--no-browser",
            "--ip=127.0.0.1", f"--port={self.port}", f"--{app}.port_retries=0",
            f"--{token}={self.token}", f"--{app}.{root}={self.root}",
            f"--{app}.terminals_enabled=False", *extra, "--log-level=WARN",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        ]

    def start(self, timeout: float = SERVER_START) -> JupyterServer:
        """Start the server and wait until /api/status answers (a new port if one was taken)."""
        env = self._prepare()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            self.port = free_port()
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(self.command(), cwd=self.root, env=env,
                                                stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            while self.process.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    if "started" in self.api("GET", "status", timeout=2):
                        return self
                time.sleep(0.1)
            if self.process.poll() is None:
                self.stop()
                break
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.front.title} did not start (log {self.log}):\n{tail}")

    def _request(self, method: str, path: str, timeout: float) -> bytes:
        """The body of the answer to `method` on the server's `path`, with the token."""
        request = urllib.request.Request(f"{self.url}/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.read()

    def api(self, method: str, path: str, timeout: float = 10) -> Any:
        """Call the server's REST API (/api/<path>) with the token; the answer's JSON."""
        body = self._request(method, f"api/{path}", timeout)
        return json.loads(body) if body else None

    def shutdown_kernels(self, path: str) -> None:
        """End the kernel sessions of a notebook (its path relative to the root)."""
        with contextlib.suppress(OSError):
            for session in self.api("GET", "sessions"):
                if session.get("path") == path:
                    self.api("DELETE", f"sessions/{session['id']}")

    def stop(self, timeout: float = 20.0) -> None:
        """Shut the server down cleanly (kernels too), then end it if it does not exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(OSError):
            self.api("POST", "shutdown", timeout=5)
        for stop in (None, process.terminate, process.kill):
            if stop:
                stop()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
                return


class JupyterLabServer(JupyterServer):
    """JupyterLab 4 (jupyter_server), its settings in the state folder."""

    front = LAB

    def _configure(self) -> None:
        for name, values in LAB_SETTINGS.items():
            file = self.state / "settings" / f"{name}.jupyterlab-settings"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(json.dumps(values))

    def command(self) -> list[str]:
        return self._serve(
            "jupyterlab", "ServerApp", "IdentityProvider.token", "root_dir",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            f"--LabApp.user_settings_dir={self.state / 'settings'}",
            f"--LabApp.workspaces_dir={self.state / 'workspaces'}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, for its commands
        )


class ClassicNotebookServer(JupyterServer):
    """The classic Notebook 6 (`python -m notebook`, its own tornado server), with the
    nbextensions its environment enables (widgetsnbextension: ipywidgets 7's front end)."""

    front = CLASSIC
    WIDGETS_EXTENSION = "jupyter-js-widgets/extension"

    def _configure(self) -> None:
        # Notebook 6 loads every server extension its environment enables; JupyterLab 4's, when
        # it is installed beside, fails there (it needs jupyter_server) and fills the log.
        config = self.state / "config" / "jupyter_notebook_config.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        off = {"NotebookApp": {"nbserver_extensions": {"jupyterlab": False}}}
        config.write_text(json.dumps(off))
        # ipywidgets registers its "jupyter.widget.control" comm target when imported: imported at
        # the kernel's start, the widget manager gets the kernel's widgets in one message, before
        # any cell runs (see CLASSIC.widgets_ready).
        startup = self.state / "ipython" / "profile_default" / "startup" / "00-ipywidgets.py"
        startup.parent.mkdir(parents=True, exist_ok=True)
        startup.write_text("import ipywidgets  # noqa: F401\n")

    def command(self) -> list[str]:
        return self._serve("notebook", "NotebookApp", "NotebookApp.token", "notebook_dir")

    def broken(self) -> str | None:
        """Why ipywidgets' front end will not load in this server's pages, or None: the
        merged nbconfig must enable widgetsnbextension and its script must be served."""
        enabled = (self.api("GET", "config/notebook") or {}).get("load_extensions", {})
        if not enabled.get(self.WIDGETS_EXTENSION):
            return (f"widgetsnbextension is not enabled in the classic Notebook ({sys.prefix}: "
                    "`jupyter nbextension list` does not show jupyter-js-widgets/extension "
                    "enabled): jupyter nbextension enable --py widgetsnbextension --sys-prefix")
        try:
            self._request("GET", f"nbextensions/{self.WIDGETS_EXTENSION}.js", timeout=10)
        except urllib.error.HTTPError as error:
            return (f"widgetsnbextension is enabled but its script is not served ({error}): "
                    "jupyter nbextension install --py widgetsnbextension --sys-prefix")
        return None


class Notebook:
    """A notebook open in its own browser page, in JupyterLab or the classic Notebook."""

    def __init__(self, jupyter: Jupyter, page: Any, path: str):
        self.jupyter, self.page, self.path = jupyter, page, path
        self.front = jupyter.server.front
        self.root = page.locator(self.front.notebook)  # the cells and outputs
        self.console: list[str] = []  # the browser's console, as 'type: text' lines

    def _js(self, body: str, arg: Any = None) -> Any:
        """Evaluate `body` (a function of `arg`; the front end's prelude is in scope) in the
        page, awaiting it when it is async."""
        return self.page.evaluate(
            f"async (arg) => {{ {self.front.prelude} return await ({body})(arg); }}", arg)

    def _wait_js(self, condition: str, timeout: float, what: str) -> Any:
        """Wait until `condition` (a function of the notebook's path) is truthy in the page."""
        try:
            handle = self.page.wait_for_function(
                f"(path) => {{ {self.front.prelude} return ({condition})(path); }}",
                arg=self.path, timeout=timeout * 1000, polling=100)
            return handle.json_value()
        except Exception as error:  # mostly Playwright's TimeoutError: say what we waited for
            self.snap(f"gave-up-on-{what}")
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise AssertionError(f"waiting {timeout:.0f} s at most for {what} in {self.path} "
                                 f"({self.front.title}): {first}") from error

    def _act(self, body: str, arg: Any, timeout: float, what: str) -> Any:
        """Run the front end's action `body` on `arg`, `timeout` s at most; its result when a
        boolean, number or string. Fails, with a screenshot, when it throws or takes longer."""
        result = self._js(f"""async (arg) => {{
            const late = new Promise((_, no) => setTimeout(() => no(new Error('timeout')),
                                                           {timeout * 1000:.0f}));
            try {{
              const value = await Promise.race([({body})(arg), late]);
              return {{value: ['boolean', 'number', 'string'].includes(typeof value) ? value
                                                                                   : null}};
            }} catch (e) {{ return {{error: String(e)}}; }}
        }}""", arg)
        if "error" in result:
            self.snap(f"failed-{what}")
            raise AssertionError(f"{what} on {self.path} ({self.front.title}): {result['error']}")
        return result.get("value")

    def open(self) -> Notebook:
        """Load the notebook's page; wait until its kernel (and, in the classic Notebook,
        ipywidgets' front end) is ready and idle."""
        self.page.goto(self.jupyter.server.url + self.url(), wait_until="domcontentloaded",
                       timeout=PAGE_LOAD * 1000)
        self._wait_js(self.front.loaded, PAGE_LOAD, "the notebook to load")
        if self.front.widgets_ready:
            self._wait_js(self.front.widgets_ready, PAGE_LOAD, "ipywidgets' front end")
        if self.front.after_open:
            self._js(self.front.after_open, self.path)
        self.wait_kernel_idle()
        return self

    def url(self) -> str:
        """The notebook's URL (with the token); in JupyterLab, in a workspace no other page
        uses."""
        return self.front.url.format(
            path=urllib.parse.quote(self.path),
            query=urllib.parse.urlencode({"token": self.jupyter.server.token}),
            workspace=safe_name(f"{self.jupyter.artifacts.name}-{self.jupyter.opened}"))

    def wait_kernel_idle(self, timeout: float = KERNEL_IDLE) -> None:
        """Wait until the kernel is connected and idle and no cell shows [*]."""
        self._wait_js(self.front.idle, timeout, "the kernel to be idle")

    def command(self, name: str, timeout: float = ACTION) -> Any:
        """Run a command of the front end on this notebook (JupyterLab: e.g.
        'notebook:run-all-cells', awaited; classic: an action, e.g.
        'jupyter-notebook:run-all-cells'); its result when a boolean, number or string."""
        return self._act(self.front.command, [self.path, name], timeout, name)

    def run_all(self, timeout: float = RUN_ALL, check: bool = True) -> list[str]:
        """Run all cells (Run All Cells), wait until they finish; fail on a cell's error
        unless `check` is False. The errors, as 'Name: message' lines."""
        self._act(self.front.run_all, self.path, timeout, "run all cells")
        self.wait_kernel_idle(timeout)
        errors = self.errors()
        if check and errors:
            self.snap("run-all-errors")
            raise AssertionError(f"{self.path}: a cell failed:\n" + "\n".join(errors))
        return errors

    def run_cell(self, index: int, timeout: float = RUN_ALL, check: bool = True) -> list[str]:
        """Run one cell (counting every cell from 0, markdown too; -1: the last) and wait until
        it finishes; fail on its error unless `check` is False. Its errors."""
        self._act(self.front.run_cell, [self.path, index], timeout, f"run cell {index}")
        self.wait_kernel_idle(timeout)
        errors = self.errors(index)
        if check and errors:
            self.snap("run-cell-errors")
            raise AssertionError(f"{self.path}: cell {index} failed:\n" + "\n".join(errors))
        return errors

    def errors(self, index: int | None = None) -> list[str]:
        """The error outputs of the code cells (of cell `index` only, if given; -1: the last),
        as 'Name: message' lines."""
        return self._js(self.front.errors, [self.path, index])

    def console_errors(self) -> list[str]:
        """The browser console's errors and the page's uncaught exceptions so far (a widget
        the front end could not build shows here, not on the page)."""
        return [line for line in self.console if line.startswith(("error:", "pageerror:"))]

    def save(self, timeout: float = ACTION) -> None:
        """Save the notebook (File > Save) and wait until it is written."""
        self._act(self.front.save, self.path, timeout, "save")
        self._wait_js(self.front.saved, timeout, "the save")

    def locator(self, css: str) -> Any:
        """Elements of the notebook (cells and outputs) that match a CSS selector."""
        return self.root.locator(css)

    def outputs(self) -> Any:
        """The outputs of all cells (streams, results, errors, widget views), in order."""
        return self.root.locator(self.front.output)

    def widget(self, kind: str, *, cls: str | None = None, description: str | None = None,
               index: int = 0) -> Any:
        """The `index`-th ipywidget of a kind (a key of WIDGETS) in the outputs, optionally
        with a CSS class given by `add_class` and/or its exact `description`, as a Locator.
        Kind "field" is any text, textarea, number, dropdown or checkbox: name `cls` with it."""
        outer, inner = WIDGETS[kind]
        found = self.root.locator(f"{outer}.{cls}" if cls else outer)
        if description is not None:
            exact = re.compile(rf"^\s*{re.escape(description)}\s*$")
            found = (found.filter(has_text=exact) if inner is None else
                     found.filter(has=self.page.locator(LABELS, has_text=exact)))
        found = found.nth(index)
        return found.locator(inner).first if inner else found

    def unfold(self, title: str, index: int = 0) -> None:
        """Open the Accordion section titled `title` (if it is closed), so its widgets show."""
        header = self.root.locator(COLLAPSE_HEADER).filter(
            has_text=re.compile(rf"^\s*{re.escape(title)}\s*$")).nth(index)
        contents = header.locator("xpath=following-sibling::*[1]")
        if "lm-mod-hidden" in (contents.get_attribute("class") or ""):
            header.click()
        contents.wait_for(state="visible")

    def fill(self, target: Any, text: str, typing: bool = False) -> None:
        """Put `text` into a text widget as a person would: filled at once, or typed key by key
        (`typing`); an `input` event per change (continuous_update) and a `change` at the end."""
        target.scroll_into_view_if_needed()
        if typing:
            target.fill("")
            target.press_sequentially(text)
        else:
            target.fill(text)
        if target.evaluate("(e) => e.isContentEditable"):
            target.press("Enter")  # a slider's readout takes its text on Enter
        else:  # what leaving the field fires: how continuous_update=False widgets take it
            target.dispatch_event("change")

    def style(self, target: Any, prop: str) -> str:
        """The computed CSS value of `prop` (e.g. 'color' -> 'rgb(255, 0, 0)') on an element."""
        return target.evaluate("(e, prop) => getComputedStyle(e).getPropertyValue(prop)", prop)

    def snap(self, name: str, target: Any = None) -> Path | None:
        """Save a screenshot of the page (after scrolling `target` into view) as an artifact."""
        self.jupyter.shots += 1
        path = self.jupyter.artifacts / f"{self.jupyter.shots:02d}-{safe_name(name)}.png"
        try:
            if target is not None:
                target.scroll_into_view_if_needed(timeout=5000)
            self.page.screenshot(path=str(path), timeout=15000)
        except Exception:  # a screenshot must never hide the failure it documents
            return None
        return path


class Jupyter:
    """One test's view of a session's Jupyter server (JupyterLab or the classic Notebook) and
    Chromium: its folder, its artifacts, the notebooks it opens."""

    def __init__(self, server: JupyterServer, browser: Any, folder: Path, artifacts: Path):
        self.server, self.browser = server, browser
        self.folder, self.artifacts = folder, artifacts
        self.front = server.front
        self.shots = 0
        self.opened = 0

    def place(self, path: str | Path, parameters: dict[str, Any] | None = None) -> str:
        """The notebook's path relative to the server's root: a path in this test's folder, or
        a repository file copied there; `parameters` are set after its `parameters` cell."""
        path = Path(path)
        if path.is_absolute():
            with contextlib.suppress(ValueError):
                path = path.relative_to(self.folder)
        if path.is_absolute():
            target = self.folder / path.name
            shutil.copyfile(path, target)
        else:
            target = self.folder / path
            if not target.exists():
                if not (REPO / path).is_file():
                    raise FileNotFoundError(f"no notebook {path} in {self.folder} or {REPO}")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(REPO / path, target)
        if parameters:
            inject_parameters(target, parameters)
        return target.relative_to(self.server.root).as_posix()

    def wait_for_json(self, path: str | Path, timeout: float = ACTION,
                      until: Callable[[Any], bool] | None = None) -> Any:
        """The JSON of a file (relative to this test's folder) once it is there and complete,
        and, with `until`, once `until(json)` holds (a file written before is not yet it)."""
        file = self.folder / path
        seen: list[Any] = [None]

        def probe() -> Any:
            seen[0] = read_json(file)
            return seen[0] is not None and (until is None or until(seen[0])) and seen[0]

        try:
            return wait_until(probe, timeout, f"{file.name} to be written")
        except AssertionError as error:
            if until is None or seen[0] is None:
                raise
            raise AssertionError(f"{error}; it holds {json.dumps(seen[0])[:500]}") from None

    @contextlib.contextmanager
    def notebook(self, path: str | Path, parameters: dict[str, Any] | None = None,
                 ) -> Iterator[Notebook]:
        """Open a notebook in a new browser page and wait for its idle kernel; on the way out,
        a screenshot if the test failed, the browser's console log, the kernel shut down."""
        relative = self.place(path, parameters)
        self.opened += 1
        self.artifacts.mkdir(parents=True, exist_ok=True)
        context = self.browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(ACTION * 1000)
        if self.front.init_script:
            context.add_init_script(self.front.init_script)
        page = context.new_page()
        notebook = Notebook(self, page, relative)
        page.on("console", lambda m: notebook.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: notebook.console.append(f"pageerror: {e}"))
        try:
            yield notebook.open()
        except BaseException:
            notebook.snap("failure")
            raise
        finally:
            log = self.artifacts / f"console-{self.opened}.log"
            log.write_text("".join(line + "\n" for line in notebook.console))
            with contextlib.suppress(Exception):  # a browser that died has nothing to close
                context.close()
            self.server.shutdown_kernels(relative)


def inject_parameters(path: Path, parameters: dict[str, Any]) -> None:
    """Put a cell setting `parameters` after the notebook's `parameters`-tagged cell (at the top
    if it has none), as papermill does."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    source = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    tagged = [i for i, c in enumerate(notebook.cells)
              if "parameters" in c.get("metadata", {}).get("tags", [])]
    notebook.cells.insert(tagged[0] + 1 if tagged else 0, cell)
    nbformat.write(notebook, path)


# --- fixtures (pytest_plugins = ["browser"] in a test file) ------------------------------------


def serve(kind: type[JupyterServer], tmp_path_factory, session_cache) -> Iterator[JupyterServer]:
    """Start a server of `kind` for the session (its log in the artifacts), stop it after."""
    name = kind.front.name
    root = tmp_path_factory.mktemp(f"{name}-root")
    env = {"DREAMFRAME_CACHE": str(session_cache), "HF_HUB_OFFLINE": "1"}
    server = kind(root, tmp_path_factory.mktemp(f"{name}-state"),
                  artifacts_root() / kind.front.log, env=env)
    server.log.unlink(missing_ok=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def unavailable(reason: str, front: str) -> None:
    """Skip with `reason`; fail instead where $DREAMFRAME_REQUIRE_BROWSER names this front end
    (`lab`, `classic`, comma-separated), as CI does, so a broken environment cannot pass by
    skipping."""
    required = os.environ.get("DREAMFRAME_REQUIRE_BROWSER", "").split(",")
    if front in required or (front == "chromium" and any(required)):
        pytest.fail(f"the {front} browser tests must run here ($DREAMFRAME_REQUIRE_BROWSER), "
                    f"but: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def jupyterlab_server(tmp_path_factory, session_cache) -> Iterator[JupyterServer]:
    """JupyterLab on 127.0.0.1 for the whole session, its kernels on this venv's Python."""
    reason = lab_missing()
    if reason:
        unavailable(reason, "lab")
    yield from serve(JupyterLabServer, tmp_path_factory, session_cache)


@pytest.fixture(scope="session")
def classic_server(tmp_path_factory, session_cache) -> Iterator[JupyterServer]:
    """The classic Notebook 6 on 127.0.0.1 for the whole session, its kernels on this venv's
    Python; skips when widgetsnbextension is not enabled there (it never enables it)."""
    reason = classic_missing()
    if reason:
        unavailable(reason, "classic")
    servers = serve(ClassicNotebookServer, tmp_path_factory, session_cache)
    server = next(servers)
    try:
        reason = server.broken()
        if reason:
            unavailable(reason, "classic")
        yield server
    finally:
        servers.close()  # stops the server


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright, headless, in a fresh empty profile."""
    reason = browser_missing()
    if reason:
        unavailable(reason, "chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives every launch a new empty user data dir and deletes it at close.
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                             args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


def for_test(server: JupyterServer, browser: Any, request) -> Jupyter:
    """A test's Jupyter: a fresh folder under the server's root and a fresh artifacts folder."""
    from playwright.sync_api import expect

    expect.set_options(timeout=ACTION * 1000)
    name = safe_name(request.node.nodeid.removeprefix("tests/").replace(".py::", "-"))
    folder = server.root / name
    folder.mkdir(parents=True, exist_ok=True)
    artifacts = artifacts_root() / name
    shutil.rmtree(artifacts, ignore_errors=True)
    return Jupyter(server, browser, folder, artifacts)


@pytest.fixture
def lab(jupyterlab_server, chromium_browser, request) -> Jupyter:
    """This test's JupyterLab 4 (ipywidgets 8)."""
    return for_test(jupyterlab_server, chromium_browser, request)


@pytest.fixture
def classic(classic_server, chromium_browser, request) -> Jupyter:
    """This test's classic Notebook 6 (ipywidgets 7, as on Colab)."""
    return for_test(classic_server, chromium_browser, request)


@pytest.fixture(params=list(FRONT_ENDS))
def jupyter(request) -> Jupyter:
    """This test's front end, once each: JupyterLab ([lab]) and the classic Notebook
    ([classic]); each skips, saying why, where this environment cannot run it."""
    return request.getfixturevalue(request.param)
