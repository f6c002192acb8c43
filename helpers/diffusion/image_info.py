"""What each diffusion image carries: the web UI's infotext, written and read back.

Writing (`infotext_params`, `save_image`) follows the web UI 1.9+: `Sampler` holds the base name
and `Schedule type` the schedule the sampler ran; the hires keys appear only when hires is on,
the SD upscale keys (and our `SD upscale factor`; `Size` is then the tile size) only when it is;
the inpaint keys (Mask blur, Mask mode, Inpaint area, Masked area padding, Masked content, an
inpainting model's Conditional mask weight) where the web UI writes them; LoRA and
textual-inversion hashes as its Lora and TI hashes; ControlNet units as its ControlNet extension
writes them (`ControlNet 0: "Module: canny, Model: ..., Weight: 1, ..."`), read back into the
control mode, resize mode, pixel perfect and preprocessor resolution of the first unit (the
units themselves are not: an infotext holds no control image). Reading (`settings_from_image`)
takes our own settings where the image holds them (only what makes the picture:
`helpers.settings.picture`), else its infotext: `USED_KEYS` lists every key we read, and the
others are reported in one line, never dropped in silence. An infotext from before the web UI
1.0 (`Size` the final size, `First pass size` the first pass's) is read as the web UI reads it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers import runs
from helpers.diffusion.tools.control.units import MAX_UNITS
from helpers.reporting import Log
from helpers.settings import DiffusionSettings
from helpers.settings.picture import picture_values

if TYPE_CHECKING:
    from helpers.diffusion.loading import Loaded
    from helpers.diffusion.loop import Generated

RNG_SOURCES = {"cpu": "CPU", "nv": "NV"}  # "gpu" is the web UI's default: no RNG key
# infotext key -> (settings field, type), for the values read as they are
NUMBERS = {"Steps": ("steps", int), "CFG scale": ("cfg_scale", float), "Seed": ("seed", int),
           "Size-1": ("width", int), "Size-2": ("height", int), "Clip skip": ("clip_skip", int),
           "Hires upscale": ("hires_scale", float), "Hires steps": ("hires_steps", int),
           "Mask blur": ("mask_blur", int), "Masked area padding": ("inpaint_padding", int),
           "SD upscale factor": ("sd_upscale", float),
           "SD upscale overlap": ("sd_upscale_overlap", int),
           "Face visibility": ("face_visibility", float),
           "CodeFormer weight": ("codeformer_weight", float)}
# keys read by their own rule in `_from_infotext`
RULES = ("Prompt", "Negative prompt", "Size", "Sampler", "Schedule type", "Model",
         "Denoising strength", "RNG", "Hires upscaler", "Hires resize", "First pass size",
         "Prompt mode", "Mask mode", "Masked content", "Inpaint area", "Conditional mask weight",
         "Outpaint", "Outpaint fill", "SD upscale upscaler", "Face restoration")
# the web UI's inpaint radio buttons: infotext value -> our setting's value
MASK_MODES = {"Inpaint masked": False, "Inpaint not masked": True}
INPAINT_AREAS = {"Whole picture": "whole picture", "Only masked": "only masked"}
MASK_WEIGHT = "Conditional mask weight"  # an inpainting model's; only 1 is made here
# keys that describe the image and have no setting to fill
DESCRIPTIVE = ("Model hash", "Lora hashes", "TI hashes", "Version", "Animation", "Frame")
# the ControlNet extension's units (`ControlNet 0`, ...): read by `_control`
CONTROL_KEYS = tuple(f"ControlNet {i}" for i in range(MAX_UNITS))
# a unit's modes the extension keeps per unit and our settings once for all (`_control`)
UNIT_MODES = ("Control Mode", "Resize Mode", "Pixel Perfect", "Processor Res")
USED_KEYS = frozenset({*NUMBERS, *RULES, *DESCRIPTIVE, *CONTROL_KEYS})


# --- writing ------------------------------------------------------------------------------------


def image_settings(settings: DiffusionSettings, seed: int) -> DiffusionSettings:
    """The settings that re-make one image alone: its seed, one batch of one."""
    return settings.replace(seed=seed, batch_count=1, batch_size=1)


def schedule_type(sampler: str, schedule: str) -> str:
    """`Schedule type` as the web UI writes it: a k-diffusion sampler's "Automatic" is written
    as the schedule it stands for (Karras for DPM++ 2M), except where that is the model's own
    (Euler a: "Automatic"); the timestep samplers write the choice as it is."""
    from helpers.diffusion.samplers import AUTOMATIC, get_sampler

    found = get_sampler(sampler)
    if found.kind == "k" and schedule == AUTOMATIC and found.schedule != "Uniform":
        return found.schedule
    return schedule


def hires_params(settings: DiffusionSettings) -> dict[str, Any]:
    """The hires keys, written only when hires is on; `Hires steps` only when not 0."""
    if settings.hires_scale <= 1:
        return {}
    return {"Denoising strength": f"{settings.hires_strength:g}",
            "Hires upscale": f"{settings.hires_scale:g}",
            "Hires steps": settings.hires_steps or None,
            "Hires upscaler": settings.hires_upscaler}


def inpaint_params(settings: DiffusionSettings) -> dict[str, Any]:
    """The inpaint keys, in the web UI's order and with its values, each only where the web UI
    writes it (Mask blur above 0, Mask mode when inverted, Inpaint area and padding for only
    masked, Masked content but for original); none without a mask. An outpaint run has Mask
    blur and our own `Outpaint` (the borders; `Size` is the grown canvas) and `Outpaint fill`."""
    if settings.outpaint.strip():
        return {"Mask blur": settings.mask_blur or None, "Outpaint": settings.outpaint,
                "Outpaint fill": settings.outpaint_fill}
    if not (settings.mask or settings.mask_prompt.strip()):
        return {}
    only = settings.inpaint_area == "only masked"
    return {"Mask mode": "Inpaint not masked" if settings.invert_mask else None,
            "Mask blur": settings.mask_blur or None,
            "Inpaint area": "Only masked" if only else None,
            "Masked area padding": settings.inpaint_padding if only else None,
            "Masked content": None if settings.masked_content == "original"
            else settings.masked_content}


def sd_upscale_params(settings: DiffusionSettings) -> dict[str, Any]:
    """The web UI's SD upscale keys and our `SD upscale factor` (the web UI writes none; `Size`
    is the tile size), only when SD upscale is on."""
    if settings.sd_upscale <= 1:
        return {}
    return {"SD upscale overlap": settings.sd_upscale_overlap,
            "SD upscale upscaler": settings.sd_upscale_upscaler,
            "SD upscale factor": f"{settings.sd_upscale:g}"}


def face_params(settings: DiffusionSettings) -> dict[str, Any]:
    """`Face restoration` (the model, as the web UI writes it) and, where not the default, our
    `Face visibility` and the extras tab's `CodeFormer weight`; none when it is off."""
    if not settings.restore_faces:
        return {}
    codeformer = "codeformer" in settings.restore_faces.casefold()
    return {"Face restoration": settings.restore_faces,
            "Face visibility": None if settings.face_visibility == 1
            else f"{settings.face_visibility:g}",
            "CodeFormer weight": f"{settings.codeformer_weight:g}" if codeformer else None}


