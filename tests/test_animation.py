"""Keyframe schedules (`0:(1.0), 30:(1.05)`), safe expressions in t, and prompts by frame."""

from __future__ import annotations

import ast
import builtins
import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import helpers.animation as animation
import helpers.expressions as expressions
from helpers.animation import (
    Schedule,
    check_prompt_schedule,
    check_schedule,
    parse_schedule,
    prompts_at_frame,
    schedule_values,
)
from helpers.prompts import Prompt, parse_prompt_schedule

VALUES = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
KEYFRAMES = st.dictionaries(st.integers(0, 500), VALUES, min_size=1, max_size=8)


def _text(keys: dict[int, float], order: list[int], parens: bool) -> str:
    """Write keys as a schedule in the given order, with or without parentheses."""
    return ", ".join(f"{k}:({keys[k]!r})" if parens else f"{k}: {keys[k]!r}" for k in order)


@st.composite
def schedules(draw) -> tuple[dict[int, float], str]:
    keys = draw(KEYFRAMES)
    order = draw(st.permutations(sorted(keys)))
    text = _text(keys, order, draw(st.booleans()))
    return keys, text + draw(st.sampled_from(["", ",", " , \n"]))


@given(schedules())
def test_linear_hits_keys_lies_on_lines_and_holds_at_the_ends(drawn):
    keys, text = drawn
    frames = sorted(keys)
    values = parse_schedule(text).values(frames[-1] + 20)
    for frame in frames:
        assert values[frame] == keys[frame]
    for a, b in itertools.pairwise(frames):
        for frame in range(a + 1, b):
            line = keys[a] + (frame - a) / (b - a) * (keys[b] - keys[a])
            assert math.isclose(values[frame], line, rel_tol=1e-9, abs_tol=1e-9)
    assert values[: frames[0]] == [keys[frames[0]]] * frames[0]
    assert values[frames[-1] :] == [keys[frames[-1]]] * 20


@given(schedules())
def test_cubic_passes_through_every_key_and_holds_at_the_ends(drawn):
    keys, text = drawn
    frames = sorted(keys)
    values = schedule_values(text, frames[-1] + 5, interpolation="cubic")
    for frame in frames:
        assert abs(values[frame] - keys[frame]) <= 1e-12
    assert values[: frames[0]] == [keys[frames[0]]] * frames[0]
    assert values[frames[-1] :] == [keys[frames[-1]]] * 5
    assert all(math.isfinite(v) for v in values)


@given(st.sets(st.integers(0, 300), min_size=2, max_size=6), VALUES, VALUES)
def test_cubic_through_keys_on_a_line_is_that_line(frames, slope, offset):
    text = ", ".join(f"{k}:({slope / 1000 * k + offset!r})" for k in sorted(frames))
    values = schedule_values(text, max(frames) + 1, interpolation="cubic")
    for frame in range(min(frames), max(frames) + 1):
        line = slope / 1000 * frame + offset
        assert math.isclose(values[frame], line, rel_tol=1e-9, abs_tol=1e-6)


def test_cubic_is_smooth_where_linear_has_a_corner():
    linear = schedule_values("0:(0), 10:(10), 20:(0)", 21)
    cubic = schedule_values("0:(0), 10:(10), 20:(0)", 21, interpolation="cubic")
    assert linear[9] == 9 and cubic[9] > 9.5  # rounds the peak instead of a straight ramp
    assert cubic[10] == 10 and cubic[9] == pytest.approx(cubic[11])


@given(VALUES)
def test_a_bare_number_is_the_same_value_at_every_frame(value):
    assert schedule_values(repr(value), 50) == [value] * 50


@pytest.mark.parametrize(("text", "value"), [("1.05", 1.05), ("-0.5", -0.5), ("1e-2", 0.01),
                                             (" 3 ", 3.0), ("(2)", 2.0), ("pi / 2", math.pi / 2)])
def test_bare_values_are_constants(text, value):
    schedule = parse_schedule(text, "zoom")
    assert schedule.values(4) == [value] * 4
    assert schedule.at(10_000) == value


def test_keys_out_of_order_are_sorted_and_parentheses_are_optional():
    assert schedule_values("30: 1.3, 0:(1), ", 31) == schedule_values("0:(1), 30:(1.3)", 31)
    assert parse_schedule("20:(2), 0:(0)").at(10) == 1.0


