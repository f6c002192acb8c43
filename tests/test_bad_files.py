"""Untrusted files stay bounded: metadata bombs, deeply nested JSON, oversized settings, escape
sequences, protocol-looking paths and stale temporary files (issue 14).

Each hostile file is built here, cheaply; each outcome is clean: exit status 2 with one
`error:` line naming the file (or the correct output), little memory, nothing written.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest
from common import write_wav
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from helpers import runs
from helpers.cli import main
from helpers.files import MAX_JSON_DEPTH, load_json
from helpers.metadata import exif
from helpers.metadata.stored import CUT_TEXT, MAX_STORED_INFOTEXT, MAX_STORED_SETTINGS
from helpers.settings import VideoSettings
from helpers.video import Job, assemble, ffmpeg_args, read_video_info
from helpers.video.assemble import remove_stale_parts
from helpers.video.ffmpeg import ffmetadata_text, find_ffmpeg, run_ffmpeg

NESTED = "[" * 100_000 + "]" * 100_000
SIZE = (16, 12)
MB = 1 << 20


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def one_error(capsys) -> str:
    """The one `error:` line a refused command printed."""
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    return err.strip()


def zlib_bomb(megabytes: int) -> bytes:
    """A valid zlib stream of `megabytes` MB of spaces, built without compressing them all:
    after a full flush a block does not refer back, so one compressed megabyte repeats."""
    chunk = b" " * MB
    deflate = zlib.compressobj(9)
    first = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    check = 1
    for _ in range(megabytes):
        check = zlib.adler32(chunk, check)
    return first + block * (megabytes - 1) + b"\x03\x00" + struct.pack(">I", check)


def test_the_zlib_bomb_is_what_it_claims():
    bomb = zlib_bomb(3)
    assert zlib.decompress(bomb) == b" " * (3 * MB)


def image_with_note(path: Path, note: bytes) -> Path:
    """A JPEG or WebP whose EXIF MakerNote is `note` (our prefix and zlib data)."""
    block = exif.exif_of({exif.USER_COMMENT: exif.encode_user_comment("desert\nSteps: 2"),
                          exif.MAKER_NOTE: exif.NOTE_PREFIX + note})
    fmt = exif.EXIF_SUFFIXES[path.suffix]
    Image.new("RGB", SIZE, (10, 20, 30)).save(path, format=fmt, exif=block)
    return path


def png_with(path: Path, **chunks: tuple[str, bool]) -> Path:
    """A PNG with text chunks: key -> (text, compressed)."""
    info = PngInfo()
    for key, (text, compressed) in chunks.items():
        info.add_itxt(key, text, zip=compressed)
    Image.new("RGB", SIZE, (10, 20, 30)).save(path, pnginfo=info)
    return path


def peak_mb(call) -> tuple[object, float]:
    """`call()`'s result and the peak of Python memory it allocated, in MB."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1] / MB
    finally:
        tracemalloc.stop()


# --- 1. decompression is bounded ---------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "megabytes"), [(".webp", 1024), (".jpg", 60)])
def test_a_makernote_bomb_is_refused_without_decompressing_it(suffix, megabytes, tmp_path,
                                                              capsys):
    image = image_with_note(tmp_path / f"bomb{suffix}", zlib_bomb(megabytes))  # JPEG: 64 kB
    assert image.stat().st_size < 1.1 * MB
    code, peak = peak_mb(lambda: main(["info", str(image)]))
    assert code == 2 and peak < 20
    error = one_error(capsys)
    assert error.startswith(f"error: {image}: cannot read its metadata (the Dreamframe settings "
                            "in the EXIF MakerNote are over 1,048,576 bytes uncompressed")
    assert capsys.readouterr().out == ""


def test_a_makernote_bomb_in_from_image_is_refused_and_nothing_written(tmp_path, capsys):
    image = image_with_note(tmp_path / "bomb.webp", zlib_bomb(64))
    before = tree(tmp_path)
    assert main(["diffusion", "--from-image", str(image), "--quiet", "--device", "cpu",
                 "--out", str(tmp_path / "ws")]) == 2
    assert f"{image}: cannot read its metadata" in one_error(capsys)
    assert tree(tmp_path) == before


