"""Long and adversarial inputs: every parser is linear, and what a person never types is capped.

Each test feeds the size the audit found hanging (a 16 KB expression, a prompt of 30,000 spaces,
`<a:` 30,000 times, a 900,000-character infotext line, ...). There is no timing assert: the size
is the test, since a quadratic algorithm on it would take minutes and hang the suite.
"""

from __future__ import annotations

import math

import pytest
from common import TINY_SD_CLI, TINY_VQGAN_CLI

from helpers import prompts, runs
from helpers.animation import parse_schedule, prompts_at_frame
from helpers.cli import main
from helpers.diffusion import extras, prompt_schedule, prompt_syntax
from helpers.expressions import EvalError, compile_expression
from helpers.metadata import infotext
from helpers.settings import (
    MAX_EXPRESSION_CHARS,
    MAX_PROMPT_CHARS,
    DiffusionSettings,
    VQGANClipSettings,
)

WIDE = "max(" + ", ".join(["t+1"] * 4000) + ")"  # 16 KB, one node per term
SPACES = " " * 30_000


# --- 1. expressions ----------------------------------------------------------------------------


def test_a_16_kb_expression_compiles_and_runs():
    assert len(WIDE) > 16_000
    function, uses_t = compile_expression(WIDE)
    assert uses_t and function(2.0) == 3.0
    assert parse_schedule(f"0: ({WIDE}), 10: 1").at(0) == 1.0


def test_an_error_deep_in_a_16_kb_expression_names_its_part():
    function, _ = compile_expression(WIDE[:-1] + ", 1/(t-3))")
    with pytest.raises(EvalError, match=r"division by zero in '1/\(t-3\)'"):
        function(3.0)


def test_a_sum_of_2000_terms_is_a_loop_not_a_recursion():
    function, _ = compile_expression("+".join(["0.001*sin(t)"] * 2000))
    assert function(1.0) == pytest.approx(2.0 * math.sin(1.0))
    assert compile_expression("2-3-4")[0](0) == -5 and compile_expression("2**3**2")[0](0) == 512
    with pytest.raises(EvalError, match=r"division by zero in '1/\(t-3\)'"):
        compile_expression("+".join(["t"] * 1500) + "+1/(t-3)")[0](3.0)


def test_a_chain_longer_than_python_reads_is_a_clean_error():
    with pytest.raises(ValueError, match="chains too many operations for Python to read"):
        compile_expression("+".join(["1"] * 4999))  # 9,997 characters: within the cap


def test_settings_with_long_schedules_are_quick_to_copy():
    schedule = "max(" + ", ".join(["t+1"] * 1900) + ")"  # just under the cap
    assert len(schedule) < MAX_EXPRESSION_CHARS
    settings = DiffusionSettings(animate="2d", frames=3, zoom=schedule, angle=schedule,
                                 translation_x=schedule, translation_y=schedule,
                                 noise_schedule=schedule, strength_schedule=schedule)
    for seed in range(200):  # every copy checks every schedule again
        settings = settings.replace(seed=seed)
    assert settings.seed == 199


# --- 2. BREAK and the rest of the web UI's syntax -----------------------------------------------


def test_a_prompt_of_30000_spaces():
    assert prompt_syntax.parse_attention(SPACES) == [(SPACES, 1.0)]
    assert prompt_syntax.positive_pieces(SPACES) == (("", 1.0),)
    assert runs.slugify(SPACES) == "untitled"
    text = f"a{SPACES}BREAK{SPACES}b"
    assert prompt_syntax.parse_attention(text) == [("a", 1.0), prompt_syntax.BREAK_SEGMENT,
                                                   ("b", 1.0)]


def test_a_prompt_of_30000_spaces_runs(tiny_models, tmp_path):
    out = tmp_path / "ws"
    assert main([*TINY_SD_CLI, "--prompt", SPACES, "--quiet", "--out", str(out)]) == 0
    assert [p.name.split("-", 2)[-1] for p in (out / "runs").iterdir()] == ["untitled"]


