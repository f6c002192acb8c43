"""Weighted prompts for diffusion: planning, chunked encoding, clip skip, composable UNet."""

import pytest
import torch

from helpers.diffusion.conditioning import (
    _chunk_ids,
    composed_unet,
    encode_plan,
    encode_text,
    negative_pieces,
    plan_prompts,
    positive_pieces,
)


@pytest.fixture(scope="module")
def pipe(tiny_models):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(tiny_models["test-tiny-sd"],
                                                   safety_checker=None,
                                                   requires_safety_checker=False)


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


def test_only_several_pieces_in_composable_mode_need_the_wrapped_unet():
    assert not plan_prompts("a cat", "blurry").composed
    assert plan_prompts("a cat | a dog").composed
    assert plan_prompts("a cat", "blurry | text").composed
    assert not plan_prompts("a cat | a dog", mode="blend").composed


# --- encoding ---------------------------------------------------------------------------------


def test_long_prompts_are_cut_into_77_token_chunks(pipe):
    text = "a very long prompt about a castle " * 6  # ~200 characters = tokens here
    chunks = _chunk_ids(pipe.tokenizer, text)
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
    assert torch.equal(first[:, :77], second[:, :77])
    assert not torch.allclose(first[:, 77:], second[:, 77:])


def test_short_prompts_encode_exactly_like_diffusers(pipe):
    ours, _ = encode_text(pipe, "a red cube")
    theirs, _ = pipe.encode_prompt("a red cube", "cpu", 1, False)
    assert torch.equal(ours, theirs)


def test_web_ui_clip_skip_2_is_the_penultimate_layer_with_the_final_norm(pipe):
    # diffusers' clip_skip=1 (its encode_prompt reaches text_model, gone in transformers 5)
    ids = pipe.tokenizer("a red cube", padding="max_length", max_length=77,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        norm = getattr(pipe.text_encoder, "text_model", pipe.text_encoder).final_layer_norm
        expected = norm(hidden)
    ours, _ = encode_text(pipe, "a red cube", clip_skip=2)
    assert torch.equal(ours, expected)


def test_clip_skip_changes_the_conditioning(pipe):
    assert not torch.allclose(encode_text(pipe, "a cat", 1)[0], encode_text(pipe, "a cat", 2)[0])


def test_pieces_of_different_lengths_are_padded_to_one_length(pipe):
    long = "a very long description of a mountain village in winter " * 4
    chunks = len(_chunk_ids(pipe.tokenizer, long))
    cond, uncond = encode_plan(pipe, plan_prompts(f"{long} | a cat", "blurry"))
    assert chunks == 3 and cond.embeds.shape[0] == 2
    assert cond.embeds.shape[1] == uncond.embeds.shape[1] == chunks * 77
    empty, _ = encode_text(pipe, "")
    assert torch.equal(cond.embeds[1:, 77:154], empty)  # the short piece, padded


def test_blend_is_the_weighted_mean_of_the_embeddings(pipe):
    cond, _ = encode_plan(pipe, plan_prompts("a cat:3 | a dog", mode="blend"))
    cat, _ = encode_text(pipe, "a cat")
    dog, _ = encode_text(pipe, "a dog")
    assert cond.embeds.shape[0] == 1
    assert torch.allclose(cond.embeds, 0.75 * cat + 0.25 * dog, atol=1e-6)


# --- composable: the combined noise prediction --------------------------------------------------


def _unet(pipe, x, t, embeds):
    with torch.no_grad():
        return pipe.unet(x, t, encoder_hidden_states=embeds).sample


def test_two_pieces_combine_into_the_composable_formula(pipe):
    cond, uncond = encode_plan(pipe, plan_prompts("a red cube:3 | a blue sphere", "blurry"))
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor(500)
    batch = torch.cat([latents, latents])  # the pipeline's [uncond, cond] batch, 2 images
    placeholder = torch.zeros(4, 77, 32)  # ignored: the wrapper uses its own pieces
    with torch.no_grad(), composed_unet(pipe.unet, cond, uncond, images=2):
        out = pipe.unet(batch, t, encoder_hidden_states=placeholder, return_dict=False)[0]
    assert "forward" not in vars(pipe.unet)  # restored
    u = _unet(pipe, latents, t, uncond.embeds.expand(2, -1, -1))
    a = _unet(pipe, latents, t, cond.embeds[0:1].expand(2, -1, -1))
    b = _unet(pipe, latents, t, cond.embeds[1:2].expand(2, -1, -1))
    assert torch.allclose(out[:2], u, atol=1e-5)
    assert torch.allclose(out[2:], 0.75 * a + 0.25 * b, atol=1e-5)
    cfg = 7.5  # what the pipeline's own guidance then makes of it
    guided = out[:2] + cfg * (out[2:] - out[:2])
    assert torch.allclose(guided, u + cfg * (0.75 * (a - u) + 0.25 * (b - u)), atol=1e-4)


def test_several_unconditional_pieces_are_averaged_by_weight(pipe):
    cond, uncond = encode_plan(pipe, plan_prompts("a cat", "blurry | text:3"))
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor(200)
    with torch.no_grad(), composed_unet(pipe.unet, cond, uncond, images=1):
        out = pipe.unet(torch.cat([x, x]), t, encoder_hidden_states=None).sample
    blurry = _unet(pipe, x, t, uncond.embeds[0:1])
    text = _unet(pipe, x, t, uncond.embeds[1:2])
    assert torch.allclose(out[:1], 0.25 * blurry + 0.75 * text, atol=1e-5)
    assert torch.allclose(out[1:], _unet(pipe, x, t, cond.embeds), atol=1e-5)


def test_without_guidance_only_the_conditional_side_is_evaluated(pipe):
    cond, uncond = encode_plan(pipe, plan_prompts("a cat | a dog"))
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.tensor(10)
    with torch.no_grad(), composed_unet(pipe.unet, cond, uncond, images=1):
        out = pipe.unet(x, t, encoder_hidden_states=None).sample
    cat, dog = (_unet(pipe, x, t, cond.embeds[i:i + 1]) for i in (0, 1))
    assert out.shape == x.shape
    assert torch.allclose(out, 0.5 * cat + 0.5 * dog, atol=1e-5)


def test_one_batched_unet_call_evaluates_every_piece(pipe):
    cond, uncond = encode_plan(pipe, plan_prompts("a | b | c | d", "e"))
    calls = []
    inner = pipe.unet.forward

    def counting(sample, *args, **kwargs):
        calls.append(sample.shape[0])
        return inner(sample, *args, **kwargs)

    pipe.unet.forward = counting  # an instance-level forward, as offload hooks install
    try:
        with torch.no_grad(), composed_unet(pipe.unet, cond, uncond, images=1):
            pipe.unet(torch.randn(2, 4, 8, 8), torch.tensor(5), encoder_hidden_states=None)
        assert pipe.unet.forward is counting  # restored
    finally:
        del pipe.unet.forward
    assert calls == [5]  # 1 unconditional + 4 pieces, in one call
