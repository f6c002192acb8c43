"""What a diffusion prompt means: our weighted pieces, the web UI's syntax inside them, chunks.

How the grammars compose (DESIGN §4), loosest first:
1. `AND` (the web UI's composable prompts) splits the whole prompt, as the web UI does. Each AND
   part may end in `:weight` (the web UI's rule: a plain decimal); the weights are not
   normalised: the guidance is uncond + cfg * sum_i w_i (cond_i - uncond), so `a cat AND a
   dog:0.5` means there what it meant in the web UI. A part of weight 0 has no effect and is
   left out; an empty part (`a AND`, `a AND AND b`) is the empty prompt's conditioning, as
   there. Without `AND` a trailing `:weight` is ours (step 2), not the web UI's.
2. `|` splits each AND part into our pieces `text[:weight]` (`helpers.prompts`): their positive
   weights are normalised to sum 1 within the part, then multiplied by the part's weight; negative
   pieces join the unconditional side. A `|` inside brackets `( )` `[ ]` does not split (an
   unclosed bracket runs to the end, as its emphasis does). To weight the last piece of an AND
   part, give the part's weight too: `desert:50 | snow:25:1 AND a dog`. Only a number after
   the last colon is a weight: what merely looks like one (`resolution: 4k`, `style: 3d`,
   `Steps: 5, Size: 9x9`) stays text, as in the web UI (VQGAN+CLIP's own grammar calls it a
   typo).
3. Inside a piece, the web UI's emphasis and `BREAK` (`parse_attention`): `(text)` x1.1,
   `[text]` /1.1, `(text:1.3)` x1.3, nesting multiplies, an unclosed bracket runs to the end;
   `\\(` `\\)` `\\[` `\\]` `\\\\` are literal and a lone backslash is dropped, as there. Our
   escapes (`\\|` `\\:` `\\^`) are read first, then the web UI's; `\\\\` is left to the web UI, so
   a prompt pasted from it keeps its backslashes.
4. Prompt editing `[from:to:when]` and alternation `[a|b]` (`prompt_schedule`): each piece's
   text is scheduled over the sampler's steps as the web UI schedules a prompt, and every
   stretch of steps is encoded with the rest of this grammar.
The negative prompt has steps 2 to 4; `AND` is literal text there, as in the web UI. Its `|`
(outside brackets) splits it into our pieces like the prompt's: their predictions are averaged
by weight (`blurry | text:3`). The web UI would hand that `|` to CLIP as a character; a negative
prompt pasted from it rarely holds one outside brackets, and escaped (`\\|`) it stays text.
No text is dropped: a negative piece of weight 0 is an error, not left out.
Deliberate differences: `BREAK` inside brackets still breaks (the web UI turns it into the word
"BREAK" with a negative weight), and brackets open more than `MAX_NESTING` deep are an error
(the work stays linear).

Chunks (`chunk_tokens`): 75 tokens each; `BREAK` ends one; a chunk that fills up with a comma
among its last 20 tokens ends after that comma and the rest moves on (the web UI's comma
backtrack at its default, 20).
Facts from AUTOMATIC1111/stable-diffusion-webui: modules/prompt_parser.py at 28bd8e14 and
modules/sd_hijack_clip.py at 00e09382 (web UI 1.8-1.10). Pure Python, no heavy imports.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

from helpers.prompts import Prompt, parse_prompts, shown

CHUNK = 75  # prompt tokens per chunk; with its start and end tokens CLIP reads 77
COMMA_BACKTRACK = 20  # the web UI's default "Prompt word wrap length limit", in tokens
MAX_NESTING = 100  # emphasis brackets open at once; more is no prompt a person writes
EMPHASIS = 1.1  # `(text)` multiplies by this, `[text]` divides by it
Segment = tuple[str, float]  # (text, multiplier)
BREAK_SEGMENT: Segment = ("BREAK", -1.0)  # where parse_attention ends a chunk (the web UI's mark)
Piece = tuple[str, float]  # (text, weight)
Part = tuple[int, float]  # an AND part: (number of its pieces, its weight)
Run = tuple[list[int], float] | None  # token ids with their multiplier; None = BREAK

_AND = re.compile(r"\bAND\b")
# No `\s*` before the colon: searched from every space of a long run of them, that backtracks.
_AND_WEIGHT = re.compile(r"(?<!\\):\s*([-+]?(?:\d+\.?|\d*\.\d+))\s*$")  # not after \
_BREAK = re.compile(r"\bBREAK\b")  # the spaces around it are stripped (`_split_break`)
# One token of the emphasis syntax: an escape (or a lone backslash), the `:weight)` that closes
# a weighted group, a bracket, a run of text, or a colon that closes nothing.
_EMPHASIS_TOKEN = re.compile(r"\\[()\[\]\\]?|:\s*([+-]?[.\d]+)\s*\)|[()\[\]]|[^\\()\[\]:]+|:")
_HIDDEN_BAR = "\ue000"  # stands for a `|` inside brackets while our grammar splits a text
_KEPT_BACKSLASH = "\ue001"  # stands for `\\` while our grammar splits: the web UI reads it
_OPENER = {")": "(", "]": "["}


# --- the web UI's syntax inside a piece ---------------------------------------------------------


def parse_attention(text: str) -> list[Segment]:
    """The web UI's emphasis: (text, multiplier) runs, BREAK_SEGMENT where `BREAK` stands.

    Gives the documented results of the web UI's `parse_prompt_attention`, floats included:
    each group multiplies its runs when it closes, unclosed ones at the end (round, then square).
    Brackets may be open `MAX_NESTING` deep at most, so the work stays linear in the text.
    """
    runs: list[list | None] = []  # [text, multiplier]; None marks a BREAK
    open_round: list[int] = []  # where each open group's runs start
    open_square: list[int] = []
    for match in _EMPHASIS_TOKEN.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token[0] == "\\":
            runs.append([token[1:], 1.0])
        elif token in ("(", "["):
            (open_round if token == "(" else open_square).append(len(runs))
            if len(open_round) + len(open_square) > MAX_NESTING:
                raise ValueError(f"brackets are nested more than {MAX_NESTING} deep at "
                                 f"character {match.start() + 1}")
        elif weight is not None and open_round:
            _multiply(runs, open_round.pop(), _emphasis_weight(weight, text))
        elif token == ")" and open_round:
            _multiply(runs, open_round.pop(), EMPHASIS)
        elif token == "]" and open_square:
            _multiply(runs, open_square.pop(), 1 / EMPHASIS)
        else:
            for number, part in enumerate(_split_break(token)):
                if number:
                    runs.append(None)
                runs.append([part, 1.0])
    for start in open_round:
        _multiply(runs, start, EMPHASIS)
    for start in open_square:
        _multiply(runs, start, 1 / EMPHASIS)
    segments = [BREAK_SEGMENT if r is None else (r[0], r[1]) for r in runs]
    return _merged(segments) or [("", 1.0)]


def _multiply(runs: list[list | None], start: int, factor: float) -> None:
    """A group closes: its runs (from `start` on) are multiplied by its factor, as in the web UI
    (so the floats are the same); each run is in at most `MAX_NESTING` groups."""
    for i in range(start, len(runs)):
        if runs[i] is not None:
            runs[i][1] *= factor


def _split_break(text: str) -> list[str]:
    """`text` split at each word `BREAK`, the whitespace around it dropped (by strip, not a
    regex `\\s*` before the word, which backtracks quadratically over a long run of spaces)."""
    if "BREAK" not in text:
        return [text]
    parts = _BREAK.split(text)
    last = len(parts) - 1
    return [_strip_ends(part, number > 0, number < last) for number, part in enumerate(parts)]


def _strip_ends(text: str, left: bool, right: bool) -> str:
    text = text.lstrip() if left else text
    return text.rstrip() if right else text


def _emphasis_weight(number: str, text: str) -> float:
    try:
        return float(number)
    except ValueError:
        raise ValueError(f"emphasis weight {number!r} in {shown(text)} is not a number") from None


def _merged(segments: list[Segment]) -> list[Segment]:
    """Neighbouring runs with the same multiplier joined (breaks stay apart)."""
    merged: list[tuple[list[str], float] | None] = []
    for segment in segments:
        last = merged[-1] if merged else None
        if segment == BREAK_SEGMENT:
            merged.append(None)
        elif last is not None and last[1] == segment[1]:
            last[0].append(segment[0])  # joined once at the end: no quadratic string growth
        else:
            merged.append(([segment[0]], segment[1]))
    return [BREAK_SEGMENT if m is None else ("".join(m[0]), m[1]) for m in merged]


def plain_text(text: str) -> str:
    """The text of a piece without its emphasis markup (a BREAK becomes a space)."""
    return "".join(" " if s == BREAK_SEGMENT else s[0] for s in parse_attention(text))


def check_piece(text: str) -> None:
    """Raise `ValueError` for what diffusion here cannot read: emphasis weights that are not
    numbers, brackets nested too deep."""
    parse_attention(text)


# --- chunks -------------------------------------------------------------------------------------


def chunk_tokens(runs: list[Run], comma: int | None, size: int = CHUNK,
                 backtrack: int = COMMA_BACKTRACK) -> list[list[tuple[int, float]]]:
    """Cut token runs into chunks of at most `size` (token, multiplier) pairs, as the web UI.

    A None run (BREAK) ends the chunk, even an empty one. When a chunk is full and its last
    `comma` is among its last `backtrack` tokens, the chunk ends after that comma and the tokens
    after it start the next one. No tokens at all make one empty chunk.
    """
    chunks: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    comma_at = -1  # where the current chunk's last comma is
    for run in runs:
        if run is None:
            chunks.append(current)
            current, comma_at = [], -1
            continue
        ids, multiplier = run
        for token in ids:
            if token == comma:
                comma_at = len(current)
            elif len(current) == size and comma_at >= 0 and size - comma_at <= backtrack:
                chunks.append(current[:comma_at + 1])
                current, comma_at = current[comma_at + 1:], -1
            if len(current) == size:
                chunks.append(current)
                current, comma_at = [], -1
            current.append((token, multiplier))
    if current or not chunks:
        chunks.append(current)
    return chunks


# --- our pieces and the web UI's AND ---------------------------------------------------------


def split_and(prompt: str) -> list[tuple[str, float]]:
    """The web UI's AND parts of a prompt with their weights (1 unless a part ends in `:w`)."""
    parts = []
    for raw in _AND.split(prompt):
        match = _AND_WEIGHT.search(raw)
        text, weight = (raw[:match.start()], float(match.group(1))) if match else (raw, 1.0)
        parts.append((text.strip(), weight))
    return parts


