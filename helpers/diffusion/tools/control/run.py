"""ControlNet in a run: checked before anything loads, loaded with the model, given to the
sampler.

`check_control` (the check stage): each unit of the `control` setting (`units.parse_control`)
gets its image through the bounded reader `init_image` uses, its ControlNet resolved (the unit's
MODEL or the default for its preprocessor and the model's family) and checked against the
model's family from its config alone, and its control map made (preprocessed, then fitted to
the run's size). The `depth` preprocessor's estimator (`depth_model`) is loaded there and let go
once the maps are made; the `inpaint` preprocessor marks the run's inpaint mask in its image.
`load_controlnets` loads each ControlNet once, in the model's dtype on its device, into
`Loaded.controlnets`. `RunControl` is what the sampler gets: `ControlUnit`s at the run's size,
and at the hires pass's (`at`), where the map is fitted anew as the extension fits its detected
map to the hires size.

In a video animation a unit whose IMAGE is `video` has no map at the check stage: `FrameControl`
makes it from each input frame (the frame the img2img starts from, as read from the video at the
run's size, before colour coherence) and saves it as RUN/control/<frame>-<unit>.png (frame
000001.., unit 0..; the other units' maps stay RUN/control/<unit>.png).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from helpers.diffusion.tools.control.units import (
    VIDEO,
    UnitSpec,
    controlnet_for,
    parse_control,
    union_type,
)
from helpers.reporting import Log

CONTROL_DIR = "control"  # the run folder's subfolder of control maps: 0.png, 1.png, ...


def _silent(_message: str) -> None:
    pass


@dataclass(frozen=True)
class CheckedUnit:
    """One unit as the check stage resolved it."""

    spec: UnitSpec
    controlnet: str  # what `load_controlnet` loads: a catalogue name, Hub id, folder or file
    label: str  # its name in the infotext
    detected: Any  # the preprocessed map (3, h, w), 0..255, before it is fitted (inpaint: the
    #                image and the mask at the run's size); None: a `video` unit
    map: Any  # the map fitted to the run's size (3, H, W), 0..255 (inpaint: masked pixels at
    #           -255); None: a `video` unit, whose map each frame makes
    resolution: int  # the preprocessor resolution it ran at
    estimator: Any = None  # a `video` depth unit's depth estimator, kept for the frames

    @property
    def per_frame(self) -> bool:
        """Whether each frame of a video animation makes the unit's map."""
        return self.spec.image == VIDEO


def check_control(settings: Any, ref: Any, family: Any, cache: str | os.PathLike | None = None,
                  log: Log = _silent, init: Any = None, device: Any = None) -> list[CheckedUnit]:
    """The run's control units, checked and preprocessed before any weights load (`init`: the
    check stage's init image or `inpaint.Inpainting`, else read here for an inpaint unit;
    `device`: where the depth estimator runs, else the settings' device); `ValueError` naming
    the setting when a unit cannot run."""
    if not settings.control.strip():
        return []
    from helpers.catalog import find_model
    from helpers.diffusion.samplers import runs_on_unet

    if family.k_samplers and not runs_on_unet(settings.sampler, family):
        raise ValueError(f"sampler: ControlNet runs on the web UI's k-diffusion samplers for "
                         f"now, not on {settings.sampler!r} (DDIM, PLMS, UniPC and LCM are "
                         "diffusers schedulers); choose Euler a, DPM++ 2M or another")
    if not family.k_samplers:
        raise ValueError(f"control: not available with the {family.title} model (got "
                         f"{settings.control!r})")
    model = find_model(ref.spec) if ref.kind == "catalogue" else None
    test = bool(model is not None and model.test)
    unet = _unet_config(ref, cache)
    specs = parse_control(settings.control)
    names = [controlnet_for(spec, bool(family.size_conditioning), test) for spec in specs]
    for name in names:
        _check_family(name, unet, family, cache)
    inputs = _Inputs(settings, cache, log, init, device)
    units = [_check_unit(settings, spec, name, inputs) for spec, name in zip(specs, names,
                                                                             strict=True)]
    inputs.done()
    return units


