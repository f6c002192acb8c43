"""Bad input the check stage refuses before anything is written (issue 14): an input image
that downloads too slowly or is too large, LoRA and embedding files that are not one, LoRA
names that cannot be file names, model folders with a part missing or damaged, and folders
given where a file belongs.

Each row: an id, the command line (built from a `Case` holding the prepared files), and what
the first line of the message must say. Every case ends with one `error:` line naming the
setting, exit status 2, nothing written under the test's folder (no run folder), no code run
from a pickle, and no partial download left in the cache.
"""

from __future__ import annotations

import json
import os
import pickle
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from common import TINY_SD_CLI, TINY_VQGAN_CLI, png_bytes

from helpers.cli import main
from helpers.diffusion.families import FAMILIES

DIFFUSION = [*TINY_SD_CLI, "--quiet"]
VQGAN = [*TINY_VQGAN_CLI, "--quiet"]
TRICKLE_SIZE = 40  # bytes the slow server sends, one every `TRICKLE_EVERY` seconds: 10 s in
TRICKLE_EVERY = 0.25  # all, so that a download without a deadline fails the test, not hangs
SD_PARTS = {"scheduler": ["diffusers", "PNDMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"]}


class _Trickle(BaseHTTPRequestHandler):
    """Promises `TRICKLE_SIZE` bytes and sends one every `TRICKLE_EVERY` seconds."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(TRICKLE_SIZE))
        self.end_headers()
        try:
            for _ in range(TRICKLE_SIZE):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(TRICKLE_EVERY)
        except OSError:  # the client gave up
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def slow_server():
    """A local server that never finishes sending (its port)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


_SINGLE: dict[str, Path] = {}


def _single_file(folder: Path) -> Path:
    """The tiny SD model as one .safetensors file, made once per session."""
    if "sd" not in _SINGLE:
        from common import load_tiny_sd
        from test_diffusion_models import save_single_file

        from helpers.download import fetch

        path = folder / "tiny-sd.safetensors"
        save_single_file(load_tiny_sd(fetch("test-tiny-sd", progress=False)), path)
        _SINGLE["sd"] = path
    return _SINGLE["sd"]


@dataclass
class Case:
    """The files a case needs, made on demand inside the test's folder."""

    tmp: Path
    httpserver: object
    slow_port: int
    shared: Path  # a folder outside the test's folder, for files made once

    @property
    def out(self) -> str:
        return str(self.tmp / "ws")

    def file(self, name: str = "a-file", data: bytes = b"not what you think") -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    def folder(self, name: str = "a-folder") -> str:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def workspace(self, kind: str, name: str, data) -> str:
        """`--out` of a workspace whose loras/ or embeddings/ folder holds `name`: bytes, a
        value to pickle with torch.save, a dict of tensors for .safetensors, or (None) a
        folder."""
        import torch
        from safetensors.torch import save_file

        folder = self.tmp / "ws" / kind
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        if data is None:
            path.mkdir()
        elif isinstance(data, bytes):
            path.write_bytes(data)
        elif name.endswith(".safetensors"):
            save_file(data, str(path))
        else:
            torch.save(data, path)
        return self.out

    def loras(self) -> str:
        """`--out` of a workspace with one good LoRA in its loras/ folder."""
        return self.workspace("loras", "ink.safetensors", _tensors(
            **{"lora_unet_down.lora_down.weight": (2, 2)}))

    def slow_url(self) -> str:
        return f"http://127.0.0.1:{self.slow_port}/slow.png"

    def big_url(self) -> str:
        self.httpserver.expect_request("/big.png").respond_with_data(
            b"\x89PNG" + bytes(30_000), content_type="image/png")
        return self.httpserver.url_for("/big.png")

    def model(self, damage=None) -> str:
        """A diffusers SD folder with every part (tiny stand-in weights), then `damage` done."""
        import torch
        from safetensors.torch import save_file

        folder = self.tmp / "model"
        folder.mkdir()
        index = {"_class_name": "StableDiffusionPipeline", **SD_PARTS,
                 "safety_checker": [None, None]}
        (folder / "model_index.json").write_text(json.dumps(index))
        for part, (library, cls) in SD_PARTS.items():
            (folder / part).mkdir()
            config = json.dumps({"_class_name": cls})
            if part == "scheduler":
                (folder / part / "scheduler_config.json").write_text(config)
            elif part == "tokenizer":
                (folder / part / "vocab.json").write_text("{}")
            else:
                (folder / part / "config.json").write_text(config)
                name = "diffusion_pytorch_model" if library == "diffusers" else "model"
                save_file({"w": torch.zeros(1)}, str(folder / part / f"{name}.safetensors"))
        if damage:
            damage(folder)
        return str(folder)

    def single(self) -> str:
        return str(_single_file(self.shared))


