"""Where the project lives and which version this is: the one place the repository URL is set.

The notebooks' connect cells, the README's "Open in Colab" links and the install command of a
notebook opened outside a checkout are all made from these (`tools/notebooks.py` writes the
notebooks; a test checks the README and the notebooks agree with this module).
"""

from __future__ import annotations

import re
from pathlib import Path

REPOSITORY = "https://github.com/dreamframe/dreamframe"
BRANCH = "main"
NOTEBOOKS = ("1_setup", "2_model_choice", "3_parameters", "4_run", "5_video")
PACKAGE = "dreamframe"


def version() -> str:
    """This package's version: from the installed metadata, else from pyproject.toml."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():  # a checkout: its pyproject is the truth, even if installed older
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
        if found:
            return found.group(1)
    try:
        return installed(PACKAGE)
    except PackageNotFoundError:
        return "0+unknown"


def install_spec(for_version: str) -> str:
    """What pip installs to get this package at a version: the repository's tag `v<version>`."""
    return f"{PACKAGE} @ git+{REPOSITORY}@v{for_version}"


def colab_url(notebook: str) -> str:
    """The "Open in Colab" address of one of the notebooks."""
    owner_repo = REPOSITORY.removeprefix("https://github.com/")
    return (f"https://colab.research.google.com/github/{owner_repo}/blob/{BRANCH}/notebooks/"
            f"{notebook}.ipynb")


def checkout_root() -> Path | None:
    """The repository checkout this package runs from, if it does (else an installed copy)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir() else None
