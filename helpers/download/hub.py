"""The Hugging Face Hub through `huggingface_hub`: repo snapshots and single files."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from helpers.catalog import Model, Source
from helpers.download.errors import DownloadError, Failure, describe
from helpers.download.messages import advice, human
from helpers.download.network import Probes
from helpers.reporting import Log, library_bars


def hub_snapshot(model: Model, hub: Path) -> Path | None:
    """The model's complete snapshot folder in the Hub cache, resolved offline, or None."""
    patterns = list(model.allow_patterns) if model.allow_patterns else None
    try:
        path = _snapshot(model, hub, patterns, local_files_only=True)
    except OSError:  # LocalEntryNotFoundError, IncompleteSnapshotError
        return None
    if model.weights and not any((path / w).is_file() for w in model.weights):
        return None
    return path


def fetch_hub_model(model: Model, hub: Path, progress: bool, log: Log) -> Path:
    """Snapshot a Hub repo (its allowed files and the first weight file it has)."""
    cached = hub_snapshot(model, hub)
    if cached is not None:
        return cached
    where = f"Hugging Face Hub {model.hub_repo}"
    try:
        with kept_hub_logs(log):
            ask_hub(model.hub_repo, model.revision)
            for weights in model.weights or (None,):
                patterns = [*(model.allow_patterns or ()), *([weights] if weights else [])]
                log(f"downloading {model.name} ({human(model.approx_size)}) from {where}")
                with library_bars(progress):
                    path = _snapshot(model, hub, patterns or None)
                if weights is None or (path / weights).is_file():
                    return path
    except Exception as exc:
        prune_empty(hub / repo_folder(model.hub_repo))
        prune_empty(hub / ".locks" / repo_folder(model.hub_repo))
        failure = describe(exc, where)
        raise DownloadError(_hub_message(model, failure, hub), (failure,)) from exc
    raise DownloadError(f"{where} has none of the weight files {', '.join(model.weights)}. "
                        + advice(model.kind, None))


def hub_cached_file(repo: str, filename: str, hub: Path, kind: str, log: Log) -> Path:
    """One file of a Hub repo in the Hub cache `hub` (where diffusers and transformers look):
    the cached copy, else downloaded after one `ask_hub`; a `DownloadError` says why not."""
    from huggingface_hub import hf_hub_download

    with contextlib.suppress(OSError):  # LocalEntryNotFoundError: not in the cache
        return Path(hf_hub_download(repo, filename, cache_dir=hub, local_files_only=True))
    try:
        with kept_hub_logs(log):
            ask_hub(repo, filename=filename)
            return Path(hf_hub_download(repo, filename, cache_dir=hub))
    except Exception as exc:
        failure = describe(exc, f"Hugging Face Hub {repo}/{filename}")
        model = Model(repo, kind, "a Hub repo", "see its model card", hub_repo=repo)
        raise DownloadError(_hub_message(model, failure, hub), (failure,)) from exc


def hub_file(source: Source, staging: Path, progress: bool, log: Log) -> None:
    """Download one file of a Hub repo to `staging` (the Hub client resumes its own part)."""
    from huggingface_hub import hf_hub_download

    local_dir = staging.with_name(staging.name + ".hub")
    try:
        with library_bars(progress), kept_hub_logs(log):
            got = hf_hub_download(source.location, source.filename or "",
                                  revision=source.revision, local_dir=local_dir)
    except BaseException:
        prune_empty(local_dir)  # keep a partial download (it resumes), never an empty folder
        raise
    os.replace(got, staging)
    shutil.rmtree(local_dir, ignore_errors=True)


def ask_hub(repo: str, revision: str | None = None, filename: str | None = None,
            probes: Probes | None = None) -> None:
    """Ask the Hub once about a repo (or one of its files) before downloading it.

    The Hub client retries some requests five times with back-off and sends others with no
    timeout; this look raises at once instead: `Unreachable` when no connection opens, else the
    client's own error for one request (HF_HUB_ETAG_TIMEOUT seconds at most). Nothing is asked
    in offline mode (HF_HUB_OFFLINE), where the client fails at once by itself.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return
    (probes or Probes()).check(constants.ENDPOINT)
    timeout = constants.HF_HUB_ETAG_TIMEOUT
    if filename:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(repo, filename, revision=revision, endpoint=constants.ENDPOINT)
        get_hf_file_metadata(url, timeout=timeout)
    else:
        from huggingface_hub import HfApi

        HfApi(endpoint=constants.ENDPOINT).repo_info(repo, revision=revision, timeout=timeout)


@contextlib.contextmanager
def kept_hub_logs(log: Log) -> Iterator[None]:
    """Keep the Hub client's log lines (its retries) off stderr during the block: after a
    success they go to `log`, once each; after a failure the error says why, and they go."""
    import huggingface_hub.utils.logging  # noqa: F401  (sets up its logger before we swap it)

    logger = logging.getLogger("huggingface_hub")
    kept = _Kept()
    handlers, propagate = logger.handlers, logger.propagate
    logger.handlers, logger.propagate = [kept], False
    try:
        yield
    finally:
        logger.handlers, logger.propagate = handlers, propagate
    for line in dict.fromkeys(kept.lines):
        log(f"Hugging Face Hub: {line}")


class _Kept(logging.Handler):
    """A log handler that keeps the messages of WARNING and above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def repo_folder(repo: str) -> str:
    """The folder of a model repo in the Hub cache: `owner/name` -> `models--owner--name`."""
    from huggingface_hub.file_download import repo_folder_name

    return repo_folder_name(repo_id=repo, repo_type="model")


def prune_empty(folder: Path) -> None:
    """Remove `folder` and its sub-folders where they hold no file."""
    for sub, _dirs, _files in os.walk(folder, topdown=False):  # the deepest first
        with contextlib.suppress(OSError):
            os.rmdir(sub)


def _snapshot(model: Model, hub: Path, patterns: list[str] | None, **kwargs: object) -> Path:
    """snapshot_download of the model's repo and revision into the Hub cache `hub`."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model.hub_repo, revision=model.revision, cache_dir=hub,
                                  allow_patterns=patterns, **kwargs))


def _hub_message(model: Model, failure: Failure, hub: Path) -> str:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        head = (f"{model.hub_repo} is not in the cache at {hub}, and the Hugging Face Hub is "
                "offline (HF_HUB_OFFLINE is set): unset HF_HUB_OFFLINE to download it.")
    elif failure.unreachable:
        head = (f"no network connection: could not reach the Hugging Face Hub at "
                f"{constants.ENDPOINT} for {model.hub_repo} ({failure.reason}). Check the "
                "internet connection.")
    else:
        head = f"could not download {model.hub_repo} from the Hugging Face Hub: {failure.reason}."
    return f"{head}\n{advice(model.kind, None)}"
