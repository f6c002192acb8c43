"""Keyframe schedules for animation settings, and prompt schedules interpolated by frame.

Format (Deforum / Disco Diffusion): `"0:(1.0), 30:(1.05), 60:(1)"` -> one value per frame.
- Keyframes `frame:(value)` are separated by commas; whitespace, newlines and a trailing comma are
  fine. Frames are whole numbers >= 0; keys out of order are sorted (as Deforum does); a key given
  twice is an error naming it.
- Parentheses are optional (`0: 1.0, 30: 1.05`): a value runs to the next comma outside
  parentheses (`0: max(t, 2)` is one value); a `:` outside parentheses in a value can only be a
  missing comma, and is an error.
- A text with no `:` outside parentheses is one value for every frame: a number (`"1.05"`,
  `"-0.5"`, `"1e-2"`) or an expression in `t`.

Between keys:
- A constant key (a number, or an expression without `t` such as `pi/2`) is a point; between two
  points the value is interpolated, "linear" or "cubic". Cubic is Catmull-Rom with non-uniform
  spacing: a cubic Hermite whose tangent at a key is (next - previous) / (next frame - previous
  frame), one-sided at the ends of a run of constant keys; it passes through every key and
  depends only on the neighbouring keys.
- A key whose expression uses `t` holds from its frame until the next key, evaluated at each frame
  (as in Deforum). Interpolation from the constant key before it ends at the expression's value at
  its own frame, so that join is continuous; at the next key the value is that key's, a jump
  unless the expression meets it (both are as written).
- Before the first key: the first key's value (an expression's value at its frame). After the last
  key: a constant is held, an expression goes on.

Expressions are parsed with `ast.parse(mode="eval")` and built from a whitelist; user text never
reaches eval, exec or compile. Allowed: numbers, `t`, `pi`, `e`, `tau`, `+ - * / // % **`, unary
`+ -`, calls of FUNCTIONS without keyword arguments, and `a if cond else b` where cond is
comparisons (`< <= > >= == !=`, chains) joined by `and` / `or` / `not`. Arithmetic is in floats and
`**` is `math.pow`, so `9**9**9` is an overflow error, not a huge integer; every intermediate
result must be finite.

Errors are `ValueError`s that start with the schedule's name and quote the bad part, all at parse
time (constant expressions are evaluated then), except those that depend on `t`, which
`Schedule.at` / `values` raise naming the frame.

Prompt schedules (`prompts_at_frame`): keyframes as `parse_prompt_schedule` reads them; weights
are interpolated linearly between keys, a piece matched by its text (by occurrence if a text comes
twice in one key); pieces of weight exactly 0 are dropped, at keys too. Pure Python.
"""

from __future__ import annotations

import bisect
import collections
import functools
import itertools
import math
import re
from dataclasses import dataclass, field

from helpers.expressions import EvalError, Fn, compile_expression, quote
from helpers.prompts import Prompt, parse_prompt_schedule

INTERPOLATIONS = ("linear", "cubic")
_KEY = re.compile(r"\s*(\d+)(?![\w.])\s*:")
_NEXT_KEY = re.compile(r",\s*\d+\s*:")


@dataclass(frozen=True)
class Keyframe:
    """One key: its frame, the text as written, and a constant or an expression in t."""

    frame: int
    text: str  # the keyframe as written, for messages: "30:(1.05)"
    constant: float | None  # None: an expression in t, held until the next key
    expression: Fn = field(repr=False, compare=False)


