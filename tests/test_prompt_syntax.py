"""The web UI's prompt syntax inside our weighted pieces: emphasis, BREAK, AND, chunks.

Expected values are the web UI's documented results (AUTOMATIC1111/stable-diffusion-webui,
modules/prompt_parser.py at 28bd8e14: the `parse_prompt_attention` docstring) and what its
`get_multicond_prompt_list` and `tokenize_line` (modules/sd_hijack_clip.py at 00e09382) give.
"""

import pytest

from helpers.diffusion.prompt_syntax import (
    BREAK_SEGMENT,
    check_piece,
    chunk_tokens,
    negative_pieces,
    parse_attention,
    plain_text,
    plan_prompts,
    positive_pieces,
    split_and,
    split_pieces,
)

# parse_prompt_attention's docstring, verbatim.
DOCUMENTED = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1),
      ("hill", 0.55), (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1)]),
]


@pytest.mark.parametrize(("text", "expected"), DOCUMENTED)
def test_emphasis_gives_the_web_uis_documented_results(text, expected):
    assert parse_attention(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("(masterpiece:1.2), a cat", [("masterpiece", 1.2), (", a cat", 1.0)]),
    ("((word))", [("word", 1.1 * 1.1)]),
    ("[word]", [("word", 1 / 1.1)]),
    ("(cat: 1.5 ) and [dog]", [("cat", 1.5), (" and ", 1.0), ("dog", 1 / 1.1)]),
    ("(a:-1)", [("a", -1.0)]),
    ("a) b] c:", [("a) b] c:", 1.0)]),  # closing brackets without an opening one are text
    ("C:\\art \\\\ x", [("C:art \\ x", 1.0)]),  # a lone backslash is dropped, \\ is one
    ("", [("", 1.0)]),
])
def test_emphasis_of_the_usual_forms(text, expected):
    assert parse_attention(text) == expected


def test_break_ends_a_chunk_and_takes_the_spaces_around_it():
    assert parse_attention("a cat BREAK a dog") == [("a cat", 1.0), BREAK_SEGMENT,
                                                    ("a dog", 1.0)]
    assert parse_attention("BREAK a") == [("", 1.0), BREAK_SEGMENT, ("a", 1.0)]
    assert parse_attention("BREAKING news, break") == [("BREAKING news, break", 1.0)]
    # inside brackets it still breaks (the web UI would read the word "BREAK", weight -1.1)
    assert parse_attention("(a BREAK b)") == [("a", 1.1), BREAK_SEGMENT, ("b", 1.1)]


def test_plain_text_drops_the_markup():
    assert plain_text("a (red:1.3) [cube] BREAK \\(1990\\)") == "a red cube (1990)"


def test_an_emphasis_weight_that_is_no_number_is_an_error():
    with pytest.raises(ValueError, match=r"emphasis weight '1\.2\.3' in '\(a:1\.2\.3\)'"):
        parse_attention("(a:1.2.3)")


# --- AND and our pieces -------------------------------------------------------------------------


@pytest.mark.parametrize(("prompt", "parts"), [
    ("a cat AND a dog:0.5", [("a cat", 1.0), ("a dog", 0.5)]),
    ("a cat : 1.5 AND a dog : -.5 ", [("a cat", 1.5), ("a dog", -0.5)]),
    ("a cat:2.AND(dog:1.2)", [("a cat", 2.0), ("(dog:1.2)", 1.0)]),
    ("ANDROID and AND", [("ANDROID and", 1.0), ("", 1.0)]),
    ("ratio 16:9", [("ratio 16", 9.0)]),  # the web UI's rule, used only when there is an AND
    ("ratio 16\\:9 AND b", [("ratio 16\\:9", 1.0), ("b", 1.0)]),  # our escaped colon
])
def test_and_parts_and_their_weights_are_the_web_uis(prompt, parts):
    assert split_and(prompt) == parts


