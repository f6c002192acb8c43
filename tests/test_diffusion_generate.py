"""Diffusion runs end to end on the tiny SD: equivalence with plain diffusers, files, errors."""

import numpy as np
import pytest
import torch
from common import first_frame, pixels, quiet
from PIL import Image

from helpers.diffusion import generate, settings_from_image
from helpers.diffusion.frames import image_seeds
from helpers.diffusion.runner import image_settings
from helpers.metadata.infotext import format_infotext
from helpers.runs import list_frames, read_image_info
from helpers.settings import DiffusionSettings

# The timestep samplers run through diffusers' schedulers: a plain diffusers call is their
# reference (the web UI's k-diffusion samplers have theirs in test_sampling_reference.py).
SCHEDULERS = {"DDIM": ("DDIMScheduler", {}),
              "UniPC": ("UniPCMultistepScheduler", {"solver_type": "bh1", "solver_order": 3,
                                                    "lower_order_final": True})}



@pytest.fixture(scope="module")
def folder(tiny_models):
    return tiny_models["test-tiny-sd"]


def settings(folder, tmp_path, **changes) -> DiffusionSettings:
    base = {"prompt": "a red cube", "negative_prompt": "blurry", "model": str(folder),
            "width": 64, "height": 64, "steps": 3, "seed": 42, "cfg_scale": 7.5,
            "sampler": "Euler a", "out": str(tmp_path)}  # a web-UI sampler unless said
    return DiffusionSettings(**{**base, **changes})


