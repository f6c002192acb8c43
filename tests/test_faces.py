"""Face restoration: OpenCV's Haar detector on a real face, crops pasted back with a feathered
edge and blended by visibility, GFPGAN and CodeFormer equal to spandrel's models run directly
on the same crop, and bad files or names as one error naming `restore_faces`. Tests that need
spandrel or OpenCV 4 (its Haar cascades) skip where they cannot import."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from common import needs_spandrel
from PIL import Image

from helpers.catalog import list_models
from helpers.diffusion.tools import faces
from helpers.diffusion.tools.faces import (
    FaceRestorer,
    detect_faces,
    face_square,
    feather_mask,
    load_face_restorer,
    restore_faces,
)

LANCZOS = Image.Resampling.LANCZOS
ASTRONAUT = Path(__file__).parent / "data" / "astronaut.png"


def _has_haar() -> bool:
    if importlib.util.find_spec("cv2") is None:
        return False
    import cv2

    return hasattr(cv2, "CascadeClassifier")


needs_detector = pytest.mark.skipif(not _has_haar(), reason="no OpenCV 4 (Haar cascades) here")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.open(ASTRONAUT).convert("RGB")


@pytest.fixture(scope="module")
def gfpgan(session_cache) -> FaceRestorer:
    return load_face_restorer("test-tiny-gfpgan", "cpu", cache=session_cache)


@pytest.fixture(scope="module")
def gfpgan_restored(gfpgan, astronaut) -> Image.Image:
    return restore_faces(gfpgan, astronaut)


def _negative() -> FaceRestorer:
    """A stand-in restorer that negates the face (cheap, and visible wherever it is pasted)."""
    return FaceRestorer("negative", "test", lambda batch: -batch)


def _noise(size: int = 128, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _spandrel_face(descriptor, crop: Image.Image, side: int, **kwargs) -> np.ndarray:
    """spandrel's network called directly on the crop at 512, back at the crop's size."""
    import torch

    x = torch.from_numpy(np.asarray(crop.resize((512, 512), LANCZOS)).copy())
    x = x.permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.inference_mode():
        y = descriptor.model(x, **kwargs)[0]
    y = ((y[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return np.asarray(Image.fromarray(y).resize((side, side), LANCZOS), dtype=np.int16)


def _inner(side: int) -> slice:
    """Where the feathered mask is 1."""
    ramp = max(1, round(side * faces.FEATHER))
    return slice(ramp, side - ramp)


# --- no spandrel needed ---------------------------------------------------------------------


def test_catalogue_lists_gfpgan_and_codeformer_with_checksums_and_licences():
    found = {m.name: m for m in list_models("face") if not m.test}
    assert sorted(found) == ["CodeFormer", "GFPGAN"]
    gfpgan, codeformer = found["GFPGAN"].files[0], found["CodeFormer"].files[0]
    assert gfpgan.name == "GFPGANv1.4.pth" and gfpgan.size == 348_632_874
    assert codeformer.name == "codeformer.pth" and codeformer.size == 376_637_898
    assert all(len(f.sha256) == 64 for f in (gfpgan, codeformer))
    assert "Apache-2.0" in found["GFPGAN"].licence
    assert "non-commercial" in found["CodeFormer"].licence.casefold()
    assert faces.catalogue_face_restorer("gfpganv1.4") is found["GFPGAN"]
    assert faces.catalogue_face_restorer("codeformer") is found["CodeFormer"]


def test_feather_mask_is_one_in_the_middle_and_zero_at_the_edge():
    mask = feather_mask(101)
    inner = _inner(101)
    assert mask.shape == (101, 101) and mask.min() == 0 and mask.max() == 1
    assert (mask[inner, inner] == 1).all()
    assert (mask[0] == 0).all() and (mask[-1] == 0).all()
    assert (mask[:, 0] == 0).all() and (mask[:, -1] == 0).all()
    row = mask[50, : inner.start + 1]
    assert (np.diff(row) > 0).all()  # rises steadily from the edge to the middle


def test_without_spandrel_or_a_detector_loading_is_one_error_naming_the_setting(monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", None)
    with pytest.raises(ValueError, match=r"^restore_faces: .*pip install spandrel"):
        load_face_restorer("GFPGAN")
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ValueError, match=r"^restore_faces: a face model without a detector"):
        faces.require_detector()
    monkeypatch.setitem(sys.modules, "cv2", types.SimpleNamespace(__version__="5.0.0"))
    with pytest.raises(ValueError, match=r"^restore_faces: .*OpenCV 5.0.0 has no Haar"):
        faces.require_detector()


def test_bad_visibility_or_weight_names_the_setting(astronaut):
    with pytest.raises(ValueError, match=r"^face_visibility: "):
        restore_faces(_negative(), astronaut, visibility=1.5, boxes=[])
    with pytest.raises(ValueError, match=r"^codeformer_weight: "):
        restore_faces(_negative(), astronaut, codeformer_weight=-0.1, boxes=[])


# --- the detector and the paste (a stand-in restorer) ---------------------------------------


@needs_detector
def test_the_astronauts_face_is_found_and_no_face_on_flat_grey_or_noise(astronaut):
    boxes = detect_faces(astronaut)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert 70 < x + w / 2 < 150 and 30 < y + h / 2 < 80 and 40 < w < 80  # her face
    assert detect_faces(Image.new("RGB", (256, 256), (128, 128, 128))) == []
    assert detect_faces(_noise(256)) == []
    assert detect_faces(astronaut, min_size=w + 20) == []  # smaller faces are ignored


@needs_detector
def test_no_face_returns_the_image_unchanged_without_running_the_model():
    def never(batch):
        raise AssertionError("the model ran on an image without faces")

    picture = _noise()
    out = restore_faces(FaceRestorer("never", "test", never), picture)
    assert np.array_equal(_pixels(out), _pixels(picture))


@needs_detector
def test_the_face_is_restored_in_place_and_pixels_far_from_it_are_unchanged(astronaut):
    (box,) = detect_faces(astronaut)
    left, top, side = face_square(box)
    out, before = _pixels(restore_faces(_negative(), astronaut)), _pixels(astronaut)
    outside = np.ones(before.shape[:2], bool)
    outside[max(0, top):top + side, max(0, left):left + side] = False
    assert np.array_equal(out[outside], before[outside])
    inner = _inner(side)
    face = (slice(top + inner.start, top + inner.stop), slice(left + inner.start,
                                                              left + inner.stop))
    assert np.abs(out[face] - (255 - before[face])).mean() < 6  # the negated face, aligned


def test_visibility_0_is_the_original_and_0_5_the_midpoint(astronaut):
    boxes = [(90, 35, 50, 50)]
    full = _pixels(restore_faces(_negative(), astronaut, 1.0, boxes=boxes))
    half = _pixels(restore_faces(_negative(), astronaut, 0.5, boxes=boxes))
    none = _pixels(restore_faces(_negative(), astronaut, 0.0, boxes=boxes))
    before = _pixels(astronaut)
    assert np.array_equal(none, before)
    assert np.abs(half - (before + full) / 2).max() <= 1
    assert np.abs(full - before).max() > 100


def test_a_face_across_the_corner_is_pasted_inside_the_image_and_alpha_is_kept():
    picture = _noise(64).convert("RGBA")
    picture.putalpha(Image.new("L", (64, 64), 77))
    out = restore_faces(_negative(), picture, boxes=[(0, 0, 30, 30)])
    assert out.size == (64, 64) and out.mode == "RGBA"
    assert (np.asarray(out.getchannel("A")) == 77).all()
    changed = np.abs(_pixels(out) - _pixels(picture)).max(axis=2) > 0
    assert changed[:10, :10].all() and not changed[50:, 50:].any()


# --- GFPGAN and CodeFormer through spandrel -------------------------------------------------


@needs_spandrel
@needs_detector
@pytest.mark.slow
def test_gfpgan_restored_face_equals_spandrels_model_on_the_same_crop(gfpgan, astronaut,
                                                                       gfpgan_restored):
    assert gfpgan.architecture == "GFPGAN" and gfpgan.name == "test-tiny-gfpgan"
    (box,) = detect_faces(astronaut)
    left, top, side = face_square(box)
    assert left >= 0 and top >= 0  # the crop lies inside the picture: no edge padding
    crop = astronaut.crop((left, top, left + side, top + side))
    direct = _spandrel_face(gfpgan.model, crop, side, return_rgb=False, randomize_noise=False)
    inner = _inner(side)
    out = _pixels(gfpgan_restored)[top:top + side, left:left + side]
    assert np.abs(out[inner, inner] - direct[inner, inner]).max() <= 1
    assert np.abs(out[inner, inner] - _pixels(crop)[inner, inner]).mean() > 10


@needs_spandrel
@needs_detector
@pytest.mark.slow
def test_codeformer_takes_its_weight_and_equals_spandrels_model(session_cache, astronaut):
    said: list[str] = []
    codeformer = load_face_restorer("TEST-TINY-CODEFORMER", "cpu", session_cache, said.append)
    assert codeformer.architecture == "CodeFormer"
    assert any("non-commercial" in line for line in said)
    (box,) = detect_faces(astronaut)
    left, top, side = face_square(box)
    out = _pixels(restore_faces(codeformer, astronaut, codeformer_weight=0.3, boxes=[box]))
    crop = astronaut.crop((left, top, left + side, top + side))
    direct = _spandrel_face(codeformer.model, crop, side, weight=0.3)
    inner = _inner(side)
    out = out[top:top + side, left:left + side]
    assert np.abs(out[inner, inner] - direct[inner, inner]).max() <= 1


@needs_spandrel
@needs_detector
def test_the_memory_estimate_counts_the_weights_and_one_face(gfpgan):
    weights = sum(p.numel() * 4 for p in gfpgan.model.model.parameters())
    assert faces.face_pass_bytes(gfpgan) == weights + faces.ACTIVATION_BYTES
    assert faces.face_pass_bytes(_negative()) == faces.ACTIVATION_BYTES


# --- bad files and names --------------------------------------------------------------------


@needs_spandrel
@needs_detector
def test_an_upscaler_file_is_one_error_saying_it_is_not_a_face_restorer(session_cache):
    from helpers.download import fetch

    esrgan = fetch("test-tiny-esrgan", cache=session_cache, progress=False)
    with pytest.raises(ValueError, match=r"^restore_faces: .*ESRGAN model for SR, not a face "
                                         r"restorer \(GFPGAN, CodeFormer"):
        load_face_restorer(str(esrgan), "cpu")


@needs_spandrel
@needs_detector
def test_weights_spandrel_does_not_know_are_one_error(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"encoder.layer.0.weight": torch.zeros(4, 4)}, path)
    with pytest.raises(ValueError, match=r"^restore_faces: .*not a face restoration model "
                                         r"spandrel knows"):
        load_face_restorer(str(path), "cpu")


@needs_spandrel
@needs_detector
@pytest.mark.parametrize(("name", "message"), [
    ("", r"^restore_faces: empty; give one of GFPGAN, CodeFormer"),
    ("/no/such/dir/face.pth", r"^restore_faces: file not found: '/no/such/dir/face.pth'"),
    ("NoSuchFace", r"^restore_faces: 'NoSuchFace' is not one of GFPGAN, CodeFormer, "),
], ids=["empty", "missing-file", "unknown-name"])
def test_an_unknown_name_or_missing_file_is_one_error_naming_the_setting(name, message):
    with pytest.raises(ValueError, match=message):
        load_face_restorer(name, "cpu")