def test_a_damaged_or_truncated_makernote_is_said_so(tmp_path, capsys):
    whole = zlib.compress(b'{"kind": "diffusion"}')
    for name, note in (("cut.webp", whole[:-6]), ("junk.webp", b"not zlib at all")):
        image = image_with_note(tmp_path / name, note)
        assert main(["info", str(image)]) == 2
        assert "MakerNote are damaged" in one_error(capsys)


@pytest.mark.parametrize("key", ["parameters", "dreamframe", "Comment"])
def test_a_huge_compressed_png_text_chunk_is_one_error_naming_the_file(key, tmp_path, capsys):
    image = png_with(tmp_path / "bomb.png", **{key: (" " * (40 * MB), True)})
    assert image.stat().st_size < MB
    code, peak = peak_mb(lambda: main(["info", str(image)]))
    assert code == 2 and peak < 20
    assert one_error(capsys).startswith(f"error: {image}: cannot read its metadata (")


def test_a_huge_png_text_chunk_is_refused_by_from_image_and_video(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    png_with(frames / "000001.png", parameters=(" " * (4 * MB), True))
    before = tree(tmp_path)
    assert main(["diffusion", "--from-image", str(frames / "000001.png"), "--quiet",
                 "--out", str(tmp_path / "ws")]) == 2
    assert "000001.png: cannot read its metadata" in one_error(capsys)
    assert main(["video", str(frames), "--quiet"]) == 2
    message = one_error(capsys)  # Pillow's own words: "Decompressed Data Too Large" before 10.1
    assert message.lower().startswith(f"error: source: {frames / '000001.png'}: cannot read "
                                      "its metadata (decompressed data too large".lower())
    assert tree(tmp_path) == before


# --- 2. JSON is bounded in size and depth ------------------------------------------------------


def test_load_json_names_what_it_refuses():
    assert load_json('{"a": [1, {"b": null}]}', "x", dict) == {"a": [1, {"b": None}]}
    assert load_json(b'["\xc3\xa9"]', "x") == ["é"]
    deep = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert load_json(deep, "x") is not None
    refused = {NESTED: "F is nested more than 100 levels deep",
               "[" + deep + "]": "F is nested more than 100 levels deep",
               "{bad": "F is not valid JSON: Expecting property name",
               b"\xff\xfe\xff": "F is not valid JSON",
               "[1]": "F must be a JSON object, got list",
               " " * 101: "F is 101 characters long, more than the 100 read"}
    for text, message in refused.items():
        with pytest.raises(json.JSONDecodeError, match=message):  # a ValueError too
            load_json(text, "F", dict, limit=100 if text == " " * 101 else 10**6)


def test_nested_json_in_a_png_settings_chunk_is_one_error(tmp_path, capsys):
    image = png_with(tmp_path / "deep.png", parameters=("desert", False),
                     dreamframe=(NESTED, True))
    assert main(["info", str(image)]) == 2
    assert one_error(capsys) == (f"error: {image}: the 'dreamframe' settings is nested more "
                                 "than 100 levels deep; not read")
    assert main(["diffusion", "--from-image", str(image), "--quiet", "--out",
                 str(tmp_path / "ws")]) == 2
    assert "nested more than 100 levels deep" in one_error(capsys)
    assert not (tmp_path / "ws").exists()


def test_nested_json_in_a_video_comment_is_not_our_settings(tmp_path, capsys):
    job = Job(*SIZE, 8, 8, 2, title="desert", comment=NESTED)
    meta = tmp_path / "meta.txt"
    meta.write_text(ffmetadata_text(job))
    video = tmp_path / "deep.mp4"
    run_ffmpeg(ffmpeg_args(job, video, find_ffmpeg(), metadata=meta),
               [bytes(SIZE[0] * SIZE[1] * 3)] * 2)
    assert read_video_info(video) == ("desert", None)
    assert main(["info", str(video)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("desert\n\nNo Dreamframe settings in this video")


def test_video_metadata_past_the_bound_is_one_error(tmp_path, monkeypatch, capsys):
    from helpers.video import metadata

    job = Job(*SIZE, 8, 8, 2, title="desert", comment="x" * 5000)
    meta = tmp_path / "meta.txt"
    meta.write_text(ffmetadata_text(job))
    video = tmp_path / "long.mp4"
    run_ffmpeg(ffmpeg_args(job, video, find_ffmpeg(), metadata=meta),
               [bytes(SIZE[0] * SIZE[1] * 3)] * 2)
    monkeypatch.setattr(metadata, "MAX_METADATA", 1000)
    assert main(["info", str(video)]) == 2
    assert one_error(capsys) == (f"error: {video}: its metadata is over 1,000 bytes, more than "
                                 "a video of ours holds; not read")


@pytest.mark.parametrize(("text", "message"), [
    (NESTED, "is nested more than 100 levels deep; not read"),
    ("{bad", "is not valid JSON: Expecting property name enclosed in double quotes"),
    ("[1, 2]", "must be a JSON object, got list"),
])
def test_a_bad_model_index_names_the_file(text, message, tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_index.json").write_text(text)
    before = tree(tmp_path)
    assert main(["diffusion", "--model", str(model), "--prompt", "desert", "--steps", "2",
                 "--size", "64", "64", "--device", "cpu", "--quiet", "--out",
                 str(tmp_path / "ws")]) == 2
    assert one_error(capsys).startswith(f"error: model: {model / 'model_index.json'} {message}")
    assert tree(tmp_path) == before


def test_nested_settings_json_of_a_run_to_resume_is_one_error(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "20240101-000000-desert"
    (run_dir / "frames").mkdir(parents=True)
    (run_dir / "settings.json").write_text(NESTED)
    before = tree(tmp_path)
    assert main(["vqgan-clip", "--resume", str(run_dir), "--quiet"]) == 2
    assert one_error(capsys) == (f"error: resume: {run_dir / 'settings.json'} is nested more "
                                 "than 100 levels deep; not read")
    assert tree(tmp_path) == before


def test_a_nested_workspace_file_is_damaged(tmp_path):
    from helpers.workspace import Workspace

    (tmp_path / "params.json").write_text(NESTED)
    with pytest.raises(ValueError, match=r"params.json is damaged \(the file is nested more"):
        Workspace(tmp_path).read("params.json")


# --- 3. frames hold bounded metadata, and read back -------------------------------------------

LONG_PROMPT = "desert " * 175_000  # 1.2 MB


@pytest.fixture
def long_run(tmp_path) -> Path:
    """A run whose settings JSON is 1.2 MB (written through the runs API: the settings now
    refuse such a prompt, older settings and notebooks may still hold one)."""
    settings = json.dumps({"kind": "diffusion", "prompt": LONG_PROMPT, "seed": 5})
    run_dir = runs.new_run(tmp_path / "ws", "desert", settings)
    for i in (1, 2):
        image = Image.new("RGB", SIZE, (40 * i,) * 3)
        runs.save_frame(run_dir, i, image, f"{LONG_PROMPT}\nSteps: 2, Seed: 5", settings)
    return run_dir


def test_a_long_runs_frames_hold_bounded_metadata(long_run):
    frame = runs.list_frames(long_run)[0]
    with Image.open(frame) as image:  # Pillow's limits: it opens at all
        stored = json.loads(image.info["dreamframe"])
        infotext = image.info["parameters"]
    assert len(json.dumps(stored)) <= MAX_STORED_SETTINGS
    assert len(infotext) <= MAX_STORED_INFOTEXT
    assert infotext.endswith(" more characters cut\nSteps: 2, Seed: 5")
    assert stored["seed"] == 5 and stored["prompt"].startswith("desert desert")
    assert stored["prompt"].endswith(f"… {len(LONG_PROMPT) - CUT_TEXT:,} more characters cut")
    assert "settings.json" in stored["shortened"]


def test_info_of_a_long_runs_frame_gives_the_whole_settings(long_run, tmp_path, capsys):
    frame = runs.list_frames(long_run)[0]
    assert main(["info", str(frame)]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.split("\n\n", 1)[1]) == runs.read_run_settings(long_run)
    lone = Path(shutil.copy(frame, tmp_path / "lone.png"))  # no settings.json beside it
    assert main(["info", str(lone)]) == 0
    out = capsys.readouterr().out
    assert len(out) < MAX_STORED_INFOTEXT + 10_000 and '"shortened": "the settings' in out
    with pytest.raises(ValueError, match=r"lone.png holds only a shortened copy"):
        runs.read_image_info(lone)


def test_a_long_runs_video_carries_the_whole_settings(long_run, capsys):
    assert main(["video", str(long_run), "--quiet"]) == 0  # no "Argument list too long"
    video = Path(capsys.readouterr().out.splitlines()[-1])
    title, settings = read_video_info(video)
    assert settings == runs.read_run_settings(long_run)
    assert title.startswith("desert desert") and title.endswith(" more characters cut")
    assert len(title) < 1100
    assert main(["info", str(video)]) == 0
    assert capsys.readouterr().out.startswith(title + "\n\n{")


def test_odd_characters_in_the_metadata_survive_the_ffmetadata_file(tmp_path):
    prompt = "a=b; c#d \\ e\nf\rg ☕ x\x00y"
    settings = json.dumps({"kind": "diffusion", "prompt": prompt})
    run_dir = runs.new_run(tmp_path / "ws", "odd", settings)
    runs.save_frame(run_dir, 1, Image.new("RGB", SIZE), "odd", settings)
    video = assemble(run_dir, VideoSettings(), log=lambda _: None, progress=False)
    assert read_video_info(video) == (prompt.replace("\x00", ""), json.loads(settings))


# --- 4, 5. ffmpeg reads plain files and gets no metadata on its command line -------------------


def test_ffmpeg_gets_paths_as_files_and_metadata_in_a_file():
    job = Job(*SIZE, 8, 8, 3, audio="concat:x.wav", title="t" * 200_000, comment="{}")
    args = ffmpeg_args(job, "out:v.mp4", metadata="/tmp/m:eta.txt")
    assert args[args.index("-t") - 2:args.index("-t")] == ["-protocol_whitelist", "file"]
    assert "file:concat:x.wav" in args and "concat:x.wav" not in args
    assert args[-1] == "file:out:v.mp4"
    at = args.index("file:/tmp/m:eta.txt")
    assert args[at - 5:at] == ["-f", "ffmetadata", "-protocol_whitelist", "file", "-i"]
    assert args[args.index("-map_metadata") + 1] == "2" and "-metadata" not in args
    assert max(len(arg) for arg in args) < 1000


def frames_in(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        Image.new("RGB", SIZE, (50 * i,) * 3).save(folder / f"{i:06d}.png")
    return folder


def test_an_audio_path_like_a_protocol_is_a_plain_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    frames = frames_in(tmp_path / "frames")
    write_wav(tmp_path / "x.wav", seconds=1.0)  # what ffmpeg's concat protocol would have read
    buffer = io.BytesIO()
    Image.new("RGB", SIZE).save(buffer, format="PNG")
    (tmp_path / "concat:x.wav").write_bytes(buffer.getvalue())  # the file given: no sound
    before = tree(tmp_path)
    assert main(["video", str(frames), "--audio", "concat:x.wav", "--quiet"]) == 2
    assert one_error(capsys) == ("error: audio: concat:x.wav has no sound that ffmpeg can "
                                 "read")
    assert tree(tmp_path) == before
    write_wav(tmp_path / "concat:x.wav", seconds=0.5)  # a real soundtrack of that name
    assert main(["video", str(frames), "--audio", "concat:x.wav", "--quiet"]) == 0
    assert Path(capsys.readouterr().out.splitlines()[-1]).is_file()


# --- 6. the output folder, and stale temporary files -------------------------------------------


def test_out_in_a_missing_folder_is_refused_before_encoding(tmp_path, capsys):
    frames = frames_in(tmp_path / "frames")
    before = tree(tmp_path)
    out = tmp_path / "missing" / "x.mp4"
    assert main(["video", str(frames), "--out", str(out), "--quiet"]) == 2
    assert one_error(capsys) == (f"error: out: the folder {out.parent} does not exist; create "
                                 "it, or give a path in an existing folder")
    assert tree(tmp_path) == before and not out.parent.exists()


def test_stale_parts_are_removed_and_live_ones_kept(tmp_path):
    frames = frames_in(tmp_path / "frames")
    old = time.time() - 3 * 60

    def part(name: str, age: float = old) -> Path:
        path = frames / name
        path.write_bytes(b"half a video")
        os.utime(path, (age, age))
        return path

    stale = part(".video.mp4.k3j_x9a2.part")  # a killed `video`: unlocked, untouched
    fresh = part(".video.mp4.abcdefgh.part", time.time())  # its writer may be about to lock it
    locked = part(".video-2.mp4.zz00zz00.part")  # a `video` still encoding holds its lock
    foreign = part(".notes.part")  # not ours
    with open(locked, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        video = assemble(frames, VideoSettings(), log=lambda _: None, progress=False)
        assert remove_stale_parts(frames) == []
    assert video.is_file()
    assert not stale.exists() and fresh.exists() and locked.exists() and foreign.exists()
    assert remove_stale_parts(frames) == [locked]  # its writer gone since


def test_a_video_being_made_holds_a_lock_on_its_part(tmp_path, monkeypatch):
    from helpers.video import frames as fr

    frames = frames_in(tmp_path / "frames", 3)
    real, seen = fr.read_frame, []

    def peek(path, size):
        parts = list(frames.glob(".video.mp4.*.part"))
        for p in parts:
            os.utime(p, (0, 0))  # old, so only the lock keeps it
        seen.append(remove_stale_parts(frames))
        return real(path, size)

    monkeypatch.setattr(fr, "read_frame", peek)
    video = assemble(frames, VideoSettings(), log=lambda _: None, progress=False)
    assert video.is_file() and seen and all(removed == [] for removed in seen)


# --- 7. escape sequences are shown, not obeyed -------------------------------------------------

ESCAPES = "desert \x1b]0;owned\x07\x1b[2J\x9b31m\rgone\tand\nSteps: 2"


def test_info_escapes_control_characters_of_an_image(tmp_path, capsys):
    settings = json.dumps({"kind": "diffusion", "prompt": "a\x9bb\x1bc"}, ensure_ascii=False)
    image = png_with(tmp_path / "evil.png", parameters=(ESCAPES, False),
                     dreamframe=(settings, True))
    assert main(["info", str(image)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("desert \\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\x0dgone\tand\nSteps: 2\n")
    assert '"prompt": "a\\x9bb\\u001bc"' in out
    assert not {"\x1b", "\x07", "\x9b", "\r"} & set(out)


def test_info_escapes_control_characters_of_a_video(tmp_path, capsys):
    job = Job(*SIZE, 8, 8, 2, title=ESCAPES, comment=json.dumps({"prompt": "\x9b"},
                                                               ensure_ascii=False))
    meta = tmp_path / "meta.txt"
    meta.write_text(ffmetadata_text(job))
    video = tmp_path / "evil.mp4"
    run_ffmpeg(ffmpeg_args(job, video, find_ffmpeg(), metadata=meta),
               [bytes(SIZE[0] * SIZE[1] * 3)] * 2)
    assert main(["info", str(video)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("desert \\x1b]0;owned\\x07\\x1b[2J")
    assert not {"\x1b", "\x07", "\x9b", "\r"} & set(out)
