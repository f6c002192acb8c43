"""The VQGAN+CLIP engine on the tiny offline models: loop, resume, CLI and bad input."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from common import frames_by_step, quiet
from PIL import Image

from helpers import runs
from helpers.cli import main
from helpers.metadata import infotext
from helpers.precision import autocast_dtype
from helpers.settings import VQGANClipSettings
from helpers.vqgan_clip import check_inputs, generate, load_models, run
from helpers.vqgan_clip.clip import load_clips, parse_clip_spec
from helpers.vqgan_clip.loop import initial_z, noise_image
from helpers.vqgan_clip.plan import prompt_plan

TINY = {"vqgan": "test-tiny-vqgan", "clip": "test-tiny-clip"}


def tiny(**changes) -> VQGANClipSettings:
    base = {"prompt": "desert:50 | snow:25", "width": 64, "height": 64, "seed": 3, "cutn": 4,
            "iterations": 6, "save_every": 2, "device": "cpu", **TINY}
    return VQGANClipSettings(**{**base, **changes})



def load(settings: VQGANClipSettings):
    return load_models(check_inputs(settings, log=quiet), log=quiet, progress=False)


def render(settings=None, **options):
    return generate(settings, log=quiet, progress=False, **options)


@pytest.fixture(scope="module")
def models(tiny_models):
    return load(tiny())


# --- CLIP models ----------------------------------------------------------------------------


def test_clip_spec_weights_and_errors():
    assert parse_clip_spec("a/b:1 | c/d:0.5") == [("a/b", 1.0), ("c/d", 0.5)]
    with pytest.raises(ValueError, match="positive"):
        parse_clip_spec("a/b:-1")


def test_clip_losses_sum_over_models_with_their_weights(tiny_models):
    single = tiny(cut_method="pooled", augments=(), noise_fac=0, iterations=1)
    one = load(single)
    both = load(single)
    both.clips = load_clips("test-tiny-clip:1 | test-tiny-clip:0.5")
    loss_one = next(run(single, one)).loss
    loss_both = next(run(single, both)).loss
    assert loss_both == pytest.approx(1.5 * loss_one, rel=1e-5)


def test_a_prompt_piece_longer_than_clips_context_is_named_with_what_it_loses(tiny_models):
    long = "a castle on a hill " * 5 + "under violet thunderclouds"  # 94 tokens: one a letter
    messages = []
    loaded = load_models(check_inputs(tiny(prompt=f"desert | {long}:2"), log=quiet),
                         log=messages.append, progress=False)
    warnings = [m for m in messages if m.startswith("warning:")]
    assert len(warnings) == 1, messages
    assert "prompt piece 2 ('a castle on a hill a castle on a hill a...')" in warnings[0]
    assert "77 tokens" in warnings[0] and "'violet thunderclouds' is dropped" in warnings[0]
    clip = loaded.clips[0]  # what the warning names is exactly what the embedding loses
    kept = long.removesuffix(" violet thunderclouds")
    torch.testing.assert_close(clip.encode_text([long]), clip.encode_text([kept]))
    assert clip.cut_off(kept) == "" and clip.cut_off("desert") == ""


# --- the loop -------------------------------------------------------------------------------


def test_loop_lowers_the_prompt_loss(tiny_models):
    settings = tiny(prompt="desert", width=128, height=128, iterations=30, seed=0,
                    cut_method="pooled", augments=())
    losses = [step.loss for step in run(settings, load(settings))]
    assert len(losses) == 30
    assert np.mean(losses[-3:]) < 0.95 * np.mean(losses[:3])


def test_steps_yield_images_in_range_and_never_write(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    steps = list(run(tiny(), models))
    assert [s.i for s in steps] == [1, 2, 3, 4, 5, 6]
    assert steps[-1].image.shape == (1, 3, 64, 64)
    assert float(steps[-1].image.min()) >= 0 and float(steps[-1].image.max()) <= 1
    assert list(tmp_path.iterdir()) == []


def test_a_steps_image_is_decoded_once_and_only_while_its_iteration_is_current(models):
    steps = run(tiny(iterations=3), models)
    first = next(steps)
    image = first.image
    assert first.image is image  # decoded once, then kept
    second = next(steps)
    assert first.image is image
    next(steps)
    with pytest.raises(RuntimeError, match="image of iteration 2 is gone"):
        second.image  # noqa: B018


def test_same_seed_same_images(models):
    a = [s.image for s in run(tiny(), models)]
    b = [s.image for s in run(tiny(), models)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def texts_by_iteration(settings, iterations) -> list[list[str]]:
    _, prompts_for = prompt_plan(settings)
    return [[p.text for p in prompts_for(i)] for i in iterations]


def test_story_mode_switches_prompt_sets_every_n_iterations():
    settings = tiny(prompt="desert ^ snow:2 ^ sea", story_every=10)
    got = texts_by_iteration(settings, [1, 10, 11, 20, 21, 500])
    assert got == [["desert"], ["desert"], ["snow"], ["snow"], ["sea"], ["sea"]]


def test_prompt_schedule_keyframes_by_iteration():
    settings = tiny(prompt="", prompt_schedule="0: desert | snow:2\n50: sea")
    got = texts_by_iteration(settings, [1, 50, 51, 300])
    assert got == [["desert", "snow"], ["desert", "snow"], ["sea"], ["sea"]]
    with pytest.raises(ValueError, match="prompt_schedule"):
        tiny(prompt_schedule="0: a\n0: b")


def test_story_sets_change_the_loss_targets(models):
    story = tiny(prompt="desert ^ sea", story_every=2, augments=(), cut_method="pooled")
    plain = tiny(prompt="desert", augments=(), cut_method="pooled")
    a = [s.loss for s in run(story, models)]
    b = [s.loss for s in run(plain, models)]
    assert a[:2] == pytest.approx(b[:2], rel=1e-6)  # the same until the set changes ...
    assert a[2] != pytest.approx(b[2], rel=1e-3)  # ... at iteration 3


def test_init_image_starts_from_the_encoders_quantised_codes(models):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    z = initial_z(tiny(), models, image)
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    vqgan = models.vqgan
    codes = vqgan.indices(vqgan.encode(pixels * 2 - 1))  # nearest codes of the encoder output
    torch.testing.assert_close(z, vqgan.codebook[codes].movedim(-1, 1))
    assert not torch.allclose(z, vqgan.encode(pixels * 2 - 1), atol=1e-3)  # not the raw latent


def test_noise_start_is_quantised_too(models):
    torch.manual_seed(0)
    z = initial_z(tiny(init_noise="pixels"), models)
    rows = z.movedim(1, -1).reshape(-1, models.vqgan.e_dim)
    assert all(bool((models.vqgan.codebook == row).all(1).any()) for row in rows)


def test_noise_start_images():
    torch.manual_seed(0)
    pixels = noise_image("pixels", 16, 24, torch.device("cpu"))
    gradient = noise_image("gradient", 16, 24, torch.device("cpu"))
    assert pixels.shape == gradient.shape == (1, 3, 16, 24)
    assert float(pixels.min()) >= 0 and float(pixels.max()) <= 1
    steps = [gradient.diff(dim=d) for d in (2, 3)]  # a gradient changes along one axis only
    assert sum(bool(torch.count_nonzero(s)) for s in steps) == 1


def test_init_weight_adds_a_pull_towards_the_start(models):
    plain = next(run(tiny(augments=()), models))
    pulled = list(run(tiny(augments=(), init_weight=2.0, iterations=2), models))
    assert len(pulled[0].losses) == len(plain.losses) + 1
    assert pulled[0].losses[-1] == 0  # z starts at the initial latent
    assert pulled[1].losses[-1] > 0


def test_precision_choices():
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("auto", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        autocast_dtype("fp16", cpu)


def test_bf16_autocast_runs_close_to_fp32(models):
    fp32 = [s.loss for s in run(tiny(precision="fp32", augments=()), models)]
    bf16 = [s.loss for s in run(tiny(precision="bf16", augments=()), models)]
    assert all(math.isfinite(v) for v in bf16)
    assert bf16[0] == pytest.approx(fp32[0], rel=0.05)


# --- runs and resume ------------------------------------------------------------------------


def test_resumed_run_makes_the_same_frames_as_an_uninterrupted_one(tiny_models, tmp_path):
    settings = tiny(iterations=12, save_every=4, out=str(tmp_path / "a"))
    whole = render(settings)

    def stop_at_6(step, _run_dir):
        if step.i == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render(settings.replace(out=str(tmp_path / "b")), on_step=stop_at_6)
    (broken,) = (tmp_path / "b" / "runs").iterdir()
    assert sorted(frames_by_step(broken)) == ["4"]  # it continues from the last frame
    assert render(resume=broken) == broken
    expected, got = frames_by_step(whole), frames_by_step(broken)
    assert sorted(expected) == ["12", "4", "8"]
    for step, image in expected.items():
        assert np.array_equal(image, got[step]), f"frame of step {step} differs"
    # the latent itself (continuous, so any difference in the RNG or optimiser state shows)
    assert torch.equal(runs.load_state(whole, "state.pt")["z"], runs.load_state(broken)["z"])


def _stopped_at(settings: VQGANClipSettings, at: int) -> Path:
    """A run of `settings` stopped (Ctrl-C) at iteration `at`."""
    def stop(step, _run_dir):
        if step.i == at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render(settings, on_step=stop)
    (run_dir,) = (Path(settings.out) / "runs").iterdir()
    return run_dir


def test_resume_sets_aside_files_past_its_point_that_the_run_did_not_write(tiny_models,
                                                                            tmp_path):
    run_dir = _stopped_at(tiny(iterations=4, save_every=1, out=str(tmp_path)), at=2)
    frames = run_dir / runs.FRAMES_FOLDER
    (frames / "000002.png").rename(frames / "000009.png")  # renamed by hand
    mine = {"000003.png": b"the user's own file, at the next number",
            "000010.png": (frames / "000001.png").read_bytes()}  # added by hand
    for name, data in mine.items():
        (frames / name).write_bytes(data)
    kept = {name: (frames / name).read_bytes() for name in ("000009.png", *mine)}
    lines: list[str] = []
    assert generate(resume=run_dir, log=lines.append, progress=False) == run_dir
    aside = run_dir / runs.SET_ASIDE_FOLDER
    assert {p.name: p.read_bytes() for p in aside.iterdir()} == kept  # all there, unchanged
    assert sorted(p.name for p in runs.list_frames(run_dir)) == [
        "000001.png", "000003.png", "000004.png"]  # the run's own 3 and 4 made again
    assert (frames / "000003.png").read_bytes() != mine["000003.png"]
    (line,) = [x for x in lines if x.startswith("resume: ")]
    assert line == (f"resume: 3 files numbered after the resume point (000003.png, 000009.png, "
                    f"000010.png) were not written by this run; moved to {aside}")


def test_resume_deletes_only_the_frame_a_kill_left_after_its_point(tiny_models, tmp_path):
    run_dir = _stopped_at(tiny(iterations=4, save_every=1, out=str(tmp_path)), at=2)
    state = runs.load_state(run_dir)
    cut_off = runs.save_frame(run_dir, 3, Image.new("RGB", (64, 64)), "cut off", "{}",
                              announce=True)  # written, its resume point never was
    assert runs.cut_off_frame(run_dir, state) == cut_off
    cut_off.write_bytes(cut_off.read_bytes() + b" ")  # changed since: no longer the run's own
    assert runs.cut_off_frame(run_dir, state) is None
    runs.save_frame(run_dir, 3, Image.new("RGB", (64, 64)), "cut off", "{}", overwrite=True,
                    announce=True)
    assert generate(resume=run_dir, log=quiet, progress=False) == run_dir
    assert not (run_dir / runs.SET_ASIDE_FOLDER).exists()
    assert [runs.read_image_info(p)[0].splitlines()[1].startswith("Steps: ")
            for p in runs.list_frames(run_dir)] == [True] * 4  # 3 is the run's, made again


def test_resume_of_a_finished_run_asks_for_more_iterations(tiny_models, tmp_path):
    run_dir = render(tiny(iterations=2, out=str(tmp_path)))
    with pytest.raises(ValueError, match="iterations"):
        render(resume=run_dir)
    render(resume=run_dir, changes={"iterations": 4})
    assert len(runs.list_frames(run_dir)) == 2


def test_cli_makes_a_run_folder_with_four_frames(tiny_models, tmp_path, capsys):
    code = main(["vqgan-clip", "--prompt", "desert:50 | snow:25", "--vqgan", "test-tiny-vqgan",
                 "--clip", "test-tiny-clip", "--iterations", "20", "--save-every", "5",
                 "--size", "64", "64", "--cutn", "4", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    run_dir = capsys.readouterr().out.strip().splitlines()[-1]
    frames = runs.list_frames(run_dir)
    assert len(frames) == 4
    text, saved = runs.read_image_info(frames[-1])
    info = infotext.parse_infotext(text)
    assert info["Prompt"] == "desert:50 | snow:25" and info["Steps"] == "20"
    assert saved["iterations"] == 20 and saved["vqgan"] == "test-tiny-vqgan"


# --- bad input: one line, nothing written ---------------------------------------------------


def assert_fails_cleanly(tmp_path, capsys, *flags, match: str) -> None:
    out = tmp_path / "ws"
    args = ["vqgan-clip", "--vqgan", "test-tiny-vqgan", "--clip", "test-tiny-clip",
            "--iterations", "2", "--size", "64", "64", "--out", str(out), "--quiet", *flags]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and match in err[-1], err
    assert not out.exists()


def test_bad_prompt_syntax(tiny_models, tmp_path, capsys):
    assert_fails_cleanly(tmp_path, capsys, "--prompt", "a || b", match="prompt")


def test_size_below_one_latent_token(tiny_models, tmp_path, capsys):
    assert_fails_cleanly(tmp_path, capsys, "--prompt", "a", "--size", "8", "64",
                         match="smaller than one latent token")


def test_size_beyond_memory_gives_an_estimate(tiny_models, tmp_path, capsys):
    assert_fails_cleanly(tmp_path, capsys, "--prompt", "a", "--size", "4096", "4096",
                         match="GB of memory")


def test_missing_init_image(tiny_models, tmp_path, capsys):
    assert_fails_cleanly(tmp_path, capsys, "--prompt", "a", "--init-image",
                         str(tmp_path / "nope.png"), match="init_image: file not found")


def test_unreadable_image_prompt(tiny_models, tmp_path, capsys):
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    assert_fails_cleanly(tmp_path, capsys, "--image-prompt", str(fake),
                         match="image_prompts: cannot read")


def test_unknown_model_suggests_close_names(tiny_models, tmp_path, capsys):
    assert_fails_cleanly(tmp_path, capsys, "--prompt", "a", "--vqgan", "vqgan_imagenet_f16_1638",
                         match="vqgan_imagenet_f16_16384")


def test_truncated_checkpoint(tiny_models, tmp_path, capsys):
    ckpt = tmp_path / "broken.ckpt"
    data = (tiny_models["test-tiny-vqgan"]).read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    shutil.copy(tiny_models["test-tiny-vqgan"].with_suffix(".yaml"), ckpt.with_suffix(".yaml"))
    assert_fails_cleanly(tmp_path, capsys, "--prompt", "a", "--vqgan", str(ckpt),
                         match="truncated or corrupt")


def test_yaml_that_does_not_match_its_checkpoint(tiny_models, tmp_path, capsys):
    import yaml

    source = tiny_models["test-tiny-vqgan"]
    ckpt = tmp_path / "other.ckpt"
    shutil.copy(source, ckpt)
    config = yaml.safe_load(source.with_suffix(".yaml").read_text())
    config["model"]["params"]["n_embed"] = 128
    ckpt.with_suffix(".yaml").write_text(yaml.safe_dump(config))
    assert_fails_cleanly(tmp_path, capsys, "--prompt", "a", "--vqgan", str(ckpt),
                         match="does not match")


# --- memory ---------------------------------------------------------------------------------


def saved_bytes(fn, *args) -> tuple[int, torch.Tensor]:
    """Bytes autograd keeps for the backward pass while running fn."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*args)
    return total, out


