"""Run folders, frame PNGs with web-UI-compatible metadata, infotext, and resume points."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zlib
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from helpers import files, runs
from helpers.metadata import infotext

NOW = datetime(2024, 3, 5, 7, 8, 9)
SETTINGS = json.dumps({"prompt": "desert:50 | snow:25", "seed": 1, "size": [64, 48]})


def _image(color: tuple[int, int, int] = (200, 30, 60)) -> Image.Image:
    return Image.new("RGB", (8, 6), color)


def _leftovers(folder: Path) -> list[Path]:
    """Temporary files that an atomic write leaves behind if it goes wrong."""
    return [p for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return runs.new_run(tmp_path, "desert:50 | snow:25", SETTINGS, now=NOW)


# ---------------------------------------------------------------- run folders


def test_run_folder_is_named_time_then_slug_under_runs(tmp_path: Path) -> None:
    run = runs.new_run(tmp_path, "desert:50 | snow:25", SETTINGS, now=NOW)
    assert run.parent == tmp_path / "runs"
    assert run.name == f"{NOW.strftime('%Y%m%d-%H%M%S')}-{runs.slugify('desert | snow')}"
    assert re.fullmatch(r"\d{8}-\d{6}-[a-z0-9-]+", run.name)
    assert (run / "frames").is_dir()


def test_run_folder_uses_current_time_by_default(tmp_path: Path) -> None:
    before = datetime.now().replace(microsecond=0)
    run = runs.new_run(tmp_path, "a cat", SETTINGS)
    after = datetime.now()
    stamp = datetime.strptime(run.name[:15], "%Y%m%d-%H%M%S")
    assert before <= stamp <= after


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("desert:50 | snow:25", "desert-snow"),
        ("cats:1:-inf | dogs:-0.5", "cats-dogs"),
        ("A Castle, by Night!!", "a-castle-by-night"),
        ("ratio 16:9 poster", "ratio-16-9-poster"),
        ("Déjà vu — café crème", "déjà-vu-café-crème"),
        ("", "untitled"),
        ("  |  :::  ", "untitled"),
        ("日本の風景", "日本の風景"),
        ("Пустыня:50 | снег:25", "пустыня-снег"),
        ("έρημος και χιόνι", "έρημος-και-χιόνι"),
        ("沙漠 | 雪:0.5", "沙漠-雪"),
        ("🌵 desert 🏜️", "🌵-desert-🏜️"),
        ('a/b\\c:d*e?f"g<h>i|j', "a-b-c-d-e-f-g-h-i-j"),
    ],
)
def test_slug_strips_weights_grammar_and_keeps_every_script(prompt: str, expected: str) -> None:
    assert runs.slugify(prompt) == expected


def test_long_slug_is_cut_at_a_word_boundary() -> None:
    words = ["lighthouse", "on", "a", "stormy", "coast", "painted", "by", "turner"]
    slug = runs.slugify(" ".join(words))
    assert len(slug) <= runs.SLUG_MAX_CHARS
    assert slug.split("-") == words[: len(slug.split("-"))]  # whole words only
    assert len(slug) > runs.SLUG_MAX_CHARS - len("painted-")  # and as many as fit


def test_slug_of_one_overlong_word_is_cut_hard() -> None:
    assert runs.slugify("x" * 100) == "x" * runs.SLUG_MAX_CHARS


def test_same_second_same_prompt_gives_distinct_folders_first_untouched(tmp_path: Path) -> None:
    first = runs.new_run(tmp_path, "a cat", json.dumps({"n": 1}), now=NOW)
    runs.save_frame(first, 1, _image(), "a cat", json.dumps({"n": 1}))
    second = runs.new_run(tmp_path, "a cat", json.dumps({"n": 2}), now=NOW)
    third = runs.new_run(tmp_path, "a cat", json.dumps({"n": 3}), now=NOW)
    assert len({first, second, third}) == 3
    assert second.name == f"{first.name}-2"
    assert third.name == f"{first.name}-3"
    assert json.loads((first / "settings.json").read_text()) == {"n": 1}
    assert runs.list_frames(first) == [first / "frames" / "000001.png"]
    assert runs.list_frames(second) == []


def test_settings_json_is_written_into_the_run(run_dir: Path) -> None:
    assert json.loads((run_dir / "settings.json").read_text(encoding="utf-8")) == json.loads(
        SETTINGS
    )
    assert _leftovers(run_dir) == []


def test_invalid_settings_json_creates_no_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="settings_json"):
        runs.new_run(tmp_path, "a cat", "{not json", now=NOW)
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


# ---------------------------------------------------------------- frames


def test_frame_png_carries_parameters_and_dreamframe_chunks(run_dir: Path) -> None:
    text = infotext.format_infotext("desert", "people", {"Steps": 20, "Seed": 1})
    path = runs.save_frame(run_dir, 1, _image(), text, SETTINGS)
    assert path == run_dir / "frames" / "000001.png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.text["parameters"] == text
        assert json.loads(image.text["dreamframe"]) == json.loads(SETTINGS)
        assert image.convert("RGB").getpixel((0, 0)) == (200, 30, 60)
    assert _leftovers(run_dir) == []


def test_latin1_parameters_are_a_plain_text_chunk(run_dir: Path) -> None:
    path = runs.save_frame(run_dir, 1, _image(), "café, Steps: 20", SETTINGS)
    chunk_types = [c for c, _, _ in _png_chunks(path.read_bytes())]
    assert b"tEXt" in chunk_types  # what the web UI writes when the text fits Latin-1


def _png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, start, length) of every chunk in a PNG byte string."""
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append((data[pos + 4 : pos + 8], pos + 8, length))
        pos += 12 + length
    return chunks


