"""Notebook 3's ControlNet units: the `control` lines stay the setting (one unit a line,
`TYPE[@MODEL]:IMAGE[:WEIGHT[:START:END]]`), with a row that adds a unit (preprocessor,
ControlNet, image, weight) and, under them, each unit as it will run: its preprocessor, the
ControlNet it uses and why, its weight and steps, its image; and its control map on request.

The ControlNets chosen in notebook 2 (model.json's `controlnets`, downloaded there) are the
units' defaults: the add row offers them and picks the one that serves the preprocessor, and a
unit written without @MODEL uses the chosen one that serves its preprocessor (`controlnet_of`)
where that is not the catalogue's default anyway; the saved settings then name it
(`with_chosen`: TYPE@MODEL), so the run and its settings.json say which ControlNet it used.
A unit none of them serves keeps the catalogue's default for its preprocessor and the model.

The unit lines update as the text changes (no torch); the maps need torch, so they are drawn by
the "Preview maps" button's callback, then kept up to date (never in a headless run).
"""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as w

from helpers.diffusion.tools.control import PREPROCESSOR_NAMES
from helpers.diffusion.tools.control import units as unit_syntax
from helpers.diffusion.tools.control.units import (
    DEFAULT_CONTROLNETS,
    TEST_CONTROLNETS,
    UnitSpec,
    controlnet_for,
    parse_unit,
    union_type,
)
from helpers.widgets.compat import set_tooltip
from helpers.widgets.controls import STYLE, Control, css_class, indented
from helpers.widgets.image_section import HIDDEN, Live, png, preview_button
from helpers.widgets.models import controlnet_family_of
from helpers.widgets.preview import error_html, hint_html

NEED_A_MODEL = ("depth", "inpaint")  # preprocessors whose maps the preview does not draw:
#                                       the depth estimator's, the run's mask
VIDEO = unit_syntax.VIDEO  # the IMAGE of a unit mapped from each video frame
CHOSEN = "chosen in notebook 2"
MAP_PX = 128  # a control map's preview, longest side
THUMB_PX = 96
DEFAULT = ""  # the add row's ControlNet: the one a line without @MODEL gets


# --- which ControlNet a unit uses, without widgets ------------------------------------------------


def model_kind(model: str) -> tuple[str | None, bool, bool]:
    """(the family whose ControlNets a model takes, None when the catalogue does not know the
    model; whether it is an SDXL one, with size conditioning; whether it is a test model)."""
    from helpers.catalog import find_model
    from helpers.diffusion.families import FAMILIES

    family = controlnet_family_of(model)
    if family is None:
        return None, False, False
    return family, FAMILIES[family].size_conditioning, find_model(model).test


def controlnet_family(name: str) -> str | None:
    """A catalogue ControlNet's family ("sd", "sdxl"), None for another name."""
    from helpers.catalog import find_model

    entry = find_model(name)
    return entry.family if entry is not None and entry.kind == "controlnet" else None


def serves(name: str, preprocessor: str) -> bool:
    """Whether a ControlNet takes a preprocessor's maps: the catalogue's for it, a union one
    for a type it knows, a test one for any."""
    if name in TEST_CONTROLNETS or name in DEFAULT_CONTROLNETS.get(preprocessor, ()):
        return True
    return "union" in name and union_type(preprocessor) is not None


def fits(name: str, model: str) -> bool:
    """Whether a ControlNet is of the model's family (unknown models: any)."""
    base, family = controlnet_family_of(model), controlnet_family(name)
    return base is None or family is None or family == base


def chosen_for(preprocessor: str, model: str, chosen: tuple[str, ...]) -> str | None:
    """The first chosen ControlNet that serves the preprocessor with the model, or None."""
    return next((c for c in chosen if serves(c, preprocessor) and fits(c, model)), None)


def controlnet_of(spec: UnitSpec, model: str, chosen: tuple[str, ...] = ()) -> tuple[str, str]:
    """(the ControlNet a unit uses, why): named in its line, chosen in notebook 2, or the
    catalogue's default for its preprocessor and the model; `ValueError` naming `control` when
    none is."""
    if spec.model:
        return spec.model, "named in the line"
    _family, sdxl, test = model_kind(model)
    picked = chosen_for(spec.preprocessor, model, chosen)
    try:
        default = controlnet_for(spec, sdxl, test)
    except ValueError:
        if picked is None:
            raise
        return picked, CHOSEN
    if picked is not None and picked != default:
        return picked, CHOSEN
    why = f"the default for {spec.preprocessor}" + (f", {CHOSEN}" if picked else "")
    return default, why