@dataclass(frozen=True)
class Schedule:
    """A parsed keyframe schedule."""

    name: str  # the setting's name, first word of every error
    keys: tuple[Keyframe, ...]  # sorted by frame, at least one
    interpolation: str = "linear"  # between constant keys: "linear" or "cubic" (Catmull-Rom)

    def at(self, frame: int) -> float:
        """The value at `frame` (0-based); a ValueError names the frame if an expression fails."""
        _check_whole(frame, "frame", self.name)
        i = bisect.bisect_right(self.keys, frame, key=lambda key: key.frame) - 1
        if i < 0:
            return self._anchor(0)
        key = self.keys[i]
        if key.constant is None:
            return self._evaluate(key, frame)
        if frame == key.frame or i + 1 == len(self.keys):
            return key.constant
        return self._between(i, frame)

    def values(self, frames: int) -> list[float]:
        """One value per frame 0..frames-1."""
        _check_whole(frames, "frames", self.name)
        return [self.at(frame) for frame in range(frames)]

    def _anchor(self, i: int) -> float:
        key = self.keys[i]
        return key.constant if key.constant is not None else self._evaluate(key, key.frame)

    def _evaluate(self, key: Keyframe, frame: int) -> float:
        try:
            return key.expression(float(frame))
        except EvalError as e:
            raise ValueError(f"{self.name}: at frame {frame}, {quote(key.text)}: {e}") from None
        except RecursionError:
            raise ValueError(f"{self.name}: {quote(key.text)} is nested too deeply") from None

    def _between(self, i: int, frame: int) -> float:
        """Interpolate from constant key i to key i + 1 at a frame strictly between them."""
        x0, x1 = self.keys[i].frame, self.keys[i + 1].frame
        y0, y1, u = self._anchor(i), self._anchor(i + 1), (frame - x0) / (x1 - x0)
        if self.interpolation == "linear":
            return (1 - u) * y0 + u * y1  # cannot overflow, unlike y0 + u * (y1 - y0)
        before = i > 0 and self.keys[i - 1].constant is not None
        after = i + 2 < len(self.keys) and self.keys[i + 1].constant is not None
        m0, m1 = self._slope(i - before, i + 1), self._slope(i, i + 1 + after)
        h = x1 - x0
        value = ((2 * u**3 - 3 * u**2 + 1) * y0 + (u**3 - 2 * u**2 + u) * h * m0
                 + (3 * u**2 - 2 * u**3) * y1 + (u**3 - u**2) * h * m1)
        if not math.isfinite(value):
            raise ValueError(f"{self.name}: cubic interpolation overflows at frame {frame}")
        return value

    def _slope(self, lo: int, hi: int) -> float:
        rise = self._anchor(hi) - self._anchor(lo)
        return rise / (self.keys[hi].frame - self.keys[lo].frame)


def parse_schedule(text: str, name: str = "schedule", interpolation: str = "linear") -> Schedule:
    """Parse `"0:(1.0), 30:(1.05)"`, a bare number or an expression in t into a Schedule.

    Linear in the length of `text`, and parsed once per distinct text (settings are checked
    again on every copy); a Schedule is immutable, so the copies share it.
    """
    if not isinstance(text, str):
        raise TypeError(f"{name}: schedule must be a string, not {type(text).__name__}")
    return _parse_schedule(text, name, interpolation)


@functools.lru_cache(maxsize=64)
def _parse_schedule(text: str, name: str, interpolation: str) -> Schedule:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"{name}: interpolation {interpolation!r} must be 'linear' or 'cubic'")
    try:
        keys = [_keyframe(frame, value, written) for frame, value, written in _scan(text)]
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    keys.sort(key=lambda key: key.frame)  # stable: of two equal keys, the first written is first
    for a, b in itertools.pairwise(keys):
        if a.frame == b.frame:
            raise ValueError(f"{name}: key {a.frame} is given twice: {quote(a.text)} and "
                             f"{quote(b.text)}")
    return Schedule(name, tuple(keys), interpolation)


def schedule_values(
    text: str, frames: int, name: str = "schedule", interpolation: str = "linear"
) -> list[float]:
    """One value per frame 0..frames-1 of the schedule `text`."""
    return parse_schedule(text, name, interpolation).values(frames)


def check_schedule(text: str, name: str = "schedule", interpolation: str = "linear") -> None:
    """Raise the parse errors of `text` (for settings validation) without computing values."""
    parse_schedule(text, name, interpolation)


