"""Shared fixtures: an isolated model cache per test session and the tiny offline models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach the network: the Hub client stays offline unless a test says otherwise.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One model cache for the whole session, so tiny models are built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _isolated_cache(session_cache, monkeypatch):
    """Point the default cache at the session cache, never at ~/.cache/dreamframe."""
    monkeypatch.setenv("DREAMFRAME_CACHE", str(session_cache))


@pytest.fixture(scope="session")
def tiny_models(session_cache) -> dict[str, Path]:
    """The tiny random-weight test models, built once per session through the catalogue."""
    from helpers.download import fetch

    names = ("test-tiny-vqgan", "test-tiny-clip", "test-tiny-sd", "test-tiny-sdxl",
             "test-tiny-ldm")
    return {name: fetch(name, cache=session_cache, progress=False) for name in names}


@pytest.fixture(scope="module")
def pipe(tiny_models):
    """The tiny SD pipeline, one per test file (tests may change its scheduler or adapters)."""
    from common import load_tiny_sd

    return load_tiny_sd(tiny_models["test-tiny-sd"])


@pytest.fixture
def umask():
    """Set the process umask for one test; the cached reading is cleared around it."""
    import helpers.files

    before = os.umask(0o022)
    os.umask(before)
    helpers.files._umask.cache_clear()

    def set_to(mask: int) -> None:
        os.umask(mask)
        helpers.files._umask.cache_clear()

    yield set_to
    os.umask(before)
    helpers.files._umask.cache_clear()
