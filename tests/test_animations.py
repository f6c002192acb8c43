"""Animations on the tiny models: VQGAN+CLIP zoom, diffusion walk, 2d and video input."""

from __future__ import annotations

import numpy as np
import pytest
from common import all_frames, quiet

from helpers import runs
from helpers.metadata import infotext
from helpers.settings import DiffusionSettings, VQGANClipSettings


def assert_all_differ(frames: list[np.ndarray]) -> None:
    for i in range(len(frames)):
        for j in range(i + 1, len(frames)):
            assert np.abs(frames[i] - frames[j]).max() > 0, f"frames {i + 1} and {j + 1} equal"


# --- VQGAN+CLIP zoom -------------------------------------------------------------------------


def zoom_settings(tmp_path, **changes) -> VQGANClipSettings:
    base = {"prompt_schedule": "0: desert\n2: snow", "vqgan": "test-tiny-vqgan",
            "clip": "test-tiny-clip", "width": 64, "height": 64, "cutn": 2, "seed": 4,
            "device": "cpu", "animate": "zoom", "frames": 4, "iterations_per_frame": 2,
            "zoom": "0:(1.2)", "angle": "0:(10), 2:(-10)", "out": str(tmp_path)}
    return VQGANClipSettings(**{**base, **changes})


def zoom(settings: VQGANClipSettings, **options):
    from helpers.vqgan_clip import generate

    return generate(settings, log=quiet, progress=False, **options)


def test_zoom_saves_a_frame_per_frame_and_moves_between_them(tiny_models, tmp_path):
    run_dir = zoom(zoom_settings(tmp_path / "a"))
    frames = runs.list_frames(run_dir)
    assert len(frames) == 4
    info = [infotext.parse_infotext(runs.read_image_info(f)[0]) for f in frames]
    assert [i["Frame"] for i in info] == ["1", "2", "3", "4"]
    assert [i["Steps"] for i in info] == ["2", "4", "6", "8"]
    assert_all_differ(all_frames(run_dir))
    still = zoom(zoom_settings(tmp_path / "b", zoom="1", angle="0"))
    assert np.array_equal(all_frames(run_dir)[0], all_frames(still)[0])  # the same first frame
    assert np.abs(all_frames(run_dir)[1] - all_frames(still)[1]).max() > 0  # then it moves


def test_a_stopped_zoom_resumes_to_the_frames_of_an_uninterrupted_one(tiny_models, tmp_path):
    whole = zoom(zoom_settings(tmp_path / "whole"))

    def stop_at_5(step, _run_dir):
        if step.i == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        zoom(zoom_settings(tmp_path / "ws"), on_step=stop_at_5)
    (run_dir,) = (tmp_path / "ws" / "runs").iterdir()
    assert len(runs.list_frames(run_dir)) == 2
    zoom(None, resume=run_dir)
    for want, have in zip(all_frames(whole), all_frames(run_dir), strict=True):
        assert np.array_equal(want, have)


def test_a_zoom_continues_with_more_frames(tiny_models, tmp_path):
    run_dir = zoom(zoom_settings(tmp_path, frames=2))
    zoom(None, resume=run_dir, changes={"frames": 3})
    assert len(runs.list_frames(run_dir)) == 3
    assert runs.read_run_settings(run_dir)["frames"] == 3


# --- diffusion -------------------------------------------------------------------------------


def diffusion_settings(tmp_path, **changes) -> DiffusionSettings:
    base = {"model": "test-tiny-sd", "prompt": "a red cube", "width": 64, "height": 64,
            "steps": 3, "seed": 21, "device": "cpu", "out": str(tmp_path)}
    return DiffusionSettings(**{**base, **changes})


def diffuse(settings, **options):
    from helpers.diffusion import generate

    return generate(settings, log=quiet, progress=False, **options)


def test_a_walk_ends_on_the_single_images_of_its_keyframes(tiny_models, tmp_path):
    walk = diffuse(diffusion_settings(tmp_path / "walk", animate="walk", sampler="Euler a",
                                      prompt_schedule="0: a red cube\n3: a blue ball",
                                      frames=6))
    frames = all_frames(walk)
    assert len(frames) == 6  # keys 0 and 3, and the last frame, 5, with the next seed
    assert_all_differ(frames)
    for frame, prompt, seed in ((0, "a red cube", 21), (3, "a blue ball", 22),
                                (5, "a blue ball", 23)):
        single = diffuse(diffusion_settings(tmp_path / f"s{frame}", prompt=prompt, seed=seed,
                                            sampler="Euler a"))
        assert np.abs(frames[frame] - all_frames(single)[0]).max() <= 1, frame
    middle = diffuse(diffusion_settings(tmp_path / "m", prompt="a red cube", seed=21,
                                        sampler="Euler a"))
    assert np.abs(frames[1] - all_frames(middle)[0]).max() > 1  # between keys: in between


def test_a_walk_without_a_schedule_walks_from_seed_to_seed(tiny_models, tmp_path):
    walk = diffuse(diffusion_settings(tmp_path, animate="walk", frames=3, seed_mode="iter"))
    seeds = [infotext.parse_infotext(runs.read_image_info(p)[0])["Seed"]
             for p in runs.list_frames(walk)]
    assert seeds == ["21", "21", "22"]
    with pytest.raises(ValueError, match="frames: a walk needs two keyframes"):
        diffuse(diffusion_settings(tmp_path, animate="walk"))


