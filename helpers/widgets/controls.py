"""One control per settings field: its value widget, the row shown, and value conversion.

The widget is chosen from the field's annotation and metadata, as `helpers.cli` chooses a
flag's type: choices -> Dropdown (SelectMultiple for a tuple, a Combobox for open choices),
bool -> Checkbox, numbers -> IntText / FloatText (bounded when the range is small), the seed ->
IntText with -1 = random and a "random" button, text -> Text, or a Textarea that grows with its
text (prompts, schedules), a tuple of numbers -> Text "W H".
`get()` reads the widget as the settings value; `set()` shows a settings value; both raise
`ValueError` naming the field for what they cannot take.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from helpers.settings.base import RANDOM_SEED
from helpers.settings.fields import Meta, check_value, choose, fail, help_line
from helpers.widgets.compat import set_tooltip
from helpers.widgets.preview import HINT_COLOR

LABEL_WIDTH = "160px"
STYLE = {"description_width": LABEL_WIDTH}
MAX_BOUNDED_RANGE = 1024  # wider ranges get a plain box: a bounded one clamps typing silently
MIN_ROWS = {"long": 2, "lines": 4}  # the Textarea kinds of text fields, and their smallest size
MAX_ROWS = 16  # a Textarea grows with its text up to this many rows, then scrolls
ROW_CHARS = 72  # characters in a row of a wide() box (~520 px of text beside the label)


def css_class(name: str, part: str = "") -> str:
    """The CSS class of a field's widget, for browser tests: `dreamframe-cfg-scale[-part]`."""
    return f"dreamframe-{name.replace('_', '-')}" + (f"-{part}" if part else "")


def indented() -> w.Layout:
    """The layout of what is shown under a field (previews, thumbnails): under its value."""
    return w.Layout(margin=f"0 0 4px {LABEL_WIDTH}")


def wide() -> w.Layout:
    """The layout of a text box: the form's width, not the page's."""
    return w.Layout(width="100%", max_width="680px")


def label(name: str, meta: Meta) -> str:
    """`cfg_scale` -> "cfg scale"; the unit in brackets: "width (px)" (not "steps (steps)")."""
    text = name.replace("_", " ")
    return f"{text} ({meta.unit})" if meta.unit and meta.unit != text else text


def help_html(meta: Meta) -> str:
    """The help line as a small grey line under the widget, aligned with the value."""
    import html

    return (f'<div style="margin-left:{LABEL_WIDTH};color:{HINT_COLOR};font-size:11px;'
            f'line-height:1.3">{html.escape(help_line(meta))}</div>')


class Control:
    """A settings field in the form: `widget` holds the value, `box` is what is shown."""

    def __init__(self, name: str, meta: Meta, widget: w.Widget, row: w.Widget | None = None):
        self.name, self.meta, self.widget = name, meta, widget
        set_tooltip(widget, help_line(meta))
        widget.add_class(css_class(name))
        self.help = w.HTML(help_html(meta))
        self.box = w.VBox([row if row is not None else widget, self.help])
        self.live: w.HTML | None = None  # the preview or check under the field, if any

    def get(self) -> Any:
        """The widget's value as the settings value."""
        return self.widget.value

    def set(self, value: Any) -> None:
        """Show a settings value."""
        self.widget.value = value

    def observe(self, callback: Callable[[dict], object]) -> None:
        """Call `callback(change)` whenever the value changes."""
        self.widget.observe(callback, names="value")

    def add_below(self, *widgets: w.Widget) -> None:
        """Show widgets under the field (a preview, a check, thumbnails)."""
        self.box.children = (*self.box.children, *widgets)

    def watch(self, render: Callable[[Any], str]) -> w.HTML:
        """An HTML line under the field showing `render(value)`, kept up to date."""
        self.live = shown = w.HTML(render(self.widget.value), layout=indented())
        shown.add_class("dreamframe-preview")
        shown.add_class(css_class(self.name, "preview"))
        self.observe(lambda change: setattr(shown, "value", render(change["new"])))
        self.add_below(shown)
        return shown

    def fail(self, value: Any, why: str) -> typing.NoReturn:
        """The `ValueError` of a value this control cannot take."""
        fail(self.name, value, why)


