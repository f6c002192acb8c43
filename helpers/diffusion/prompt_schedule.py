"""The web UI's prompt editing and alternation: one prompt text -> the text at each sampling step.

`[from:to:when]` writes `from` until step `when`, then `to`; `[to:when]` has no `from`,
`[from::when]` no `to`. A `when` written with a `.` is a fraction of the steps (`0.25`, `.5`),
otherwise a step number; in the hires pass (`hires_steps`) fractions count from 1.0 and step numbers
from the first pass's steps, so `[a:b:1.5]` switches halfway through the hires steps.
`[a|b|c]` alternates: `a` at step 1, `b` at 2, `c` at 3, `a` at 4, ... (an empty option is "").
Both nest (`a[b:[c:d:2]:1]e`); emphasis `( )`, `[ ]` and `(a:1.2)` stay as written, for the
attention parser to read afterwards.

`schedule` gives the web UI's `get_learned_conditioning_prompt_schedules` result: (end step,
text) pairs, one at every step where some edit switches and one at the last step (all steps with
an alternation). `text_at` picks the entry for a sampler step as its `reconstruct_cond_batch` does.

How the text is read (the web UI's lark grammar, read here in one pass without lark):
- A bracket group counts when its content is well formed: brackets inside it pair up, `( )` hold
  at most one `:` at their own level and no `|`, `[ ]` hold nothing (emphasis), `|`s (alternation)
  or one or two `:`s where what follows the last one is a number with optional spaces around it
  (editing; the number is the grammar's SIGNED_NUMBER: `3`, `-3`, `.5`, `5.`, `1e2`, `+1.5E-1`).
  Outside groups, brackets and colons are text: `a [unbalanced` and `ratio 16:9` stay as written.
- A `|` outside every group, or a backslash at the end or before a line break, is a text the
  grammar cannot read: the web UI then uses the prompt as it is at every step, and so do we.
  `\\[`, `\\]`, `\\(`, `\\)`, `\\:` and `\\|` are text and keep their backslash here.
- Where groups overlap, the outermost well-formed one counts (`[a:[b:2]]` is `[a:` + an edit + `]`).

Differences from the web UI, deliberate:
- Where a group's closing bracket is followed at once by a bracket or colon that is text
  (`[a:3]:`, `[a:3]]`, `(x:y:[a:3])`), lark's Earley parser sees two readings and takes one
  by the order of a Python set, which depends on the process's hash seed: the same prompt edits in
  one run of the web UI and stays text in the next. Here the group always counts (one of the web
  UI's two results).
- Brackets open more than `MAX_NESTING` deep at once are an error (the work stays linear), as
  in `prompt_syntax`; the web UI reads any depth.
- A `when` beyond the float range (`1e400`, or 50,000 digits) is past the end of any run (the
  web UI stops with an OverflowError there); one below it (`-1e400`) is before the start.
The web UI's docstring gives `a [{b|d{:.5] c` an edit, but its grammar has not read a `|` as
text since 1.6, so its function gives the prompt as it is, and so does this one.
Facts from AUTOMATIC1111/stable-diffusion-webui modules/prompt_parser.py at 28bd8e14 (web UI
1.6-1.10, lark 1.1.2). Pure Python, no heavy imports.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from helpers.diffusion.prompt_syntax import MAX_NESTING

Schedule = tuple[tuple[int, str], ...]  # (last step, text) pairs, as the web UI's schedules

# A run of text (escapes included), one special character, or a lone backslash (unreadable).
_TOKEN = re.compile(r"(?:[^\\\[\]():|]|\\.)+|[\[\]():|]|\\")
# The grammar's SIGNED_NUMBER; its alternatives in the same order, as Python's `re` takes the
# first that matches. `[0-9]`, not `\d`: other scripts' digits are text there.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+[eE][+-]?[0-9]+|(?:[0-9]+\.(?:[0-9]+)?|\.[0-9]+)"
                     r"(?:[eE][+-]?[0-9]+)?|[0-9]+)")
_SPACES = re.compile(r"\s*")
_CLOSER = {"]": "[", ")": "("}
_SPECIAL = frozenset("[]():|\\")  # the tokens that are not text


@dataclass(frozen=True)
class _Edit:
    """`[before:after:when]`; before is None for `[after:when]`."""

    before: tuple | None
    after: tuple
    when: str  # the number as written: its `.` decides fraction or step


@dataclass(frozen=True)
class _Alternation:
    """`[a|b|c]`: option (step - 1) % n at each step."""

    options: tuple[tuple, ...]


Item = str | _Edit | _Alternation


@dataclass(slots=True)
class _Group:
    """A bracket group being read: where it starts in the output, and its own-level marks."""

    bracket: str  # "[" or "("
    start: int  # index of its opening bracket in the output list
    colons: list[int]  # output indices of its own-level `:`
    bars: list[int]  # output indices of its own-level `|`
    nested_after_colon: bool = False  # a group closed after its last `:` (not a number then)
    when: str | None = None  # an edit's number, once its `]` came


# --- reading ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)  # a run asks again with other steps (hires pass, infotext)
def _parse(text: str) -> tuple[Item, ...] | None:
    """The text as items (strings and groups); None where the web UI's grammar cannot read it."""
    out: list[Item] = []
    stack: list[_Group] = []
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token not in _SPECIAL:
            out.append(token)  # text
            continue
        if token == "\\":
            return None  # a backslash escapes nothing: lark fails on the whole prompt
        if token in "[(":
            if len(stack) == MAX_NESTING:
                raise ValueError(f"brackets are nested more than {MAX_NESTING} deep at "
                                 f"character {match.start() + 1}")
            stack.append(_Group(token, len(out), [], []))
        elif stack and not _mark(stack[-1], token, out):
            if _drop(stack) or token == "|":
                return None  # a `|` left outside every group
        elif not stack and token == "|":
            return None
        out.append(token)
        if token in _CLOSER and stack and stack[-1].bracket == _CLOSER[token]:
            _close(stack, out)
    if _drop(stack):
        return None
    return tuple(out)