def _remove(name: str):
    def damage(folder: Path) -> None:
        import shutil

        target = folder / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return damage


def _write(name: str, data: bytes):
    return lambda folder: (folder / name).write_bytes(data)


def _make_folder(name: str):
    def damage(folder: Path) -> None:
        (folder / name).unlink()
        (folder / name).mkdir()
    return damage


def _tensors(**shapes):
    import torch

    return {name: torch.zeros(shape) for name, shape in shapes.items()}


class Boom:
    """A pickle that would create a file if unpickling ran its code."""

    def __reduce__(self):
        return (os.system, (f"touch {Path(os.environ['DREAMFRAME_CACHE']) / 'PWNED'}",))


def _lora(c: Case, name: str, data) -> list[str]:
    return [*DIFFUSION, "--prompt", "a cat <lora:foo:0.7>", "--out",
            c.workspace("loras", name, data)]


def _embedding(c: Case, name: str, data, where: str = "--prompt") -> list[str]:
    args = [*DIFFUSION, "--out", c.workspace("embeddings", name, data)]
    return [*args, where, "a bad cat"] if where == "--prompt" else \
        [*args, "--prompt", "a cat", where, "bad, blurry"]


CASES = [
    # 1. input downloads: a deadline in all and a size cap (both made small by the test)
    ("init-image-url-trickles", lambda c: [*DIFFUSION, "--init-image", c.slow_url(), "--out",
                                           c.out],
     r"init_image: could not fetch http://127\.0\.0\.1:\d+/slow\.png \(took longer than 1 s\)"),
    ("image-prompt-url-trickles", lambda c: [*VQGAN, "--image-prompt", c.slow_url(), "--out",
                                             c.out],
     r"image_prompts: could not fetch http.*took longer than 1 s"),
    ("init-image-url-too-large", lambda c: [*DIFFUSION, "--init-image", c.big_url(), "--out",
                                            c.out],
     r"init_image: could not fetch http.*big\.png \(larger than 20000 bytes"),
    # 2. LoRA and embedding files that are not one
    ("lora-pickle-without-lora-weights", lambda c: _lora(c, "foo.pt", _tensors(weight=(2, 2))),
     r"prompt: <lora:foo>: loras/foo\.pt has no LoRA weights"),
    ("lora-pickle-of-a-list", lambda c: _lora(c, "foo.pt", [1, 2, 3]),
     r"prompt: <lora:foo>: loras/foo\.pt holds no tensors"),
    ("lora-safetensors-without-lora-weights", lambda c: _lora(
        c, "foo.safetensors", _tensors(**{"encoder.weight": (2, 2)})),
     r"prompt: <lora:foo>: loras/foo\.safetensors has no LoRA weights"),
    ("lora-pt-of-random-bytes", lambda c: _lora(c, "foo.pt", os.urandom(300)),
     r"prompt: <lora:foo>: loras/foo\.pt is not a readable checkpoint"),
    ("lora-safetensors-of-random-bytes", lambda c: _lora(c, "foo.safetensors", os.urandom(300)),
     r"prompt: <lora:foo>: loras/foo\.safetensors cannot be read as safetensors"),
    ("lora-pickle-runs-code", lambda c: _lora(c, "foo.pt", pickle.dumps(Boom())),
     r"prompt: <lora:foo>: loras/foo\.pt (holds no tensors|is not a readable)"),
    ("embedding-pickle-without-vectors", lambda c: _embedding(
        c, "bad.pt", {"name": "bad", "step": 3}),
     r"prompt: bad: embeddings/bad\.pt is not a textual-inversion embedding"),
    ("embedding-web-ui-format-without-a-tensor", lambda c: _embedding(
        c, "bad.pt", {"string_to_param": {"*": "not a tensor"}, "name": "bad"}),
     r"prompt: bad: embeddings/bad\.pt is not a textual-inversion embedding"),
    ("embedding-pickle-of-a-list", lambda c: _embedding(c, "bad.pt", [1, 2]),
     r"prompt: bad: embeddings/bad\.pt holds no tensors"),
    ("embedding-pt-of-random-bytes", lambda c: _embedding(c, "bad.pt", os.urandom(300)),
     r"prompt: bad: embeddings/bad\.pt is not a readable checkpoint"),
    ("embedding-of-a-scalar", lambda c: _embedding(c, "bad.safetensors", _tensors(emb_params=())),
     r"prompt: bad: embeddings/bad\.safetensors is not a textual-inversion embedding"),
    ("embedding-of-two-tensors", lambda c: _embedding(
        c, "bad.safetensors", _tensors(a=(1, 32), b=(1, 32))),
     r"prompt: bad: embeddings/bad\.safetensors is not a textual-inversion embedding"),
    ("embedding-in-the-negative-prompt", lambda c: _embedding(
        c, "bad.pt", os.urandom(300), "--negative-prompt"),
     r"negative_prompt: bad: embeddings/bad\.pt is not a readable checkpoint"),
    ("embedding-pickle-runs-code", lambda c: _embedding(c, "bad.pt", pickle.dumps(Boom())),
     r"prompt: bad: embeddings/bad\.pt (holds no tensors|is not a readable)"),
    # 3. names that cannot be a LoRA's file name
    ("lora-name-of-5000-characters", lambda c: [
        *DIFFUSION, "--prompt", f"a cat <lora:{'x' * 5000}:1>", "--out", c.loras()],
     r"prompt: <lora:x{40}\.\.\.>: the name is 5,000 characters long"),
    ("lora-name-up-a-folder", lambda c: [*DIFFUSION, "--prompt", "<lora:../../etc/x:1>",
                                         "--out", c.loras()],
     r"prompt: <lora:\.\./\.\./etc/x>: a LoRA's name is the name of a file"),
    ("lora-name-dot-dot", lambda c: [*DIFFUSION, "--prompt", "<lora:..>", "--out", c.loras()],
     r"prompt: <lora:\.\.>: a LoRA's name"),
    ("lora-name-with-a-backslash", lambda c: [*DIFFUSION, "--prompt", r"<lora:a\b:1>",
                                              "--out", c.loras()], r"prompt: <lora:a\\b>: "),
    # 3. model folders with a part missing or damaged
    ("model-folder-without-unet-weights", lambda c: [
        *DIFFUSION, "--model", c.model(_remove("unet/diffusion_pytorch_model.safetensors")),
        "--out", c.out],
     r"model: .*model is incomplete or damaged: unet/diffusion_pytorch_model\.safetensors is "
     "missing"),
    ("model-folder-without-unet", lambda c: [*DIFFUSION, "--model", c.model(_remove("unet")),
                                             "--out", c.out], r"model: .*: unet/ is missing"),
    ("model-folder-unet-config-not-json", lambda c: [
        *DIFFUSION, "--model", c.model(_write("unet/config.json", b"{nope")), "--out", c.out],
     r"model: .*: unet/config\.json is not valid JSON"),
    ("model-folder-vae-weights-truncated", lambda c: [
        *DIFFUSION, "--model", c.model(_write("vae/diffusion_pytorch_model.safetensors",
                                              b"\x10\x00\x00\x00\x00\x00\x00\x00{")),
        "--out", c.out],
     r"model: .*: vae/diffusion_pytorch_model\.safetensors cannot be read as safetensors"),
    ("model-folder-text-encoder-config-is-a-folder", lambda c: [
        *DIFFUSION, "--model", c.model(_make_folder("text_encoder/config.json")), "--out",
        c.out], r"model: .*: text_encoder/config\.json is a folder, not a file"),
    ("model-folder-without-scheduler-config", lambda c: [
        *DIFFUSION, "--model", c.model(_remove("scheduler/scheduler_config.json")), "--out",
        c.out], r"model: .*: scheduler/scheduler_config\.json is missing"),
    ("vae-folder-without-weights", lambda c: [
        *DIFFUSION, "--vae", c.model(_remove("vae/diffusion_pytorch_model.safetensors")),
        "--out", c.out],
     r"vae: .*vae/diffusion_pytorch_model\.safetensors is missing"),
    ("model-config-is-a-file", lambda c: [
        *DIFFUSION, "--model", c.single(), "--model-config", c.file("config.json", b"{}"),
        "--out", c.out], r"model_config: .*config\.json is a file"),
    ("model-config-folder-without-unet", lambda c: [
        *DIFFUSION, "--model", c.single(), "--model-config", c.model(_remove("unet")),
        "--out", c.out], r"model_config: .*: unet/ is missing"),
    ("model-config-empty-folder", lambda c: [
        *DIFFUSION, "--model", c.single(), "--model-config", c.folder(), "--out", c.out],
     r"model_config: .*a-folder has no model_index\.json"),
    ("model-config-missing", lambda c: [
        *DIFFUSION, "--model", c.single(), "--model-config", str(c.tmp / "nowhere"),
        "--out", c.out], r"model_config: .*nowhere' is not an existing folder"),
    # 3. a folder where a file belongs
    ("init-image-is-a-folder", lambda c: [*DIFFUSION, "--init-image", c.folder(), "--out",
                                          c.out], r"init_image: .*a-folder is a folder"),
    ("image-prompt-is-a-folder", lambda c: [*VQGAN, "--image-prompt", c.folder(), "--out",
                                            c.out], r"image_prompts: .*a-folder is a folder"),
    ("vae-is-an-empty-folder", lambda c: [*DIFFUSION, "--vae", c.folder(), "--out", c.out],
     r"vae: .*a-folder holds no AutoencoderKL config"),
    ("init-video-is-a-folder", lambda c: [*DIFFUSION, "--animate", "video", "--init-video",
                                          c.folder("clip.mp4"), "--out", c.out],
     r"init_video: .*clip\.mp4' is a folder"),
    ("from-image-is-a-folder", lambda c: ["diffusion", "--from-image", c.folder("a.png"),
                                          "--quiet", "--out", c.out], r"a\.png is a folder"),
    ("info-of-a-folder", lambda c: ["info", c.folder("a.png")], r"a\.png is a folder"),
    ("lora-file-is-a-folder", lambda c: [
        *DIFFUSION, "--prompt", "<lora:foo>", "--out", c.workspace("loras", "foo.safetensors",
                                                                   None)],
     r"prompt: <lora:foo>: no foo\.safetensors .* in .*loras"),
]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def leftovers(cache: Path) -> list[str]:
    """Partial downloads of input files left in the cache (gdown's .part, our staging file)."""
    inputs = cache / "inputs"
    return [str(p) for p in inputs.rglob("*")
            if p.name.startswith(".") or p.name.endswith((".part", ".download", ".tmp"))]


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shared")


