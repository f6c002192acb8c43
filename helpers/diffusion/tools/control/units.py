"""The `control` setting: one ControlNet unit per line, parsed without torch.

A line is `TYPE[@MODEL]:IMAGE[:WEIGHT[:START:END]]`: TYPE a preprocessor (`PREPROCESSOR_NAMES`),
IMAGE a path or URL, or `video` (`VIDEO`: in a video animation, each input frame gives the
unit its map; a file called so is `./video`), WEIGHT the extension's control weight (0..2,
default 1), START and END its guidance start and end (fractions of the steps,
0 <= START < END <= 1; default 0 and 1). The
numbers are read from the right, so an image URL or path with colons in it stays whole; TYPE
(and MODEL) end at the first colon. MODEL is a catalogue name, Hub id, diffusers folder or
single file; without it the unit's ControlNet is the catalogue's for the preprocessor and the
model's kind, SD 1.x or SDXL (`DEFAULT_CONTROLNETS`); a catalogue test model's is the tiny
test ControlNet of its kind, whatever the preprocessor. The `depth` preprocessor runs the
`depth_model` setting's estimator; `inpaint` marks the run's mask (`mask` or `mask_prompt`) in
its image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from helpers.diffusion.tools.control import PREPROCESSOR_NAMES, UNION_TYPES

MAX_UNITS = 4  # the web UI's ControlNet extension shows 3 units by default; more are slow
# The catalogue's ControlNet of each preprocessor: (SD 1.x's, SDXL's); None: none to pick
DEFAULT_CONTROLNETS = {
    "canny": ("controlnet-sd15-canny", "controlnet-sdxl-canny"),
    "depth": ("controlnet-sd15-depth", "controlnet-sdxl-depth"),
    "lineart_standard": ("controlnet-sd15-lineart", None),
    "invert": ("controlnet-sd15-lineart", None),
    "scribble_xdog": ("controlnet-sd15-scribble", None),
    "threshold": ("controlnet-sd15-scribble", None),
    "tile_resample": ("controlnet-sd15-tile", None),
    "inpaint": ("controlnet-sd15-inpaint", None),
}
TEST_CONTROLNETS = ("test-tiny-controlnet", "test-tiny-controlnet-sdxl")  # SD 1.x's, SDXL's
VIDEO = "video"  # the IMAGE of a unit mapped from each frame of a video animation's input
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


@dataclass(frozen=True)
class UnitSpec:
    """One line of the `control` setting."""

    preprocessor: str
    model: str  # "" = the default for the preprocessor and the model's family
    image: str
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0


def parse_control(text: str) -> list[UnitSpec]:
    """The units of a `control` value (empty lines skipped); `ValueError` naming the setting."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_UNITS:
        raise ValueError(f"control: at most {MAX_UNITS} units (got {len(lines)})")
    return [parse_unit(line) for line in lines]


def parse_unit(line: str) -> UnitSpec:
    """One unit `TYPE[@MODEL]:IMAGE[:WEIGHT[:START:END]]`."""
    head, sep, rest = line.partition(":")
    if not sep or not rest.strip():
        raise ValueError(f"control: {line!r} is not TYPE:IMAGE[:WEIGHT[:START:END]]")
    kind, _, model = (p.strip() for p in head.partition("@"))
    if kind not in PREPROCESSOR_NAMES:
        raise ValueError(f"control: {kind!r} is not a preprocessor; one of "
                         f"{', '.join(PREPROCESSOR_NAMES)} (in {line!r})")
    if "@" in head and not model:
        raise ValueError(f"control: {line!r} names no model after @")
    parts = rest.split(":")
    numbers: list[float] = []
    while parts and len(numbers) < 3 and len(parts) > 1 and _NUMBER.fullmatch(parts[-1].strip()):
        numbers.insert(0, float(parts.pop()))
    if len(numbers) == 2:
        raise ValueError(f"control: {line!r} gives two numbers; give WEIGHT, or "
                         "WEIGHT:START:END")
    image = ":".join(parts).strip()
    if not image:
        raise ValueError(f"control: {line!r} gives no image")
    weight = numbers[0] if numbers else 1.0
    start, end = numbers[1:3] if len(numbers) == 3 else (0.0, 1.0)
    if not 0 <= weight <= 2:
        raise ValueError(f"control: weight {weight:g} must be within 0..2 (in {line!r})")
    if not 0 <= start < end <= 1:
        raise ValueError(f"control: guidance start {start:g} and end {end:g} must satisfy "
                         f"0 <= start < end <= 1 (in {line!r})")
    return UnitSpec(kind, model, image, weight, start, end)


def controlnet_for(unit: UnitSpec, sdxl: bool, test_model: bool = False) -> str:
    """The ControlNet a unit uses: its MODEL, else the default for its preprocessor and the
    model's kind (`sdxl`: an SDXL model; `test_model`: a catalogue test model)."""
    if unit.model:
        return unit.model
    if test_model:
        return TEST_CONTROLNETS[sdxl]
    found = DEFAULT_CONTROLNETS.get(unit.preprocessor, (None, None))[sdxl]
    if found is None:
        raise ValueError(f"control: no default ControlNet for the preprocessor "
                         f"{unit.preprocessor} with {'an SDXL' if sdxl else 'this'} model; name "
                         f"one: {unit.preprocessor}@MODEL:{unit.image}")
    return found


def union_type(preprocessor: str) -> int | None:
    """A union ControlNet's control type for a preprocessor (canny -> 3, ...)."""
    return next((v for k, v in UNION_TYPES.items() if k in preprocessor), None)
