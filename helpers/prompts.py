"""The weighted-prompt grammar, `"desert:50 | snow:25"` -> `[Prompt]`, and prompt schedules.

Grammar (DESIGN §4): `text[:weight[:stop]] | text[:weight[:stop]] | ...`. Only trailing
`:number` parts are weight and stop, so colons inside ordinary text (`ratio 16:9 poster`,
`C:\\art\\init.png`, `http://host:8080/a.png`) stay text. Escapes: `\\|`, `\\:`, `\\^` and `\\\\`
stand for `|`, `:`, `^` and `\\`; a backslash before any other character is an ordinary backslash.
Schedules: keyframed (`"0: desert | snow\\n30: a forest"`) and story mode (sets joined by `^`).
Pure Python, no heavy imports.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
from dataclasses import dataclass

_SPECIAL = "\\|:^"
# A number: Python float syntax without underscores, inf or nan ("50", "-0.5", "1e-3", ".5", "+2").
# (`\d+(?:\.\d*)?`, not `\d+\.?\d*`: that one splits a long run of digits every way it can.)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# Starts like a number and holds only number-ish characters: almost surely a mistyped weight.
_NEAR_NUMBER = re.compile(r"[+-]?\.?\d[\w.+-]*")
_NON_FINITE = re.compile(r"[+-]?(?:inf|infinity|nan)", re.IGNORECASE)
_UNESCAPE = re.compile(r"\\([\\|:^])")
_KEYFRAME = re.compile(r"\s*([+-]?[0-9]+)\s*:")
SHOWN_CHARS = 100  # a text quoted in a message is cut to this many characters


def shown(text: str) -> str:
    """`text` quoted for a message, cut to `SHOWN_CHARS` characters (a prompt may be long)."""
    return repr(text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS - 3]}...")


@dataclass(frozen=True)
class Prompt:
    """One weighted prompt: its text, a relative weight (negative pushes away) and a loss floor."""

    text: str
    weight: float = 1.0  # relative to the other pieces; negative = push away from this text
    stop: float = float("-inf")  # VQGAN+CLIP: the loss is not lowered below this; -inf = no floor

    def __post_init__(self) -> None:
        if not math.isfinite(self.weight):
            raise ValueError(f"Prompt {shown(self.text)}: weight {self.weight!r} must be finite")
        if math.isnan(self.stop) or self.stop == math.inf:
            raise ValueError(f"Prompt {shown(self.text)}: stop {self.stop!r} must be finite or "
                             "-inf")


def parse_prompts(text: str, strict: bool = True) -> list[Prompt]:
    """Parse `text[:weight[:stop]] | ...` into prompts; raise `ValueError` naming the bad piece.

    `strict=False` (the diffusion prompts, pasted from the web UI): a near-number or `inf` /
    `nan` after a colon is text, never an error (`resolution: 4k`, `style: 3d`).

    Rules, in order:
    - Pieces are split on `|`; whitespace (newlines too) around each piece is stripped.
    - A piece is cut at its unescaped colons. Looking from the end, at most two parts that are
      numbers are taken: one -> the weight, two -> weight then stop. So `a:1:2:3` is text `a:1`,
      weight 2, stop 3, and `a cat:1:0.8` is weight 1, stop 0.8. The first part is always text,
      so `50:2` is text `50`, weight 2. Weight defaults to 1, stop to -inf.
    - A number is Python float syntax without underscores (`50`, `-0.5`, `1e-3`, `.5`, `+2`),
      spaces around it allowed. A trailing part that is not a number is text (`desert:abc`,
      `http://host:8080/a.png`, `ratio 16:9 poster`), except for two kinds of near-number, which
      are errors because they are almost surely typos: a part that starts like a number (digit,
      sign + digit, dot + digit) and holds only letters, digits, `.`, `_`, `+`, `-` without being
      one (`desert:5O`, `desert:1e`, `ratio 16:9x`, `city:4k`); and `inf` / `nan` (weights must
      be finite). Write `\\:` to keep such a part as text: `city\\:4k`, `12\\:30pm`.
    - A trailing number after a colon is always read as a weight: `ratio 16:9` is text `ratio 16`
      with weight 9 - write `ratio 16\\:9`. Likewise a URL ending in a port: `http://h\\:8080:2`.
    - Escapes: `\\|` `\\:` `\\^` `\\\\` are literal `|` `:` `^` `\\`; any other backslash
      is literal, so Windows paths need no escaping - except a backslash directly before
      `|`, `:`, `^` or `\\`, which must be doubled (`C:\\art\\\\|b`; `C:\\art\\ | b` is fine).
    Errors name the piece (1-based number and its text), its 1-based character position in
    `text`, and `text` itself: empty input, an empty piece (`a || b`), a piece with no text
    (`:5`), a near-number weight, and all weights zero.
    """
    if not isinstance(text, str):
        raise TypeError(f"prompt text must be a string, not {type(text).__name__}")
    return list(_parse_whole(text, strict))


@functools.lru_cache(maxsize=32)  # settings check their prompts again on every copy
def _parse_whole(text: str, strict: bool = True) -> tuple[Prompt, ...]:
    return tuple(_parse(text, 0, strict))


def _parse(text: str, start: int, strict: bool = True) -> list[Prompt]:
    """Parse prompts from `text`, reporting positions as if it began at offset `start`."""
    if not text.strip():
        raise ValueError(f"prompt text is empty (got {shown(text)})")
    pieces = enumerate(_split(text, "|", start), 1)
    try:
        prompts = [_parse_piece(number, offset, raw, strict) for number, (offset, raw) in pieces]
    except ValueError as e:
        raise ValueError(f"{e} (in {shown(text)})") from None
    if all(p.weight == 0 for p in prompts):
        raise ValueError(f"all weights are zero in {shown(text.strip())}; give one a non-zero "
                         "weight")
    return prompts


def _parse_piece(number: int, offset: int, raw: str, strict: bool = True) -> Prompt:
    """One piece `text[:weight[:stop]]` starting at `offset` in the whole string."""
    piece = raw.strip()
    if not piece:
        raise ValueError(
            f"piece {number} (character {offset + 1}) is empty: "
            "two '|' with nothing between, or a '|' at an end"
        )
    offset += len(raw) - len(raw.lstrip())
    where = f"piece {number} {shown(_unescape(piece))} (character {offset + 1})"
    parts, values = _split(piece, ":", offset), []
    while len(parts) > 1 and len(values) < 2:
        part_offset, part = parts[-1]
        kind = _classify(part)
        if kind == "text" or (kind != "number" and not strict):
            break
        if kind != "number":
            column = part_offset + len(part) - len(part.lstrip()) + 1
            raise ValueError(f"{where}: {shown(part.strip())} at character {column} {kind}")
        values.insert(0, float(part))
        parts.pop()
    body = _unescape(":".join(part for _, part in parts).strip())
    if not body:
        raise ValueError(f"{where} has no text before its weight")
    return Prompt(body, *values)


def _classify(part: str) -> str:
    """'number', 'text', or why the part is neither (a near-number: likely a typo)."""
    part = part.strip()
    if _NUMBER.fullmatch(part):
        if math.isfinite(float(part)):
            return "number"
        return "is too large for a weight or stop"
    if _NON_FINITE.fullmatch(part):
        return "is not allowed: weight and stop must be finite numbers"
    if _NEAR_NUMBER.fullmatch(part):
        return "looks like a weight but is not a number (write \\: to keep it as text)"
    return "text"


def _split(text: str, sep: str, start: int = 0) -> list[tuple[int, str]]:
    """Split `text` on unescaped `sep`; give (offset, raw part) pairs with escapes kept."""
    parts, begin, i = [], 0, 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in _SPECIAL:
            i += 2
            continue
        if text[i] == sep:
            parts.append((start + begin, text[begin:i]))
            begin = i + 1
        i += 1
    parts.append((start + begin, text[begin:]))
    return parts


def _unescape(raw: str) -> str:
    return _UNESCAPE.sub(r"\1", raw)


def format_prompts(prompts: list[Prompt]) -> str:
    """The inverse of `parse_prompts`: `parse_prompts(format_prompts(ps)) == ps`.

    Escapes `|`, `^`, the backslashes that need it, and the last colon of a text only where
    what follows it would read as a weight. Default weight and stop are left out. Raises
    `ValueError` for what cannot round-trip: no prompts, all weights zero, or a text that is
    empty or has whitespace around it (parsing strips that whitespace).
    """
    if not prompts:
        raise ValueError("no prompts to format")
    if all(p.weight == 0 for p in prompts):
        raise ValueError("all weights are zero; parse_prompts would reject the result")
    return " | ".join(_format_piece(n, p) for n, p in enumerate(prompts, 1))


def _format_piece(number: int, prompt: Prompt) -> str:
    text = prompt.text
    if not text.strip() or text != text.strip():
        raise ValueError(f"prompt {number}: text {text!r} is empty or has whitespace around it")
    raw = _escape(text)
    if prompt.stop != -math.inf:
        return f"{raw}:{_format_number(prompt.weight)}:{_format_number(prompt.stop)}"
    if prompt.weight != 1.0:
        return f"{raw}:{_format_number(prompt.weight)}"
    return raw


def _escape(text: str) -> str:
    """Escape `text` so that a parser reads it back whole, whatever suffix follows."""
    raw = re.sub(r"\\(?=[\\|:^]|\Z)", r"\\\\", text)
    raw = raw.replace("|", "\\|").replace("^", "\\^")
    cut = raw.rfind(":")  # every colon is unescaped here; only the last can be read as a weight
    if cut >= 0 and _classify(raw[cut + 1 :]) != "text":
        raw = f"{raw[:cut]}\\{raw[cut:]}"
    return raw


def _format_number(value: float) -> str:
    text = repr(float(value))  # repr round-trips exactly
    return text[:-2] if text.endswith(".0") else text


def parse_prompt_schedule(text: str) -> dict[int, list[Prompt]]:
    """Parse keyframed prompts, one `frame: prompts` line each, into {frame: prompts}, sorted.

    Frames are non-negative whole numbers, each given once (in any order); blank lines are
    ignored; a keyframe's prompts end with its line. Errors name the line (1-based); prompt
    errors also give the character position within that line.
    """
    schedule: dict[int, list[Prompt]] = {}
    first_line: dict[int, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        frame, prompts = _parse_keyframe(number, line)
        if frame in schedule:
            raise ValueError(
                f"line {number}: frame {frame} was already given on line {first_line[frame]}"
            )
        schedule[frame], first_line[frame] = prompts, number
    if not schedule:
        raise ValueError("prompt schedule is empty; write lines like '0: a desert | snow:0.5'")
    return dict(sorted(schedule.items()))


def _parse_keyframe(number: int, line: str) -> tuple[int, list[Prompt]]:
    match = _KEYFRAME.match(line)
    if not match:
        raise ValueError(f"line {number} {shown(line.strip())} does not start with 'frame:' "
                         "(like '0:')")
    frame = int(match.group(1))
    if frame < 0:
        raise ValueError(f"line {number}: frame {frame} must not be negative")
    try:
        return frame, _parse(line[match.end() :], match.end())
    except ValueError as e:
        raise ValueError(f"line {number}: {e}") from None


def prompts_at(schedule: dict[int, list[Prompt]], frame: int) -> list[Prompt]:
    """The prompts of the latest keyframe at or before `frame` (the first keyframe's before it)."""
    if not schedule:
        raise ValueError("prompt schedule is empty")
    if frame < 0:
        raise ValueError(f"frame {frame} must not be negative")
    frames = sorted(schedule)
    return schedule[frames[max(bisect.bisect_right(frames, frame) - 1, 0)]]


def parse_story(text: str) -> list[list[Prompt]]:
    """Parse story mode: prompt sets separated by `^` (`\\^` is a literal caret), in order.

    Errors name the set (1-based); prompt errors give character positions in the whole `text`.
    """
    if not isinstance(text, str):
        raise TypeError(f"story text must be a string, not {type(text).__name__}")
    story = []
    for number, (offset, raw) in enumerate(_split(text, "^"), 1):
        try:
            story.append(_parse(raw, offset))
        except ValueError as e:
            raise ValueError(f"story set {number}: {e}") from None
    return story


def story_prompts(story: list[list[Prompt]], step: int, every: int) -> list[Prompt]:
    """The set for `step` (0-based) when the set changes every `every` steps; the last one stays."""
    if not story:
        raise ValueError("story has no prompt sets")
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every {every!r} must be a whole number of steps, at least 1")
    if step < 0:
        raise ValueError(f"step {step} must not be negative")
    return story[min(step // every, len(story) - 1)]
