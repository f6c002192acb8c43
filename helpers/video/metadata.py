"""The prompt and settings a video carries: gathered from its source, read back from the file.

mp4 and webm files get the prompt as their `title` (its first `MAX_TITLE` characters) and
the run's whole settings JSON (one line) as their `comment`; `python -m helpers info VIDEO.mp4`
reads them back through ffmpeg's `ffmetadata` output, at most `MAX_METADATA` bytes of it, as
bounded JSON (`helpers.files.load_json`). A gif has no room for them.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.files import MAX_JSON_CHARS, load_json
from helpers.runs import read_image_info, read_run_settings
from helpers.video.ffmpeg import ffmpeg_message, file_input, find_ffmpeg

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".m4v")
MAX_TITLE = 1000  # characters of the prompt in the title (players show it); all in the comment
MAX_METADATA = MAX_JSON_CHARS + (1 << 20)  # bytes of ffmetadata read back: the JSON, and a margin
_TOKEN = re.compile(r"\\(.)|(\n)|([^\\\n]+)", re.DOTALL)  # escaped, newline, plain text


def source_settings(run_dir: Path | None, first_frame: Path) -> dict[str, Any] | None:
    """The settings of the frames: the run's settings.json, else the first frame's own."""
    if run_dir is not None:
        with contextlib.suppress(ValueError):  # no readable settings.json: the frames' own
            return read_run_settings(run_dir)
    try:
        return read_image_info(first_frame, shortened=True)[1]
    except (ValueError, OSError):  # frames without readable settings: the video has none
        return None


def metadata_fields(settings: dict[str, Any] | None) -> tuple[str, str]:
    """(title, comment) for a video: the prompt (cut to `MAX_TITLE` characters), and the
    settings JSON on one line."""
    if settings is None:
        return "", ""
    prompt = settings.get("prompt")
    title = prompt if isinstance(prompt, str) else ""
    if len(title) > MAX_TITLE:
        title = f"{title[:MAX_TITLE]}… {len(title) - MAX_TITLE:,} more characters cut"
    return title, json.dumps(settings, ensure_ascii=False)


def parse_ffmetadata(text: str) -> dict[str, str]:
    """The global `key=value` pairs of ffmpeg's ffmetadata text, unescaped; keys in lower case."""
    values: dict[str, str] = {}
    for entry in _entries(text):
        start = entry[0][0][0] if entry and not entry[0][1] else ""  # unescaped first char
        if not entry or start in (";", "#"):  # empty, or a comment
            continue
        if start == "[":  # [STREAM], [CHAPTER]: past the global metadata
            break
        cut = next((i for i, (part, escaped) in enumerate(entry)
                    if not escaped and "=" in part), None)
        if cut is not None:
            before, _, after = entry[cut][0].partition("=")
            key = "".join(part for part, _ in entry[:cut]) + before
            values[key.lower()] = after + "".join(part for part, _ in entry[cut + 1:])
    return values


def _entries(text: str) -> Iterator[list[tuple[str, bool]]]:
    """ffmetadata's entries as (text, escaped) pieces; an escaped newline stays inside."""
    entry: list[tuple[str, bool]] = []
    for escaped, newline, plain in _TOKEN.findall(text):
        if newline:
            yield entry
            entry = []
        else:
            entry.append((plain, False) if plain else (escaped, True))
    yield entry


def read_video_info(path: str | Path, ffmpeg: str = "bundled") -> tuple[str | None,
                                                                       dict[str, Any] | None]:
    """The prompt and the settings stored in a video (None where absent)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    values = parse_ffmetadata(_ffmetadata(path, find_ffmpeg(ffmpeg)))
    return values.get("title") or None, _json_object(values.get("comment", ""))


def _ffmetadata(path: Path, exe: str) -> str:
    """ffmpeg's ffmetadata text of a video, read as a plain file; a `ValueError` naming it when
    ffmpeg fails or the text runs past `MAX_METADATA` bytes (ffmpeg is stopped there)."""
    args = [exe, "-hide_banner", "-loglevel", "error", *file_input(path), "-f", "ffmetadata",
            "-"]
    with tempfile.TemporaryFile() as errors, subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=errors) as process:
        data = process.stdout.read(MAX_METADATA + 1)
        if len(data) > MAX_METADATA:
            process.kill()
            raise ValueError(f"{path}: its metadata is over {MAX_METADATA:,} bytes, more than "
                             "a video of ours holds; not read")
        if process.wait():
            errors.seek(0)
            raise ValueError(f"{path}: ffmpeg cannot read it as a video "
                             f"({ffmpeg_message(errors.read().decode(errors='replace'))})")
    return data.decode("utf-8", errors="replace")


def format_video_info(path: str | Path) -> str:
    """What `python -m helpers info VIDEO.mp4` prints: the prompt, blank line, settings JSON."""
    from helpers.runs import info_text

    prompt, settings = read_video_info(path)
    return info_text(prompt, settings, "No prompt in this video.",
                     "No Dreamframe settings in this video (none in its comment).")


def _json_object(text: str) -> dict[str, Any] | None:
    """A JSON object from text (bounded), or None: other tools write comments too."""
    try:
        return load_json(text, "the video's comment", dict)
    except ValueError:
        return None