def test_checkpointed_decode_matches_and_keeps_less_for_backward(models):
    vqgan = models.vqgan
    z = torch.randn(1, vqgan.e_dim, 8, 8, requires_grad=True)
    plain_bytes, plain = saved_bytes(vqgan.decode, z)
    (plain_grad,) = torch.autograd.grad(plain.square().sum(), z)
    vqgan.checkpointing = True
    try:
        ckpt_bytes, ckpt = saved_bytes(vqgan.decode, z)
        (ckpt_grad,) = torch.autograd.grad(ckpt.square().sum(), z)
    finally:
        vqgan.checkpointing = False
    assert torch.allclose(plain, ckpt, atol=1e-6)
    assert torch.allclose(plain_grad, ckpt_grad, atol=1e-5)
    assert ckpt_bytes < plain_bytes / 2


def test_checkpointing_auto_turns_on_only_when_needed():
    from helpers.memory import HEADROOM
    from helpers.vqgan_clip.checks import estimate_memory, plan_memory

    cpu = torch.device("cpu")
    settings = tiny(width=1024, height=1024)
    plain, saving = estimate_memory(settings), estimate_memory(settings, checkpointing=True)
    for need, expected in ((plain + 1, False), ((plain + saving) // 2, True)):
        assert plan_memory(settings, cpu, need / HEADROOM, quiet) is expected
    with pytest.raises(ValueError, match="needs about"):  # forced off, it does not fit
        plan_memory(settings.replace(checkpointing="off"), cpu, (plain - 1) / HEADROOM, quiet)
    with pytest.raises(ValueError, match="needs about"):
        plan_memory(settings, cpu, (saving - 1) / HEADROOM, quiet)
