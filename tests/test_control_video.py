"""ControlNet per frame in a video animation (Deforum's "hybrid" idea): a unit whose image is
`video` takes its map from each input frame, saved as RUN/control/<frame>-<unit>.png; the other
units keep their fixed map (RUN/control/<unit>.png). On the tiny SD and ControlNet, a 3-frame
video of a square moving across, 64x64, 3 steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from common import all_frames, quiet
from PIL import Image

from helpers import runs
from helpers.settings import DiffusionSettings

FRAMES = 3


def moving_square(path: Path) -> Path:
    """A 3-frame video: a white square on grey, moving right by 12 pixels a frame."""
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (64, 64), fps=4, macro_block_size=1)
    writer.send(None)
    for i in range(FRAMES):
        frame = np.full((64, 64, 3), 60, np.uint8)
        frame[20:44, 6 + 12 * i:30 + 12 * i] = 240
        writer.send(frame.tobytes())
    writer.close()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return moving_square(tmp_path_factory.mktemp("video") / "square.mp4")


def settings(out: Path, video: Path, **changes) -> DiffusionSettings:
    values = {"model": "test-tiny-sd", "prompt": "a red cube", "width": 64, "height": 64,
              "steps": 3, "seed": 21, "sampler": "Euler", "device": "cpu", "animate": "video",
              "init_video": str(video), "strength": 0.7, "out": str(out), **changes}
    return DiffusionSettings(**values)


def generate(run_settings: DiffusionSettings, cache: Path) -> Path:
    from helpers.diffusion import generate

    return generate(run_settings, cache=cache, log=quiet, progress=False)


def picture(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


# Module fixtures run before the autouse fixture that points the default cache at the
# session's: they name the session cache themselves.
@pytest.fixture(scope="module")
def plain(tiny_models, video, tmp_path_factory, session_cache) -> Path:
    return generate(settings(tmp_path_factory.mktemp("plain"), video), session_cache)


@pytest.fixture(scope="module")
def hybrid(tiny_models, video, tmp_path_factory, session_cache) -> Path:
    return generate(settings(tmp_path_factory.mktemp("hybrid"), video, control="canny:video"),
                    session_cache)


def test_each_frame_saves_the_map_of_its_input_frame(hybrid, video):
    from helpers.diffusion.animate import video_frames
    from helpers.diffusion.tools.control import control_map, to_pil

    names = sorted(p.name for p in (hybrid / "control").iterdir())
    assert names == ["000001-0.png", "000002-0.png", "000003-0.png"]  # no fixed 0.png
    saved = [picture(hybrid / "control" / name) for name in names]
    inputs = list(video_frames(settings(hybrid, video)))
    assert len(inputs) == FRAMES
    for made, frame in zip(saved, inputs, strict=True):
        expected = np.asarray(to_pil(control_map("canny", frame, 64, 64))).astype(int)
        assert np.array_equal(made, expected)
        assert 0 < (made == 255).mean() < 0.5  # the square's edges
    for i in range(FRAMES):
        for j in range(i + 1, FRAMES):
            assert not np.array_equal(saved[i], saved[j]), (i, j)


def test_the_maps_steer_the_frames(hybrid, plain):
    steered, free = all_frames(hybrid), all_frames(plain)
    assert len(steered) == len(free) == FRAMES
    for a, b in zip(steered, free, strict=True):
        assert np.abs(a - b).mean() > 0.5


def test_each_frame_is_steered_by_its_own_frames_map(hybrid, video, tmp_path, session_cache):
    """With frame 1's map as a fixed image, frame 1 is the hybrid run's frame 1 exactly, the
    later frames are not: each frame took the map of its own input frame."""
    from helpers.diffusion.animate import video_frames

    first = tmp_path / "first.png"
    next(iter(video_frames(settings(tmp_path, video)))).save(first)
    fixed = generate(settings(tmp_path / "fixed", video, control=f"canny:{first}"),
                     session_cache)
    assert sorted(p.name for p in (fixed / "control").iterdir()) == ["0.png"]
    assert np.array_equal(picture(fixed / "control" / "0.png"),
                          picture(hybrid / "control" / "000001-0.png"))
    ours, theirs = all_frames(hybrid), all_frames(fixed)
    assert np.array_equal(ours[0], theirs[0])
    assert all(np.abs(a - b).mean() > 0.5 for a, b in zip(ours[1:], theirs[1:], strict=True))


def test_a_fixed_unit_beside_a_video_unit_keeps_its_one_map(tiny_models, video, tmp_path,
                                                           session_cache):
    shapes = tmp_path / "shapes.png"
    Image.new("RGB", (64, 64), "white").save(shapes)
    run_dir = generate(settings(tmp_path / "both", video, frames=2,
                                control=f"canny:video\ninvert@test-tiny-controlnet:{shapes}:0.5"),
                       session_cache)
    assert sorted(p.name for p in (run_dir / "control").iterdir()) == [
        "000001-0.png", "000002-0.png", "1.png"]
    assert (picture(run_dir / "control" / "1.png") == 0).all()  # white inverted
    info = runs.read_image_info(runs.list_frames(run_dir)[1])[0]
    assert "ControlNet 0: \"Module: canny" in info and "ControlNet 1: \"Module: invert" in info


def test_a_resumed_hybrid_run_makes_the_frames_and_maps_it_lacks(hybrid, video, tmp_path,
                                                                 session_cache):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(hybrid, copy)
    (copy / "frames" / "000003.png").unlink()
    (copy / "control" / "000003-0.png").unlink()
    (copy / "control" / "000002-0.png").unlink()  # a frame on disk needs no map again
    from helpers.diffusion import generate as resume

    resume(None, resume=copy, cache=session_cache, log=quiet, progress=False)
    assert sorted(p.name for p in (copy / "control").iterdir()) == ["000001-0.png",
                                                                     "000003-0.png"]
    assert np.array_equal(picture(copy / "control" / "000003-0.png"),
                          picture(hybrid / "control" / "000003-0.png"))
    assert np.array_equal(all_frames(copy)[2], all_frames(hybrid)[2])


def test_a_depth_video_unit_keeps_its_estimator_for_the_frames(tiny_models, video, tmp_path,
                                                               session_cache):
    from helpers.diffusion.checks import check_inputs

    run_settings = settings(tmp_path, video, control="depth:video",
                            depth_model="test-tiny-depth")
    unit, = check_inputs(run_settings, session_cache, log=quiet).control
    assert unit.per_frame and unit.map is None and unit.estimator is not None
    run_dir = generate(run_settings.replace(frames=1), session_cache)
    from helpers.diffusion.animate import video_frames
    from helpers.diffusion.tools.control import control_map, to_pil

    frame = next(iter(video_frames(run_settings)))
    expected = to_pil(control_map("depth", frame, 64, 64, model=unit.estimator))
    made = picture(run_dir / "control" / "000001-0.png")
    assert np.array_equal(made, np.asarray(expected).astype(int)) and len(np.unique(made)) > 20
    info = runs.read_image_info(runs.list_frames(run_dir)[0])[0]
    assert "ControlNet 0: \"Module: depth_anything" in info


@pytest.mark.parametrize(("changes", "message"), [
    ({"animate": "", "init_video": ""}, "control: the image video is each frame of the input "
                                         "video: only with animate video"),
    ({"animate": "2d", "init_video": "", "frames": 2},
     "control: a 2d animation takes no ControlNet yet; a video animation does"),
    ({"animate": "walk", "init_video": "", "prompt_schedule": "0: a\n2: b"},
     "control: a walk animation takes no ControlNet yet"),
])
def test_video_maps_need_a_video_animation(video, tmp_path, changes, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        settings(tmp_path, video, control="canny:video", **changes)
