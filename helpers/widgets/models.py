"""Notebook 2's form: the engine and its models, from the catalogue or a source of your own.

Each model field is a Combobox (a core widget on ipywidgets 7 and 8): its list holds the
catalogue's models of that kind, the inpainting checkpoints among them, and any other text is a
source of your own (a path, an URL, a Google Drive id or a Hugging Face Hub id). An engine
with ControlNet units (diffusion) also gets a list of the catalogue's ControlNets of the
model's family (`controlnets`): the ones chosen are downloaded with the model, saved in
model.json, and are notebook 3's defaults for its units (`helpers.widgets.control_units`).
Every engine also offers the image tools (`tools`): upscalers, face restorers and caption
models, downloaded with the models.
Below, a table of the catalogue: what each model is for, size, licence and whether it is in
the workspace's cache already.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from helpers.engines import ENGINES

FIELDS = {name: engine.model_fields for name, engine in ENGINES.items()}
# the engines whose runs take ControlNet units (a `control` setting): notebook 2 offers them
CONTROL_ENGINES = tuple(name for name, engine in ENGINES.items()
                        if "control" in {f.name for f in dataclasses.fields(engine.settings)})
CONTROLNETS = "controlnets"  # model.json's list of the ControlNets chosen
TOOLS = "tools"  # model.json's list of the image tools chosen (upscalers, faces, captions)
TOOL_KINDS = ("upscaler", "face", "caption")  # the catalogue kinds of the image tools
KINDS = {"vqgan": "vqgan", "clip": "clip", "model": "diffusion"}
HELP = {"vqgan": "VQGAN: a catalogue name, or your .ckpt (its .yaml beside it), URL or Drive id",
        "clip": 'CLIP: catalogue names or Hub ids with weights, "name:1 | name:0.5"',
        "model": "model: a catalogue name (the -inpainting ones repaint masks best), Hub id, "
                 "diffusers folder or .safetensors file",
        "vae": "VAE: another VAE (Hub id, folder or file); empty = the model's own",
        "model_config": "configs of a single-file model (folder or Hub id); empty = guessed"}


class ModelForm:
    """The engine dropdown, a field per model, and the catalogue table."""

    def __init__(self, values: dict[str, Any], cache: str | Path):
        import ipywidgets as w

        from helpers.widgets.compat import set_tooltip

        self.cache = Path(cache)
        self.engine = w.Dropdown(options=list(FIELDS),
                                 value=values.get("engine", next(iter(FIELDS))),
                                 description="engine")
        defaults = model_defaults()
        self.fields = {name: self._field(name, values.get(name, defaults[name]))
                       for names in FIELDS.values() for name in names}
        self.controlnets = w.SelectMultiple(options=[], description="ControlNets", rows=6,
                                            layout=w.Layout(width="80%"))
        set_tooltip(self.controlnets, "downloaded now, and offered for notebook 3's control "
                    "units (Ctrl or Shift + click: several; the model's family only)")
        self.controlnets.add_class("dreamframe-controlnets")
        self._offer(names_of(values.get(CONTROLNETS, ())))  # those that fit the model
        offered = tool_options()
        self.tools = w.SelectMultiple(options=offered, rows=6, layout=w.Layout(width="80%"),
                                      description="image tools")
        set_tooltip(self.tools, "upscalers (hires fix, upscale, videos), face restorers and "
                    "caption models (Describe an image) to download now (Ctrl or Shift + "
                    "click: several)")
        self.tools.value = tuple(n for n in names_of(values.get(TOOLS, ()))
                                 if n in {name for _label, name in offered})
        self.tools.add_class("dreamframe-tools")
        self.table = w.HTML()
        self.message = w.HTML()
        self.box = w.VBox()
        self.widget = w.VBox([self.engine, self.box, self.table, self.message])
        self.engine.observe(lambda _change: self._show(), names="value")
        if "model" in self.fields:
            self.fields["model"].observe(lambda _change: self._offer(self.controlnets.value),
                                         names="value")
        self._show()

    def model_value(self) -> str:
        """The diffusion model named now."""
        return self.fields["model"].value.strip() if "model" in self.fields else ""

    def _offer(self, keep: Iterable[str]) -> None:
        """The ControlNets of the model's family, those of `keep` that fit still chosen."""
        offered = controlnet_options(self.model_value())
        names = {name for _label, name in offered}
        self.controlnets.options = offered
        self.controlnets.value = tuple(name for name in keep if name in names)

    def _field(self, name: str, value: str) -> Any:
        import ipywidgets as w

        from helpers.widgets.compat import set_tooltip

        options = [m.name for m in _catalogue(KINDS[name])] if name in KINDS else []
        field = w.Combobox(value=value or "", options=options, ensure_option=False,
                           description=name, placeholder=HELP[name],
                           layout=w.Layout(width="80%"))
        set_tooltip(field, HELP[name])
        return field

    def _show(self) -> None:
        names = FIELDS[self.engine.value]
        control = self.engine.value in CONTROL_ENGINES
        self.box.children = [*(self.fields[n] for n in names), *([self.controlnets] * control),
                             self.tools]
        kinds = [KINDS[n] for n in names if n in KINDS] + ["controlnet"] * control + \
            list(TOOL_KINDS)
        self.table.value = catalogue_table(kinds, self.cache)

    def values(self) -> dict[str, Any]:
        """The choice as model.json holds it: the engine, its model fields, and for an engine
        with ControlNet units the ControlNets chosen."""
        engine = self.engine.value
        values: dict[str, Any] = {"engine": engine, **{n: self.fields[n].value.strip()
                                                       for n in FIELDS[engine]}}
        if engine in CONTROL_ENGINES:
            values[CONTROLNETS] = list(self.controlnets.value)
        values[TOOLS] = list(self.tools.value)
        return values