def control_params(settings: DiffusionSettings, loaded: Loaded) -> dict[str, Any]:
    """The ControlNet extension's `ControlNet N` keys, one a unit; none without control."""
    if not settings.control.strip():
        return {}
    from helpers.diffusion.tools.control.run import infotext_units

    return infotext_units(settings, loaded)


def infotext_params(settings: DiffusionSettings, seed: int, loaded: Loaded,
                    hashes: dict[str, str] | None = None) -> dict[str, Any]:
    """The web UI's params line of one image, its keys in the web UI's order (`hashes`: the
    run's `infotext_hashes`, else they are looked up)."""
    from helpers.diffusion.extras import infotext_hashes
    from helpers.diffusion.samplers import get_sampler

    hashes = infotext_hashes(settings) if hashes is None else hashes
    sampler = get_sampler(settings.sampler).name
    img2img = bool(settings.init_image) and settings.hires_scale <= 1
    return {
        "Steps": settings.steps, "Sampler": sampler,
        "Schedule type": schedule_type(settings.sampler, settings.schedule),
        "CFG scale": f"{settings.cfg_scale:g}", "Seed": seed,
        "Size": "{}x{}".format(*settings.canvas_size()),
        "Model hash": loaded.model_hash or None, "Model": loaded.ref.label,
        "VAE": loaded.vae_label or None,
        "Denoising strength": f"{settings.strength:g}" if img2img else None,
        MASK_WEIGHT: 1.0 if _inpainting_model(loaded) else None,
        "Clip skip": settings.clip_skip if settings.clip_skip > 1 else None,
        "RNG": RNG_SOURCES.get(settings.rng),
        **inpaint_params(settings), **control_params(settings, loaded), **hires_params(settings),
        **sd_upscale_params(settings), **face_params(settings), **hashes,
        "Prompt mode": settings.prompt_mode, "Animation": settings.animate or None,
    }