@pytest.mark.parametrize("text", [
    ":" + " " * 50_000,  # the `:weight)` token over a run of spaces
    "(" * 100 + "a",  # the deepest nesting allowed, unclosed
    "\\(" * 25_000,  # 25,000 escapes joined into one run
    ":" * 50_000,
    "a :" + " 1" * 25_000,
])
def test_emphasis_of_long_texts(text):
    segments = prompt_syntax.parse_attention(text)
    assert "".join(s[0] for s in segments) == prompt_syntax.plain_text(text)


def test_brackets_nested_too_deep_are_an_error():
    with pytest.raises(ValueError, match="nested more than 100 deep at character 301"):
        prompt_syntax.parse_attention("[a:" * 16_000)
    with pytest.raises(ValueError, match=r"prompt: piece 1 '\(+\.\.\.': brackets are nested"):
        DiffusionSettings(prompt="(" * 40_000)


def test_emphasis_keeps_the_web_uis_floats_at_depth():
    assert prompt_syntax.parse_attention("(" * 3 + "a" + ")" * 3) == [("a", 1.1 * 1.1 * 1.1)]
    assert prompt_syntax.parse_attention("((a:1.3)b)") == [("a", 1.3 * 1.1), ("b", 1.1)]


def test_long_runs_of_digits():
    text = "[a:" + "1" * 50_000 + "x]"  # where the step of prompt editing would be
    assert prompt_syntax.positive_pieces(text) == ((text, 1.0),)
    edit = text[:-2] + "]"  # a step past any run: the text after it never comes
    assert prompt_syntax.positive_pieces(edit) == ((edit, 1.0),)
    assert prompt_schedule.schedule(edit, 20) == ((20, "",),)
    near = "a:" + "1" * 50_000 + "x"  # where our weight would be: text, as in the web UI
    assert prompt_syntax.positive_pieces(near) == ((near, 1.0),)
    with pytest.raises(ValueError, match="looks like a weight"):  # our own grammar: a typo
        prompts.parse_prompts(near)


def test_and_weights_after_long_runs_of_spaces():
    assert prompt_syntax.split_and("a AND b :" + " " * 50_000 + "x") == [
        ("a", 1.0), ("b :" + " " * 50_000 + "x", 1.0)]
    assert prompt_syntax.split_and("a AND b :" + " " * 50_000 + "0.5") == [("a", 1.0),
                                                                          ("b", 0.5)]


def test_a_prompt_of_25000_pieces():
    text = "|".join(["(a:1.1) BREAK [b]"] * 2700)
    assert len(prompt_syntax.plan_prompts(text, text).positive) == 2700
    assert len(prompts.parse_prompts("a|" * 24_999 + "a")) == 25_000


def test_long_prompts_are_cut_in_messages():
    with pytest.raises(ValueError) as error:
        prompts.parse_prompts("a|" * 20_000)
    assert len(str(error.value)) < 400


# --- 3. extra-network tags ---------------------------------------------------------------------


def test_30000_unclosed_tags():
    text = "<a:" * 30_000
    assert extras.lora_tags(text) == []
    assert extras.strip_tags(text) == text
    assert extras.strip_tags("<lora:x:0.5>" + text) == text
    assert extras.lora_tags("<lora:x:0.5>" + text) == [("x", (0.5, 0.5))]
    # as the web UI reads it: the first `<a:` runs to the first `>`
    assert extras.strip_tags(text + "<lora:x:0.5>") == ""
    with pytest.raises(ValueError, match="only <lora:name:weight> tags are supported"):
        extras.lora_tags(text + "<lora:x:0.5>")