def split_pieces(text: str) -> list[Prompt]:
    """Our `text:weight | ...` pieces of `text`; a `|` inside brackets does not split."""
    try:
        hidden = _hide_bars(text).replace("\\\\", _KEPT_BACKSLASH)  # `\\` is the web UI's
        prompts = parse_prompts(hidden, strict=False)  # pasted text stays text
    except ValueError as e:
        raise ValueError(_show_bars(str(e))) from None
    return [Prompt(_show_bars(p.text), p.weight, p.stop) for p in prompts]


def _hide_bars(text: str) -> str:
    """`text` with every `|` inside brackets replaced by a stand-in; escapes are kept."""
    out, depth, i = [], {"(": 0, "[": 0}, 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            out.append(text[i:i + 2])
            i += 2
            continue
        if char in depth:
            depth[char] += 1
        elif char in _OPENER and depth[_OPENER[char]]:
            depth[_OPENER[char]] -= 1
        out.append(_HIDDEN_BAR if char == "|" and any(depth.values()) else char)
        i += 1
    return "".join(out)


def _show_bars(text: str) -> str:
    """`text` with the stand-ins of `_hide_bars` and `split_pieces` written back."""
    for hidden, shown_as in ((_HIDDEN_BAR, "|"), (_KEPT_BACKSLASH, "\\\\")):
        text = text.replace(hidden, shown_as).replace(ascii(hidden)[1:-1], shown_as)
    return text


