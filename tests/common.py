"""Small helpers shared by the test files."""

from __future__ import annotations

import importlib.util
import io
import socket
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from helpers.runs import list_frames

if TYPE_CHECKING:  # numpy, torch and diffusers load lazily: test_widgets.py runs without them
    import numpy as np

# The tiny models' command lines (no --out, no --quiet).
TINY_VQGAN_CLI = ["vqgan-clip", "--vqgan", "test-tiny-vqgan", "--clip", "test-tiny-clip",
                  "--prompt", "desert", "--iterations", "2", "--size", "64", "64", "--cutn", "2",
                  "--device", "cpu"]
TINY_SD_CLI = ["diffusion", "--model", "test-tiny-sd", "--prompt", "desert", "--steps", "2",
               "--size", "64", "64", "--device", "cpu"]


def quiet(_message: str) -> None:
    """A log callable that drops messages."""


def pixels(path) -> np.ndarray:
    """An image file as an int RGB array."""
    import numpy as np

    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def first_frame(run_dir) -> np.ndarray:
    """The first frame of a run as an int RGB array."""
    return pixels(list_frames(run_dir)[0])


def all_frames(run_dir) -> list[np.ndarray]:
    """Every frame of a run, in order, as int RGB arrays."""
    return [pixels(p) for p in list_frames(run_dir)]


def frames_with_steps(run_dir) -> list[tuple[str, np.ndarray]]:
    """(the infotext's Steps, pixels as stored) of every frame of a run, in order."""
    import numpy as np

    from helpers.metadata.infotext import parse_infotext
    from helpers.runs import read_image_info

    return [(parse_infotext(read_image_info(frame)[0])["Steps"], np.asarray(Image.open(frame)))
            for frame in list_frames(run_dir)]


def frames_by_step(run_dir) -> dict[str, np.ndarray]:
    """The frames of a run by their infotext's Steps (pixels as stored)."""
    return dict(frames_with_steps(run_dir))


def png_bytes(size=(6, 4), color=(200, 30, 90), mode="RGB") -> bytes:
    """A solid PNG file's bytes."""
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_wav(path, seconds: float = 3.0, rate: int = 8000):
    """A mono 16-bit WAV tone of `seconds` at `path`; returns `path`."""
    import wave

    import numpy as np

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        tone = (np.sin(np.arange(int(rate * seconds)) * 0.3) * 8000).astype("<i2")
        w.writeframes(tone.tobytes())
    return path


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_tiny_sd(folder):
    """The tiny SD pipeline from its folder: no safety checker, no progress bar."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def huge_png(path, width: int = 10_000, height: int = 10_000, text: dict | None = None):
    """A 1-bit black PNG of a size no one should decode (100 megapixels by default), written
    chunk by chunk from compressed zeros: a few kB on disk, no pixels in memory."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte, then the row's bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    texts = b"".join(chunk(b"tEXt", k.encode("latin-1") + b"\x00" + v.encode("latin-1"))
                     for k, v in (text or {}).items())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + texts
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def _spandrel_imports() -> bool:
    try:
        import spandrel  # noqa: F401
    except ImportError:
        return False
    return True


HAS_SPANDREL = importlib.util.find_spec("spandrel") is not None and _spandrel_imports()
needs_spandrel = pytest.mark.skipif(
    not HAS_SPANDREL, reason="spandrel cannot import here (it needs torchvision matching torch)")


def spandrel_direct(path, image) -> np.ndarray:
    """spandrel's own loader and model call on a PIL picture, as 8-bit pixels."""
    import numpy as np
    import torch
    from spandrel import ModelLoader

    model = ModelLoader().load_from_file(path).eval()
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = model(x)[0].clamp(0, 1)
    return (y * 255).round().byte().permute(1, 2, 0).numpy()
