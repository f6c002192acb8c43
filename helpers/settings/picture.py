"""What a picture's metadata may set: what makes the picture, never paths, URLs or the machine.

A picture found on the web is untrusted. The settings stored in it (our `dreamframe` chunk, read
by `--from-image` and notebook 3's "fill from a picture") may set the prompt, seed, sampler,
sizes and the like, but never:

- the machine: the fields of the "device" group (device, precision, memory switches);
- paths and URLs: the `text="path"` fields (the output folder, init image, init video) and the
  text fields that name image files (`FILE_PROMPTS`: image prompts, ControlNet units);
- a model outside the catalogue: a model field (`MODEL_FIELDS`) is taken only when every name in
  it is a catalogue name, since a Hub id is a download and a path a file on this machine.

The fields left out keep their defaults or what the user gives; those that differ from the
default are named in one line, as the web UI names the infotext keys it does not use. A model
the picture names that the catalogue lacks is an error asking for the model (`REQUIRED_MODELS`):
making the picture with another model in silence would not be the picture.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from helpers.reporting import Log
from helpers.settings.fields import meta_of

FILE_PROMPTS = ("image_prompts", "control")  # text fields whose pieces are image paths or URLs
MODEL_FIELDS = ("model", "model_config", "vae", "vqgan", "clip", "mask_model",
                "depth_model", "hires_upscaler", "sd_upscale_upscaler",
                "restore_faces")  # names of models or files
# the upscalers that are no model: taken as they are (a Latent mode, None, Lanczos, Nearest)
BUILT_IN = ("hires_upscaler", "sd_upscale_upscaler")
REQUIRED_MODELS = ("model", "vqgan", "clip")  # the models that make the picture: never dropped
NOT_TAKEN = "not taken from the picture (it never sets paths, URLs, the machine or models " \
            "outside the catalogue)"


def picture_values(cls: type, stored: dict[str, Any], source: str, *, given: Any = (),
                   log: Log = print) -> dict[str, Any]:
    """The part of `stored` (settings of `cls` read from the picture `source`) that a picture
    may set; the fields left out that differ from their defaults are named through `log`, in
    one line. `given`: the field names the user sets, which need nothing from the picture."""
    taken = {k: v for k, v in stored.items() if k == "kind"}
    left_out = []
    for field in dataclasses.fields(cls):
        if field.name not in stored or field.name in given:
            continue
        value = stored[field.name]
        if _may_set(field, value):
            taken[field.name] = value
        elif field.name in REQUIRED_MODELS:
            raise ValueError(f"{field.name}: the picture {source} was made with {value!r}, which "
                             f"is not in the catalogue; give --{field.name.replace('_', '-')} "
                             "(a catalogue name, Hub id, folder or file)")
        elif value != _default(field):
            left_out.append(field.name)
    if left_out:
        log(f"from_image: {source}: {NOT_TAKEN}: {', '.join(left_out)}")
    return taken


def picture_fields(cls: type) -> tuple[str, ...]:
    """The fields of `cls` a picture may set at all (model fields: to catalogue names only)."""
    return tuple(f.name for f in dataclasses.fields(cls) if not _never(f))


def _never(field: dataclasses.Field) -> bool:
    """Whether a picture may never set this field: the machine, paths and URLs."""
    meta = meta_of(field)
    return meta.group == "device" or meta.text == "path" or field.name in FILE_PROMPTS


def _may_set(field: dataclasses.Field, value: Any) -> bool:
    """Whether a picture's stored value may set this field."""
    if _never(field):
        return False
    return _catalogued(field.name, value) if field.name in MODEL_FIELDS else True


def _catalogued(name: str, value: Any) -> bool:
    """Whether a model field's value names catalogue models only ("" is no model)."""
    from helpers.catalog import find_model
    from helpers.settings.vqgan_clip import parse_clip_spec

    if not isinstance(value, str):
        return False
    if name in BUILT_IN and value in _built_in(name):
        return True
    if name == "clip":
        try:
            names = [name for name, _weight in parse_clip_spec(value)]
        except ValueError:
            return False
    else:
        names = [value] if value.strip() else []
    return all(find_model(n) is not None for n in names)


def _built_in(name: str) -> tuple[str, ...]:
    """The upscaler names of a field that are no model file."""
    if name == "hires_upscaler":
        from helpers.diffusion.sampling.upscale import HIRES_UPSCALERS

        return HIRES_UPSCALERS
    from helpers.diffusion.tools.upscalers import PIL_UPSCALERS

    return PIL_UPSCALERS


def _default(field: dataclasses.Field) -> Any:
    """A field's default value (None where it has none)."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None