def _parts(prompt: str) -> list[tuple[str, float, list[Prompt]]]:
    """(name, weight, pieces) of each AND part; a prompt without AND is one part of weight 1."""
    if not _AND.search(prompt):
        return [("", 1.0, split_pieces(prompt))]
    parts = []
    for number, (text, weight) in enumerate(split_and(prompt), 1):
        if not text:  # `a AND`, `a AND AND b`: the web UI's empty conditioning
            parts.append((f"AND part {number} (empty)", weight, [Prompt("", 1.0)]))
            continue
        try:
            parts.append((f"AND part {number} {shown(text)}", weight, split_pieces(text)))
        except ValueError as e:
            raise ValueError(f"AND part {number}: {e}") from None
    return parts


def _check_pieces(prompts: list[Prompt], name: str = "") -> None:
    """Stop values (no meaning here) and unsupported syntax are errors naming the piece."""
    prefix = f"{name}: " if name else ""
    for number, p in enumerate(prompts, 1):
        if p.stop != -math.inf:
            raise ValueError(f"{prefix}piece {number} {shown(p.text)} has a stop value "
                             f"({p.stop:g}); stop has no meaning for diffusion, write "
                             "'text:weight' only")
        try:
            check_piece(p.text)
        except ValueError as e:
            raise ValueError(f"{prefix}piece {number} {shown(p.text)}: {e}") from None


