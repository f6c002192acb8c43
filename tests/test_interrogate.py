"""Interrogate (image -> prompt): BLIP captions equal transformers' own generate, CLIP ranks
as a direct similarity argmax, term embeddings are cached, stored prompts are read back
without a model, the CLI prints the prompt last, and the notebook button fills the prompt."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.cli import main
from helpers.diffusion.tools import interrogate as it

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "helpers" / "data" / "interrogate"
TERMS = ["a red square", "a blue circle", "green grass", "a night sky", "a portrait",
         "white noise", "a desert", "the sea"]
SMALL = {"artists": ["Ann Example", "Bob Example", "Cy Example"],
         "mediums": ["an oil painting", "a photograph", "a pencil sketch"],
         "movements": ["cubism", "pop art", "impressionism"],
         "flavors": ["dark", "bright", "sharp focus", "soft light", "moody", "colourful"]}
INFOTEXT = ("a castle on a hill, oil painting\nNegative prompt: blurry\n"
            "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64")


@pytest.fixture(scope="module")
def folders(session_cache) -> dict[str, Path]:
    from helpers.download import fetch

    return {name: fetch(name, cache=session_cache, progress=False)
            for name in ("test-tiny-blip", "test-tiny-clip")}


@pytest.fixture
def picture() -> Image.Image:
    return Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 52, 3), np.uint8))


@pytest.fixture
def picture_file(tmp_path, picture) -> Path:
    path = tmp_path / "plain.png"
    picture.save(path)
    return path


@pytest.fixture
def no_models(monkeypatch):
    """Loading any model fails the test."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(it, "load_captioner", refuse)
    monkeypatch.setattr(it, "load_ranker", refuse)


def _direct_caption(folder: Path, image: Image.Image) -> str:
    from transformers import BlipForConditionalGeneration, BlipProcessor

    model = BlipForConditionalGeneration.from_pretrained(folder).eval()
    processor = BlipProcessor.from_pretrained(folder)
    with torch.no_grad():
        tokens = model.generate(**processor(images=image, return_tensors="pt"),
                                max_new_tokens=it.CAPTION_TOKENS)
    return processor.decode(tokens[0], skip_special_tokens=True).strip()


