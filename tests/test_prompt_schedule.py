"""The web UI's prompt editing and alternation: schedules as its own function gives them.

tests/data/prompt_schedules.json holds what AUTOMATIC1111/stable-diffusion-webui's
`get_learned_conditioning_prompt_schedules` (modules/prompt_parser.py at 28bd8e14, lark 1.1.2)
returned for each case, run outside the project (its header says how); the documented results
below are that function's docstring.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.diffusion.prompt_schedule import is_scheduled, schedule, text_at
from helpers.diffusion.prompt_syntax import MAX_NESTING

CORPUS = json.loads((Path(__file__).parent / "data" / "prompt_schedules.json")
                    .read_text(encoding="utf-8"))
CASES = CORPUS["cases"]


def _schedule(case: dict) -> list[list]:
    entries = schedule(case["prompt"], case["steps"], case["hires_steps"],
                       case.get("old_scheduling", False))
    return [list(entry) for entry in entries]


def test_schedules_are_the_web_uis():
    wrong = []
    for case in CASES:
        ours = _schedule(case)
        # "schedules": the web UI itself gives one of these, by the process's hash seed
        if ours not in case.get("schedules", [case.get("schedule")]):
            wrong.append((case, ours))
    assert wrong == [], f"{len(wrong)} of {len(CASES)} differ, the first: {wrong[0]}"


def test_the_corpus_is_broad():
    prompts = {c["prompt"] for c in CASES}
    assert len(prompts) >= 150 and "28bd8e14" in CORPUS["source"]
    assert {c["steps"] for c in CASES} >= {1, 2, 10, 20, 37}
    assert sum(c["hires_steps"] is not None for c in CASES) >= 50
    assert sum(len(c.get("schedule", ())) > 1 for c in CASES) >= 150  # most of them do edit


# get_learned_conditioning_prompt_schedules's docstring, 10 steps.
DOCUMENTED = [
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", [(step, "a" if step % 2 else "(b:1.1)") for step in range(1, 11)]),
    ("[fe|]male", [(step, "female" if step % 2 else "male") for step in range(1, 11)]),
    ("[fe|||]male", [(step, "female" if step % 4 == 1 else "male") for step in range(1, 11)]),
]


@pytest.mark.parametrize(("text", "expected"), DOCUMENTED)
def test_the_documented_schedules(text, expected):
    assert schedule(text, 10) == tuple(expected)


def test_the_hires_pass_counts_on_from_the_first():
    assert schedule("a [b:.5] c", 10, 10) == ((10, "a b c"),)
    assert schedule("a [b:1.5] c", 10, 10) == ((5, "a  c"), (10, "a b c"))
    assert schedule("a [b:15] c", 10, 10) == ((5, "a  c"), (10, "a b c"))
    assert schedule("a [b:15] c", 10, 10, old_scheduling=True) == ((10, "a  c"),)


def test_a_stale_docstring_result_follows_the_function():
    # The docstring says [[5, 'a  c'], [10, 'a {b|d{ c']]; the grammar reads no `|` as text.
    assert schedule("a [{b|d{:.5] c", 10) == ((10, "a [{b|d{:.5] c"),)


def test_a_group_before_a_text_bracket_counts_where_the_web_ui_flips_a_coin():
    case = next(c for c in CASES if c["prompt"] == "[a:3]]" and c["steps"] == 10)
    assert sorted(case["schedules"]) == [[[3, "]"], [10, "a]"]], [[10, "[a:3]]"]]]
    assert schedule("[a:3]]", 10) == ((3, "]"), (10, "a]"))
    assert schedule("a [b:3]: c", 10) == ((3, "a : c"), (10, "a b: c"))


def test_the_outermost_well_formed_group_counts():
    assert schedule("[a:[b:2]]", 10) == ((2, "[a:]"), (10, "[a:b]"))  # `[a:...]` ends in no number
    assert schedule("(a:b:[c:3])", 10) == ((3, "(a:b:)"), (10, "(a:b:c)"))
    assert schedule("[a [b:3]:4]", 10) == ((3, ""), (4, ""), (10, "a b"))


@pytest.mark.parametrize("text", ["a|b [c:3]", "[a:b|c:3] x", "(a|b) [c:3]", "[c:3] a\\",
                                  "[c:3] a\\\nb"])
def test_what_the_grammar_cannot_read_is_the_prompt_at_every_step(text):
    assert schedule(text, 10) == ((10, text),)
    assert not is_scheduled(text)


def test_text_at_picks_as_reconstruct_cond_batch():
    entries = schedule("[a:b:3]", 10)
    assert entries == ((3, "a"), (10, "b"))
    assert [text_at(entries, step) for step in range(12)] == ["a"] * 4 + ["b"] * 7 + ["a"]
    assert text_at(((10, "only"),), 0) == "only"


@pytest.mark.parametrize(("text", "expected"), [
    ("[a:b:3]", True), ("[a|b]", True), ("(x [a|b]:1.2)", True), ("[a::100]", True),
    ("a (b:1.2) [c] ratio 16:9", False), ("[a:b]", False), ("\\[a:3\\]", False),
    ("a|b [c:3]", False), ("", False),
])
def test_is_scheduled(text, expected):
    assert is_scheduled(text) is expected


@pytest.mark.parametrize(("steps", "hires_steps"), [(0, None), (10, 0), (2.5, None), (True, None)])
def test_steps_must_be_whole_and_positive(steps, hires_steps):
    with pytest.raises(ValueError, match="must be a whole number of at least 1"):
        schedule("[a:b:3]", steps, hires_steps)


def test_a_when_beyond_floats_is_past_the_end_or_before_the_start():
    # the web UI stops with an OverflowError; here the text simply never (or always) switches
    assert schedule("[a:b:1e400]", 10) == ((10, "a"),)
    assert schedule("[a:b:-1e400]", 10) == ((10, "b"),)
    assert schedule("[a:b:1" + "0" * 400 + "]", 10, 10) == ((10, "a"),)
    assert schedule("[a:b:1e300]", 10) == ((10, "a"),)


# --- long and adversarial inputs: the size is the test (a quadratic reading would hang) ---------


def test_brackets_nested_too_deep_are_an_error():
    deepest = "[" * MAX_NESTING + "a:3" + "]" * MAX_NESTING
    assert schedule(deepest, 10) == ((3, "[" * 99 + "]" * 99), (10, "[" * 99 + "a" + "]" * 99))
    with pytest.raises(ValueError, match="nested more than 100 deep at character 101"):
        schedule("(" * 101 + "a", 10)
    with pytest.raises(ValueError, match="nested more than 100 deep at character 301"):
        schedule("[a:" * 16_000, 10)


def test_200k_characters_of_edits():
    text = "[a cat:a dog:3], " * 12_000
    assert len(text) > 200_000
    assert schedule(text, 10) == ((3, "a cat, " * 12_000), (10, "a dog, " * 12_000))


def test_200k_characters_of_alternations():
    text = "[a cat|a dog|a fox], " * 10_000
    entries = schedule(text, 10)
    assert len(text) > 200_000 and [end for end, _ in entries] == list(range(1, 11))
    assert entries[4][1] == "a dog, " * 10_000


@pytest.mark.parametrize("text", [
    "[" * 99 + "(a cat)[a dog]" * 15_000,  # 99 groups that never close over 200k characters
    "[a cat:a dog]" * 16_000,  # 16,000 groups that are no edit
    "[a:" + "1" * 200_000 + "x]",  # a long run of digits where the number would be
    "[a:" + " " * 200_000 + "]",
    ": " * 100_000,
    "]" * 200_000 + "[" * 100,
    "\\[" * 100_000,
])
def test_long_texts_that_edit_nothing(text):
    assert len(text) >= 200_000 and schedule(text, 10) == ((10, text),)


def test_long_nested_edits():
    text = "[an x [an a:the b:2] the y|" * 50 + "z" + "]" * 50  # 50 alternations deep
    assert schedule(text, 4) == ((1, "an x an a the y"), (2, "z"), (3, "an x the b the y"),
                                 (4, "z"))
    assert len(text * 150) > 200_000
    assert schedule(text * 150, 4) == ((1, "an x an a the y" * 150), (2, "z" * 150),
                                       (3, "an x the b the y" * 150), (4, "z" * 150))
