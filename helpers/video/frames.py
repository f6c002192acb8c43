"""Which frames a video is made of, in what order: listing, selection, ping-pong, sizes.

A source is a run folder (its `frames/`, or `trajectory/<K>/frames/` for the denoising
trajectory of image K) or any folder of images. Frames are ordered by the last number in their
names, so `1.png, 2.png, ..., 10.png` and `frame_9.png, frame_10.png` come in the order they
were made. Every problem is a `ValueError` naming the setting, the folder and the first problem.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.runs import FRAMES_FOLDER, TRAJECTORY_FOLDER, trajectory_dir

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_LAST_NUMBER = re.compile(r"(\d+)\D*$")


@dataclass(frozen=True)
class Frame:
    """One frame file and the number in its name."""

    number: int
    path: Path


def frames_folder(source: str | Path, trajectory: int = 0) -> Path:
    """The folder holding the frames: a run's `frames/`, a trajectory's, or `source` itself."""
    source = Path(source).expanduser()
    if not source.exists():
        raise ValueError(f"source: {source} not found; give a run folder or a folder of images")
    if not source.is_dir():
        raise ValueError(f"source: {source} is a file, not a folder; give a run folder or a "
                         "folder of images")
    if trajectory:
        return _trajectory_folder(source, trajectory)
    run_frames = source / FRAMES_FOLDER
    return run_frames if run_frames.is_dir() else source


def _trajectory_folder(run_dir: Path, index: int) -> Path:
    folder = trajectory_dir(run_dir, index) / FRAMES_FOLDER
    if folder.is_dir():
        return folder
    parent = run_dir / TRAJECTORY_FOLDER
    found = sorted(int(p.name) for p in parent.iterdir() if p.name.isdigit()) if \
        parent.is_dir() else []
    have = f"it has trajectories {', '.join(map(str, found))}" if found else \
        "it has none (a diffusion run made with --save-trajectory has them)"
    raise ValueError(f"trajectory: {run_dir} has no trajectory for image {index}; {have}")


def numbered_frames(folder: Path) -> list[Frame]:
    """The image files of `folder` in natural order (by the last number in each name)."""
    frames: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        match = _LAST_NUMBER.search(path.stem)
        if match is None:
            raise ValueError(f"source: {path} has no number in its name; frames are ordered by "
                             "the last number in their names")
        number = int(match.group(1))
        if number in frames:
            raise ValueError(f"source: {frames[number].name} and {path.name} in {folder} both "
                             f"have number {number}; keep one of them")
        frames[number] = path
    if not frames:
        raise ValueError(f"source: no frames in {folder} (images named with numbers: "
                         f"{', '.join(IMAGE_SUFFIXES)})")
    return [Frame(n, frames[n]) for n in sorted(frames)]


def select_frames(frames: list[Frame], start: int = 0, end: int = 0, every: int = 1,
                  allow_gaps: bool = False) -> list[Frame]:
    """Frames numbered start..end (0 = open), checked for gaps, then every N-th of them."""
    chosen = [f for f in frames if f.number >= start and (not end or f.number <= end)]
    if not chosen:
        first, last = frames[0].number, frames[-1].number
        raise ValueError(f"{'start' if start else 'end'}: no frames numbered "
                         f"{start or first} to {end or last} in {frames[0].path.parent}; its "
                         f"frames are numbered {first} to {last}")
    if not allow_gaps:
        _check_gaps(chosen)
    return chosen[::every]


def _check_gaps(frames: list[Frame]) -> None:
    for before, after in itertools.pairwise(frames):
        if after.number != before.number + 1:
            first, last = before.number + 1, after.number - 1
            what = f"frames {first} to {last} are" if last > first else f"frame {first} is"
            raise ValueError(f"source: {what} missing in {before.path.parent} "
                             f"(between {before.path.name} and {after.path.name}); give "
                             "--allow-gaps to join the frames around it")


def pingpong(frames: list[Frame]) -> list[Frame]:
    """Forward then back without repeating either end: n frames play as 2n - 2 (n >= 2)."""
    return frames + frames[-2:0:-1]


def frame_size(frames: list[Frame], resize: bool = False) -> tuple[int, int]:
    """The first frame's size; a frame of another size is an error unless `resize`.

    Only the headers are read, so this is quick and safe for images of any size.
    """
    from helpers.inputs import check_size

    with _opened(frames[0].path) as image:
        size, first = image.size, frames[0].path
    for frame in frames:
        with _opened(frame.path) as image:
            check_size(image, frame.path, "source")
            if image.size != size and not resize:
                raise ValueError(f"source: {frame.path.name} is {image.size[0]}x"
                                 f"{image.size[1]} but {first.name} is {size[0]}x{size[1]}; "
                                 f"give --resize to resize every frame to {size[0]}x{size[1]}")
    return size


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Any]:
    """A frame opened (its header read) as `helpers.inputs.opened` does; what Pillow refuses
    in it (text chunks over its limits) is a `ValueError` naming `source` and the file."""
    from helpers.inputs import opened

    try:
        with opened(path, "source") as image:
            yield image
    except ValueError as e:
        if str(e).startswith("source:"):
            raise
        raise ValueError(f"source: cannot read {path} ({e})") from None


def read_frame(path: Path, size: tuple[int, int]) -> bytes:
    """A frame's pixels as packed RGB bytes (rgb24), resized to `size` when it differs."""
    from PIL import Image

    from helpers.inputs import read_rgb

    image = read_rgb(path, "source")
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image.tobytes()
