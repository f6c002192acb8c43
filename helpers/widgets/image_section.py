"""Notebook 3's Image section for the diffusion engine: a mode that shows only the fields it
uses, and previews of the pictures a run starts from.

The mode (txt2img, img2img, inpaint, outpaint; inpaint with a mask image or a mask from words)
is a form-only control: it decides which image fields go into the settings. A field the mode
does not use is hidden and keeps what was typed (switching back brings it back), and goes into
the settings at its default (`applied`), so a txt2img form saves txt2img settings whatever its
hidden boxes hold, and outpaint gets the inpaint options it refuses at theirs. A form filled
from params.json, a run or a picture takes the mode its inputs make (`mode_of`: outpaint,
then a mask or mask words, then an init image); setting a hidden input (`INPUTS`) otherwise (a
program, a test) switches to the mode that uses it.

Previews, under their fields (PIL only, so cheap; none before the form is on a page):
- inpaint with a mask image: the mask, inverted and blurred as the run does it, tinted red over
  the init image (`mask_overlay`);
- inpaint with words: a "Preview mask" button runs CLIPSeg (`mask_words.mask_from_words`, the
  form's mask_model, threshold and dilation) in its callback, and shows the mask the same way;
- outpaint: the grown canvas, its border started as `outpaint_fill` says, what gets painted
  tinted blue, and its size (`outpaint_preview`).
The init image's thumbnail is the path box's own (`uploads.PathControl`). Previews start when
the front end shows the form (the mode buttons' view count) or at the first change after the
form is built; a headless run (papermill) shows no page and changes nothing, so it computes
none.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import ipywidgets as w

from helpers.settings.fields import choose
from helpers.widgets.compat import set_tooltip
from helpers.widgets.controls import LABEL_WIDTH, Control, css_class, indented
from helpers.widgets.preview import error_html, hint_html

MODES = ("txt2img", "img2img", "inpaint", "outpaint")
MODE_HELP = ("a picture from the prompt alone", "a picture from the prompt and an init image",
             "repaint the masked part of the init image", "grow the init image's canvas and "
             "paint the new border")
FILE, WORDS = "file", "words"
MASK_SOURCES = (("mask image", FILE), ("words", WORDS))
# The fields that make a run img2img, inpaint or outpaint
INPUTS = ("init_image", "mask", "mask_prompt", "outpaint")
MODE_FIELDS: dict[str, tuple[str, ...]] = {
    "txt2img": (),
    "img2img": ("init_image", "strength"),
    "inpaint": ("init_image", "strength", "mask", "mask_prompt", "mask_model", "mask_threshold",
                "mask_dilation", "mask_blur", "masked_content", "inpaint_area",
                "inpaint_padding", "invert_mask"),
    "outpaint": ("init_image", "strength", "outpaint", "outpaint_fill", "mask_blur"),
}
SOURCE_FIELDS = {FILE: ("mask",), WORDS: ("mask_prompt", "mask_model", "mask_threshold",
                                          "mask_dilation")}
IMAGE_FIELDS = tuple(dict.fromkeys(f for fields in MODE_FIELDS.values() for f in fields))
ANIMATED = ("2d", "video")  # animations that take `strength` whatever the mode
PREVIEW_PX = 256  # the longest side of a preview
MASK_COLOR = (255, 0, 0)  # what gets repainted
BORDER_COLOR = (30, 136, 229)  # what outpainting paints
TINT = 0.6  # the colour's opacity where the mask is full
HIDDEN = "none"
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


# --- the mode, without widgets --------------------------------------------------------------------


def mode_of(values: dict[str, Any]) -> str:
    """The mode settings values make: outpaint, inpaint (a mask or mask words), img2img (an init
    image) or txt2img."""
    if str(values.get("outpaint", "")).strip():
        return "outpaint"
    if values.get("mask") or str(values.get("mask_prompt", "")).strip():
        return "inpaint"
    return "img2img" if values.get("init_image") else "txt2img"


def source_of(values: dict[str, Any]) -> str:
    """Where an inpaint mask comes from: words when only mask words are given, else a file."""
    return WORDS if str(values.get("mask_prompt", "")).strip() and not values.get("mask") \
        else FILE


def shown_fields(mode: str, source: str, values: dict[str, Any]) -> set[str]:
    """The image fields a mode shows: its own, the mask source's ones for inpaint, inpaint
    padding only for "only masked", strength for the animations that take it."""
    shown = set(MODE_FIELDS[mode])
    if mode == "inpaint":
        shown -= set(SOURCE_FIELDS[WORDS if source == FILE else FILE])
        if values.get("inpaint_area") != "only masked":
            shown.discard("inpaint_padding")
    if values.get("animate") in ANIMATED:
        shown.add("strength")
    return shown


def applied(values: dict[str, Any], mode: str, source: str,
            defaults: dict[str, Any]) -> dict[str, Any]:
    """Settings values with the image fields the mode does not show at their defaults."""
    shown = shown_fields(mode, source, values)
    return {k: defaults[k] if k in IMAGE_FIELDS and k not in shown else v
            for k, v in values.items()}


# --- previews, without widgets --------------------------------------------------------------------


def tinted(image: Any, mask: Any, color: tuple[int, int, int], opacity: float = TINT) -> Any:
    """The RGB image with `color` over it, as opaque as the L mask says (times `opacity`)."""
    from PIL import Image

    alpha = mask.convert("L").point(lambda v: round(v * opacity))
    return Image.composite(Image.new("RGB", image.size, color), image.convert("RGB"), alpha)


def mask_overlay(init: Any, mask: Any, invert: bool = False, blur: int = 0,
                 px: int = PREVIEW_PX) -> Any:
    """The init image, at most `px` on a side, with the mask tinted red over it: made binary
    (`inpaint.binary_mask`), resized to the image, inverted and blurred as the run does it
    (the blur scaled with the image)."""
    from PIL import Image

    from helpers.diffusion.tools.inpaint import binary_mask, prepared_mask

    base = init.convert("RGB")
    base.thumbnail((px, px))
    scale = base.width / init.width
    small = binary_mask(mask).resize(base.size, Image.Resampling.LANCZOS)
    return tinted(base, prepared_mask(small, invert, round(blur * scale)), MASK_COLOR)


def run_size(width: int, height: int, model: str) -> tuple[int, int, int]:
    """(width, height, multiple): the run's size rounded down to its model's multiple (the
    catalogue's family, else 8)."""
    from helpers.catalog import find_model
    from helpers.diffusion.families import FAMILIES

    entry = find_model(model)
    record = FAMILIES.get(entry.family) if entry is not None else None
    multiple = record.multiple if record is not None else 8
    return width - width % multiple, height - height % multiple, multiple


def outpaint_preview(init: Any, width: int, height: int, outpaint: str, fill: str = "fill",
                     blur: int = 0, model: str = "", px: int = PREVIEW_PX) -> tuple[Any, str]:
    """(the grown canvas at most `px` on a side with what gets painted tinted blue, a line with
    its size): the init image resized to the run's size, the borders started as `fill` says
    (`outpaint.outpaint_canvas`), drawn small and scaled up."""
    from PIL import Image

    from helpers.diffusion.tools.outpaint import Borders, outpaint_canvas, parse_outpaint

    width, height, multiple = run_size(width, height, model)
    borders = parse_outpaint(outpaint).rounded(multiple)
    if not borders:
        raise ValueError(f"outpaint: {outpaint.strip()!r} grows no side; give the pixels to add")
    grown = borders.grown(width, height)
    scale = min(1.0, px / max(grown))
    small = Borders(**{side: round(px_ * scale) for side, px_ in _sides_of(borders).items()})
    picture = init.convert("RGB").resize((max(1, round(width * scale)),
                                          max(1, round(height * scale))),
                                         Image.Resampling.LANCZOS)
    canvas, mask = outpaint_canvas(picture, small, fill, seam=round(2 * blur * scale))
    shown = tinted(canvas, mask, BORDER_COLOR)
    if max(shown.size) * 2 <= px:  # a small canvas drawn larger, its pixels kept sharp
        times = px // max(shown.size)
        shown = shown.resize((shown.width * times, shown.height * times),
                             Image.Resampling.NEAREST)
    note = (f"canvas {grown[0]}x{grown[1]}: the picture at {width}x{height}, and "
            f"{_sides(borders)} painted")
    return shown, note


def _sides_of(borders: Any) -> dict[str, int]:
    """{side: pixels} of outpaint borders, in the setting's order."""
    import dataclasses

    return {f.name: getattr(borders, f.name) for f in dataclasses.fields(borders)}


def _sides(borders: Any) -> str:
    values = _sides_of(borders)
    if len(set(values.values())) == 1:
        return f"{values['left']} px on every side"
    return ", ".join(f"{side} {px} px" for side, px in values.items() if px)


def png(image: Any) -> bytes:
    """PNG bytes of a PIL image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def read_picture(spec: str, field: str) -> Any:
    """A local image as a form shows it (RGB; a mask as read for a run), cached by file
    identity; `ValueError` naming the field (a URL: fetched when the run starts)."""
    if _URL.match(spec):
        raise LookupError(f"{field}: {spec}: fetched when the run starts")
    path = Path(spec).expanduser()
    try:
        stat = path.stat()
    except OSError:
        raise ValueError(f"{field}: {spec} not found") from None
    return _read(str(path), stat.st_mtime_ns, stat.st_size, field).copy()


@functools.lru_cache(maxsize=8)
def _read(path: str, mtime_ns: int, size: int, field: str) -> Any:
    if field == "mask":
        from helpers.diffusion.tools.inpaint import read_mask

        return read_mask(path)
    from helpers.inputs import read_rgb

    return read_rgb(path, field)


def preview_button(description: str, tooltip: str, css: str) -> w.Button:
    """A button under a field that draws its preview on a click."""
    button = w.Button(description=description, icon="eye",
                      layout=w.Layout(width="auto", margin=indented().margin,
                                      align_self="flex-start"))
    set_tooltip(button, tooltip)
    button.add_class(css)
    return button


def labelled(text: str, widget: w.Widget) -> w.HBox:
    """A widget with a label beside it, as wide as a field's description."""
    label = w.HTML(f'<div style="text-align:right;padding-right:8px">{text}</div>',
                   layout=w.Layout(width=LABEL_WIDTH, flex="0 0 auto"))
    return w.HBox([label, widget], layout=w.Layout(align_items="center"))


# --- the section ----------------------------------------------------------------------------------


class Live:
    """Whether a form's previews are computed: from when the front end shows `widget` (its view
    count, which ipywidgets 7 and 8 keep once it is a number) or the form changes after it is
    built (`ready`); `start()` then draws them all. Headless, neither happens."""

    def __init__(self, widget: w.Widget, start: Callable[[], object]):
        self.on = False
        self.ready = False
        self._start = start
        widget.observe(lambda change: change["new"] and self.begin(), names="_view_count")
        widget._view_count = 0  # 0: counted from now on; None (the default): never

    def begin(self) -> None:
        """Previews from now on, all drawn once."""
        if not self.on:
            self.on = True
            self._start()

    def changed(self) -> bool:
        """A field changed: whether its preview should update (False when `begin` just drew
        them all, or before the form is shown or built)."""
        if self.on:
            return True
        if self.ready:
            self.begin()
        return False


class Preview:
    """An image and a line under a field; the image hidden while it has nothing to show (an
    empty Image widget shows a broken-image icon)."""

    def __init__(self, name: str):
        self.image = w.Image(format="png", layout=w.Layout(
            display=HIDDEN, margin=indented().margin, max_width=f"{PREVIEW_PX}px",
            align_self="flex-start"))  # its own size, not the form's width
        self.image.add_class(css_class(name, "preview-image"))
        self.note = w.HTML("", layout=indented())
        self.note.add_class(css_class(name, "preview-note"))
        self.widgets = [self.image, self.note]

    def show(self, image: Any, note: str = "") -> None:
        self.image.value = png(image)
        self.image.layout.display = None
        self.note.value = hint_html(note) if note else ""

    def clear(self, note: str = "", error: bool = False) -> None:
        self.image.layout.display = HIDDEN
        self.note.value = (error_html(note) if error else hint_html(note)) if note else ""

    @property
    def visible(self) -> bool:
        return self.image.layout.display != HIDDEN and bool(self.image.value)


class ImageSection:
    """The mode buttons of a diffusion form's image fields, which fields they show, what goes
    into the settings, and the previews.

    `controls` are the form's, `defaults` its settings class's; `current()` gives its values
    now (the excluded ones too: the model); `changed()` is called when the mode changes what
    the settings are; `cache` is where CLIPSeg models are fetched for the mask preview.
    """

    def __init__(self, controls: dict[str, Control], defaults: dict[str, Any],
                 current: Callable[[], dict[str, Any]],
                 changed: Callable[[], object] = lambda: None,
                 cache: str | Path | None = None):
        self.controls, self.defaults = controls, defaults
        self.current, self.changed = current, changed
        self.cache = cache
        self.mode = w.ToggleButtons(options=list(MODES), value="txt2img",
                                    tooltips=list(MODE_HELP), style={"button_width": "80px"})
        set_tooltip(self.mode, "what the run makes; each shows the fields it uses")
        self.mode.add_class("dreamframe-image-mode")
        self.source = w.ToggleButtons(options=list(MASK_SOURCES), value=FILE,
                                      style={"button_width": "100px"})
        set_tooltip(self.source, "inpaint: a mask image (white = repaint), or words CLIPSeg "
                    "finds in the init image")
        self.source.add_class("dreamframe-mask-source")
        # a ToggleButtons' own description sits above its buttons in ipywidgets 8: a label
        # beside them instead, as wide as the other fields' labels
        self.mode_row = labelled("mode", self.mode)
        self.source_row = labelled("mask from", self.source)
        self.mask_preview = Preview("mask")
        self.canvas_preview = Preview("outpaint")
        self.words_preview = Preview("mask-prompt")
        self.words_button = preview_button(
            "Preview mask", "find the words in the init image with CLIPSeg (the mask model, "
            "threshold and dilation below) and show the mask", "dreamframe-preview-mask")
        controls["mask"].add_below(*self.mask_preview.widgets)
        controls["outpaint"].add_below(*self.canvas_preview.widgets)
        controls["mask_prompt"].add_below(self.words_button, *self.words_preview.widgets)
        self.live = Live(self.mode, self.refresh)
        self._watch()
        self.show()

    @classmethod
    def of(cls, controls: dict[str, Control], *args: Any, **kwargs: Any) -> ImageSection | None:
        """The section of a form that has every image field (the diffusion form), else None."""
        if not all(name in controls for name in IMAGE_FIELDS):
            return None
        return cls(controls, *args, **kwargs)

    # --- wiring -----------------------------------------------------------------------------

    def _watch(self) -> None:
        self.mode.observe(lambda _change: self._switched(), names="value")
        self.source.observe(lambda _change: self._switched(), names="value")
        for name in INPUTS:
            self.controls[name].observe(lambda change, name=name: self._input(name, change))
        for name in ("animate", "inpaint_area"):
            if name in self.controls:
                self.controls[name].observe(lambda _change: self.show())
        self._on(("init_image", "mask", "invert_mask", "mask_blur"), self.refresh_mask)
        self._on(("init_image", "outpaint", "outpaint_fill", "width", "height", "mask_blur"),
                 self.refresh_canvas)
        self._on(("init_image", "mask_prompt", "mask_model", "mask_threshold", "mask_dilation",
                  "invert_mask", "mask_blur"), self._words_stale)
        self.words_button.on_click(lambda _button: self.preview_words())

    def _on(self, names: Iterable[str], refresh: Callable[[], object]) -> None:
        for name in names:
            self.controls[name].observe(lambda _change: self._changed_field(refresh))

    def _changed_field(self, refresh: Callable[[], object]) -> None:
        if self.live.changed():
            refresh()

    def _switched(self) -> None:
        self.show()
        if self.live.changed():
            self.refresh()
        self.changed()

    def _input(self, name: str, change: dict) -> None:
        """A hidden input that gets a value switches to the mode that uses it."""
        value = change["new"]
        if not (value.strip() if isinstance(value, str) else value) or name in self.shown():
            return
        if name == "init_image":
            self.mode.value = "img2img"
        elif name == "outpaint":
            self.mode.value = "outpaint"
        else:
            self.source.value = FILE if name == "mask" else WORDS
            self.mode.value = "inpaint"

    # --- what the mode shows and gives ---------------------------------------------------------

    def raw(self) -> dict[str, Any]:
        """The image fields' widget values, hidden ones too ("" where a box does not read)."""
        values: dict[str, Any] = {}
        for name in (*IMAGE_FIELDS, "animate"):
            if name in self.controls:
                try:
                    values[name] = self.controls[name].get()
                except ValueError:
                    values[name] = ""
        return values

    def shown(self) -> set[str]:
        """The image fields shown now."""
        return shown_fields(self.mode.value, self.source.value, self.raw())

    def show(self) -> None:
        """Show the fields the mode uses, hide the others (wherever they are: Advanced too)."""
        shown = self.shown()
        for name in IMAGE_FIELDS:
            self.controls[name].box.layout.display = None if name in shown else HIDDEN
        self.source_row.layout.display = None if self.mode.value == "inpaint" else HIDDEN

    def applied(self, values: dict[str, Any]) -> dict[str, Any]:
        """Settings values with the image fields the mode does not show at their defaults."""
        return applied(values, self.mode.value, self.source.value, self.defaults)

    def require(self, settings: Any) -> None:
        """`ValueError` naming the field a mode needs and the settings lack (inpaint without a
        mask is not inpainting): what the settings' own rules cannot know."""
        mode = self.mode.value
        if mode == "txt2img":
            return
        if not settings.init_image:
            raise ValueError(f"init_image: {mode} starts from a picture: give its path or URL, "
                             "or upload one (or choose txt2img)")
        if mode == "inpaint" and self.source.value == FILE and not settings.mask:
            raise ValueError("mask: inpaint repaints what the mask shows white: give the mask "
                             "image (or make the mask from words)")
        if mode == "inpaint" and self.source.value == WORDS and not settings.mask_prompt.strip():
            raise ValueError("mask_prompt: give the words of what to repaint, e.g. \"the sky\"")
        if mode == "outpaint" and not settings.outpaint.strip():
            raise ValueError("outpaint: give the pixels to add: 64 on every side, or "
                             "left=128,right=128")

    def set_mode(self, mode: str) -> None:
        """Choose the mode by name (any case); `ValueError` naming `mode`."""
        self.mode.value = choose("mode", mode.strip(), MODES, casefold=True)

    def derive(self, values: dict[str, Any]) -> None:
        """After a fill: the mode its inputs make, when it gave any of them."""
        if any(name in values for name in INPUTS):
            raw = self.raw()
            self.source.value = source_of(raw)
            self.mode.value = mode_of(raw)

    # --- previews ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Update the previews of the fields shown (only once live)."""
        if self.live.on:
            self.refresh_mask()
            self.refresh_canvas()

    def refresh_mask(self) -> None:
        """The mask image tinted over the init image (inpaint with a mask image)."""
        if not self.live.on or "mask" not in self.shown():
            return
        values = self.raw()
        if not values["mask"]:
            self.mask_preview.clear()
            return
        try:
            init = read_picture(values["init_image"], "init_image") if values["init_image"] \
                else None
            mask = read_picture(values["mask"], "mask")
            if init is None:
                from PIL import Image

                init = Image.new("RGB", mask.size, (128, 128, 128))
            image = mask_overlay(init, mask, values["invert_mask"], values["mask_blur"])
        except LookupError as e:
            self.mask_preview.clear(str(e))
            return
        except ValueError as e:
            self.mask_preview.clear(str(e), error=True)
            return
        without = "" if values["init_image"] else " (no init image yet)"
        self.mask_preview.show(image, f"red: repainted{without}")

    def refresh_canvas(self) -> None:
        """The grown canvas (outpaint)."""
        if not self.live.on or "outpaint" not in self.shown():
            return
        values = {**self.current(), **self.raw()}
        if not values["outpaint"].strip() or not values["init_image"]:
            note = "" if values["outpaint"].strip() else "give the pixels to add: 64, or " \
                "left=128,right=128"
            self.canvas_preview.clear(note or "the canvas shows with an init image")
            return
        try:
            init = read_picture(values["init_image"], "init_image")
            image, note = outpaint_preview(init, values["width"], values["height"],
                                           values["outpaint"], values["outpaint_fill"],
                                           values["mask_blur"], values.get("model", ""))
        except LookupError as e:
            self.canvas_preview.clear(str(e))
            return
        except ValueError as e:
            self.canvas_preview.clear(str(e), error=True)
            return
        self.canvas_preview.show(image, f"{note} (blue)")

    def _words_stale(self) -> None:
        if self.words_preview.visible:
            self.words_preview.clear("changed: press Preview mask again")

    def preview_words(self) -> bool:
        """Find the mask words in the init image with CLIPSeg and show the mask (the button's
        callback; it may download the mask model); whether a mask is shown."""
        from helpers.diffusion.tools.mask_words import mask_from_words
        from helpers.inputs import open_image

        values = {**self.current(), **self.raw()}
        lines: list[str] = []
        self.words_preview.clear("finding the words...")
        try:
            if not values["init_image"]:
                raise ValueError("mask_prompt: give the init image the words are found in")
            init = open_image(values["init_image"], "init_image", self.cache)
            mask = mask_from_words(init, values["mask_prompt"], values["mask_threshold"],
                                   values["mask_dilation"], self.cache, lines.append,
                                   values["mask_model"])
            image = mask_overlay(init, mask, values["invert_mask"], values["mask_blur"])
        except (ValueError, OSError, RuntimeError) as e:
            self.words_preview.clear(str(e), error=True)
            return False
        found = [line.removeprefix("mask_prompt: ") for line in lines if "masked" in line]
        self.words_preview.show(image, "red: repainted" + (f"; {found[-1]}" if found else ""))
        return True