def _normalised(pieces: list[Piece], scale: float = 1.0) -> list[Piece]:
    total = sum(w for _, w in pieces)
    return [(text, scale * w / total) for text, w in pieces]


@functools.lru_cache(maxsize=32)  # settings check their prompts again on every copy
def _positive(prompt: str) -> tuple[tuple[Piece, ...], tuple[Part, ...]]:
    """The positive pieces with their composable weights, and the AND parts (() = none)."""
    if not prompt.strip():
        return (("", 1.0),), ()
    parts = _parts(prompt)
    pieces: list[Piece] = []
    kept: list[Part] = []
    for name, weight, prompts in parts:
        _check_pieces(prompts, name)
        positive = [(p.text, p.weight) for p in prompts if p.weight > 0]
        if not positive:
            raise ValueError(f"{name or shown(prompt)} has no piece with a positive weight; "
                             "negative pieces only steer away, so give at least one positive "
                             "piece")
        if weight != 0:
            pieces += _normalised(positive, weight)
            kept.append((len(positive), weight))
    if not pieces:
        raise ValueError(f"every AND part of {shown(prompt)} has weight 0, so the prompt would "
                         "have no effect; give one a non-zero weight")
    return tuple(pieces), tuple(kept) if len(parts) > 1 else ()


def positive_pieces(prompt: str) -> tuple[Piece, ...]:
    """The prompt's positive pieces with their composable weights ('' = unconditional).

    Without AND the weights sum to 1; with AND each part's pieces share its weight.
    """
    return _positive(prompt)[0]


def negative_pieces(negative_prompt: str, prompt: str = "") -> tuple[Piece, ...]:
    """The unconditional side: negative-prompt pieces and the prompt's negative-weight pieces.

    Weights are normalised to sum 1; empty when there is nothing (the model's default).
    """
    return _negative(negative_prompt, prompt)


@functools.lru_cache(maxsize=32)  # settings check their prompts again on every copy
def _negative(negative_prompt: str, prompt: str) -> tuple[Piece, ...]:
    pieces: list[Piece] = []
    if negative_prompt.strip():
        prompts = split_pieces(negative_prompt)
        _check_pieces(prompts)
        for number, p in enumerate(prompts, 1):
            if p.weight <= 0:
                raise ValueError(f"piece {number} {shown(p.text)} has weight {p.weight:g}; "
                                 "negative prompt weights must be positive (a piece of weight 0 "
                                 "would be dropped: leave it out instead)")
        pieces += [(p.text, p.weight) for p in prompts if p.weight > 0]
    if prompt.strip():
        pieces += [(p.text, -p.weight) for _, _, prompts in _parts(prompt) for p in prompts
                   if p.weight < 0]
    return tuple(_normalised(pieces)) if pieces else ()


@dataclass(frozen=True)
class PromptPlan:
    """What to encode: positive and unconditional pieces, and how to combine them."""

    positive: tuple[Piece, ...]  # composable weights; they sum to 1 without AND
    negative: tuple[Piece, ...]  # weights sum to 1; () = the model's default unconditional
    mode: str = "composable"  # "composable" or "blend" (blend mixes the pieces of an AND part)
    parts: tuple[Part, ...] = ()  # AND parts in order, over `positive`; () = one, of weight 1


def plan_prompts(prompt: str, negative_prompt: str = "", mode: str = "composable") -> PromptPlan:
    """Split a prompt and negative prompt into the pieces to encode."""
    if mode not in ("composable", "blend"):
        raise ValueError(f"prompt_mode: must be 'composable' or 'blend' (got {mode!r})")
    positive, parts = _positive(prompt)
    return PromptPlan(positive, negative_pieces(negative_prompt, prompt), mode, parts)


@dataclass(frozen=True)
class EncoderPrompts:
    """The prompts as the text encoders get them (LoRA tags out, multi-vector embeddings spelled
    as their tokens: `extras.applied`); the settings keep them as written, for the infotext."""

    prompt: str
    negative_prompt: str = ""
    prompt_schedule: str = ""  # animations' keyframes
    mode: str = "composable"

    @classmethod
    def written(cls, settings) -> EncoderPrompts:
        """The settings' prompts as they are written."""
        return cls(settings.prompt, settings.negative_prompt, settings.prompt_schedule,
                   settings.prompt_mode)

    def plan(self, prompt: str | None = None, mode: str | None = None) -> PromptPlan:
        """The plan of the prompt (or of a frame's `prompt`) with the negative prompt."""
        return plan_prompts(self.prompt if prompt is None else prompt, self.negative_prompt,
                            mode or self.mode)