def _inpainting_model(loaded: Loaded) -> bool:
    """Whether the model is a dedicated inpainting one (a stand-in without a family is not)."""
    return bool(getattr(getattr(loaded, "family", None), "inpainting", False))


def save_image(run_dir: Path, item: Generated, settings: DiffusionSettings, loaded: Loaded,
               hashes: dict[str, str] | None = None) -> Path:
    """Save one image as a frame with its infotext and settings (`hashes`: as for
    `infotext_params`)."""
    from helpers.diffusion.frames import prompt_at
    from helpers.metadata.infotext import format_infotext

    params = infotext_params(settings, item.seed, loaded, hashes)
    prompt = settings.prompt
    if settings.animate:
        params["Frame"] = item.index
        prompt = prompt_at(settings, item.index - 1)
    infotext = format_infotext(prompt, settings.negative_prompt, params)
    own = (settings if settings.animate else image_settings(settings, item.seed)).to_json()
    return runs.save_frame(run_dir, item.index, item.image, infotext, own)


# --- reading ------------------------------------------------------------------------------------


def settings_from_image(png: str | os.PathLike, *, log: Log = print,
                        **overrides: Any) -> DiffusionSettings:
    """Settings stored in an image (ours, or a web UI infotext in a PNG, JPEG or WebP), with
    `overrides` applied; infotext keys we do not use are reported through `log`, in one line."""
    from helpers.metadata.infotext import parse_infotext

    try:
        infotext, stored = runs.read_image_info(Path(png))
    except ValueError as e:
        raise ValueError(f"from_image: {e}") from None
    if stored is not None:
        if stored.get("kind") != DiffusionSettings.kind:
            raise ValueError(f"from_image: {png} was made by a {stored.get('kind')!r} run, "
                             "not a diffusion run")
        taken = picture_values(DiffusionSettings, stored, Path(png).name, given=overrides,
                               log=log)
        return DiffusionSettings.from_dict({**taken, **overrides})
    if infotext is None:
        raise ValueError(f"from_image: {png} holds no generation settings")
    info = parse_infotext(infotext)
    unused = unused_keys(info)
    if unused:
        log(f"from_image: {Path(png).name}: not used (Dreamframe has no setting for them): "
            f"{', '.join(unused)}")
    _report_control(info, Path(png).name, log)
    if "model" not in overrides and "Model" not in info:
        log(f"from_image: {Path(png).name} does not name its model; using "
            f"{DiffusionSettings().model}")
    return DiffusionSettings(**{**_from_infotext(info, overrides), **overrides})


def unused_keys(info: dict[str, str]) -> list[str]:
    """The infotext's keys that we do not read (`Size-1` and the like count as their `Size`)."""
    def derived(key: str) -> bool:
        return key[-2:] in ("-1", "-2") and key[:-2] in info

    return [k for k in info if (k not in USED_KEYS and not derived(k))
            or (k == MASK_WEIGHT and _float_or_none(info[k]) != 1)]


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _from_infotext(info: dict[str, str], overrides: dict[str, Any]) -> dict[str, Any]:
    """Our settings from a web UI infotext; values that `overrides` replace are not read, so an
    override fixes what we cannot read."""
    info = _outpainted_size(_first_pass_size(info))
    values: dict[str, Any] = {"prompt": info["Prompt"], "negative_prompt": info["Negative prompt"]}
    for key, (name, kind) in NUMBERS.items():
        if key in info and name not in overrides:
            values[name] = _number(key, info[key], kind)
    values.update(_sampler(info, overrides))
    values.update(_model(info, overrides))
    values.update(_hires(info, overrides))
    values.update(_inpaint(info, overrides))
    values.update(_outpaint(info, overrides))
    values.update(_sd_upscale(info, overrides))
    if "Face restoration" in info and "restore_faces" not in overrides:
        values["restore_faces"] = _face_restorer(info["Face restoration"])
    values.update(_control(info, overrides))
    if "Denoising strength" in info:
        hires = overrides.get("hires_scale", values.get("hires_scale", 1)) > 1
        name = "hires_strength" if hires else "strength"
        if name not in overrides:
            values[name] = _number("Denoising strength", info["Denoising strength"], float)
    if "rng" not in overrides:
        values["rng"] = _rng(info.get("RNG", "GPU"))  # none written: the web UI's GPU
    if info.get("Prompt mode") in DiffusionSettings.PROMPT_MODES:
        values["prompt_mode"] = info["Prompt mode"]
    return values