# --- 4. infotext -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [60_000, 900_000])
@pytest.mark.parametrize("unit", ["a", "a ", "a-/", "a:", 'a: "x, ', "\\\""])
def test_a_long_infotext_line_is_read_as_prompt(size, unit):
    line = (unit * (size // len(unit)))[:size]
    info = infotext.parse_infotext(f"a cat\n{line}")
    assert info["Prompt"] == f"a cat\n{line.strip()}"


@pytest.mark.parametrize("size", [60_000, 900_000])
def test_a_long_params_line(size):
    pairs = size // len("Steps: 20, ")
    info = infotext.parse_infotext("a cat\n" + "Steps: 20, " * pairs + 'Note: "' + "x" * 1000)
    assert info["Prompt"] == "a cat" and info["Steps"] == "20"
    assert info["Note"] == '"' + "x" * 1000


def test_an_infotext_over_a_million_characters_is_refused():
    with pytest.raises(ValueError, match="at most 1,000,000"):
        infotext.parse_infotext("a" * 1_000_001)


# --- 5. run folder names -----------------------------------------------------------------------


def test_slugs_of_long_prompts():
    assert runs.slugify(" " * 20_000) == "untitled"
    assert runs.slugify("a" + " " * 20_000 + ": 1 :" + " " * 20_000 + "2") == "a"
    assert runs.slugify("desert" + " : 1" * 20_000).startswith("desert-1-1-1-1")
    assert runs.slugify(":" * 20_000 + "a") == "a"


# --- 6. schedules ------------------------------------------------------------------------------


def test_a_missing_comma_after_a_long_word():
    with pytest.raises(ValueError, match="unexpected ':' after"):
        parse_schedule("0: " + "a" * 50_000 + "():")
    with pytest.raises(ValueError, match=r"missing ',' between '0: 1' and 'a\+b"):
        parse_schedule("0: 1 " + "a+b" * 10_000 + ": 2")


def test_a_prompt_schedule_with_many_pieces_of_one_text():
    text = "0: " + "a|" * 9_999 + "a\n10: " + "a:2|" * 9_999 + "a:2"
    assert [p.weight for p in prompts_at_frame(text, 5)] == [1.5] * 10_000


# --- 7. caps, at the settings: before a model loads or a run folder exists ----------------------


def test_caps_name_the_field_and_the_limit():
    too_long = "a" * (MAX_PROMPT_CHARS + 1)
    for settings, field, limit in [
        (DiffusionSettings, "prompt", "50,000"), (DiffusionSettings, "negative_prompt", "50,000"),
        (DiffusionSettings, "prompt_schedule", "50,000"),
        (VQGANClipSettings, "image_prompts", "50,000"), (DiffusionSettings, "model", "10,000"),
        (DiffusionSettings, "zoom", "10,000"), (DiffusionSettings, "noise_schedule", "10,000"),
    ]:
        message = rf"^{field}: too long: 50,001 characters, at most {limit}$"
        with pytest.raises(ValueError, match=message):
            settings(**{field: too_long})
    DiffusionSettings(prompt="a" * MAX_PROMPT_CHARS)  # the limits themselves are fine
    DiffusionSettings(zoom="1" + " " * (MAX_EXPRESSION_CHARS - 1))


@pytest.mark.parametrize(("engine", "args", "field"), [
    ("sd", ["--prompt", "a" * (MAX_PROMPT_CHARS + 1)], "prompt"),
    ("sd", ["--negative", " " * (MAX_PROMPT_CHARS + 1)], "negative_prompt"),
    ("sd", ["--animate", "2d", "--frames", "2", "--zoom", WIDE], "zoom"),
    ("sd", ["--animate", "walk", "--prompt-schedule", "0: " + "a" * MAX_PROMPT_CHARS],
     "prompt_schedule"),
    ("sd", ["--prompt", "<a:" * 30_000], "prompt"),
    ("vqgan", ["--image-prompt", "a.png | " * 7000], "image_prompts"),
])
def test_the_cli_refuses_what_is_too_long(engine, args, field, tiny_models, tmp_path, capsys):
    out = tmp_path / "ws"
    base = TINY_SD_CLI if engine == "sd" else TINY_VQGAN_CLI
    capsys.readouterr()
    assert main([*base, *args, "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {field}: too long: ") and err.count("\n") == 1, err
    assert not out.exists()
