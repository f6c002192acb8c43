"""Videos from frames: counts, sizes, order, smoothing and ping-pong arithmetic, audio, metadata,
the ffmpeg arguments, the notebook helpers, and bad input (one `error:`, nothing written).

Frames are tiny solid greys (robust through yuv420p), so the order and the cross-fades can be
read back from the decoded video.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from common import quiet, write_wav
from PIL import Image

from helpers import runs
from helpers.cli import build_parser, main
from helpers.settings import VideoSettings, VQGANClipSettings, settings_from_json
from helpers.video import (
    Job,
    assemble,
    ffmpeg_args,
    offer_download,
    read_video_info,
    show_video,
    video_frame_count,
)
from helpers.video.ffmpeg import read_ahead, run_ffmpeg
from helpers.video.frames import numbered_frames, select_frames
from helpers.video.metadata import parse_ffmetadata
from helpers.video.smooth import blend

SIZE = (16, 12)


def write_frames(folder: Path, greys, size=SIZE, name="{:06d}.png", start: int = 1) -> Path:
    """Solid grey frames named with `name`, numbered from `start`."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, grey in enumerate(greys):
        Image.new("RGB", size, (grey, grey, grey)).save(folder / name.format(start + i))
    return folder


def make(folder: Path, **settings) -> Path:
    return assemble(folder, VideoSettings(**settings), log=quiet, progress=False)


