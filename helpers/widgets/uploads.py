"""Fields that name input files: a path box, an upload button, and thumbnails for images.

An uploaded file is saved (atomically) into the form's uploads folder and the field is set to
its path, so a notebook run headless reads the same setting as one filled in by hand.
Thumbnails are read with `helpers.inputs.read_rgb`, as a run reads the image; a bad path shows
its error beside the field and never raises.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as w

from helpers.settings.fields import Meta
from helpers.widgets.compat import read_upload, set_tooltip
from helpers.widgets.controls import TextControl, css_class, indented
from helpers.widgets.preview import error_html, hint_html

# field -> (what the upload button accepts, whether the field holds images, several files)
UPLOAD_FIELDS: dict[str, tuple[str, bool, bool]] = {
    "init_image": ("image/*", True, False),
    "image_prompts": ("image/*", True, True),
    "mask": ("image/*", True, False),
    "audio": ("audio/*", False, False),
    "init_video": ("video/*", False, False),
}
NO_THUMBNAILS = ("mask",)  # shown over the init image by the Image section instead
THUMB_PX = 96
MAX_THUMBS = 6
_UNSAFE = re.compile(r"[^\w.-]+")

Report = Callable[[str, bool], object]  # (message, is_error)


class PathControl(TextControl):
    """A path (or URL) box with an upload button; for images, thumbnails that follow the path."""

    def __init__(self, name: str, meta: Meta, uploads: Path | None, report: Report):
        accept, self.images, multiple = UPLOAD_FIELDS[name]
        super().__init__(name, meta, placeholder="a path or URL, or upload a file" if
                         self.images else "a path, or upload a file")
        self.uploads, self.report = uploads, report
        self.upload = w.FileUpload(accept=accept, multiple=multiple,
                                   layout=w.Layout(width="auto"))
        set_tooltip(self.upload, f"upload a file into {uploads}" if uploads else
                    "uploads need an uploads folder; type a path instead")
        self.upload.add_class(css_class(name, "upload"))
        self.upload.observe(lambda change: self.take_upload(change["new"]), names="value")
        self.box.children = (w.HBox([self.widget, self.upload]), *self.box.children[1:])
        self.thumbnails = w.HBox([], layout=indented())
        self.thumbnails.add_class(css_class(name, "thumbnails"))
        self.note = w.HTML("", layout=indented())
        if self.images and name not in NO_THUMBNAILS:
            self.add_below(self.thumbnails, self.note)
            self.observe(lambda change: self.show_thumbnails())

    def get(self) -> str:
        return self.widget.value.strip()

    def take_upload(self, value: Any) -> list[Path]:
        """Save uploaded files into the uploads folder and put their paths in the field."""
        try:
            files = read_upload(value)
            if files and self.uploads is None:
                raise ValueError(f"{self.name}: this form has no uploads folder; type a path")
            saved = [save_upload(self.uploads, name, data) for name, data in files]
        except (ValueError, OSError) as e:
            self.report(str(e), True)
            return []
        if saved:
            self.widget.value = self._with_paths(saved)
            self.report(f"{self.name}: saved {', '.join(str(p) for p in saved)}", False)
        return saved

    def _with_paths(self, saved: list[Path]) -> str:
        if self.name != "image_prompts":
            return str(saved[-1])
        from helpers.prompts import Prompt, format_prompts

        added = format_prompts([Prompt(str(p)) for p in saved])
        current = self.widget.value.strip()
        return f"{current} | {added}" if current else added

    def paths(self) -> list[str]:
        """The files the field names now: the path, or each image prompt's."""
        text = self.widget.value.strip()
        if self.name != "image_prompts":
            return [text] if text else []
        from helpers.prompts import parse_prompts

        try:
            return [p.text for p in parse_prompts(text)] if text else []
        except ValueError:
            return []  # the prompt preview shows why

    def show_thumbnails(self) -> None:
        """Thumbnails of the images the field names; errors beside them, never raised."""
        images, notes = [], []
        for spec in self.paths()[:MAX_THUMBS]:
            if re.match(r"^[a-z][a-z0-9+.-]*://", spec, re.IGNORECASE):
                notes.append(hint_html(f"{spec}: fetched when the run starts"))
                continue
            try:
                images.append(w.Image(value=thumbnail_png(spec, self.name), format="png"))
            except ValueError as e:
                notes.append(error_html(str(e)))
        self.thumbnails.children = images
        self.note.value = "<br>".join(notes)


def thumbnail_png(spec: str, field: str) -> bytes:
    """PNG bytes of a small copy of the image at `spec`; `ValueError` naming the field."""
    path = Path(spec).expanduser()
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None:
        raise ValueError(f"{field}: {spec} not found")
    return _thumbnail(str(path), stat.st_mtime_ns, stat.st_size, field)


@functools.lru_cache(maxsize=32)
def _thumbnail(path: str, mtime_ns: int, size: int, field: str) -> bytes:
    """Cached by file identity: the preview refreshes on every keystroke."""
    from helpers.inputs import read_rgb

    image = read_rgb(path, field)
    image.thumbnail((THUMB_PX, THUMB_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_upload(folder: Path, name: str, data: bytes) -> Path:
    """Save an uploaded file into `folder` atomically under a safe, free name; return its path.

    A file of the same name and content is reused; another content gets `-2`, `-3`, ...
    """
    from helpers.files import atomic_write_bytes

    base = _UNSAFE.sub("_", Path(name).name).strip("._") or "upload"
    stem, suffix = Path(base).stem, Path(base).suffix
    folder = Path(folder).expanduser()
    for n in range(1, 10_000):
        path = folder / (base if n == 1 else f"{stem}-{n}{suffix}")
        if not path.exists():
            return atomic_write_bytes(path, data)
        if path.is_file() and path.read_bytes() == data:
            return path
    raise ValueError(f"upload: no free name for {name} in {folder}")
