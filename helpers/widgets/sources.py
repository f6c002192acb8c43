"""Settings to fill a form with: from a run folder, a settings JSON file, or an image.

An image is ours (its `dreamframe` chunk holds the whole settings) or carries the web UI's
infotext. For diffusion, `helpers.diffusion.image_info.settings_from_image` reads both, as
`--from-image` does; other kinds take the prompt, seed, size and steps of an infotext.
Every failure is a `ValueError` that starts with "load:" and names the source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers.files import read_json
from helpers.settings.fields import decode
from helpers.settings.picture import picture_fields, picture_values

# infotext key -> settings field, tried for kinds whose images `settings_from_image` cannot read
INFOTEXT_FIELDS = {"Prompt": "prompt", "Negative prompt": "negative_prompt", "Seed": "seed",
                   "Size-1": "width", "Size-2": "height", "Steps": ("steps", "iterations")}


def read_source(cls: type, source: str | Path, current: dict[str, Any]) -> tuple[dict, str]:
    """The values a form of `cls` gets from `source`, and a line saying where they came from.

    `current` holds the form's values: an infotext's few parts are checked together with them.
    """
    text = str(source).strip()
    if not text:
        raise ValueError("load: give a run folder, a settings .json file or a .png image")
    path = Path(text).expanduser()
    if path.is_dir():
        data = _read_json(path / "settings.json", f"{path} is not a run folder (no settings.json)")
        return _validated(cls, data, path), f"filled from the run {path}"
    if not path.is_file():
        raise ValueError(f"load: {text} not found; give a run folder, a settings .json file or "
                         "a .png image")
    if path.suffix.lower() == ".json":
        return _validated(cls, _read_json(path, ""), path), f"filled from {path}"
    return _from_image(cls, path, current)


def _read_json(path: Path, missing: str) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"load: {missing}")
    try:
        data = read_json(path, str(path))
    except (OSError, ValueError) as e:
        raise ValueError(f"load: cannot read {path} ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"load: {path} holds no settings (not a JSON object)")
    return data


def _validated(cls: type, data: dict[str, Any], where: Path) -> dict[str, Any]:
    """The file's settings, checked by the settings class itself (so the form gets only valid
    values); another kind is refused by name."""
    kind = data.get("kind", cls.kind)
    if kind != cls.kind:
        raise ValueError(f"load: {where} holds {kind!r} settings, not {cls.kind!r} settings")
    try:
        return cls.from_dict(data).to_dict()
    except ValueError as e:
        raise ValueError(f"load: {where}: {e}") from None


def _from_image(cls: type, path: Path, current: dict[str, Any]) -> tuple[dict, str]:
    from helpers.runs import read_image_info

    if cls.kind == "diffusion":
        return _diffusion_image(path, current)
    try:
        infotext, stored = read_image_info(path)
    except (ValueError, OSError) as e:
        raise ValueError(f"load: {e}") from None
    if stored is not None and stored.get("kind") == cls.kind:
        return _stored_values(cls, stored, path, current)
    if infotext is None:
        raise ValueError(f"load: {path} holds no generation settings")
    values = _infotext_values(cls, infotext, path)
    if not values:
        raise ValueError(f"load: {path} holds no {cls.kind} settings")
    try:
        cls(**{**current, **values})
    except ValueError as e:
        raise ValueError(f"load: {path}: {e}") from None
    return values, f"filled {', '.join(values)} from the infotext of {path}"


def _stored_values(cls: type, stored: dict[str, Any], path: Path,
                   current: dict[str, Any]) -> tuple[dict, str]:
    """The values a picture's stored settings may set (`helpers.settings.picture`), checked
    together with the form's other values, which stay."""
    notes = [f"filled from the image {path}"]
    try:
        taken = picture_values(cls, stored, path.name,
                               log=lambda m: notes.append(m.removeprefix("from_image: ")))
    except ValueError as e:
        raise ValueError(f"load: {e}") from None
    checked = _validated(cls, {**current, **taken}, path)
    return {k: checked[k] for k in taken if k != "kind"}, "; ".join(notes)


def _diffusion_image(path: Path, current: dict[str, Any]) -> tuple[dict, str]:
    """The settings of a diffusion image; a model the catalogue lacks leaves the form's own
    model in place, and what the infotext holds that we do not use is said in the note."""
    from helpers.diffusion.image_info import settings_from_image
    from helpers.settings import DiffusionSettings

    notes = [f"filled from the image {path}"]

    def note(message: str) -> None:
        notes.append(message.removeprefix("from_image: "))

    try:
        try:
            settings = settings_from_image(path, log=note)
        except ValueError as e:
            if not str(e).startswith("model:") or not current.get("model"):
                raise
            notes = [f"filled from the image {path}; its model is not in the catalogue, so "
                     f"the model stays {current['model']}"]
            settings = settings_from_image(path, log=note, model=current["model"])
    except (ValueError, OSError) as e:
        raise ValueError(f"load: {str(e).removeprefix('from_image: ')}") from None
    allowed = picture_fields(DiffusionSettings)  # the form keeps its machine and paths
    return {k: v for k, v in settings.to_dict().items() if k in allowed}, "; ".join(notes)


def _infotext_values(cls: type, infotext: str, path: Path) -> dict[str, Any]:
    """The fields of `cls` an infotext gives: prompt, seed, size, steps (or iterations)."""
    import dataclasses

    from helpers.metadata.infotext import parse_infotext

    info = parse_infotext(infotext)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, names in INFOTEXT_FIELDS.items():
        name = next((n for n in (names if isinstance(names, tuple) else (names,)) if n in fields),
                    None)
        if name is None or key not in info or (key == "Negative prompt" and not info[key]):
            continue
        values[name] = info[key] if isinstance(fields[name].default, str) else _whole(
            info[key], key, path)
    return decode(values)


def _whole(text: str, key: str, path: Path) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"load: {path}: {key} {text!r} is not a whole number") from None
