"""The prompt and settings a video carries: gathered from its source, read back from the file.

mp4 and webm files get the prompt as their `title` and the run's settings JSON (one line) as
their `comment`; `python -m helpers info VIDEO.mp4` reads them back through ffmpeg's
`ffmetadata` output. A gif has no room for them.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.runs import read_image_info, read_run_settings
from helpers.video.ffmpeg import ffmpeg_message, find_ffmpeg

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".m4v")


def source_settings(run_dir: Path | None, first_frame: Path) -> dict[str, Any] | None:
    """The settings of the frames: the run's settings.json, else the first frame's own."""
    if run_dir is not None:
        with contextlib.suppress(ValueError):  # no readable settings.json: the frames' own
            return read_run_settings(run_dir)
    try:
        return read_image_info(first_frame)[1]
    except (ValueError, OSError):  # frames without readable settings: the video has none
        return None


def metadata_fields(settings: dict[str, Any] | None) -> tuple[str, str]:
    """(title, comment) for a video: the prompt, and the settings JSON on one line."""
    if settings is None:
        return "", ""
    prompt = settings.get("prompt")
    return (prompt if isinstance(prompt, str) else ""), json.dumps(settings, ensure_ascii=False)


def parse_ffmetadata(text: str) -> dict[str, str]:
    """The global `key=value` pairs of ffmpeg's ffmetadata text, unescaped; keys in lower case."""
    values: dict[str, str] = {}
    for entry in _entries(text):
        if not entry or entry[0] in ((";", False), ("#", False)):
            continue
        if entry[0] == ("[", False):  # [STREAM], [CHAPTER]: past the global metadata
            break
        if ("=", False) in entry:
            cut = entry.index(("=", False))
            key, value = ("".join(c for c, _ in part) for part in (entry[:cut], entry[cut + 1:]))
            values[key.lower()] = value
    return values


def _entries(text: str) -> Iterator[list[tuple[str, bool]]]:
    """ffmetadata's entries as (character, escaped) pairs; an escaped newline stays inside."""
    entry: list[tuple[str, bool]] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            entry.append((next(chars, ""), True))
        elif char == "\n":
            yield entry
            entry = []
        else:
            entry.append((char, False))
    yield entry


def read_video_info(path: str | Path, ffmpeg: str = "bundled") -> tuple[str | None,
                                                                       dict[str, Any] | None]:
    """The prompt and the settings stored in a video (None where absent)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    result = subprocess.run([find_ffmpeg(ffmpeg), "-hide_banner", "-loglevel", "error", "-i",
                             str(path), "-f", "ffmetadata", "-"], capture_output=True,
                            check=False)
    if result.returncode:
        raise ValueError(f"{path}: ffmpeg cannot read it as a video "
                         f"({ffmpeg_message(result.stderr.decode(errors='replace'))})")
    values = parse_ffmetadata(result.stdout.decode("utf-8", errors="replace"))
    return values.get("title") or None, _json_object(values.get("comment", ""))


def format_video_info(path: str | Path) -> str:
    """What `python -m helpers info VIDEO.mp4` prints: the prompt, blank line, settings JSON."""
    from helpers.runs import info_text

    prompt, settings = read_video_info(path)
    return info_text(prompt, settings, "No prompt in this video.",
                     "No Dreamframe settings in this video (none in its comment).")


def _json_object(text: str) -> dict[str, Any] | None:
    """A JSON object from text, or None: other tools write comments too."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    return value if isinstance(value, dict) else None
