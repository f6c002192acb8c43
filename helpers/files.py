"""Atomic file writes (a file is either complete at its final path or absent), and JSON read
from files a user could have downloaded, bounded in size and depth (`load_json`).

Files land with the permissions of a plain `open()` under the process umask (0644 under the
usual 022), not the 0600 of a temporary file, so frames and videos on a shared machine stay
readable to others.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any


@functools.cache
def _umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once (read only once per process)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from `open()`: 0o666 less the umask."""
    return 0o666 & ~_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_replace(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Move a finished temporary file into place with the usual permissions."""
    os.chmod(tmp, file_mode())
    os.replace(tmp, path)
    return Path(path)


def writable_folder(path: str | os.PathLike, field: str) -> Path:
    """Check that `path` is, or can become, a folder we may write in; nothing is created.

    `ValueError` naming `field` when it is a file, lies under a file, or is not writable.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{field}: {path} is a file, not a folder; give a folder")
    probe = path
    while not probe.exists():
        if probe.is_symlink():
            raise ValueError(f"{field}: {probe} is a link to {os.readlink(probe)}, which does "
                             "not exist; give an existing folder")
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{field}: cannot make the folder {path}: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK) or not _can_create_in(probe):
        raise ValueError(f"{field}: cannot write in {probe} (permission denied or a read-only "
                         "disk); give another folder")
    return path


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in `folder` (root passes `os.access` on read-only disks)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- JSON from files

MAX_JSON_CHARS = 32 << 20  # every JSON we read (settings, model configs, headers) is far smaller
MAX_JSON_DEPTH = 100  # ours nest 3 or 4 levels; Python's own limit would end in a RecursionError


class JsonError(json.JSONDecodeError):
    """JSON that `load_json` refuses (bad syntax, too long, nested too deep): a `ValueError`,
    and a `json.JSONDecodeError` so that handlers written for `json.loads` catch it too."""

    def __init__(self, message: str, doc: str = "", pos: int = 0):
        super().__init__(message, doc, pos)
        self.args = (message,)

    def __str__(self) -> str:
        return self.msg


def load_json(text: str | bytes, what: str, expect: type | None = None,
              limit: int = MAX_JSON_CHARS) -> Any:
    """Parse JSON from a file a user could have downloaded, bounded in size and depth.

    `JsonError` (a `ValueError`) naming `what` for bad syntax, text over `limit` characters,
    nesting deeper than `MAX_JSON_DEPTH`, or (with `expect`) a value of another type.
    """
    if len(text) > limit:
        raise JsonError(f"{what} is {len(text):,} characters long, more than the {limit:,} "
                        "read; not read")
    try:
        if isinstance(text, bytes):
            text = text.decode(json.detect_encoding(text))
        value = json.loads(text)
    except UnicodeDecodeError:
        raise JsonError(f"{what} is not valid JSON: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise JsonError(f"{what} is not valid JSON: {e}") from None
    except RecursionError:
        value = _TOO_DEEP
    if value is _TOO_DEEP or _depth_over(value, MAX_JSON_DEPTH):
        raise JsonError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep; not read")
    if expect is not None and not isinstance(value, expect):
        raise JsonError(f"{what} must be a JSON {_JSON_NAMES.get(expect, expect.__name__)}, "
                        f"got {type(value).__name__}")
    return value


_JSON_NAMES = {dict: "object", list: "array", str: "string"}
_TOO_DEEP = object()  # what a parse that ran out of stack gives


def read_json(path: str | os.PathLike, what: str, expect: type | None = None,
              limit: int = MAX_JSON_CHARS) -> Any:
    """`load_json` of a file, reading no more than `limit` bytes of it (plus one)."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    return load_json(data, what, expect, limit)


def _depth_over(value: Any, limit: int) -> bool:
    """Whether lists and objects nest deeper than `limit` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False
