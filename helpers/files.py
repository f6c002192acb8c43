"""Atomic file writes: a file is either complete at its final path or absent.

Files land with the permissions of a plain `open()` under the process umask (0644 under the
usual 022), not the 0600 of a temporary file, so frames and videos on a shared machine stay
readable to others.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path


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