def two_d(tmp_path, **changes) -> DiffusionSettings:
    return diffusion_settings(tmp_path, animate="2d", frames=4, zoom="0:(1.1)", angle="3",
                              translation_x="0:(1), 2:(-2)", strength=0.6, **changes)


def test_2d_frames_grow_from_the_first_image(tiny_models, tmp_path):
    run_dir = diffuse(two_d(tmp_path / "a"))
    frames = all_frames(run_dir)
    assert len(frames) == 4
    assert_all_differ(frames)
    single = diffuse(diffusion_settings(tmp_path / "s"))
    assert np.abs(frames[0] - all_frames(single)[0]).max() <= 1  # frame 0 is the txt2img image
    seeds = [infotext.parse_infotext(runs.read_image_info(p)[0])["Seed"]
             for p in runs.list_frames(run_dir)]
    assert seeds == ["21", "22", "23", "24"]
    fixed = diffuse(two_d(tmp_path / "f", seed_mode="fixed"))
    assert [infotext.parse_infotext(runs.read_image_info(p)[0])["Seed"]
            for p in runs.list_frames(fixed)] == ["21"] * 4


def test_a_stopped_2d_animation_resumes_to_the_same_frames(tiny_models, tmp_path):
    whole = diffuse(two_d(tmp_path / "whole"))

    def stop_after_two(path, _image):
        if path.name == "000002.png":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        diffuse(two_d(tmp_path / "ws"), on_image=stop_after_two)
    (run_dir,) = (tmp_path / "ws" / "runs").iterdir()
    assert len(runs.list_frames(run_dir)) == 2
    diffuse(None, resume=run_dir)
    for want, have in zip(all_frames(whole), all_frames(run_dir), strict=True):
        assert np.array_equal(want, have)


def input_video(path, frames: int = 7):
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (48, 32), fps=10, macro_block_size=1)
    writer.send(None)
    for i in range(frames):
        writer.send(np.full((32, 48, 3), 30 * i, np.uint8).tobytes())
    writer.close()
    return path


def test_video_input_restyles_every_nth_frame(tiny_models, tmp_path):
    video = input_video(tmp_path / "in.mp4")
    run_dir = diffuse(diffusion_settings(tmp_path / "a", animate="video", init_video=str(video),
                                         video_every=2, strength=0.5))
    assert len(runs.list_frames(run_dir)) == 4  # frames 0, 2, 4 and 6 of 7
    assert_all_differ(all_frames(run_dir))
    limited = diffuse(diffusion_settings(tmp_path / "b", animate="video", frames=2,
                                         init_video=str(video), strength=0.5))
    assert len(runs.list_frames(limited)) == 2


@pytest.mark.parametrize(("changes", "message"), [
    ({"animate": "2d"}, "frames: a 2d animation needs its number of frames"),
    ({"animate": "video"}, "init_video: give an input video"),
    ({"animate": "2d", "frames": 3, "zoom": "0:(1.05"}, r"zoom: missing '\)' after '0:\(1.05'"),
    ({"animate": "walk", "batch_size": 2}, "batch_size: an animation makes one frame"),
    ({"animate": "walk", "prompt_schedule": "2: a\n5: b"}, "a walk starts at a keyframe 0"),
])
def test_bad_animation_settings_fail_before_anything_loads(tiny_models, tmp_path, changes,
                                                           message):
    with pytest.raises(ValueError, match=message):
        diffuse(diffusion_settings(tmp_path, **changes))
    assert not (tmp_path / "runs").exists()


# --- from the command line to a video --------------------------------------------------------

TINY_VQGAN = ["vqgan-clip", "--vqgan", "test-tiny-vqgan", "--clip", "test-tiny-clip",
              "--cutn", "2", "--size", "64", "64", "--device", "cpu", "--quiet"]
TINY_SD = ["diffusion", "--model", "test-tiny-sd", "--steps", "2", "--size", "64", "64",
           "--device", "cpu", "--quiet"]


@pytest.mark.parametrize(("args", "frames"), [
    ([*TINY_VQGAN, "--prompt", "desert", "--animate", "zoom", "--frames", "3",
      "--iterations-per-frame", "2", "--zoom", "0:(1.1), 2:(1.2)", "--angle", "2", "--tx", "1",
      "--ty", "0:(1 + sin(t))"], 3),
    ([*TINY_SD, "--prompt-schedule", "0: a red cube\\n2: a blue ball", "--animate", "walk"], 3),
    ([*TINY_SD, "--prompt", "a cat", "--animate", "2d", "--frames", "3", "--zoom", "1.05"], 3),
], ids=["zoom", "walk", "2d"])
def test_the_cli_makes_an_animation_and_assembles_its_video(args, frames, tiny_models, tmp_path,
                                                           capsys):
    import imageio_ffmpeg

    from helpers.cli import main

    assert main([*args, "--out", str(tmp_path)]) == 0
    run_dir = capsys.readouterr().out.strip().splitlines()[-1]
    assert len(runs.list_frames(run_dir)) == frames
    assert main(["video", run_dir, "--fps", "4", "--quiet"]) == 0
    video = capsys.readouterr().out.strip().splitlines()[-1]
    assert imageio_ffmpeg.count_frames_and_secs(video)[0] == frames
    assert main(["info", video]) == 0
    assert f'"animate": "{args[args.index("--animate") + 1]}"' in capsys.readouterr().out
