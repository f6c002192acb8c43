"""The weighted-prompt grammar, its inverse, keyframed prompt schedules and story mode."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers.prompts import (
    Prompt,
    format_prompts,
    parse_prompt_schedule,
    parse_prompts,
    parse_story,
    prompts_at,
    story_prompts,
)

INF = math.inf


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("desert:50 | snow:25", [Prompt("desert", 50), Prompt("snow", 25)]),
        ("ratio 16:9 poster", [Prompt("ratio 16:9 poster")]),
        ("C:\\art\\init.png", [Prompt("C:\\art\\init.png")]),
        ("http://host:8080/a.png", [Prompt("http://host:8080/a.png")]),
        ("https://x.org/a.png:0.5", [Prompt("https://x.org/a.png", 0.5)]),
        ("12\\:30 train", [Prompt("12:30 train")]),
        ("a cat:1:0.8", [Prompt("a cat", 1, 0.8)]),
        ("a:1:2:3", [Prompt("a:1", 2, 3)]),
        ("desert:abc", [Prompt("desert:abc")]),
        ("50:2", [Prompt("50", 2)]),
        ("C:\\art\\init.png:0.5", [Prompt("C:\\art\\init.png", 0.5)]),
    ],
)
def test_parse_reads_examples_as_users_mean_them(text, expected):
    assert parse_prompts(text) == expected


def test_defaults_are_weight_one_and_no_stop():
    (prompt,) = parse_prompts("a lighthouse")
    assert prompt.weight == 1.0
    assert prompt.stop == -INF


@pytest.mark.parametrize(
    ("number", "value"),
    [
        ("50", 50.0),
        ("-0.5", -0.5),
        ("1e-3", 1e-3),
        (".5", 0.5),
        ("+2", 2.0),
        ("3.", 3.0),
        ("2E+2", 200.0),
        (" 7 ", 7.0),
    ],
)
def test_weight_accepts_python_float_syntax(number, value):
    assert parse_prompts(f"sky:{number}") == [Prompt("sky", value)]


def test_negative_weight_is_kept():
    assert parse_prompts("fog:-1 | sun:2") == [Prompt("fog", -1), Prompt("sun", 2)]


def test_whitespace_and_newlines_around_pieces_are_stripped():
    text = "  desert : 50 \n|\n\tsnow:25\n"
    assert parse_prompts(text) == [Prompt("desert", 50), Prompt("snow", 25)]


def test_inner_whitespace_of_text_is_kept():
    assert parse_prompts("a  red\ncar") == [Prompt("a  red\ncar")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a \\| b", "a | b"),
        ("x\\^y", "x^y"),
        ("back\\\\slash", "back\\slash"),
        ("keep \\n and \\d", "keep \\n and \\d"),
        ("ends with\\\\", "ends with\\"),
    ],
)
def test_escapes_give_literal_characters(text, expected):
    assert parse_prompts(text) == [Prompt(expected)]


def test_unescaped_caret_is_plain_text_outside_story_mode():
    assert parse_prompts("x^2") == [Prompt("x^2")]


def test_escaped_colon_protects_a_trailing_number():
    assert parse_prompts("ratio 16\\:9") == [Prompt("ratio 16:9")]
    assert parse_prompts("ratio 16:9") == [Prompt("ratio 16", 9)]


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_input_is_an_error(text):
    with pytest.raises(ValueError, match="empty"):
        parse_prompts(text)


def test_non_string_input_is_a_type_error():
    with pytest.raises(TypeError, match="string"):
        parse_prompts(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "piece"), [("a || b", 2), ("a | b |", 3), ("| a", 1)])
def test_empty_piece_error_names_piece_and_position(text, piece):
    bars = [i for i, c in enumerate(text) if c == "|"]
    column = bars[piece - 2] + 2 if piece > 1 else 1  # just after the bar before the piece
    with pytest.raises(ValueError, match=rf"piece {piece} \(character {column}\) is empty"):
        parse_prompts(text)


@pytest.mark.parametrize("text", ["a || b", "sun | :5", "x | sea:5O", "a:0.5:1x"])
def test_piece_errors_quote_the_whole_prompt_text(text):
    with pytest.raises(ValueError) as info:
        parse_prompts(text)
    assert repr(text) in str(info.value)


def test_piece_without_text_is_an_error():
    text = "sky | :5"
    column = text.index(":") + 1
    with pytest.raises(ValueError, match=rf"piece 2 ':5' \(character {column}\) has no text"):
        parse_prompts(text)


@pytest.mark.parametrize("bad", ["5O", "1e", "9x", "4k", "1_0", "-2a", ".5.5"])
def test_near_number_weight_is_an_error_naming_piece_and_position(bad):
    text = f"sun | moon | desert:{bad}"
    with pytest.raises(ValueError) as info:
        parse_prompts(text)
    message = str(info.value)
    assert f"piece 3 'desert:{bad}' (character {text.index('desert') + 1})" in message
    assert f"{bad!r} at character {text.index(bad) + 1}" in message
    assert "\\:" in message  # tells the user how to keep it as text


def test_near_number_before_a_real_weight_is_an_error():
    with pytest.raises(ValueError, match="'5O'"):
        parse_prompts("desert:5O:3")


@pytest.mark.parametrize("bad", ["inf", "-inf", "NaN", "Infinity", "1e999"])
def test_non_finite_weight_or_stop_is_an_error(bad):
    with pytest.raises(ValueError, match="piece 1"):
        parse_prompts(f"sea:{bad}")
    with pytest.raises(ValueError, match="piece 1"):
        parse_prompts(f"sea:1:{bad}")


@pytest.mark.parametrize("text", ["ratio 16:9x poster", "city:4k photo", "a:b-c d", "x:/5"])
def test_parts_with_spaces_or_other_characters_stay_text(text):
    assert parse_prompts(text) == [Prompt(text)]


def test_all_weights_zero_is_an_error():
    with pytest.raises(ValueError, match="all weights are zero"):
        parse_prompts("a:0 | b:0.0 | c:-0")


def test_some_zero_weights_are_fine():
    assert [p.weight for p in parse_prompts("a:0 | b:2")] == [0.0, 2.0]


def test_prompt_rejects_non_finite_weight_and_bad_stop():
    with pytest.raises(ValueError, match="weight"):
        Prompt("a", INF)
    with pytest.raises(ValueError, match="stop"):
        Prompt("a", 1.0, math.nan)
    with pytest.raises(ValueError, match="stop"):
        Prompt("a", 1.0, INF)


def test_format_leaves_out_defaults():
    assert format_prompts([Prompt("desert", 50), Prompt("snow")]) == "desert:50 | snow"
    assert format_prompts([Prompt("fog", 1.0, 0.8)]) == "fog:1:0.8"


def test_format_keeps_colons_that_cannot_be_weights_unescaped():
    texts = ["ratio 16:9 poster", "C:\\art\\init.png", "http://host:8080/a.png"]
    assert format_prompts([Prompt(t) for t in texts]) == " | ".join(texts)


@pytest.mark.parametrize("text", ["a:1", "ratio 16:9", "desert:5O", "sea:inf", "t: 2"])
def test_format_escapes_a_colon_that_would_read_as_a_weight(text):
    formatted = format_prompts([Prompt(text, 3)])
    assert "\\:" in formatted
    assert parse_prompts(formatted) == [Prompt(text, 3)]


@pytest.mark.parametrize("text", [" a", "b ", "", "  ", "\nc"])
def test_format_rejects_text_that_cannot_round_trip(text):
    with pytest.raises(ValueError, match="prompt 2"):
        format_prompts([Prompt("ok"), Prompt(text)])


def test_format_rejects_empty_list_and_all_zero_weights():
    with pytest.raises(ValueError, match="no prompts"):
        format_prompts([])
    with pytest.raises(ValueError, match="zero"):
        format_prompts([Prompt("a", 0)])


_ALPHABET = "ab :|\\^^0123456789.+-eE/_x\n"
_suffixes = st.one_of(
    st.floats(allow_nan=False).map(repr),
    st.sampled_from(["5O", "1e", "inf", "-nan", "8080/a.png", "9 poster", "", " 3", "1_0"]),
)
_plain = st.text(_ALPHABET, min_size=1, max_size=12)
_texts = (
    st.one_of(_plain, st.builds(lambda t, s: f"{t}:{s}", _plain, _suffixes))
    .map(str.strip)
    .filter(bool)
)
_weights = st.floats(allow_nan=False, allow_infinity=False)
_stops = st.one_of(st.just(-INF), st.floats(allow_nan=False, allow_infinity=False))
_prompts = st.builds(Prompt, _texts, _weights, _stops)
_prompt_lists = st.lists(_prompts, min_size=1, max_size=5).filter(
    lambda ps: any(p.weight != 0 for p in ps)
)


@given(_prompt_lists)
def test_parse_inverts_format(prompts):
    assert parse_prompts(format_prompts(prompts)) == prompts


@given(st.lists(_prompt_lists, min_size=1, max_size=4))
def test_story_of_formatted_sets_round_trips(sets):
    text = " ^ ".join(format_prompts(ps) for ps in sets)
    assert parse_story(text) == sets


def test_schedule_parses_keyframes_in_frame_order():
    text = "30: a forest\n\n0: desert:50 | snow:25\n   \n"
    schedule = parse_prompt_schedule(text)
    assert list(schedule) == [0, 30]
    assert schedule[0] == [Prompt("desert", 50), Prompt("snow", 25)]
    assert schedule[30] == [Prompt("a forest")]


def test_schedule_duplicate_frame_names_both_lines():
    with pytest.raises(ValueError, match=r"line 3: frame 10 was already given on line 1"):
        parse_prompt_schedule("10: a\n20: b\n 10 : c")


@pytest.mark.parametrize("line", ["a forest", "12\\:30 train", "x: y", ":5"])
def test_schedule_line_without_frame_is_an_error_naming_the_line(line):
    with pytest.raises(ValueError, match=r"line 2 .*frame"):
        parse_prompt_schedule(f"0: start\n{line}")


def test_schedule_negative_frame_is_an_error():
    with pytest.raises(ValueError, match=r"line 1: frame -3"):
        parse_prompt_schedule("-3: a")


def test_schedule_prompt_error_names_line_and_character():
    line = "5: sun | snow:5O"
    with pytest.raises(ValueError) as info:
        parse_prompt_schedule(f"0: a\n{line}")
    message = str(info.value)
    assert message.startswith("line 2: piece 2 'snow:5O'")
    assert f"character {line.index('snow') + 1}" in message


def test_schedule_empty_keyframe_is_an_error():
    with pytest.raises(ValueError, match="line 1: prompt text is empty"):
        parse_prompt_schedule("0:   ")


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_empty_schedule_is_an_error(text):
    with pytest.raises(ValueError, match="empty"):
        parse_prompt_schedule(text)


def test_prompts_at_gives_latest_keyframe_at_or_before_frame():
    schedule = {10: [Prompt("a")], 30: [Prompt("b")], 20: [Prompt("c")]}
    picked = [prompts_at(schedule, f)[0].text for f in (0, 9, 10, 19, 20, 29, 30, 1000)]
    assert picked == ["a", "a", "a", "a", "c", "c", "b", "b"]


def test_prompts_at_rejects_negative_frame_and_empty_schedule():
    with pytest.raises(ValueError, match="frame -1"):
        prompts_at({0: [Prompt("a")]}, -1)
    with pytest.raises(ValueError, match="empty"):
        prompts_at({}, 0)


def test_story_splits_sets_on_caret_and_keeps_escaped_caret():
    story = parse_story("desert:2 | sun ^ snow\\^flakes ^\n a forest:0.5")
    assert story == [
        [Prompt("desert", 2), Prompt("sun")],
        [Prompt("snow^flakes")],
        [Prompt("a forest", 0.5)],
    ]


def test_story_error_names_the_set_and_position():
    text = "a ^ b ^ c || d"
    with pytest.raises(ValueError) as info:
        parse_story(text)
    message = str(info.value)
    assert message.startswith("story set 3: piece 2")
    assert f"character {text.index('||') + 2}" in message


def test_story_empty_set_is_an_error():
    with pytest.raises(ValueError, match="story set 2: prompt text is empty"):
        parse_story("a ^ ^ b")


def test_story_prompts_changes_every_n_steps_and_stays_on_last():
    story = [[Prompt("a")], [Prompt("b")], [Prompt("c")]]
    picked = [story_prompts(story, step, 3)[0].text for step in range(12)]
    assert picked == ["a"] * 3 + ["b"] * 3 + ["c"] * 6


@pytest.mark.parametrize("every", [0, -1, 1.5])
def test_story_prompts_rejects_every_below_one(every):
    with pytest.raises(ValueError, match="every"):
        story_prompts([[Prompt("a")]], 0, every)


def test_story_prompts_rejects_negative_step_and_empty_story():
    with pytest.raises(ValueError, match="step -1"):
        story_prompts([[Prompt("a")]], -1, 1)
    with pytest.raises(ValueError, match="no prompt sets"):
        story_prompts([], 0, 1)
