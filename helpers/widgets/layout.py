"""How a form is laid out: sections by the fields' groups, the advanced ones folded, presets.

Sections come in a fixed order (GROUP_ORDER, then any other group in field order, then the
fields without a group); in each, the fields keep their declaration order. Basic fields are
shown; advanced fields go, in the same sections, into one folded "Advanced" accordion.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as w

from helpers.widgets.compat import folded_accordion, set_tooltip
from helpers.widgets.controls import STYLE, Control

GROUP_ORDER = ("prompt", "image", "control", "model", "sampling", "hires", "postprocess", "run",
               "animation", "guidance",
               # the video form's groups, before "output" as its fields are used
               "timing", "encoding", "frames",
               "output", "device")
SIZE_PRESETS = ("256x256", "512x512", "768x512", "512x768", "768x768", "1024x1024",
                "1024x576", "576x1024")
CUSTOM = "custom"


def ordered_groups(controls: list[Control]) -> list[str]:
    """The groups of these controls in the order their sections appear."""
    present = list(dict.fromkeys(c.meta.group for c in controls))
    known = [g for g in GROUP_ORDER if g in present]
    others = [g for g in present if g not in GROUP_ORDER and g]
    return known + others + ([""] if "" in present else [])


def title(group: str) -> str:
    """A section's heading: "sampling" -> "Sampling"; no group -> "Other"."""
    return group.replace("_", " ").capitalize() if group else "Other"


def sections(controls: list[Control], extra: dict[str, list[w.Widget]]) -> list[w.Widget]:
    """A heading and the controls' boxes per group; `extra[name]` goes before a field's box."""
    shown = []
    for group in ordered_groups(controls):
        boxes = [b for c in controls if c.meta.group == group
                 for b in (*extra.get(c.name, ()), c.box)]
        heading = w.HTML(f'<div style="margin-top:8px;border-bottom:1px solid #ddd">'
                         f"<b>{title(group)}</b></div>")
        shown.append(w.VBox([heading, *boxes]))
    return shown


def form_body(controls: list[Control], extra: dict[str, list[w.Widget]]) -> list[w.Widget]:
    """Basic sections, then one folded "Advanced" accordion holding the advanced ones."""
    basic = [c for c in controls if c.meta.basic]
    advanced = [c for c in controls if c.meta.advanced]
    body = sections(basic, extra)
    if advanced:
        accordion = folded_accordion([w.VBox(sections(advanced, extra))], ["Advanced"])
        accordion.add_class("dreamframe-advanced")
        body.append(accordion)
    return body


class SizePresets:
    """A Dropdown of common sizes above width and height: a choice sets both; typing a size
    shows the preset it matches, or "custom"."""

    def __init__(self, width: Control, height: Control):
        self.width, self.height = width, height
        self.widget = w.Dropdown(options=[CUSTOM, *SIZE_PRESETS], description="size preset",
                                 style=STYLE)
        set_tooltip(self.widget, "sets width and height; custom: type them below")
        self.widget.add_class("dreamframe-size-preset")
        self._busy = False
        self.widget.observe(lambda change: self._chosen(change["new"]), names="value")
        for control in (width, height):
            control.observe(lambda change: self.sync())
        self.sync()

    def _chosen(self, preset: str) -> None:
        if self._busy or preset == CUSTOM:
            return
        w_px, h_px = (int(v) for v in preset.split("x"))
        self._busy = True
        try:
            self.width.widget.value, self.height.widget.value = w_px, h_px
        finally:
            self._busy = False

    def sync(self) -> None:
        """Show the preset that matches the current width and height, or "custom"."""
        if self._busy:
            return
        size = f"{self.width.widget.value}x{self.height.widget.value}"
        self._busy = True
        try:
            self.widget.value = size if size in SIZE_PRESETS else CUSTOM
        finally:
            self._busy = False


def action_row(placeholder: str, button: str, action: Callable[[str], object],
               tooltip: str) -> tuple[w.Text, w.HBox]:
    """A text box and a button that calls `action(text)`: "fill from [...] [Load]"."""
    text = w.Text(placeholder=placeholder, description="fill from", style=STYLE,
                  layout=w.Layout(width="100%", max_width="600px"))
    set_tooltip(text, tooltip)
    text.add_class("dreamframe-load-source")
    go = w.Button(description=button, layout=w.Layout(width="auto"))
    go.add_class("dreamframe-load")
    set_tooltip(go, tooltip)
    go.on_click(lambda _: action(text.value))
    return text, w.HBox([text, go])