def test_unicode_prompt_round_trips_through_png(run_dir: Path) -> None:
    settings = json.dumps({"prompt": "富士山の夕焼け"}, ensure_ascii=False)
    text = infotext.format_infotext("富士山の夕焼け", "ぼやけた", {"Steps": 2, "Seed": 7})
    path = runs.save_frame(run_dir, 1, _image(), text, settings)
    data = path.read_bytes()
    itxt = [data[s : s + n] for c, s, n in _png_chunks(data) if c == b"iTXt"]
    assert any(body.startswith(b"parameters\0") for body in itxt)
    parameters, parsed_settings = runs.read_image_info(path)
    assert parameters == text
    assert parsed_settings == {"prompt": "富士山の夕焼け"}
    parsed = infotext.parse_infotext(Image.open(path).text["parameters"])
    assert parsed["Prompt"] == "富士山の夕焼け"
    assert parsed["Negative prompt"] == "ぼやけた"


def test_existing_frame_is_never_overwritten_by_default(run_dir: Path) -> None:
    path = runs.save_frame(run_dir, 3, _image((1, 2, 3)), "first", SETTINGS)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=re.escape("000003.png")):
        runs.save_frame(run_dir, 3, _image((9, 9, 9)), "second", SETTINGS)
    assert path.read_bytes() == before


def test_overwrite_true_replaces_a_frame(run_dir: Path) -> None:
    runs.save_frame(run_dir, 1, _image((1, 2, 3)), "first", SETTINGS)
    path = runs.save_frame(run_dir, 1, _image((9, 9, 9)), "second", SETTINGS, overwrite=True)
    with Image.open(path) as image:
        assert image.text["parameters"] == "second"
        assert image.getpixel((0, 0)) == (9, 9, 9)
    assert _leftovers(run_dir) == []


@pytest.mark.parametrize("index", [0, -1, 1.0, True, "1"])
def test_bad_frame_index_is_refused(run_dir: Path, index: object) -> None:
    with pytest.raises(ValueError, match="frame index"):
        runs.save_frame(run_dir, index, _image(), "x", SETTINGS)  # type: ignore[arg-type]


def test_frames_are_listed_in_order_and_next_index_follows_the_highest(run_dir: Path) -> None:
    assert runs.list_frames(run_dir) == []
    assert runs.next_frame_index(run_dir) == 1
    assert runs.latest_frame(run_dir) is None
    for index in (2, 10, 1):
        runs.save_frame(run_dir, index, _image(), f"frame {index}", SETTINGS)
    (run_dir / "frames" / "notes.txt").write_text("not a frame")
    names = [p.name for p in runs.list_frames(run_dir)]
    assert names == ["000001.png", "000002.png", "000010.png"]
    assert runs.next_frame_index(run_dir) == 11
    assert runs.latest_frame(run_dir) == run_dir / "frames" / "000010.png"


