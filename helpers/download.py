"""Getting model files into the cache: resume, verify, land atomically, explain failures.

Hub files and snapshots go through `huggingface_hub`, Google Drive ids and plain URLs through
`gdown`. A catalogue file's mirrors are tried in order; each dead one costs one log line.

Cache layout (see `cache_dir`):
    <cache>/<model>/model.ckpt, model.yaml, hashes.json   files of catalogue models
    <cache>/hub/models--owner--repo/...                    the Hugging Face Hub cache
A download is written to `.<file>.download` beside its final path (gdown keeps the unfinished
part as `.<file>.download<8 chars>.part` and continues it with an HTTP Range request next time)
and renamed to the final name only after its size, sha256 and content check out.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import inspect
import json
import os
import re
import shutil
import socket
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path, PurePosixPath

from helpers.catalog import CLIP_FILES, CLIP_WEIGHTS, Model, ModelFile, Source, get_model
from helpers.files import atomic_write_text

RETRIES = 2  # extra attempts per mirror after a transient network error (gdown resumes them)
TIMEOUT = (15.0, 60.0)  # seconds to connect, and to wait for the next bytes
HASHES = "hashes.json"  # per model folder: {file: {sha256, size, mtime_ns, source}}
BUILT = ".dreamframe-built.json"  # marks a finished test-model build
_EXAMPLES = {"vqgan": "--vqgan /path/to/model.ckpt", "clip": "--clip /path/to/clip-folder",
             "diffusion": "--model /path/to/model.safetensors"}
_FILE_SUFFIXES = (".ckpt", ".yaml", ".yml", ".safetensors", ".pt", ".pth", ".bin", ".json")

Log = Callable[[str], object]


class DownloadError(RuntimeError):
    """A model or file could not be got from any of its sources."""


class _BadFile(Exception):
    """A download finished but is not the expected file."""


@dataclass(frozen=True)
class _Failure:
    where: str  # the source, as shown to the user
    reason: str  # one line
    unreachable: bool  # DNS failure, refused or timed-out connection, or offline mode


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The model cache: `cache` if given, else $DREAMFRAME_CACHE, else ~/.cache/dreamframe."""
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get("DREAMFRAME_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dreamframe"


def model_dir(model: Model | str, cache: str | os.PathLike | None = None) -> Path:
    """The folder a model lives in (for Hub repos: the repo's folder in the Hub cache)."""
    model = _as_model(model)
    if model.hub_repo:
        return cache_dir(cache) / "hub" / ("models--" + model.hub_repo.replace("/", "--"))
    return cache_dir(cache) / model.name


def is_cached(model: Model | str, cache: str | os.PathLike | None = None,
              deep: bool = False) -> bool:
    """Whether every file of the model is in the cache and matches its sha256.

    A file's hash is recomputed only when its size or mtime changed since it was last checked,
    or with deep=True. Hub repos count as cached when the Hub cache resolves them offline.
    """
    model = _as_model(model)
    if model.test:
        return (model_dir(model, cache) / BUILT).is_file()
    if model.hub_repo:
        return _hub_snapshot(model, cache_dir(cache) / "hub") is not None
    folder = model_dir(model, cache)
    return all(_cached_problem(folder, f, deep) is None for f in model.files)


def fetch(name_or_model: Model | str, cache: str | os.PathLike | None = None,
          progress: bool = True, log: Log = print, retries: int = RETRIES) -> Path:
    """Get a catalogue model into the cache; return its folder (Hub repos: the snapshot)."""
    model = _as_model(name_or_model)
    if model.test:
        return _build_test_model(model, model_dir(model, cache))
    if model.hub_repo:
        return _fetch_hub_model(model, cache_dir(cache) / "hub", progress, log)
    folder = model_dir(model, cache)
    folder.mkdir(parents=True, exist_ok=True)
    for file in model.files:
        _fetch_file(file, folder, f"{model.name}/{file.name}", model.kind,
                    progress=progress, log=log, retries=retries)
    return folder


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


def fetch_file_from(spec: str | Source | Path, dest_dir: str | os.PathLike,
                    name: str | None = None, sha256: str | None = None, *,
                    cache: str | os.PathLike | None = None, kind: str = "vqgan",
                    progress: bool = True, log: Log = print, retries: int = RETRIES) -> Path:
    """Fetch a user-supplied file into `dest_dir` (saved as `name`) and return its path.

    An existing local path is returned as is; a whole Hub repo (`owner/repo`) is snapshot
    into the Hub cache of `cache` and its folder returned.
    """
    found = resolve_user_source(spec) if isinstance(spec, str) else spec
    if isinstance(found, Path):
        if found.exists():
            return found
        raise FileNotFoundError(f"{found} does not exist: give an existing file or folder, an "
                                "http(s) URL, a Google Drive id or a Hugging Face Hub id")
    if found.kind == "hub" and not found.filename:
        clip = kind == "clip"  # only the transformers files, not TF / Flax copies of the weights
        repo = Model(found.location, kind, "user-supplied Hub repo", "see the repo's model card",
                     hub_repo=found.location, revision=found.revision,
                     allow_patterns=CLIP_FILES if clip else None,
                     weights=CLIP_WEIGHTS if clip else ())
        return _fetch_hub_model(repo, cache_dir(cache) / "hub", progress, log)
    folder = Path(dest_dir)
    folder.mkdir(parents=True, exist_ok=True)
    file = ModelFile(name or _default_name(found), (found,), None, sha256)
    _forget_other_source(folder, file.name, found.describe(), log)
    return _fetch_file(file, folder, file.name, kind, progress=progress, log=log, retries=retries)


# --- files ----------------------------------------------------------------------------------


def _fetch_file(file: ModelFile, folder: Path, label: str, kind: str, *, progress: bool,
                log: Log, retries: int) -> Path:
    """Make `folder/file.name` a verified copy of the file, trying its mirrors in order."""
    final = folder / file.name
    problem = _cached_problem(folder, file)
    if problem is None:
        return final
    if problem != "missing":
        log(f"{final} is damaged ({problem}) - downloading it again")
        final.unlink()
    record = _read_hashes(folder).get(file.name, {})
    expected = file.sha256 or record.get("sha256")
    failures: list[_Failure] = []
    for i, source in enumerate(file.sources, 1):
        try:
            sha = _download(source, folder, file, expected, progress=progress, log=log,
                            retries=retries, recorded=file.sha256 is None)
        except Exception as exc:  # any failure of a mirror moves on to the next
            failures.append(_describe(exc, source.describe()))
            if i < len(file.sources):
                log(f"mirror {i}/{len(file.sources)} failed ({failures[-1].reason}: "
                    f"{failures[-1].where}) - trying the next")
            continue
        _record(folder, file.name, sha, source.describe())
        return final
    raise DownloadError(_failure_message(label, failures, final, kind))


def _download(source: Source, folder: Path, file: ModelFile, expected: str | None, *,
              progress: bool, log: Log, retries: int, recorded: bool) -> str:
    """Download one source to the staging name, check it, rename it; return its sha256."""
    staging = folder / f".{file.name}.download"
    if staging.is_file():  # finished earlier, but never checked
        sha = _sha256(staging)
    else:
        log(f"downloading {file.name} ({_human(file.size)}) from {source.describe()}")
        if source.kind == "hub":
            _hub_file(source, staging, progress)
            sha = _sha256(staging)
        else:
            sha = _gdown(source, staging, progress, retries)
    _check_download(staging, file, sha, expected, recorded)
    os.replace(staging, folder / file.name)
    _discard(staging)  # partial downloads left by other mirrors
    return sha


def _check_download(staging: Path, file: ModelFile, sha: str, expected: str | None,
                    recorded: bool) -> None:
    """Raise _BadFile (and delete the download, so it is not resumed) if it is not the file."""
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
        raise _BadFile(problem)


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
    wanted = {"hasher": hasher, "retries": retries, "timeout": TIMEOUT}
    accepted = inspect.signature(gdown.download).parameters
    extras = {k: v for k, v in wanted.items() if k in accepted}  # older gdown lacks some
    where = {"id": source.location} if source.kind == "gdrive" else {"url": source.location}
    gdown.download(**where, output=str(staging), quiet=not progress, resume=True,
                   use_cookies=source.kind == "gdrive", **extras)
    return hasher.hexdigest() if "hasher" in extras else _sha256(staging)


def _hub_file(source: Source, staging: Path, progress: bool) -> None:
    """Download one file of a Hub repo to `staging` (the Hub client resumes its own part)."""
    from huggingface_hub import hf_hub_download

    local_dir = staging.with_name(staging.name + ".hub")
    with _hub_progress(progress):
        got = hf_hub_download(source.location, source.filename or "", revision=source.revision,
                              local_dir=local_dir)
    os.replace(got, staging)
    shutil.rmtree(local_dir, ignore_errors=True)


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


# --- hashes ---------------------------------------------------------------------------------


def _cached_problem(folder: Path, file: ModelFile, deep: bool = False) -> str | None:
    """None if `folder/file.name` is present and verified, else what is wrong with it."""
    path = folder / file.name
    if not path.is_file():
        return "missing"
    stat = path.stat()
    if file.size is not None and stat.st_size != file.size:
        return f"{stat.st_size} bytes, expected {file.size}"
    record = _read_hashes(folder).get(file.name, {})
    expected = file.sha256 or record.get("sha256")
    unchanged = (record.get("size"), record.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns)
    if unchanged and not deep and record.get("sha256") == expected:
        return None
    actual = _sha256(path)
    if expected is not None and actual != expected:
        whose = "the catalogue's" if file.sha256 else "the one recorded at its first download"
        return f"sha256 {actual} differs from {whose}, {expected}"
    _record(folder, file.name, actual, record.get("source"))
    return None


def _read_hashes(folder: Path) -> dict:
    try:
        data = json.loads((folder / HASHES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _record(folder: Path, name: str, sha: str, source: str | None) -> None:
    """Record a verified file's sha256 with the size and mtime it had when checked."""
    stat = (folder / name).stat()
    data = _read_hashes(folder)
    data[name] = {"sha256": sha, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                  "source": source}
    atomic_write_text(folder / HASHES, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _forget_other_source(folder: Path, name: str, source: str, log: Log) -> None:
    """Drop a user file fetched from another source under the same name."""
    data = _read_hashes(folder)
    old = data.get(name, {}).get("source")
    if old is None or old == source:
        return
    log(f"replacing {folder / name} (from {old}) with the file from {source}")
    (folder / name).unlink(missing_ok=True)
    del data[name]
    atomic_write_text(folder / HASHES, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- Hub repos and test models --------------------------------------------------------------


def _hub_snapshot(model: Model, hub: Path) -> Path | None:
    """The model's complete snapshot folder in the Hub cache, resolved offline, or None."""
    from huggingface_hub import snapshot_download

    patterns = list(model.allow_patterns) if model.allow_patterns else None
    try:
        path = Path(snapshot_download(model.hub_repo, revision=model.revision, cache_dir=hub,
                                      allow_patterns=patterns, local_files_only=True))
    except OSError:  # LocalEntryNotFoundError, IncompleteSnapshotError
        return None
    if model.weights and not any((path / w).is_file() for w in model.weights):
        return None
    return path


def _fetch_hub_model(model: Model, hub: Path, progress: bool, log: Log) -> Path:
    """Snapshot a Hub repo (its allowed files and the first weight file it has)."""
    cached = _hub_snapshot(model, hub)
    if cached is not None:
        return cached
    from huggingface_hub import snapshot_download

    where = f"Hugging Face Hub {model.hub_repo}"
    try:
        for weights in model.weights or (None,):
            patterns = [*(model.allow_patterns or ()), *([weights] if weights else [])]
            log(f"downloading {model.name} ({_human(model.approx_size)}) from {where}")
            with _hub_progress(progress):
                path = Path(snapshot_download(model.hub_repo, revision=model.revision,
                                              cache_dir=hub, allow_patterns=patterns or None))
            if weights is None or (path / weights).is_file():
                return path
    except Exception as exc:
        raise DownloadError(_hub_message(model, _describe(exc, where), hub)) from exc
    raise DownloadError(f"{where} has none of the weight files {', '.join(model.weights)}. "
                        + _advice(model.kind, None))


def _hub_message(model: Model, failure: _Failure, hub: Path) -> str:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        head = (f"{model.hub_repo} is not in the cache at {hub}, and the Hugging Face Hub is "
                "offline (HF_HUB_OFFLINE is set): unset HF_HUB_OFFLINE to download it.")
    elif failure.unreachable:
        head = (f"no network connection: could not reach the Hugging Face Hub for "
                f"{model.hub_repo} ({failure.reason}). Check the internet connection.")
    else:
        head = f"could not download {model.hub_repo} from the Hugging Face Hub: {failure.reason}."
    return f"{head}\n{_advice(model.kind, None)}"


@contextlib.contextmanager
def _hub_progress(enabled: bool) -> Iterator[None]:
    """Hide huggingface_hub's progress bars while downloading when `enabled` is False."""
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    if enabled or are_progress_bars_disabled():
        yield
        return
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()


def _build_test_model(model: Model, folder: Path) -> Path:
    """Build a random-weight test model once (atomically) and return its path."""
    marker = folder / BUILT
    if marker.is_file():
        return folder / json.loads(marker.read_text(encoding="utf-8"))["path"]
    from helpers.testing import build_test_model

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model.name}.", suffix=".building", dir=folder.parent))
    try:
        built = Path(build_test_model(model.name, tmp)).resolve()
        relative = built.relative_to(tmp.resolve()).as_posix()
        atomic_write_text(tmp / BUILT, json.dumps({"path": relative}) + "\n")
        if folder.exists():  # an unfinished build from before the marker existed
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / relative


# --- messages -------------------------------------------------------------------------------


def _failure_message(label: str, failures: list[_Failure], target: Path, kind: str) -> str:
    if not failures:
        head = f"could not download {label}: the catalogue lists no source for it"
    elif all(f.unreachable for f in failures):
        head = (f"no network connection: could not reach any mirror of {label}. Check the "
                "internet connection. Tried")
    else:
        head = f"could not download {label} from any of its {len(failures)} mirrors"
    lines = [head + ":"] + [f"  {i}. {f.where}: {f.reason}" for i, f in enumerate(failures, 1)]
    return "\n".join([*lines, _advice(kind, target)])


def _advice(kind: str, target: Path | None) -> str:
    """How to supply a model yourself; `target`: where a file dropped into the cache goes."""
    example = _EXAMPLES.get(kind, _EXAMPLES["vqgan"])
    where = f"put the file at {target}" if target else "download it into a folder and pass that"
    return ("You can supply it yourself: give a local path, an http(s) URL, a Google Drive id "
            f"or a Hugging Face Hub id (owner/repo or owner/repo/file), e.g. {example}; or "
            f"{where}, and run again.")


def _describe(exc: BaseException, where: str) -> _Failure:
    """Turn a download exception into a one-line reason."""
    chain = list(_chain(exc))
    names = {cls.__name__ for e in chain for cls in type(e).__mro__}
    if isinstance(exc, _BadFile):
        return _Failure(where, str(exc), False)
    if "OfflineModeIsEnabled" in names:
        return _Failure(where, "offline mode (HF_HUB_OFFLINE is set)", True)
    unreachable = _unreachable(chain, names)
    if unreachable:
        return _Failure(where, unreachable, True)
    for name, reason in (("GatedRepoError", "gated repo: accept its terms on huggingface.co and "
                          "log in with `hf auth login`"),
                         ("RepositoryNotFoundError", "repository not found (or private)"),
                         ("RevisionNotFoundError", "revision not found"),
                         ("RemoteEntryNotFoundError", "file not found in the repository"),
                         ("FileURLRetrievalError", "Google Drive would not serve the file (not "
                          "shared publicly, or its download quota is used up)")):
        if name in names:
            return _Failure(where, reason, False)
    for e in chain:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(status, int) and status >= 400:
            return _Failure(where, f"HTTP {status} {_phrase(status)}", False)
    dropped = re.search(r"received (\d+) bytes", str(exc))
    if dropped or names & {"ChunkedEncodingError", "IncompleteRead", "ProtocolError",
                           "RemoteProtocolError"}:
        got = f" after {dropped.group(1)} bytes" if dropped else ""
        return _Failure(where, f"connection dropped{got}; the partial download is kept and "
                        "resumes next time", False)
    if names & {"Timeout", "ReadTimeout", "ReadTimeoutError", "TimeoutException"}:
        return _Failure(where, "the server stopped responding (timed out)", False)
    text = (str(exc).strip().splitlines() or [""])[0]
    return _Failure(where, f"{type(exc).__name__}: {text}"[:300], False)


def _unreachable(chain: list[BaseException], names: set[str]) -> str | None:
    text = " ".join(str(e) for e in chain)
    dns = ("Name or service not known", "Temporary failure in name resolution",
           "nodename nor servname", "getaddrinfo failed", "No address associated")
    if "NameResolutionError" in names or any(isinstance(e, socket.gaierror) for e in chain) \
            or any(s in text for s in dns):
        return "DNS lookup failed"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text \
            or "actively refused" in text:
        return "connection refused"
    if names & {"ConnectTimeout", "ConnectTimeoutError"}:
        return "connection timed out"
    if "Network is unreachable" in text:
        return "network unreachable"
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and the errors wrapped in its args/reason."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        inner = [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
        todo.extend(x for x in inner if isinstance(x, BaseException))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _human(size: int | None) -> str:
    if size is None:
        return "size unknown"
    if size >= 10**9:
        return f"{size / 10**9:.1f} GB"
    return f"{size / 10**6:.1f} MB" if size >= 10**6 else f"{size} bytes"


def _drive_id(url: str) -> str | None:
    host = (urllib.parse.urlparse(url).hostname or "").lower()
    if host not in ("drive.google.com", "docs.google.com"):
        return None
    from gdown.parse_url import parse_url

    return parse_url(url)[0]


def _default_name(source: Source) -> str:
    if source.kind == "hub":
        return PurePosixPath(source.filename or source.location).name
    if source.kind == "gdrive":
        return f"gdrive-{source.location}"
    path = urllib.parse.unquote(urllib.parse.urlparse(source.location).path)
    name = re.sub(r"[^\w.-]", "_", PurePosixPath(path).name).lstrip(".")
    return name or "download"


def _as_model(model: Model | str) -> Model:
    return model if isinstance(model, Model) else get_model(model)
