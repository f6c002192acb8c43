"""Downloads from the Hugging Face Hub, offline, from a pre-filled Hub cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import huggingface_hub.constants
import pytest

from helpers.catalog import Model, ModelFile, Source
from helpers.download import DownloadError, fetch, fetch_file_from, is_cached, model_dir

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
    data = b"checkpoint bytes" * 1000
    httpserver.expect_request("/model.ckpt").respond_with_data(data)
    sources = (Source("hub", "owner/vqgan-mirror", "vqgan/model.ckpt"),
               Source("url", httpserver.url_for("/model.ckpt")))
    file = ModelFile("model.ckpt", sources, None, hashlib.sha256(data).hexdigest())
    model = Model("m", "vqgan", "a test model", "MIT", files=(file,))
    lines: list[str] = []
    folder = fetch(model, cache=tmp_path, progress=False, log=lines.append)
    failed = [line for line in lines if "failed" in line]
    assert failed == []  # an unreachable mirror costs no line: the next one answered
    assert (folder / "model.ckpt").read_bytes() == data
    assert not any(p.name.endswith(".hub") for p in folder.iterdir())


def test_fetch_file_from_a_hub_repo_id_returns_its_cached_snapshot(hub_offline, tmp_path):
    files = {"config.json": b"{}", "model.safetensors": b"w", "flax_model.msgpack": b"f"}
    snapshot = _hub_cache(tmp_path / "hub", "owner/my-clip", files)
    got = fetch_file_from("owner/my-clip", tmp_path / "unused", cache=tmp_path, kind="clip",
                          progress=False, log=lambda _: None)
    assert got.resolve() == snapshot.resolve()
