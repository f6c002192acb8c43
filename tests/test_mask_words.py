"""A mask from words (CLIPSeg): size, values, threshold, dilation, union, equivalence with a
direct transformers call on the tiny model, and clear errors for bad words and models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from helpers import testing
from helpers.catalog import get_model
from helpers.diffusion.tools.mask_words import (
    MAX_MASK_WORDS,
    check_mask_words,
    dilate,
    load_segmenter,
    mask_from_words,
    word_probabilities,
)
from helpers.download import DownloadError, fetch

TINY = "test-tiny-clipseg"


@pytest.fixture(scope="module")
def folder(session_cache):
    return fetch(TINY, cache=session_cache, progress=False)


@pytest.fixture(scope="module")
def segmenter(folder, session_cache):
    return load_segmenter(TINY, cache=session_cache)


@pytest.fixture(scope="module")
def image():
    """A non-square picture, so a mixed-up height and width shows."""
    pixels = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _mask(image, words, threshold=0.5, dilation=0, log=None):
    return np.array(mask_from_words(image, words, threshold, dilation, None,
                                    log or (lambda _line: None), model=TINY))


def _reference(folder, image, word):
    """CLIPSeg's probabilities for one word as transformers' own example computes them, upsampled
    to the image size (bilinear)."""
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    processor = CLIPSegProcessor.from_pretrained(folder)
    model = CLIPSegForImageSegmentation.from_pretrained(folder).eval()
    inputs = processor(text=[word], images=[image], padding="max_length", return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    probability = torch.sigmoid(logits.reshape(1, 1, *logits.shape[-2:]))
    return F.interpolate(probability, size=(image.height, image.width), mode="bilinear",
                         align_corners=False)[0, 0]


def test_mask_is_an_L_image_of_the_image_size_holding_only_black_and_white(folder, segmenter,
                                                                           image):
    lines = []
    # at the median probability the random model masks about half (whatever transformers'
    # version drew its weights)
    threshold = float(word_probabilities(segmenter, image, ["the sky"]).median())
    mask = mask_from_words(image, "the sky", threshold, 0, None, lines.append, model=TINY)
    assert mask.mode == "L" and mask.size == image.size
    values = np.array(mask)
    assert set(np.unique(values)) == {0, 255}
    assert lines == [f"mask_prompt: {(values == 255).mean():.0%} of the image is masked"]


def test_threshold_zero_masks_everything_and_one_nothing(folder, image):
    assert (_mask(image, "the sky", threshold=0) == 255).all()
    assert (_mask(image, "the sky", threshold=1) == 0).all()


def test_only_probabilities_above_the_threshold_are_masked(segmenter, image):
    highest = word_probabilities(segmenter, image, ["the sky"]).max().item()
    assert (_mask(image, "the sky", threshold=highest) == 0).all()


def test_mask_is_the_probabilities_above_the_threshold_then_dilated(segmenter, image):
    probabilities = word_probabilities(segmenter, image, ["the sky"])
    threshold = probabilities.quantile(0.95).item()  # the random model's spots are 1-2 px wide
    expected = dilate(probabilities > threshold, 2).numpy()
    assert 0.2 < expected.mean() < 0.9
    np.testing.assert_array_equal(_mask(image, "the sky", threshold, 2), expected * 255)


@pytest.mark.parametrize("radius", [0, 1, 3])
def test_dilation_grows_one_pixel_into_a_square_of_the_radius(radius):
    mask = torch.zeros(21, 31, dtype=torch.bool)
    mask[10, 12] = True
    grown = dilate(mask, radius)
    rows, cols = torch.nonzero(grown, as_tuple=True)
    assert (rows.min().item(), rows.max().item()) == (10 - radius, 10 + radius)
    assert (cols.min().item(), cols.max().item()) == (12 - radius, 12 + radius)
    assert grown.sum().item() == (2 * radius + 1) ** 2  # the whole square, nothing else


def test_dilation_stops_at_the_border():
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[0, 7] = True
    grown = dilate(mask, 2)
    assert torch.nonzero(grown).tolist() == [[r, c] for r in range(3) for c in range(5, 8)]


def test_union_of_two_words_is_the_max_of_each(segmenter, image):
    threshold = word_probabilities(segmenter, image, ["the sky"]).quantile(0.9).item()
    sky = _mask(image, "the sky", threshold, 1)
    car = _mask(image, "a red car", threshold, 1)
    assert (sky != car).sum() > 100  # else the union shows nothing
    np.testing.assert_array_equal(_mask(image, "the sky | a red car", threshold, 1),
                                  np.maximum(sky, car))


def test_probabilities_equal_a_direct_clipseg_call_upsampled(folder, segmenter, image):
    words = ["the sky", "a red car"]
    sky, car = (_reference(folder, image, w) for w in words)
    assert (sky - car).abs().max() > 1e-4  # the words matter (10x the tolerance below)
    ours = word_probabilities(segmenter, image, words)
    torch.testing.assert_close(ours, torch.maximum(sky, car), atol=1e-5, rtol=0)
    torch.testing.assert_close(word_probabilities(segmenter, image, ["the sky"]), sky,
                               atol=1e-5, rtol=0)


def test_words_longer_than_the_context_are_cut_not_refused(segmenter, image):
    long = "sky " * 100  # 400 characters: 400 tokens of the character-level tokenizer
    probabilities = word_probabilities(segmenter, image, [long])
    assert probabilities.shape == (48, 80) and torch.isfinite(probabilities).all()


def test_pieces_are_split_on_bars_with_escapes_and_colons_kept():
    assert check_mask_words(" the sky |the sea ") == ["the sky", "the sea"]
    assert check_mask_words(r"a \| b | ratio 16\:9") == ["a | b", "ratio 16:9"]
    assert check_mask_words("style: 3d") == ["style: 3d"]


@pytest.mark.parametrize(("words", "why"), [
    ("", "empty"),
    ("   \n", "empty"),
    ("sky || sea", "piece 2"),
    ("sky:2", "weight"),
    ("x" * 50_001, "50001 characters"),
    (" | ".join(["sky"] * (MAX_MASK_WORDS + 1)), f"at most {MAX_MASK_WORDS}"),
    (None, "must be text"),
])
def test_bad_words_are_refused_naming_mask_prompt(words, why):
    with pytest.raises(ValueError, match="mask_prompt") as info:
        check_mask_words(words)
    assert why in str(info.value)


@pytest.mark.parametrize(("threshold", "dilation", "why"), [
    (-0.1, 4, "threshold"), (1.5, 4, "threshold"), (float("nan"), 4, "threshold"),
    ("0.5", 4, "threshold"), (0.4, -1, "dilation"), (0.4, 257, "dilation"),
    (0.4, 2.5, "dilation"),
])
def test_bad_threshold_or_dilation_is_refused_before_loading(image, threshold, dilation, why):
    with pytest.raises(ValueError, match=f"mask_prompt: {why}"):
        mask_from_words(image, "sky", threshold, dilation, None, print, model="no-such-model")


def test_unknown_model_is_a_clear_error_with_the_close_name(image):
    with pytest.raises(ValueError, match=r"^mask_model: CLIPSeg model: unknown") as info:
        mask_from_words(image, "sky", model="clipsg")
    assert "'clipsg'" in str(info.value) and "'clipseg'" in str(info.value)


def test_a_model_of_another_kind_is_refused(image, tmp_path):
    with pytest.raises(ValueError, match=r"^mask_model: 'test-tiny-clip' is a clip model"):
        mask_from_words(image, "sky", model="test-tiny-clip")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(ValueError, match="'clip' model, not a CLIPSeg"):
        mask_from_words(image, "sky", model=str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no config\.json"):
        mask_from_words(image, "sky", model=str(tmp_path / "empty"))


def test_offline_model_is_a_clear_error_naming_it_and_leaving_nothing(image, tmp_path):
    for model, repo in (("clipseg", "CIDAS/clipseg-rd64-refined"),
                        ("someone/clipseg-copy", "someone/clipseg-copy")):
        with pytest.raises(DownloadError) as info:
            mask_from_words(image, "sky", cache=tmp_path, model=model)
        message = str(info.value)
        assert message.startswith(f"mask_model: could not get the CLIPSeg model {model!r}")
        assert repo in message and "offline" in message
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_catalogue_clipseg_is_the_refined_hub_model_with_its_licence():
    model = get_model("clipseg")
    assert (model.kind, model.family) == ("clipseg", "clipseg")
    assert model.hub_repo == "CIDAS/clipseg-rd64-refined"
    assert {"config.json", "preprocessor_config.json", "vocab.json"} <= set(model.allow_patterns)
    assert model.weights[0] == "model.safetensors"
    assert "Apache-2.0" in model.licence and "MIT" in model.licence
    tiny = get_model(TINY)
    assert tiny.test and tiny.kind == "clipseg"


def test_tiny_clipseg_is_in_the_real_layout(folder):
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "clipseg" and config["use_complex_transposed_convolution"]
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    assert processor["image_processor_type"] == "ViTImageProcessor"
    assert processor["image_mean"] == [0.485, 0.456, 0.406]  # the real model's
    assert (folder / "model.safetensors").is_file() and (folder / "vocab.json").is_file()


def test_tiny_clipseg_weights_follow_the_seed_and_it_says_it_is_random(tmp_path):
    from safetensors.torch import load_file

    def weights(seed, name):
        return load_file(testing.tiny_clipseg(tmp_path / name, seed=seed) / "model.safetensors")

    first, second, other = weights(7, "a"), weights(7, "b"), weights(8, "c")
    assert first.keys() == second.keys() and first
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
    doc = testing.tiny_clipseg.__doc__
    assert "random" in doc.lower() and "noise, not art" in doc


def test_the_cli_inpaints_by_words_with_the_chosen_clipseg(folder, tmp_path, capsys):
    from helpers import runs
    from helpers.cli import main

    init = tmp_path / "init.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(init)
    flags = ["diffusion", "--model", "test-tiny-sd", "--prompt", "a", "--size", "64", "64",
             "--steps", "2", "--device", "cpu", "--sampler", "Euler", "--quiet",
             "--init-image", str(init), "--mask-prompt", "the sky", "--mask-threshold", "0",
             "--mask-dilation", "0", "--mask-model", "test-tiny-clipseg"]
    assert main([*flags, "--out", str(tmp_path / "a")]) == 0
    frame = runs.list_frames(capsys.readouterr().out.strip().splitlines()[-1])[0]
    _, stored = runs.read_image_info(frame)
    assert stored["mask_model"] == "test-tiny-clipseg" and stored["mask_prompt"] == "the sky"
    made = np.asarray(Image.open(frame).convert("RGB")).astype(int)
    assert np.abs(made - np.asarray(Image.open(init)).astype(int)).mean() > 5  # all repainted
    assert main([*flags[:-1], "no-such-clipseg", "--out", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "error: mask_model: CLIPSeg model: unknown model 'no-such-clipseg'")
    assert not (tmp_path / "b").exists()
