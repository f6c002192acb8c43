"""helpers.testing: tiny offline models load back through the real loaders, deterministically."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import testing
from helpers.testing import MARKER, build_test_model

NAMES = ("test-tiny-vqgan", "test-tiny-clip", "test-tiny-sd", "test-tiny-sdxl", "test-tiny-ldm")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor a built model saved (.ckpt state dict or .safetensors files)."""
    from safetensors.torch import load_file

    if path.suffix == ".ckpt":
        return torch.load(path, weights_only=True)["state_dict"]
    tensors = {}
    for file in sorted(path.rglob("*.safetensors")):
        tensors.update({f"{file.relative_to(path)}:{k}": v for k, v in load_file(file).items()})
    return tensors


def test_tiny_vqgan_loads_through_load_vqgan(tiny_models):
    from helpers.vqgan_clip.vqgan import load_vqgan

    model = load_vqgan(tiny_models["test-tiny-vqgan"])
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        z = model.encode(x)
        image = model.decode(model.quantize(z))
    assert z.shape == (1, model.e_dim, 64 // model.factor, 64 // model.factor)
    assert image.shape == x.shape
    assert model.codebook.shape == (model.n_embed, model.e_dim)
    assert model.indices(z).unique().numel() > 1  # the random codebook is not degenerate


def test_tiny_vqgan_is_a_taming_checkpoint_pair(tiny_models):
    ckpt = tiny_models["test-tiny-vqgan"]
    assert ckpt.suffix == ".ckpt" and ckpt.with_suffix(".yaml").is_file()
    keys = _weights(ckpt).keys()
    assert "encoder.down.0.block.0.conv1.weight" in keys
    assert "decoder.up.0.block.0.conv1.weight" in keys
    assert "quantize.embedding.weight" in keys


def test_tiny_clip_loads_with_tokenizer_and_processor(tiny_models):
    from PIL import Image
    from transformers import AutoTokenizer, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = tiny_models["test-tiny-clip"]
    model = CLIPModel.from_pretrained(folder)
    for tokenizer in (CLIPTokenizer.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)):
        ids = tokenizer(["a red fox", "Ünïcode ok?"], padding="max_length", max_length=77,
                        truncation=True, return_tensors="pt").input_ids
        assert ids.shape == (2, 77)
        assert ids[0, 0] == tokenizer.bos_token_id and ids[0, -1] == tokenizer.pad_token_id
        inner = tokenizer("Ünïcode ok?").input_ids[1:-1]  # every byte has a symbol: no unknowns
        assert inner and not set(inner) & set(tokenizer.all_special_ids)
    processor = CLIPProcessor.from_pretrained(folder)
    inputs = processor(text=["a red fox"], images=Image.new("RGB", (50, 40)),
                       padding="max_length", return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    assert out.text_embeds.shape == (1, testing.PROJECTION_DIM)
    assert out.image_embeds.shape == (1, testing.PROJECTION_DIM)


def test_tiny_clip_tokenizer_round_trips_text(tiny_models):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny_models["test-tiny-clip"])
    ids = tokenizer("A Desert, at Dawn!").input_ids
    text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    assert text == "a desert , at dawn !"


@pytest.mark.parametrize("size", [64, 32])
def test_tiny_sd_generates_an_image_of_the_asked_size(tiny_models, size):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_models["test-tiny-sd"])
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a cat", num_inference_steps=2, height=size, width=size,
                 generator=torch.Generator().manual_seed(0), output_type="np").images
    assert image.shape == (1, size, size, 3)
    assert pipe.vae_scale_factor == 8  # like the real Stable Diffusion


@pytest.mark.parametrize("builder", [testing.tiny_vqgan, testing.tiny_clip, testing.tiny_sd,
                                     testing.tiny_sdxl, testing.tiny_ldm,
                                     testing.tiny_sdxl_inpaint, testing.tiny_depth])
