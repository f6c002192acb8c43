"""Live previews of what the form's text fields mean: weighted prompts drawn as bars, schedules.

Pure functions from text to HTML (no ipywidgets here), so they are tested as strings and the
notebooks can show them anywhere. The parsing is the engines' own (`helpers.prompts`,
`helpers.diffusion.conditioning`, `helpers.animation`): a preview never disagrees with a run.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable

from helpers.prompts import Prompt

BAR_PX = 160  # the width of the largest weight's bar
ERROR_COLOR = "#c62828"
OK_COLOR = "#2e7d32"
POSITIVE_COLOR = "#1e88e5"
NEGATIVE_COLOR = "#e53935"
HINT_COLOR = "#757575"
NEGATIVE = "negative"  # the kind of a negative prompt (the web UI's syntax, the other side)


def error_html(message: str) -> str:
    """A message in red, escaped."""
    return f'<span style="color:{ERROR_COLOR}">{html.escape(message)}</span>'


def ok_html(message: str) -> str:
    """A confirmation in green, escaped."""
    return f'<span style="color:{OK_COLOR}">{html.escape(message)}</span>'


def hint_html(message: str) -> str:
    """A small grey line, escaped."""
    return f'<span style="color:{HINT_COLOR};font-size:11px">{html.escape(message)}</span>'


def prompt_preview(text: str, kind: str = "vqgan-clip") -> str:
    """HTML: each piece of a weighted prompt with its weight as a bar; the parse error in red.

    `kind` is an engine (its prompt grammar: our pieces alone, or the web UI's syntax around
    them, also each positive piece's normalised share; negative pieces join the negative prompt)
    or "negative" (a negative prompt: each piece's share of the unconditional side).
    """
    grammar = _grammar(kind)
    if not text.strip():
        return hint_html('Weighted pieces: "desert:50 | snow:25"; a negative weight pushes '
                         "away" if kind != NEGATIVE else 'Pieces to avoid: "blurry | text:0.5"')
    try:
        rows = _rows(text, grammar)
    except ValueError as e:
        return error_html(str(e))
    return _pieces_html(rows)


def prompt_schedule_preview(text: str, kind: str = "vqgan-clip") -> str:
    """HTML: each keyframe of a prompt schedule with its pieces drawn as in `prompt_preview`."""
    from helpers.prompts import format_prompts, parse_prompt_schedule

    if not text.strip():
        return hint_html('Optional keyframes, a line each: "0: desert" then "30: snow:1 | sea:0.5"')
    try:
        keys = parse_prompt_schedule(text)
        grammar = _grammar(kind)
        blocks = [(frame, _rows(format_prompts(prompts), grammar))
                  for frame, prompts in keys.items()]
    except ValueError as e:
        return error_html(f"prompt_schedule: {e}")
    return "".join(f"<div><b>frame {frame}</b>{_pieces_html(rows)}</div>" for frame, rows in blocks)


def schedule_check(text: str, name: str, allow_empty: bool = False) -> str:
    """HTML: "" when the schedule parses (or is empty and `allow_empty`), else its error in red."""
    from helpers.animation import check_schedule

    if allow_empty and not text.strip():
        return ""
    try:
        check_schedule(text, name)
    except ValueError as e:
        return error_html(str(e))
    return ""


# --- rows: (prompt, note) per piece --------------------------------------------------------------

Row = tuple[Prompt, str]


def _grammar(kind: str) -> str:
    """The prompt grammar of a preview kind: an engine's, or "negative"."""
    from helpers.engines import ENGINES, get_engine

    if kind == NEGATIVE:
        return NEGATIVE
    if kind not in ENGINES:
        raise ValueError(f"kind: {kind!r} is not one of {', '.join([*ENGINES, NEGATIVE])}")
    return get_engine(kind).grammar


def _rows(text: str, grammar: str) -> list[Row]:
    """The pieces with what each one does; the engine's `ValueError` when they do not parse."""
    from helpers.prompts import parse_prompts

    if grammar == "pieces":
        prompts = parse_prompts(text)
    else:  # the web UI's brackets do not split at a bar
        from helpers.diffusion.prompt_syntax import split_pieces

        prompts = split_pieces(text)
    notes: dict[str, Callable[[str, list[Prompt]], list[str]]] = {
        "pieces": _pieces_notes, "web-ui": _web_ui_notes, NEGATIVE: _negative_notes,
    }
    return list(zip(prompts, notes[grammar](text, prompts), strict=True))


def _pieces_notes(text: str, prompts: list[Prompt]) -> list[str]:
    notes = []
    for p in prompts:
        note = "push away" if p.weight < 0 else "no effect (weight 0)" if p.weight == 0 else ""
        if p.stop != -math.inf:
            note = f"{note}, stop {p.stop:g}" if note else f"stop {p.stop:g}"
        notes.append(note)
    return notes


def _web_ui_notes(text: str, prompts: list[Prompt]) -> list[str]:
    from helpers.diffusion.prompt_syntax import positive_pieces

    shares = iter(positive_pieces(text))  # raises for stop values and no positive piece
    notes = []
    for p in prompts:
        if p.weight < 0:
            notes.append("push away: joins the negative prompt")
        elif p.weight == 0:
            notes.append("ignored (weight 0)")
        else:
            share = next(shares, None)
            notes.append(f"share {share[1]:.0%}" if share else "")
    return notes


def _negative_notes(text: str, prompts: list[Prompt]) -> list[str]:
    from helpers.diffusion.prompt_syntax import negative_pieces

    shares = iter(negative_pieces(text))  # raises for stop values and negative weights
    return [f"push away, share {next(shares, ('', 0))[1]:.0%}" if p.weight
            else "ignored (weight 0)"
            for p in prompts]


# --- drawing --------------------------------------------------------------------------------------


def bar_width(weight: float, largest: float) -> int:
    """Bar width in pixels: proportional to |weight| / the largest |weight|; 2 at least."""
    if weight == 0 or largest == 0:
        return 0
    return max(2, round(BAR_PX * abs(weight) / largest))


def _pieces_html(rows: list[Row]) -> str:
    largest = max(abs(p.weight) for p, _ in rows)
    count = f"{len(rows)} piece{'s' if len(rows) != 1 else ''}"
    lines = [_piece_html(p, note, largest, negative=p.weight < 0 or note.startswith("push"))
             for p, note in rows]
    return (f'<div class="df-preview" style="font-size:12px;line-height:1.6">'
            f"{hint_html(count)}{''.join(lines)}</div>")


def _piece_html(p: Prompt, note: str, largest: float, negative: bool) -> str:
    color = NEGATIVE_COLOR if negative else POSITIVE_COLOR
    width = bar_width(p.weight, largest)
    track = (f'<span style="display:inline-block;width:{BAR_PX}px;vertical-align:middle;'
             f'margin-right:8px;background:#eee">'
             f'<span class="df-bar{" df-neg" if negative else ""}" style="display:block;'
             f'width:{width}px;height:10px;background:{color}"></span></span>')
    weight = f'<span style="display:inline-block;min-width:48px"><code>{p.weight:g}</code></span>'
    shown = f'<span style="color:{color}">{html.escape(note)}</span>' if note else ""
    return (f'<div style="white-space:nowrap">{track}{weight}{html.escape(p.text)}'
            f"{' &mdash; ' + shown if shown else ''}</div>")