def test_interrupted_png_encoding_leaves_no_file(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_encoder(image: Image.Image, fp: object, filename: object) -> None:
        fp.write(b"\x89PNG\r\n\x1a\n partial")  # type: ignore[attr-defined]
        raise OSError("encoder died mid-way")

    monkeypatch.setitem(Image.SAVE, "PNG", broken_encoder)
    with pytest.raises(OSError, match="mid-way"):
        runs.save_frame(run_dir, 1, _image(), "x", SETTINGS)
    assert not (run_dir / "frames" / "000001.png").exists()
    assert list((run_dir / "frames").iterdir()) == []


def test_interrupted_disk_write_leaves_no_file(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError("disk went away")

    monkeypatch.setattr(files.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk went away"):
        runs.save_frame(run_dir, 1, _image(), "x", SETTINGS)
    assert list((run_dir / "frames").iterdir()) == []


# ---------------------------------------------------------------- infotext


PARAMS = {
    "Steps": 20,
    "Sampler": "Euler a",
    "CFG scale": 7.5,
    "Seed": 1234,
    "Size": "512x768",
    "Model hash": "abc123",
    "Model": "sd-v1-5",
    "Lora hashes": 'detail: 1a2b, "style": 3c4d',
    "Schedule": "0:(1.0), 30:(1.05)",
}


def _strings(params: dict[str, object]) -> dict[str, str]:
    return {k: str(v) for k, v in params.items() if v is not None}


def test_infotext_has_the_web_ui_layout() -> None:
    text = infotext.format_infotext("a cat", "blurry",
                                    {"Steps": 20, "Sampler": "Euler a", "Seed": 1})
    lines = ["a cat", "Negative prompt: blurry", "Steps: 20, Sampler: Euler a, Seed: 1"]
    assert text.split("\n") == lines


def test_infotext_quotes_values_with_commas_colons_or_quotes_and_drops_none() -> None:
    params = {"A b": "x, y", "Cc": "k: v", "Dd": 'say "hi"', "Ee": None}
    text = infotext.format_infotext("p", "", params)
    expected = [f"{k}: {json.dumps(v)}" for k, v in params.items() if v is not None]
    assert text.split("\n")[-1] == ", ".join(expected)
    assert "Negative prompt" not in text


def test_infotext_round_trip_with_quoting_negative_and_multiline_prompt() -> None:
    prompt = "a lighthouse, at dusk\nby the sea: stormy"
    negative = "blurry, low quality\nwatermark"
    parsed = infotext.parse_infotext(infotext.format_infotext(prompt, negative, PARAMS))
    size = parsed.pop("Size-1"), parsed.pop("Size-2")
    assert parsed == {"Prompt": prompt, "Negative prompt": negative, **_strings(PARAMS)}
    assert "x".join(size) == PARAMS["Size"]


@pytest.mark.parametrize(
    ("prompt", "negative", "params"),
    [
        ("a cat", "", {"Steps": 2}),
        ("", "only negative", {"Steps": 2, "Seed": 3}),
        ("", "", {"Steps": 2, "Note": " padded ", "Empty": "", "Multi": "a\nb"}),
        ("first\nsecond\nthird", "", {"Seed": 1, "Sampler": "DPM++ 2M"}),
        ("a cat", "a dog", {}),
    ],
)
def test_infotext_round_trip_edge_cases(prompt: str, negative: str, params: dict) -> None:
    parsed = infotext.parse_infotext(infotext.format_infotext(prompt, negative, params))
    assert parsed == {"Prompt": prompt, "Negative prompt": negative, **_strings(params)}


def test_parse_reads_web_ui_style_text_without_negative_prompt() -> None:
    parsed = infotext.parse_infotext("a cat\nSteps: 20, Size: 640x480, Seed: 5")
    assert parsed["Prompt"] == "a cat"
    assert parsed["Negative prompt"] == ""
    assert (parsed["Size"], parsed["Size-1"], parsed["Size-2"]) == ("640x480", "640", "480")


def test_infotext_refuses_keys_that_cannot_be_read_back() -> None:
    for key in ("Prompt", "a:b", "x", "k,v"):
        with pytest.raises(ValueError, match="params key"):
            infotext.format_infotext("p", "", {key: 1})


# ---------------------------------------------------------------- reading images


def test_read_image_info_of_png_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    _image().save(path)
    assert runs.read_image_info(path) == (None, None)
    assert "no dreamframe metadata" in runs.format_image_info(path).lower()


def test_read_image_info_of_png_with_only_parameters(tmp_path: Path) -> None:
    path = tmp_path / "webui.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Seed: 1, Size: 8x6")
    _image().save(path, pnginfo=info)
    assert runs.read_image_info(path) == ("a cat\nSteps: 20, Seed: 1, Size: 8x6", None)


def test_read_image_info_of_non_image_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("definitely not a picture")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        runs.read_image_info(path)


def test_read_image_info_of_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError, match=re.escape("missing.png")):
        runs.read_image_info(path)


def test_read_image_info_of_corrupt_settings_chunk_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("dreamframe", "{oops")
    _image().save(path, pnginfo=info)
    with pytest.raises(ValueError, match=re.escape("bad.png")):
        runs.read_image_info(path)


def test_format_image_info_prints_infotext_then_pretty_settings(run_dir: Path) -> None:
    text = infotext.format_infotext("desert", "", {"Steps": 20, "Seed": 1})
    path = runs.save_frame(run_dir, 1, _image(), text, SETTINGS)
    head, tail = runs.format_image_info(path).split("\n\n", 1)
    assert head == text
    assert json.loads(tail) == json.loads(SETTINGS)
    assert tail == json.dumps(json.loads(SETTINGS), indent=2, ensure_ascii=False)


def test_settings_chunk_is_compressed_utf8(run_dir: Path) -> None:
    settings = json.dumps({"prompt": "Ω" * 50}, ensure_ascii=False)
    data = runs.save_frame(run_dir, 1, _image(), "x", settings).read_bytes()
    body = next(data[s : s + n] for c, s, n in _png_chunks(data) if c == b"iTXt")
    key, rest = body.split(b"\0", 1)
    assert key == b"dreamframe"
    assert rest[0] == 1  # compression flag; then method, language, translated key, text
    _language, _translated_key, compressed = rest[2:].split(b"\0", 2)
    text = zlib.decompress(compressed)
    assert json.loads(text.decode("utf-8")) == json.loads(settings)


# ---------------------------------------------------------------- resume points


def test_state_round_trips_tensors_and_nested_values(run_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    state = {
        "z": torch.randn(2, 3, generator=generator),
        "step": 17,
        "opt": {"exp_avg": [torch.ones(4), torch.arange(3)], "lr": 0.05},
        "name": "vqgan",
    }
    path = runs.save_state(run_dir, state)
    assert path == run_dir / "state.pt"
    loaded = runs.load_state(run_dir, "state.pt")
    assert torch.equal(loaded["z"], state["z"])
    assert torch.equal(loaded["opt"]["exp_avg"][1], state["opt"]["exp_avg"][1])
    assert (loaded["step"], loaded["opt"]["lr"], loaded["name"]) == (17, 0.05, "vqgan")
    assert _leftovers(run_dir) == []


def test_load_state_refuses_pickled_code(run_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.save({"evil": _NotATensor()}, run_dir / "evil.pt")
    with pytest.raises(ValueError, match=r"evil.pt is damaged .*it was not run"):
        runs.load_state(run_dir, "evil.pt")


class _NotATensor:
    """A class a weights-only unpickler must refuse to build."""


def test_state_name_cannot_leave_the_run_folder(run_dir: Path) -> None:
    for name in ("../x.pt", "sub/x.pt", "", ".."):
        with pytest.raises(ValueError, match="state name"):
            runs.save_state(run_dir, {}, name)


def test_missing_state_names_the_file(run_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape("resume.pt")):
        runs.load_state(run_dir, "resume.pt")


def test_importing_runs_loads_neither_torch_nor_pil() -> None:
    code = "import sys, helpers.runs; print('torch' in sys.modules, 'PIL' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]