def test_same_seed_gives_identical_weights(tmp_path, builder):
    first = _weights(builder(tmp_path / "a", seed=7))
    second = _weights(builder(tmp_path / "b", seed=7))
    other = _weights(builder(tmp_path / "c", seed=8))
    assert first.keys() == second.keys() and first
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_builders_leave_the_callers_random_state_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    testing.tiny_vqgan(tmp_path)
    torch.testing.assert_close(torch.rand(3), expected)


def test_finished_build_is_returned_without_rebuilding(tiny_models, monkeypatch):
    def fail(folder):
        raise AssertionError("rebuilt a finished model")

    for name in NAMES:
        monkeypatch.setitem(testing.BUILDERS, name, fail)
        folder = tiny_models[name] if tiny_models[name].is_dir() else tiny_models[name].parent
        assert (folder / MARKER).is_file()
        assert build_test_model(name, folder) == tiny_models[name]


def test_interrupted_build_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    def interrupted(folder):
        testing.tiny_vqgan(folder)
        raise KeyboardInterrupt

    monkeypatch.setitem(testing.BUILDERS, "test-tiny-vqgan", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_test_model("test-tiny-vqgan", tmp_path / "vqgan")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    ckpt = build_test_model("test-tiny-vqgan", tmp_path / "vqgan")
    assert ckpt == tmp_path / "vqgan" / "model.ckpt" and ckpt.is_file()


def test_unfinished_leftover_folder_is_replaced(tmp_path):
    leftover = tmp_path / "clip"
    leftover.mkdir()
    (leftover / "config.json").write_text("{half written")
    folder = build_test_model("test-tiny-clip", leftover)
    assert folder == leftover and (folder / MARKER).is_file()
    assert (folder / "config.json").read_text().startswith("{\n")


def test_unknown_test_model_name_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="test-tiny-unicorn"):
        build_test_model("test-tiny-unicorn", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_a_killed_build_leaves_no_temporary_folder_after_the_next_build(tmp_path):
    dead = tmp_path / ".clip.999999999.abcd.tmp"  # no process has this id
    dead.mkdir()
    (dead / "half.bin").write_bytes(b"x")
    build_test_model("test-tiny-clip", tmp_path / "clip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]


def test_docstrings_warn_these_are_random_models():
    for obj in (testing, testing.tiny_vqgan, testing.tiny_clip, testing.tiny_sd,
                testing.tiny_sdxl, testing.tiny_ldm, testing.tiny_sdxl_inpaint,
                testing.tiny_depth):
        assert "random" in obj.__doc__.lower() and "noise, not art" in obj.__doc__


def test_tiny_sdxl_inpaint_loads_as_diffusers_sdxl_inpaint_pipeline(tmp_path):
    from diffusers import StableDiffusionXLInpaintPipeline
    from PIL import Image

    pipe = StableDiffusionXLInpaintPipeline.from_pretrained(testing.tiny_sdxl_inpaint(tmp_path))
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.config.in_channels == 9 and pipe.vae_scale_factor == 8
    assert pipe.config.requires_aesthetics_score is False  # as SDXL inpainting 0.1
    image = pipe("a cat", image=Image.new("RGB", (64, 64), "red"),
                 mask_image=Image.new("L", (64, 64), 255), num_inference_steps=2, height=64,
                 width=64, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert image.shape == (1, 64, 64, 3)


def test_tiny_depth_loads_through_transformers_auto_classes(tmp_path):
    from PIL import Image
    from transformers import AutoModelForDepthEstimation

    from helpers.diffusion.tools.control.annotators import load_depth_estimator

    folder = testing.tiny_depth(tmp_path)
    model = AutoModelForDepthEstimation.from_pretrained(folder)
    assert type(model).__name__ == "DepthAnythingForDepthEstimation"
    model, processor = load_depth_estimator(str(folder))
    inputs = processor(images=Image.new("RGB", (80, 60), "grey"), return_tensors="pt")
    assert inputs.pixel_values.shape == (1, 3, 56, 70)  # short side 56, multiples of 14
    with torch.no_grad():
        depth = model(**inputs).predicted_depth
    assert depth.shape == (1, 56, 70) and depth.min() > 0  # positive, past the final ReLU
