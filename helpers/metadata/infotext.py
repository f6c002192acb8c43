"""The Stable Diffusion web UI's infotext: how generation parameters are written into images.

`Prompt`, an optional `Negative prompt: ...` line, then one `Key: value, Key: value` line. Both
engines build theirs here from their own parameters, so the web UI's PNG Info tab and the
tools that read it understand our frames, and `parse_infotext` reads the web UI's back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from helpers.files import load_json

MAX_INFOTEXT_CHARS = 1_000_000  # no picture's parameters are longer; refused before parsing

# One `key: value` pair of the web UI's params line is what its regex
#     \s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)
# matches: a value is a JSON string or runs to the comma. `_pairs` finds the same pairs in
# linear time (that regex, searched from every character of a long run of key characters
# without a colon, takes time quadratic in the run).
_KEY_RUN = re.compile(r"(?<![\w \-/])[\w \-/]*:")  # a whole run of key characters, then `:`
_WORD = re.compile(r"\w")
_VALUE = re.compile(r'\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_PARAM_KEY = re.compile(r"\w[\w \-/]+")
_IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE = "Negative prompt:"
_RESERVED_KEYS = ("Prompt", "Negative prompt")


def _quote(value: str) -> str:
    """Quote a params-line value as a JSON string where it would otherwise not read back."""
    needs = value == "" or value != value.strip() or any(c in value for c in ',:"\n')
    return json.dumps(value, ensure_ascii=False) if needs else value


def _unquote(value: str) -> str:
    """Undo `_quote`; a value that is not a valid JSON string stays as it is."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            text = load_json(value, "an infotext value")
        except json.JSONDecodeError:
            return value
        return text if isinstance(text, str) else value
    return value


def _params_line(params: Mapping[str, object]) -> str:
    """The `Key: value, Key: value` line; None values are left out."""
    parts = []
    for key, value in params.items():
        if value is None:
            continue
        if not isinstance(key, str) or key in _RESERVED_KEYS or not _PARAM_KEY.fullmatch(key):
            raise ValueError(f"params key {key!r} cannot appear in an infotext params line")
        parts.append(f"{key}: {_quote(str(value))}")
    return ", ".join(parts)


def format_infotext(
    prompt: str, negative_prompt: str = "", params: Mapping[str, object] | None = None
) -> str:
    """Generation parameters as the Stable Diffusion web UI writes them (its PNG Info format)."""
    text = prompt
    if negative_prompt:
        text += f"\n{_NEGATIVE} {negative_prompt}"
    line = _params_line(params or {})
    if line:
        text += f"\n{line}"
    return text.strip()


def _pairs(line: str) -> list[tuple[int, str, str, int]]:
    """(key start, key, raw value, end) of each `key: value` pair of `line`, as the web UI's
    regex finds them (see `_KEY_RUN`): a key is the rest of a run of key characters before a
    colon, from its first word character, two characters at least."""
    pairs, pos = [], 0
    while (run := _KEY_RUN.search(line, pos)) is not None:
        colon = run.end() - 1
        key = _WORD.search(line, run.start(), colon - 1)
        if key is None:
            pos = run.end()
            continue
        value = _VALUE.match(line, run.end())
        pairs.append((key.start(), line[key.start() : colon], value.group(1), value.end()))
        pos = value.end()
    return pairs


def _only_params(line: str, pairs: list[tuple[int, str, str, int]]) -> bool:
    """Whether `line` is nothing but its `pairs`, one after the other (space between is fine)."""
    pos = 0
    for start, _, _, end in pairs:
        if line[pos:start].strip():
            return False
        pos = end
    return 0 < pos == len(line)


def _is_params_line(line: str, pairs: list[tuple[int, str, str, int]]) -> bool:
    """The web UI's test (3+ `key: value` pairs), or a line made only of such pairs."""
    if line.strip().startswith(_NEGATIVE):
        return False
    return len(pairs) >= 3 or _only_params(line, pairs)


def _split_prompts(lines: list[str]) -> tuple[str, str]:
    """Prompt and negative prompt from the lines before the params line."""
    prompt: list[str] = []
    negative: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not negative and line.startswith(_NEGATIVE):
            negative.append(line[len(_NEGATIVE) :].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    return "\n".join(prompt), "\n".join(negative)


def parse_infotext(text: str) -> dict[str, str]:
    """Read an infotext back: {"Prompt", "Negative prompt", **params} with string values.

    A value `WxH` (e.g. `Size: 512x512`) also gives `Size-1` / `Size-2`, as in the web UI.
    Without a params line, a last line that looks like `key: value` is read as params. Linear
    in the length of `text`; a text over `MAX_INFOTEXT_CHARS` is a `ValueError`.
    """
    if len(text) > MAX_INFOTEXT_CHARS:
        raise ValueError(f"infotext: {len(text):,} characters is more than an infotext holds "
                         f"(at most {MAX_INFOTEXT_CHARS:,})")
    *lines, last = text.strip().split("\n")
    pairs = _pairs(last)
    if not _is_params_line(last, pairs):
        lines, pairs = [*lines, last], []
    prompt, negative = _split_prompts(lines)
    result: dict[str, str] = {"Prompt": prompt, "Negative prompt": negative}
    for _, key, raw, _ in pairs:
        if key in result:
            continue
        value = _unquote(raw.strip())
        result[key] = value
        if size := _IMAGE_SIZE.match(value):
            result.setdefault(f"{key}-1", size.group(1))
            result.setdefault(f"{key}-2", size.group(2))
    return result
