"""Bad input, as a new user types it: one `error:` message naming the setting, exit status 2,
and nothing written (the workspace, the run folders and the input files stay as they were).

Each row: an id, the command line (built from a `Case` holding the prepared files), and what
the message must say. The accepted habits (web-UI seeds, any-case samplers, huge images in
`info`) are at the end, each with why it is accepted rather than refused.
"""

from __future__ import annotations

import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from common import TINY_SD_CLI, TINY_VQGAN_CLI, closed_port, huge_png, png_bytes

from helpers import runs
from helpers.cli import main

VQGAN = [*TINY_VQGAN_CLI, "--quiet"]
DIFFUSION = [*TINY_SD_CLI, "--quiet"]
ZOOM = [*VQGAN, "--animate", "zoom", "--iterations-per-frame", "1"]
PNG = png_bytes((8, 8), (10, 20, 30))


class Runs:
    """A finished tiny run of each engine, made once; each case gets its own copy."""

    def __init__(self, root: Path):
        self.root = root
        self.made: dict[str, Path] = {}

    def get(self, engine: str) -> Path:
        if engine not in self.made:
            out = self.root / engine
            args = VQGAN if engine == "vqgan-clip" else DIFFUSION
            assert main([*args, "--out", str(out), "--save-every", "1"] if engine == "vqgan-clip"
                        else [*args, "--out", str(out)]) == 0
            (self.made[engine],) = (out / "runs").iterdir()
        return self.made[engine]


@pytest.fixture(scope="module")
def finished(tiny_models, tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory.mktemp("finished"))


@dataclass
class Case:
    """The files a case needs, made on demand inside the test's folder."""

    tmp: Path
    finished: Runs
    httpserver: object

    @property
    def out(self) -> str:
        return str(self.tmp / "ws")

    def file(self, name: str = "a-file", data: bytes = b"not what you think") -> str:
        path = self.tmp / name
        path.write_bytes(data)
        return str(path)

    def huge(self) -> str:
        return str(huge_png(self.tmp / "huge.png"))

    def run(self, engine: str, damage=None) -> str:
        run_dir = self.tmp / f"{engine}-run"
        shutil.copytree(self.finished.get(engine), run_dir)
        if damage:
            damage(run_dir)
        return str(run_dir)

    def url(self, status: int) -> str:
        self.httpserver.expect_request("/init.png").respond_with_data("gone", status=status)
        return self.httpserver.url_for("/init.png")

    def vae_without_vae_keys(self) -> str:
        import torch
        from safetensors.torch import save_file

        path = self.tmp / "lora.safetensors"
        save_file({"lora_unet_down.weight": torch.zeros(2)}, str(path))
        return str(path)


def _write(name: str, data: bytes):
    return lambda run_dir: (run_dir / name).write_bytes(data)


class Boom:
    """A pickle that would create a file if unpickling ran its code."""

    def __reduce__(self):
        return (os.system, (f"touch {Path(os.environ['DREAMFRAME_CACHE']) / 'PWNED'}",))


def _truncate_state(run_dir: Path) -> None:
    state = run_dir / runs.STATE_FILE
    state.write_bytes(state.read_bytes()[:200])


def _stop_at_one_frame(run_dir: Path) -> None:
    """A run made with 2 iterations and frames at 1 and 2: keep it unfinished at iteration 1."""
    import torch

    state = runs.load_state(run_dir)
    state.update(i=1, frames=1)
    torch.save(state, run_dir / runs.STATE_FILE)
    runs.frame_path(run_dir, 2).unlink()