def with_chosen(text: str, model: str, chosen: tuple[str, ...]) -> str:
    """The `control` lines with each unit that a ControlNet chosen in notebook 2 serves (and
    that names none) written TYPE@MODEL; other lines as they are."""
    if not chosen:
        return text
    lines = []
    for line in text.split("\n"):
        try:
            spec = parse_unit(line.strip()) if line.strip() else None
            name, why = controlnet_of(spec, model, chosen) if spec else ("", "")
        except ValueError:
            spec, why = None, ""
        if spec is not None and why == CHOSEN:
            head, _colon, rest = line.strip().partition(":")
            line = f"{head.strip()}@{name}:{rest}"
        lines.append(line)
    return "\n".join(lines)


def unit_line(preprocessor: str, image: str, model: str = "", weight: float = 1.0) -> str:
    """A `control` line: TYPE[@MODEL]:IMAGE[:WEIGHT]; `ValueError` naming `control` for one
    that does not parse."""
    head = f"{preprocessor}@{model}" if model else preprocessor
    line = f"{head}:{image.strip()}" + (f":{weight:g}" if weight != 1 else "")
    if not image.strip():
        raise ValueError("control: give the unit's image (a path or URL)")
    parse_unit(line)
    return line


def unit_html(index: int, spec: UnitSpec, name: str, why: str) -> str:
    """One unit as a line of the preview."""
    steps = "" if (spec.start, spec.end) == (0, 1) else \
        f" &middot; steps {spec.start:.0%} to {spec.end:.0%}"
    return (f'<div style="font-size:12px"><b>{index}. {html.escape(spec.preprocessor)}</b> '
            f"&middot; ControlNet <code>{html.escape(name)}</code> "
            f'<span style="color:#757575">({html.escape(why)})</span> &middot; weight '
            f"{spec.weight:g}{steps}<br><code>{html.escape(spec.image)}</code></div>")


def map_png(spec: UnitSpec, width: int, height: int, resize: str, pixel_perfect: bool,
            resolution: int) -> bytes:
    """PNG bytes of a unit's control map at the run's size, shrunk to MAP_PX (torch)."""
    path = Path(spec.image).expanduser()
    try:
        stat = path.stat()
    except OSError:
        raise ValueError(f"control: {spec.image} not found") from None
    return _map_png(str(path), stat.st_mtime_ns, stat.st_size, spec.preprocessor, width, height,
                    resize, pixel_perfect, resolution)


@functools.lru_cache(maxsize=16)
def _map_png(path: str, _mtime: int, _size: int, preprocessor: str, width: int, height: int,
             resize: str, pixel_perfect: bool, resolution: int) -> bytes:
    from helpers.diffusion.tools.control import control_map, to_pil
    from helpers.inputs import read_rgb

    image = read_rgb(path, "control")
    shown = to_pil(control_map(preprocessor, image, width, height, resize, pixel_perfect,
                               resolution))
    shown.thumbnail((MAP_PX, MAP_PX))
    return png(shown)


# --- the widgets ----------------------------------------------------------------------------------


