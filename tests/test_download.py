"""Downloads against a local HTTP server and a pre-filled Hub cache: no external network."""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import huggingface_hub.constants
import pytest
import requests
from werkzeug import Request, Response

from helpers.catalog import Model, ModelFile, Source
from helpers.download import (
    DownloadError,
    _describe,
    cache_dir,
    fetch,
    fetch_file_from,
    is_cached,
    model_dir,
    resolve_user_source,
)

DATA = random.Random(0).randbytes(200_000)
SHA = hashlib.sha256(DATA).hexdigest()


def _model(*files: ModelFile, name: str = "m") -> Model:
    return Model(name, "vqgan", "a test model", "MIT", files=files)


def _file(*locations: str, sha256: str | None = SHA, size: int | None = None) -> ModelFile:
    sources = tuple(s if isinstance(s, Source) else Source("url", s) for s in locations)
    return ModelFile("model.ckpt", sources, size, sha256)


def _fetch(model: Model, cache: Path, lines: list[str], **kw) -> Path:
    return fetch(model, cache=cache, progress=False, log=lines.append, **kw)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fetch_downloads_verifies_and_lands_only_the_final_file(httpserver, tmp_path):
    httpserver.expect_request("/model.ckpt").respond_with_data(DATA)
    lines: list[str] = []
    folder = _fetch(_model(_file(httpserver.url_for("/model.ckpt"))), tmp_path, lines)
    assert folder == tmp_path / "m"
    assert (folder / "model.ckpt").read_bytes() == DATA
    assert sorted(p.name for p in folder.iterdir()) == ["hashes.json", "model.ckpt"]
    assert json.loads((folder / "hashes.json").read_text())["model.ckpt"]["sha256"] == SHA
    assert is_cached(_model(_file("http://unused.invalid/x")), cache=tmp_path)


def test_cached_model_is_not_downloaded_again(httpserver, tmp_path):
    httpserver.expect_request("/model.ckpt").respond_with_data(DATA)
    model = _model(_file(httpserver.url_for("/model.ckpt")))
    _fetch(model, tmp_path, [])
    requests_before = len(httpserver.log)
    assert _fetch(model, tmp_path, []) == tmp_path / "m"
    assert len(httpserver.log) == requests_before


