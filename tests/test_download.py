"""Catalogue downloads against a local HTTP server (no external network); test models; the cache."""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from common import closed_port
from werkzeug import Request, Response

from helpers import testing
from helpers.catalog import Model, ModelFile, Source
from helpers.download import DownloadError, cache_dir, fetch, is_cached, model_dir
from helpers.download.errors import describe

DATA = random.Random(0).randbytes(200_000)
SHA = hashlib.sha256(DATA).hexdigest()


def _model(*files: ModelFile, name: str = "m") -> Model:
    return Model(name, "vqgan", "a test model", "MIT", files=files)


def _file(*locations: str, sha256: str | None = SHA, size: int | None = None) -> ModelFile:
    return ModelFile("model.ckpt", tuple(Source("url", s) for s in locations), size, sha256)


def _fetch(model: Model, cache: Path, lines: list[str], **kw) -> Path:
    return fetch(model, cache=cache, progress=False, log=lines.append, **kw)


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


def test_a_retried_download_prints_no_library_lines(httpserver, tmp_path, capfd):
    data = random.Random(2).randbytes(1_000_000)
    served: list[str | None] = []

    def handler(request: Request) -> Response:
        wanted = request.headers.get("Range")
        served.append(wanted)
        if len(served) == 1:  # announce everything, send part, close the connection
            return Response(iter([data[:400_000]]), headers={"Content-Length": str(len(data))})
        if not wanted:
            return Response(data)
        start = int(wanted.removeprefix("bytes=").rstrip("-"))
        return Response(data[start:], status=206,
                        headers={"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})

    httpserver.expect_request("/model.ckpt").respond_with_handler(handler)
    sha = hashlib.sha256(data).hexdigest()
    model = _model(_file(httpserver.url_for("/model.ckpt"), sha256=sha))
    folder = fetch(model, cache=tmp_path, progress=True, log=lambda _: None, retries=1)
    assert (folder / "model.ckpt").read_bytes() == data
    assert len(served) == 2  # gdown tried again after the dropped connection
    err = capfd.readouterr().err
    assert "Retrying" not in err and "Downloading" not in err and "From:" not in err
    assert "model.ckpt" in err  # our progress bar


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
    assert not (tmp_path / "m").exists()  # not even an empty folder


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
    port = closed_port()
    urls = [f"http://127.0.0.1:{port}/a.ckpt", f"http://127.0.0.1:{port}/b.ckpt"]
    with pytest.raises(DownloadError) as info:
        _fetch(_model(_file(*urls)), tmp_path, [], retries=0)
    message = str(info.value)
    assert message.startswith("no network connection: could not reach any mirror")
    assert "connection refused" in message and urls[0] in message and urls[1] in message
    assert "Google Drive id" in message


def test_dns_failure_reads_as_unreachable():
    error = requests.ConnectionError(socket.gaierror(-2, "Name or service not known"))
    failure = describe(error, "https://gone.example/x")
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


# --- test models, the cache folder, import cost ---------------------------------------------


@pytest.fixture
def fake_builders(monkeypatch):
    """Stand in for helpers.testing's builders (no torch), recording the folders they build in."""
    calls: list[tuple[str, Path]] = []

    def builder(name: str):
        def build(folder: Path) -> Path:
            calls.append((name, folder))
            if name == "test-tiny-sd":
                (folder / "pipe").mkdir()
                (folder / "pipe" / "model_index.json").write_text("{}")
                return folder / "pipe"
            (folder / "model.ckpt").write_bytes(b"random weights")
            return folder / "model.ckpt"
        return build

    for name in list(testing.BUILDERS):
        monkeypatch.setitem(testing.BUILDERS, name, builder(name))
    return calls


def test_test_model_is_built_once_into_the_cache(fake_builders, tmp_path):
    assert not is_cached("test-tiny-vqgan", cache=tmp_path)
    path = fetch("test-tiny-vqgan", cache=tmp_path, progress=False)
    assert path == model_dir("test-tiny-vqgan", tmp_path) / "model.ckpt" and path.is_file()
    assert is_cached("test-tiny-vqgan", cache=tmp_path)
    assert fetch("test-tiny-vqgan", cache=tmp_path, progress=False) == path
    assert len(fake_builders) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test-tiny-vqgan"]


def test_test_model_path_inside_its_folder_is_kept(fake_builders, tmp_path):
    path = fetch("test-tiny-sd", cache=tmp_path, progress=False)
    assert path == tmp_path / "test-tiny-sd" / "pipe"
    assert fetch("test-tiny-sd", cache=tmp_path, progress=False) == path


def test_failed_test_model_build_leaves_nothing(monkeypatch, tmp_path):
    def build(folder):
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("out of memory")

    monkeypatch.setitem(testing.BUILDERS, "test-tiny-clip", build)
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


def test_importing_the_download_package_loads_no_network_library():
    code = ("import sys, helpers.download; "
            "print(sorted(m for m in ('gdown', 'huggingface_hub', 'requests', 'torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
