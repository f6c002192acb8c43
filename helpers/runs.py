"""The workspace's run folders, frame files with metadata, and resume points.

A run lives in `runs/<YYYYmmdd-HHMMSS>-<slug>/` under the workspace: `settings.json`, `frames/`
(`000001.png`, ...) and optional resume states. Every file lands atomically. Frames carry the
Stable Diffusion web UI's infotext in a `parameters` text chunk (so its PNG Info tab and other
tools read them) and the Dreamframe settings JSON in a `dreamframe` chunk, both bounded so that
every reader takes them (`stored_infotext`, `stored_settings`: settings over 256 kB are stored
shortened; the run's settings.json always holds them whole).

Heavy imports (PIL, torch) happen inside the functions that need them: the CLI's fast paths
import this module.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import shutil
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.files import atomic_write_bytes, atomic_write_text, load_json, read_json
from helpers.metadata.stored import (
    PARAMETERS_CHUNK,
    SETTINGS_CHUNK,
    SHORTENED_KEY,
    encode_png,
)
from helpers.reporting import Log, plural

if TYPE_CHECKING:
    from PIL.Image import Image

RUNS_FOLDER = "runs"
FRAMES_FOLDER = "frames"
TRAJECTORY_FOLDER = "trajectory"  # run_dir/trajectory/<image index:06d>/frames/
SETTINGS_FILE = "settings.json"
STATE_FILE = "state.pt"  # the resume point of a run that has one (VQGAN+CLIP, animations)
PENDING_FILE = "pending.json"  # the frame being written after the resume point: number, sha256
SET_ASIDE_FOLDER = "set-aside"  # where a resume moves files past its point that it did not write
SLUG_MAX_CHARS = 40
SLUG_MAX_BYTES = 120  # UTF-8 bytes: names stay far below the 255-byte limit of file systems
MAX_NAME_TRIES = 10_000  # `-2`, `-3`, ... suffixes tried before giving up

_FRAME_NAME = re.compile(r"^(\d{6,})\.png$")
_PIECE_SPLIT = re.compile(r"(?<!\\)\|")  # `\|` is a literal bar in the prompt grammar
_NUMBER = r"[-+]?(?:inf|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
_WEIGHT = re.compile(rf"\s*{_NUMBER}", re.IGNORECASE)  # what follows a weight's or stop's `:`
_STATE_NAME = re.compile(r"^[\w][\w.\-]*$")
_EMOJI_GLUE = "\u200d\ufe0f"  # zero-width joiner and emoji presentation selector
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline, DEL, C1


# ---------------------------------------------------------------- run folders


class RunStopped(KeyboardInterrupt):
    """A run stopped by the user (Ctrl-C, a notebook's interrupt): its finished work is kept;
    the message says what was saved and how to continue."""

    def __init__(self, run_dir: Path, message: str):
        super().__init__(message)
        self.run_dir = Path(run_dir)
        self.message = message


def slugify(prompt: str, max_chars: int = SLUG_MAX_CHARS) -> str:
    """A folder name from a weighted prompt: `desert:50 | snow:25` -> `desert-snow`.

    Letters, digits and symbols of every script are kept (`пустыня`, `沙漠`, emoji); weights,
    punctuation, spaces and what file systems or Google Drive refuse become single dashes.
    """
    pieces = [_without_weights(piece) for piece in _PIECE_SPLIT.split(prompt)]
    text = unicodedata.normalize("NFC", " ".join(pieces)).lower()
    kept = "".join(c if _keep(c) else "-" for c in text)
    slug = re.sub(r"-{2,}", "-", kept).strip("-")
    if len(slug) > max_chars or len(slug.encode()) > SLUG_MAX_BYTES:
        slug = _shorten(slug, max_chars)
    return slug or "untitled"


def run_title(settings: Any) -> str:
    """What a run folder is named after: the prompt, else the prompt schedule's prompts."""
    prompt = getattr(settings, "prompt", "")
    schedule = getattr(settings, "prompt_schedule", "")
    if prompt.strip() or not schedule.strip():
        return prompt
    from helpers.prompts import parse_prompt_schedule

    texts = [p.text for prompts in parse_prompt_schedule(schedule).values() for p in prompts]
    return " | ".join(dict.fromkeys(texts))


def _without_weights(piece: str) -> str:
    """`piece` without its trailing `:weight[:stop]` (unescaped colons, spaces around them),
    found by looking back from the end: a regex ending in `\\s*$` would be searched from every
    space of a long run of them, in time quadratic in the run."""
    end, cut = len(piece.rstrip()), None
    for _ in range(2):  # the stop, then the weight
        colon = piece.rfind(":", 0, end)
        if colon < 0 or piece[colon - 1 : colon] == "\\" or not _WEIGHT.fullmatch(
                piece, colon + 1, end):
            break
        end = cut = len(piece[:colon].rstrip())
    return piece if cut is None else piece[:cut]


def _keep(char: str) -> bool:
    """Letters, marks, digits and symbols such as emoji (with their joiners); no ASCII
    punctuation, so nothing that Windows, macOS or Drive refuse in a name gets through."""
    if char in _EMOJI_GLUE:
        return True
    if char.isascii():
        return char.isalnum()
    return unicodedata.category(char)[0] in "LMNS"


def _shorten(slug: str, max_chars: int) -> str:
    """Cut to `max_chars` characters and `SLUG_MAX_BYTES` bytes, at a dash where there is one."""
    cut = slug[:max_chars]
    while len(cut.encode()) > SLUG_MAX_BYTES:
        cut = cut[:-1]
    if len(cut) < len(slug) and slug[len(cut)] != "-" and "-" in cut:
        cut = cut.rsplit("-", 1)[0]
    return cut.strip("-")


def _json_object(text: str, what: str) -> dict[str, Any]:
    """Parse `text` as a JSON object (bounded: `helpers.files.load_json`); a `ValueError`
    naming `what` otherwise."""
    if not isinstance(text, (str, bytes)):
        raise ValueError(f"{what} is not valid JSON: got {type(text).__name__}, not text")
    return load_json(text, what, dict)


def _make_unique_dir(parent: Path, base: str) -> Path:
    """Create `parent/base` (or `base-2`, `base-3`, ...) that did not exist before; race-safe."""
    for n in range(1, MAX_NAME_TRIES + 1):
        candidate = parent / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir(exist_ok=False)
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"no free run folder name for {base!r} in {parent} after {n} tries")