def plain_pipeline(folder, sampler: str, img2img: bool = False):
    import diffusers

    name = "StableDiffusionImg2ImgPipeline" if img2img else "StableDiffusionPipeline"
    cls, options = SCHEDULERS[sampler]
    config = diffusers.PNDMScheduler.load_config(folder, subfolder="scheduler")
    scheduler = getattr(diffusers, cls).from_config(config, **options)
    # given to the constructor, which sets the pipeline's own fixes (DDIM: clip_sample off)
    pipe = getattr(diffusers, name).from_pretrained(folder, scheduler=scheduler,
                                                    safety_checker=None,
                                                    requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --- equivalence with plain diffusers ---------------------------------------------------------


@pytest.mark.parametrize("sampler", sorted(SCHEDULERS))
def test_txt2img_equals_a_plain_diffusers_call(folder, tmp_path, sampler):
    run_dir = generate(settings(folder, tmp_path, sampler=sampler), log=quiet)
    pipe = plain_pipeline(folder, sampler)
    expected = pipe("a red cube", negative_prompt="blurry", num_inference_steps=3,
                    guidance_scale=7.5, height=64, width=64,
                    generator=torch.Generator().manual_seed(42)).images[0]
    assert np.abs(first_frame(run_dir) - pixels_of(expected)).max() <= 1


def pixels_of(image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


@pytest.fixture
def init_image(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "init.png"
    Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(path)
    return path


def test_img2img_equals_a_plain_diffusers_call(folder, tmp_path, init_image):
    run_dir = generate(settings(folder, tmp_path, init_image=str(init_image), strength=0.6,
                                sampler="DDIM"), log=quiet)
    resized = Image.open(init_image).convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)
    pipe = plain_pipeline(folder, "DDIM", img2img=True)
    expected = pipe("a red cube", image=resized, strength=0.6, negative_prompt="blurry",
                    num_inference_steps=3, guidance_scale=7.5,
                    generator=torch.Generator().manual_seed(42)).images[0]
    assert np.abs(first_frame(run_dir) - pixels_of(expected)).max() <= 1
    info = Image.open(list_frames(run_dir)[0]).text["parameters"]
    assert "Denoising strength: 0.6" in info


def test_images_of_a_batch_equal_single_runs_with_their_seeds(folder, tmp_path):
    batch = generate(settings(folder, tmp_path / "b", batch_size=2, batch_count=2), log=quiet)
    frames = list_frames(batch)
    assert len(frames) == 4
    alone = generate(settings(folder, tmp_path / "a", seed=45), log=quiet)
    assert np.abs(pixels(frames[3]) - first_frame(alone)).max() <= 1


# --- prompt modes ---------------------------------------------------------------------------


def test_composable_and_blend_agree_for_one_piece(folder, tmp_path):
    composable = generate(settings(folder, tmp_path / "c"), log=quiet)
    blend = generate(settings(folder, tmp_path / "b", prompt_mode="blend"), log=quiet)
    assert np.array_equal(first_frame(composable), first_frame(blend))


def test_a_piece_split_in_two_equal_halves_gives_the_same_image(folder, tmp_path):
    whole = generate(settings(folder, tmp_path / "w"), log=quiet)
    halves = generate(settings(folder, tmp_path / "h", prompt="a red cube:1 | a red cube:3"),
                      log=quiet)  # the wrapped UNet path: two predictions of the same piece
    assert np.abs(first_frame(whole) - first_frame(halves)).max() <= 1


def test_two_pieces_differ_between_composable_and_blend(folder, tmp_path):
    two = {"prompt": "a red cube | a blue sphere:2"}
    composable = generate(settings(folder, tmp_path / "c", **two), log=quiet)
    blend = generate(settings(folder, tmp_path / "b", prompt_mode="blend", **two), log=quiet)
    assert not np.array_equal(first_frame(composable), first_frame(blend))


@pytest.mark.parametrize("mode", ["composable", "blend"])
def test_negative_weights_land_on_the_unconditional_side(folder, tmp_path, mode):
    negative_piece = generate(settings(folder, tmp_path / "p", prompt="a red cube | blurry:-2",
                                       negative_prompt="", prompt_mode=mode), log=quiet)
    negative_field = generate(settings(folder, tmp_path / "f", prompt_mode=mode), log=quiet)
    assert np.array_equal(first_frame(negative_piece), first_frame(negative_field))


# --- files, infotext, from-image ------------------------------------------------------------


def test_infotext_has_the_web_ui_fields_and_round_trips_through_from_image(folder, tmp_path):
    s = settings(folder, tmp_path, sampler="DPM++ 2M Karras", clip_skip=2, batch_size=2)
    run_dir = generate(s, log=quiet)
    second = list_frames(run_dir)[1]
    infotext, _ = read_image_info(second)
    lines = infotext.split("\n")
    assert lines[:2] == ["a red cube", "Negative prompt: blurry"]
    for field in ("Steps: 3", "Sampler: DPM++ 2M", "Schedule type: Karras", "CFG scale: 7.5",
                  "Seed: 43", "Size: 64x64", "Model hash: ", f"Model: {folder.name}",
                  "Clip skip: 2"):
        assert field in lines[2]
    again = settings_from_image(second, model=str(folder), out=s.out)  # a picture names no
    assert again == image_settings(s, 43) and again.seed == 43 and again.batch_size == 1  # path
    rerun = generate(again.replace(out=str(tmp_path / "again")), log=quiet)
    assert np.abs(first_frame(rerun) - pixels(second)).max() <= 1


def test_from_image_applies_overrides_and_reads_web_ui_infotexts(folder, tmp_path):
    path = tmp_path / "webui.png"
    info = format_infotext("a castle", "ugly", {
        "Steps": 25, "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": 6.5,
        "Seed": 1234, "Size": "512x768", "Model hash": "6ce0161689", "Model": "v1-5-pruned",
        "Denoising strength": 0.5, "Clip skip": 2})
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text("parameters", info)
    Image.new("RGB", (8, 8)).save(path, pnginfo=meta)
    s = settings_from_image(path, model=str(folder), steps=4)
    assert (s.prompt, s.negative_prompt, s.sampler, s.schedule, s.cfg_scale, s.seed) == (
        "a castle", "ugly", "DPM++ 2M", "Karras", 6.5, 1234)
    assert (s.width, s.height, s.strength, s.clip_skip, s.steps) == (512, 768, 0.5, 2, 4)
    assert s.model == str(folder)


def test_from_image_overrides_what_we_cannot_read(tmp_path):
    path = tmp_path / "webui.png"
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text("parameters", "a castle\nSteps: 20, Sampler: DPM Ultra, Seed: 9, Size: 64x64")
    Image.new("RGB", (8, 8)).save(path, pnginfo=meta)
    with pytest.raises(ValueError, match="DPM Ultra"):
        settings_from_image(path)
    assert settings_from_image(path, sampler="Euler").sampler == "Euler"
    (tmp_path / "plain.png").write_bytes(b"")
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    with pytest.raises(ValueError, match="holds no generation settings"):
        settings_from_image(tmp_path / "plain.png")


def test_size_is_rounded_down_to_a_multiple_of_8_with_a_message(folder, tmp_path):
    messages = []
    run_dir = generate(settings(folder, tmp_path, width=70, height=60, steps=1),
                       log=messages.append)
    assert any("width 70 rounded down to 64" in m for m in messages)
    assert Image.open(list_frames(run_dir)[0]).size == (64, 56)


def test_a_random_seed_is_recorded(folder, tmp_path):
    run_dir = generate(settings(folder, tmp_path, seed=None, steps=1), log=quiet)
    stored = read_image_info(list_frames(run_dir)[0])[1]
    saved = DiffusionSettings.from_json((run_dir / "settings.json").read_text())
    assert isinstance(stored["seed"], int) and saved.seed == stored["seed"]


def test_interruption_keeps_the_finished_images(folder, tmp_path):
    messages = []

    def stop_after_first(path, image):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as stopped:
        generate(settings(folder, tmp_path, batch_count=3, steps=1), log=messages.append,
                 on_image=stop_after_first)
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and len(list_frames(runs[0])) == 1
    assert "1 image saved" in str(stopped.value) and "--resume" in str(stopped.value)


def test_previews_every_n_steps_fast_and_full(folder, tmp_path):
    fast, full = [], []
    generate(settings(folder, tmp_path / "f", steps=4, preview_every=2), log=quiet,
             on_preview=lambda step, total, image: fast.append((step, total, image.size)))
    generate(settings(folder, tmp_path / "v", steps=2, preview_every=1, preview_mode="vae"),
             log=quiet, on_preview=lambda step, total, image: full.append(image.size))
    assert fast == [(2, 4, (8, 8)), (4, 4, (8, 8))]
    assert full == [(64, 64), (64, 64)]


def test_the_trajectory_is_saved_as_frames_of_each_image(folder, tmp_path):
    run_dir = generate(settings(folder, tmp_path, steps=3, batch_size=2, save_trajectory=True),
                       log=quiet)
    for image in ("000001", "000002"):
        frames = list_frames(run_dir / "trajectory" / image)
        assert len(frames) == 3
    last = list_frames(run_dir / "trajectory" / "000002")[-1]
    assert np.abs(pixels(last) - pixels(list_frames(run_dir)[1])).max() <= 1


def test_seed_modes():
    base = DiffusionSettings(prompt="x", seed=2**32 - 2, batch_count=2, batch_size=2)
    assert image_seeds(base) == [2**32 - 2, 2**32 - 1, 0, 1]
    assert image_seeds(base.replace(seed_mode="fixed")) == [2**32 - 2] * 4
    randoms = image_seeds(base.replace(seed_mode="random"))
    assert randoms[0] == 2**32 - 2 and len(set(randoms)) == 4


# --- bad input: clear errors before any model loads, nothing written -----------------------------


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded for bad input")

    monkeypatch.setattr("helpers.diffusion.runner.load_models", refuse)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "sd-1.6"}, "unknown model 'sd-1.6'"),
        ({"model": "missing/model.safetensors"}, "does not exist"),
        ({"init_image": "no-such-image.png"}, "init_image: file not found"),
        ({"sdxl_original_size": (1024, 1024)}, "sdxl_original_size: only for SDXL"),
        ({"model_config": "stable-diffusion-v1-5/stable-diffusion-v1-5"}, "model_config"),
        ({"model": "ldm-text2im-256", "sampler": "Euler a"}, "sampler: the latent-diffusion"),
        ({"model": "ldm-text2im-256", "sampler": "DDIM", "clip_skip": 2}, "clip_skip"),
    ],
)
def test_bad_input_fails_before_loading_and_writes_nothing(folder, tmp_path, no_loading,
                                                           changes, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        generate(settings(folder, tmp_path, **changes), log=quiet)
    assert not (tmp_path / "runs").exists()