def count(path: Path) -> int:
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def decoded(path: Path) -> tuple[tuple[int, int], list[np.ndarray]]:
    """The video's frame size and its frames as RGB arrays."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return (w, h), [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]


def greys_of(path: Path) -> list[int]:
    """The mean grey of each decoded frame (the top-left 8x8, clear of any padding)."""
    return [round(float(f[:8, :8].mean())) for f in decoded(path)[1]]


def ffmpeg_report(path: Path) -> str:
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                            capture_output=True, text=True, check=False)
    return result.stderr


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --- counts, sizes, order ----------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 300])
def test_frame_count_and_size_read_back(n, tmp_path):
    folder = write_frames(tmp_path / "f", [(7 * i) % 256 for i in range(n)])
    video = make(folder)
    assert video == folder / "video.mp4"
    assert count(video) == n
    size, _ = decoded(video)
    assert size == SIZE
    assert imageio_ffmpeg.count_frames_and_secs(str(video))[1] == pytest.approx(n / 12, abs=0.05)


def test_a_one_frame_video_says_1_frame_and_how_to_make_it_last_longer(tmp_path):
    lines: list[str] = []
    assemble(write_frames(tmp_path / "f", [128]), VideoSettings(), log=lines.append,
             progress=False)
    assert lines[0] == "video: 1 frame of 16x12 -> 1 frame at 12 fps (0.08 s), mp4"
    hints = [line for line in lines if "hint" in line]
    assert len(hints) == 1
    assert "lasts only 0.08 s (1 frame at 12 fps)" in hints[0]
    assert "make more frames" in hints[0] and "lower fps" in hints[0]


@pytest.mark.parametrize(("n", "fps", "hinted"), [(11, 12, True), (12, 12, False),
                                                  (2, 1, False)])
def test_only_a_video_under_a_second_gets_the_hint(n, fps, hinted, tmp_path):
    lines: list[str] = []
    assemble(write_frames(tmp_path / "f", [128] * n), VideoSettings(fps=fps), log=lines.append,
             progress=False)
    assert lines[0].startswith(f"video: {n} frames of 16x12 -> {n} frames at {fps} fps")
    assert any("hint" in line for line in lines) == hinted


@pytest.mark.parametrize("name", ["{}.png", "frame_{}.png", "shot2_{}.jpg"])
def test_unpadded_names_play_in_natural_order(name, tmp_path):
    greys = [20 * i for i in range(1, 12)]  # frame k is grey 20k
    folder = write_frames(tmp_path / "f", greys, name=name)
    assert [f.path.name for f in numbered_frames(folder)][8:10] == [name.format(9),
                                                                   name.format(10)]
    played = greys_of(make(folder, crf=0))
    assert np.abs(np.array(played) - np.array(greys)).max() <= 6


def test_pingpong_plays_forward_then_back_without_repeating_the_ends(tmp_path):
    folder = write_frames(tmp_path / "f", [0, 80, 160, 240])
    video = make(folder, pingpong=True, crf=0)
    assert count(video) == 6 == video_frame_count(4, 12, pingpong=True)
    assert np.abs(np.array(greys_of(video)) - [0, 80, 160, 240, 160, 80]).max() <= 4


@pytest.mark.parametrize("n", [1, 2])
def test_pingpong_of_one_or_two_frames(n, tmp_path):
    folder = write_frames(tmp_path / "f", [0, 200][:n])
    assert count(make(folder, pingpong=True)) == n


def test_blend_cross_fades_up_to_the_target_fps(tmp_path):
    folder = write_frames(tmp_path / "f", [0, 100, 200, 250])
    video = make(folder, smooth="blend", target_fps=30, crf=0)
    assert count(video) == 8 == (4 - 1) * 30 // 12 + 1
    # output frame k shows source position k * 12 / 30 between the two frames around it
    expected = [np.interp(k * 12 / 30, [0, 1, 2, 3], [0, 100, 200, 250]) for k in range(8)]
    assert np.abs(np.array(greys_of(video)) - expected).max() <= 4


@pytest.mark.parametrize(("n", "pingpong", "smooth", "target", "fmt"), [
    (5, False, "blend", 24, "mp4"),
    (3, True, "blend", 30, "webm"),
    (1, False, "blend", 30, "mp4"),
    (5, False, "motion", 24, "mp4"),
    (3, True, "motion", 30, "mp4"),
    (2, False, "motion", 25, "webm"),
    (1, False, "motion", 30, "mp4"),
    (4, True, "none", 0, "gif"),
    (4, False, "blend", 25, "gif"),
])
def test_video_frame_count_matches_the_formula(n, pingpong, smooth, target, fmt, tmp_path):
    folder = write_frames(tmp_path / "f", [60 * i for i in range(n)], size=(32, 32))
    video = make(folder, pingpong=pingpong, smooth=smooth, target_fps=target, format=fmt)
    played = 2 * n - 2 if pingpong and n >= 2 else n
    expected = (played - 1) * target // 12 + 1 if target else played
    assert video_frame_count(n, 12, pingpong, target) == expected
    assert count(video) == expected


def test_blend_holds_at_most_two_source_frames():
    pulled = []

    def frames():
        for i in range(6):
            pulled.append(i)
            yield bytes([i * 40] * 3)

    out = []
    for k, frame in enumerate(blend(frames(), 6, 12, 30)):
        position = k * 12 // 30
        assert len(pulled) <= position + 2  # frames floor(p) and floor(p) + 1, nothing ahead
        out.append(frame[0])
    assert len(out) == 13
    assert out[:3] == [0, 16, 32]  # positions 0, 0.4, 0.8 of 0 -> 40


def test_read_ahead_stays_a_few_frames_ahead_and_raises_what_the_reader_raised():
    made = []

    def items():
        for i in range(20):
            made.append(i)
            yield bytes([i])

    for k, item in enumerate(read_ahead(items(), depth=2)):
        time.sleep(0.002)
        assert item == bytes([k])
        assert len(made) <= k + 4  # the one here, two queued, one waiting to be queued

    def broken():
        yield b"a"
        raise ValueError("source: cannot read 000002.png")

    with pytest.raises(ValueError, match=r"000002\.png"):
        list(read_ahead(broken()))


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_odd_sizes_are_padded_to_even_with_black(fmt, tmp_path):
    folder = write_frames(tmp_path / "f", [200, 200], size=(15, 11))
    size, frames = decoded(make(folder, format=fmt, crf=0))
    assert size == (16, 12)
    assert frames[0][:10, :10].mean() == pytest.approx(200, abs=4)
    assert frames[0][:10, 15].mean() < 60 and frames[0][11, :10].mean() < 60


def test_a_gif_keeps_odd_sizes_and_every_frame(tmp_path):
    folder = write_frames(tmp_path / "f", [0, 120, 240], size=(15, 11))
    with Image.open(make(folder, format="gif")) as gif:
        assert gif.size == (15, 11) and gif.n_frames == 3
        gif.seek(2)
        assert np.asarray(gif.convert("RGB")).mean() == pytest.approx(240, abs=8)


def test_start_end_and_every_select_frames(tmp_path):
    folder = write_frames(tmp_path / "f", [20 * i for i in range(1, 11)])
    chosen = select_frames(numbered_frames(folder), start=3, end=8, every=2)
    assert [f.number for f in chosen] == [3, 5, 7]
    assert np.abs(np.array(greys_of(make(folder, start=3, end=8, every=2, crf=0)))
                  - [60, 100, 140]).max() <= 4


def test_a_gap_is_an_error_unless_allowed(tmp_path, capsys):
    folder = write_frames(tmp_path / "f", [0, 50, 100, 150, 200])
    (folder / "000003.png").unlink()
    before = tree(tmp_path)
    assert main(["video", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: source: frame 3 is missing") and "--allow-gaps" in err
    assert tree(tmp_path) == before
    assert select_frames(numbered_frames(folder), start=4)[0].number == 4  # a gap before start
    assert main(["video", str(folder), "--allow-gaps", "--quiet"]) == 0
    assert count(Path(capsys.readouterr().out.splitlines()[-1])) == 4


def test_mixed_sizes_are_an_error_unless_resized(tmp_path, capsys):
    folder = write_frames(tmp_path / "f", [0, 100])
    write_frames(folder, [200], size=(20, 20), start=3)
    assert main(["video", str(folder), "--quiet"]) == 2
    assert "000003.png is 20x20 but 000001.png is 16x12" in capsys.readouterr().err
    video = make(folder, resize=True)
    assert count(video) == 3 and decoded(video)[0] == SIZE


# --- run folders, metadata, audio ----------------------------------------------------------------

PROMPT = "a café = ☕; #1 \\ back | snow:25"


def make_run(tmp_path: Path, greys=(0, 100, 200)) -> tuple[Path, VQGANClipSettings]:
    settings = VQGANClipSettings(prompt=PROMPT, seed=5)
    run_dir = runs.new_run(tmp_path / "ws", settings.prompt, settings.to_json())
    for i, grey in enumerate(greys, 1):
        runs.save_frame(run_dir, i, Image.new("RGB", SIZE, (grey,) * 3), "infotext",
                        settings.to_json())
    return run_dir, settings


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_the_runs_prompt_and_settings_go_into_the_metadata(fmt, tmp_path, capsys):
    run_dir, settings = make_run(tmp_path)
    assert main(["video", str(run_dir), "--format", fmt, "--quiet"]) == 0
    video = Path(capsys.readouterr().out.splitlines()[-1])
    assert video == run_dir / f"video.{fmt}" and count(video) == 3
    prompt, stored = read_video_info(video)
    assert prompt == PROMPT
    assert settings_from_json(json.dumps(stored)) == settings
    assert main(["info", str(video)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(PROMPT + "\n\n") and '"kind": "vqgan-clip"' in out and '"seed": 5' in out


def test_a_runs_frames_folder_is_the_run(tmp_path):
    run_dir, _ = make_run(tmp_path)
    video = make(run_dir / "frames")
    assert video == run_dir / "video.mp4"
    assert read_video_info(video)[0] == PROMPT


def test_frames_copied_out_of_a_run_carry_their_settings(tmp_path):
    import shutil

    run_dir, settings = make_run(tmp_path)
    copied = shutil.copytree(run_dir / "frames", tmp_path / "elsewhere" / "frames")
    video = make(copied)  # no settings.json beside them: the frames' own chunk is read
    assert video == copied / "video.mp4"
    assert read_video_info(video) == (PROMPT, json.loads(settings.to_json()))


def test_a_video_without_our_metadata_says_so(tmp_path, capsys):
    video = make(write_frames(tmp_path / "f", [0, 100]))
    assert read_video_info(video) == (None, None)
    assert main(["info", str(video)]) == 0
    assert "No Dreamframe settings in this video" in capsys.readouterr().out


def test_a_trajectory_video(tmp_path):
    run_dir, _ = make_run(tmp_path)
    write_frames(run_dir / "trajectory" / "000002" / "frames", [0, 50, 100, 150])
    video = make(run_dir, trajectory=2)
    assert video == run_dir / "trajectory-2.mp4" and count(video) == 4
    assert read_video_info(video)[0] == PROMPT
    with pytest.raises(ValueError, match=r"trajectory: .* no trajectory for image 5; it has "
                                         r"trajectories 2"):
        make(run_dir, trajectory=5)


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_audio_is_muxed_and_cut_to_the_video_length(fmt, tmp_path):
    folder = write_frames(tmp_path / "f", [10 * i for i in range(6)])
    video = make(folder, format=fmt, audio=str(write_wav(tmp_path / "tone.wav")))
    report = ffmpeg_report(video)
    assert "Audio:" in report
    assert count(video) == 6
    duration = report.split("Duration: ")[1].split(",")[0]  # 00:00:00.50, not the 3 s of sound
    assert duration.startswith("00:00:00.")


def test_a_shorter_soundtrack_does_not_cut_the_video(tmp_path):
    folder = write_frames(tmp_path / "f", [10 * i for i in range(24)])
    video = make(folder, audio=str(write_wav(tmp_path / "short.wav", seconds=0.3)))
    assert "Audio:" in ffmpeg_report(video)
    assert count(video) == 24


def test_default_names_never_overwrite(tmp_path):
    folder = write_frames(tmp_path / "f", [0, 100])
    first = make(folder)
    data = first.read_bytes()
    second = make(folder, crf=30)
    assert (first.name, second.name) == ("video.mp4", "video-2.mp4")
    assert first.read_bytes() == data
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_ctrl_c_while_encoding_leaves_nothing(tmp_path, monkeypatch):
    from helpers.video import frames as fr

    folder = write_frames(tmp_path / "f", [0, 50, 100, 150])
    real = fr.read_frame

    def interrupted(path, size):
        if path.name == "000003.png":
            raise KeyboardInterrupt
        return real(path, size)

    monkeypatch.setattr(fr, "read_frame", interrupted)
    before = tree(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        make(folder)
    assert tree(tmp_path) == before


# --- bad input -------------------------------------------------------------------------------


def bad_cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """id -> (arguments after `video`, what the message starts with)."""
    frames = write_frames(tmp / "frames", [0, 100])
    tiny = write_frames(tmp / "tiny", [0, 100])
    empty = tmp / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no frames here")
    a_file = tmp / "a-file.png"
    a_file.write_bytes(b"x")
    taken = tmp / "taken.mp4"
    taken.write_bytes(b"already here")
    return {
        "no frames": ([str(empty)], "source: no frames in"),
        "missing folder": ([str(tmp / "nope")], "source:"),
        "a file": ([str(a_file)], "source:"),
        "unknown format": ([str(frames), "--format", "avi"], "format: 'avi' is not one of"),
        "crf out of range": ([str(frames), "--crf", "52"], "crf: must be between 0 and 51"),
        "crf out of range webm": ([str(frames), "--format", "webm", "--crf", "64"], "crf:"),
        "out exists": ([str(frames), "--out", str(taken)], "out:"),
        "out suffix": ([str(frames), "--out", str(tmp / "v.webm")], "out:"),
        "target without smoothing": ([str(frames), "--target-fps", "30"], "target_fps:"),
        "smoothing without target": ([str(frames), "--smooth", "blend"], "target_fps:"),
        "motion on tiny frames": ([str(tiny), "--smooth", "motion", "--target-fps", "24"],
                                  "smooth: motion needs frames of at least 32x32"),
        "missing audio": ([str(frames), "--audio", str(tmp / "none.wav")], "audio:"),
        "audio without sound": ([str(frames), "--audio", str(frames / "000001.png")],
                                "audio:"),
        "gif with audio": ([str(frames), "--format", "gif", "--audio", str(a_file)], "audio:"),
        "start past the end": ([str(frames), "--start", "5"], "start: no frames numbered 5"),
        "end before start": ([str(frames), "--start", "2", "--end", "1"], "end:"),
        "no trajectory": ([str(frames), "--trajectory", "1"], "trajectory:"),
        "no system ffmpeg": ([str(frames), "--ffmpeg", "system"], "ffmpeg: no ffmpeg on the PATH"),
    }


CASES = ["no frames", "missing folder", "a file", "unknown format", "crf out of range",
         "crf out of range webm", "out exists", "out suffix", "target without smoothing",
         "smoothing without target", "motion on tiny frames", "missing audio",
         "audio without sound", "gif with audio", "start past the end", "end before start",
         "no trajectory", "no system ffmpeg"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-binaries"))  # no system ffmpeg to find
    cases = bad_cases(tmp_path)
    assert sorted(cases) == sorted(CASES)
    args, message = cases[case]
    before = tree(tmp_path)
    assert main(["video", *args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert message in err
    assert tree(tmp_path) == before


def test_an_ffmpeg_failure_is_a_value_error_with_its_message(tmp_path):
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    message = (r"ffmpeg: failed with status \d+: "
               r".*(No such file.*missing\.mp4|missing\.mp4.*No such file)")
    with pytest.raises(ValueError, match=message) as e:
        run_ffmpeg([exe, "-loglevel", "error", "-i", str(tmp_path / "missing.mp4"),
                    str(tmp_path / "out.mp4")], [b"unused"])
    assert "@ 0x" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_info_of_a_missing_video_is_an_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.mp4")]) == 2
    assert "missing.mp4" in capsys.readouterr().err


# --- ffmpeg arguments (no ffmpeg run) -----------------------------------------------------------


def after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_ffmpeg_args_for_mp4():
    job = Job(width=15, height=11, input_fps=12, output_fps=12, frames=40, crf=17,
              audio="a.wav", title="desert:50 | snow", comment='{"kind": "x"}')
    args = ffmpeg_args(job, "out.part", exe="/bin/ff")
    assert args[0] == "/bin/ff" and args[-1] == "out.part"
    assert args[args.index("-i") - 8:args.index("-i") + 2] == [
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "15x11", "-framerate", "12", "-i",
        "pipe:0"]
    assert after(args, "-vf").startswith("pad=16:12,scale=out_color_matrix=bt709")
    assert "format=yuv420p" in after(args, "-vf")
    assert (after(args, "-c:v"), after(args, "-crf"), after(args, "-frames:v")) == (
        "libx264", "17", "40")
    assert args[args.index("-t"):args.index("-t") + 4] == ["-t", "3.333333", "-i", "a.wav"]
    assert " ".join(args).count("-map") == 2 and "1:a:0" in args
    assert after(args, "-c:a") == "aac" and "-shortest" not in args
    assert "title=desert:50 | snow" in args and 'comment={"kind": "x"}' in args
    assert after(args, "-movflags") == "+faststart" and after(args, "-f") == "rawvideo"
    assert args[-3:-1] == ["-f", "mp4"]


def test_ffmpeg_args_for_webm_and_even_sizes():
    job = Job(width=16, height=12, input_fps=8, output_fps=8, frames=3, format="webm", crf=40)
    args = ffmpeg_args(job, "v.webm")
    assert not after(args, "-vf").startswith("pad")
    assert (after(args, "-c:v"), after(args, "-b:v"), after(args, "-crf")) == (
        "libvpx-vp9", "0", "40")
    assert "-c:a" not in args and "-map" not in args and "-metadata" not in args
    assert "-movflags" not in args and args[-3:] == ["-f", "webm", "v.webm"]
    audio = ffmpeg_args(Job(16, 12, 8, 8, 3, format="webm", audio="s.ogg"), "v.webm")
    assert after(audio, "-c:a") == "libopus"


def test_ffmpeg_args_for_motion_smoothing():
    job = Job(width=64, height=64, input_fps=12, output_fps=30, frames=23, motion=True)
    args = ffmpeg_args(job, "m.mp4")
    assert after(args, "-framerate") == "12"
    assert after(args, "-vf").startswith("minterpolate=fps=30:mi_mode=mci")
    assert after(args, "-frames:v") == "23"


def test_ffmpeg_args_for_a_gif_take_two_passes():
    job = Job(width=15, height=11, input_fps=10, output_fps=10, frames=5, format="gif",
              title="t", comment="c")
    first = ffmpeg_args(job, "p.png", stage="palette")
    assert after(first, "-vf") == "palettegen" and first[-1] == "p.png"
    assert after(first, "-frames:v") == "1"
    second = ffmpeg_args(job, "v.gif", palette="p.png")
    assert second[second.index("p.png") - 1] == "-i"
    assert after(second, "-filter_complex") == "[0:v]null[v];[v][1:v]paletteuse"
    assert "-metadata" not in second and "pad" not in " ".join(second)
    assert second[-3:] == ["-f", "gif", "v.gif"]
    with pytest.raises(ValueError, match="palette"):
        ffmpeg_args(job, "v.gif")


def test_parse_ffmetadata_unescapes_what_ffmpeg_escapes():
    text = (";FFMETADATA1\ntitle=a\\=b\\;c\\#d\\\\e\\\nf\nCOMMENT={\"x\": 1}\n"
            "encoder=Lavf\n[STREAM]\ntitle=stream\n")
    assert parse_ffmetadata(text) == {"title": "a=b;c#d\\e\nf", "comment": '{"x": 1}',
                                      "encoder": "Lavf"}


# --- settings and flags --------------------------------------------------------------------------


def test_video_settings_round_trip_and_defaults():
    s = VideoSettings(format="WEBM", crf=40, pingpong=True)
    assert s.format == "webm" and s.fps == 12 and s.output_fps == 12
    assert settings_from_json(s.to_json()) == s
    assert VideoSettings(smooth="blend", target_fps=30).output_fps == 30


def test_help_lists_every_video_setting(capsys):
    import dataclasses

    from helpers.cli import flag_name
    from helpers.settings import meta_of

    with pytest.raises(SystemExit):
        main(["video", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for field in dataclasses.fields(VideoSettings):
        assert flag_name(field.name) in text, field.name
        assert " ".join(meta_of(field).help.split())[:30] in text, field.name


def test_flags_come_from_the_video_settings():
    parser = build_parser()
    args = parser.parse_args(["video", "run", "--target-fps", "30", "--smooth", "blend",
                              "--pingpong", "--allow-gaps", "--no-resize", "--fps", "8"])
    assert (args.source, args.target_fps, args.smooth, args.pingpong, args.allow_gaps,
            args.resize, args.fps) == ("run", 30, "blend", True, True, False, 8)
    assert parser.parse_args(["video", "run", "--no-pingpong"]).pingpong is False
    assert parser.parse_args(["video", "run"]).pingpong is None  # the dataclass default


# --- notebooks -------------------------------------------------------------------------------


def test_show_video_embeds_the_file(tmp_path):
    import base64

    folder = write_frames(tmp_path / "f", [0, 100])
    video = make(folder)
    html = show_video(video).data
    assert "<video" in html and "autoplay muted playsinline" in html and "controls loop" in html
    assert f"data:video/mp4;base64,{base64.b64encode(video.read_bytes()).decode()}" in html
    gif = make(folder, format="gif")
    assert show_video(gif).data.startswith('<img src="data:image/gif;base64,')


def test_offer_download_only_on_colab(tmp_path, monkeypatch):
    assert offer_download(tmp_path / "v.mp4") is False
    asked = []
    colab = types.ModuleType("google.colab")
    colab.files = types.SimpleNamespace(download=asked.append)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert offer_download(tmp_path / "v.mp4") is True
    assert asked == [str(tmp_path / "v.mp4")]