def new_run(workspace: Path, prompt: str, settings_json: str, now: datetime | None = None) -> Path:
    """Create a fresh `runs/<time>-<slug>/` folder with `frames/` and `settings.json`."""
    _json_object(settings_json, "settings_json")
    runs = Path(workspace) / RUNS_FOLDER
    runs.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    run_dir = _make_unique_dir(runs, f"{stamp}-{slugify(prompt)}")
    try:
        (run_dir / FRAMES_FOLDER).mkdir()
        atomic_write_text(run_dir / SETTINGS_FILE, settings_json)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # ours, created just above: leave no half run
        raise
    return run_dir


# ---------------------------------------------------------------- frames


def frame_path(run_dir: Path, index: int) -> Path:
    """The path of frame `index` (1-based): `frames/000001.png`."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 1:
        raise ValueError(f"frame index must be an integer >= 1, got {index!r}")
    return Path(run_dir) / FRAMES_FOLDER / f"{index:06d}.png"


def trajectory_dir(run_dir: Path, index: int) -> Path:
    """The run folder of image `index`'s denoising trajectory: `trajectory/000001`."""
    return Path(run_dir) / TRAJECTORY_FOLDER / f"{index:06d}"


def list_frames(run_dir: Path) -> list[Path]:
    """The run's frame files, in frame order."""
    folder = Path(run_dir) / FRAMES_FOLDER
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _FRAME_NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def read_frame(run_dir: Path, index: int) -> Image:
    """Frame `index` of a run as an RGB PIL image (fully read, the file closed)."""
    from PIL import Image

    with Image.open(frame_path(run_dir, index)) as image:
        return image.convert("RGB")


def next_frame_index(run_dir: Path) -> int:
    """One past the highest saved frame index (1 for a run without frames)."""
    frames = list_frames(run_dir)
    return int(_FRAME_NAME.match(frames[-1].name).group(1)) + 1 if frames else 1


def latest_frame(run_dir: Path) -> Path | None:
    """The highest-numbered frame file, or None when the run has none yet."""
    frames = list_frames(run_dir)
    return frames[-1] if frames else None


