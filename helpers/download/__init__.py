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
import re
from collections.abc import Collection
from dataclasses import dataclass
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


_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


@dataclass(frozen=True)
class FolderKind:
    """A kind of transformers model that a setting names (catalogue name, Hub id or folder),
    and the words of its errors."""

    kind: str  # the catalogue kind
    field: str  # the setting every error names
    noun: str  # "CLIPSeg model", "depth estimator"
    folder_noun: str  # what a folder without config.json is not ("CLIPSeg", ...)
    example: str  # a catalogue name of the kind
    files: tuple[str, ...]  # a Hub repo's files to fetch beside the weights
    weights: tuple[str, ...]  # its weight files, the first found taken
    unknown: str = ""  # before the catalogue's unknown-name message ("CLIPSeg model: ")


def fetch_model_folder(name: str, what: FolderKind, model_types: Collection[str],
                       cache: str | os.PathLike | None = None, log: Log = print) -> Path:
    """The local folder of a transformers model whose config.json `model_type` is one of
    `model_types`: a folder as it is, a catalogue entry of `what.kind` or a Hub id fetched once;
    `ValueError` or `DownloadError` naming `what.field` when it cannot be."""
    path = Path(name).expanduser()
    if path.is_dir():
        return _checked_folder(path, name, what, model_types)
    entry = _folder_entry(name, what)
    try:
        return _checked_folder(Path(fetch(entry, cache=cache, log=log)), name, what,
                               model_types)
    except DownloadError as e:
        raise DownloadError(f"{what.field}: could not get the {what.noun} {name!r}: {e}",
                            e.failures) from None


def _folder_entry(name: str, what: FolderKind) -> Model:
    """The catalogue's model of the kind called `name`, or one made for a Hub id."""
    try:
        entry = get_model(name)
    except ValueError as e:
        if not _HUB_ID.fullmatch(name):
            raise ValueError(f"{what.field}: {what.unknown}{e}") from None
        return Model(name, what.kind, "user-supplied Hub repo", "see the repo's model card",
                     hub_repo=name, allow_patterns=what.files, weights=what.weights)
    if entry.kind != what.kind:
        raise ValueError(f"{what.field}: {name!r} is a {entry.kind} model, not a {what.noun} "
                         f"(e.g. {what.example})")
    return entry


def _checked_folder(folder: Path, name: str, what: FolderKind,
                    model_types: Collection[str]) -> Path:
    """`folder` if its config.json's model type is one of `model_types`."""
    from helpers.files import read_json

    config = folder / "config.json"
    if not config.is_file():
        raise ValueError(f"{what.field}: {name} has no config.json: not a transformers "
                         f"{what.folder_noun} folder")
    kind = read_json(config, f"{what.field}: {config}", dict).get("model_type")
    if kind not in model_types:
        listed = f" (one of {', '.join(sorted(model_types))})" if len(model_types) > 1 else ""
        raise ValueError(f"{what.field}: {name} holds a {kind!r} model, not a "
                         f"{what.noun}{listed}")
    return folder


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