def test_expression_follows_math_at_every_frame():
    schedule = parse_schedule("0:(1 + 0.01*sin(t/5))", "zoom")
    for frame in (0, 1, 7, 100, 12345):
        assert schedule.at(frame) == 1 + 0.01 * math.sin(frame / 5)


def test_expression_key_holds_until_the_next_key_and_joins_continuously():
    values = schedule_values("0:(1), 10:(t), 20:(5)", 25)
    assert values[10:20] == [float(t) for t in range(10, 20)]
    assert values[5] == 5.5  # the ramp from key 0 ends at the expression's value at frame 10
    assert values[20:] == [5.0] * 5


def test_expression_before_its_key_is_its_value_there_and_goes_on_after_the_last_key():
    values = schedule_values("10:(t * 2)", 15)
    assert values[:11] == [20.0] * 11
    assert values[14] == 28.0


def test_constant_expressions_interpolate_like_numbers():
    assert parse_schedule("0:(pi), 10:(2*pi)").at(5) == pytest.approx(1.5 * math.pi)


@pytest.mark.parametrize(
    ("expression", "python"),
    [
        ("1 if t < 3 else 2", lambda t: 1 if t < 3 else 2),
        ("0 if t < 2 or t >= 4 else 1", lambda t: 0 if t < 2 or t >= 4 else 1),
        ("1 if not 1 <= t <= 3 and t != 5 else 0",
         lambda t: 1 if not 1 <= t <= 3 and t != 5 else 0),
        ("clamp(t, 1, 3) + max(t, 4, 0) - min(t, 2)",
         lambda t: min(max(t, 1), 3) + max(t, 4) - min(t, 2)),
        ("t // 2 + t % 3 + 2**t - pow(2, t) + -t", lambda t: t // 2 + t % 3 - t),
        ("round(t / 4) + floor(-t / 4) + abs(-t)", lambda t: round(t / 4) + math.floor(-t / 4) + t),
        ("hypot(t, 1) + atan2(t, 2) + log(t + 1, 2) + e*tau",
         lambda t: math.hypot(t, 1) + math.atan2(t, 2) + math.log(t + 1, 2) + math.e * math.tau),
    ],
)
def test_expression_whitelist_computes_like_python(expression, python):
    assert schedule_values(f"0:({expression})", 7) == [float(python(float(t))) for t in range(7)]


@pytest.mark.parametrize(
    ("expression", "named"),
    [
        ("__import__('os').system('x')", "__import__('os').system('x')"),
        ("__import__('os')", "unknown function '__import__'"),
        ("t.__class__", "'t.__class__' is not allowed (attribute)"),
        ("().__class__", "'().__class__' is not allowed (attribute)"),
        ("open('x')", "unknown function 'open'"),
        ("[1][0]", "'[1][0]' is not allowed (subscript)"),
        ("lambda: 1", "'lambda: 1' is not allowed (lambda)"),
        ("9**9**9", "'9**9**9' is too large (overflow)"),
        ("10**400", "'10**400' is too large (overflow)"),
        ("1e999", "the number '1e999' is too large"),
        ("1e308 * 10", "'1e308 * 10' is not finite (inf)"),
        ("'a'*9", "\"'a'\" is not a number"),
        ("True", "'True' is not a number"),
        ("t if t else t", "the condition 't' must be a comparison"),
        ("t < 3", "comparison 't < 3' is only allowed in 'a if cond else b'"),
        ("exec('1')", "unknown function 'exec'"),
        ("eval('1')", "unknown function 'eval'"),
        ("globals()", "unknown function 'globals'"),
        ("abc", "unknown name 'abc'"),
        ("sin", "function 'sin' must be called"),
        ("round(t, ndigits=2)", "keyword arguments are not allowed: 'round(t, ndigits=2)'"),
        ("sin(t, 2)", "sin takes 1 argument: 'sin(t, 2)'"),
        ("(x for x in [1])", "'(x for x in [1])' is not allowed (generatorexp)"),
        ("(t := 1)", "'t := 1' is not allowed (namedexpr)"),
        ("f'{t}'", "\"f'{t}'\" is not allowed (joinedstr)"),
        ("t @ t", "the operator in 't @ t' is not allowed"),
        ("1/0", "division by zero in '1/0'"),
        ("sqrt(-1)", "'sqrt(-1)' is outside the function's domain"),
        ("(-8) ** (1/3)", "'(-8) ** (1/3)' is outside the function's domain"),
        ("1 +", "is not a valid expression"),
        ("(" * 300 + "1" + ")" * 300, "is not a valid expression"),
    ],
)
def test_hostile_or_bad_expressions_are_refused_at_parse_time_naming_the_part(expression, named):
    with pytest.raises(ValueError, match=r"^zoom: in ") as error:
        check_schedule(f"0:({expression})", "zoom")
    assert named in str(error.value)


def test_expressions_never_reach_eval_exec_or_compile(monkeypatch):
    real_compile = builtins.compile

    def refuse(*args, **kwargs):
        raise AssertionError("user text reached eval / exec")

    def ast_only(source, filename, mode, flags=0, *args, **kwargs):
        assert flags & ast.PyCF_ONLY_AST, "user text was compiled to code"
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    monkeypatch.setattr(builtins, "compile", ast_only)
    values = schedule_values("0:(1 + sin(t) if t < 5 else -t), 8:(2)", 10, interpolation="cubic")
    with pytest.raises(ValueError, match="unknown function '__import__'"):
        check_schedule("0:(__import__('os'))")
    monkeypatch.undo()
    assert values[3] == 1 + math.sin(3) and values[9] == 2


@pytest.mark.parametrize("module", [animation, expressions])
def test_module_source_calls_no_eval_exec_or_compile(module):
    tree = ast.parse(Path(module.__file__).read_text())
    called = {node.func.id for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not called & {"eval", "exec", "compile", "__import__"}
    attributes = {node.func.attr for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
    assert "parse" in attributes or module is animation


def test_division_by_zero_at_a_frame_is_raised_by_values_naming_the_frame():
    schedule = parse_schedule("0:(1), 10:(1/(t-15)), 20:(2)", "zoom")  # parses fine
    assert len(schedule.values(15)) == 15
    with pytest.raises(ValueError) as error:
        schedule.values(30)
    assert str(error.value) == (
        "zoom: at frame 15, '10:(1/(t-15))': division by zero in '1/(t-15)'"
    )


def test_domain_error_at_a_frame_names_the_frame():
    with pytest.raises(ValueError, match=r"^zoom: at frame 4, '0:\(sqrt\(3 - t\)\)': 'sqrt"):
        schedule_values("0:(sqrt(3 - t))", 10, "zoom")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("30:(1.05", "zoom: missing ')' after '30:(1.05'"),
        ("0:(1), 30:(1.05", "zoom: missing ')' after '30:(1.05'"),
        ("0:(1.05, 30:(2)", "zoom: missing ')' after '0:(1.05'"),
        ("(1.05", "zoom: missing ')' after '(1.05'"),
        ("0:(1)), 5:(2)", "zoom: unmatched ')' in '0:(1))'"),
        ("0:(1), x:(2)", "zoom: key 'x' is not a frame number (a whole number >= 0)"),
        ("-5:(1)", "zoom: key '-5' is not a frame number (a whole number >= 0)"),
        ("1.5:(1)", "zoom: key '1.5' is not a frame number (a whole number >= 0)"),
        ("0:(1), 30", "zoom: missing ':' after key '30'"),
        ("0:(1) 30:(2)", "zoom: missing ',' between '0:(1)' and '30:(2)'"),
        ("0: 1 30: 2, 60: 3", "zoom: missing ',' between '0: 1' and '30: 2'"),
        ("0:(1):(2)", "zoom: unexpected ':' after '0:(1)'"),
        ("0:(1), 0:(2)", "zoom: key 0 is given twice: '0:(1)' and '0:(2)'"),
        ("0:, 5:(2)", "zoom: '0:' has no value"),
        ("0:(), 5:(2)", "zoom: '0:()' has no value"),
        ("0:(1),, 5:(2)", "zoom: empty keyframe (two commas, or a comma first) at ', 5:(2)'"),
        (":(1)", "zoom: missing frame number before ':(1)'"),
        ("1, 2", "zoom: '1, 2' has a ',' but no keys; write '0:(1), 30:(2)'"),
        ("", "zoom: empty schedule; write keyframes like '0:(1.0), 30:(1.05)' or one number"),
        (" \n ", "zoom: empty schedule; write keyframes like '0:(1.0), 30:(1.05)' or one number"),
        ("0:(abc)", "zoom: in '0:(abc)': unknown name 'abc'; use only " + expressions._NAMES),
    ],
)
def test_malformed_schedules_get_a_message_pointing_at_the_bad_part(text, message):
    with pytest.raises(ValueError) as error:
        parse_schedule(text, "zoom")
    assert str(error.value) == message


def test_bad_arguments_are_refused_with_the_name():
    with pytest.raises(ValueError, match=r"^zoom: interpolation 'spline' must be 'linear'"):
        check_schedule("1", "zoom", "spline")
    schedule = parse_schedule("1", "zoom")
    with pytest.raises(ValueError, match=r"^zoom: frame -1 must be a whole number >= 0"):
        schedule.at(-1)
    with pytest.raises(ValueError, match=r"^zoom: frames 2.5 must be a whole number >= 0"):
        schedule.values(2.5)
    with pytest.raises(TypeError, match=r"^zoom: schedule must be a string"):
        parse_schedule(1.05, "zoom")
    assert check_schedule("0:(1), 10:(2)") is None and schedule.values(0) == []


def test_schedule_is_a_frozen_value():
    schedule = parse_schedule("0:(1), 10:(2)", "zoom")
    assert isinstance(schedule, Schedule)
    assert [key.frame for key in schedule.keys] == [0, 10]
    with pytest.raises(AttributeError):
        schedule.name = "other"


PROMPTS = "0: desert:1 | snow:0.5\n10: sea:2 | desert:3"


def test_prompts_at_keys_are_the_keys_prompts():
    assert prompts_at_frame(PROMPTS, 0) == [Prompt("desert", 1), Prompt("snow", 0.5)]
    assert prompts_at_frame(PROMPTS, 10) == [Prompt("sea", 2), Prompt("desert", 3)]


def test_prompt_weights_at_the_midpoint_are_half_each_in_a_stable_order():
    assert prompts_at_frame(PROMPTS, 5) == [
        Prompt("desert", 2.0), Prompt("snow", 0.25), Prompt("sea", 1.0)
    ]
    assert [p.text for p in prompts_at_frame(PROMPTS, 9)] == ["desert", "snow", "sea"]


def test_prompt_weights_follow_the_line_between_keys():
    for frame in range(11):
        u = frame / 10
        weights = {p.text: p.weight for p in prompts_at_frame("0: a:2\n10: a:-1 | b:4", frame)}
        assert weights["a"] == pytest.approx((1 - u) * 2 + u * -1)
        assert weights.get("b", 0.0) == pytest.approx(u * 4)


def test_prompts_before_and_after_the_schedule_are_the_first_and_last_sets():
    text = "5: a forest\n10: a city:2"
    assert prompts_at_frame(text, 0) == [Prompt("a forest")]
    assert prompts_at_frame(text, 1000) == [Prompt("a city", 2)]


def test_prompt_pieces_of_weight_zero_are_dropped():
    assert prompts_at_frame("0: a | b:0\n10: a", 0) == [Prompt("a")]
    assert prompts_at_frame("0: a | b\n10: a", 10) == [Prompt("a")]
    assert prompts_at_frame("0: a:1 | b:1\n10: a:-1 | b:1", 5) == [Prompt("b", 1.0)]


def test_prompt_stop_comes_from_the_side_that_has_the_piece():
    prompts = prompts_at_frame("0: a:1:0.5\n10: a:1:0.8 | b:1:0.3", 5)
    assert prompts == [Prompt("a", 1.0, 0.5), Prompt("b", 0.5, 0.3)]


def test_a_text_given_twice_in_a_key_is_matched_by_occurrence():
    assert prompts_at_frame("0: a:1 | a:2\n10: a:3", 5) == [Prompt("a", 2.0), Prompt("a", 1.0)]


def test_every_weight_zero_at_a_frame_is_an_error_naming_the_frame():
    with pytest.raises(ValueError, match=r"^prompts: every prompt weight is zero at frame 5$"):
        prompts_at_frame("0: a:1\n10: a:-1", 5, "prompts")


@pytest.mark.parametrize("text", ["", "0: a\n0: b", "x: a", "0: a || b", "-1: a"])
def test_prompt_schedule_errors_are_parse_prompt_schedules_with_the_name(text):
    with pytest.raises(ValueError) as expected:
        parse_prompt_schedule(text)
    with pytest.raises(ValueError) as error:
        check_prompt_schedule(text, "prompts")
    assert str(error.value) == f"prompts: {expected.value}"
    with pytest.raises(ValueError, match=r"^prompt_schedule: "):
        prompts_at_frame(text, 3)


def test_prompt_frame_must_not_be_negative():
    with pytest.raises(ValueError, match=r"^prompts: frame -1 must be a whole number >= 0"):
        prompts_at_frame("0: a", -1, "prompts")
