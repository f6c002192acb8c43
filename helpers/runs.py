"""The workspace's run folders, frame files with metadata, and resume points.

A run lives in `runs/<YYYYmmdd-HHMMSS>-<slug>/` under the workspace: `settings.json`, `frames/`
(`000001.png`, ...) and optional resume states. Every file lands atomically. Frames carry the
Stable Diffusion web UI's infotext in a `parameters` text chunk (so its PNG Info tab and other
tools read them) and the full Dreamframe settings JSON in a `dreamframe` chunk.

Heavy imports (PIL, torch) happen inside the functions that need them: the CLI's fast paths
import this module.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.files import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from PIL.Image import Image

RUNS_FOLDER = "runs"
FRAMES_FOLDER = "frames"
SETTINGS_FILE = "settings.json"
PARAMETERS_CHUNK = "parameters"  # the web UI's key: its PNG Info tab reads this one
SETTINGS_CHUNK = "dreamframe"
SLUG_MAX_CHARS = 40
MAX_NAME_TRIES = 10_000  # `-2`, `-3`, ... suffixes tried before giving up

_FRAME_NAME = re.compile(r"^(\d{6,})\.png$")
_PIECE_SPLIT = re.compile(r"(?<!\\)\|")  # `\|` is a literal bar in the prompt grammar
_NUMBER = r"[-+]?(?:inf|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
_WEIGHT_STOP = re.compile(rf"(?:\s*(?<!\\):\s*{_NUMBER}){{1,2}}\s*$", re.IGNORECASE)
# One `key: value` pair of the web UI's params line; a value is a JSON string or runs to the comma.
_PARAM = r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)'
_PARAM_RE = re.compile(_PARAM)
_PARAM_KEY = re.compile(r"\w[\w \-/]+")
_IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE = "Negative prompt:"
_RESERVED_KEYS = ("Prompt", "Negative prompt")
_STATE_NAME = re.compile(r"^[\w][\w.\-]*$")


# ---------------------------------------------------------------- run folders


def slugify(prompt: str, max_chars: int = SLUG_MAX_CHARS) -> str:
    """A folder-safe ASCII slug of a weighted prompt: `desert:50 | snow:25` -> `desert-snow`."""
    pieces = [_WEIGHT_STOP.sub("", piece) for piece in _PIECE_SPLIT.split(prompt)]
    folded = unicodedata.normalize("NFKD", " ".join(pieces)).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    if len(slug) > max_chars:
        cut = slug[:max_chars]
        # Cut at a word boundary unless the first word alone is longer than the limit.
        if slug[max_chars] != "-" and "-" in cut:
            cut = cut.rsplit("-", 1)[0]
        slug = cut.strip("-")
    return slug or "untitled"


def _json_object(text: str, what: str) -> dict[str, Any]:
    """Parse `text` as a JSON object; a `ValueError` naming `what` otherwise."""
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


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


def list_frames(run_dir: Path) -> list[Path]:
    """The run's frame files, in frame order."""
    folder = Path(run_dir) / FRAMES_FOLDER
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _FRAME_NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def next_frame_index(run_dir: Path) -> int:
    """One past the highest saved frame index (1 for a run without frames)."""
    frames = list_frames(run_dir)
    return int(_FRAME_NAME.match(frames[-1].name).group(1)) + 1 if frames else 1


def latest_frame(run_dir: Path) -> Path | None:
    """The highest-numbered frame file, or None when the run has none yet."""
    frames = list_frames(run_dir)
    return frames[-1] if frames else None


def encode_png(image: Image, infotext: str, settings_json: str) -> bytes:
    """PNG bytes of `image` with the `parameters` infotext and `dreamframe` settings chunks."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    # tEXt when the text fits Latin-1, else iTXt (UTF-8): what the web UI writes.
    info.add_text(PARAMETERS_CHUNK, infotext)
    info.add_itxt(SETTINGS_CHUNK, settings_json, zip=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def save_frame(
    run_dir: Path,
    index: int,
    image: Image,
    infotext: str,
    settings_json: str,
    overwrite: bool = False,
) -> Path:
    """Write frame `index` as a PNG with metadata, atomically; never replaces one unless asked."""
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
    return atomic_write_bytes(path, data)


# ---------------------------------------------------------------- infotext


def _quote(value: str) -> str:
    """Quote a params-line value as a JSON string where it would otherwise not read back."""
    needs = value == "" or value != value.strip() or any(c in value for c in ',:"\n')
    return json.dumps(value, ensure_ascii=False) if needs else value


def _unquote(value: str) -> str:
    """Undo `_quote`; a value that is not a valid JSON string stays as it is."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            text = json.loads(value)
        except json.JSONDecodeError:
            return value
        return text if isinstance(text, str) else value
    return value


def _params_line(params: Mapping[str, object]) -> str:
    """The `Key: value, Key: value` line; None values are left out."""
    parts = []
    for key, value in params.items():
        if value is None:
            continue
        if not isinstance(key, str) or key in _RESERVED_KEYS or not _PARAM_KEY.fullmatch(key):
            raise ValueError(f"params key {key!r} cannot appear in an infotext params line")
        parts.append(f"{key}: {_quote(str(value))}")
    return ", ".join(parts)