CASES = [
    # devices
    ("cuda-without-gpu", lambda c: [*VQGAN, "--device", "cuda", "--out", c.out],
     "device: 'cuda' needs an NVIDIA GPU"),
    ("cuda-without-gpu-diffusion", lambda c: [*DIFFUSION, "--device", "cuda:1", "--out", c.out],
     "device: 'cuda:1' needs an NVIDIA GPU"),
    ("unknown-device", lambda c: [*VQGAN, "--device", "gpu0", "--out", c.out],
     "device: 'gpu0' is not a device"),
    ("fp16-on-the-cpu", lambda c: [*DIFFUSION, "--precision", "fp16", "--out", c.out],
     "precision: 'fp16' needs a GPU"),
    ("cpu-offload-without-cuda", lambda c: [*DIFFUSION, "--cpu-offload", "on", "--out", c.out],
     "cpu_offload: needs a CUDA GPU"),
    # folders
    ("out-is-a-file", lambda c: [*VQGAN, "--out", c.file()], "out: "),
    ("out-under-a-file", lambda c: [*DIFFUSION, "--out", c.file() + "/ws"], "is a file"),
    ("out-not-writable", lambda c: [*VQGAN, "--out", "/proc/dreamframe-ws"], "cannot write in"),
    ("download-cache-is-a-file", lambda c: ["download", "test-tiny-vqgan", "--cache", c.file()],
     "cache: "),
    ("models-cache-is-a-file", lambda c: ["models", "--cache", c.file()], "cache: "),
    ("engine-cache-is-a-file", lambda c: [*VQGAN, "--out", c.out, "--cache", c.file()],
     "cache: "),
    # images
    ("huge-init-image", lambda c: [*VQGAN, "--init-image", c.huge(), "--out", c.out],
     "init_image: .* is 10000x10000 pixels"),
    ("huge-image-prompt", lambda c: [*VQGAN, "--image-prompt", c.huge(), "--out", c.out],
     "image_prompts: .* megapixels"),
    ("huge-init-image-diffusion", lambda c: [*DIFFUSION, "--init-image", c.huge(), "--out",
                                             c.out], "init_image: .* megapixels"),
    ("init-image-is-text", lambda c: [*DIFFUSION, "--init-image", c.file("x.png"), "--out",
                                      c.out], "init_image: cannot read"),
    ("init-image-url-404", lambda c: [*VQGAN, "--init-image", c.url(404), "--out", c.out],
     "init_image: could not fetch http.*HTTP 404"),
    ("init-image-url-refused", lambda c: [
        *DIFFUSION, "--init-image", f"http://127.0.0.1:{closed_port()}/a.png", "--out", c.out],
     "init_image: could not fetch http.*connection refused"),
    ("from-image-without-settings", lambda c: [
        "diffusion", "--from-image", c.file("plain.png", PNG), "--out", c.out, "--quiet"],
     "holds no generation settings"),
    # resume points and settings files
    ("state-truncated", lambda c: [*VQGAN[:1], "--resume", c.run("vqgan-clip", _truncate_state),
                                   "--iterations", "4", "--quiet"],
     "the resume point .*state.pt is damaged"),
    ("state-random-bytes", lambda c: [
        *VQGAN[:1], "--resume", c.run("vqgan-clip", _write(runs.STATE_FILE, os.urandom(300))),
        "--iterations", "4", "--quiet"], "the resume point .*state.pt is damaged"),
    ("state-pickle-runs-code", lambda c: [
        *VQGAN[:1], "--resume", c.run("vqgan-clip", _write(runs.STATE_FILE,
                                                           pickle.dumps(Boom()))),
        "--iterations", "4", "--quiet"], "the resume point .*state.pt is damaged"),
    ("settings-not-json", lambda c: [
        *VQGAN[:1], "--resume", c.run("vqgan-clip", _write("settings.json", b"{nope")),
        "--quiet"], r"settings.json is not valid JSON"),
    ("settings-not-an-object", lambda c: [
        *DIFFUSION[:1], "--resume", c.run("diffusion", _write("settings.json", b"[1, 2]")),
        "--quiet"], r"settings.json must be a JSON object"),
    ("resume-not-a-folder", lambda c: [*VQGAN[:1], "--resume", c.file(), "--quiet"],
     "resume: .* is not a folder"),
    ("resume-not-a-run", lambda c: [*VQGAN[:1], "--resume", str(c.tmp), "--quiet"],
     "is not a run folder"),
    ("resume-other-engine", lambda c: [*VQGAN[:1], "--resume", c.run("diffusion"), "--quiet"],
     "these are 'diffusion' settings"),
    ("resume-fewer-iterations", lambda c: [*VQGAN[:1], "--resume", c.run("vqgan-clip"),
                                           "--iterations", "1", "--quiet"],
     "iterations: the run already did 2 iterations; give more"),
    ("resume-changes-the-prompt", lambda c: [
        *VQGAN[:1], "--resume", c.run("vqgan-clip", _stop_at_one_frame), "--prompt", "sea",
        "--size", "128", "128", "--quiet"], "resume: height, prompt, width cannot change"),
    ("resume-diffusion-changes-steps", lambda c: [
        *DIFFUSION[:1], "--resume", c.run("diffusion"), "--steps", "9", "--batch-count", "2",
        "--quiet"], "resume: steps cannot change"),
    ("resume-finished-diffusion", lambda c: [*DIFFUSION[:1], "--resume", c.run("diffusion"),
                                             "--quiet"], "batch_count: the run already has"),
    # models and their settings
    ("clip-skip-beyond-layers", lambda c: [*DIFFUSION, "--clip-skip", "5", "--out", c.out],
     "clip_skip: 5 is more than the 2 layers"),
    ("steps-unbounded", lambda c: [*DIFFUSION, "--steps", "1000000000", "--out", c.out],
     "steps: must be between 1 and 1000"),
    ("vae-not-a-checkpoint", lambda c: [*DIFFUSION, "--vae", c.file("vae.txt"), "--out", c.out],
     "vae: vae.txt is not a checkpoint"),
    ("vae-garbage-safetensors", lambda c: [*DIFFUSION, "--vae", c.file("vae.safetensors"),
                                           "--out", c.out], "vae: cannot read"),
    ("vae-is-a-lora", lambda c: [*DIFFUSION, "--vae", c.vae_without_vae_keys(), "--out", c.out],
     "vae: lora.safetensors is not a VAE checkpoint"),
    ("vqgan-is-a-diffusion-model", lambda c: [*VQGAN, "--vqgan", "test-tiny-sd", "--out", c.out],
     "vqgan: 'test-tiny-sd' is a diffusion model"),
    ("model-is-a-vqgan", lambda c: [*DIFFUSION, "--model", "test-tiny-vqgan", "--out", c.out],
     "model: 'test-tiny-vqgan' is a vqgan model"),
    ("clip-negative-weight", lambda c: [*VQGAN, "--clip", "test-tiny-clip:-1", "--out", c.out],
     "clip: weights must be positive"),
    ("noise-prompt-not-a-seed", lambda c: [*VQGAN, "--noise-prompt", "abc:1", "--out", c.out],
     "noise_prompts: .*'abc' is not a seed"),
    ("size-below-a-token", lambda c: [*VQGAN, "--size", "8", "64", "--out", c.out],
     "smaller than one latent token"),
    ("size-beyond-the-ram", lambda c: [*DIFFUSION, "--size", "4096", "4096", "--out", c.out],
     "4096x4096 .* GB of memory"),
    ("sampler-typo", lambda c: [*DIFFUSION, "--sampler", "euler aa", "--out", c.out],
     "did you mean 'Euler a'"),
    ("cutn-zero", lambda c: [*VQGAN, "--cutn", "0", "--out", c.out], "cutn: must be between"),
    # schedules, evaluated at every frame before the run folder exists
    ("zoom-divides-by-zero-at-frame-1", lambda c: [*ZOOM, "--frames", "3", "--zoom", "1/(t-1)+2",
                                                   "--out", c.out],
     r"zoom: at frame 1, '1/\(t-1\)\+2': division by zero"),
    ("zoom-overflows-late", lambda c: [*ZOOM, "--frames", "800", "--zoom", "1+0*exp(t)", "--out",
                                       c.out], r"zoom: at frame 710, .*too large \(overflow\)"),
    ("zoom-zero", lambda c: [*ZOOM, "--frames", "2", "--zoom", "0", "--out", c.out],
     r"zoom: 0 at frame 0 is outside \[0.01, 100\]"),
    ("zoom-1e300", lambda c: [*ZOOM, "--frames", "2", "--zoom", "1e300", "--out", c.out],
     r"zoom: 1e\+300 at frame 0 is outside"),
    ("strength-schedule-above-one-at-frame-2", lambda c: [
        *DIFFUSION, "--animate", "2d", "--frames", "3", "--strength-schedule", "0:(0.5), 2:(1.5)",
        "--out", c.out], r"strength_schedule: 1.5 at frame 2 is outside \(0, 1\]"),
    ("init-noise-with-init-image", lambda c: [*VQGAN, "--init-image", c.file("i.png", PNG),
                                              "--init-noise", "pixels", "--out", c.out],
     "init_noise: cannot be combined with init_image"),
]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def leftovers(cache: Path) -> list[str]:
    """Temporary files and empty download folders a failure must not leave in the cache."""
    found = [p for p in cache.rglob("*") if p.name.endswith((".tmp", ".partial"))]
    found += [p for p in cache.rglob("*.hub") if p.is_dir() and not any(p.rglob("*"))]
    return [str(p) for p in found]