@pytest.mark.parametrize(("case", "match"), [(c[1], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_fails_in_the_check_stage_and_writes_nothing(
        case, match, tmp_path, httpserver, slow_server, shared, monkeypatch, capsys):
    import re

    monkeypatch.setattr("helpers.inputs.DOWNLOAD_SECONDS", 1.0)
    monkeypatch.setattr("helpers.inputs.DOWNLOAD_BYTES", 20_000)
    args = case(Case(tmp_path, httpserver, slow_server, shared))
    before = snapshot(tmp_path)
    capsys.readouterr()
    start = time.monotonic()
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert "unexpected" not in err and "Errno" not in err, err
    assert re.search(match, err.splitlines()[0]), err
    assert len(err.splitlines()[0]) < 400, err
    assert snapshot(tmp_path) == before, "the failed command wrote or changed files"
    cache = Path(os.environ["DREAMFRAME_CACHE"])
    assert not (cache / "PWNED").exists(), "a pickle ran code"
    assert leftovers(cache) == []
    assert time.monotonic() - start < 30


# --- the parts of the checks, directly --------------------------------------------------------


def test_a_trickling_download_stops_at_the_deadline_and_leaves_nothing(slow_server, tmp_path,
                                                                       monkeypatch):
    from helpers import inputs

    monkeypatch.setattr(inputs, "DOWNLOAD_SECONDS", 0.5)
    url = f"http://127.0.0.1:{slow_server}/slow.png"
    start = time.monotonic()
    with pytest.raises(ValueError) as error:
        inputs.open_image(url, "init_image", cache=tmp_path)
    assert time.monotonic() - start < 5
    assert str(error.value) == f"init_image: could not fetch {url} (took longer than 0.5 s)"
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_an_input_image_within_the_limits_still_downloads(httpserver, tmp_path, monkeypatch):
    from helpers import inputs

    monkeypatch.setattr(inputs, "DOWNLOAD_SECONDS", 5.0)
    data = png_bytes((8, 8))
    monkeypatch.setattr(inputs, "DOWNLOAD_BYTES", len(data))
    httpserver.expect_request("/ok.png").respond_with_data(data, content_type="image/png")
    image = inputs.open_image(httpserver.url_for("/ok.png"), "init_image", cache=tmp_path)
    assert image.size == (8, 8)
    assert [p.name for p in (tmp_path / "inputs").iterdir() if p.name != "hashes.json"] == \
        ["ok.png"]


def test_a_complete_model_folder_passes_the_parts_check(tmp_path):
    from helpers.diffusion.models import check_parts

    folder = Path(Case(tmp_path, None, 0, tmp_path).model())
    check_parts(folder, "sd")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").rename(
        folder / "unet" / "diffusion_pytorch_model.bin")  # older repos ship .bin weights
    check_parts(folder, "sd")
    _remove("unet/diffusion_pytorch_model.bin")(folder)
    check_parts(folder, "sd", weights=False)  # configs are enough for model_config


def test_the_tiny_models_pass_the_parts_check():
    from helpers.diffusion.models import check_parts, folder_family
    from helpers.download import fetch

    for name in ("test-tiny-sd", "test-tiny-sdxl", "test-tiny-ldm"):
        folder = Path(fetch(name, progress=False))
        check_parts(folder, folder_family(folder))


def test_good_lora_and_embedding_files_pass_the_checks(tmp_path):
    import torch
    from safetensors.torch import save_file

    from helpers.diffusion.extras import check_extras
    from helpers.settings import DiffusionSettings

    (tmp_path / "loras" / "styles").mkdir(parents=True)
    (tmp_path / "embeddings").mkdir()
    save_file({"lora_unet_down.lora_down.weight": torch.zeros(2, 2)},
              str(tmp_path / "loras" / "styles" / "ink.safetensors"))
    torch.save({"string_to_param": {"*": torch.zeros(2, 32)}, "name": "old"},
               tmp_path / "embeddings" / "old.pt")
    settings = DiffusionSettings(prompt="a cat <lora:ink:0.5>", negative_prompt="old",
                                 out=str(tmp_path))
    found = check_extras(settings, FAMILIES["sd"])
    assert [(e.kind, e.name, e.path.name) for e in found] == [
        ("lora", "ink", "ink.safetensors"), ("embedding", "old", "old.pt")]