def model_defaults() -> dict[str, str]:
    """Each model field's default, from the engines' settings classes."""
    import dataclasses

    return {f.name: f.default for engine in ENGINES.values()
            for f in dataclasses.fields(engine.settings) if f.name in engine.model_fields}


def _catalogue(kind: str) -> list:
    """The catalogue's models of a kind, the test models last."""
    from helpers.catalog import list_models

    return sorted(list_models(kind), key=lambda m: m.test)


def controlnet_family_of(model: str) -> str | None:
    """The family whose ControlNets a catalogue diffusion model takes (an inpainting model:
    its base family's, from the family table), or None when the catalogue does not know it."""
    from helpers.catalog import find_model
    from helpers.diffusion.families import FAMILIES

    entry = find_model(model)
    if entry is None or entry.kind != "diffusion":
        return None
    return next((f.name for f in FAMILIES.values() if f.inpainting_model == entry.family),
                entry.family)


def family_title(name: str) -> str:
    """A family's name in messages ("SD", "SDXL")."""
    from helpers.diffusion.families import FAMILIES

    record = FAMILIES.get(name)
    return record.title if record is not None else name


def controlnet_options(model: str) -> list[tuple[str, str]]:
    """(label, name) of the catalogue's ControlNets a model takes (all for a model the
    catalogue does not know), the test ones only for a test model."""
    from helpers.catalog import find_model

    family = controlnet_family_of(model)
    entry = find_model(model)
    test = bool(entry and entry.test)
    return [(f"{m.name} ({family_title(m.family)})", m.name)
            for m in _catalogue("controlnet")
            if (family is None or m.family == family) and m.test == test]


def names_of(names: str | Iterable[str]) -> tuple[str, ...]:
    """Names from a list, or from text "a, b" (commas or spaces), each once."""
    if isinstance(names, str):
        names = [n for n in re.split(r"[,\s]+", names) if n]
    return tuple(dict.fromkeys(names))


def checked_controlnets(names: str | Iterable[str], model: str) -> tuple[str, ...]:
    """ControlNet names (a list, or text "a, b") checked against the catalogue and the
    model's family; `ValueError` naming `controlnets`."""
    from helpers.catalog import find_model

    names = names_of(names)
    family = controlnet_family_of(model)
    for name in names:
        entry = find_model(name)
        if entry is None or entry.kind != "controlnet":
            known = ", ".join(m.name for m in _catalogue("controlnet") if not m.test)
            raise ValueError(f"controlnets: {name!r} is not a catalogue ControlNet; one of "
                             f"{known}")
        if family is not None and entry.family != family:
            raise ValueError(f"controlnets: {name} steers {family_title(entry.family)} "
                             f"models, and the model {model} takes {family_title(family)} ones")
    return names


def tool_options() -> list[tuple[str, str]]:
    """(label, name) of the catalogue's image tools: upscalers, face restorers, captioners."""
    return [(f"{m.name} ({TOOL_TITLES[m.kind]})", m.name)
            for kind in TOOL_KINDS for m in _catalogue(kind)]


TOOL_TITLES = {"upscaler": "upscaler", "face": "restores faces", "caption": "describes images"}


def checked_tools(names: str | Iterable[str]) -> tuple[str, ...]:
    """Image tool names (a list, or text "a, b") checked against the catalogue; `ValueError`
    naming `tools`."""
    from helpers.catalog import find_model

    names = names_of(names)
    for name in names:
        entry = find_model(name)
        if entry is None or entry.kind not in TOOL_KINDS:
            known = ", ".join(n for _label, n in tool_options()
                              if not n.startswith("test-"))
            raise ValueError(f"tools: {name!r} is not a catalogue upscaler, face restorer or "
                             f"caption model; one of {known}")
    return names


def used_for(model: Any) -> str:
    """What a catalogue model is for, in the table."""
    if model.kind == "controlnet":
        return f"steers {family_title(model.family)} models"
    if model.kind == "diffusion" and _inpainting(model.family):
        return "inpainting and outpainting (a mask and an init image)"
    return {"diffusion": "txt2img, img2img, inpainting", "upscaler": "upscale, hires fix",
            "face": "restore faces", "caption": "describe an image (interrogate)"
            }.get(model.kind, "")


def _inpainting(family: str) -> bool:
    from helpers.diffusion.families import FAMILIES

    record = FAMILIES.get(family)
    return bool(record and record.inpainting)


def catalogue_table(kinds: list[str], cache: Path) -> str:
    """An HTML table of the catalogue's models of some kinds: what for, size, licence,
    cached."""
    from helpers.download import is_cached
    from helpers.download.messages import human

    rows = []
    for kind in kinds:
        for model in _catalogue(kind):
            cached = "yes" if is_cached(model, cache) else "no"
            size = human(model.size) if model.size else "?"
            rows.append(f"<tr><td><code>{html.escape(model.name)}</code></td><td>{kind}</td>"
                        f"<td>{html.escape(used_for(model))}</td>"
                        f"<td>{size}</td><td>{cached}</td>"
                        f"<td>{html.escape(model.licence)}</td></tr>")
    head = ("<tr><th>name</th><th>kind</th><th>for</th><th>size</th><th>cached</th>"
            "<th>licence</th></tr>")
    return f"<table style='font-size:small'>{head}{''.join(rows)}</table>"
