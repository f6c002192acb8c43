"""One file from its mirrors in order: gdown for URLs and Drive ids, the Hub client for Hub
files; each download is staged, checked, then renamed into place."""

from __future__ import annotations

import glob
import hashlib
import inspect
import os
import shutil
from pathlib import Path

from helpers.catalog import ModelFile, Source
from helpers.download.errors import BadFile, DownloadError, Failure, describe
from helpers.download.hashes import HASHES, cached_problem, expected_sha256, record, sha256
from helpers.download.hub import ask_hub, hub_file
from helpers.download.messages import failure_message, human
from helpers.download.network import Probes
from helpers.reporting import Log, progress_bar

RETRIES = 2  # extra attempts per mirror after a transient network error (gdown resumes them)
TIMEOUT = (15.0, 60.0)  # seconds to connect, and to wait for the next bytes


def fetch_file(file: ModelFile, folder: Path, label: str, kind: str, *, progress: bool,
               log: Log, retries: int) -> Path:
    """Make `folder/file.name` a verified copy of the file, trying its mirrors in order."""
    final = folder / file.name
    problem = cached_problem(folder, file)
    if problem is None:
        return final
    if problem != "missing":
        log(f"{final} is damaged ({problem}) - downloading it again")
        final.unlink()
    expected = expected_sha256(folder, file)
    failures: list[Failure] = []
    probes = Probes()  # mirrors on one host: one look at it
    for i, source in enumerate(file.sources, 1):
        try:
            sha = _download(source, folder, file, expected, progress=progress, log=log,
                            retries=retries, recorded=file.sha256 is None, probes=probes)
        except Exception as exc:  # any failure of a mirror moves on to the next
            failures.append(describe(exc, source.describe()))
            if i < len(file.sources) and not failures[-1].unreachable:
                log(f"mirror {i}/{len(file.sources)} failed ({failures[-1].reason}: "
                    f"{failures[-1].where}) - trying the next")
            continue
        record(folder, file.name, sha, source.describe())
        return final
    raise DownloadError(failure_message(label, failures, final, kind), tuple(failures))


def _download(source: Source, folder: Path, file: ModelFile, expected: str | None, *,
              progress: bool, log: Log, retries: int, recorded: bool, probes: Probes) -> str:
    """Download one source to the staging name, check it, rename it; return its sha256."""
    staging = folder / f".{file.name}.download"
    if staging.is_file():  # finished earlier, but never checked
        sha = sha256(staging)
    else:
        _look(source, probes)
        log(f"downloading {file.name} ({human(file.size)}) from {source.describe()}")
        if source.kind == "hub":
            hub_file(source, staging, progress, log)
            sha = sha256(staging)
        else:
            sha = _gdown(source, staging, progress, retries)
    _check_download(staging, file, sha, expected, recorded)
    os.replace(staging, folder / file.name)
    _discard(staging)  # partial downloads left by other mirrors
    return sha


def _look(source: Source, probes: Probes) -> None:
    """Raise at once if the source's server cannot be reached (see `network`)."""
    if source.kind == "hub":
        ask_hub(source.location, source.revision, source.filename, probes)
    else:
        probes.check(_url(source))


def _url(source: Source) -> str:
    """The URL gdown first asks for a URL or Google Drive source."""
    if source.kind == "gdrive":
        return f"https://drive.google.com/uc?id={source.location}"
    return source.location


def _check_download(staging: Path, file: ModelFile, sha: str, expected: str | None,
                    recorded: bool) -> None:
    """Raise BadFile (and delete the download, so it is not resumed) if it is not the file."""
    size = staging.stat().st_size
    problem = None
    if _looks_like_html(staging, file.name):
        problem = "the server sent a web page, not the file (a login page or a dead link)"
    elif file.size is not None and size != file.size:
        problem = f"got {size} bytes, expected {file.size}"
    elif expected is not None and sha != expected:
        problem = f"sha256 mismatch: expected {expected}, got {sha}; the download was deleted"
        if recorded:
            problem += (f" (expected is the hash recorded at the first download; delete "
                        f"{staging.parent / HASHES} if the file was changed on purpose)")
    if problem:
        _discard(staging)
        raise BadFile(problem)


def _gdown(source: Source, staging: Path, progress: bool, retries: int) -> str:
    """Download a URL or Drive id with gdown (resuming a partial download); return its sha256."""
    try:
        return _gdown_once(source, staging, progress, retries)
    except Exception as exc:
        if "byte range" not in str(exc):
            raise
    _discard(staging)  # this server cannot continue the partial download: start it over
    return _gdown_once(source, staging, progress, retries)


def _gdown_once(source: Source, staging: Path, progress: bool, retries: int) -> str:
    import gdown

    hasher = hashlib.sha256()
    bar = _Bar(staging.name.removeprefix(".").removesuffix(".download"), progress)
    wanted = {"hasher": hasher, "retries": retries, "timeout": TIMEOUT, "progress": bar}
    accepted = inspect.signature(gdown.download).parameters
    extras = {k: v for k, v in wanted.items() if k in accepted}  # older gdown lacks some
    # with our bar, gdown prints nothing: no "Retrying (1/2)" lines on stderr (red in notebooks)
    quiet = not progress or "progress" in extras
    where = {"id": source.location} if source.kind == "gdrive" else {"url": source.location}
    try:
        gdown.download(**where, output=str(staging), quiet=quiet, resume=True,
                       use_cookies=source.kind == "gdrive", **extras)
    finally:
        bar.close()
    return hasher.hexdigest() if "hasher" in extras else sha256(staging)


class _Bar:
    """gdown's progress callback as our progress bar (a widget in notebooks), made on the
    first call, when the size is known."""

    def __init__(self, name: str, enabled: bool):
        self.name, self.enabled, self.bar = name, enabled, None

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None:
            self.bar = progress_bar(total, self.name, self.enabled, initial=done, unit="B")
            self.bar.unit_scale = True
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        """Close the bar, if one was made."""
        if self.bar is not None:
            self.bar.close()


def _discard(staging: Path) -> None:
    """Remove a download and the partial files gdown and the Hub client keep for it."""
    staging.unlink(missing_ok=True)
    for part in staging.parent.glob(glob.escape(staging.name) + "*.part"):
        part.unlink(missing_ok=True)
    shutil.rmtree(staging.with_name(staging.name + ".hub"), ignore_errors=True)


def _looks_like_html(path: Path, name: str) -> bool:
    if name.lower().endswith((".html", ".htm")):
        return False
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))