def _direct_scores(folder: Path, image: Image.Image, texts: list[str]) -> torch.Tensor:
    """Cosine similarities of the image with each text, through CLIPModel's own forward."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(folder).eval()
    inputs = CLIPProcessor.from_pretrained(folder)(text=texts, images=image, padding=True,
                                                   return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    return (out.text_embeds @ out.image_embeds[0]).float()


# --- caption ------------------------------------------------------------------------------------


def test_caption_equals_transformers_generate_on_the_same_model(folders, picture):
    expected = _direct_caption(folders["test-tiny-blip"], picture)
    assert expected  # the tiny model says something, so the comparison means something
    assert it.caption(picture, "test-tiny-blip", device="cpu") == expected
    assert it.caption(picture, str(folders["test-tiny-blip"]), device="cpu") == expected


def test_a_caption_model_of_another_kind_or_unknown_is_refused_naming_the_setting(picture):
    with pytest.raises(ValueError, match=r"^caption_model: 'test-tiny-clip' is a clip model"):
        it.interrogate(picture, "caption", "test-tiny-clip", device="cpu")
    with pytest.raises(ValueError, match=r"^caption_model: unknown model 'blip-huge'"):
        it.interrogate(picture, "caption", "blip-huge", device="cpu")
    with pytest.raises(ValueError, match=r"^clip_model: 'test-tiny-blip' is a caption model"):
        it.interrogate(picture, "clip", "test-tiny-blip", "test-tiny-blip", device="cpu")
    with pytest.raises(ValueError, match=r"^mode: 'fast' is not a mode"):
        it.interrogate(picture, "fast", "test-tiny-blip", device="cpu")


# --- ranking ------------------------------------------------------------------------------------


def test_the_top_terms_are_the_argmax_of_clip_similarities(folders, picture, session_cache):
    scores = _direct_scores(folders["test-tiny-clip"], picture, TERMS)
    best = scores.topk(3)
    assert best.values[0] - best.values[1] > 1e-4  # no near tie to make the order arbitrary
    expected = [TERMS[i] for i in best.indices.tolist()]
    assert it.rank_terms(picture, TERMS, "test-tiny-clip", top=3, device="cpu",
                         cache=session_cache) == expected


def test_cached_embeddings_equal_freshly_computed_ones(folders, tmp_path):
    from safetensors.torch import load_file

    from helpers.vqgan_clip.clip import load_clip

    ranker = it.load_ranker("test-tiny-clip", device="cpu", cache=tmp_path)
    texts = [*TERMS, "a much longer description of a scene, with several clauses, to pad"]
    computed = it.text_embeddings(ranker, texts)
    [file] = list(ranker.folder.glob("*.safetensors"))
    stored = load_file(file)["embeddings"]
    assert stored.dtype == torch.float16 and stored.shape == computed.shape
    fresh = load_clip("test-tiny-clip", cache=tmp_path).encode_text(texts)  # padded to 77
    torch.testing.assert_close(stored.float(), fresh, atol=1e-3, rtol=0)
    torch.testing.assert_close(it.text_embeddings(ranker, texts), stored, atol=0, rtol=0)


def test_a_second_ranking_reads_the_cache_instead_of_encoding(folders, picture, tmp_path,
                                                              monkeypatch):
    first = it.rank_terms(picture, TERMS, "test-tiny-clip", top=2, device="cpu",
                          cache=tmp_path)
    [file] = list((tmp_path / it.CACHE_FOLDER).rglob("*.safetensors"))
    written = file.stat().st_mtime_ns

    def fail(*_args, **_kwargs):
        raise AssertionError("encoded again")

    monkeypatch.setattr(it, "encode_texts", fail)
    assert it.rank_terms(picture, TERMS, "test-tiny-clip", top=2, device="cpu",
                         cache=tmp_path) == first
    assert file.stat().st_mtime_ns == written
    with pytest.raises(AssertionError, match="encoded again"):  # another list is encoded
        it.rank_terms(picture, [*TERMS, "one more"], "test-tiny-clip", device="cpu",
                      cache=tmp_path)


def test_clip_mode_is_the_caption_then_artist_medium_movement_and_three_flavours(
        folders, picture, session_cache):
    got = it.interrogate(picture, "clip", "test-tiny-blip", "test-tiny-clip", device="cpu",
                         cache=session_cache, terms=SMALL)

    def best(category: str, top: int = 1) -> list[str]:
        texts = it.term_texts(category, SMALL[category])
        scores = _direct_scores(folders["test-tiny-clip"], picture, texts)
        return [texts[i] for i in scores.topk(top).indices.tolist()]

    parts = [_direct_caption(folders["test-tiny-blip"], picture), *best("artists"),
             *best("mediums"), *best("movements"), *best("flavors", 3)]
    assert parts[1].startswith("by ")
    assert got == ", ".join(parts)


# --- stored prompts -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_picture_with_infotext_gives_its_prompt_without_loading_a_model(
        tmp_path, picture, suffix, no_models):
    from helpers.metadata.exif import save_with_info

    path = save_with_info(tmp_path / f"webui{suffix}", picture, INFOTEXT)
    assert it.describe_image(str(path)) == "a castle on a hill, oil painting"


def test_our_settings_prompt_is_read_when_there_is_no_infotext(tmp_path, picture, no_models):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("dreamframe", '{"kind": "vqgan-clip", "prompt": "desert:50 | snow:25"}')
    picture.save(tmp_path / "ours.png", pnginfo=info)
    assert it.describe_image(str(tmp_path / "ours.png")) == "desert:50 | snow:25"


def test_force_interrogates_a_picture_that_carries_a_prompt(folders, tmp_path, picture):
    from helpers.inputs import read_rgb
    from helpers.metadata.exif import save_with_info

    path = save_with_info(tmp_path / "webui.png", picture, INFOTEXT)
    got = it.describe_image(str(path), "caption", "test-tiny-blip", force=True, device="cpu")
    assert got == _direct_caption(folders["test-tiny-blip"], read_rgb(path, "image"))
    assert got != "a castle on a hill, oil painting"


# --- data files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("category", it.CATEGORIES)
def test_the_term_lists_load_whole_without_blanks_or_duplicates(category):
    text = (DATA / f"{category}.txt").read_text(encoding="utf-8")
    lines = text.split("\n")
    assert text.endswith("\n") and lines[-1] == ""
    lines = lines[:-1]
    assert all(line and line == line.strip() for line in lines)
    assert len(set(lines)) == len(lines)
    assert it.load_terms(category) == lines
    assert len(lines) >= {"artists": 5000, "mediums": 90, "movements": 200,
                          "flavors": 100_000}[category]


def test_the_term_lists_and_their_readme_ship_in_the_package():
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8")  # no tomllib on 3.10
    section = config.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    patterns = re.findall(r'"([^"]+)"', re.search(r"^helpers = \[(.*)\]$", section,
                                                   re.MULTILINE).group(1))
    files = [*(f"{c}.txt" for c in it.CATEGORIES), "README.md"]
    for name in files:
        relative = f"data/interrogate/{name}"
        assert (DATA / name).is_file()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    assert "MIT License" in readme and "pharmapsychotic/clip-interrogator" in readme
    assert "bc07ce62c179d3aab3053a623d96a071101d11cb" in readme


def test_the_catalogue_has_the_blip_captioners_and_sdxls_clip():
    from helpers.catalog import get_model, list_models

    captioners = {m.name: m for m in list_models("caption") if not m.test}
    assert captioners["blip-large"].hub_repo == "Salesforce/blip-image-captioning-large"
    assert captioners["blip-base"].hub_repo == "Salesforce/blip-image-captioning-base"
    for model in captioners.values():
        assert model.licence.startswith("BSD-3-Clause") and model.hub_repo in model.licence
        assert {"config.json", "preprocessor_config.json", "vocab.txt"} <= set(
            model.allow_patterns)
    assert get_model(it.SDXL_CLIP).kind == "clip" and get_model(it.DEFAULT_CLIP).kind == "clip"
    assert get_model("test-tiny-blip").test


# --- command line -------------------------------------------------------------------------------


def _tiny_cli(image: Path, cache: Path, *more: str) -> list[str]:
    return ["interrogate", str(image), "--caption-model", "test-tiny-blip", "--clip-model",
            "test-tiny-clip", "--device", "cpu", "--cache", str(cache), *more]


def test_the_cli_prints_the_prompt_as_its_last_line(folders, picture_file, picture,
                                                    session_cache, capsys, monkeypatch):
    monkeypatch.setattr(it, "load_terms", lambda category, limit=0: SMALL[category])
    assert main(_tiny_cli(picture_file, session_cache)) == 0
    out = capsys.readouterr().out.splitlines()
    expected = it.interrogate(picture, "clip", "test-tiny-blip", "test-tiny-clip",
                              device="cpu", cache=session_cache, terms=SMALL)
    assert out == [expected]
    assert main(_tiny_cli(picture_file, session_cache, "--mode", "caption")) == 0
    assert capsys.readouterr().out.splitlines() == [
        _direct_caption(folders["test-tiny-blip"], picture)]


def test_the_cli_prints_a_stored_prompt_and_says_so_on_stderr(tmp_path, picture, capsys,
                                                              no_models):
    from helpers.metadata.exif import save_with_info

    path = save_with_info(tmp_path / "webui.png", picture, INFOTEXT)
    assert main(["interrogate", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == "a castle on a hill, oil painting"
    assert "carries its prompt" in captured.err and "--force" in captured.err


@pytest.mark.parametrize(("argv", "message"), [
    (["missing.png"], "error: image: file not found"),
    (["PICTURE", "--caption-model", "blip-huge"], "error: caption_model: unknown model"),
    (["PICTURE", "--clip-model", "test-tiny-blip"], "error: clip_model: 'test-tiny-blip' is a "
     "caption model"),
])
def test_bad_input_is_one_error_line_and_nothing_written(tmp_path, picture_file, capsys,
                                                         argv, message, no_models):
    cache = tmp_path / "cache"
    argv = [str(picture_file) if a == "PICTURE" else str(tmp_path / a) if a.endswith(".png")
            else a for a in argv]
    assert main(["interrogate", *argv, "--cache", str(cache)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message) and len(captured.err.splitlines()) == 1
    assert not cache.exists()


def test_an_unknown_mode_is_refused_by_the_parser(picture_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["interrogate", str(picture_file), "--mode", "fast"])
    assert exit_info.value.code == 2
    assert "--mode: invalid choice: 'fast'" in capsys.readouterr().err


# --- the notebook button ------------------------------------------------------------------------


def test_the_describe_button_puts_the_prompt_into_the_prompt_box(folders, picture_file,
                                                                 picture, session_cache):
    import ipywidgets as w

    from helpers.widgets.describe import describe_button

    prompt = w.Textarea(value="old")
    box = describe_button(prompt, lambda: {"caption_model": "test-tiny-blip",
                                           "device": "cpu", "cache": session_cache})
    box.path.value, box.mode.value = str(picture_file), "caption"
    box.button.click()
    assert prompt.value == _direct_caption(folders["test-tiny-blip"], picture)
    assert "now holds" in box.status.value and not box.button.disabled


def test_the_describe_button_shows_an_error_and_keeps_the_prompt(tmp_path, no_models):
    import ipywidgets as w

    from helpers.widgets.describe import describe_button

    prompt = w.Textarea(value="old")
    box = describe_button(prompt, {"caption_model": "test-tiny-blip"})
    box.path.value = str(tmp_path / "missing.png")
    box.button.click()
    assert prompt.value == "old"
    assert "error: image: file not found" in box.status.value
    assert not box.button.disabled


def test_the_describe_button_reads_a_stored_prompt_without_a_model(tmp_path, picture,
                                                                   no_models):
    import ipywidgets as w

    from helpers.metadata.exif import save_with_info
    from helpers.widgets.describe import describe_button

    path = save_with_info(tmp_path / "webui.jpg", picture, INFOTEXT)
    prompt = w.Textarea(value="old")
    box = describe_button(prompt)
    box.path.value = f"  {path}  "
    box.button.click()
    assert prompt.value == "a castle on a hill, oil painting"


def test_clip_ranks_the_first_1500_lines_of_each_list_as_the_web_ui_unless_told(monkeypatch):
    from helpers.diffusion.tools import interrogate as module

    full = module.load_terms("flavors")
    assert len(full) > 100_000 and module.load_terms("flavors", 1500) == full[:1500]
    assert module.load_terms("mediums", 1500) == module.load_terms("mediums")  # 95 lines
    with pytest.raises(ValueError, match=r"^term_limit: -1 is negative"):
        module.load_terms("flavors", -1)
    seen: dict[str, int] = {}
    monkeypatch.setattr(module, "caption", lambda *a, **k: "a cat")
    monkeypatch.setattr(module, "load_ranker", lambda *a, **k: SimpleNamespace(
        clip=SimpleNamespace(device="cpu")))
    monkeypatch.setattr(module, "best_terms", lambda ranker, image, lists, log: seen.update(
        {k: len(v) for k, v in lists.items()}) or ["x"])
    image = Image.new("RGB", (8, 8))
    assert module.interrogate(image, device="cpu") == "a cat, x"
    assert seen["flavors"] == 1500 and seen["artists"] == 1500
    module.interrogate(image, device="cpu", term_limit=0)
    assert seen["flavors"] == len(full)