def _check_whole(value: int, what: str, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: {what} {value!r} must be a whole number >= 0")


def _scan(text: str) -> list[tuple[int, str, str]]:
    """Split `text` into (frame, value source, keyframe as written); a bare value is frame 0."""
    if not text.strip():
        raise ValueError("empty schedule; write keyframes like '0:(1.0), 30:(1.05)' or one number")
    if not _has_key(text):
        if _value_end(text, 0, 0) < len(text):
            raise ValueError(f"{quote(text.strip())} has a ',' but no keys; write '0:(1), 30:(2)'")
        return [(0, text, text.strip())]
    items, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return items
        frame, start = _read_key(text, pos)
        end = _value_end(text, pos, start)
        items.append((frame, text[start:end], text[pos:end].strip()))
        pos = end + 1


def _has_key(text: str) -> bool:
    depth = 0
    for char in text:
        depth += (char == "(") - (char == ")")
        if char == ":" and depth <= 0:
            return True
    return False


def _read_key(text: str, pos: int) -> tuple[int, int]:
    """The frame of the key at `pos` and where its value starts."""
    match = _KEY.match(text, pos)
    if match:
        return int(match.group(1)), match.end()
    token = re.match(r"[^,:]*", text[pos:]).group().strip()
    if not token:
        rest = text[pos:].strip()
        if rest.startswith(","):
            raise ValueError(f"empty keyframe (two commas, or a comma first) at {quote(rest)}")
        raise ValueError(f"missing frame number before {quote(rest.split(',')[0])}")
    number = re.match(r"\d+(?![\w.])", token)
    if number:
        raise ValueError(f"missing ':' after key {number.group()!r}")
    raise ValueError(f"key {quote(token)} is not a frame number (a whole number >= 0)")


def _value_end(text: str, key_start: int, start: int) -> int:
    """Where the value starting at `start` ends: the next comma outside parentheses, or the end."""
    depth = 0
    for i in range(start, len(text)):
        char = text[i]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unmatched ')' in {quote(text[key_start : i + 1].strip())}")
        elif depth == 0 and char == ",":
            return i
        elif depth == 0 and char == ":":
            _missing_comma(text, key_start, i)
    if depth > 0:
        nxt = _NEXT_KEY.search(text, start)
        cut = nxt.start() if nxt else len(text)
        raise ValueError(f"missing ')' after {quote(text[key_start:cut].strip())}")
    return len(text)


def _missing_comma(text: str, key_start: int, colon: int) -> None:
    """Raise for a ':' inside a value: the next key's ',' is missing (or the ':' is stray)."""
    before = text[key_start:colon]
    key = _last_word(before)
    if key is None or not before[:key].strip():
        raise ValueError(f"unexpected ':' after {quote(before.strip())}")
    rest = text[key_start + key :].split(",")[0].strip()
    first = quote(before[:key].strip())
    raise ValueError(f"missing ',' between {first} and {quote(rest)}")


def _last_word(text: str) -> int | None:
    """Where the last run of characters other than whitespace and `(),` starts, if it ends the
    text but for whitespace (a scan back: a regex searched with `$` backtracks quadratically)."""
    end = len(text.rstrip())
    start = end
    while start > 0 and text[start - 1] not in "()," and not text[start - 1].isspace():
        start -= 1
    return start if start < end else None


def _keyframe(frame: int, value: str, written: str) -> Keyframe:
    """Build one key; constant expressions are evaluated now, so their errors come at parse time."""
    if not value.replace("(", "").replace(")", "").strip():
        raise ValueError(f"{quote(written)} has no value")
    try:
        expression, uses_t = compile_expression(value)
        constant = None if uses_t else expression(0.0)
    except (ValueError, EvalError) as e:
        raise ValueError(f"in {quote(written)}: {e}") from None
    except RecursionError:
        raise ValueError(f"in {quote(written)}: nested too deeply") from None
    return Keyframe(frame, written, constant, expression)


def prompts_at_frame(text: str, frame: int, name: str = "prompt_schedule") -> list[Prompt]:
    """The prompts at `frame`: weights interpolated linearly between keys, zero weights dropped."""
    _check_whole(frame, "frame", name)
    keys = _prompt_keys(text, name)
    frames = [key for key, _ in keys]
    i = bisect.bisect_right(frames, frame) - 1
    if i < 0 or i + 1 == len(keys) or frames[i] == frame:
        prompts = list(keys[max(i, 0)][1])
    else:
        u = (frame - frames[i]) / (frames[i + 1] - frames[i])
        prompts = _blend(keys[i][1], keys[i + 1][1], u)
    prompts = [prompt for prompt in prompts if prompt.weight != 0]
    if not prompts:
        raise ValueError(f"{name}: every prompt weight is zero at frame {frame}")
    return prompts


def check_prompt_schedule(text: str, name: str = "prompt_schedule") -> None:
    """Raise the parse errors of a prompt schedule (for settings validation)."""
    _prompt_keys(text, name)


@functools.lru_cache(maxsize=16)
def _prompt_keys(text: str, name: str) -> tuple[tuple[int, tuple[Prompt, ...]], ...]:
    if not isinstance(text, str):
        raise TypeError(f"{name}: prompt schedule must be a string, not {type(text).__name__}")
    try:
        schedule = parse_prompt_schedule(text)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    return tuple((frame, tuple(prompts)) for frame, prompts in schedule.items())


def _blend(earlier: tuple[Prompt, ...], later: tuple[Prompt, ...], u: float) -> list[Prompt]:
    """Weights (1-u)*w_a + u*w_b by piece (0 where missing); stop from the side that has it."""
    a, b = _by_piece(earlier), _by_piece(later)
    blended = []
    for piece, p in a.items():
        weight_b = b[piece].weight if piece in b else 0.0
        blended.append(Prompt(p.text, (1 - u) * p.weight + u * weight_b, p.stop))
    blended += [Prompt(q.text, u * q.weight, q.stop) for piece, q in b.items() if piece not in a]
    return blended


def _by_piece(prompts: tuple[Prompt, ...]) -> dict[tuple[str, int], Prompt]:
    """Key each prompt by its text and how many times that text came before it in the key."""
    keyed: dict[tuple[str, int], Prompt] = {}
    seen: collections.Counter[str] = collections.Counter()
    for prompt in prompts:
        keyed[prompt.text, seen[prompt.text]] = prompt
        seen[prompt.text] += 1
    return keyed


# --- the values a schedule may take, over every frame of a run ---------------------------------

# name: (lowest, highest, whether the lowest itself is refused); a value outside at any frame
# is an error before the run starts, never after frames are written.
LIMITS: dict[str, tuple[float, float, bool]] = {
    "zoom": (0.01, 100.0, False),  # a 100x zoom in one frame already shows one pixel
    "angle": (-360.0, 360.0, False),  # degrees per frame
    "translation_x": (-4096.0, 4096.0, False),  # pixels per frame: the largest image's side
    "translation_y": (-4096.0, 4096.0, False),
    "noise_schedule": (0.0, 1.0, False),
    "strength_schedule": (0.0, 1.0, True),  # img2img strength: 0 would change nothing
}


def check_schedule_values(text: str, name: str, frames: int) -> None:
    """Evaluate the schedule `text` at every frame 0..frames-1 and check it against its
    `LIMITS`; a `ValueError` names the frame and the value."""
    low, high, open_low = LIMITS[name]
    schedule = parse_schedule(text, name)
    for frame in range(frames):
        value = schedule.at(frame)
        if not (math.isfinite(value) and low <= value <= high) or (open_low and value == low):
            bracket = "(" if open_low else "["
            raise ValueError(f"{name}: {value:g} at frame {frame} is outside "
                             f"{bracket}{low:g}, {high:g}]")