def catalogued(name: str, built_in: tuple[str, ...] = ()) -> bool:
    """Whether `name` is one of `built_in` or a catalogue model (not a file or URL)."""
    from helpers.catalog import find_model

    return name in built_in or find_model(name) is not None


def _face_restorer(name: str) -> str:
    """`Face restoration` (the web UI writes GFPGAN or CodeFormer): a catalogue face model,
    in the catalogue's spelling, whatever the case."""
    from helpers.catalog import list_models

    found = {m.name.casefold(): m.name for m in list_models("face")}.get(name.casefold())
    if found is None:
        raise ValueError(f"from_image: Face restoration {name!r} is not a face model we have; "
                         "give --restore-faces")
    return found


def _inpaint(info: dict[str, str], overrides: dict[str, Any]) -> dict[str, Any]:
    """Mask mode, Masked content and Inpaint area (the web UI's radio values; Mask blur and
    Masked area padding are numbers); an unknown value is an error naming its key."""
    from helpers.settings.diffusion import MASKED_CONTENT
    from helpers.settings.fields import choose

    rules = (("Mask mode", "invert_mask", MASK_MODES), ("Inpaint area", "inpaint_area",
             INPAINT_AREAS), ("Masked content", "masked_content",
                              {name: name for name in MASKED_CONTENT}))
    values: dict[str, Any] = {}
    for key, name, known in rules:
        if key in info and name not in overrides:
            try:
                values[name] = known[choose(key, info[key], tuple(known), casefold=True)]
            except ValueError as e:
                raise ValueError(f"from_image: {e}; give --{name.replace('_', '-')}") from None
    return values


def _outpaint(info: dict[str, str], overrides: dict[str, Any]) -> dict[str, Any]:
    """`Outpaint` (the borders, read by `_outpainted_size`) and `Outpaint fill`."""
    from helpers.settings.diffusion import OUTPAINT_FILLS
    from helpers.settings.fields import choose

    values: dict[str, Any] = {}
    if "Outpaint" in info and "outpaint" not in overrides:
        values["outpaint"] = info["Outpaint"]
    if "Outpaint fill" in info and "outpaint_fill" not in overrides:
        try:
            values["outpaint_fill"] = choose("Outpaint fill", info["Outpaint fill"],
                                             OUTPAINT_FILLS, casefold=True)
        except ValueError as e:
            raise ValueError(f"from_image: {e}; give --outpaint-fill") from None
    return values


def _sd_upscale(info: dict[str, str], overrides: dict[str, Any]) -> dict[str, Any]:
    """`SD upscale upscaler`, taken when it is a PIL or catalogue upscaler (a picture never
    names a file or URL); the web UI's SD upscale keys without our factor ask for it."""
    from helpers.diffusion.tools.upscalers import catalogue_upscaler, pil_upscaler

    values: dict[str, Any] = {}
    name = info.get("SD upscale upscaler")
    if name is not None and "sd_upscale_upscaler" not in overrides:
        found = pil_upscaler(name) or getattr(catalogue_upscaler(name), "name", None)
        if found is None:
            raise ValueError(f"from_image: SD upscale upscaler {name!r} is not one we have; "
                             "give --sd-upscale-upscaler")
        values["sd_upscale_upscaler"] = found
    web_ui = name is not None or "SD upscale overlap" in info
    if web_ui and "SD upscale factor" not in info and "sd_upscale" not in overrides:
        raise ValueError("from_image: the image was SD upscaled, and its infotext holds no "
                         "SD upscale factor (the web UI writes none); give --sd-upscale")
    return values


