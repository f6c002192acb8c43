"""The workspace: the folder through which the notebooks pass their state.

Colab gives each notebook its own machine, so nothing in memory passes from one notebook to the
next: everything does through this folder. On Colab it is a folder on Google Drive (mounted when
a notebook opens it), or the machine's own disk, lost on disconnect, if Drive is not mounted;
locally `workspace/` in the checkout (or the current folder). It holds:

    models/        the model cache (downloaded once, kept on Drive)
    runs/          run folders: settings.json, frames/, resume points
    uploads/       images uploaded through the forms
    setup.json     what notebook 1 found: machine, GPU, package version
    model.json     notebook 2's choice: engine and models
    params.json    notebook 3's settings for the chosen engine
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.files import atomic_write_text, load_json, writable_folder
from helpers.reporting import Log

DRIVE = Path("/content/drive")
DRIVE_FOLDER = DRIVE / "MyDrive" / "Dreamframe"
COLAB_LOCAL = Path("/content/dreamframe-workspace")
FILES = ("setup.json", "model.json", "params.json")


def in_colab() -> bool:
    """Whether this kernel runs on Google Colab."""
    if "google.colab" in sys.modules:
        return True
    import importlib.util

    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class Workspace:
    """A workspace folder and where it lives."""

    root: Path
    colab: bool = False  # on Google Colab
    persistent: bool = True  # False: a Colab machine's disk, lost on disconnect

    @property
    def models(self) -> Path:
        """The model cache."""
        return self.root / "models"

    @property
    def runs(self) -> Path:
        """The run folders."""
        from helpers.runs import RUNS_FOLDER  # here: importing the workspace stays cheap

        return self.root / RUNS_FOLDER

    @property
    def uploads(self) -> Path:
        """Images uploaded through the forms."""
        return self.root / "uploads"

    def read(self, name: str) -> dict[str, Any] | None:
        """One of the workspace's JSON files as a dict, None when absent; `ValueError` naming
        the file when it is damaged."""
        path = self._file(name)
        if not path.is_file():
            return None
        try:
            data = load_json(path.read_text(encoding="utf-8"), "the file")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is damaged ({e}); delete it and run its notebook "
                             "again") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object; delete it and run its notebook "
                             "again")
        return data

    def write(self, name: str, data: dict[str, Any]) -> Path:
        """Write one of the workspace's JSON files, atomically."""
        return atomic_write_text(self._file(name), json.dumps(data, indent=2, ensure_ascii=False))

    def run_folders(self) -> list[Path]:
        """The run folders, newest first."""
        from helpers.runs import SETTINGS_FILE

        if not self.runs.is_dir():
            return []
        found = [p for p in self.runs.iterdir() if (p / SETTINGS_FILE).is_file()]
        return sorted(found, key=lambda p: p.name, reverse=True)

    def latest_run(self) -> Path | None:
        """The newest run folder, or None."""
        folders = self.run_folders()
        return folders[0] if folders else None

    def _file(self, name: str) -> Path:
        if name not in FILES:
            raise ValueError(f"workspace: {name!r} is not one of {', '.join(FILES)}")
        return self.root / name


def open_workspace(path: str | os.PathLike = "", log: Log = print) -> Workspace:
    """The workspace at `path`; by default Google Drive on Colab (mounted here), else
    `workspace/` in the checkout or the current folder. Its folders are made; the model cache
    is pointed at its `models/` (DREAMFRAME_CACHE)."""
    colab = in_colab()
    if str(path).strip():
        root = Path(path).expanduser()
        if colab and DRIVE in root.parents:
            mount_drive(log)
        workspace = Workspace(root.resolve(), colab, not colab or DRIVE in root.parents)
    elif colab:
        workspace = _colab_default(log)
    else:
        workspace = Workspace(_local_default().resolve())
    writable_folder(workspace.root, "workspace")
    for folder in (workspace.root, workspace.models, workspace.runs, workspace.uploads):
        folder.mkdir(parents=True, exist_ok=True)
    os.environ["DREAMFRAME_CACHE"] = str(workspace.models)
    return workspace


def _local_default() -> Path:
    from helpers.project import checkout_root

    root = checkout_root()
    return (root if root is not None else Path.cwd()) / "workspace"


def _colab_default(log: Log) -> Workspace:
    if mount_drive(log):
        return Workspace(DRIVE_FOLDER, colab=True, persistent=True)
    log(f"warning: Google Drive is not mounted; the workspace is {COLAB_LOCAL} on this Colab "
        "machine, and everything in it (models, frames) is LOST when the machine disconnects. "
        "Run the cell again and allow Drive to keep your work.")
    return Workspace(COLAB_LOCAL, colab=True, persistent=False)


def mount_drive(log: Log = print) -> bool:
    """Mount Google Drive on Colab (asks once for permission); False when it cannot be."""
    if (DRIVE / "MyDrive").is_dir():
        return True
    try:
        from google.colab import drive

        drive.mount(str(DRIVE))
    except Exception as e:  # refused, timed out, or not on Colab
        log(f"Google Drive was not mounted ({type(e).__name__}: {e})")
        return False
    return (DRIVE / "MyDrive").is_dir()