def save_frame(
    run_dir: Path,
    index: int,
    image: Image,
    infotext: str,
    settings_json: str,
    overwrite: bool = False,
    announce: bool = False,
) -> Path:
    """Write frame `index` as a PNG with metadata, atomically; never replaces one unless asked.
    `announce`: first record its number and hash (`PENDING_FILE`), so a resume knows it as the
    run's own when a kill leaves it after the last resume point."""
    from PIL import Image

    path = frame_path(run_dir, index)
    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL image, got {type(image).__name__}")
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run folder does not exist: {run_dir}")
    if not isinstance(infotext, str):
        raise ValueError(f"infotext must be a string, got {type(infotext).__name__}")
    _json_object(settings_json, "settings_json")
    if path.exists() and not overwrite:
        raise FileExistsError(f"frame {index} already exists: {path} (pass overwrite=True)")
    data = encode_png(image, infotext, settings_json)  # fully encoded before touching the disk
    if announce:
        _announce_frame(run_dir, index, data)
    return atomic_write_bytes(path, data)


# ---------------------------------------------------------------- reading images


def read_image_info(path: Path, shortened: bool = False) -> tuple[str | None,
                                                                  dict[str, Any] | None]:
    """The infotext and parsed Dreamframe settings of an image (None where absent): PNG text
    chunks, or the EXIF of a JPEG or WebP (`helpers.metadata.exif`), which wins as in the web UI.

    Only the metadata is read, never the pixels, and it is bounded (Pillow's limits on text
    chunks, ours on EXIF and JSON), so any file is safe to read; what goes past the bounds is a
    `ValueError` naming the file. Settings stored shortened (`stored_settings`) come back as
    the run's settings.json when the image lies in its run's frames folder, else as they are
    with `shortened`, else as a `ValueError`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    parameters, raw = _image_texts(path)
    if raw is None:
        return parameters, None
    settings = _json_object(raw, f"{path}: the {SETTINGS_CHUNK!r} settings")
    if SHORTENED_KEY in settings:
        settings = _run_settings_beside(path, settings) or _shortened(path, settings, shortened)
    return parameters, settings


def _image_texts(path: Path) -> tuple[str | None, str | None]:
    """(infotext, settings JSON) as stored in an image; a `ValueError` naming it when Pillow
    or `helpers.metadata.exif` refuse its metadata (too large, damaged)."""
    from helpers.inputs import opened
    from helpers.metadata.exif import read_exif_info

    try:
        with opened(path, "image") as image:
            chunks = {k: v for k, v in image.info.items() if isinstance(k, str)}
            comment, note = read_exif_info(image)
    except ValueError as e:
        if str(e).startswith("image:"):  # `opened`'s own message names the file
            raise ValueError(str(e).removeprefix("image: ")) from None
        raise ValueError(f"{path}: cannot read its metadata ({e})") from None
    parameters = comment or chunks.get(PARAMETERS_CHUNK)
    raw = chunks.get(SETTINGS_CHUNK) or note
    return (parameters if isinstance(parameters, str) else None), raw


def _run_settings_beside(path: Path, stored: dict[str, Any]) -> dict[str, Any] | None:
    """The whole settings of a frame stored with shortened ones: its run's settings.json, when
    the frame lies in the run's frames folder and the kinds agree."""
    run_dir = path.parent.parent
    if path.parent.name != FRAMES_FOLDER or not (run_dir / SETTINGS_FILE).is_file():
        return None
    try:
        settings = read_run_settings(run_dir)
    except ValueError:
        return None
    return settings if settings.get("kind") == stored.get("kind") else None


def _shortened(path: Path, settings: dict[str, Any], allowed: bool) -> dict[str, Any]:
    """A shortened copy of the settings, where it is allowed; else a `ValueError` saying where
    the whole settings are."""
    if allowed:
        return settings
    raise ValueError(f"{path} holds only a shortened copy of its settings (they were too long "
                     f"for an image); the whole settings are in its run's {SETTINGS_FILE}")


