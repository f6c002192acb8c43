"""Real-browser tests of notebooks: JupyterLab on 127.0.0.1, driven through Debian's Chromium by
Playwright. Not a test file: a test file brings its fixtures in with ``pytest_plugins``::

    import pytest

    pytest_plugins = ["browser"]

    @pytest.mark.browser
    def test_the_form(lab, tmp_path):
        from playwright.sync_api import expect

        with lab.notebook("notebooks/3_parameters.ipynb",
                          parameters={"workspace": str(tmp_path), "test_models": True}) as nb:
            nb.run_all()
            nb.fill(nb.widget("field", cls="dreamframe-prompt"), "desert:50 | snow:25")
            expect(nb.widget("html", cls="dreamframe-prompt-preview")).to_contain_text("snow")
            nb.snap("typed")

Test files reach everything through the ``lab`` fixture (importing this module there would keep
pytest from rewriting its asserts). JupyterLab and Chromium start once per session. Each test
gets its own folder under the server's root (``lab.folder``: a notebook of the repository is
copied there before it is opened, so the repository's file never changes) and its own folder of
screenshots and browser console logs (``lab.artifacts``, under ``$DREAMFRAME_ARTIFACTS`` or
``tests/artifacts/``; the server's log is ``jupyterlab.log`` there). The tests skip, saying why,
when playwright, jupyterlab or Chromium is missing; ``.ci/run`` installs all three.
"""

from __future__ import annotations

import contextlib
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
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

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

# ipywidgets 8 in JupyterLab 4: kind -> (CSS class of the widget's outer element, the element in
# it that a person acts on or reads; None: the outer element itself).
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
LABELS = ".widget-label, .widget-label-basic"  # where ipywidgets 8 writes a `description`

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

# In the page (JupyterLab started with --expose-app-in-browser): the notebook panel of a path.
_PANEL = """
const app = window.jupyterapp;
const panelOf = (path) => {
  if (!app || !app.shell) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.sessionContext) return w;
  }
  return null;
};
"""


def chromium_path() -> str | None:
    """The Chromium to drive: $DREAMFRAME_CHROMIUM, else `chromium` on PATH; None if absent."""
    given = os.environ.get("DREAMFRAME_CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which("chromium")


def missing() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab"),
                            ("jupyterlab_widgets", "ipywidgets>=8")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install -r requirements-dev.txt)"
    if chromium_path() is None:
        return "Chromium is not installed (apt-get install -y chromium; .ci/run does it)"
    return None


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