def test_and_weights_are_not_normalised_but_our_pieces_are_within_a_part():
    assert positive_pieces("a cat AND a dog:0.5") == (("a cat", 1.0), ("a dog", 0.5))
    plan = plan_prompts("desert:3 | snow:1:2 AND a dog:-0.5", "blurry")
    assert plan.positive == (("desert", 1.5), ("snow", 0.5), ("a dog", -0.5))
    assert plan.parts == ((2, 2.0), (1, -0.5))
    assert plan.negative == (("blurry", 1.0),)  # a negative AND weight pushes away composably


def test_without_and_a_trailing_weight_stays_ours():
    assert positive_pieces("a cat:0.5") == (("a cat", 1.0),)
    assert positive_pieces("desert:50 | snow:25") == (("desert", 2 / 3), ("snow", 1 / 3))
    assert plan_prompts("a cat | a dog").parts == ()


def test_and_parts_of_weight_zero_are_left_out():
    plan = plan_prompts("a cat AND a dog:0")
    assert plan.positive == (("a cat", 1.0),) and plan.parts == ((1, 1.0),)
    with pytest.raises(ValueError, match="every AND part of 'a:0 AND b:0' has weight 0"):
        positive_pieces("a:0 AND b:0")


def test_negative_pieces_of_and_parts_join_the_unconditional_side():
    # a part's last `:number` is its AND weight, so the last piece's weight comes before it
    assert negative_pieces("", "a cat | blurry:-1:1 AND a dog | text:-3:0.5") == (
        ("blurry", 0.25), ("text", 0.75))
    assert negative_pieces("", "a cat | blurry:-1 AND a dog") == ()  # -1: part 1's weight


def test_and_is_literal_text_in_the_negative_prompt_as_in_the_web_ui():
    assert negative_pieces("blurry AND text:0.5") == (("blurry AND text", 1.0),)


def test_emphasis_colons_and_bars_inside_brackets_do_not_split_pieces():
    assert positive_pieces("(masterpiece:1.2), a cat") == (("(masterpiece:1.2), a cat", 1.0),)
    assert [(p.text, p.weight) for p in split_pieces("(cat|dog):2 | [snow|ice | sea")] == [
        ("(cat|dog)", 2.0), ("[snow|ice | sea", 1.0)]  # an unclosed bracket runs to the end
    assert positive_pieces("(cat:1.2):3 | \\[a\\|b\\]") == (("(cat:1.2)", 0.75),
                                                            ("\\[a|b\\]", 0.25))
    with pytest.raises(ValueError, match=r"piece 2 \(character 8\) is empty.*'\(a\|b\) \|\| c'"):
        split_pieces("(a|b) || c")  # positions and text as written


@pytest.mark.parametrize(("prompt", "message"), [
    ("a AND b:1:0.5 | c", r"AND part 2 'b:1:0.5 \| c': piece 1 'b' has a stop value"),
    ("(a:1.2.3)", "is not a number"),
])
def test_malformed_syntax_is_an_error_naming_the_piece(prompt, message):
    with pytest.raises(ValueError, match=message):
        plan_prompts(prompt)


def test_prompt_editing_and_alternation_stay_inside_their_piece():
    # the web UI's [from:to:when] and [a|b]: brackets keep their `|` and `:` from our grammar
    assert positive_pieces("a [cat|dog] photo") == (("a [cat|dog] photo", 1.0),)
    assert positive_pieces("a [cat:dog:0.5] | b") == (("a [cat:dog:0.5]", 0.5), ("b", 0.5))
    assert positive_pieces("[fe|]male AND a [dog::0.25]:0.5") == (("[fe|]male", 1.0),
                                                                  ("a [dog::0.25]", 0.5))
    assert negative_pieces("[blurry:3] | text:3") == (("[blurry:3]", 0.25), ("text", 0.75))


def test_a_negative_piece_of_weight_zero_is_an_error_not_dropped():
    with pytest.raises(ValueError, match=r"piece 2 'text' has weight 0;.*leave it out"):
        negative_pieces("blurry | text:0")


@pytest.mark.parametrize("prompt", ["wallpaper, resolution: 4k", "Steps: 5, Size: 9x9",
                                    "style: 3d", "desert:5O", "a photo: inf"])