class TextControl(Control):
    """Text, or for `text="lines"` and `text="long"` fields a Textarea that grows with its
    text (`rows` follows the lines, long ones counted as wrapped, up to MAX_ROWS)."""

    def __init__(self, name: str, meta: Meta, placeholder: str = ""):
        self.min_rows = MIN_ROWS.get(meta.text, 0)
        kind = w.Textarea if self.min_rows else w.Text
        options = {"rows": self.min_rows} if self.min_rows else {}
        widget = kind(description=label(name, meta), placeholder=placeholder,
                      continuous_update=True, style=STYLE, layout=wide(), **options)
        super().__init__(name, meta, widget)
        if self.min_rows:
            self.observe(lambda change: self._fit(change["new"]))

    def set(self, value: Any) -> None:
        if not isinstance(value, str):
            self.fail(value, "expected text")
        self.widget.value = value

    def _fit(self, text: str) -> None:
        rows = text_rows(text, self.min_rows)
        if rows != self.widget.rows:  # only a real change goes to the browser
            self.widget.rows = rows


def text_rows(text: str, min_rows: int = 1, max_rows: int = 0) -> int:
    """The rows a Textarea needs to show `text` whole: each line, a long one wrapped at
    ROW_CHARS; between `min_rows` and `max_rows` (MAX_ROWS; past it the box scrolls)."""
    needed = sum(max(1, math.ceil(len(line) / ROW_CHARS)) for line in text.split("\n"))
    return max(min_rows, min(needed, max_rows or MAX_ROWS))


class ChoiceControl(Control):
    """A Dropdown of the choices ("" shown as "(none)"); any case with `casefold`."""

    def __init__(self, name: str, meta: Meta):
        options = [(c if c else "(none)", c) for c in meta.choices or ()]
        widget = w.Dropdown(options=options, description=label(name, meta), style=STYLE)
        super().__init__(name, meta, widget)

    def set(self, value: Any) -> None:
        if not isinstance(value, str):
            self.fail(value, "expected one of the choices")
        self.widget.value = choose(self.name, value, self.meta.choices or (), self.meta.casefold)


class SuggestControl(Control):
    """A Combobox for open choices: the choices listed, any other text typed (a file, a name)."""

    def __init__(self, name: str, meta: Meta):
        widget = w.Combobox(options=list(meta.choices or ()), ensure_option=False,
                            description=label(name, meta), style=STYLE, layout=wide())
        super().__init__(name, meta, widget)

    def set(self, value: Any) -> None:
        if not isinstance(value, str):
            self.fail(value, "expected text")
        self.widget.value = value


class MultiChoiceControl(Control):
    """A SelectMultiple for a tuple of choices (nothing selected = none)."""

    def __init__(self, name: str, meta: Meta):
        choices = meta.choices or ()
        widget = w.SelectMultiple(options=list(choices), rows=min(len(choices), 6),
                                  description=label(name, meta), style=STYLE)
        super().__init__(name, meta, widget)

    def get(self) -> tuple[str, ...]:
        return tuple(self.widget.value)

    def set(self, value: Any) -> None:
        if isinstance(value, str) or not isinstance(value, (tuple, list)):
            self.fail(value, "expected a list of choices")
        choices = self.meta.choices or ()
        self.widget.value = tuple(choose(self.name, v, choices, self.meta.casefold) for v in value)


class BoolControl(Control):
    """A Checkbox."""

    def __init__(self, name: str, meta: Meta):
        super().__init__(name, meta, w.Checkbox(description=label(name, meta), style=STYLE))

    def set(self, value: Any) -> None:
        if not isinstance(value, bool):
            self.fail(value, "expected true or false")
        self.widget.value = value


class NumberControl(Control):
    """IntText / FloatText; bounded when the range is small (then out-of-range is refused)."""

    def __init__(self, name: str, meta: Meta, kind: type):
        self.kind = kind
        self.bounded = bounded(meta)
        if self.bounded:
            widget_type = w.BoundedIntText if kind is int else w.BoundedFloatText
            limits = {"min": meta.min, "max": meta.max}
        else:
            widget_type, limits = (w.IntText if kind is int else w.FloatText), {}
        widget = widget_type(description=label(name, meta), style=STYLE, **limits)
        super().__init__(name, meta, widget)

    def get(self) -> int | float:
        return self.kind(self.widget.value)

    def set(self, value: Any) -> None:
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                self.kind is int and not whole):
            self.fail(value, "expected a whole number" if self.kind is int else "expected a number")
        if self.bounded:  # a bounded box would clamp it silently
            check_value(self.name, value, self.meta)
        self.widget.value = self.kind(value)


