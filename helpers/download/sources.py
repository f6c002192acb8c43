"""A user's own model source, as typed: a local path, URL, Google Drive id or Hub id."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path, PurePosixPath

from helpers.catalog import Source

_FILE_SUFFIXES = (".ckpt", ".yaml", ".yml", ".safetensors", ".pt", ".pth", ".bin", ".json")


def resolve_user_source(spec: str) -> Source | Path:
    """Read a user's model source: a local path, an http(s) URL, a Google Drive id or share
    URL, or a Hub id (`owner/repo` or `owner/repo/path/in/repo`)."""
    text = spec.strip()
    if not text:
        raise ValueError("model source is empty: give a local path, URL, Drive id or Hub id")
    if re.match(r"https?://", text, re.IGNORECASE):
        drive_id = _drive_id(text)
        return Source("gdrive", drive_id) if drive_id else Source("url", text)
    path = Path(text).expanduser()
    if path.exists() or re.match(r"(~|\.{0,2}[/\\]|[A-Za-z]:[/\\])", text) or "\\" in text:
        return path
    if re.fullmatch(r"[\w.-]+/[\w.-]+(/\S+)?", text) and not (
            text.count("/") == 1 and text.lower().endswith(_FILE_SUFFIXES)):
        owner, repo, *inside = text.split("/", 2)
        return Source("hub", f"{owner}/{repo}", inside[0] if inside else None)
    if re.fullmatch(r"[A-Za-z0-9_-]{25,}", text):
        return Source("gdrive", text)
    if "/" in text or path.suffix:
        return path  # a relative path that does not exist; fetch_file_from says so
    raise ValueError(f"model source {spec!r} is not an existing path, an http(s) URL, a Google "
                     "Drive id or a Hugging Face Hub id (owner/repo or owner/repo/file)")


def default_name(source: Source) -> str:
    """The file name a download from `source` is saved under when the user gives none."""
    if source.kind == "hub":
        return PurePosixPath(source.filename or source.location).name
    if source.kind == "gdrive":
        return f"gdrive-{source.location}"
    path = urllib.parse.unquote(urllib.parse.urlparse(source.location).path)
    name = re.sub(r"[^\w.-]", "_", PurePosixPath(path).name).lstrip(".")
    return name or "download"


def _drive_id(url: str) -> str | None:
    host = (urllib.parse.urlparse(url).hostname or "").lower()
    if host not in ("drive.google.com", "docs.google.com"):
        return None
    from gdown.parse_url import parse_url

    return parse_url(url)[0]