def test_text_that_looks_almost_like_a_weight_is_text_as_in_the_web_ui(prompt):
    assert positive_pieces(prompt) == ((prompt, 1.0),)
    from helpers.prompts import parse_prompts

    with pytest.raises(ValueError):  # VQGAN+CLIP's own grammar still calls it a typo
        parse_prompts(prompt)


# What the web UI's re_attention makes of backslashes: `\\` is one literal backslash, a lone
# `\` before other text is dropped, `\(` is a literal bracket.
@pytest.mark.parametrize(("prompt", "expected"), [
    ("\\\\(x)", [("\\", 1.0), ("x", 1.1)]),
    ("a \\\\ b", [("a \\ b", 1.0)]),
    ("a \\ b", [("a  b", 1.0)]),
    ("x\\\\\\(y", [("x\\(y", 1.0)]),
])
def test_a_pasted_prompt_keeps_its_backslashes_as_in_the_web_ui(prompt, expected):
    (piece,) = positive_pieces(prompt)
    assert parse_attention(piece[0]) == expected


def test_empty_and_parts_are_the_web_uis_empty_conditioning():
    plan = plan_prompts("a cat AND")
    assert (plan.positive, plan.parts) == ((("a cat", 1.0), ("", 1.0)), ((1, 1.0), (1, 1.0)))
    plan = plan_prompts("a AND AND b:0.5")
    assert plan.positive == (("a", 1.0), ("", 1.0), ("b", 0.5))
    assert plan.parts == ((1, 1.0), (1, 1.0), (1, 0.5))


def test_brackets_that_are_emphasis_are_not_mistaken_for_editing():
    for text in ("[a:b]", "[(cat:1.2)]", "((a):1.5)", "\\[cat:3\\]", "(a|b)"):
        check_piece(text)


def test_settings_name_the_field_of_bad_syntax():
    from helpers.settings import DiffusionSettings

    with pytest.raises(ValueError, match=r"^prompt: piece 1 '\(a:1\.2\.3\)'"):
        DiffusionSettings(prompt="(a:1.2.3)")
    with pytest.raises(ValueError, match=r"^negative_prompt: piece 2 'b' has weight 0"):
        DiffusionSettings(prompt="a cat", negative_prompt="[a|b] | b:0")


# --- chunks ---------------------------------------------------------------------------------


COMMA = 0


def _chunks(*runs, backtrack=20):
    return [[token for token, _ in chunk] for chunk in chunk_tokens(list(runs), COMMA,
                                                                      backtrack=backtrack)]


def test_a_full_chunk_moves_the_words_after_a_close_comma_to_the_next():
    tokens = [1] * 55 + [COMMA] + [2] * 30  # the comma is 20 tokens from the end when full
    assert _chunks((tokens, 1.0)) == [tokens[:56], tokens[56:]]
    tokens = [1] * 54 + [COMMA] + [2] * 30  # 21 tokens: too far back, the chunk stays full
    assert _chunks((tokens, 1.0)) == [tokens[:75], tokens[75:]]
    assert _chunks(([1] * 55 + [COMMA] + [2] * 30, 1.0), backtrack=0)[0] == [1] * 55 + [COMMA] + \
        [2] * 19  # the web UI's setting 0 turns the backtrack off


def test_chunks_keep_each_tokens_multiplier():
    chunks = chunk_tokens([([1] * 74, 1.0), ([COMMA, 2, 3], 1.1)], COMMA)
    assert chunks == [[(1, 1.0)] * 74 + [(COMMA, 1.1)], [(2, 1.1), (3, 1.1)]]


def test_break_ends_a_chunk_even_an_empty_one():
    assert _chunks(([1, 2], 1.0), None, ([3], 1.0)) == [[1, 2], [3]]
    assert _chunks(([], 1.0), None, ([3], 1.0)) == [[], [3]]
    assert _chunks(([1], 1.0), None, ([], 1.0)) == [[1]]  # a BREAK at the end adds nothing
    assert _chunks(([], 1.0)) == [[]]  # the empty prompt is one empty chunk


def test_a_comma_that_starts_a_chunk_is_not_a_break_point():
    tokens = [1] * 75 + [COMMA] + [2] * 80
    assert [len(c) for c in _chunks((tokens, 1.0))] == [75, 75, 6]
