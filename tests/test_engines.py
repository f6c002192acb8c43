"""Both engines in one shape: the same stages and behaviour, flags from the settings metadata."""

from __future__ import annotations

import dataclasses
import inspect
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from common import TINY_SD_CLI, TINY_VQGAN_CLI, quiet

from helpers import runs
from helpers.cli import build_parser, flag_name, main
from helpers.settings import SETTINGS_KINDS, DiffusionSettings, VQGANClipSettings, setting

ENGINES = ("vqgan_clip", "diffusion")


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_has_the_four_stages_under_the_same_names(engine):
    import importlib

    package = importlib.import_module(f"helpers.{engine}")
    for module, name in (("checks", "check_inputs"), ("loading", "load_models"),
                         ("loop", "run"), ("runner", "generate")):
        function = getattr(importlib.import_module(f"helpers.{engine}.{module}"), name)
        assert getattr(package, name) is function
    check = inspect.signature(package.check_inputs).parameters
    load = inspect.signature(package.load_models).parameters
    generate = inspect.signature(package.generate).parameters
    assert list(check) == ["settings", "cache", "log"]
    assert list(load) == ["checked", "cache", "log", "progress"]
    assert {"resume", "changes", "cache", "log", "progress", "loaded"} <= set(generate)


# --- the settings metadata drives the CLI ----------------------------------------------------


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("kind", ["vqgan-clip", "diffusion"])
def test_help_lists_every_settings_field_with_its_help(kind, capsys):
    from helpers.settings import meta_of

    text = " ".join(_help(kind, capsys).split())
    for field in dataclasses.fields(SETTINGS_KINDS[kind]):
        assert flag_name(field.name) in text, field.name
        assert " ".join(meta_of(field).help.split())[:30] in text, field.name


def test_a_field_added_to_a_settings_class_appears_in_the_cli(monkeypatch, tiny_models,
                                                             tmp_path, capsys):
    @dataclass(frozen=True)
    class Extended(VQGANClipSettings):
        sparkle: float = setting(0.5, "how much sparkle", min=0, max=2, advanced=True)

    monkeypatch.setitem(SETTINGS_KINDS, "vqgan-clip", Extended)
    assert "--sparkle X" not in _help("vqgan-clip", capsys)  # no metavar given: generated one
    assert "how much sparkle; between 0 and 2; default 0.5" in " ".join(
        _help("vqgan-clip", capsys).split())
    args = build_parser().parse_args(["vqgan-clip", "--sparkle", "1.5", "--prompt", "x"])
    assert args.sparkle == 1.5
    code = main(["vqgan-clip", "--sparkle", "3", "--prompt", "x", "--out", str(tmp_path)])
    assert code == 2 and "sparkle: must be between 0 and 2 (got 3.0)" in capsys.readouterr().err
    assert not tmp_path.joinpath("runs").exists()


def test_flags_keep_their_short_spellings():
    parser = build_parser()
    args = parser.parse_args(["diffusion", "--negative", "blurry", "--cfg", "4",
                              "--size", "64", "96"])
    assert (args.negative_prompt, args.cfg_scale, args.size) == ("blurry", 4.0, [64, 96])
    args = parser.parse_args(["vqgan-clip", "--augment", "affine,jitter", "--image-prompt", "a"])
    assert args.augments == ("affine", "jitter") and args.image_prompts == "a"
    assert parser.parse_args(["vqgan-clip", "--augments", "none"]).augments == ()


# --- the same behaviour ----------------------------------------------------------------------

VQGAN, DIFFUSION = TINY_VQGAN_CLI, TINY_SD_CLI