def format_image_info(path: Path) -> str:
    """What `python -m helpers info IMAGE.png` prints: infotext, blank line, settings JSON
    (videos: `helpers.video.metadata.format_video_info`)."""
    parameters, settings = read_image_info(path, shortened=True)
    post = _postprocessing(path)
    if post:  # what the upscale command (the web UI's extras tab) did to the picture
        parameters = f"{parameters or ''}\n{post}".strip()
    return info_text(parameters, settings, "No generation parameters in this image.",
                     "No Dreamframe metadata in this image (no settings beside the infotext).")


def _postprocessing(path: Path) -> str:
    """The picture's `postprocessing` text chunk (the web UI's extras infotext), or ""."""
    from helpers.inputs import opened

    with opened(path, "image") as image:
        text = image.info.get("postprocessing")
    return text.strip() if isinstance(text, str) else ""


def info_text(head: str | None, settings: dict[str, Any] | None, no_head: str,
              no_settings: str) -> str:
    """The `info` command's text: the head line(s), a blank line, the settings as JSON; each
    missing part said in its own words. Control characters from the file are shown escaped
    (`\\x1b`), so a file cannot drive the terminal; newlines and tabs stay as they are."""
    tail = no_settings if settings is None else json.dumps(settings, indent=2,
                                                           ensure_ascii=False)
    return _CONTROL.sub(_escaped, f"{no_head if head is None else head}\n\n{tail}")


def _escaped(match: re.Match) -> str:
    return f"\\x{ord(match.group()):02x}"


# ---------------------------------------------------------------- resume points


def _state_path(run_dir: Path, name: str) -> Path:
    """`run_dir/name`, refusing names that would leave the run folder."""
    if not isinstance(name, str) or not _STATE_NAME.match(name) or ".." in name:
        raise ValueError(f"state name must be a plain file name, got {name!r}")
    return Path(run_dir) / name


def save_state(run_dir: Path, state: dict[str, Any], name: str = STATE_FILE) -> Path:
    """Save a resume point (tensors, numbers, strings, nested dicts/lists) atomically."""
    import torch

    if not isinstance(state, dict):
        raise ValueError(f"state must be a dict, got {type(state).__name__}")
    path = _state_path(run_dir, name)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_state(
    run_dir: Path, name: str = STATE_FILE, map_location: str | None = "cpu"
) -> dict[str, Any]:
    """Load a resume point saved by `save_state`; never runs code from the file.

    A truncated, foreign or code-carrying file is a `ValueError` naming it as damaged.
    """
    import zipfile

    import torch

    path = _state_path(run_dir, name)
    if not path.is_file():
        raise FileNotFoundError(f"resume: {path} not found: the run has no resume point")
    try:
        state = torch.load(io.BytesIO(path.read_bytes()), map_location=map_location,
                           weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError,
            ValueError, TypeError, AttributeError, KeyError, IndexError) as e:
        raise ValueError(f"resume: the resume point {path} is damaged ({_damage(e)}); the "
                         "frames are intact, but this run cannot continue") from None
    if not isinstance(state, dict):
        raise ValueError(f"resume: the resume point {path} is damaged (not a saved state)")
    return state


def _damage(error: Exception) -> str:
    """What is wrong with a resume point that `torch.load` refused, in a few words."""
    if isinstance(error, pickle.UnpicklingError) or "Weights only load failed" in str(error):
        return "it holds objects or code that a resume point never holds; it was not run"
    if "zip" in str(error).lower() or isinstance(error, EOFError):
        return "truncated, or not a resume point at all"
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:80]}"


def save_resume_point(run_dir: Path, state: dict[str, Any], frames: int) -> Path:
    """Save the state that goes with the first `frames` frames (written after them).

    A kill between a frame and its resume point leaves one frame more than the state knows
    of; `frames_after_resume_point` finds it, and a resumed run makes it again.
    """
    return save_state(run_dir, {**state, "frames": frames})


def frames_after_resume_point(run_dir: Path, state: dict[str, Any]) -> list[Path]:
    """Frame files numbered after the resume point: the one a kill cut off, or the user's."""
    known = int(state.get("frames", 0))
    return [p for p in list_frames(run_dir) if int(_FRAME_NAME.match(p.name).group(1)) > known]