def test_interrupted_download_resumes_with_a_range_request(httpserver, tmp_path):
    data = random.Random(1).randbytes(3_000_000)
    served: list[tuple[str | None, int]] = []

    def handler(request: Request) -> Response:
        wanted = request.headers.get("Range")
        if not served:  # first request: announce everything, send part, close the connection
            served.append((wanted, 1_300_000))
            return Response(iter([data[:1_300_000]]), headers={"Content-Length": str(len(data))})
        if wanted:
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            served.append((wanted, len(data) - start))
            return Response(data[start:], status=206,
                            headers={"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        served.append((None, len(data)))
        return Response(data)

    httpserver.expect_request("/model.ckpt").respond_with_handler(handler)
    sha = hashlib.sha256(data).hexdigest()
    model = _model(_file(httpserver.url_for("/model.ckpt"), sha256=sha))
    with pytest.raises(DownloadError, match="connection dropped"):
        _fetch(model, tmp_path, [], retries=0)
    parts = list((tmp_path / "m").glob("*.part"))
    assert len(parts) == 1 and not (tmp_path / "m" / "model.ckpt").exists()
    kept = parts[0].stat().st_size
    assert 0 < kept < len(data)

    _fetch(model, tmp_path, [], retries=0)
    assert (f"bytes={kept}-", len(data) - kept) in served
    assert len(data) - kept < len(data)
    assert (tmp_path / "m" / "model.ckpt").read_bytes() == data
    assert not list((tmp_path / "m").glob("*.part"))


def test_partial_download_a_server_cannot_continue_is_started_over(httpserver, tmp_path):
    httpserver.expect_request("/model.ckpt").respond_with_data(DATA)  # ignores Range
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / ".model.ckpt.downloadabcd1234.part").write_bytes(b"bytes from another mirror")
    _fetch(_model(_file(httpserver.url_for("/model.ckpt"))), tmp_path, [], retries=0)
    assert (folder / "model.ckpt").read_bytes() == DATA
    assert not list(folder.glob("*.part"))

def test_wrong_sha256_names_both_hashes_and_leaves_nothing_behind(httpserver, tmp_path):
    httpserver.expect_request("/model.ckpt").respond_with_data(DATA)
    wrong = hashlib.sha256(b"another file").hexdigest()
    with pytest.raises(DownloadError) as info:
        _fetch(_model(_file(httpserver.url_for("/model.ckpt"), sha256=wrong)), tmp_path, [])
    assert wrong in str(info.value) and SHA in str(info.value)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == []


def test_web_page_instead_of_the_file_is_rejected(httpserver, tmp_path):
    page = b"<!DOCTYPE html><html><body>Please log in</body></html>"
    httpserver.expect_request("/model.ckpt").respond_with_data(page, content_type="text/html")
    with pytest.raises(DownloadError, match="web page"):
        _fetch(_model(_file(httpserver.url_for("/model.ckpt"), sha256=None)), tmp_path, [])
    assert not (tmp_path / "m" / "model.ckpt").exists()


def test_dead_first_mirror_costs_one_log_line_and_the_next_mirror_is_used(httpserver, tmp_path):
    httpserver.expect_request("/dead.ckpt").respond_with_data("gone", status=404)
    httpserver.expect_request("/good.ckpt").respond_with_data(DATA)
    dead, good = httpserver.url_for("/dead.ckpt"), httpserver.url_for("/good.ckpt")
    lines: list[str] = []
    folder = _fetch(_model(_file(dead, good)), tmp_path, lines)
    failed = [line for line in lines if "failed" in line]
    assert len(failed) == 1
    assert "mirror 1/2" in failed[0] and "HTTP 404 Not Found" in failed[0] and dead in failed[0]
    assert (folder / "model.ckpt").read_bytes() == DATA
    assert json.loads((folder / "hashes.json").read_text())["model.ckpt"]["source"] == good


def test_all_mirrors_dead_lists_each_mirror_and_how_to_supply_the_file(httpserver, tmp_path):
    httpserver.expect_request("/a.ckpt").respond_with_data("gone", status=404)
    httpserver.expect_request("/b.ckpt").respond_with_data("oops", status=500)
    a, b = httpserver.url_for("/a.ckpt"), httpserver.url_for("/b.ckpt")
    with pytest.raises(DownloadError) as info:
        _fetch(_model(_file(a, b)), tmp_path, [])
    message = str(info.value)
    assert f"1. {a}: HTTP 404" in message and f"2. {b}: HTTP 500" in message
    for advice in ("local path", "URL", "Google Drive id", "Hub id", "--vqgan",
                   str(tmp_path / "m" / "model.ckpt")):
        assert advice in message
    assert not message.startswith("no network")


def test_no_network_says_so_plainly(tmp_path):
    port = _closed_port()
    urls = [f"http://127.0.0.1:{port}/a.ckpt", f"http://127.0.0.1:{port}/b.ckpt"]
    with pytest.raises(DownloadError) as info:
        _fetch(_model(_file(*urls)), tmp_path, [], retries=0)
    message = str(info.value)
    assert message.startswith("no network connection: could not reach any mirror")
    assert "connection refused" in message and urls[0] in message and urls[1] in message
    assert "Google Drive id" in message


def test_dns_failure_reads_as_unreachable():
    error = requests.ConnectionError(socket.gaierror(-2, "Name or service not known"))
    failure = _describe(error, "https://gone.example/x")
    assert failure.unreachable and failure.reason == "DNS lookup failed"


def test_hash_is_recorded_on_first_download_and_later_tampering_is_caught(httpserver, tmp_path):
    httpserver.expect_request("/model.ckpt").respond_with_data(DATA)
    model = _model(_file(httpserver.url_for("/model.ckpt"), sha256=None))
    lines: list[str] = []
    path = _fetch(model, tmp_path, lines) / "model.ckpt"
    assert json.loads((tmp_path / "m" / "hashes.json").read_text())["model.ckpt"]["sha256"] == SHA
    assert is_cached(model, cache=tmp_path)

    before = path.stat().st_mtime_ns
    time.sleep(0.05)
    path.write_bytes(bytes(b ^ 1 for b in DATA[:10]) + DATA[10:])  # same size, new content
    if path.stat().st_mtime_ns == before:  # a filesystem with a coarse clock: as if later
        os.utime(path, ns=(before + 10**9, before + 10**9))
    assert not is_cached(model, cache=tmp_path)
    _fetch(model, tmp_path, lines)
    assert any("damaged" in line and SHA in line for line in lines)
    assert path.read_bytes() == DATA


def test_same_size_change_is_caught_by_a_deep_check(httpserver, tmp_path):
    httpserver.expect_request("/model.ckpt").respond_with_data(DATA)
    model = _model(_file(httpserver.url_for("/model.ckpt"), sha256=None))
    path = _fetch(model, tmp_path, []) / "model.ckpt"
    stat = path.stat()
    path.write_bytes(DATA[::-1])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime as recorded
    assert is_cached(model, cache=tmp_path)
    assert not is_cached(model, cache=tmp_path, deep=True)


def test_redownload_that_differs_from_the_recorded_hash_is_refused(httpserver, tmp_path):
    httpserver.expect_request("/model.ckpt").respond_with_data(DATA)
    model = _model(_file(httpserver.url_for("/model.ckpt"), sha256=None))
    path = _fetch(model, tmp_path, []) / "model.ckpt"
    path.unlink()
    httpserver.clear()
    other = DATA[::-1]
    httpserver.expect_request("/model.ckpt").respond_with_data(other)
    with pytest.raises(DownloadError) as info:
        _fetch(model, tmp_path, [])
    message = str(info.value)
    assert SHA in message and hashlib.sha256(other).hexdigest() in message
    assert "recorded at the first download" in message
    assert not path.exists()


# --- the Hugging Face Hub, offline, from a pre-filled cache ---------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(root: Path, repo: str, files: dict[str, bytes]) -> Path:
    """Lay files out as the Hub cache does: blobs, a snapshot of symlinks, refs/main."""
    folder = root / ("models--" + repo.replace("/", "--"))
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (folder / "blobs").mkdir()
    for name, content in files.items():
        blob = hashlib.sha256(content).hexdigest()
        (folder / "blobs" / blob).write_bytes(content)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", blob))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture
def hub_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _clip_model(repo: str = "owner/tiny-clip") -> Model:
    return Model(repo, "clip", "a test model", "MIT", hub_repo=repo,
                 allow_patterns=("config.json",),
                 weights=("model.safetensors", "pytorch_model.bin"))


def test_hub_model_comes_from_a_prefilled_cache_offline(hub_offline, tmp_path):
    files = {"config.json": b'{"model_type": "clip"}', "pytorch_model.bin": b"weights"}
    snapshot = _hub_cache(tmp_path / "hub", "owner/tiny-clip", files)
    model = _clip_model()
    assert is_cached(model, cache=tmp_path)
    path = fetch(model, cache=tmp_path, progress=False, log=lambda _: None)
    assert path.resolve() == snapshot.resolve()
    assert (path / "config.json").read_bytes() == files["config.json"]
    assert model_dir(model, cache=tmp_path) == tmp_path / "hub" / "models--owner--tiny-clip"


def test_hub_snapshot_without_weights_is_not_cached(hub_offline, tmp_path):
    _hub_cache(tmp_path / "hub", "owner/tiny-clip", {"config.json": b"{}"})
    assert not is_cached(_clip_model(), cache=tmp_path)


def test_missing_hub_model_offline_says_offline_and_not_in_cache(hub_offline, tmp_path):
    with pytest.raises(DownloadError) as info:
        fetch(_clip_model("owner/absent"), cache=tmp_path, progress=False, log=lambda _: None)
    message = str(info.value)
    assert "owner/absent is not in the cache" in message and "HF_HUB_OFFLINE" in message
    assert "Hub id" in message


def test_offline_hub_mirror_falls_through_to_the_next_mirror(hub_offline, httpserver, tmp_path):
    httpserver.expect_request("/model.ckpt").respond_with_data(DATA)
    hub = Source("hub", "owner/vqgan-mirror", "vqgan/model.ckpt")
    lines: list[str] = []
    folder = _fetch(_model(_file(hub, httpserver.url_for("/model.ckpt"))), tmp_path, lines)
    failed = [line for line in lines if "failed" in line]
    assert len(failed) == 1 and "offline" in failed[0] and "owner/vqgan-mirror" in failed[0]
    assert (folder / "model.ckpt").read_bytes() == DATA
    assert not any(p.name.endswith(".hub") for p in folder.iterdir())


# --- user-supplied sources ------------------------------------------------------------------

DRIVE_ID = "1fHwGx_hnBtC8nsq7hesJvs-Klv-P0gzT"


@pytest.mark.parametrize(("spec", "expected"), [
    ("https://example.org/a/model.ckpt", Source("url", "https://example.org/a/model.ckpt")),
    (f"https://drive.google.com/file/d/{DRIVE_ID}/view?usp=sharing", Source("gdrive", DRIVE_ID)),
    (f"https://drive.google.com/uc?export=download&id={DRIVE_ID}", Source("gdrive", DRIVE_ID)),
    (DRIVE_ID, Source("gdrive", DRIVE_ID)),
    ("openai/clip-vit-base-patch32", Source("hub", "openai/clip-vit-base-patch32")),
    ("owner/repo/sub/model.ckpt", Source("hub", "owner/repo", "sub/model.ckpt")),
    ("/no/such/model.ckpt", Path("/no/such/model.ckpt")),
    ("models/model.ckpt", Path("models/model.ckpt")),
])
def test_resolve_user_source_reads_each_kind_of_spec(spec, expected):
    assert resolve_user_source(spec) == expected


def test_resolve_user_source_prefers_an_existing_local_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner").mkdir()
    (tmp_path / "owner" / "repo").write_bytes(b"x")
    assert resolve_user_source("owner/repo") == Path("owner/repo")


@pytest.mark.parametrize("spec", ["", "   ", "not a source!"])
def test_resolve_user_source_rejects_nonsense_naming_it(spec):
    with pytest.raises(ValueError, match="model source"):
        resolve_user_source(spec)


def test_fetch_file_from_returns_an_existing_local_path_as_is(tmp_path):
    own = tmp_path / "mine.ckpt"
    own.write_bytes(DATA)
    assert fetch_file_from(str(own), tmp_path / "cache") == own
    assert not (tmp_path / "cache").exists()


def test_fetch_file_from_a_missing_local_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt does not exist"):
        fetch_file_from(str(missing), tmp_path / "cache")


def test_fetch_file_from_a_url_downloads_and_a_new_url_replaces_it(httpserver, tmp_path):
    httpserver.expect_request("/one.ckpt").respond_with_data(DATA)
    httpserver.expect_request("/two.ckpt").respond_with_data(DATA[::-1])
    lines: list[str] = []
    kw = {"progress": False, "log": lines.append}
    got = fetch_file_from(httpserver.url_for("/one.ckpt"), tmp_path, "model.ckpt", **kw)
    assert got == tmp_path / "model.ckpt" and got.read_bytes() == DATA
    got = fetch_file_from(httpserver.url_for("/two.ckpt"), tmp_path, "model.ckpt", **kw)
    assert got.read_bytes() == DATA[::-1]
    assert any(line.startswith("replacing") for line in lines)


def test_fetch_file_from_a_hub_repo_id_returns_its_cached_snapshot(hub_offline, tmp_path):
    files = {"config.json": b"{}", "model.safetensors": b"w", "flax_model.msgpack": b"f"}
    snapshot = _hub_cache(tmp_path / "hub", "owner/my-clip", files)
    got = fetch_file_from("owner/my-clip", tmp_path / "unused", cache=tmp_path, kind="clip",
                          progress=False, log=lambda _: None)
    assert got.resolve() == snapshot.resolve()


# --- test models, the cache folder, import cost ---------------------------------------------


@pytest.fixture
def fake_builder(monkeypatch):
    """Stand in for helpers.testing.build_test_model, recording its calls."""
    calls: list[tuple[str, Path]] = []

    def build_test_model(name: str, folder: Path) -> Path:
        calls.append((name, folder))
        if name == "test-tiny-sd":
            (folder / "pipe").mkdir()
            (folder / "pipe" / "model_index.json").write_text("{}")
            return folder / "pipe"
        (folder / "model.ckpt").write_bytes(b"random weights")
        return folder

    module = types.ModuleType("helpers.testing")
    module.build_test_model = build_test_model
    monkeypatch.setitem(sys.modules, "helpers.testing", module)
    return calls


def test_test_model_is_built_once_into_the_cache(fake_builder, tmp_path):
    path = fetch("test-tiny-vqgan", cache=tmp_path, progress=False)
    assert path == tmp_path / "test-tiny-vqgan" and (path / "model.ckpt").is_file()
    assert is_cached("test-tiny-vqgan", cache=tmp_path)
    assert fetch("test-tiny-vqgan", cache=tmp_path, progress=False) == path
    assert len(fake_builder) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test-tiny-vqgan"]


def test_test_model_path_inside_its_folder_is_kept(fake_builder, tmp_path):
    path = fetch("test-tiny-sd", cache=tmp_path, progress=False)
    assert path == tmp_path / "test-tiny-sd" / "pipe"
    assert fetch("test-tiny-sd", cache=tmp_path, progress=False) == path


def test_failed_test_model_build_leaves_nothing(monkeypatch, tmp_path):
    def build_test_model(name, folder):
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("out of memory")

    module = types.ModuleType("helpers.testing")
    module.build_test_model = build_test_model
    monkeypatch.setitem(sys.modules, "helpers.testing", module)
    with pytest.raises(RuntimeError, match="out of memory"):
        fetch("test-tiny-clip", cache=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert not is_cached("test-tiny-clip", cache=tmp_path)


def test_cache_dir_prefers_the_argument_then_the_environment_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("DREAMFRAME_CACHE", str(tmp_path / "env"))
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert cache_dir() == tmp_path / "env"
    monkeypatch.delenv("DREAMFRAME_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "dreamframe"


def test_importing_the_download_module_loads_no_network_library():
    code = ("import sys, helpers.download; "
            "print(sorted(m for m in ('gdown', 'huggingface_hub', 'requests', 'torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

