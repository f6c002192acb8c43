"""A user's own model source: reading the spec, and fetching a file from it (local server)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from helpers.catalog import Source
from helpers.download import fetch_file_from, resolve_user_source

DATA = random.Random(2).randbytes(50_000)
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


def test_fetch_file_from_without_a_name_saves_under_the_urls_file_name(httpserver, tmp_path):
    httpserver.expect_request("/dir/my model.ckpt").respond_with_data(DATA)
    got = fetch_file_from(httpserver.url_for("/dir/my%20model.ckpt"), tmp_path,
                          progress=False, log=lambda _: None)
    assert got == tmp_path / "my_model.ckpt" and got.read_bytes() == DATA
