"""SwinIR upscalers: the tiny SwinIR saved as the real-world SwinIR release and read back by
spandrel as a 4x SwinIR, our upscale equal to spandrel's model called directly (SwinIR pads
to its window size itself), tiling, and the catalogue's SwinIR and 4x-UltraSharp entries.
Tests that run spandrel skip where it cannot import (it imports torchvision)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from common import needs_spandrel, spandrel_direct
from test_upscale import _picture, _seams

from helpers.catalog import get_model
from helpers.diffusion.tools import upscale
from helpers.diffusion.tools.upscale import upscale_image

WINDOW = 8  # the tiny SwinIR's attention window, as the real-world SwinIR-L's


@pytest.fixture(scope="module")
def tiny(session_cache) -> Path:
    from helpers.download import fetch

    return fetch("test-tiny-swinir", cache=session_cache, progress=False)


def _load(path: Path):
    from helpers.diffusion.tools.upscalers import load_upscaler

    return load_upscaler(str(path), "cpu")


@needs_spandrel
def test_tiny_swinir_is_saved_as_the_real_world_release_and_spandrel_reads_a_4x_swinir(tiny):
    state = torch.load(tiny, weights_only=True)["params_ema"]  # as SwinIR's GAN releases
    assert {"conv_first.weight", "layers.1.residual_group.blocks.1.attn_mask",
            "layers.0.residual_group.blocks.0.attn.relative_position_bias_table",
            "conv_before_upsample.0.weight", "conv_up1.weight", "conv_up2.weight",
            "conv_hr.weight", "conv_last.weight"} <= state.keys()
    upscaler = _load(tiny)
    model = upscaler.model
    assert model.architecture.id == "SwinIR" and model.scale == upscaler.scale == 4
    assert model.purpose == "SR" and model.input_channels == 3
    assert model.model.window_size == WINDOW and model.model.upsampler == "nearest+conv"


@needs_spandrel
@pytest.mark.parametrize("size", [(90, 70), (37, 23), (12, 9)],
                         ids=["90x70", "off-window", "under-minimum"])
def test_untiled_upscale_is_spandrels_model_called_directly(tiny, size):
    # none of these is a multiple of the window: SwinIR pads (reflect) and crops itself;
    # 12x9 is also under spandrel's 16-pixel minimum for SwinIR, which its call pads to
    image = _picture(*size)
    ours = np.asarray(upscale_image(_load(tiny).model, image, tile=0))
    assert ours.shape == (size[1] * 4, size[0] * 4, 3)
    assert np.array_equal(ours, spandrel_direct(tiny, image))


@needs_spandrel
def test_the_tiny_swinirs_output_is_not_a_flat_grey(tiny):
    # the tiling check below could not fail on a model whose output barely varies
    out = np.asarray(upscale_image(_load(tiny).model, _picture(), tile=0)).astype(int)
    assert out.std() > 15 and out.min() > 0 and out.max() < 255


@needs_spandrel
@pytest.mark.parametrize(("tile", "overlap"), [(40, 32), (48, upscale.OVERLAP)])
def test_tiled_equals_untiled_within_1_255_off_the_seams_and_2_255_on_them(tiny, tile,
                                                                           overlap):
    model = _load(tiny).model
    image = _picture(90, 70)
    whole = np.asarray(upscale_image(model, image, tile=0)).astype(int)
    tiled = np.asarray(upscale_image(model, image, tile=tile, overlap=overlap)).astype(int)
    assert whole.shape == tiled.shape == (70 * 4, 90 * 4, 3)
    on_seam = _seams(70, tile, overlap, 4)[:, None] | _seams(90, tile, overlap, 4)[None, :]
    assert on_seam.any() and (~on_seam).any()
    diff = np.abs(whole - tiled).max(axis=-1)
    assert diff[~on_seam].max() <= 1 and diff[on_seam].max() <= 2


def test_catalogue_lists_swinir_4x_as_the_web_ui_does_with_checksum_and_licence():
    model = get_model("SwinIR 4x")
    (only,) = model.files
    file = "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth"
    assert only.name == file and len(only.sha256) == 64 and only.size == 142_473_939
    first, mirror = only.sources
    assert first.location == f"https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/{file}"
    assert mirror.kind == "hub" and mirror.filename == "SwinIR/SwinIR_4x.pth" and mirror.revision
    assert model.licence.startswith("Apache-2.0") and model.family == "spandrel"


def test_catalogue_lists_4x_ultrasharp_as_non_commercial_with_hub_sources():
    model = get_model("4x-UltraSharp")
    (only,) = model.files
    assert only.name == "4x-UltraSharp.pth" and len(only.sha256) == 64 and only.size
    assert [s.kind for s in only.sources] == ["hub", "hub"]
    assert all(s.filename.endswith("4x-UltraSharp.pth") for s in only.sources)
    assert only.sources[0].location == "Kim2091/UltraSharp"  # the author's own repo first
    assert "CC BY-NC-SA 4.0" in model.licence
    assert "non-commercial" in model.licence.lower() and "non-commercial" in \
        model.description.lower()
    assert model.family == "spandrel" and not model.test


@pytest.mark.parametrize(("asked", "name"), [("swinir 4x", "SwinIR 4x"),
                                             ("4x-ultrasharp", "4x-UltraSharp"),
                                             ("4x-UltraSharp", "4x-UltraSharp")])
def test_upscaler_names_find_the_new_entries_in_any_case_or_by_file_stem(asked, name):
    from helpers.diffusion.tools.upscalers import catalogue_upscaler

    assert catalogue_upscaler(asked).name == name
