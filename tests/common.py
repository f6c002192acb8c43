"""Small helpers shared by the test files."""

from __future__ import annotations

import numpy as np
from PIL import Image

from helpers.runs import list_frames


def quiet(_message: str) -> None:
    """A log callable that drops messages."""


def first_frame(run_dir) -> np.ndarray:
    """The first frame of a run as an int RGB array."""
    return np.asarray(Image.open(list_frames(run_dir)[0]).convert("RGB")).astype(int)
