"""Upscaling a picture with a model, tile by tile, and by any scale (the web UI's way).

`upscale_image` runs a spandrel model over overlapping tiles and blends them: across the
overlap on every side that meets another tile, a tile's output counts nothing for the quarter
nearest its edge (where its convolutions saw padding, not the picture), then rises linearly
to full weight as its neighbour's falls; so the result equals the untiled one within 1/255
away from the seams (2/255 on them; a test checks on the tiny ESRGAN).
The tile size comes from the memory planner (`plan_tile`: bytes per output pixel x scale^2,
against free GPU memory on CUDA, RAM on the CPU), unless given. `upscale_by` reaches any
scale: the model's passes (at most three, as the web UI's `Upscaler.upscale`) until the
picture is at least as large, then a Lanczos resize to the asked size.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.diffusion.tools.upscalers import Upscaler, load_upscaler
from helpers.files import atomic_write_bytes
from helpers.reporting import Log, no_log, plural, progress_bar

if TYPE_CHECKING:
    import torch
    from PIL import Image

OVERLAP = 32  # input pixels two neighbouring tiles share (more than the tiny ESRGAN's reach)
TILES = (1024, 768, 512, 384, 256, 192, 128, 96, 64)  # the planner's choices, largest first
# A simple estimate of a tile's peak memory, per input pixel: the low-resolution features and
# their copies (an RRDBNet's dense blocks hold 64 + 4 x 32 channels, a few tensors at once)
# plus, per output pixel (scale^2 of them), the upsampled 64-channel features, at fp32.
INPUT_BYTES = 4096
OUTPUT_BYTES = 1024
ACCUMULATOR_BYTES = 16  # per output pixel: the blended sum (3 x fp32) and its weight, in RAM
MAX_SCALE = 8.0  # the web UI's extras tab allows 1 to 8
POSTPROCESSING = "postprocessing"  # the web UI's PNG text chunk of what its extras tab did


def tile_bytes(tile_pixels: int, scale: int, half: bool) -> float:
    """The planner's estimate of one tile's peak memory (`tile_pixels` input pixels)."""
    return tile_pixels * (INPUT_BYTES + OUTPUT_BYTES * scale**2) * (0.5 if half else 1.0)


def plan_tile(model: Any, size: tuple[int, int], free: float | None = None,
              ram: float | None = None) -> int:
    """The tile side for a `size` (width, height) picture: 0 (untiled) when the whole picture
    fits, else the largest of `TILES` that does; `ValueError` naming `tile` when none does,
    `scale` when the result cannot be held in RAM."""
    from helpers.memory import GB, HEADROOM, available_ram, free_memory

    half = model.dtype.is_floating_point and model.dtype.itemsize == 2
    if free is None:
        free = free_memory(model.device)
    if ram is None:
        ram = free if model.device.type == "cpu" else available_ram()
    width, height = size
    out_bytes = width * height * model.scale**2 * ACCUMULATOR_BYTES
    budget = None if free is None else HEADROOM * free - (
        out_bytes if model.device.type == "cpu" else 0)
    if ram is not None and out_bytes > HEADROOM * ram:
        raise ValueError(f"scale: the {width * model.scale}x{height * model.scale} result "
                         f"needs about {out_bytes / GB:.1f} GB of memory, {ram / GB:.1f} GB "
                         "is free; upscale a smaller picture or by less")
    if budget is None or tile_bytes(width * height, model.scale, half) <= budget:
        return 0
    for tile in TILES:
        if tile < max(width, height) and tile_bytes(tile * tile, model.scale, half) <= budget:
            return tile
    where = "GPU memory" if model.device.type == "cuda" else "memory"
    need = tile_bytes(TILES[-1] ** 2, model.scale, half) / GB
    raise ValueError(f"tile: even {TILES[-1]}-pixel tiles need about {need:.2f} GB of "
                     f"{where}, {max(budget, 0) / GB:.2f} GB is free")


def to_tensor(image: Image.Image, model: Any) -> torch.Tensor:
    """A PIL picture as the (1, C, H, W) tensor in [0, 1] the model takes."""
    import numpy as np
    import torch

    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(model.input_channels)
    if mode is None:
        raise ValueError(f"upscaler: a model with {model.input_channels} input channels "
                         "is not an image upscaler")
    array = np.asarray(image.convert(mode), dtype=np.float32).reshape(
        image.height, image.width, -1) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1)[None]
    return tensor.to(device=model.device, dtype=model.dtype)


def to_image(tensor: torch.Tensor) -> Image.Image:
    """A (1, C, H, W) tensor in [0, 1] as an 8-bit PIL picture (rounded to nearest)."""
    from PIL import Image

    array = (tensor[0].float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu()
    array = array.numpy()
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def upscale_image(model: Any, image: Image.Image, tile: int | None = None,
                  overlap: int = OVERLAP) -> Image.Image:
    """`image` upscaled by a spandrel model at its own scale; `tile` input pixels a side
    (None: planned, 0: the whole picture at once), tiles sharing `overlap` pixels."""
    if hasattr(model, "upscale_picture"):  # a diffusers upscaler (SD x4 / latent x2): whole
        return model.upscale_picture(image)
    import torch

    if tile is None:
        tile = plan_tile(model, image.size)
    with torch.inference_mode():
        x = to_tensor(image, model)
        if tile <= 0 or tile >= max(image.size):
            return to_image(model(x))
        return to_image(_tiled(model, x, tile, overlap))


def _tiled(model: Any, x: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    """The model over overlapping tiles of `x`, blended; padded first as spandrel pads a
    whole picture, so every tile meets the model's size requirements at aligned places."""
    import torch

    req, scale = model.size_requirements, model.scale
    height, width = x.shape[-2:]
    x = _pad(x, *req.get_padding(width, height))
    step = _alignment(model)
    x = _pad(x, -x.shape[-1] % step, -x.shape[-2] % step)
    tile = max(tile // step * step, req.minimum, step)
    overlap = min(-(-overlap // step) * step, tile - step)
    total = torch.zeros((x.shape[1], x.shape[-2] * scale, x.shape[-1] * scale))
    weights = torch.zeros((1, *total.shape[1:]))
    for top, rows in _spans(x.shape[-2], tile, overlap):
        for left, cols in _spans(x.shape[-1], tile, overlap):
            out = model(x[..., top:top + rows, left:left + cols])[0].float().cpu()
            w = _ramp(top, rows, x.shape[-2], overlap, scale)[:, None] * \
                _ramp(left, cols, x.shape[-1], overlap, scale)[None, :]
            where = (slice(None), slice(top * scale, (top + rows) * scale),
                     slice(left * scale, (left + cols) * scale))
            total[where] += out * w
            weights[where] += w
    return (total / weights)[None, :, :height * scale, :width * scale]


def _alignment(model: Any) -> int:
    """Where tiles may start: a multiple of the model's size requirement and of its attention
    window (SwinIR, HAT: windows are anchored at the input's corner, so a tile starting off
    the window grid would attend over other windows than the whole picture does)."""
    import math

    window = getattr(model.model, "window_size", 1)
    window = window if isinstance(window, int) and window > 0 else 1
    return math.lcm(model.size_requirements.multiple_of, window)


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, size) of the tiles along one side: `tile` apart less `overlap`, the last one
    ending at the edge."""
    if length <= tile:
        return [(0, length)]
    starts = [*range(0, length - tile, tile - overlap), length - tile]
    return [(start, tile) for start in starts]


def _ramp(start: int, size: int, length: int, overlap: int, scale: int) -> torch.Tensor:
    """A tile's weights along one side, in output pixels: 1, but across the overlap on each
    side that meets another tile (not the picture's edge): 0 for the quarter nearest the
    tile's edge (where its convolutions saw padding), rising linearly to 1 over the middle
    half; the neighbour's ramp mirrors it, so the weights sum to 1 where both count."""
    import torch

    ramp = torch.ones(size * scale)
    n = overlap * scale
    distance = (torch.arange(n, dtype=torch.float32) + 0.5) / scale  # input pixels from edge
    margin = overlap / 4
    rise = ((distance - margin) / (overlap - 2 * margin)).clamp(0, 1)
    if start > 0:
        ramp[:n] = rise
    if start + size < length:
        ramp[-n:] = torch.minimum(ramp[-n:], rise.flip(0))
    return ramp


def _pad(x: torch.Tensor, pad_w: int, pad_h: int) -> torch.Tensor:
    """Pad right and bottom as spandrel does: reflect as far as it can, then replicate."""
    import torch.nn.functional as F

    if not pad_w and not pad_h:
        return x
    w, h = min(pad_w, x.shape[-1] - 1), min(pad_h, x.shape[-2] - 1)
    x = F.pad(x, (0, w, 0, h), "reflect")
    return F.pad(x, (0, pad_w - w, 0, pad_h - h), "replicate")


def check_scale(scale: float) -> float:
    """The upscale factor, checked: `ValueError` naming `scale` outside 1 to `MAX_SCALE`."""
    if not 1 <= scale <= MAX_SCALE:
        raise ValueError(f"scale: {scale:g} is out of range; upscale by 1 to {MAX_SCALE:g}")
    return scale


def upscale_by(upscaler: Upscaler, image: Image.Image, scale: float,
               tile: int | None = None) -> Image.Image:
    """`image` made `scale` times larger (rounded to whole pixels): a model's passes until
    it is at least that large (at most three), then Lanczos to the size; a PIL upscaler
    resizes at once with its filter."""
    from PIL import Image

    size = (round(image.width * scale), round(image.height * scale))
    if not upscaler.is_model:
        return image.resize(size, Image.Resampling[upscaler.pil_filter])
    for _ in range(3):
        if image.width >= size[0] and image.height >= size[1]:
            break
        image = upscale_image(upscaler.model, image, tile)
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


# --- pictures and runs on disk (the `upscale` command) ---------------------------------------


def upscale_path(source: str | os.PathLike, upscaler: str, scale: float,
                 tile: int | None = None, out: str | os.PathLike | None = None, *,
                 device: str = "auto", cache: str | os.PathLike | None = None,
                 log: Log = no_log, progress: bool = False, restore_faces: str = "",
                 face_visibility: float = 1.0, codeformer_weight: float = 0.5) -> Path:
    """Upscale a picture into a new file beside it (or in `out`), or every frame of a run
    folder into its `upscaled-x<scale>-<upscaler>/` folder (or `out`), one frame at a time,
    skipping frames done before; return the file or folder. With `restore_faces` (a face
    model), faces are restored after the upscale, as the web UI's extras tab does. Bad input
    fails before anything is written, naming the setting."""
    from helpers.files import writable_folder
    from helpers.inputs import read_rgb

    check_scale(scale)
    if restore_faces:
        from helpers.diffusion.tools.faces import check_weights

        check_weights(face_visibility, codeformer_weight)
    if tile is not None and tile < 0:
        raise ValueError(f"tile: {tile} is negative; give 0 (no tiles) or a side in pixels")
    source = Path(source).expanduser()
    frames = _run_frames(source) if source.is_dir() else None
    image = None if frames is not None else read_rgb(source, "image")
    folder = Path(out).expanduser() if out else None
    if folder is not None:
        writable_folder(folder, "out")
    model = load_upscaler(upscaler, device, cache, log, progress)
    post = _Postprocess(model, scale, tile)
    if restore_faces:
        from helpers.diffusion.tools.faces import load_face_restorer

        post.faces = load_face_restorer(restore_faces, model.model.device if model.is_model
                                        else device, cache, log, progress)
        post.weights = (face_visibility, codeformer_weight)
    done = {POSTPROCESSING: post.line()}
    if image is not None:
        result = post(image)
        return _write_new(folder or source.parent, f"{source.stem}-x{scale:g}", result,
                          {**_texts(source), **done})
    dest = folder or source / f"upscaled-x{scale:g}-{_slug(model.name)}"
    todo = [f for f in frames if not (dest / f.name).exists()]
    for frame in todo:  # every frame readable before the first is written
        read_rgb_header(frame)
    log(f"upscaling {plural(len(todo), 'frame')} into {dest}"
        + (f" ({plural(len(frames) - len(todo), 'frame')} done before)" if
           len(todo) < len(frames) else ""))
    with progress_bar(len(frames), "upscale", progress, initial=len(frames) - len(todo)) \
            as bar:
        for frame in todo:
            result = post(read_rgb(frame, "frame"))
            atomic_write_bytes(dest / frame.name, _png(result, {**_texts(frame), **done}))
            bar.update(1)
    return dest


class _Postprocess:
    """The extras tab's steps on one picture: the upscale, then the faces restored."""

    def __init__(self, upscaler: Upscaler, scale: float, tile: int | None):
        self.upscaler, self.scale, self.tile = upscaler, scale, tile
        self.faces: Any = None  # a tools.faces.FaceRestorer
        self.weights = (1.0, 0.5)  # (visibility, CodeFormer weight)

    def __call__(self, image: Image.Image) -> Image.Image:
        image = upscale_by(self.upscaler, image, self.scale, self.tile)
        if self.faces is None:
            return image
        from helpers.diffusion.tools.faces import restore_faces

        return restore_faces(self.faces, image, *self.weights)

    def line(self) -> str:
        """The `postprocessing` chunk's text of these steps."""
        faces = None
        if self.faces is not None:
            faces = (self.faces.architecture, *self.weights)
        return postprocess_line(self.upscaler.name, self.scale, faces)


def postprocess_line(upscaler: str, scale: float,
                     faces: tuple[str, float, float] | None = None) -> str:
    """The web UI's extras infotext: `Postprocess upscale by: 4, Postprocess upscaler:
    R-ESRGAN 4x+`, and with `faces` (architecture, visibility, CodeFormer weight) `GFPGAN
    visibility: 1` or `CodeFormer visibility: 1, CodeFormer weight: 0.5`; stored in the
    picture's `postprocessing` PNG text chunk."""
    from helpers.metadata.infotext import format_infotext

    params: dict[str, str] = {"Postprocess upscale by": f"{scale:g}",
                              "Postprocess upscaler": upscaler}
    if faces is not None:
        architecture, visibility, weight = faces
        codeformer = architecture.casefold() == "codeformer"
        params[f"{'CodeFormer' if codeformer else 'GFPGAN'} visibility"] = f"{visibility:g}"
        if codeformer:
            params["CodeFormer weight"] = f"{weight:g}"
    return format_infotext("", params=params)


def read_postprocess(path: str | os.PathLike) -> dict[str, str]:
    """The `postprocessing` chunk of a picture as `{key: value}` (empty when it has none)."""
    from helpers.metadata.infotext import parse_infotext

    text = _texts(Path(path)).get(POSTPROCESSING, "")
    if not text.strip():
        return {}
    return {k: v for k, v in parse_infotext(text).items()
            if k not in ("Prompt", "Negative prompt")}


def _run_frames(folder: Path) -> list[Path]:
    """A run folder's frames, or a folder's numbered PNGs; `ValueError` when it has none."""
    from helpers.runs import list_frames

    frames = list_frames(folder) or sorted(p for p in folder.glob("*.png")
                                           if p.stem.isdigit())
    if not frames:
        raise ValueError(f"image: {folder} is a folder without frames; give a picture or a "
                         "run folder")
    return frames


def read_rgb_header(path: Path) -> None:
    """Check that `path` is a picture of a size we read (its header only)."""
    from helpers.inputs import check_size, opened

    with opened(path, "frame") as image:
        check_size(image, path, "frame")


def _texts(path: Path) -> dict[str, str]:
    """The picture's text chunks (infotext, settings), carried to its upscaled copy."""
    from helpers.inputs import opened

    with opened(path, "image") as image:
        return {k: v for k, v in image.info.items() if isinstance(k, str) and
                isinstance(v, str)}


def _png(image: Image.Image, texts: dict[str, str]) -> bytes:
    import io

    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def _write_new(folder: Path, stem: str, image: Image.Image, texts: dict[str, str]) -> Path:
    """Write `stem.png` in `folder`, or `stem-2.png`, `stem-3.png`, ... : never over a file."""
    data = _png(image, texts)
    for n in itertools.count(1):
        path = folder / (f"{stem}.png" if n == 1 else f"{stem}-{n}.png")
        if not path.exists():
            return atomic_write_bytes(path, data)
    raise AssertionError("unreachable")


def _slug(name: str) -> str:
    """A folder-name form of an upscaler's name ("R-ESRGAN 4x+" -> "r-esrgan-4x")."""
    return re.sub(r"[^a-z0-9]+", "-", Path(name).stem.lower()).strip("-") or "upscaler"


__all__ = ["MAX_SCALE", "OVERLAP", "POSTPROCESSING", "TILES", "check_scale", "plan_tile",
           "postprocess_line", "read_postprocess", "tile_bytes", "to_image", "to_tensor",
           "upscale_by", "upscale_image", "upscale_path"]