def control_fields(info: dict[str, str]) -> list[dict[str, str]]:
    """The `Key: value` fields of each `ControlNet N` unit of an infotext, in order."""
    units = []
    for key in CONTROL_KEYS:
        if key in info:
            pairs = (part.partition(":") for part in info[key].split(","))
            units.append({k.strip(): v.strip() for k, _, v in pairs if k.strip()})
    return units


def _control(info: dict[str, str], overrides: dict[str, Any]) -> dict[str, Any]:
    """The first ControlNet unit's control mode, resize mode, pixel perfect and preprocessor
    resolution, where they are ours (the extension writes one set a unit; ours hold for all)."""
    from helpers.diffusion.tools.control import CONTROL_MODES, RESIZE_MODES

    units = control_fields(info)
    if not units:
        return {}
    unit, values = units[0], {}
    rules = {"Control Mode": ("control_mode", lambda v: v if v in CONTROL_MODES else None),
             "Resize Mode": ("control_resize", lambda v: v if v in RESIZE_MODES else None),
             "Pixel Perfect": ("control_pixel_perfect",
                               lambda v: {"True": True, "False": False}.get(v)),
             "Processor Res": ("control_resolution",
                               lambda v: int(v) if v.isdigit() and 64 <= int(v) <= 2048
                               else None)}
    for key, (name, read) in rules.items():
        value = read(unit.get(key, ""))
        if value is not None and name not in overrides:
            values[name] = value
    return values


def _report_control(info: dict[str, str], source: str, log: Log) -> None:
    """The ControlNet units an infotext names, which set no `control` (no image is in it)."""
    units = [f"{key} ({unit.get('Module', '?')}, weight {unit.get('Weight', '?')})"
             for key, unit in zip([k for k in CONTROL_KEYS if k in info],
                                  control_fields(info), strict=True)]
    if units:
        log(f"from_image: {source}: not taken: control, as the infotext holds no control "
            f"image (give --control TYPE:IMAGE): {', '.join(units)}")
    fields = control_fields(info)
    differ = [key for key in UNIT_MODES if len({unit.get(key) for unit in fields}) > 1]
    if differ:
        log(f"from_image: {source}: the units' {', '.join(differ)} differ; the first unit's "
            "hold for every unit here")


def _rng(name: str) -> str:
    sources = {"GPU": "gpu", **{v: k for k, v in RNG_SOURCES.items()}}
    if name.upper() not in sources:
        raise ValueError(f"from_image: RNG {name!r} is not one we have "
                         f"({', '.join(sources)}); give --rng")
    return sources[name.upper()]


def _number(key: str, text: str, kind: type) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"from_image: {key} {text!r} is not a number") from None


def _sampler(info: dict[str, str], overrides: dict[str, Any]) -> dict[str, Any]:
    """`sampler` and `schedule` from Sampler and Schedule type (or an old combined name)."""
    from helpers.diffusion.samplers import sampler_from_infotext

    if "Sampler" in info and "sampler" not in overrides:
        sampler, schedule = sampler_from_infotext(info["Sampler"], info.get("Schedule type", ""))
        return {"sampler": sampler} if "schedule" in overrides else {
            "sampler": sampler, "schedule": schedule}
    if "Schedule type" in info and "schedule" not in overrides:
        return {"schedule": info["Schedule type"]}
    return {}


def _model(info: dict[str, str], overrides: dict[str, Any]) -> dict[str, Any]:
    """The infotext's Model, if the catalogue has it; any other name is an error naming it."""
    from helpers.catalog import find_model

    name = info.get("Model")
    if "model" in overrides or name is None:
        return {}
    found = find_model(name)
    if found is not None and found.kind == "diffusion":
        return {"model": name}
    known = f" (hash {info['Model hash']})" if info.get("Model hash") else ""
    raise ValueError(f"model: the image was made with {name!r}{known}, which is not in the "
                     "catalogue; give --model (a catalogue name, Hub id, folder or file)")