@pytest.mark.parametrize(("case", "match"), [(c[1], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_clean_error_and_writes_nothing(case, match, finished, tmp_path,
                                                         httpserver, capsys):
    import re

    args = case(Case(tmp_path, finished, httpserver))
    before = snapshot(tmp_path)
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert re.search(match, err.splitlines()[0]), err
    assert snapshot(tmp_path) == before, "the failed command wrote or changed files"
    cache = Path(os.environ["DREAMFRAME_CACHE"])
    assert not (cache / "PWNED").exists(), "a resume point's pickle ran code"
    assert leftovers(cache) == []


def test_the_table_covers_every_case_of_the_audit():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


# --- the first run without a network ---------------------------------------------------------


def test_first_run_offline_lists_every_missing_model_once(monkeypatch, tmp_path, capsys):
    from helpers import catalog
    from helpers.catalog import Model, ModelFile, Source

    port = closed_port()
    vqgan = Model("offline-vqgan", "vqgan", "a test VQGAN", "MIT", files=(
        ModelFile("model.yaml", (Source("url", f"http://127.0.0.1:{port}/m.yaml"),)),
        ModelFile("model.ckpt", (Source("url", f"http://127.0.0.1:{port}/m.ckpt"),
                                 Source("url", f"http://127.0.0.1:{port}/mirror.ckpt")), 10**9),
    ), family="vq", factor=16)
    clip = Model("owner/offline-clip", "clip", "a test CLIP", "MIT",
                 hub_repo="owner/offline-clip", allow_patterns=("config.json",),
                 weights=("model.safetensors",), approx_size=6 * 10**8, family="clip")
    monkeypatch.setattr(catalog, "MODELS", (*catalog.MODELS, vqgan, clip))
    monkeypatch.setattr("helpers.download.mirrors.RETRIES", 0)
    cache = tmp_path / "cache"
    code = main(["vqgan-clip", "--prompt", "desert", "--vqgan", "offline-vqgan", "--clip",
                 "owner/offline-clip", "--size", "64", "64", "--device", "cpu",
                 "--cache", str(cache), "--out", str(tmp_path / "ws")])
    err = capsys.readouterr().err
    assert code == 2
    message = err[err.index("error: "):]
    assert message.startswith("error: no network connection, and the 2 models")
    assert "offline-vqgan" in message and "model.yaml, model.ckpt" in message
    assert "owner/offline-clip" in message
    assert "mirror" not in err  # no line per dead mirror before the message
    assert not (tmp_path / "ws").exists()
    assert leftovers(cache) == []


# --- accepted rather than refused ------------------------------------------------------------


def test_seed_minus_one_means_random_as_in_the_web_ui(tiny_models, tmp_path, capsys):
    assert main([*DIFFUSION, "--seed", "-1", "--out", str(tmp_path)]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    seed = runs.read_run_settings(run_dir)["seed"]
    assert isinstance(seed, int) and seed >= 0  # a real seed, recorded so it can be repeated


def test_sampler_names_match_in_any_case(tiny_models, tmp_path, capsys):
    assert main([*DIFFUSION, "--sampler", "dpm++ 2m KARRAS", "--out", str(tmp_path)]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    stored = runs.read_run_settings(run_dir)
    assert (stored["sampler"], stored["schedule"]) == ("DPM++ 2M", "Karras")  # the old name too


def test_info_reads_the_settings_of_a_huge_image_without_decoding_it(tmp_path, capsys):
    image = huge_png(tmp_path / "huge.png", text={"parameters": "a cat\nSteps: 20, Seed: 1"})
    assert main(["info", str(image)]) == 0
    assert "a cat\nSteps: 20, Seed: 1" in capsys.readouterr().out


def test_unexpected_failures_say_how_to_see_the_traceback(monkeypatch, capsys):
    from helpers import cli

    def broken(_args):
        raise TypeError("an internal mistake")

    monkeypatch.setattr(cli, "cmd_models", broken)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert "unexpected TypeError: an internal mistake" in err and "--debug" in err
    with pytest.raises(TypeError):
        main(["models", "--debug"])
