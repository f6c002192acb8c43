"""`SettingsForm`: the notebook form of a settings class, generated from its fields' metadata.

A field added to a settings class appears here with its help, range and choices, as it does in
the CLI (`helpers.cli.add_settings_flags`). The form never depends on a callback having run
(papermill runs notebooks without a front end): `values()`, `settings()` and `save()` read the
widgets directly. Callbacks only add what a person sees: previews, checks, thumbnails, presets.

A diffusion form's image fields come with a mode (txt2img, img2img, inpaint, outpaint) that
shows the ones it uses and decides which go into the settings (`image_section`), and its
`control` lines with an add row and a preview of each unit (`control_units`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ipywidgets as w

from helpers.settings.base import MOTION
from helpers.settings.fields import decode, meta_of
from helpers.widgets.control_units import ControlUnits
from helpers.widgets.controls import Control, make_control
from helpers.widgets.image_section import ImageSection
from helpers.widgets.layout import SizePresets, action_row, form_body
from helpers.widgets.preview import (
    error_html,
    ok_html,
    prompt_preview,
    prompt_schedule_preview,
    schedule_check,
)
from helpers.widgets.uploads import UPLOAD_FIELDS, PathControl

PROMPT_FIELDS = ("prompt", "negative_prompt", "image_prompts", "noise_prompts")
SCHEDULE_FIELDS = (*MOTION, "strength_schedule", "noise_schedule")


class SettingsForm:
    """The form of a settings class: one widget per field not in `exclude`.

    `values` gives initial field values (e.g. params.json); excluded fields get no widget and
    keep their value from `values` or the default. Uploaded files are saved into `uploads`.
    A diffusion form also takes `mode` (txt2img, img2img, inpaint, outpaint; empty: the one
    `values` make), `cache` (where the mask preview fetches CLIPSeg) and `controlnets` (notebook
    2's, the units' defaults).
    """

    def __init__(self, cls: type, values: dict | None = None, *, exclude: tuple[str, ...] = (),
                 uploads: str | Path | None = None, mode: str = "",
                 cache: str | Path | None = None, controlnets: tuple[str, ...] = ()):
        self.cls = cls
        self.uploads = Path(uploads).expanduser() if uploads is not None else None
        self.message = w.HTML("")
        self.message.add_class("dreamframe-message")
        self.problem = ""  # the error `message` shows, as text ("" when none)
        fields = dataclasses.fields(cls)
        unknown = sorted(set(exclude) - {f.name for f in fields})
        if unknown:
            raise ValueError(f"exclude: {', '.join(unknown)} are not {cls.kind} settings")
        self.exclude = tuple(exclude)
        given = _decoded(values or {})
        self.fixed = {f.name: given.get(f.name, f.default) for f in fields if f.name in exclude}
        self.controls: dict[str, Control] = self._make_controls(fields)
        self.image: ImageSection | None = None
        self.units: ControlUnits | None = None
        self._quiet = False
        with self.quiet():
            for f in fields:
                if f.name in self.controls:
                    self.controls[f.name].set(f.default)
        self._sizes = self._size_presets()
        self.size_preset = self._sizes.widget if self._sizes else None  # the Dropdown
        self._live()
        self.image = ImageSection.of(self.controls, {f.name: f.default for f in fields},
                                     self._current, self._changed, cache)
        self.units = ControlUnits.of(self.controls, self._current, tuple(controlnets))
        self.source, load_row = action_row(
            "a run folder, a settings .json or a .png", "Load", self.load,
            "fill the form from a run folder, a settings JSON file, or an image (ours or the "
            "web UI's)")
        extra: dict[str, list[w.Widget]] = {}
        if self.image:  # the mode first in the Image section, the mask source above the mask
            extra = {"width": [self.image.mode_row], "mask": [self.image.source_row]}
        if self.size_preset:
            extra.setdefault("width", []).append(self.size_preset)
        self.widget = w.VBox([*form_body(list(self.controls.values()), extra), load_row,
                              self.message])
        self.widget.add_class(f"dreamframe-form-{cls.kind}")
        problems = self._fill(values or {})
        if mode:
            self.set_mode(mode)
        if problems:
            self._report("; ".join(problems), True)
        for section in (self.image, self.units):
            if section:
                section.live.ready = True  # changes from now on are a person's

    # --- building --------------------------------------------------------------------------

    def _make_controls(self, fields: tuple[dataclasses.Field, ...]) -> dict[str, Control]:
        hints = typing.get_type_hints(self.cls)
        controls: dict[str, Control] = {}
        for f in fields:
            if f.name in self.exclude:
                continue
            if f.name in UPLOAD_FIELDS:
                controls[f.name] = PathControl(f.name, meta_of(f), self.uploads, self._report)
            else:
                controls[f.name] = make_control(f.name, hints[f.name], meta_of(f))
        return controls

    def _size_presets(self) -> SizePresets | None:
        width, height = self.controls.get("width"), self.controls.get("height")
        return SizePresets(width, height) if width and height else None

    def _live(self) -> None:
        """Previews under prompt fields, checks under schedules, the whole form checked on
        every change."""
        engine = self.cls.kind  # the engine whose prompt grammar the previews show
        for name, control in self.controls.items():
            if name in PROMPT_FIELDS:
                kind = "negative" if name == "negative_prompt" else engine
                control.watch(lambda text, kind=kind: prompt_preview(text, kind))
            elif name == "prompt_schedule":
                control.watch(lambda text: prompt_schedule_preview(text, engine))
            elif name in SCHEDULE_FIELDS:
                empty_ok = _default(self.cls, name) == ""
                control.watch(lambda text, name=name, empty_ok=empty_ok:
                              schedule_check(text, name, empty_ok))
            control.observe(lambda change: self._changed())

    def _changed(self) -> None:
        if not self._quiet:
            self.check()

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """No whole-form check while several widgets change (a fill)."""
        before, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = before

    def _report(self, text: str, error: bool) -> None:
        self.message.value = error_html(text) if error else ok_html(text)
        self.problem = text if error else ""

    # --- the API the notebooks use ------------------------------------------------------------

    def field(self, name: str) -> w.Widget:
        """The value widget of a field (`KeyError` naming the field if it has none)."""
        if name not in self.controls:
            why = "is excluded from" if name in self.exclude else "is not a field of"
            raise KeyError(f"{name} {why} this {self.cls.kind} form")
        return self.controls[name].widget

    def values(self) -> dict[str, Any]:
        """The current field values as settings values, read from the widgets; `ValueError`
        naming the field for a box that does not read (e.g. "W H" with letters)."""
        values = {}
        for f in dataclasses.fields(self.cls):
            values[f.name] = self.fixed[f.name] if f.name in self.fixed else (
                self.controls[f.name].get())
        if self.image:
            values = self.image.applied(values)
        if self.units:
            values = self.units.applied(values)
        return values

    @property
    def mode(self) -> str:
        """The image mode (txt2img, img2img, inpaint, outpaint); "" for a form without one."""
        return self.image.mode.value if self.image else ""

    def set_mode(self, mode: str) -> None:
        """Choose the image mode; `ValueError` naming `mode` for a form without modes or an
        unknown one."""
        if not self.image:
            raise ValueError(f"mode: the {self.cls.kind} form has no image modes (got {mode!r})")
        self.image.set_mode(mode)

    def settings(self) -> Any:
        """The settings the form shows, validated: `ValueError` with the settings' message (or
        naming what the image mode needs and the form lacks)."""
        settings = self.cls(**self.values())
        if self.image:
            self.image.require(settings)
        return settings

    def check(self) -> bool:
        """Validate; show the error in `message` (red), or clear it."""
        try:
            self.settings()
        except ValueError as e:
            self._report(str(e), True)
            return False
        self.message.value = self.problem = ""
        return True

    def fill(self, values: dict) -> None:
        """Set the widgets from a dict, then check the form; unknown keys (e.g. "kind") and
        excluded fields are left alone; a value a widget cannot take is named in `message`."""
        problems = self._fill(values)
        if problems:
            self._report("; ".join(problems), True)
        else:
            self.check()

    def _fill(self, values: dict) -> list[str]:
        """Set the widgets; the errors of the values they cannot take."""
        problems = []
        with self.quiet():
            for name, value in _decoded(values).items():
                if name in self.controls:
                    try:
                        self.controls[name].set(value)
                    except ValueError as e:
                        problems.append(str(e))
            if self.image:
                self.image.derive(values)
        if self._sizes:
            self._sizes.sync()
        return problems

    def save(self, path: str | Path) -> bool:
        """Write the settings JSON to `path` atomically when the form is valid, and say so;
        write nothing when it is not."""
        from helpers.files import atomic_write_text

        if not self.check():
            return False
        try:
            atomic_write_text(Path(path).expanduser(), self.settings().to_json())
        except OSError as e:
            self._report(f"cannot write {path}: {e}", True)
            return False
        self._report(f"saved to {path}", False)
        return True

    def load(self, source: str | Path) -> bool:
        """Fill from a run folder, a settings JSON file or an image (ours or the web UI's);
        an error goes to `message` and leaves the form as it was."""
        from helpers.widgets.sources import read_source

        try:
            values, note = read_source(self.cls, source, self._current())
        except ValueError as e:
            self._report(str(e), True)
            return False
        problems = self._fill(values)
        if problems:  # read_source checked the values: a widget refused one of them
            self._report("; ".join(problems), True)
        elif self.check():
            self._report(note, False)
        return True  # filled; a check that failed shows what the form now lacks

    def _current(self) -> dict[str, Any]:
        """The values now, or the defaults where a box does not read."""
        try:
            return self.values()
        except ValueError:
            return {f.name: self.fixed.get(f.name, f.default) for f in dataclasses.fields(self.cls)}


def _decoded(values: dict) -> dict[str, Any]:
    """JSON-ish values as settings values: lists as tuples, "inf" strings as floats."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in decode(dict(values)).items()}


def _default(cls: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)
