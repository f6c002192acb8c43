"""Weighted prompts for diffusion: planning, chunked encoding, emphasis, clip skip per family,
the unconditional side's padding, composable UNet with the web UI's AND weights."""

import pytest
import torch
from common import load_tiny_sd

from helpers.diffusion.conditioning import (
    encode_plan,
    encode_text,
    negative_pieces,
    plan_prompts,
    positive_pieces,
    prompt_chunks,
)


@pytest.fixture(scope="module")
def normed(tiny_models):
    """The tiny SD with a final norm whose bias is not zero, as in trained CLIP models: with
    the random model's zero bias every chunk's mean is ~0 and restoring it is ill-conditioned."""
    pipe = load_tiny_sd(tiny_models["test-tiny-sd"])
    norm = getattr(pipe.text_encoder, "text_model", pipe.text_encoder).final_layer_norm
    with torch.no_grad():
        norm.bias.copy_(0.5 + 0.1 * torch.randn(norm.bias.shape,
                                                generator=torch.Generator().manual_seed(0)))
    return pipe


@pytest.fixture(scope="module")
def sdxl(tiny_models):
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline.from_pretrained(tiny_models["test-tiny-sdxl"])


# --- planning --------------------------------------------------------------------------------


def test_positive_weights_are_normalised_to_sum_one():
    assert positive_pieces("desert:50 | snow:25") == (("desert", 2 / 3), ("snow", 1 / 3))
    assert positive_pieces("a cat") == (("a cat", 1.0),)


def test_negative_pieces_and_the_negative_prompt_form_the_unconditional_side():
    plan = plan_prompts("a cat:2 | a dog:-1 | grass:0", "blurry:3")
    assert plan.positive == (("a cat", 1.0),)
    assert plan.negative == (("blurry", 0.75), ("a dog", 0.25))
    assert negative_pieces("", "a cat") == ()  # nothing: the model's default unconditional


def test_stop_values_and_prompts_without_a_positive_piece_are_errors():
    with pytest.raises(ValueError, match=r"piece 2 'snow' has a stop value"):
        positive_pieces("desert | snow:1:0.5")
    with pytest.raises(ValueError, match="no piece with a positive weight"):
        positive_pieces("a dog:-1")
    with pytest.raises(ValueError, match="must be positive"):
        negative_pieces("blurry:-2")


# --- encoding ---------------------------------------------------------------------------------


def test_long_prompts_are_cut_into_77_token_chunks(pipe):
    text = "a very long prompt about a castle " * 6  # ~200 characters = tokens here
    chunks = [ids for ids, _ in prompt_chunks(pipe.tokenizer, text)]
    tok = pipe.tokenizer
    assert len(chunks) == 3 and all(len(c) == 77 for c in chunks)
    assert all(c[0] == tok.bos_token_id for c in chunks)
    body = [t for c in chunks for t in c[1:-1] if t != tok.pad_token_id]
    plain = tok(text, add_special_tokens=False).input_ids
    assert [t for t in body if t != tok.eos_token_id] == [t for t in plain if t !=
                                                         tok.eos_token_id]
    embeds, pooled = encode_text(pipe, text)
    assert embeds.shape == (1, 3 * 77, 32) and pooled is None


def test_text_after_the_first_77_tokens_still_changes_the_conditioning(pipe):
    head = "a castle on a hill at dawn with fog " * 3
    first, _ = encode_text(pipe, head + "in red")
    second, _ = encode_text(pipe, head + "in blue")
    assert first.shape[1] == 2 * 77
    torch.testing.assert_close(first[:, :77], second[:, :77])
    assert not torch.allclose(first[:, 77:], second[:, 77:])


def test_short_prompts_encode_exactly_like_diffusers(pipe):
    ours, _ = encode_text(pipe, "a red cube")
    theirs, _ = pipe.encode_prompt("a red cube", "cpu", 1, False)
    torch.testing.assert_close(ours, theirs)


