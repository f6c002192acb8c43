"""The machinery of all settings classes (validation, JSON) and what every run shares."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from helpers.settings.fields import (
    MAX_EXPRESSION_CHARS,
    check_value,
    decode,
    encode,
    fail,
    meta_of,
    setting,
    type_ok,
)

MAX_SIDE = 4096  # pixels; larger images do not fit any consumer GPU with either engine
MAX_FRAMES = 100_000  # the most frames an animation makes
MAX_SEED = 2**32 - 1  # the seed range of the Stable Diffusion web UIs
RANDOM_SEED = -1  # the web UIs' way of asking for a random seed
SWITCHES = ("auto", "on", "off")  # a memory or speed switch: automatic, forced on or off

S = TypeVar("S", bound="Settings")


def random_seed() -> int:
    """A fresh seed in the web UIs' range, recorded in the run so it can be repeated."""
    import secrets

    return secrets.randbelow(MAX_SEED + 1)


@dataclass(frozen=True)
class Settings:
    """The machinery of every settings class: frozen, validated on creation, JSON.

    `__post_init__` checks every field against its annotation and metadata (type, range,
    choices), then calls the class's own cross-field rules in `validate`.
    """

    kind: ClassVar[str] = "settings"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = self._prepare(f.name, getattr(self, f.name))
            if not type_ok(value, hints[f.name]):
                fail(f.name, value, f"expected {_type_name(hints[f.name])}")
            value = check_value(f.name, value, meta_of(f))
            object.__setattr__(self, f.name, value)
        self.validate()

    def _prepare(self, name: str, value: Any) -> Any:
        """A field's value before it is checked: JSON lists become tuples."""
        return tuple(value) if isinstance(value, list) else value

    def validate(self) -> None:
        """Cross-field rules; `ValueError` naming the field and value of the first bad one."""

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-ready values, with the kind first."""
        return {"kind": self.kind, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        """The settings as indented JSON (infinities as strings, so the file stays strict JSON)."""
        return json.dumps(encode(self.to_dict()), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls: type[S], data: dict[str, Any]) -> S:
        """Build settings from a dict; unknown keys and a wrong kind are errors naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"settings must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        kind = data.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ValueError(f"kind: these are {kind!r} settings, not {cls.kind!r}")
        unknown = sorted(set(data) - set(field_names(cls)))
        if unknown:
            raise ValueError(f"unknown settings for {cls.kind}: {', '.join(unknown)}")
        return cls(**decode(data))

    @classmethod
    def from_json(cls: type[S], text: str) -> S:
        """Inverse of `to_json`."""
        from helpers.files import load_json

        return cls.from_dict(load_json(text, "settings"))

    def replace(self: S, **changes: Any) -> S:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class RunSettings(Settings):
    """What every run shares: prompt, size, seed and where the run folder goes.

    Frozen and validated on creation: every field against its metadata (type, range,
    choices), then the class's own cross-field rules in `validate`.
    """

    kind: ClassVar[str] = "run"

    prompt: str = setting("", 'weighted prompts, "desert:50 | snow:25" (negative weight: '
                          "push away)", metavar="TEXT", text="long", group="prompt")
    width: int = setting(512, "image width; rounded down to the model's multiple", min=8,
                         max=MAX_SIDE, unit="px", metavar="W", group="image")
    height: int = setting(512, "image height", min=8, max=MAX_SIDE, unit="px", metavar="H",
                          group="image")
    seed: int | None = setting(None, "random seed; empty or -1 = a random one, recorded in the "
                               "run", min=0, max=MAX_SEED, metavar="S", group="image")
    out: str = setting("workspace", "workspace folder; runs land in OUT/runs/<time>-<prompt>/",
                       metavar="DIR", text="path", advanced=True, group="output")

    def _prepare(self, name: str, value: Any) -> Any:
        if name == "seed" and value == RANDOM_SEED:
            return None
        return super()._prepare(name, value)

    def validate(self) -> None:
        """Cross-field rules; `ValueError` naming the field and value of the first bad one."""
        if not self.out.strip():
            fail("out", self.out, "must name a folder")
        if self.prompt.strip():
            try:
                self._parse_prompt()
            except ValueError as e:
                raise ValueError(f"prompt: {e}") from None

    def _parse_prompt(self) -> object:
        from helpers.prompts import parse_prompts

        return parse_prompts(self.prompt)

    def with_seed(self) -> RunSettings:
        """These settings with a random seed fixed where none is given (the one seed fallback)."""
        return self if self.seed is not None else self.replace(seed=random_seed())


def field_names(cls: type[Settings]) -> list[str]:
    """The settings fields of a class, in declaration order."""
    return [f.name for f in dataclasses.fields(cls)]


def _type_name(annotation: object) -> str:
    names = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}
    if annotation in names:
        return names[annotation]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is tuple:
        return f"a list of {_type_name(args[0])}s" if args else "a list"
    if len(args) == 1:
        return f"{_type_name(args[0])} or empty"
    return str(annotation)


# --- the camera motion both engines' animations share -------------------------------------------

MOTION = ("zoom", "angle", "translation_x", "translation_y")
_MOTION = {  # name: (default, help, flags)
    "zoom": ("1.0", 'zoom per frame, a schedule "0:(1.0), 30:(1.05)" or an expression in t; '
             "> 1 zooms in", ()),
    "angle": ("0", "turn per frame in degrees (counter-clockwise), a schedule", ()),
    "translation_x": ("0", "move per frame in pixels (right), a schedule", ("--tx",)),
    "translation_y": ("0", "move per frame in pixels (down), a schedule", ("--ty",)),
}


MOTION_BORDERS = ("stretch", "outpaint")  # what fills the borders a motion exposes


def border_setting(animation: str) -> Any:
    """The field that says what fills the borders an animation's motion exposes."""
    return setting("stretch", f"{animation}: what fills the borders zoom-out, turns and moves "
                   "expose: stretch (the edge pixels drawn out) or outpaint (the colours around "
                   "them, painted anew)", choices=MOTION_BORDERS, casefold=True,
                   advanced=True, group="animation")


def motion_setting(name: str, animation: str = "") -> Any:
    """The field of one camera-motion schedule (`MOTION`); `animation` names the animation it
    applies to in the help, where an engine has several."""
    default, help_text, flags = _MOTION[name]
    prefix = f"{animation}: " if animation else ""
    return setting(default, prefix + help_text, metavar="S", flags=flags, group="animation",
                   max_chars=MAX_EXPRESSION_CHARS)


def check_motion(name: str, text: str) -> None:
    """A motion schedule must parse (keyframes or an expression in t)."""
    from helpers.animation import check_schedule

    if not text.strip():
        fail(name, text, 'must be a number or a schedule such as "0:(1.0), 30:(1.05)"')
    check_schedule(text, name)