class _Inputs:
    """What some units need beyond their image, made once when the first one asks: the depth
    estimator, the run's inpainting."""

    def __init__(self, settings: Any, cache: Any, log: Log, init: Any, device: Any):
        self.settings, self.cache, self.log, self.init = settings, cache, log, init
        self.device, self._estimator = device, None

    def estimator(self) -> Any:
        if self._estimator is None:
            from helpers.device import pick_device
            from helpers.diffusion.tools.control.depth import load_estimator
            from helpers.precision import weights_dtype

            if self.device is None:
                self.device = pick_device(self.settings.device, _silent)
            dtype = weights_dtype(self.settings.precision, self.device)
            self._estimator = load_estimator(self.settings.depth_model, self.cache, self.log,
                                             self.device, dtype)
        return self._estimator

    def inpainting(self) -> Any:
        from helpers.diffusion.tools.inpaint import Inpainting, inpainting_of

        if not isinstance(self.init, Inpainting):
            from helpers.inputs import open_image

            picture = open_image(self.settings.init_image, "init_image", self.cache)
            self.init = inpainting_of(self.settings, picture, self.cache, _silent)
        return self.init

    def done(self) -> None:
        """Let the estimator go (a `video` depth unit keeps its own reference)."""
        if self._estimator is not None:
            from helpers.diffusion.tools.control.depth import release

            self._estimator = None
            release(self.device)


def _check_unit(settings: Any, spec: UnitSpec, name: str, inputs: _Inputs) -> CheckedUnit:
    """One unit: its image read, preprocessed and fitted (a `video` unit: nothing yet)."""
    from helpers.diffusion.tools.control import annotators, images
    from helpers.inputs import open_image

    resolution = settings.control_resolution
    label = _label(name)
    if spec.image == VIDEO:
        estimator = inputs.estimator() if spec.preprocessor == "depth" else None
        return CheckedUnit(spec, name, label, None, None, resolution, estimator)
    source = images.from_pil(open_image(spec.image, "control", inputs.cache))
    if spec.preprocessor == "inpaint":
        image, mask = inpaint_pieces(source, inputs.inpainting(), settings)
        return CheckedUnit(spec, name, label, (image, mask), annotators.inpaint_map(image, mask),
                           resolution)
    estimator = inputs.estimator() if spec.preprocessor == "depth" else None
    return CheckedUnit(spec, name, label, *maps(settings, spec.preprocessor, source, estimator))


def maps(settings: Any, preprocessor: str, source: Any, estimator: Any = None
         ) -> tuple[Any, Any, int]:
    """(the preprocessed map, it fitted to the run's size, the resolution it ran at) of an
    image (a map), as the settings ask (`annotators.control_map`, both maps kept)."""
    from helpers.diffusion.tools.control import annotators, images

    width, height = settings.canvas_size()
    resolution = settings.control_resolution
    if settings.control_pixel_perfect:
        resolution = images.pixel_perfect_resolution(*source.shape[1:], height, width,
                                                     settings.control_resize)
    detected = annotators.preprocess(preprocessor, source, resolution, model=estimator)
    return detected, images.fit(detected, width, height, settings.control_resize), resolution


def inpaint_pieces(source: Any, inpainting: Any, settings: Any) -> tuple[Any, Any]:
    """An inpaint unit's image and mask at the run's size, as the run repaints: the mask is the
    run's (binary, inverted if asked, blurred; for "only masked" its crop; an outpaint run's
    border and seam), the image fitted by the resize mode, or for "only masked" resized to the
    init image and cut as the run cuts it (the extension's crop of its input there), or for
    outpaint resized to the size and grown as the init image is."""
    from PIL import Image

    from helpers.diffusion.tools.control import images
    from helpers.diffusion.tools.inpaint import resize_and_fill

    width, height = settings.canvas_size()
    mask = images.from_pil(inpainting.mask)
    if settings.outpaint.strip():  # placed as the init image is, on the grown canvas
        from helpers.diffusion.tools.outpaint import outpaint_canvas, parse_outpaint

        picture = images.to_pil(source).resize((settings.width, settings.height),
                                               Image.Resampling.LANCZOS)
        canvas, _ = outpaint_canvas(picture, parse_outpaint(settings.outpaint),
                                    settings.outpaint_fill)
        return images.from_pil(canvas), mask
    if inpainting.paste_to is None:
        return images.fit(source, width, height, settings.control_resize), mask
    x, y, w, h = inpainting.paste_to
    picture = images.to_pil(source).resize(inpainting.overlay.size, Image.Resampling.LANCZOS)
    cut = resize_and_fill(picture.crop((x, y, x + w, y + h)), width, height)
    return images.from_pil(cut), mask


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
    from helpers.diffusion.tools.control.loading import check_family, controlnet_config, kind_of

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
    from helpers.diffusion.tools.control.loading import load_controlnet

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
        from helpers.diffusion.tools.control import hires_unit, images

        return tuple(hires_unit(unit, images.to_control(_fitted(d, p, width, height,
                                                                self.resize)), p)
                     for unit, d, p in zip(self.units, self.detected, self.preprocessors,
                                           strict=True))


