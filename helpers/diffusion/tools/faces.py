"""Face restoration, the web UI's "Restore faces": GFPGAN or CodeFormer redraws each face found.

A face restorer is named as an upscaler is (`helpers.diffusion.tools.upscalers`): a catalogue
entry ("GFPGAN", "CodeFormer", any case, or its file's stem), a local `.pth` / `.safetensors`
file, an http(s) URL or a Hub file, fetched once into the cache's `faces/` folder. Its weights
are read without running pickle code and spandrel finds the architecture: GFPGAN and
RestoreFormer are in spandrel itself; CodeFormer is in `spandrel_extra_arches` (chaiNNer's
MIT-licensed package, registered with spandrel's `install()`). CodeFormer's own code and
weights are under the S-Lab License 1.0: non-commercial use only.

The face detector is OpenCV's Haar cascade (Viola & Jones, CVPR 2001),
`haarcascade_frontalface_default.xml`, shipped inside opencv-python 4.x (Intel's licence,
BSD-style; nothing downloaded). OpenCV is optional: Colab preinstalls it, and OpenCV 5 no longer
ships the cascades, so face restoration needs OpenCV 4. The web UI detects with facexlib's
RetinaFace and aligns each face on five landmarks; facexlib is not used here (it pulls numba and
filterpy and downloads its weights). Instead each face is a square crop around its Haar box,
enlarged so that the face fills it about as an FFHQ-aligned face fills GFPGAN's 512x512 input
(not rotated), restored, resized back and pasted with a feathered edge; the result is blended
with the original by `visibility` (the web UI's GFPGAN / CodeFormer visibility).

GFPGAN runs with its stored noise (the web UI draws fresh noise on every call), so a face
restored twice comes out the same.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpers.reporting import Log, no_log

FIELD = "restore_faces"
FACE_SIZE = 512  # the side of the square face GFPGAN, CodeFormer and RestoreFormer work on
MIN_FACE = 32  # pixels: smaller detected faces are left alone
CASCADE = "haarcascade_frontalface_default.xml"
# A Haar box spans brows to mouth; its eyes sit ~0.47 box widths apart, ~0.38 box heights down.
# FFHQ's 512 template puts the eyes 126 px apart at y = 240, so the crop is ~1.9 boxes wide and
# centred slightly above the box's centre.
CROP_SCALE = 1.9
CROP_RAISE = 0.06  # box heights the crop's centre sits above the box's centre
FEATHER = 0.1  # fraction of the crop's side over which the pasted face fades in
ACTIVATION_BYTES = 1 << 30  # fp32 activations of one 512x512 face pass (~0.75 GB measured)
FACE_ARCHS = "GFPGAN, CodeFormer, RestoreFormer"
CODEFORMER_NOTICE = ("CodeFormer: S-Lab License 1.0, non-commercial use only "
                     "(https://github.com/sczhou/CodeFormer/blob/master/LICENSE)")

Box = tuple[int, int, int, int]  # x, y, width, height


@dataclass(frozen=True)
class FaceRestorer:
    """A face restoration model ready to run on 512x512 faces."""

    name: str  # as the catalogue spells it, else as the user gave it
    architecture: str  # spandrel's id: "GFPGAN", "CodeFormer", "RestoreFormer"
    model: Any  # spandrel's ImageModelDescriptor (any callable on [-1, 1] batches for others)
    size: int = FACE_SIZE


def catalogue_face_restorer(name: str) -> Any:
    """The catalogue face restorer called `name` (any case, or its file's stem), or None."""
    from helpers.catalog import find_named

    return find_named("face", name)


def _known() -> str:
    from helpers.catalog import list_models

    return "one of " + ", ".join(m.name for m in list_models("face") if not m.test)


def face_restorer_file(name: str, cache: str | os.PathLike | None = None, log: Log = no_log,
                       progress: bool = False) -> Path:
    """The weights file of a face restorer: a catalogue entry fetched into the cache, a local
    file, or a URL / Hub file fetched once into `<cache>/faces/`."""
    from helpers.diffusion.tools.upscalers import weights_file

    return weights_file(name, "face", FIELD, _known(), cache, log, progress)


def require_face_libraries() -> None:
    """`ValueError` naming the setting when spandrel or OpenCV's face detector is missing."""
    try:
        import spandrel  # noqa: F401
    except ImportError as e:
        raise ValueError(f"{FIELD}: face restoration needs spandrel and torchvision matching "
                         f"torch (pip install spandrel spandrel_extra_arches torchvision); {e}"
                         ) from None
    require_detector()


def require_detector() -> None:
    """`ValueError` naming the setting when OpenCV (4, with its Haar cascades) is missing."""
    try:
        import cv2
    except ImportError:
        raise ValueError(f"{FIELD}: a face model without a detector: faces are found with "
                         "OpenCV (pip install 'opencv-python-headless<5'; Colab has it)") from None
    if not hasattr(cv2, "CascadeClassifier"):
        raise ValueError(f"{FIELD}: a face model without a detector: OpenCV "
                         f"{getattr(cv2, '__version__', '?')} has no Haar cascades (OpenCV 5 "
                         "dropped them); pip install 'opencv-python-headless<5'")


def _install_extra_arches() -> bool:
    """Register spandrel_extra_arches (CodeFormer) with spandrel once; False when missing."""
    try:
        import spandrel_extra_arches
    except ImportError:
        return False
    spandrel_extra_arches.install(ignore_duplicates=True)
    return True


def face_model(state: dict, path: str | os.PathLike) -> Any:
    """spandrel's descriptor of face restoration weights; `ValueError` naming the setting for
    weights spandrel does not know or a model made for something else."""
    from spandrel import ModelLoader, UnsupportedModelError

    extra = _install_extra_arches()
    try:
        descriptor = ModelLoader().load_from_state_dict(state)
    except UnsupportedModelError:
        hint = "" if extra else " (CodeFormer needs pip install spandrel_extra_arches)"
        raise ValueError(f"{FIELD}: {path} is not a face restoration model spandrel knows "
                         f"({FACE_ARCHS}){hint}") from None
    except (RuntimeError, KeyError, IndexError, ValueError, AssertionError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"{FIELD}: {path} holds weights that do not fit the architecture "
                         f"spandrel detects in them ({first})") from None
    if descriptor.purpose != "FaceSR":
        raise ValueError(f"{FIELD}: {path} is a {descriptor.architecture.name} model for "
                         f"{descriptor.purpose}, not a face restorer ({FACE_ARCHS})")
    return descriptor.eval()


def load_face_restorer(name: str, device: Any = "cpu", cache: str | os.PathLike | None = None,
                       log: Log = no_log, progress: bool = False) -> FaceRestorer:
    """The face restorer `name` loaded onto `device` (a name: "auto" picks one), float32."""
    from helpers.diffusion.tools.upscalers import read_weights

    if not name.strip():
        raise ValueError(f"{FIELD}: empty; give {_known()}, a file, a URL or a Hub file")
    require_face_libraries()
    path = face_restorer_file(name, cache, log, progress)
    descriptor = face_model(read_weights(path, field=FIELD), path)
    import torch

    from helpers.device import pick_device

    device = pick_device(device, log) if isinstance(device, str) else torch.device(device)
    descriptor = descriptor.to(device)
    architecture = descriptor.architecture.id
    if architecture == "CodeFormer":
        log(CODEFORMER_NOTICE)
    model = catalogue_face_restorer(name)
    return FaceRestorer(model.name if model else name, architecture, descriptor)


def face_pass_bytes(restorer: FaceRestorer) -> int:
    """Device memory one face pass needs: the weights plus 512x512 activations (estimate)."""
    params = getattr(getattr(restorer.model, "model", None), "parameters", None)
    weights = sum(p.numel() * p.element_size() for p in params()) if params else 0
    return weights + ACTIVATION_BYTES * (restorer.size // FACE_SIZE) ** 2


@functools.lru_cache(maxsize=1)
def _cascade() -> Any:
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
    if cascade.empty():
        raise ValueError(f"{FIELD}: OpenCV cannot read its face detector {CASCADE}")
    return cascade


def detect_faces(image: Any, min_size: int = MIN_FACE) -> list[Box]:
    """The faces OpenCV's Haar cascade finds in a PIL image, (x, y, width, height), largest
    first; faces under `min_size` pixels are ignored."""
    require_detector()
    gray = np.asarray(image.convert("L"))
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                        minSize=(min_size, min_size))
    boxes = [(int(x), int(y), int(w), int(h)) for x, y, w, h in found]
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def face_square(box: Box) -> tuple[int, int, int]:
    """The square crop (left, top, side) restored for a face box; it may cross the image edge."""
    x, y, w, h = box
    side = max(8, round(max(w, h) * CROP_SCALE))
    centre_x, centre_y = x + w / 2, y + h / 2 - CROP_RAISE * h
    return round(centre_x - side / 2), round(centre_y - side / 2), side


def feather_mask(side: int) -> np.ndarray:
    """A (side, side) paste mask: 1 in the middle, easing to 0 at the edge pixels."""
    ramp = max(1, round(side * FEATHER))
    i = np.arange(side)
    edge = np.clip(np.minimum(i, side - 1 - i) / ramp, 0.0, 1.0)
    edge = edge * edge * (3 - 2 * edge)  # smoothstep: no visible step where the fade ends
    return np.outer(edge, edge).astype(np.float32)


def _crop(pixels: np.ndarray, left: int, top: int, side: int) -> np.ndarray:
    """The square of `pixels` at (left, top), its outside filled with the nearest edge."""
    h, w = pixels.shape[:2]
    inside = pixels[max(0, top):max(0, top + side), max(0, left):max(0, left + side)]
    pad = ((max(0, -top), max(0, top + side - h)), (max(0, -left), max(0, left + side - w)),
           (0, 0))
    return np.pad(inside, pad, mode="edge")


def _forward(restorer: FaceRestorer, batch: Any, weight: float) -> Any:
    model = restorer.model
    if restorer.architecture == "CodeFormer":
        return model.model(batch, weight=weight)[0]
    if restorer.architecture == "GFPGAN":  # the stored noise, so the result is reproducible
        return model.model(batch, return_rgb=False, randomize_noise=False)[0]
    return model(batch)


def restore_crop(restorer: FaceRestorer, face: Any, codeformer_weight: float = 0.5) -> Any:
    """One square face (a PIL image) restored at the model's size, as a PIL image."""
    import torch
    from PIL import Image

    size = restorer.size
    face = face.convert("RGB").resize((size, size), Image.LANCZOS)
    batch = torch.from_numpy(np.asarray(face).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    model = restorer.model
    batch = batch.to(getattr(model, "device", "cpu"), getattr(model, "dtype", torch.float32))
    with torch.inference_mode():
        out = _forward(restorer, batch, codeformer_weight)
    out = ((out[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0)
    return Image.fromarray(out.cpu().numpy())


def _paste_face(canvas: np.ndarray, pixels: np.ndarray, restorer: FaceRestorer, box: Box,
                weight: float) -> None:
    """Restore the face in `box` (cropped from `pixels`) and blend it into `canvas`."""
    from PIL import Image

    left, top, side = face_square(box)
    crop = Image.fromarray(_crop(pixels, left, top, side))
    face = restore_crop(restorer, crop, weight).resize((side, side), Image.LANCZOS)
    face, mask = np.asarray(face, np.float32), feather_mask(side)[..., None]
    h, w = canvas.shape[:2]
    rows = slice(max(0, top), min(h, top + side))
    cols = slice(max(0, left), min(w, left + side))
    inner = (slice(rows.start - top, rows.stop - top), slice(cols.start - left, cols.stop - left))
    canvas[rows, cols] = canvas[rows, cols] * (1 - mask[inner]) + face[inner] * mask[inner]


def check_weights(visibility: float, codeformer_weight: float) -> None:
    """`ValueError` naming `face_visibility` or `codeformer_weight` outside 0 to 1."""
    if not 0 <= visibility <= 1:
        raise ValueError(f"face_visibility: {visibility!r} is outside 0..1")
    if not 0 <= codeformer_weight <= 1:
        raise ValueError(f"codeformer_weight: {codeformer_weight!r} is outside 0..1")


def restore_faces(restorer: FaceRestorer, image: Any, visibility: float = 1.0,
                  codeformer_weight: float = 0.5, boxes: Sequence[Box] | None = None) -> Any:
    """The PIL image with each face restored, blended with the original by `visibility`
    (original * (1 - v) + restored * v); `boxes` from `detect_faces` (None: detect here).
    No face: the image unchanged."""
    from PIL import Image

    check_weights(visibility, codeformer_weight)
    boxes = detect_faces(image) if boxes is None else list(boxes)
    if not boxes or visibility == 0:
        return image.copy()
    pixels = np.asarray(image.convert("RGB"))
    canvas = pixels.astype(np.float32)
    for box in boxes:
        _paste_face(canvas, pixels, restorer, box, codeformer_weight)
    mixed = pixels * np.float32(1 - visibility) + canvas * np.float32(visibility)
    out = Image.fromarray(np.clip(np.rint(mixed), 0, 255).astype(np.uint8))
    if "A" in image.getbands():
        out.putalpha(image.getchannel("A"))
    return out


__all__ = [
    "FIELD",
    "Box",
    "FaceRestorer",
    "catalogue_face_restorer",
    "check_weights",
    "detect_faces",
    "face_model",
    "face_pass_bytes",
    "face_restorer_file",
    "face_square",
    "feather_mask",
    "load_face_restorer",
    "require_detector",
    "require_face_libraries",
    "restore_crop",
    "restore_faces",
]