def _hires(info: dict[str, str], overrides: dict[str, Any]) -> dict[str, Any]:
    """Hires upscaler (the web UI's name, any case), and a Hires resize read as its scale."""
    from helpers.diffusion.sampling.upscale import HIRES_UPSCALERS, hires_upscaler

    values: dict[str, Any] = {}
    upscaler = info.get("Hires upscaler")
    if upscaler is not None and "hires_upscaler" not in overrides:
        try:
            name = hires_upscaler(upscaler)
            if not catalogued(name, HIRES_UPSCALERS):  # a picture never names a file or URL
                raise ValueError(f"{upscaler!r} is not one of ours or the catalogue's")
        except ValueError as e:
            raise ValueError(f"from_image: Hires upscaler {e}; give --hires-upscaler") from None
        values["hires_upscaler"] = name
    if "Hires upscale" not in info and "Hires resize-1" in info and \
            "hires_scale" not in overrides:
        values["hires_scale"] = _resize_scale(info)
    return values


def _outpainted_size(info: dict[str, str]) -> dict[str, str]:
    """An outpainted image's `Size` is its canvas: the size is that less the `Outpaint`
    borders (an unreadable `Outpaint` is an error naming the key)."""
    if "Outpaint" not in info:
        return info
    from helpers.diffusion.tools.borders import parse_outpaint

    try:
        borders = parse_outpaint(info["Outpaint"])
    except ValueError as e:
        raise ValueError(f"from_image: Outpaint: {e}") from None
    width, height = (_number("Size", info.get(f"Size-{i}", "512"), int) for i in (1, 2))
    inner = (width - borders.left - borders.right, height - borders.up - borders.down)
    if min(inner) <= 0:
        raise ValueError(f"from_image: Outpaint {info['Outpaint']} is larger than Size "
                         f"{width}x{height}")
    return {**info, "Size-1": str(inner[0]), "Size-2": str(inner[1])}


def _first_pass_size(info: dict[str, str]) -> dict[str, str]:
    """An infotext from before the web UI 1.0 read as the web UI reads it
    (`restore_old_hires_fix_params`): `Size` was the final size and `First pass size` the first
    pass's, 0x0 = the old automatic one (about 512x512 pixels); they become `Size` and
    `Hires resize`."""
    if "First pass size-1" not in info:
        return info
    width, height = (_number("Size", info.get(f"Size-{i}", "512"), int) for i in (1, 2))
    first = [_number("First pass size", info[f"First pass size-{i}"], int) for i in (1, 2)]
    if not (first[0] and first[1]) and width > 0 and height > 0:
        scale = math.sqrt(512 * 512 / (width * height))
        first = [math.ceil(scale * side / 64) * 64 for side in (width, height)]
    return {**info, "Size-1": str(first[0]), "Size-2": str(first[1]),
            "Hires resize-1": str(width), "Hires resize-2": str(height)}


def _resize_scale(info: dict[str, str]) -> float:
    """The scale of a `Hires resize: WxH` (0 = keep the aspect), nudged up a hair where the
    division falls short, so that the size times it rounds down to WxH again; another aspect,
    or no larger size, is an error naming the key."""
    width, height = (_number("Size", info.get(f"Size-{i}", "512"), int) for i in (1, 2))
    to_w, to_h = (_number("Hires resize", info[f"Hires resize-{i}"], int) for i in (1, 2))
    side, to = (width, to_w) if to_w else (height, to_h)
    if (to_w and to_h and to_w * height != to_h * width) or to <= side or side <= 0:
        raise ValueError(_resize_error(info, (width, height), (to_w, to_h)))
    scale = to / side
    return math.nextafter(scale, math.inf) if int(side * scale) < to else scale


def _resize_error(info: dict[str, str], size: tuple[int, int], to: tuple[int, int]) -> str:
    """What `_resize_scale` cannot read, in the infotext's own keys."""
    if "First pass size-1" in info:
        given = "x".join(info[f"First pass size-{i}"] for i in (1, 2))
        auto = "" if given == "x".join(map(str, size)) else f" (automatic: {size[0]}x{size[1]})"
        return (f"from_image: First pass size {given}{auto} with Size {to[0]}x{to[1]} is not "
                "a hires fix Dreamframe makes (the same aspect, larger); give --hires-scale")
    return (f"from_image: Hires resize {to[0]}x{to[1]} is not the size {size[0]}x{size[1]} "
            "scaled up; give --hires-scale")
