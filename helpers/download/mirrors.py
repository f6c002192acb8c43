"""One file from its mirrors in order: gdown for URLs and Drive ids, the Hub client for Hub
files; each download is staged, checked, then renamed into place."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import inspect
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers.catalog import ModelFile, Source
from helpers.download.errors import BadFile, DownloadError, Failure, OverLimit, describe
from helpers.download.hashes import HASHES, cached_problem, expected_sha256, record, sha256
from helpers.download.hub import ask_hub, hub_file
from helpers.download.messages import failure_message, human
from helpers.download.network import Probes
from helpers.reporting import Log, progress_bar

RETRIES = 2  # extra attempts per mirror after a transient network error (gdown resumes them)
TIMEOUT = (15.0, 60.0)  # seconds to connect, and to wait for the next bytes


@dataclass(frozen=True)
class Limits:
    """Bounds of a one-shot download (an input image, not a model): it fails past `seconds`
    in all or `max_bytes`, and a failed one leaves no partial file to resume."""

    seconds: float
    max_bytes: int


def fetch_file(file: ModelFile, folder: Path, label: str, kind: str, *, progress: bool,
               log: Log, retries: int, limits: Limits | None = None) -> Path:
    """Make `folder/file.name` a verified copy of the file, trying its mirrors in order
    (`limits`: bounds of a URL or Drive download, see `Limits`)."""
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
                            retries=retries, recorded=file.sha256 is None, probes=probes,
                            limits=limits)
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
              progress: bool, log: Log, retries: int, recorded: bool, probes: Probes,
              limits: Limits | None) -> str:
    """Download one source to the staging name, check it, rename it; return its sha256."""
    staging = folder / f".{file.name}.download"
    try:
        sha = _stage(source, staging, file, progress=progress, log=log, retries=retries,
                     probes=probes, limits=limits)
        _check_download(staging, file, sha, expected, recorded)
    except BaseException:
        if limits is not None:  # a bounded download is never resumed: it leaves nothing
            _discard(staging)
        raise
    os.replace(staging, folder / file.name)
    _discard(staging)  # partial downloads left by other mirrors
    return sha


def _stage(source: Source, staging: Path, file: ModelFile, *, progress: bool, log: Log,
           retries: int, probes: Probes, limits: Limits | None) -> str:
    """Get the source into the staging name (unless an earlier download finished there);
    return its sha256."""
    if staging.is_file():  # finished earlier, but never checked
        return sha256(staging)
    _look(source, probes)
    log(f"downloading {file.name} ({human(file.size)}) from {source.describe()}")
    if source.kind == "hub":
        hub_file(source, staging, progress, log)
        return sha256(staging)
    return _gdown(source, staging, progress, retries, limits)


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


def _gdown(source: Source, staging: Path, progress: bool, retries: int,
           limits: Limits | None = None) -> str:
    """Download a URL or Drive id with gdown (resuming a partial download); return its sha256."""
    if limits is not None:
        with _deadline(limits.seconds) as cancel:
            sha = _gdown_once(source, staging, progress, retries, limits, cancel)
        if staging.stat().st_size > limits.max_bytes:  # in case gdown never called the bar
            raise OverLimit(_too_large(limits))
        return sha
    try:
        return _gdown_once(source, staging, progress, retries)
    except Exception as exc:
        if "byte range" not in str(exc):
            raise
    _discard(staging)  # this server cannot continue the partial download: start it over
    return _gdown_once(source, staging, progress, retries)


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[threading.Event]:
    """An event set once `seconds` have passed (gdown stops at it); what fails after that
    is `OverLimit`."""
    cancel = threading.Event()
    timer = threading.Timer(seconds, cancel.set)
    timer.daemon = True
    timer.start()
    try:
        yield cancel
    except Exception:
        if cancel.is_set():
            raise OverLimit(f"took longer than {seconds:g} s") from None
        raise
    finally:
        timer.cancel()


def _too_large(limits: Limits) -> str:
    return f"larger than {human(limits.max_bytes)}, the most an input file may be"


def _gdown_once(source: Source, staging: Path, progress: bool, retries: int,
                limits: Limits | None = None, cancel: threading.Event | None = None) -> str:
    import gdown

    hasher = hashlib.sha256()
    bar = _Bar(staging.name.removeprefix(".").removesuffix(".download"), progress, limits,
               cancel)
    wanted = {"hasher": hasher, "retries": retries, "timeout": TIMEOUT, "progress": bar,
              "cancel": cancel}
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
    first call, when the size is known; it stops a bounded download past its limits."""

    def __init__(self, name: str, enabled: bool, limits: Limits | None = None,
                 cancel: threading.Event | None = None):
        self.name, self.enabled, self.bar = name, enabled, None
        self.limits, self.cancel = limits, cancel

    def __call__(self, done: int, total: int | None) -> None:
        if self.cancel is not None and self.cancel.is_set():  # a gdown without `cancel`
            raise OverLimit("cancelled")  # `_deadline` says why
        if self.limits is not None and max(done, total or 0) > self.limits.max_bytes:
            raise OverLimit(_too_large(self.limits))
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