def bounded(meta: Meta) -> bool:
    """Whether a number box may clamp: both limits finite and close together."""
    if meta.min is None or meta.max is None:
        return False
    return math.isfinite(meta.min) and math.isfinite(meta.max) and (
        meta.max - meta.min <= MAX_BOUNDED_RANGE)


class SeedControl(Control):
    """IntText where -1 means random (None), and a "random" button that draws a seed."""

    def __init__(self, name: str, meta: Meta):
        widget = w.IntText(value=RANDOM_SEED, description=label(name, meta), style=STYLE)
        self.button = w.Button(description="random", layout=w.Layout(width="auto"))
        self.button.add_class(css_class(name, "random"))
        set_tooltip(self.button, "put a fresh random seed in the box (-1 = a new one each run)")
        self.button.on_click(lambda _: self.roll())
        super().__init__(name, meta, widget, row=w.HBox([widget, self.button]))

    def roll(self) -> int:
        """Put a fresh random seed in the box."""
        from helpers.settings import random_seed

        self.widget.value = random_seed()
        return self.widget.value

    def get(self) -> int | None:
        value = int(self.widget.value)
        return None if value == RANDOM_SEED else value

    def set(self, value: Any) -> None:
        if value is None:
            value = RANDOM_SEED
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(value, "expected a whole number, or -1 for a random seed")
        self.widget.value = value


class SequenceControl(Control):
    """A Text for a tuple without choices: "W H" for numbers, "a, b" for names; empty = ()."""

    def __init__(self, name: str, meta: Meta, item: type):
        self.item = item
        hint = meta.metavar or ("W H" if item is not str else "A, B")
        widget = w.Text(description=label(name, meta), placeholder=hint, style=STYLE)
        super().__init__(name, meta, widget)

    def get(self) -> tuple:
        text = self.widget.value
        separators = ",xX" if self.item is not str else ","
        parts = text.translate({ord(c): " " for c in separators}).split()
        try:
            return tuple(self.item(p) for p in parts)
        except ValueError:
            pass
        kind = "whole numbers" if self.item is int else "numbers"
        hint = f" ({self.meta.metavar})" if self.meta.metavar else ""
        self.fail(text, f"give {kind} separated by spaces{hint}, or leave it empty")

    def set(self, value: Any) -> None:
        if isinstance(value, str) or not isinstance(value, (tuple, list)):
            self.fail(value, "expected a list")
        self.widget.value = (" " if self.item is not str else ", ").join(str(v) for v in value)


class OptionalControl(Control):
    """A Text for an optional number or text: empty = None."""

    def __init__(self, name: str, meta: Meta, item: type):
        self.item = item
        widget = w.Text(description=label(name, meta), placeholder="empty = none", style=STYLE)
        super().__init__(name, meta, widget)

    def get(self) -> Any:
        text = self.widget.value.strip()
        if not text:
            return None
        try:
            return self.item(text)
        except ValueError:
            pass
        self.fail(text, f"expected {self.item.__name__} or empty")

    def set(self, value: Any) -> None:
        self.widget.value = "" if value is None else str(value)


def make_control(name: str, annotation: Any, meta: Meta) -> Control:
    """The control of a field from its annotation and metadata (as `helpers.cli` makes flags)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = type(None) in typing.get_args(annotation)
    base = args[0] if optional and len(args) == 1 else annotation
    if name == "seed" and base is int:
        return SeedControl(name, meta)
    if optional:
        return OptionalControl(name, meta, base)
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        return MultiChoiceControl(name, meta) if meta.choices else SequenceControl(name, meta, item)
    if meta.choices:
        return SuggestControl(name, meta) if meta.open_choices else ChoiceControl(name, meta)
    if base is bool:
        return BoolControl(name, meta)
    if base in (int, float):
        return NumberControl(name, meta, base)
    if base is str:
        return TextControl(name, meta)
    raise TypeError(f"{name}: no form widget for a field of type {annotation!r}")