class ControlUnits:
    """The add row and the units' preview under a form's `control` field.

    `controls` are the form's; `current()` gives its values now (the model too); `chosen`
    are notebook 2's ControlNets.
    """

    def __init__(self, controls: dict[str, Control], current: Callable[[], dict[str, Any]],
                 chosen: tuple[str, ...] = ()):
        self.controls, self.current = controls, current
        self.chosen = tuple(chosen)
        self.control = controls["control"]
        self.maps = False  # the maps were asked for: they follow the lines from now on
        self.kind = w.Dropdown(options=list(PREPROCESSOR_NAMES), value="canny",
                               description="add unit",
                               style=STYLE, layout=w.Layout(width="260px"))
        set_tooltip(self.kind, "the preprocessor that makes the control map from the image")
        self.net = w.Dropdown(options=self._nets(), layout=w.Layout(width="auto"))
        set_tooltip(self.net, "the ControlNet: default = the one chosen in notebook 2 for this "
                    "preprocessor, else the catalogue's")
        self.image = w.Text(placeholder="image path or URL", layout=w.Layout(width="220px"))
        self.weight = w.BoundedFloatText(value=1.0, min=0, max=2, step=0.05,
                                         layout=w.Layout(width="70px"))
        set_tooltip(self.weight, "control weight, 0..2")
        self.add = w.Button(description="Add", icon="plus", layout=w.Layout(width="auto"))
        set_tooltip(self.add, "add this unit as a line of the control box")
        self.note = w.HTML("", layout=indented())
        self.units = w.VBox([], layout=indented())
        self.units.add_class(css_class("control", "units"))
        self.maps_button = preview_button(
            "Preview maps", "draw each unit's control map at the run's size (loads torch the "
            "first time)", "dreamframe-preview-maps")
        for widget, part in ((self.kind, "kind"), (self.net, "net"), (self.image, "image"),
                             (self.weight, "weight"), (self.add, "add")):
            widget.add_class(css_class("control", f"unit-{part}"))
        row = w.HBox([self.kind, self.net, self.image, self.weight, self.add])
        self.control.add_below(row, self.note, self.units, self.maps_button)
        self.live = Live(self.add, self.refresh)
        self._pick()
        self.kind.observe(lambda _change: self._pick(), names="value")
        self.add.on_click(lambda _button: self.add_unit())
        self.maps_button.on_click(lambda _button: self.show_maps())
        self.control.observe(lambda _change: self._changed())
        for name in ("width", "height", "control_resize", "control_pixel_perfect",
                     "control_resolution"):
            if name in controls:
                controls[name].observe(lambda _change: self._changed(maps_only=True))

    @classmethod
    def of(cls, controls: dict[str, Control], *args: Any, **kwargs: Any) -> ControlUnits | None:
        """The units of a form with a `control` field, else None."""
        return cls(controls, *args, **kwargs) if "control" in controls else None

    def _nets(self) -> list[tuple[str, str]]:
        model = self.current().get("model", "")
        return [("default", DEFAULT), *((c, c) for c in self.chosen if fits(c, model))]

    def _pick(self) -> None:
        """Pick notebook 2's ControlNet for the preprocessor, else the default."""
        found = chosen_for(self.kind.value, self.current().get("model", ""), self.chosen)
        self.net.value = found if found in [value for _label, value in self._nets()] else \
            DEFAULT

    def applied(self, values: dict[str, Any]) -> dict[str, Any]:
        """Settings values whose units name the ControlNet chosen in notebook 2 where it is
        not their default anyway."""
        if not self.chosen or not values.get("control"):
            return values
        return {**values, "control": with_chosen(values["control"], values.get("model", ""),
                                                 self.chosen)}

    def add_unit(self) -> bool:
        """Add the row's unit as a line of the control box; an error in the row's note."""
        try:
            line = unit_line(self.kind.value, self.image.value, self.net.value,
                             float(self.weight.value))
        except ValueError as e:
            self.note.value = error_html(str(e))
            return False
        text = self.control.widget.value.rstrip("\n")
        self.control.widget.value = f"{text}\n{line}" if text.strip() else line
        self.note.value = hint_html(f"added: {line}")
        self.image.value = ""
        return True

    def _changed(self, maps_only: bool = False) -> None:
        if self.live.changed() and (self.maps or not maps_only):
            self.refresh()

    def refresh(self) -> None:
        """Each unit's line, image and (once asked for) map."""
        values = self.current()
        rows = []
        for index, line in enumerate(self.control.widget.value.splitlines(), start=1):
            if line.strip():
                rows.append(self._row(index, line.strip(), values))
        self.units.children = rows
        self.maps_button.layout.display = None if rows else HIDDEN

    def show_maps(self) -> None:
        """The button: draw the maps, and keep them up to date from now on."""
        self.maps = True
        self.live.begin()
        self.refresh()

    def _row(self, index: int, line: str, values: dict[str, Any]) -> w.Widget:
        from helpers.widgets.uploads import thumbnail_png

        try:
            spec = parse_unit(line)
            name, why = controlnet_of(spec, values.get("model", ""), self.chosen)
        except ValueError as e:
            return w.HTML(error_html(f"{index}. {e}"))
        shown: list[w.Widget] = [w.HTML(unit_html(index, spec, name, why),
                                        layout=w.Layout(width="420px"))]
        notes = []
        if "://" in spec.image:
            notes.append(hint_html(f"{spec.image}: fetched when the run starts"))
        elif spec.image == VIDEO:
            notes.append(hint_html("the map of each frame of the input video"))
        else:
            try:
                shown.append(w.Image(value=thumbnail_png(spec.image, "control"), format="png"))
                if self.maps and spec.preprocessor in NEED_A_MODEL:
                    notes.append(hint_html(f"the {spec.preprocessor} map is made when the run "
                                           "starts"))
                elif self.maps:
                    shown.append(w.Image(value=map_png(
                        spec, values["width"], values["height"], values["control_resize"],
                        values["control_pixel_perfect"], values["control_resolution"]),
                        format="png"))
            except (ValueError, RuntimeError, OSError) as e:
                notes.append(error_html(str(e)))
        row = w.HBox(shown)
        row.add_class(css_class("control", "unit"))
        return w.VBox([row, w.HTML("<br>".join(notes))]) if notes else row
