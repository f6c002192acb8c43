"""Getting model files into the cache: resume, verify, land atomically, explain failures.

Hub files and snapshots go through `huggingface_hub` (`hub`), Google Drive ids and plain URLs
through `gdown` (`mirrors`). A catalogue file's mirrors are tried in order; each dead one costs
one log line, and a file none of them serves is a `DownloadError` that lists them (`errors`,
`messages`). Test models are built by `helpers.testing` instead of downloaded.

Without a network, the first run fails at once and quietly: before each source, one TCP
connection to its server with a short timeout (`network`), and before a Hub download one
request the Hub client does not retry (`hub.ask_hub`); an unreachable server costs no library
call, no retry and no line on stderr, and the error suggests the offline test models. The Hub
client's own log lines during a download are kept off stderr (`hub.kept_hub_logs`).

Cache layout (see `cache_dir`):
    <cache>/<model>/model.ckpt, model.yaml, hashes.json   files of catalogue models (`hashes`)
    <cache>/hub/models--owner--repo/...                    the Hugging Face Hub cache
A download is written to `.<file>.download` beside its final path (gdown keeps the unfinished
part as `.<file>.download<8 chars>.part` and continues it with an HTTP Range request next time)
and renamed to the final name only after its size, sha256 and content check out. Input
images (`helpers.inputs`) are downloaded with `Limits`: a deadline in all (a server trickling
bytes is cut off) and a size cap; a failed one leaves no partial file.
"""

from __future__ import annotations

import os
from pathlib import Path

from helpers.catalog import CLIP_FILES, CLIP_WEIGHTS, Model, ModelFile, Source, get_model
from helpers.download.errors import DownloadError
from helpers.download.hashes import HASHES, cached_problem, forget_other_source
from helpers.download.hub import (
    fetch_hub_model,
    hub_cached_file,
    hub_snapshot,
    prune_empty,
    repo_folder,
)
from helpers.download.messages import offline_message
from helpers.download.mirrors import RETRIES, TIMEOUT, Limits, fetch_file
from helpers.download.sources import default_name, resolve_user_source
from helpers.reporting import Log


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The model cache: `cache` if given, else $DREAMFRAME_CACHE, else ~/.cache/dreamframe."""
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get("DREAMFRAME_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dreamframe"


def cache_folder(cache: str | os.PathLike | None = None, field: str = "cache") -> Path:
    """`cache_dir`, checked: `ValueError` naming `field` when it is a file or not writable."""
    from helpers.files import writable_folder

    return writable_folder(cache_dir(cache), field)


def hub_cache(cache: str | os.PathLike | None = None) -> Path:
    """The Hugging Face Hub cache inside ours: every Hub download of both engines lands here."""
    return cache_dir(cache) / "hub"


def model_dir(model: Model | str, cache: str | os.PathLike | None = None) -> Path:
    """The folder a model lives in (for Hub repos: the repo's folder in the Hub cache)."""
    model = _as_model(model)
    if model.hub_repo:
        return hub_cache(cache) / repo_folder(model.hub_repo)
    return cache_dir(cache) / model.name


def is_cached(model: Model | str, cache: str | os.PathLike | None = None,
              deep: bool = False) -> bool:
    """Whether every file of the model is in the cache and matches its sha256.

    A file's hash is recomputed only when its size or mtime changed since it was last checked,
    or with deep=True. Hub repos count as cached when the Hub cache resolves them offline.
    """
    model = _as_model(model)
    if model.test:
        from helpers.testing import MARKER

        return (model_dir(model, cache) / MARKER).is_file()
    if model.hub_repo:
        return hub_snapshot(model, hub_cache(cache)) is not None
    folder = model_dir(model, cache)
    return all(cached_problem(folder, f, deep) is None for f in model.files)


def fetch(name_or_model: Model | str, cache: str | os.PathLike | None = None,
          progress: bool = True, log: Log = print, retries: int = RETRIES) -> Path:
    """Get a catalogue model into the cache; return its folder (Hub repos: the snapshot;
    test models: what `helpers.testing.build_test_model` returns)."""
    model = _as_model(name_or_model)
    if model.test:
        from helpers.testing import build_test_model

        return Path(build_test_model(model.name, model_dir(model, cache)))
    if model.hub_repo:
        return fetch_hub_model(model, hub_cache(cache), progress, log)
    folder = model_dir(model, cache)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for file in model.files:
            fetch_file(file, folder, f"{model.name}/{file.name}", model.kind,
                       progress=progress, log=log, retries=retries)
    except DownloadError:
        prune_empty(folder)  # partial downloads stay (they resume); an empty folder goes
        raise
    return folder


def fetch_file_from(spec: str | Source | Path, dest_dir: str | os.PathLike,
                    name: str | None = None, sha256: str | None = None, *,
                    cache: str | os.PathLike | None = None, kind: str = "vqgan",
                    progress: bool = True, log: Log = print, retries: int = RETRIES,
                    limits: Limits | None = None) -> Path:
    """Fetch a user-supplied file into `dest_dir` (saved as `name`) and return its path.

    An existing local path is returned as is; a whole Hub repo (`owner/repo`) is snapshot
    into the Hub cache of `cache` and its folder returned. `limits` bound a URL or Drive
    download in time and size (input images); a failed one leaves no partial file.
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
        return fetch_hub_model(repo, hub_cache(cache), progress, log)
    folder = Path(dest_dir)
    folder.mkdir(parents=True, exist_ok=True)
    file = ModelFile(name or default_name(found), (found,), None, sha256)
    forget_other_source(folder, file.name, found.describe(), log)
    return fetch_file(file, folder, file.name, kind, progress=progress, log=log, retries=retries,
                      limits=limits)


def fetch_hub_file(repo: str, filename: str, cache: str | os.PathLike | None = None,
                   kind: str = "diffusion", log: Log = print) -> Path:
    """One file of a Hub repo (`owner/name`) into the Hub cache of `cache`; without a network,
    one `DownloadError` at once (not the Hub client's retries), suggesting the test models."""
    return hub_cached_file(repo, filename, hub_cache(cache), kind, log)


def fetch_all(models: list[Model], cache: str | os.PathLike | None = None,
              progress: bool = True, log: Log = print) -> list[Path]:
    """`fetch` each model; without a network, one error that lists every model still missing."""
    paths = []
    for model in models:
        try:
            paths.append(fetch(model, cache=cache, progress=progress, log=log))
        except DownloadError as e:
            if not e.offline:
                raise
            still = [m for m in models if not is_cached(m, cache)]
            raise DownloadError(offline_message(still, cache_dir(cache)), e.failures) from None
    return paths


def _as_model(model: Model | str) -> Model:
    return model if isinstance(model, Model) else get_model(model)


__all__ = ["HASHES", "RETRIES", "TIMEOUT", "DownloadError", "Limits", "Log", "cache_dir",
           "cache_folder", "fetch", "fetch_all", "fetch_file_from", "fetch_hub_file",
           "hub_cache", "is_cached", "model_dir", "resolve_user_source"]
