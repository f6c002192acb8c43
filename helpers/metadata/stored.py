"""What an image's metadata holds, as we write it: the web UI's infotext in a `parameters` text
chunk and our settings JSON in a `dreamframe` chunk, both bounded so that every reader (ours,
Pillow's limits, the web UI) takes them.

Settings over `MAX_STORED_SETTINGS` bytes are stored shortened (`stored_settings`; the run's
settings.json always holds them whole), an infotext over `MAX_STORED_INFOTEXT` characters is
cut (`stored_infotext`). `helpers.runs` writes frames with `encode_png`; `exif` writes the same
texts into JPEG and WebP.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

from helpers.files import load_json

if TYPE_CHECKING:
    from PIL.Image import Image

PARAMETERS_CHUNK = "parameters"  # the web UI's key: its PNG Info tab reads this one
SETTINGS_CHUNK = "dreamframe"
# What an image's metadata holds, far below Pillow's 1 MB a text chunk (the settings chunk is
# compressed) and 64 MB all text: beyond them Pillow refuses to open the image at all.
MAX_STORED_SETTINGS = 256 * 1024  # bytes of settings JSON; a longer one is stored shortened
MAX_STORED_INFOTEXT = 256 * 1024  # characters of infotext; a longer one is cut
SHORTENED_KEY = "shortened"  # in a shortened copy of the settings: why, and where the rest is
CUT_TEXT = 1000  # characters a long text keeps in a shortened copy of the settings


def encode_png(image: Image, infotext: str, settings_json: str | None) -> bytes:
    """PNG bytes of `image` with the `parameters` infotext and `dreamframe` settings chunks,
    each bounded (`stored_infotext`, `stored_settings`) so that every reader takes them."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    # tEXt when the text fits Latin-1, else iTXt (UTF-8): what the web UI writes.
    info.add_text(PARAMETERS_CHUNK, stored_infotext(infotext))
    if settings_json is not None:
        info.add_itxt(SETTINGS_CHUNK, stored_settings(settings_json), zip=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def stored_settings(settings_json: str) -> str:
    """The settings JSON an image holds: all of it up to `MAX_STORED_SETTINGS` bytes.

    Longer settings (a prompt of a million characters) are stored shortened: every text keeps
    its first `CUT_TEXT` characters and says how many more there were, and the `shortened` key
    says so and that the whole settings are in the run's settings.json (which always has them);
    if that is still too long, only `kind` and the `shortened` note are stored.
    `read_image_info` gives the run's settings.json back in place of a shortened copy when
    the image still lies in its run's frames folder.
    """
    size = len(settings_json.encode("utf-8"))
    if size <= MAX_STORED_SETTINGS:
        return settings_json
    settings = load_json(settings_json, "settings_json", dict)
    note = (f"the settings are {size:,} bytes, more than the {MAX_STORED_SETTINGS:,} an image "
            f"holds; the whole settings are in the run's settings.json")
    short = json.dumps({**_cut_texts(settings), SHORTENED_KEY: f"{note}; texts are cut here"},
                       ensure_ascii=False)
    if len(short.encode("utf-8")) <= MAX_STORED_SETTINGS:
        return short
    return json.dumps({"kind": settings.get("kind"), SHORTENED_KEY: note}, ensure_ascii=False)


def _cut_texts(value: Any) -> Any:
    """`value` with every text longer than `CUT_TEXT` characters cut (`load_json` bounds the
    depth)."""
    if isinstance(value, str):
        return _cut(value, CUT_TEXT)
    if isinstance(value, list):
        return [_cut_texts(item) for item in value]
    if isinstance(value, dict):
        return {key: _cut_texts(item) for key, item in value.items()}
    return value


def _cut(text: str, keep: int) -> str:
    """`text`, or its first `keep` characters and how many more there were."""
    if len(text) <= keep:
        return text
    return f"{text[:keep]}… {len(text) - keep:,} more characters cut"


def stored_infotext(infotext: str) -> str:
    """The infotext an image holds: all of it up to `MAX_STORED_INFOTEXT` characters; a longer
    one keeps its last line (the web UI's `Steps: ..., Seed: ...` line) and the start of what
    comes before it (the prompts), cut with a note of how much was cut."""
    if len(infotext) <= MAX_STORED_INFOTEXT:
        return infotext
    head, _, params = infotext.rpartition("\n")
    if not head or len(params) > MAX_STORED_INFOTEXT // 2:
        head, params = infotext, ""
    text = _cut(head, MAX_STORED_INFOTEXT - len(params) - 64)
    return f"{text}\n{params}" if params else text
