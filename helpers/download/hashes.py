"""The per-folder record of verified files: sha256 with the size and mtime it was checked at."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from helpers.catalog import ModelFile
from helpers.files import atomic_write_text, read_json
from helpers.reporting import Log

HASHES = "hashes.json"  # per model folder: {file: {sha256, size, mtime_ns, source}}


def cached_problem(folder: Path, file: ModelFile, deep: bool = False) -> str | None:
    """None if `folder/file.name` is present and verified, else what is wrong with it."""
    path = folder / file.name
    if not path.is_file():
        return "missing"
    stat = path.stat()
    if file.size is not None and stat.st_size != file.size:
        return f"{stat.st_size} bytes, expected {file.size}"
    entry = read_hashes(folder).get(file.name, {})
    expected = file.sha256 or entry.get("sha256")
    unchanged = (entry.get("size"), entry.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns)
    if unchanged and not deep and entry.get("sha256") == expected:
        return None
    actual = sha256(path)
    if expected is not None and actual != expected:
        whose = "the catalogue's" if file.sha256 else "the one recorded at its first download"
        return f"sha256 {actual} differs from {whose}, {expected}"
    record(folder, file.name, actual, entry.get("source"))
    return None


def expected_sha256(folder: Path, file: ModelFile) -> str | None:
    """The catalogue's sha256 of the file, else the one recorded at its first download."""
    return file.sha256 or read_hashes(folder).get(file.name, {}).get("sha256")


def read_hashes(folder: Path) -> dict:
    """The folder's record ({} when absent or unreadable)."""
    try:
        data = read_json(folder / HASHES, str(folder / HASHES))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(folder: Path, name: str, sha: str, source: str | None) -> None:
    """Record a verified file's sha256 with the size and mtime it had when checked."""
    stat = (folder / name).stat()
    data = read_hashes(folder)
    data[name] = {"sha256": sha, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                  "source": source}
    _write_hashes(folder, data)


def forget_other_source(folder: Path, name: str, source: str, log: Log) -> None:
    """Drop a user file fetched from another source under the same name."""
    data = read_hashes(folder)
    old = data.get(name, {}).get("source")
    if old is None or old == source:
        return
    log(f"replacing {folder / name} (from {old}) with the file from {source}")
    (folder / name).unlink(missing_ok=True)
    del data[name]
    _write_hashes(folder, data)


def sha256(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_hashes(folder: Path, data: dict) -> None:
    atomic_write_text(folder / HASHES, json.dumps(data, indent=2, sort_keys=True) + "\n")