@pytest.mark.parametrize("args", [VQGAN, DIFFUSION], ids=["vqgan-clip", "diffusion"])
def test_a_progress_bar_by_default_and_silence_with_quiet(args, tiny_models, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    loud = capsys.readouterr()
    assert "100%" in loud.err and "run folder:" in loud.err
    assert main([*args, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    silent = capsys.readouterr()
    assert silent.err == ""
    assert silent.out.strip() == str(next((tmp_path / "b" / "runs").iterdir()))


def test_quiet_silences_the_libraries_and_restores_them():
    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from helpers.reporting import quiet as quiet_mode

    before = transformers_logging.get_verbosity()
    with quiet_mode(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # as a notebook's own filter would
        assert not transformers_logging.is_progress_bar_enabled()
        assert not diffusers_logging.is_progress_bar_enabled()
        transformers_logging.get_logger("transformers").warning("hidden")
    assert transformers_logging.is_progress_bar_enabled()
    assert diffusers_logging.is_progress_bar_enabled()
    assert transformers_logging.get_verbosity() == before
    assert not [w for w in caught if "hidden" in str(w.message)]


def test_vqgan_clip_takes_its_resume_state_only_when_a_frame_is_saved(monkeypatch, tiny_models,
                                                                     tmp_path):
    from helpers.settings import VQGANClipSettings
    from helpers.vqgan_clip import check_inputs, generate, load_models, run
    from helpers.vqgan_clip import loop as loop_module

    calls = []
    original = loop_module.Latent.snapshot
    monkeypatch.setattr(loop_module.Latent, "snapshot",
                        lambda self, i: calls.append(i) or original(self, i))
    settings = VQGANClipSettings(prompt="desert", vqgan="test-tiny-vqgan", clip="test-tiny-clip",
                                 width=64, height=64, cutn=2, iterations=6, save_every=3,
                                 device="cpu", seed=1, out=str(tmp_path))
    generate(settings, log=quiet, progress=False)
    assert calls == [3, 6]  # the frames' iterations, never the others
    loaded = load_models(check_inputs(settings, log=quiet), log=quiet, progress=False)
    steps = run(settings, loaded)
    first = next(steps)
    assert first.state()["i"] == 1
    next(steps)
    with pytest.raises(RuntimeError, match="take it before the loop continues"):
        first.state()


def test_a_run_leaves_the_loaded_pipeline_as_it_found_it(tiny_models, tmp_path):
    from helpers.diffusion import check_inputs, generate, load_models

    settings = DiffusionSettings(prompt="a | b", model="test-tiny-sd", width=64, height=64,
                                 steps=2, seed=1, device="cpu", out=str(tmp_path),
                                 sampler="DPM++ SDE Karras", attention_slicing="on",
                                 vae_slicing="on", vae_tiling="on", preview_every=1,
                                 preview_mode="vae", batch_size=2)
    loaded = load_models(check_inputs(settings, log=quiet), log=quiet, progress=False)
    pipe = loaded.pipe

    def state() -> tuple:
        processors = tuple(type(p).__name__ for p in pipe.unet.attn_processors.values())
        return (type(pipe.scheduler).__name__, dict(pipe.scheduler.config), processors,
                pipe.vae.use_slicing, pipe.vae.use_tiling, pipe.vae.dtype, pipe.unet.forward)

    before = state()
    generate(settings, log=quiet, progress=False, loaded=loaded, on_preview=lambda *a: None)
    assert state() == before
    again = generate(settings.replace(sampler="Euler", attention_slicing="off"), log=quiet,
                     progress=False, loaded=loaded)
    fresh = generate(settings.replace(sampler="Euler", attention_slicing="off",
                                      out=str(tmp_path / "fresh")), log=quiet, progress=False)
    assert [pixels(p) for p in runs.list_frames(again)] == \
        [pixels(p) for p in runs.list_frames(fresh)]


def pixels(path: Path) -> bytes:
    from PIL import Image

    return Image.open(path).tobytes()


def test_a_new_catalogue_diffusion_model_resolves_with_its_family(monkeypatch):
    from helpers import catalog
    from helpers.catalog import Model
    from helpers.diffusion.models import resolve_model

    new = Model("sd-new", "diffusion", "a new model", "MIT", hub_repo="owner/sd-new",
                family="sdxl")
    monkeypatch.setattr(catalog, "MODELS", (*catalog.MODELS, new))
    ref = resolve_model("sd-new")
    assert (ref.kind, ref.family, ref.label) == ("catalogue", "sdxl", "sd-new")


# --- files -----------------------------------------------------------------------------------


def test_frames_and_settings_get_the_usual_permissions(tiny_models, tmp_path, capsys, umask):
    umask(0o022)
    assert main([*VQGAN, "--out", str(tmp_path), "--quiet"]) == 0
    run_dir = Path(capsys.readouterr().out.strip())
    written = [run_dir / "settings.json", run_dir / runs.STATE_FILE, *runs.list_frames(run_dir)]
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o644}
