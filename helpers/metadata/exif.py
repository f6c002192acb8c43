"""The infotext in JPEG and WebP files, as the Stable Diffusion web UI writes and reads it.

The web UI (modules/images.py, 1.9+) saves a JPEG or WebP with its infotext in the EXIF
UserComment (tag 0x9286 of the Exif IFD), encoded by piexif's `UserComment.dump(..., "unicode")`:
the 8 bytes `UNICODE\\0`, then UTF-16 big-endian without a byte-order mark, in a big-endian
("MM") EXIF block. We write the same block (`exif_block`) and let Pillow put it in the file:
Pillow's own EXIF writer would type these tags as BYTE, which piexif cannot read. Reading takes
that and what other tools write: UTF-16 in the EXIF block's byte order or with a byte-order
mark, `ASCII` (read as UTF-8), `JIS`, an undefined prefix, or no prefix at all.

Our settings JSON goes into the EXIF MakerNote (tag 0x927C, the tag EXIF keeps for the
maker's own data), as `Dreamframe\\0` + zlib-compressed UTF-8: viewers do not show it as a
caption (as they would ImageDescription), the web UI does not read it, and `--from-image`
gets the whole settings back from a JPEG or WebP as from a PNG. Both are bounded as in a PNG
(`helpers.metadata.stored`), and reading the MakerNote never
decompresses more than `MAX_NOTE_BYTES`, whatever the file says.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
MAKER_NOTE = 0x927C
EXIF_SUFFIXES = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
NOTE_PREFIX = b"Dreamframe\x00"
MAX_JPEG_EXIF = 65_000  # a JPEG's APP1 segment holds at most 65,533 bytes
MAX_NOTE_BYTES = 1 << 20  # our settings, decompressed: 4 times what we store (as PNG's limit)
_PREFIXES = {b"UNICODE\x00": "utf-16", b"ASCII\x00\x00\x00": "utf-8",
             b"JIS\x00\x00\x00\x00\x00": "shift_jis", b"\x00" * 8: "utf-8"}


def encode_user_comment(text: str, big_endian: bool = True) -> bytes:
    """A UserComment value as the web UI writes it: `UNICODE\\0` and UTF-16 (big-endian)."""
    return b"UNICODE\x00" + text.encode("utf-16-be" if big_endian else "utf-16-le")


def decode_user_comment(data: bytes | str, big_endian: bool = True) -> str | None:
    """The text of a UserComment value in any of the encodings tools write; None if empty.

    `big_endian`: the byte order of the EXIF block, which some tools use for UTF-16.
    """
    if isinstance(data, str):
        return data.strip("\x00").strip() or None
    encoding = _PREFIXES.get(bytes(data[:8]))
    body = bytes(data[8:]) if encoding else bytes(data)
    if encoding == "utf-16":
        text = _utf16(body, big_endian)
    else:
        text = body.decode(encoding or "utf-8", errors="replace")
    return text.strip("\x00").strip() or None


def _utf16(body: bytes, big_endian: bool) -> str:
    """UTF-16 by its byte-order mark, else the byte order that reads as more ASCII (an
    infotext's keys are ASCII), the EXIF block's on a tie."""
    if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return body.decode("utf-16", errors="replace")
    orders = ("utf-16-be", "utf-16-le") if big_endian else ("utf-16-le", "utf-16-be")
    texts = [body.decode(order, errors="replace") for order in orders]
    return max(texts, key=lambda t: sum(c < "\x80" for c in t))


def exif_block(infotext: str, settings_json: str | None = None) -> bytes:
    """A big-endian EXIF block laid out as piexif's (IFD0 pointing to the Exif IFD), with the
    infotext in UserComment and our settings in MakerNote, both of type UNDEFINED as EXIF says;
    every value is longer than 4 bytes, so each lies after the IFD at its offset."""
    values = {USER_COMMENT: encode_user_comment(infotext)}
    if settings_json is not None:
        values[MAKER_NOTE] = NOTE_PREFIX + zlib.compress(settings_json.encode("utf-8"), 9)
    return exif_of(values)


def exif_of(values: dict[int, bytes]) -> bytes:
    """The EXIF block of `exif_block` holding `values` (Exif IFD tag -> UNDEFINED value, each
    longer than 4 bytes)."""
    ifd0 = struct.pack(">HHHLLL", 1, EXIF_IFD, 4, 1, 26, 0)  # one entry: the Exif IFD at 26
    data_at = 26 + 2 + 12 * len(values) + 4
    entries, data = b"", b""
    for tag, value in sorted(values.items()):
        entries += struct.pack(">HHLL", tag, 7, len(value), data_at + len(data))
        data += value + b"\0" * (len(value) % 2)  # values start on even offsets
    exif_ifd = struct.pack(">H", len(values)) + entries + struct.pack(">L", 0)
    return b"Exif\x00\x00MM\x00\x2a" + struct.pack(">L", 8) + ifd0 + exif_ifd + data


def encode_with_info(image: Any, fmt: str, infotext: str, settings_json: str | None = None,
                 quality: int = 95) -> bytes:
    """JPEG or WebP bytes of `image` with the infotext (and our settings) in its EXIF.

    A JPEG's EXIF holds 64 kB: the settings are left out when both do not fit, and an infotext
    that does not fit alone is an error.
    """
    from helpers.metadata.stored import stored_infotext, stored_settings

    if fmt not in ("JPEG", "WEBP"):
        raise ValueError(f"format must be JPEG or WEBP, got {fmt!r}")
    infotext = stored_infotext(infotext)
    settings_json = None if settings_json is None else stored_settings(settings_json)
    if image.mode not in ("RGB", "L") and not (fmt == "WEBP" and image.mode == "RGBA"):
        image = image.convert("RGB")
    exif = exif_block(infotext, settings_json)
    if fmt == "JPEG" and len(exif) > MAX_JPEG_EXIF:
        exif = exif_block(infotext)
        if len(exif) > MAX_JPEG_EXIF:
            raise ValueError(f"infotext: {len(infotext)} characters do not fit a JPEG's EXIF; "
                             "save as PNG or WebP")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=quality, exif=exif)
    return buffer.getvalue()


def save_with_info(path: str | Path, image: Any, infotext: str, settings_json: str | None = None,
               quality: int = 95) -> Path:
    """Write `image` with its infotext (and settings) as PNG, JPEG or WebP by the suffix,
    atomically; the web UI and `python -m helpers info` read each of them back."""
    from helpers.files import atomic_write_bytes
    from helpers.metadata.stored import encode_png

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        data = encode_png(image, infotext, settings_json)
    elif suffix in EXIF_SUFFIXES:
        data = encode_with_info(image, EXIF_SUFFIXES[suffix], infotext, settings_json, quality)
    else:
        raise ValueError(f"{path}: save images as .png, .jpg, .jpeg or .webp")
    return atomic_write_bytes(path, data)


def read_exif_info(image: Any) -> tuple[str | None, str | None]:
    """(infotext, our settings JSON) from an opened image's EXIF; None for what it lacks."""
    if "exif" not in image.info:
        return None, None
    try:
        exif = image.getexif()
        ifd = exif.get_ifd(EXIF_IFD)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError):
        return None, None  # a damaged EXIF block: as if there were none
    comment = ifd.get(USER_COMMENT, exif.get(USER_COMMENT))
    infotext = decode_user_comment(comment, exif.endian != "<") if comment else None
    return infotext, _settings_note(ifd.get(MAKER_NOTE))


def _settings_note(note: Any) -> str | None:
    """Our settings JSON from a MakerNote that is ours (anyone else's is left alone); one that
    decompresses to more than `MAX_NOTE_BYTES` is refused without decompressing the rest."""
    if not isinstance(note, bytes) or not note.startswith(NOTE_PREFIX):
        return None
    inflate = zlib.decompressobj()
    try:
        data = inflate.decompress(note[len(NOTE_PREFIX):], MAX_NOTE_BYTES + 1)
        if len(data) > MAX_NOTE_BYTES:
            raise ValueError(f"the Dreamframe settings in the EXIF MakerNote are over "
                             f"{MAX_NOTE_BYTES:,} bytes uncompressed (we store at most a "
                             "quarter of that); not read")
        if not inflate.eof:
            raise zlib.error("truncated")
        return data.decode("utf-8")
    except (zlib.error, UnicodeDecodeError):
        raise ValueError("the Dreamframe settings in the EXIF MakerNote are damaged") from None