def test_web_ui_clip_skip_2_is_the_penultimate_layer_with_the_final_norm(pipe):
    # diffusers' clip_skip=1 (its encode_prompt reaches text_model, gone in transformers 5)
    ids = pipe.tokenizer("a red cube", padding="max_length", max_length=77,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        norm = getattr(pipe.text_encoder, "text_model", pipe.text_encoder).final_layer_norm
        expected = norm(hidden)
    ours, _ = encode_text(pipe, "a red cube", clip_skip=2)
    torch.testing.assert_close(ours, expected)


def test_clip_skip_changes_the_conditioning(pipe):
    assert not torch.allclose(encode_text(pipe, "a cat", 1)[0], encode_text(pipe, "a cat", 2)[0])


def test_pieces_of_one_side_are_padded_with_their_last_vector(pipe):
    # the web UI's stack_conds for AND parts of different lengths; the same for our pieces
    long = "a very long description of a mountain village in winter " * 4
    chunks = len(prompt_chunks(pipe.tokenizer, long))
    cond, uncond = encode_plan(pipe, plan_prompts(f"{long} | a cat", "blurry"))
    assert chunks == 3 and cond.embeds.shape[0] == 2
    assert cond.embeds.shape[1] == uncond.embeds.shape[1] == chunks * 77
    cat, _ = encode_text(pipe, "a cat")
    torch.testing.assert_close(cond.embeds[1:, :77], cat)
    torch.testing.assert_close(cond.embeds[1, 77:], cat[0, -1].expand(2 * 77, -1))
    assert cond.length is None and cond.attention_mask() is None


def test_the_shorter_side_is_padded_with_the_empty_chunk_and_keeps_its_length(pipe):
    long = "a very long description of a mountain village in winter " * 4
    cond, uncond = encode_plan(pipe, plan_prompts(long, "blurry"))
    empty, _ = encode_text(pipe, "")
    blurry, _ = encode_text(pipe, "blurry")
    assert uncond.embeds.shape == cond.embeds.shape == (1, 3 * 77, 32)
    torch.testing.assert_close(uncond.embeds[:, :77], blurry)
    torch.testing.assert_close(uncond.embeds[:, 77:154], empty)
    torch.testing.assert_close(uncond.embeds[:, 154:], empty)
    assert uncond.length == 77
    mask = uncond.attention_mask()
    assert mask.shape == (1, 231) and mask[0, :77].all() and not mask[0, 77:].any()


def test_blend_is_the_weighted_mean_of_the_embeddings(pipe):
    cond, _ = encode_plan(pipe, plan_prompts("a cat:3 | a dog", mode="blend"))
    cat, _ = encode_text(pipe, "a cat")
    dog, _ = encode_text(pipe, "a dog")
    assert cond.embeds.shape[0] == 1
    assert torch.allclose(cond.embeds, 0.75 * cat + 0.25 * dog, atol=1e-6)


# --- the web UI's syntax: emphasis, BREAK, comma backtrack --------------------------------------


def _hidden(pipe, text: str):
    """The plain CLIP output of one 77-token chunk of `text` (no emphasis)."""
    ids = pipe.tokenizer(text, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids)[0]


def test_emphasis_scales_the_tokens_then_restores_the_chunk_mean(normed):
    emphasised, _ = encode_text(normed, "(masterpiece:1.2), a cat")
    plain = _hidden(normed, "masterpiece, a cat")  # the same tokens without the markup
    multipliers = torch.ones(77)
    multipliers[1:12] = 1.2  # "masterpiece": 11 characters = 11 tokens after the start token
    scaled = plain * multipliers[None, :, None]
    assert torch.allclose(emphasised, scaled * (plain.mean() / scaled.mean()), atol=1e-5)
    assert torch.allclose(emphasised.mean(), plain.mean(), atol=1e-6)
    assert not torch.allclose(emphasised, plain, atol=1e-3)


def test_emphasis_multipliers_follow_the_tokens_and_stay_within_their_chunk(normed):
    (ids, multipliers), = prompt_chunks(normed.tokenizer, "a [cat] (dog)")
    assert ids[1:8] == normed.tokenizer("a cat dog", add_special_tokens=False).input_ids
    assert multipliers[:8] == [1.0, 1.0] + [1 / 1.1] * 3 + [1.1] * 3  # start, a, cat, dog
    assert multipliers[8:] == [1.0] * 69  # the end token and the padding
    long = "a castle on a hill " * 6 + "(red)"  # 84 + 3 tokens: the second chunk has "red"
    first, second = (encode_text(normed, t)[0] for t in (long, long.replace("(red)", "red")))
    torch.testing.assert_close(first[:, :77], second[:, :77])
    assert torch.allclose(first[:, 77:].mean(), second[:, 77:].mean(), atol=1e-6)


def test_sdxl_emphasis_restores_the_mean_of_each_encoder(sdxl):
    emphasised, _ = encode_text(sdxl, "a (cat:1.5)")
    plain, _ = encode_text(sdxl, "a cat")
    for encoder in (slice(0, 32), slice(32, 64)):  # CLIP-L, then OpenCLIP-G
        assert torch.allclose(emphasised[..., encoder].mean(), plain[..., encoder].mean(),
                              atol=1e-5)
    assert not torch.allclose(emphasised, plain, atol=1e-3)

def test_a_prompt_without_emphasis_encodes_exactly_as_plain_text(normed):
    ours, _ = encode_text(normed, "a castle, at night, 4k")
    theirs, _ = normed.encode_prompt("a castle, at night, 4k", "cpu", 1, False)
    torch.testing.assert_close(ours, theirs)


def test_break_starts_a_new_chunk(pipe):
    both, _ = encode_text(pipe, "a cat BREAK a dog")
    cat, _ = encode_text(pipe, "a cat")
    dog, _ = encode_text(pipe, "a dog")
    torch.testing.assert_close(both, torch.cat([cat, dog], dim=1))
    assert len(prompt_chunks(pipe.tokenizer, "BREAK a dog")) == 2  # an empty chunk first


def test_a_full_chunk_breaks_after_a_comma_among_its_last_20_tokens(pipe):
    tok = pipe.tokenizer  # character level: every character but a space is a token
    text = "x" * 70 + "," + "y" * 10  # the comma is token 71 of 81
    tokens = tok(text, add_special_tokens=False).input_ids
    first, second = prompt_chunks(tok, text)
    assert first[0][1:72] == tokens[:71] and first[0][72:] == [tok.eos_token_id] * 5
    assert second[0][1:11] == tokens[71:]
    text = "x" * 50 + "," + "y" * 30  # the comma is 25 tokens back when the chunk is full
    tokens = tok(text, add_special_tokens=False).input_ids
    first, second = prompt_chunks(tok, text)
    assert first[0][1:76] == tokens[:75] and second[0][1:7] == tokens[75:]


# --- clip skip per family -----------------------------------------------------------------------


def test_sd2_open_clip_ignores_clip_skip_as_the_web_ui_does(pipe):
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(**{**pipe.text_encoder.config.to_dict(), "hidden_act": "gelu"})
    sd2 = StableDiffusionPipeline(**{**pipe.components, "text_encoder": CLIPTextModel(config)})
    last, _ = encode_text(sd2, "a red cube", 1)
    torch.testing.assert_close(encode_text(sd2, "a red cube", 2)[0], last)
    torch.testing.assert_close(last, _hidden(sd2, "a red cube"))


def test_sdxl_clip_skip_reaches_clip_l_only_from_3_on(sdxl):
    ids = sdxl.tokenizer("a cat", padding="max_length", max_length=77,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        clip_l = sdxl.text_encoder(ids, output_hidden_states=True).hidden_states
        clip_g = sdxl.text_encoder_2(ids, output_hidden_states=True).hidden_states
    one, two, three = (encode_text(sdxl, "a cat", n)[0] for n in (1, 2, 3))
    torch.testing.assert_close(one, two)
    torch.testing.assert_close(one, torch.cat([clip_l[-2], clip_g[-2]], dim=-1))
    torch.testing.assert_close(three, torch.cat([clip_l[-3], clip_g[-2]], dim=-1))  # G: never


def test_clip_skip_beyond_the_encoder_is_an_error(pipe):
    with pytest.raises(ValueError, match="clip_skip: 5 is more than the text encoder's 2 layers"):
        encode_text(pipe, "a cat", 5)


def test_blend_mixes_the_pieces_of_each_and_part(pipe):
    cond, _ = encode_plan(pipe, plan_prompts("a cat:3 | a dog AND a bird:0.5", mode="blend"))
    cat, dog, bird = (encode_text(pipe, t)[0] for t in ("a cat", "a dog", "a bird"))
    assert cond.embeds.shape[0] == 2 and cond.weights.tolist() == [1.0, 0.5]
    assert torch.allclose(cond.embeds[:1], 0.75 * cat + 0.25 * dog, atol=1e-6)
    assert torch.allclose(cond.embeds[1:], bird, atol=1e-6)


def test_an_empty_and_part_is_the_empty_prompts_conditioning(pipe):
    cond, uncond = encode_plan(pipe, plan_prompts("a cat AND", ""))
    assert cond.embeds.shape[0] == 2 and cond.weights.tolist() == [1.0, 1.0]
    torch.testing.assert_close(cond.embeds[1], uncond.embeds[0])  # "" on both sides
    assert not torch.allclose(cond.embeds[0], cond.embeds[1])