def format_infotext(
    prompt: str, negative_prompt: str = "", params: Mapping[str, object] | None = None
) -> str:
    """Generation parameters as the Stable Diffusion web UI writes them (its PNG Info format)."""
    text = prompt
    if negative_prompt:
        text += f"\n{_NEGATIVE} {negative_prompt}"
    line = _params_line(params or {})
    if line:
        text += f"\n{line}"
    return text.strip()


def _only_params(line: str) -> bool:
    """Whether `line` is nothing but `key: value` pairs (pair by pair: no nested backtracking)."""
    pos = 0
    while pos < len(line):
        pair = _PARAM_RE.match(line, pos)
        if pair is None or pair.end() == pos:
            return False
        pos = pair.end()
    return pos > 0


def _is_params_line(line: str) -> bool:
    """The web UI's test (3+ `key: value` pairs), or a line made only of such pairs."""
    if line.strip().startswith(_NEGATIVE):
        return False
    return len(_PARAM_RE.findall(line)) >= 3 or _only_params(line)


def _split_prompts(lines: list[str]) -> tuple[str, str]:
    """Prompt and negative prompt from the lines before the params line."""
    prompt: list[str] = []
    negative: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not negative and line.startswith(_NEGATIVE):
            negative.append(line[len(_NEGATIVE) :].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    return "\n".join(prompt), "\n".join(negative)


def parse_infotext(text: str) -> dict[str, str]:
    """Read an infotext back: {"Prompt", "Negative prompt", **params} with string values.

    A value `WxH` (e.g. `Size: 512x512`) also gives `Size-1` / `Size-2`, as in the web UI.
    Without a params line, a last line that looks like `key: value` is read as params.
    """
    *lines, last = text.strip().split("\n")
    if not _is_params_line(last):
        lines, last = [*lines, last], ""
    prompt, negative = _split_prompts(lines)
    result: dict[str, str] = {"Prompt": prompt, "Negative prompt": negative}
    for key, raw in _PARAM_RE.findall(last):
        if key in result:
            continue
        value = _unquote(raw.strip())
        result[key] = value
        if size := _IMAGE_SIZE.match(value):
            result.setdefault(f"{key}-1", size.group(1))
            result.setdefault(f"{key}-2", size.group(2))
    return result


# ---------------------------------------------------------------- reading images


def read_image_info(path: Path) -> tuple[str | None, dict[str, Any] | None]:
    """The `parameters` infotext and parsed `dreamframe` settings of an image (None if absent)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if not path.is_file():
        raise ValueError(f"not an image file: {path} is a folder or special file")
    try:
        with Image.open(path) as image:
            chunks = dict(getattr(image, "text", None) or image.info)
    except PermissionError:
        raise
    except (UnidentifiedImageError, SyntaxError, OSError) as e:
        raise ValueError(f"cannot read {path} as an image: {e}") from None
    parameters = chunks.get(PARAMETERS_CHUNK)
    raw = chunks.get(SETTINGS_CHUNK)
    if raw is None:
        return (parameters if isinstance(parameters, str) else None), None
    settings = _json_object(raw, f"{path}: the {SETTINGS_CHUNK!r} chunk")
    return (parameters if isinstance(parameters, str) else None), settings


def format_image_info(path: Path) -> str:
    """What `python -m helpers info IMAGE.png` prints: infotext, blank line, settings JSON."""
    parameters, settings = read_image_info(path)
    head = parameters if parameters is not None else "No generation parameters in this image."
    if settings is None:
        tail = f"No Dreamframe metadata in this image (no {SETTINGS_CHUNK!r} chunk)."
    else:
        tail = json.dumps(settings, indent=2, ensure_ascii=False)
    return f"{head}\n\n{tail}"


# ---------------------------------------------------------------- resume points


def _state_path(run_dir: Path, name: str) -> Path:
    """`run_dir/name`, refusing names that would leave the run folder."""
    if not isinstance(name, str) or not _STATE_NAME.match(name) or ".." in name:
        raise ValueError(f"state name must be a plain file name, got {name!r}")
    return Path(run_dir) / name


def save_state(run_dir: Path, state: dict[str, Any], name: str = "state.pt") -> Path:
    """Save a resume point (tensors, numbers, strings, nested dicts/lists) atomically."""
    import torch

    if not isinstance(state, dict):
        raise ValueError(f"state must be a dict, got {type(state).__name__}")
    path = _state_path(run_dir, name)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_state(
    run_dir: Path, name: str = "state.pt", map_location: str | None = "cpu"
) -> dict[str, Any]:
    """Load a resume point saved by `save_state`; never runs code from the file."""
    import torch

    path = _state_path(run_dir, name)
    if not path.is_file():
        raise FileNotFoundError(f"resume state not found: {path}")
    buffer = io.BytesIO(path.read_bytes())
    return torch.load(buffer, map_location=map_location, weights_only=True)