def _mark(group: _Group, token: str, out: list[Item]) -> bool:
    """Note a token read inside `group`; False when it makes the group (and so every group
    around it, which holds it) ill-formed."""
    if token == ":":
        if group.bars or len(group.colons) == (1 if group.bracket == "(" else 2):
            return False
        group.colons.append(len(out))
        group.nested_after_colon = False
    elif token == "|":
        if group.bracket == "(" or group.colons:
            return False
        group.bars.append(len(out))
    elif token in _CLOSER:
        return group.bracket == _CLOSER[token] and (token == ")" or _edit_ok(group, out))
    return True


def _edit_ok(group: _Group, out: list[Item]) -> bool:
    """Whether a `[` group with colons ends in a number (one without is emphasis or alternation)."""
    if not group.colons:
        return True
    if not group.nested_after_colon:
        group.when = _number(out[group.colons[-1] + 1:])
    return group.when is not None


def _number(items: list[Item]) -> str | None:
    """The number that `items` (text only: no group closed after the colon) hold, with
    optional spaces around it, as the grammar reads it (spaces, SIGNED_NUMBER, spaces)."""
    text = "".join(items)
    number = _NUMBER.match(text, _SPACES.match(text).end())
    if number is None or _SPACES.fullmatch(text, number.end()) is None:
        return None
    return number.group(0)


def _drop(stack: list[_Group]) -> bool:
    """Ill-formed groups become text (their brackets, colons and contents stay in the output);
    True when one of them held a `|`, which is then outside every group."""
    bar = any(group.bars for group in stack)
    stack.clear()
    return bar


