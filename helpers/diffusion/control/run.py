"""ControlNet in a run: checked before anything loads, loaded with the model, given to the
sampler.

`check_control` (the check stage): each unit of the `control` setting (`units.parse_control`)
gets its image through the bounded reader `init_image` uses, its ControlNet resolved (the unit's
MODEL or the default for its preprocessor and the model's family) and checked against the
model's family from its config alone, and its control map made (preprocessed, then fitted to
the run's size). `load_controlnets` loads each ControlNet once, in the model's dtype on its
device, into `Loaded.controlnets`. `RunControl` is what the sampler gets: `ControlUnit`s at the
run's size, and at the hires pass's (`at`), where the map is fitted anew as the extension fits
its detected map to the hires size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.diffusion.control.units import UnitSpec, controlnet_for, parse_control, union_type
from helpers.reporting import Log

CONTROL_DIR = "control"  # the run folder's subfolder of control maps: 0.png, 1.png, ...


@dataclass(frozen=True)
class CheckedUnit:
    """One unit as the check stage resolved it."""

    spec: UnitSpec
    controlnet: str  # what `load_controlnet` loads: a catalogue name, Hub id, folder or file
    label: str  # its name in the infotext
    detected: Any  # the preprocessed map (3, h, w), 0..255, before it is fitted
    map: Any  # the map fitted to the run's size (3, H, W), 0..255
    resolution: int  # the preprocessor resolution it ran at


def check_control(settings: Any, ref: Any, family: Any, cache: str | os.PathLike | None = None
                  ) -> list[CheckedUnit]:
    """The run's control units, checked and preprocessed before any weights load;
    `ValueError` naming the setting when a unit cannot run."""
    if not settings.control.strip():
        return []
    from helpers.catalog import find_model
    from helpers.diffusion.control import annotators, images
    from helpers.diffusion.samplers import runs_on_unet
    from helpers.inputs import open_image

    if family.k_samplers and not runs_on_unet(settings.sampler, family):
        raise ValueError(f"sampler: ControlNet runs on the web UI's k-diffusion samplers for "
                         f"now, not on {settings.sampler!r} (DDIM, PLMS, UniPC and LCM are "
                         "diffusers schedulers); choose Euler a, DPM++ 2M or another")
    if not family.k_samplers:
        raise ValueError(f"control: not available with the {family.title} model (got "
                         f"{settings.control!r})")
    if settings.animate:
        raise ValueError(f"control: animations do not take ControlNet yet (got "
                         f"{settings.control!r} with animate {settings.animate!r})")
    model = find_model(ref.spec) if ref.kind == "catalogue" else None
    test = bool(model is not None and model.test)
    unet = _unet_config(ref, cache)
    units = []
    for spec in parse_control(settings.control):
        name = controlnet_for(spec, bool(family.size_conditioning), test)
        _check_family(name, unet, family, cache)
        image = open_image(spec.image, "control", cache)
        source = images.from_pil(image)
        resolution = settings.control_resolution
        if settings.control_pixel_perfect:
            resolution = images.pixel_perfect_resolution(
                *source.shape[1:], settings.height, settings.width, settings.control_resize)
        detected = annotators.preprocess(spec.preprocessor, source, resolution)
        fitted = images.fit(detected, settings.width, settings.height, settings.control_resize)
        units.append(CheckedUnit(spec, name, _label(name), detected, fitted, resolution))
    return units


def _unet_config(ref: Any, cache) -> dict[str, Any] | None:
    """The model's UNet config where it is on this machine without a download (a folder, a
    catalogue model already in the cache or built locally), else None."""
    from helpers.files import read_json

    folder = None
    if ref.kind == "folder":
        folder = Path(ref.spec).expanduser()
    elif ref.kind == "catalogue":
        from helpers.catalog import find_model
        from helpers.download import fetch, is_cached

        model = find_model(ref.spec)
        if model.test or is_cached(model, cache):
            folder = Path(fetch(model, cache=cache, progress=False))
    config = folder / "unet" / "config.json" if folder is not None else None
    if config is None or not config.is_file():
        return None
    return read_json(config, f"model: {config}", dict)


def _check_family(name: str, unet: dict[str, Any] | None, family: Any, cache) -> None:
    """A ControlNet of another family than the model's is refused from its config; without the
    UNet's config (a Hub or single-file model not yet loaded) only SDXL against not SDXL, the
    rest when it loads."""
    from helpers.diffusion.control.loading import check_family, controlnet_config, kind_of

    config = controlnet_config(name, cache)
    if not config:  # a pickle: checked when it loads
        return
    label = _label(name)
    if unet is not None:
        check_family(config, unet, label)
    elif (config.get("addition_embed_type") == "text_time") != family.size_conditioning:
        raise ValueError(f"control: {label} is an {kind_of(config)} ControlNet; the model is "
                         f"{family.title}")


def load_controlnets(loaded: Any, units: list[CheckedUnit], cache, log: Log = print) -> None:
    """Load the units' ControlNets the loaded model lacks, in its UNet's dtype (`run_control`
    moves them to the run's device)."""
    from helpers.diffusion.control.loading import load_controlnet

    unet = loaded.pipe.unet
    for unit in units:
        if unit.controlnet not in loaded.controlnets:
            loaded.controlnets[unit.controlnet] = load_controlnet(
                unit.controlnet, unet.config, cache, unet.dtype, None, log)


@dataclass(frozen=True)
class RunControl:
    """What the sampler gets: the units at the run's size and, for the hires pass, anew."""

    units: tuple[Any, ...]  # ControlUnit, the map at the run's size
    detected: tuple[Any, ...]  # the preprocessed maps, to fit to another size
    preprocessors: tuple[str, ...]
    resize: str

    def at(self, width: int, height: int) -> tuple[Any, ...]:
        """The units at another size (the hires pass): each map fitted to it."""
        from helpers.diffusion.control import hires_unit, images

        return tuple(hires_unit(unit, images.to_control(images.fit(d, width, height,
                                                                   self.resize)), p)
                     for unit, d, p in zip(self.units, self.detected, self.preprocessors,
                                           strict=True))


def run_control(settings: Any, units: list[CheckedUnit], loaded: Any,
                device: Any) -> RunControl | None:
    """The checked units with their loaded ControlNets, moved to the run's device (where the
    latents are, with model CPU offload too)."""
    if not units:
        return None
    from helpers.diffusion.control import ControlUnit, images

    made = []
    for unit in units:
        net = loaded.controlnets[unit.controlnet].to(device)
        made.append(ControlUnit(net, images.to_control(unit.map), unit.spec.weight,
                                unit.spec.start, unit.spec.end, settings.control_mode,
                                union_type(unit.spec.preprocessor)))
    return RunControl(tuple(made), tuple(u.detected for u in units),
                      tuple(u.spec.preprocessor for u in units), settings.control_resize)


def save_maps(run_dir: Path, units: list[CheckedUnit]) -> None:
    """Each unit's control map as RUN/control/N.png, never over one already there."""
    if not units:
        return
    from helpers.diffusion.control import images

    folder = Path(run_dir) / CONTROL_DIR
    folder.mkdir(exist_ok=True)
    for i, unit in enumerate(units):
        path = folder / f"{i}.png"
        if not path.exists():
            images.to_pil(unit.map).save(path)


def infotext_units(settings: Any, loaded: Any) -> dict[str, str]:
    """The extension's `ControlNet N` keys: each unit's fields in its order and spelling (the
    model: our name for it, without the extension's hash)."""
    from helpers.catalog import find_model
    from helpers.diffusion.control.annotators import PREPROCESSORS

    ref = loaded.ref
    model = find_model(ref.spec) if ref.kind == "catalogue" else None
    test = bool(model is not None and model.test)
    params = {}
    for i, spec in enumerate(parse_control(settings.control)):
        name = controlnet_for(spec, bool(loaded.family.size_conditioning), test)
        found = PREPROCESSORS[spec.preprocessor]
        fields = {"Module": spec.preprocessor, "Model": _label(name),
                  "Weight": f"{spec.weight:g}", "Resize Mode": settings.control_resize,
                  "Low Vram": "False"}
        if found.resolution:
            fields["Processor Res"] = str(settings.control_resolution)
        if found.a is not None:
            fields["Threshold A"] = f"{found.a:g}"
        if found.b is not None:
            fields["Threshold B"] = f"{found.b:g}"
        fields.update({"Guidance Start": f"{spec.start:g}", "Guidance End": f"{spec.end:g}",
                       "Pixel Perfect": str(settings.control_pixel_perfect),
                       "Control Mode": settings.control_mode})
        params[f"ControlNet {i}"] = ", ".join(f"{k}: {v}" for k, v in fields.items())
    return params


def _label(name: str) -> str:
    """A ControlNet's name in messages and the infotext: a file or folder's own name."""
    return Path(name).name if Path(name).expanduser().exists() else name
