"""The first run without a network (or with the Hub not answering): one look, no retries, one
`error:` that suggests the offline test models, nothing on stderr from the libraries.

The Hub endpoint (HF_ENDPOINT) points at a closed port, a server answering 503, or a server
that never answers, all on 127.0.0.1; other hosts are made unresolvable in-process."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import huggingface_hub.constants
import huggingface_hub.file_download
import pytest
from common import closed_port

from helpers.cli import main
from helpers.download import DownloadError, fetch, fetch_file_from
from helpers.download.errors import Unreachable
from helpers.download.network import Probes, connect_address

SD_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # the catalogue's sd-1.5
CHATTER = ("Retry", "retry", "Traceback", "thrown while requesting", "Warning", "warning")
PROXIES = tuple(f"{name}_proxy" for name in ("http", "https", "all", "no"))
NOT_PASSED_ON = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                 *PROXIES, *(name.upper() for name in PROXIES))


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """No proxy from the environment: the looks go straight to the hosts."""
    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def _diffusion_cli(tmp_path: Path, endpoint: str, model: str = "sd-1.5",
                   **env: str) -> subprocess.CompletedProcess:
    """`python -m helpers diffusion --model MODEL` on an empty cache, the Hub at `endpoint`."""
    environ = {k: v for k, v in os.environ.items() if k not in NOT_PASSED_ON}
    environ.update(DREAMFRAME_CACHE=str(tmp_path / "cache"), HF_HOME=str(tmp_path / "hf"),
                   HF_ENDPOINT=endpoint, **env)
    return subprocess.run([sys.executable, "-m", "helpers", "diffusion", "--prompt", "a lake",
                           "--model", model, "--device", "cpu", "--out", str(tmp_path / "ws")],
                          capture_output=True, text=True, env=environ, timeout=300, check=False)


def _assert_one_quiet_error(code: int, err: str, flags: str) -> str:
    """Status 2; stderr is our one message (its first line `error: ...`), naming the offline
    test models; no library line, retry or traceback. Returns the first line."""
    lines = err.splitlines()
    assert code == 2, err
    assert lines and lines[0].startswith("error: "), err
    assert sum(line.startswith("error:") for line in lines) == 1, err
    assert not [word for word in CHATTER if word in err], err
    assert flags in err and "test_models = True" in err
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["sd-1.5", "someone/some-model"])  # catalogue name, Hub id
def test_hub_unreachable_is_one_quiet_error_suggesting_the_test_model(tmp_path, model):
    port = closed_port()
    result = _diffusion_cli(tmp_path, f"http://127.0.0.1:{port}", model)
    first = _assert_one_quiet_error(result.returncode, result.stderr, "--model test-tiny-sd")
    repo = SD_REPO if model == "sd-1.5" else model
    assert first.startswith("error: no network connection: could not reach the Hugging Face "
                            f"Hub at http://127.0.0.1:{port} for {repo} (connection refused)")
    assert result.stdout == ""
    assert not (tmp_path / "ws").exists()
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


@pytest.mark.slow
def test_hub_answering_503_is_asked_once(tmp_path, httpserver):
    httpserver.expect_request(re.compile(".*")).respond_with_data("down", status=503)
    result = _diffusion_cli(tmp_path, httpserver.url_for("").rstrip("/"))
    first = _assert_one_quiet_error(result.returncode, result.stderr, "--model test-tiny-sd")
    assert "HTTP 503" in first
    paths = [request.path for request, _response in httpserver.log]
    assert len([p for p in paths if SD_REPO in p]) == 1, paths
    assert max(Counter(paths).values()) == 1, paths  # nothing asked twice: no retry


def test_hub_file_answering_503_is_asked_once(tmp_path, httpserver, monkeypatch, request):
    httpserver.expect_request(re.compile(".*")).respond_with_data("down", status=503)
    endpoint = httpserver.url_for("/")[:-1]  # as HF_ENDPOINT would set it at import
    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    for module in (huggingface_hub.constants, huggingface_hub.file_download):  # < 1.0: both
        monkeypatch.setattr(module, "ENDPOINT", endpoint, raising=False)
        monkeypatch.setattr(module, "HUGGINGFACE_CO_URL_TEMPLATE", template, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    # huggingface_hub < 1.0 keeps the requests session it made while HF_HUB_OFFLINE was set,
    # which refuses every request: a new one, and another after the test
    reset = getattr(huggingface_hub.utils, "reset_sessions", lambda: None)
    reset()
    request.addfinalizer(reset)
    lines: list[str] = []
    with pytest.raises(DownloadError) as info:
        fetch_file_from("owner/mirror/vqgan/model.ckpt", tmp_path / "files", cache=tmp_path,
                        progress=False, log=lines.append)
    asked = [r.path for r, _response in httpserver.log if "owner/mirror" in r.path]
    assert asked == ["/owner/mirror/resolve/main/vqgan/model.ckpt"]  # once: the client's
    assert "HTTP 503" in str(info.value)  # five retries with back-off are not reached
    assert lines == []  # nothing announced as downloading


@pytest.fixture
def silent_server():
    """A server that takes connections and never answers; yields (url, the requests it got)."""
    got: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)  # kept open, never answered
            conn.settimeout(5)
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if data:  # the reachability look connects and closes without asking
                got.append(data.split(b"\r\n", 1)[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", got
    server.close()
    for conn in held:
        conn.close()


@pytest.mark.slow
def test_hub_that_never_answers_is_asked_once_and_waited_for_once(tmp_path, silent_server):
    url, got = silent_server
    result = _diffusion_cli(tmp_path, url, HF_HUB_ETAG_TIMEOUT="1")
    first = _assert_one_quiet_error(result.returncode, result.stderr, "--model test-tiny-sd")
    assert "stopped responding" in first
    asked = [line for line in got if SD_REPO.encode() in line]
    assert len(asked) == 1, got
    assert max(Counter(got).values()) == 1, got


@pytest.fixture
def no_dns(monkeypatch):
    """Every host but 127.0.0.1 fails its DNS lookup, as offline; counts the lookups per host."""
    lookups: Counter = Counter()
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        lookups[host] += 1
        if host in ("127.0.0.1", "localhost"):
            return real(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return lookups


def test_vqgan_clip_first_run_offline_looks_once_per_host(no_dns, tmp_path, capfd):
    code = main(["vqgan-clip", "--prompt", "a lake", "--device", "cpu",
                 "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "ws")])
    out, err = capfd.readouterr()
    first = _assert_one_quiet_error(code, err, "--vqgan test-tiny-vqgan --clip test-tiny-clip")
    assert first.startswith("error: no network connection, and the 2 models this run needs")
    assert "vqgan_imagenet_f16_16384" in err and "openai/clip-vit-base-patch32" in err
    hosts = {"heibox.uni-heidelberg.de", "huggingface.co", "github.com", "mirror.io.community"}
    assert set(no_dns) == hosts  # each mirror's host looked up ...
    assert set(no_dns.values()) == {1}  # ... once: two heibox mirrors, no retry
    assert out == "" and not (tmp_path / "ws").exists()
    assert not any((tmp_path / "cache").rglob("*"))


def test_catalogue_hub_model_offline_makes_no_hub_call(no_dns, tmp_path, monkeypatch):
    def no_call(*_args, **_kwargs):
        raise AssertionError("the Hub client was called though the Hub is unreachable")

    def cache_only(*_args, local_files_only: bool = False, **_kwargs):
        if not local_files_only:
            no_call()
        raise OSError("not in the cache")

    monkeypatch.setattr("huggingface_hub.HfApi.repo_info", no_call)
    monkeypatch.setattr("helpers.download.hub._snapshot", cache_only)
    with pytest.raises(DownloadError) as info:
        fetch("sd-1.5", cache=tmp_path, progress=False, log=lambda _: None)
    assert info.value.offline
    assert "(DNS lookup failed)" in str(info.value)


def _hub_download(monkeypatch, then):
    """Stand in for the Hub client: nothing cached; a download logs a retry, then `then()`."""
    import logging

    from helpers.download import hub

    def snapshot(_model, cache, _patterns, local_files_only: bool = False):
        if local_files_only:
            raise OSError("not in the cache")
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        return then(cache)

    monkeypatch.setattr(hub, "ask_hub", lambda *args, **kwargs: None)
    monkeypatch.setattr(hub, "_snapshot", snapshot)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def _clip(tmp_path, lines: list[str]) -> Path:
    from helpers.catalog import Model
    from helpers.download.hub import fetch_hub_model

    model = Model("m", "clip", "a test model", "MIT", hub_repo="owner/m")
    return fetch_hub_model(model, tmp_path, progress=False, log=lines.append)


def test_hub_client_log_lines_stay_off_stderr_and_reach_the_log_after_a_success(
        tmp_path, monkeypatch, capfd):
    import logging

    _hub_download(monkeypatch, lambda cache: cache)
    lines: list[str] = []
    assert _clip(tmp_path, lines) == tmp_path
    assert "Retry" not in capfd.readouterr().err
    assert "Hugging Face Hub: Retrying in 1s [Retry 1/5]." in lines
    assert logging.getLogger("huggingface_hub").handlers  # the client's own handler is back


def test_a_failed_hub_download_drops_the_client_log_lines(tmp_path, monkeypatch, capfd):
    def fail(_cache):
        raise OSError("gave up")

    _hub_download(monkeypatch, fail)
    lines: list[str] = []
    with pytest.raises(DownloadError, match="gave up"):
        _clip(tmp_path, lines)
    assert "Retry" not in capfd.readouterr().err
    assert not [line for line in lines if "Retry" in line]


# --- the reachability look --------------------------------------------------------------------


def test_one_look_per_host_and_port(monkeypatch):
    tried: list[tuple] = []

    def refuse(address, timeout=None):
        tried.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", refuse)
    probes = Probes()
    for url in ("https://a.example/x", "https://a.example/y?z=1", "https://b.example/x"):
        with pytest.raises(Unreachable, match="connection refused"):
            probes.check(url)
    assert tried == [("a.example", 443), ("b.example", 443)]


def test_the_look_goes_to_the_proxy_the_environment_names(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://proxy.corp:3128")
    monkeypatch.setenv("no_proxy", "internal.corp")
    assert connect_address("https://huggingface.co/api/x") == ("proxy.corp", 3128, True)
    assert connect_address("https://internal.corp/x") == ("internal.corp", 443, False)
    monkeypatch.delenv("https_proxy")
    assert connect_address("http://127.0.0.1:8080/x") == ("127.0.0.1", 8080, False)


def test_a_dead_proxy_is_named(monkeypatch):
    port = closed_port()
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(Unreachable, match=f"connection refused \\(the proxy 127.0.0.1:{port}\\)"):
        Probes().check("https://huggingface.co/x")


# --- the messages ------------------------------------------------------------------------------


def test_one_missing_model_reads_in_the_singular(tmp_path):
    from helpers.catalog import get_model
    from helpers.download.messages import offline_message
    from helpers.reporting import plural

    message = offline_message([get_model("sd-1.5")], tmp_path)
    assert message.startswith("no network connection, and the model this run needs is not in")
    assert "--model test-tiny-sd" in message and "--vqgan" not in message
    assert (plural(1, "frame"), plural(0, "frame"), plural(2, "copy", "copies")) == \
        ("1 frame", "0 frames", "2 copies")


def test_a_hub_file_offline_is_one_error_and_a_cached_one_needs_no_network(no_dns, tmp_path):
    from helpers.download import fetch_hub_file

    with pytest.raises(DownloadError) as info:
        fetch_hub_file("owner/pipeline", "model_index.json", cache=tmp_path, log=lambda _: None)
    assert info.value.offline and "--model test-tiny-sd" in str(info.value)

    snapshot = tmp_path / "hub" / "models--owner--pipeline" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    got = fetch_hub_file("owner/pipeline", "model_index.json", cache=tmp_path)
    assert got == snapshot / "model_index.json"  # from the cache, with no network