def _close(stack: list[_Group], out: list[Item]) -> None:
    """The innermost group closed well formed: an edit or alternation replaces its output."""
    group = stack.pop()
    if stack:
        stack[-1].nested_after_colon = True
    if group.bracket == "(" or not (group.colons or group.bars):
        return  # emphasis stays as written
    marks = [group.start, *group.colons, *group.bars, len(out) - 1]
    pieces = [tuple(out[a + 1:b]) for a, b in itertools.pairwise(marks)]
    if group.bars:
        node: Item = _Alternation(tuple(pieces))
    else:
        node = _Edit(pieces[0] if len(pieces) == 3 else None, pieces[-2], group.when or "")
    del out[group.start:]
    out.append(node)


# --- steps and texts ----------------------------------------------------------------------------


def schedule(text: str, steps: int, hires_steps: int | None = None,
             old_scheduling: bool = False) -> Schedule:
    """The web UI's schedule of `text`: (end step, text) pairs, the last ending at the steps.

    With `hires_steps` it is the hires pass's schedule (`steps` being the first pass's);
    `old_scheduling` is the web UI's option "Old prompt editing timelines" (a `when` below 1 is
    a fraction, whether or not it has a `.`; the hires pass then schedules as the first).
    """
    for name, value in (("steps", steps), ("hires_steps", hires_steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"{name}: must be a whole number of at least 1 (got {value!r})")
    items = _parse(text)
    total = hires_steps if hires_steps is not None and not old_scheduling else steps
    if items is None:
        return ((total, text),)
    whens: dict[int, int] = {}  # id of each edit -> the last step of its `before`
    switches = {total}
    for node in _nodes(items):
        if isinstance(node, _Alternation):
            switches.update(range(1, total + 1))
            continue
        when = _when(node.when, steps, hires_steps, old_scheduling)
        whens[id(node)] = when
        if when >= 1:
            switches.add(when)
    return tuple((step, _text_at_step(items, step, whens)) for step in sorted(switches))


def _when(number: str, steps: int, hires_steps: int | None, old_scheduling: bool) -> int:
    """The last step of an edit's `before`, as the web UI counts it (below 1: never)."""
    value = float(number)
    if old_scheduling or hires_steps is None:
        total = steps
        if old_scheduling:
            value = value * total if value < 1 else value
        elif "." in number:
            value *= total
    else:
        total = hires_steps  # the hires pass: its steps follow the first pass's
        value = (value - 1.0) * total if "." in number else value - steps
    if math.isinf(value):  # beyond floats: past the end of any run, or before its start
        return total if value > 0 else 0
    return min(total, int(value))


def _nodes(items: tuple[Item, ...]) -> Iterator[_Edit | _Alternation]:
    """Every edit and alternation in `items`, nested ones included (each visited once)."""
    pending = [items]
    while pending:
        for item in pending.pop():
            if isinstance(item, _Edit):
                yield item
                pending += [item.after] if item.before is None else [item.before, item.after]
            elif isinstance(item, _Alternation):
                yield item
                pending += item.options


def _text_at_step(items: tuple[Item, ...], step: int, whens: dict[int, int]) -> str:
    """The text at `step` (counted from 1, as the web UI's schedule steps)."""
    parts: list[str] = []
    _write(items, step, whens, parts)
    return "".join(parts)


def _write(items: tuple[Item, ...], step: int, whens: dict[int, int], parts: list[str]) -> None:
    """Append the text of `items` at `step` to `parts` (groups nest `MAX_NESTING` deep at most,
    so the recursion is shallow)."""
    for item in items:
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, _Edit):
            chosen = (item.before or ()) if step <= whens[id(item)] else item.after
            _write(chosen, step, whens, parts)
        else:
            _write(item.options[(step - 1) % len(item.options)], step, whens, parts)


def text_at(entries: Schedule, step: int) -> str:
    """The text a sampler uses at `step` (its model evaluations counted from 0), as the web UI's
    `reconstruct_cond_batch`: the first entry whose end step is at least `step`, else the first."""
    for end, text in entries:
        if step <= end:
            return text
    return entries[0][1]


def is_scheduled(text: str) -> bool:
    """Whether `text` holds prompt editing or alternation that the web UI would read."""
    items = _parse(text)
    return items is not None and any(not isinstance(item, str) for item in items)
