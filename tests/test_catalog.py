"""The model catalogue: complete entries, valid sources and hashes, helpful lookups."""

import re
import urllib.parse

import pytest

from helpers.catalog import HTTP_ONLY, MODELS, Model, ModelFile, Source, get_model, list_models

VQGAN_NAMES = ("vqgan_imagenet_f16_1024", "vqgan_imagenet_f16_16384", "vqgan_gumbel_f8_8192",
               "wikiart_1024", "wikiart_16384", "coco", "faceshq", "sflckr")


@pytest.mark.parametrize("name", VQGAN_NAMES)
def test_every_classic_vqgan_has_a_config_and_a_checkpoint_with_sources_and_a_licence(name):
    model = get_model(name)
    assert model.kind == "vqgan"
    assert model.licence.strip()
    suffixes = sorted(f.name.rsplit(".", 1)[-1] for f in model.files)
    assert suffixes == ["ckpt", "yaml"]
    for file in model.files:
        assert len(file.sources) >= 1, f"{name}/{file.name} has no source"


def test_model_names_are_unique():
    names = [m.name for m in MODELS]
    assert len(names) == len(set(names))


def test_file_names_are_unique_within_each_model():
    for model in MODELS:
        names = [f.name for f in model.files]
        assert len(names) == len(set(names)), model.name


def test_sha256_values_where_present_are_64_lowercase_hex_chars():
    hashes = [f.sha256 for m in MODELS for f in m.files if f.sha256 is not None]
    assert hashes, "the catalogue states no sha256 at all"
    for sha in hashes:
        assert re.fullmatch(r"[0-9a-f]{64}", sha), sha


def test_known_sizes_are_positive_and_a_hashed_file_has_its_size():
    for model in MODELS:
        for file in model.files:
            assert file.size is None or file.size > 0
            if file.sha256 is not None:
                assert file.size is not None, f"{model.name}/{file.name}"


def test_sources_are_well_formed():
    for model in MODELS:
        for file in model.files:
            for source in file.sources:
                if source.kind == "url":
                    assert re.match(r"https?://[^/\s]+/\S*$", source.location), source
                elif source.kind == "gdrive":
                    assert re.fullmatch(r"[A-Za-z0-9_-]{25,}", source.location), source
                else:
                    assert source.filename and "/" in source.location, source


def _url_sources():
    """(model/file, its sources in order) for every catalogue file."""
    return [(f"{m.name}/{f.name}", f.sources) for m in MODELS for f in m.files]


def test_every_url_is_https_but_for_hosts_listed_with_a_reason():
    plain = set()
    for where, sources in _url_sources():
        for source in (s for s in sources if s.kind == "url"):
            parts = urllib.parse.urlsplit(source.location)
            if parts.scheme == "http":
                assert len(HTTP_ONLY.get(parts.hostname, "").strip()) > 10, \
                    f"{where}: {source.location} is http but its host has no reason in HTTP_ONLY"
                plain.add(parts.hostname)
            else:
                assert parts.scheme == "https", f"{where}: {source.location}"
    assert plain == set(HTTP_ONLY), "HTTP_ONLY lists hosts no source uses"


def test_plain_http_mirrors_are_tried_last():
    for where, sources in _url_sources():
        plain = [s.kind == "url" and s.location.startswith("http://") for s in sources]
        assert plain == sorted(plain), f"{where}: an http mirror comes before another kind"


def test_get_model_suggests_the_close_name_for_a_typo():
    with pytest.raises(ValueError) as info:
        get_model("vqgan_imagenet_f16_1638")
    message = str(info.value)
    assert "'vqgan_imagenet_f16_1638'" in message
    assert "vqgan_imagenet_f16_16384" in message
    assert "python -m helpers models" in message


def test_get_model_without_a_close_name_still_says_how_to_list_models():
    with pytest.raises(ValueError, match="python -m helpers models") as info:
        get_model("zzzzzz")
    assert "Did you mean" not in str(info.value)


def test_get_model_returns_the_entry_with_that_name():
    assert get_model("wikiart_16384").name == "wikiart_16384"


def test_test_models_are_flagged_and_say_they_make_noise():
    tests = [m for m in MODELS if m.test]
    from helpers.testing import BUILDERS

    assert sorted(m.name for m in tests) == sorted(BUILDERS)  # each one built by a builder
    assert {"test-tiny-sd", "test-tiny-esrgan", "test-tiny-vqgan"} <= set(BUILDERS)
    for model in tests:
        assert "random" in model.description and "noise" in model.description
        assert not model.files and model.hub_repo is None
    assert not any(m.test for m in MODELS if not m.name.startswith("test-"))


def test_every_entry_carries_its_family():
    families = {"vqgan": {"vq", "gumbel", "transformer"}, "clip": {"clip"},
                "diffusion": {"sd", "sdxl", "ldm", "sd-inpaint", "sdxl-inpaint"},
                "controlnet": {"sd", "sdxl"}, "clipseg": {"clipseg"}, "depth": {"depth"},
                "upscaler": {"spandrel", "sd-x4", "sd-latent-x2"}, "face": {"spandrel"},
                "caption": {"blip"}}
    for model in MODELS:
        assert model.family in families[model.kind], model.name
        assert (model.factor in (8, 16)) == (model.kind == "vqgan"), model.name
    assert get_model("vqgan_gumbel_f8_8192").factor == 8


def test_clip_models_are_hub_repos_with_configs_and_weight_choices():
    clips = [m for m in list_models("clip") if not m.test]
    names = {m.name for m in clips}
    assert {"openai/clip-vit-base-patch32", "openai/clip-vit-large-patch14",
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"} <= names
    for model in clips:
        assert model.hub_repo == model.name
        assert "config.json" in model.allow_patterns
        assert model.weights[0].endswith(".safetensors")
        assert model.size and model.size > 100_000_000


def test_list_models_filters_by_kind_and_rejects_an_unknown_kind():
    assert {m.kind for m in list_models("vqgan")} == {"vqgan"}
    assert len(list_models()) == len(MODELS)
    with pytest.raises(ValueError, match="'gan'"):
        list_models("gan")


def test_size_sums_exact_file_sizes_or_falls_back_to_the_approximate_size():
    src = (Source("url", "https://example.org/f"),)
    exact = Model("a", "vqgan", "d", "l", (ModelFile("x", src, 10), ModelFile("y", src, 5)),
                  approx_size=999)
    partial = Model("b", "vqgan", "d", "l", (ModelFile("x", src, 10), ModelFile("y", src)),
                    approx_size=999)
    assert exact.size == 15
    assert partial.size == 999
    assert get_model("vqgan_imagenet_f16_16384").size == 692 + 980_092_370


def test_source_rejects_an_unknown_kind_naming_it():
    with pytest.raises(ValueError, match="'ftp'"):
        Source("ftp", "ftp://example.org/x")


def test_the_depth_estimators_are_depth_anything_hub_repos_under_apache_2():
    found = {m.name: m for m in list_models("depth") if not m.test}
    assert set(found) == {"depth-anything", "depth-anything-small"}
    assert found["depth-anything"].hub_repo == "LiheYoung/depth-anything-large-hf"
    assert found["depth-anything-small"].hub_repo == "LiheYoung/depth-anything-small-hf"
    for model in found.values():
        assert model.licence.startswith("Apache-2.0") and model.hub_repo in model.licence
        assert {"config.json", "preprocessor_config.json"} <= set(model.allow_patterns)
        assert model.weights[0] == "model.safetensors" and model.size
    assert found["depth-anything-small"].size < found["depth-anything"].size / 10
    assert get_model("test-tiny-depth").kind == "depth"
