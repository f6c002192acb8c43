"""Notebook 2's form: the engine and its models, from the catalogue or a source of your own.

Each model field is a Combobox (a core widget on ipywidgets 7 and 8): its list holds the
catalogue's models of that kind, and any other text is a source of your own (a path, an URL, a
Google Drive id or a Hugging Face Hub id). Below, a table of the catalogue: size, licence and
whether it is in the workspace's cache already.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from helpers.engines import ENGINES

FIELDS = {name: engine.model_fields for name, engine in ENGINES.items()}
KINDS = {"vqgan": "vqgan", "clip": "clip", "model": "diffusion"}
HELP = {"vqgan": "VQGAN: a catalogue name, or your .ckpt (its .yaml beside it), URL or Drive id",
        "clip": 'CLIP: catalogue names or Hub ids with weights, "name:1 | name:0.5"',
        "model": "model: a catalogue name, Hub id, diffusers folder or .safetensors file",
        "vae": "VAE: another VAE (Hub id, folder or file); empty = the model's own",
        "model_config": "configs of a single-file model (folder or Hub id); empty = guessed"}


class ModelForm:
    """The engine dropdown, a field per model, and the catalogue table."""

    def __init__(self, values: dict[str, Any], cache: str | Path):
        import ipywidgets as w

        self.cache = Path(cache)
        self.engine = w.Dropdown(options=list(FIELDS),
                                 value=values.get("engine", next(iter(FIELDS))),
                                 description="engine")
        defaults = model_defaults()
        self.fields = {name: self._field(name, values.get(name, defaults[name]))
                       for names in FIELDS.values() for name in names}
        self.table = w.HTML()
        self.message = w.HTML()
        self.box = w.VBox()
        self.widget = w.VBox([self.engine, self.box, self.table, self.message])
        self.engine.observe(lambda _change: self._show(), names="value")
        self._show()

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
        self.box.children = [self.fields[n] for n in names]
        kinds = [KINDS[n] for n in names if n in KINDS]
        self.table.value = catalogue_table(kinds, self.cache)

    def values(self) -> dict[str, Any]:
        """The choice as model.json holds it: the engine and its model fields."""
        engine = self.engine.value
        return {"engine": engine, **{n: self.fields[n].value.strip() for n in FIELDS[engine]}}


def model_defaults() -> dict[str, str]:
    """Each model field's default, from the engines' settings classes."""
    import dataclasses

    return {f.name: f.default for engine in ENGINES.values()
            for f in dataclasses.fields(engine.settings) if f.name in engine.model_fields}


def _catalogue(kind: str) -> list:
    """The catalogue's models of a kind, the test models last."""
    from helpers.catalog import list_models

    return sorted(list_models(kind), key=lambda m: m.test)


def catalogue_table(kinds: list[str], cache: Path) -> str:
    """An HTML table of the catalogue's models of some kinds: size, licence, cached."""
    from helpers.download import is_cached
    from helpers.download.messages import human

    rows = []
    for kind in kinds:
        for model in _catalogue(kind):
            cached = "yes" if is_cached(model, cache) else "no"
            size = human(model.size) if model.size else "?"
            rows.append(f"<tr><td><code>{html.escape(model.name)}</code></td><td>{kind}</td>"
                        f"<td>{size}</td><td>{cached}</td>"
                        f"<td>{html.escape(model.licence)}</td></tr>")
    head = "<tr><th>name</th><th>kind</th><th>size</th><th>cached</th><th>licence</th></tr>"
    return f"<table style='font-size:small'>{head}{''.join(rows)}</table>"
