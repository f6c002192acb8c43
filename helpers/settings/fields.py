"""Settings fields with their metadata: the one place a setting's help, range and choices live.

`setting(default, help, ...)` makes a dataclass field whose metadata (`Meta`) the settings
classes validate against, the CLI turns into flags (`helpers.cli`) and the notebooks into form
widgets (`helpers.widgets`). No heavy imports here.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

# The longest text a setting takes: far beyond what a person types, short enough that every
# parser stays quick (and a pasted file or a runaway script is an error naming the field).
MAX_PROMPT_CHARS = 50_000  # a prompt, negative prompt, prompt schedule or image prompts
MAX_EXPRESSION_CHARS = 10_000  # a schedule or an expression in t (zoom, strength_schedule, ...)
MAX_TEXT_CHARS = 10_000  # any other text: a name, a path, a URL, a device
_TEXT_LIMITS = {"long": MAX_PROMPT_CHARS, "lines": MAX_PROMPT_CHARS}  # by `Meta.text`


@dataclass(frozen=True)
class Meta:
    """What the CLI, the forms and validation know of one setting."""

    help: str  # one line, shown as the flag's help and the widget's tooltip
    choices: tuple[str, ...] | None = None  # allowed values (for a tuple field: of each item)
    min: float | None = None  # smallest allowed value
    max: float | None = None  # largest allowed value
    min_open: bool = False  # `min` itself is not allowed (e.g. a learning rate > 0)
    unit: str = ""  # "px", "steps", ... shown beside the value
    advanced: bool = False  # folded away in the forms
    flags: tuple[str, ...] = ()  # extra CLI spellings ("--negative" for negative_prompt)
    metavar: str | None = None  # the CLI's placeholder for the value
    text: str = "line"  # str fields: "line", "lines" (multi-line), "long" (a prompt) or "path"
    casefold: bool = False  # choices match whatever the case; the stored value is the canonical
    open_choices: bool = False  # choices are suggestions: another value goes to the class's own
    #                             check (the hires upscaler: a model file or catalogue name too)
    nargs: int | None = None  # tuple fields with a fixed number of values on the CLI
    group: str = ""  # the form section it belongs to
    max_chars: int | None = None  # str fields: the longest value; None = by `text` (char_limit)

    @property
    def basic(self) -> bool:
        """Shown in the forms without unfolding."""
        return not self.advanced


def setting(default: Any, help: str, **meta: Any) -> Any:
    """A settings field with its default and metadata (see `Meta`)."""
    return dataclasses.field(default=default, metadata={"setting": Meta(help=help, **meta)})


def meta_of(field: dataclasses.Field) -> Meta:
    """The metadata of a settings field (a bare field gets its name as help)."""
    return field.metadata.get("setting") or Meta(help=field.name.replace("_", " "))


def fail(name: str, value: object, why: str) -> typing.NoReturn:
    """Raise the `ValueError` every bad setting gets: `name: why (got value)`."""
    raise ValueError(f"{name}: {why} (got {value!r})")


def type_ok(value: object, annotation: object) -> bool:
    """Whether a JSON-like value fits a field annotation (int counts as float, bool not as int)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(value, arg) for arg in typing.get_args(annotation))
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        return isinstance(value, tuple) and all(type_ok(v, item) for v in value)
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)  # type: ignore[arg-type]


def char_limit(meta: Meta) -> int:
    """The most characters a text setting holds: its `max_chars`, else `MAX_PROMPT_CHARS` for
    prompts ("long", "lines") and `MAX_TEXT_CHARS` for any other text."""
    return meta.max_chars or _TEXT_LIMITS.get(meta.text, MAX_TEXT_CHARS)


def check_value(name: str, value: Any, meta: Meta) -> Any:
    """The value checked against its metadata (length, choices, range); choices come back
    canonical."""
    if value is None:
        return value
    for text in value if isinstance(value, tuple) else (value,):
        if isinstance(text, str) and len(text) > char_limit(meta):
            raise ValueError(f"{name}: too long: {len(text):,} characters, at most "
                             f"{char_limit(meta):,}")
    if isinstance(value, tuple):
        return tuple(check_value(name, v, meta) for v in value) if meta.choices else value
    if meta.choices is not None and isinstance(value, str):
        if meta.open_choices:
            found = {c.casefold(): c for c in meta.choices}.get(value.casefold())
            return found if found is not None and meta.casefold else value
        return choose(name, value, meta.choices, meta.casefold)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_range(name, value, meta)
    return value


def choose(name: str, value: str, choices: tuple[str, ...], casefold: bool = False) -> str:
    """`value` if it is one of `choices` (any case with `casefold`), else an error with the
    closest names."""
    if value in choices:
        return value
    if casefold:
        for choice in choices:
            if choice.casefold() == value.casefold():
                return choice
    by_fold = {c.casefold(): c for c in choices}
    close = difflib.get_close_matches(value.casefold(), list(by_fold), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(by_fold[c]) for c in close)}?" if close else ""
    shown = ", ".join(repr(c) for c in choices)
    raise ValueError(f"{name}: {value!r} is not one of {shown}{hint}")


def _check_range(name: str, value: float, meta: Meta) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        fail(name, value, "must be a finite number")
    low = meta.min is not None and (value <= meta.min if meta.min_open else value < meta.min)
    high = meta.max is not None and value > meta.max
    if low or high:
        fail(name, value, f"must be {describe_range(meta)}")


def describe_range(meta: Meta) -> str:
    """`between 1 and 1000`, `greater than 0`, ... for messages and help texts."""
    lo, hi = _number(meta.min), _number(meta.max)
    if meta.min is not None and meta.max is not None:
        if meta.min_open:
            return f"greater than {lo} and at most {hi}"
        return f"between {lo} and {hi}"
    if meta.min is not None:
        return f"greater than {lo}" if meta.min_open else f"at least {lo}"
    return f"at most {hi}"


def help_line(meta: Meta) -> str:
    """The field's help, then its range and unit: `denoising steps; between 1 and 1000 steps`."""
    if meta.min is None and meta.max is None:
        return meta.help
    unit = f" {meta.unit}" if meta.unit else ""
    return f"{meta.help}; {describe_range(meta)}{unit}"


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if float(value).is_integer():
        return f"{int(value):_}" if abs(value) >= 10_000 else str(int(value))
    return f"{value:g}"


def encode(value: Any) -> Any:
    """Settings values as strict JSON (infinities as strings)."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    """Inverse of `encode`."""
    if value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value