def _fitted(detected: Any, preprocessor: str, width: int, height: int, mode: str) -> Any:
    """A detected map fitted to a size (an inpaint unit's image and mask each, then marked)."""
    from helpers.diffusion.tools.control import annotators, images

    if preprocessor == "inpaint":
        image, mask = (images.fit(x, width, height, mode) for x in detected)
        return annotators.inpaint_map(image, mask)
    return images.fit(detected, width, height, mode)


def run_control(settings: Any, units: list[CheckedUnit], loaded: Any,
                device: Any) -> RunControl | None:
    """The checked units with their loaded ControlNets, moved to the run's device (where the
    latents are, with model CPU offload too)."""
    if not units:
        return None
    from helpers.diffusion.tools.control import ControlUnit, images

    made = []
    for unit in units:
        if unit.map is None:
            raise ValueError(f"control: {unit.spec.preprocessor}:{VIDEO} takes its map from "
                             "each frame of a video animation")
        net = loaded.controlnets[unit.controlnet].to(device)
        made.append(ControlUnit(net, images.to_control(unit.map), unit.spec.weight,
                                unit.spec.start, unit.spec.end, settings.control_mode,
                                union_type(unit.spec.preprocessor)))
    return RunControl(tuple(made), tuple(u.detected for u in units),
                      tuple(u.spec.preprocessor for u in units), settings.control_resize)


SaveMap = Callable[[int, int, Any], object]  # (frame, 1-based; unit index; map) -> saved


@dataclass(frozen=True)
class FrameControl:
    """ControlNet in a video animation: every frame's units, the `video` ones mapped from the
    frame (`save`: where each such map goes, else nowhere)."""

    settings: Any
    units: tuple[CheckedUnit, ...]
    loaded: Any
    device: Any
    save: SaveMap | None = None

    def at(self, frame: int, image: Any) -> RunControl:
        """The units of frame `frame` (1-based) whose input frame is the PIL `image`."""
        from helpers.diffusion.tools.control import images

        units = list(self.units)
        for i, unit in enumerate(units):
            if not unit.per_frame:
                continue
            detected, made, resolution = maps(self.settings, unit.spec.preprocessor,
                                              images.from_pil(image), unit.estimator)
            units[i] = replace(unit, detected=detected, map=made, resolution=resolution)
            if self.save is not None:
                self.save(frame, i, made)
        return run_control(self.settings, units, self.loaded, self.device)


def frame_control(checked: Any, loaded: Any, run_dir: Path | None) -> FrameControl | None:
    """A video animation's `FrameControl` (None without units), its frame maps saved in
    RUN/control (`run_dir` None: not saved)."""
    if not checked.control:
        return None
    save = None if run_dir is None else partial(save_frame_map, run_dir)
    return FrameControl(checked.settings, tuple(checked.control), loaded, checked.device, save)


def frame_map_path(run_dir: Path, frame: int, unit: int) -> Path:
    """RUN/control/<frame>-<unit>.png: a `video` unit's map of one frame (frame 1-based, six
    digits as the frames are numbered)."""
    return Path(run_dir) / CONTROL_DIR / f"{frame:06d}-{unit}.png"


def save_frame_map(run_dir: Path, frame: int, unit: int, made: Any) -> Path:
    """Save one frame's map of a `video` unit (whole or not at all; a resumed run writes it
    again, the same)."""
    return _save_png(frame_map_path(run_dir, frame, unit), made)


def save_maps(run_dir: Path, units: list[CheckedUnit]) -> None:
    """Each unit's control map as RUN/control/N.png, never over one already there (a `video`
    unit's maps come with its frames)."""
    for i, unit in enumerate(units):
        path = Path(run_dir) / CONTROL_DIR / f"{i}.png"
        if unit.map is not None and not path.exists():
            _save_png(path, unit.map)


def _save_png(path: Path, made: Any) -> Path:
    import io

    from helpers.diffusion.tools.control import images
    from helpers.files import atomic_write_bytes

    data = io.BytesIO()
    images.to_pil(made).save(data, format="PNG")
    return atomic_write_bytes(path, data.getvalue())


def infotext_units(settings: Any, loaded: Any) -> dict[str, str]:
    """The extension's `ControlNet N` keys: each unit's fields in its order and spelling (the
    module: the extension's name for it; the model: our name for it, without the extension's
    hash)."""
    from helpers.catalog import find_model
    from helpers.diffusion.tools.control.annotators import PREPROCESSORS

    ref = loaded.ref
    model = find_model(ref.spec) if ref.kind == "catalogue" else None
    test = bool(model is not None and model.test)
    params = {}
    for i, spec in enumerate(parse_control(settings.control)):
        name = controlnet_for(spec, bool(loaded.family.size_conditioning), test)
        found = PREPROCESSORS[spec.preprocessor]
        fields = {"Module": found.module or spec.preprocessor, "Model": _label(name),
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
