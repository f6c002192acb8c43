"""Small helpers shared by the test files."""

from __future__ import annotations

import numpy as np
from PIL import Image

from helpers.runs import list_frames


def quiet(_message: str) -> None:
    """A log callable that drops messages."""


def first_frame(run_dir) -> np.ndarray:
    """The first frame of a run as an int RGB array."""
    return np.asarray(Image.open(list_frames(run_dir)[0]).convert("RGB")).astype(int)


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