def _announce_frame(run_dir: Path, index: int, data: bytes) -> None:
    """Record the number and sha256 of the frame about to be written (`PENDING_FILE`)."""
    import hashlib

    record = {"frame": index, "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_text(Path(run_dir) / PENDING_FILE, json.dumps(record))


def cut_off_frame(run_dir: Path, state: dict[str, Any]) -> Path | None:
    """The frame a kill left after the resume point, if there is one: the next number, with
    the bytes `PENDING_FILE` announced (so a file the user put there never counts)."""
    from helpers.download.hashes import sha256

    index = int(state.get("frames", 0)) + 1
    path = frame_path(run_dir, index)
    try:
        record = read_json(Path(run_dir) / PENDING_FILE, PENDING_FILE, dict, limit=4096)
        same = record.get("frame") == index and \
            record.get("sha256") == sha256(path)
    except (OSError, ValueError, AttributeError):
        return None
    return path if same else None


def clear_after_resume_point(run_dir: Path, state: dict[str, Any], log: Log) -> list[Path]:
    """Make the frames folder agree with the resume point: delete the one frame a kill left
    (`cut_off_frame`) and move every other file numbered after it into `SET_ASIDE_FOLDER`,
    saying so; nothing else is deleted. Returns where the moved files are now."""
    ours = cut_off_frame(run_dir, state)
    moved = []
    for path in frames_after_resume_point(run_dir, state):
        if path == ours:
            path.unlink()
        else:
            moved.append(_set_aside(run_dir, path))
    if moved:
        log(f"resume: {plural(len(moved), 'file')} numbered after the resume point "
            f"({', '.join(p.name for p in moved)}) {'was' if len(moved) == 1 else 'were'} not "
            f"written by this run; moved to {Path(run_dir) / SET_ASIDE_FOLDER}")
    return moved


def _set_aside(run_dir: Path, path: Path) -> Path:
    """Move `path` into the run's set-aside folder under a name not taken there."""
    folder = Path(run_dir) / SET_ASIDE_FOLDER
    folder.mkdir(exist_ok=True)
    target, n = folder / path.name, 1
    while target.exists():
        n += 1
        target = folder / f"{path.stem}-{n}{path.suffix}"
    return path.rename(target)


def read_run_settings(run_dir: Path) -> dict[str, Any]:
    """The run folder's settings.json as a dict; `ValueError` naming the file and the problem."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"resume: {run_dir} is not a folder; give a run folder "
                         f"(workspace/{RUNS_FOLDER}/<time>-<prompt>)")
    path = run_dir / SETTINGS_FILE
    if not path.is_file():
        raise ValueError(f"resume: {run_dir} is not a run folder (it has no {SETTINGS_FILE})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"resume: cannot read {path} ({e})") from None
    return _json_object(text, f"resume: {path}")


def write_run_settings(run_dir: Path, settings_json: str) -> Path:
    """Replace a run's settings.json (a resumed run that was given more to do), atomically."""
    _json_object(settings_json, "settings_json")
    path = Path(run_dir) / SETTINGS_FILE
    if path.is_file() and path.read_text(encoding="utf-8") == settings_json:
        return path
    return atomic_write_text(path, settings_json)


def resumed_settings(run_dir: Path, cls: type, changes: Mapping[str, Any],
                     allowed: tuple[str, ...]) -> Any:
    """A run folder's stored settings (of class `cls`) with the changes a resumed run may make;
    any other change is an error naming the settings. Nothing is written."""
    try:
        settings = cls.from_dict(read_run_settings(run_dir))
    except ValueError as e:
        if str(e).startswith("resume:"):
            raise
        raise ValueError(f"resume: {Path(run_dir) / SETTINGS_FILE}: {e}") from None
    return _apply_resume_changes(settings, changes, allowed)


def _apply_resume_changes(settings: Any, changes: Mapping[str, Any], allowed: tuple[str, ...]):
    """Stored settings with the allowed changes; others are refused, since the run would no
    longer be the one its frames came from."""
    given = {k: v for k, v in changes.items() if v is not None}
    refused = sorted(k for k, v in given.items() if k not in allowed
                     and getattr(settings, k, object()) != v)
    if refused:
        raise ValueError(f"resume: {', '.join(refused)} cannot change when a run continues (its "
                         f"frames were made with the stored values); only "
                         f"{', '.join(allowed)} can. Start a new run to change them")
    return settings.replace(**{k: v for k, v in given.items() if k in allowed})