class JupyterLabServer:
    """A JupyterLab server on 127.0.0.1 with a random token, isolated from ~/.jupyter."""

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
        for name, values in LAB_SETTINGS.items():
            file = self.state / "settings" / f"{name}.jupyterlab-settings"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(json.dumps(values))
        env = dict(os.environ)
        for variable in ("JUPYTER_TOKEN", "JUPYTER_CONFIG_PATH", "JUPYTER_PREFER_ENV_PATH"):
            env.pop(variable, None)
        env.update({
            "JUPYTER_PATH": str(self.state / "path"),  # first in the data path: our kernelspec
            "JUPYTER_DATA_DIR": str(self.state / "data"),  # not ~/.local/share/jupyter
            "JUPYTER_CONFIG_DIR": str(self.state / "config"),  # not ~/.jupyter
            "JUPYTER_RUNTIME_DIR": str(self.state / "runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "IPYTHONDIR": str(self.state / "ipython"),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        })
        return env

    def command(self) -> list[str]:
        """The command line that starts the server on self.port."""
        return [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.terminals_enabled=False",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            f"--LabApp.user_settings_dir={self.state / 'settings'}",
            f"--LabApp.workspaces_dir={self.state / 'workspaces'}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, for its commands
            "--log-level=WARN",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        ]

    def start(self, timeout: float = SERVER_START) -> JupyterLabServer:
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
        raise RuntimeError(f"JupyterLab did not start (log {self.log}):\n{tail}")

    def api(self, method: str, path: str, timeout: float = 10) -> Any:
        """Call the server's REST API (/api/<path>) with the token; the answer's JSON."""
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = answer.read()
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


class Notebook:
    """A notebook open in JupyterLab in its own browser page."""

    def __init__(self, lab: Lab, page: Any, path: str):
        self.lab, self.page, self.path = lab, page, path
        self.root = page.locator(".jp-NotebookPanel .jp-Notebook")  # the cells and outputs

    def _js(self, body: str, arg: Any = None) -> Any:
        """Evaluate `body` (a function of `arg`; `panelOf(path)` is in scope) in the page."""
        return self.page.evaluate(f"(arg) => {{ {_PANEL} return ({body})(arg); }}", arg)

    def _wait_js(self, condition: str, timeout: float, what: str) -> Any:
        """Wait until `condition` (a function of the notebook's path) is truthy in the page."""
        try:
            handle = self.page.wait_for_function(
                f"(path) => {{ {_PANEL} return ({condition})(path); }}", arg=self.path,
                timeout=timeout * 1000, polling=100)
            return handle.json_value()
        except Exception as error:  # mostly Playwright's TimeoutError: say what we waited for
            self.snap(f"gave-up-on-{what}")
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise AssertionError(f"waiting {timeout:.0f} s at most for {what} in {self.path}: "
                                 f"{first}") from error

    def open(self) -> Notebook:
        """Load the notebook's page in a workspace of its own; wait until its kernel is idle."""
        self.page.goto(self.lab.server.url + self.url(), wait_until="domcontentloaded",
                       timeout=PAGE_LOAD * 1000)
        self._wait_js("(path) => panelOf(path) && panelOf(path).context.isReady",
                      PAGE_LOAD, "the notebook to load")
        self.wait_kernel_idle()
        return self

    def url(self) -> str:
        """The notebook's JupyterLab URL (with the token), in a workspace no other page uses."""
        workspace = safe_name(f"{self.lab.artifacts.name}-{self.lab.opened}")
        query = urllib.parse.urlencode({"token": self.lab.server.token})
        return f"/lab/workspaces/{workspace}/tree/{urllib.parse.quote(self.path)}?{query}"

    def wait_kernel_idle(self, timeout: float = KERNEL_IDLE) -> None:
        """Wait until the kernel is connected and idle and no cell shows [*]."""
        self._wait_js("""(path) => {
            const w = panelOf(path);
            const kernel = w && w.sessionContext.session && w.sessionContext.session.kernel;
            if (!kernel || !w.sessionContext.isReady || kernel.status !== 'idle'
                || kernel.connectionStatus !== 'connected') return false;
            return ![...w.node.querySelectorAll('.jp-InputPrompt')]
              .some((p) => p.textContent.includes('*'));
        }""", timeout, "the kernel to be idle")

    def command(self, name: str, timeout: float = ACTION) -> Any:
        """Run a JupyterLab command (e.g. 'notebook:run-all-cells') on this notebook and wait
        for it to finish; its result when a boolean, number or string."""
        result = self._js("""async ([path, name, ms]) => {
            const w = panelOf(path);
            app.shell.activateById(w.id);
            const late = new Promise((_, no) => setTimeout(() => no(new Error('timeout')), ms));
            try {
              const value = await Promise.race([app.commands.execute(name), late]);
              return {value: ['boolean', 'number', 'string'].includes(typeof value) ? value : null};
            } catch (e) { return {error: String(e)}; }
        }""", [self.path, name, timeout * 1000])
        if "error" in result:
            self.snap(f"failed-{name}")
            raise AssertionError(f"{name} on {self.path}: {result['error']}")
        return result.get("value")

    def run_all(self, timeout: float = RUN_ALL, check: bool = True) -> list[str]:
        """Run all cells (Run > Run All Cells), wait until they finish; fail on a cell's error
        unless `check` is False. The errors, as 'Name: message' lines."""
        self.command("notebook:run-all-cells", timeout)
        self.wait_kernel_idle(timeout)
        errors = self.errors()
        if check and errors:
            self.snap("run-all-errors")
            raise AssertionError(f"{self.path}: a cell failed:\n" + "\n".join(errors))
        return errors

    def run_cell(self, index: int, timeout: float = RUN_ALL, check: bool = True) -> list[str]:
        """Run one cell (counting every cell from 0, markdown too; -1: the last) and wait until
        it finishes; fail on its error unless `check` is False. Its errors."""
        self._js("""([path, index]) => {
            const notebook = panelOf(path).content;
            notebook.activeCellIndex = index < 0 ? notebook.widgets.length + index : index;
            notebook.deselectAll();
        }""", [self.path, index])
        self.command("notebook:run-cell", timeout)
        self.wait_kernel_idle(timeout)
        errors = self.errors(index)
        if check and errors:
            self.snap("run-cell-errors")
            raise AssertionError(f"{self.path}: cell {index} failed:\n" + "\n".join(errors))
        return errors

    def errors(self, index: int | None = None) -> list[str]:
        """The error outputs of the code cells (of cell `index` only, if given; -1: the last),
        as 'Name: message' lines."""
        return self._js("""([path, index]) => {
            let cells = panelOf(path).content.widgets;
            if (index !== null) cells = [cells.at(index)];
            return cells.filter((cell) => cell.model.type === 'code')
              .flatMap((cell) => cell.model.outputs.toJSON())
              .filter((out) => out.output_type === 'error')
              .map((out) => `${out.ename}: ${out.evalue}`);
        }""", [self.path, index])

    def save(self, timeout: float = ACTION) -> None:
        """Save the notebook (File > Save) and wait until it is written."""
        self.command("docmanager:save", timeout)
        self._wait_js("(path) => !panelOf(path).context.model.dirty", timeout, "the save")

    def locator(self, css: str) -> Any:
        """Elements of the notebook (cells and outputs) that match a CSS selector."""
        return self.root.locator(css)

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
        header = self.root.locator(".jupyter-widget-Collapse-header").filter(
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
        self.lab.shots += 1
        path = self.lab.artifacts / f"{self.lab.shots:02d}-{safe_name(name)}.png"
        try:
            if target is not None:
                target.scroll_into_view_if_needed(timeout=5000)
            self.page.screenshot(path=str(path), timeout=15000)
        except Exception:  # a screenshot must never hide the failure it documents
            return None
        return path


class Lab:
    """One test's view of the session's JupyterLab and Chromium: its folder and artifacts."""

    def __init__(self, server: JupyterLabServer, browser: Any, folder: Path, artifacts: Path):
        self.server, self.browser = server, browser
        self.folder, self.artifacts = folder, artifacts
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

    def wait_for_json(self, path: str | Path, timeout: float = ACTION) -> Any:
        """The JSON of a file (relative to this test's folder) once it is there and complete."""
        file = self.folder / path
        return wait_until(lambda: read_json(file), timeout, f"{file.name} to be written")

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
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        notebook = Notebook(self, page, relative)
        try:
            yield notebook.open()
        except BaseException:
            notebook.snap("failure")
            raise
        finally:
            log = self.artifacts / f"console-{self.opened}.log"
            log.write_text("".join(line + "\n" for line in console))
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


@pytest.fixture(scope="session")
def jupyterlab_server(tmp_path_factory, session_cache) -> Iterator[JupyterLabServer]:
    """JupyterLab on 127.0.0.1 for the whole session, its kernels on this venv's Python."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("lab-root")
    env = {"DREAMFRAME_CACHE": str(session_cache), "HF_HUB_OFFLINE": "1"}
    server = JupyterLabServer(root, tmp_path_factory.mktemp("lab-state"),
                              artifacts_root() / "jupyterlab.log", env=env)
    server.log.unlink(missing_ok=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright, headless, in a fresh empty profile."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives every launch a new empty user data dir and deletes it at close.
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                             args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def lab(jupyterlab_server, chromium_browser, request) -> Lab:
    """This test's Lab: a fresh folder under the server's root and a fresh artifacts folder."""
    from playwright.sync_api import expect

    expect.set_options(timeout=ACTION * 1000)
    name = safe_name(request.node.nodeid.removeprefix("tests/").replace(".py::", "-"))
    folder = jupyterlab_server.root / name
    folder.mkdir(parents=True, exist_ok=True)
    artifacts = artifacts_root() / name
    shutil.rmtree(artifacts, ignore_errors=True)
    return Lab(jupyterlab_server, chromium_browser, folder, artifacts)
