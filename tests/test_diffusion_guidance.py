"""Guidance: classifier-free and composable, one UNet batch for every piece, prompt editing.

The composable formula is the web UI's (modules/sd_samplers_cfg_denoiser.py `combine_denoised`):
uncond + cfg * sum_i w_i (cond_i - uncond); each test checks it against plain UNet calls.
"""

import pytest
import torch
from common import quiet

from helpers.diffusion.conditioning import encode_plan, encode_text, plan_prompts
from helpers.diffusion.guidance import Conditioning, Guidance, composed_unet
from helpers.diffusion.loop import run
from helpers.settings import DiffusionSettings


def composed(pipe, cond, uncond, images):
    """The pipeline's UNet answering with our pieces (the pipeline applies the scale)."""
    return composed_unet(pipe.unet, Guidance(Conditioning.fixed(cond, uncond), 7.5), images)


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
    with torch.no_grad(), composed(pipe, cond, uncond, images=2):
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
    with torch.no_grad(), composed(pipe, cond, uncond, images=1):
        out = pipe.unet(torch.cat([x, x]), t, encoder_hidden_states=None).sample
    blurry = _unet(pipe, x, t, uncond.embeds[0:1])
    text = _unet(pipe, x, t, uncond.embeds[1:2])
    assert torch.allclose(out[:1], 0.25 * blurry + 0.75 * text, atol=1e-5)
    assert torch.allclose(out[1:], _unet(pipe, x, t, cond.embeds), atol=1e-5)


def test_without_guidance_only_the_conditional_side_is_evaluated(pipe):
    cond, uncond = encode_plan(pipe, plan_prompts("a cat | a dog"))
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.tensor(10)
    with torch.no_grad(), composed(pipe, cond, uncond, images=1):
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
        with torch.no_grad(), composed(pipe, cond, uncond, images=1):
            pipe.unet(torch.randn(2, 4, 8, 8), torch.tensor(5), encoder_hidden_states=None)
        assert pipe.unet.forward is counting  # restored
    finally:
        del pipe.unet.forward
    assert calls == [5]  # 1 unconditional + 4 pieces, in one call



def test_and_weights_are_not_normalised(pipe):
    # the web UI: uncond + cfg * (1 (a - u) + 0.5 (b - u)), for guided and unguided calls
    cond, uncond = encode_plan(pipe, plan_prompts("a red cube AND a blue sphere:0.5", "blurry"))
    assert cond.weights.tolist() == [1.0, 0.5]
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    t = torch.tensor(400)
    with torch.no_grad(), composed(pipe, cond, uncond, images=1):
        guided = pipe.unet(torch.cat([x, x]), t, encoder_hidden_states=None).sample
        unguided = pipe.unet(x, t, encoder_hidden_states=None).sample
    u = _unet(pipe, x, t, uncond.embeds)
    a, b = (_unet(pipe, x, t, cond.embeds[i:i + 1]) for i in (0, 1))
    expected = u + (a - u) + 0.5 * (b - u)
    assert torch.allclose(guided[:1], u, atol=1e-5)
    assert torch.allclose(guided[1:], expected, atol=1e-5)
    assert torch.allclose(unguided, expected, atol=1e-5)


def test_each_side_is_evaluated_at_its_own_length(pipe):
    # the web UI's default: a long prompt and a short negative prompt are not padded
    long = "a very long description of a mountain village in winter " * 4
    cond, uncond = encode_plan(pipe, plan_prompts(f"{long} | a cat", "blurry"))
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    t = torch.tensor(300)
    with torch.no_grad(), composed(pipe, cond, uncond, images=1):
        out = pipe.unet(torch.cat([x, x]), t, encoder_hidden_states=None).sample
    blurry = _unet(pipe, x, t, encode_text(pipe, "blurry")[0])
    padded = _unet(pipe, x, t, uncond.embeds)
    assert torch.allclose(out[:1], blurry, atol=1e-5)
    assert not torch.allclose(padded, blurry, atol=1e-4)  # what padding without the mask gives
    mixed = (0.5 * _unet(pipe, x, t, cond.embeds[:1])
             + 0.5 * _unet(pipe, x, t, cond.embeds[1:]))
    assert torch.allclose(out[1:], mixed, atol=1e-5)


# --- prompt editing through a run: the evaluations each text guides ----------------------------


@pytest.fixture(scope="module")
def loaded(tiny_models, tmp_path_factory):
    from helpers.diffusion.checks import check_inputs
    from helpers.diffusion.loading import load_models

    base = DiffusionSettings(prompt="x", model=str(tiny_models["test-tiny-sd"]), width=64,
                             height=64, out=str(tmp_path_factory.mktemp("runs")))
    return load_models(check_inputs(base, None, quiet), None, quiet, False)


def texts_seen(loaded, tmp_path, **changes) -> list[str]:
    """Which text guided each UNet evaluation of a run (its first row: image 1's first piece)."""
    pipe = loaded.pipe
    known = {text: encode_text(pipe, text)[0][0] for text in ("a cat", "a dog", "a bird")}
    seen = []
    inner = pipe.unet.forward

    def recording(sample, timestep, encoder_hidden_states=None, **kwargs):
        row = encoder_hidden_states[0].float()
        seen.append(next((t for t, e in known.items() if torch.allclose(row, e, atol=1e-5)),
                         "?"))
        return inner(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs)

    settings = DiffusionSettings(**{"model": "x", **BASE, "out": str(tmp_path), **changes})
    pipe.unet.forward = recording
    try:
        list(run(settings, loaded))
    finally:
        del pipe.unet.forward
    return seen


BASE = {"prompt": "a cat", "negative_prompt": "blurry", "width": 64, "height": 64, "seed": 1,
        "steps": 4, "cfg_scale": 7.5}


@pytest.mark.parametrize("sampler", ["Euler", "DDIM"])  # our sampler path, and a pipeline's
def test_prompt_editing_switches_after_the_web_uis_step(loaded, tmp_path, sampler):
    # [[2, 'a cat'], [4, 'a dog']]: evaluations 0, 1, 2 see "a cat" (the web UI's `<=`)
    seen = texts_seen(loaded, tmp_path, prompt="a [cat:dog:2]", sampler=sampler)
    assert seen == ["a cat"] * 3 + ["a dog"]


def test_alternation_changes_the_text_at_every_evaluation(loaded, tmp_path):
    seen = texts_seen(loaded, tmp_path, prompt="a [cat|dog|bird]", sampler="Euler")
    # steps 1..4 -> options (step - 1) % 3; evaluation e uses the entry ending at step >= e
    assert seen == ["a cat", "a cat", "a dog", "a bird"]


def test_second_order_samplers_count_two_evaluations_a_step(loaded, tmp_path):
    # Heun: 4 steps = 8 in the web UI's count (7 evaluations: its last step is Euler's);
    # [cat:dog:0.5] switches after evaluation 4 of 8
    seen = texts_seen(loaded, tmp_path, prompt="a [cat:dog:0.5]", sampler="Heun")
    assert seen == ["a cat"] * 5 + ["a dog"] * 2


def test_the_hires_pass_continues_the_count(loaded, tmp_path):
    # first pass 4 steps: [cat:dog:4] is "a cat" throughout; the hires pass starts at step 4:
    # the switch is behind it, so it is "a dog" throughout (the web UI's hires scheduling)
    seen = texts_seen(loaded, tmp_path, prompt="a [cat:dog:4]", sampler="Euler",
                      hires_scale=2, hires_steps=2, hires_strength=0.5)
    assert seen == ["a cat"] * 4 + ["a dog"] * 2
    # a fraction past 1 is a fraction of the hires pass: 1.5 of 3 steps = after step int(1.5)
    seen = texts_seen(loaded, tmp_path, prompt="a [cat:dog:1.5]", sampler="Euler",
                      hires_scale=2, hires_steps=3, hires_strength=0.5)
    assert seen == ["a cat"] * 4 + ["a cat", "a cat", "a dog"]


def test_the_negative_prompt_is_scheduled_too(loaded, tmp_path):
    seen = []
    pipe = loaded.pipe
    known = {t: encode_text(pipe, t)[0][0] for t in ("a bird", "a dog")}
    inner = pipe.unet.forward

    def recording(sample, timestep, encoder_hidden_states=None, **kwargs):
        row = encoder_hidden_states[1].float()  # the unconditional row of image 1
        seen.append(next((t for t, e in known.items() if torch.allclose(row, e, atol=1e-5)),
                         "?"))
        return inner(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs)

    pipe.unet.forward = recording
    try:
        settings = DiffusionSettings(model="x", **{**BASE, "negative_prompt": "a [bird:dog:1]",
                                                   "out": str(tmp_path), "sampler": "Euler"})
        list(run(settings, loaded))
    finally:
        del pipe.unet.forward
    assert seen == ["a bird"] * 2 + ["a dog"] * 2


def test_a_walk_refuses_prompt_editing_before_anything_loads(tmp_path):
    from helpers.diffusion.checks import check_animation

    walk = {"prompt": "x", "animate": "walk", "frames": 11, "out": str(tmp_path)}
    with pytest.raises(ValueError, match=r"^prompt_schedule: keyframe 10 uses prompt editing"):
        check_animation(DiffusionSettings(**walk, prompt_schedule="0: a cat\n10: a [cat|dog]"))
    with pytest.raises(ValueError, match=r"^negative_prompt: the negative prompt uses prompt"):
        check_animation(DiffusionSettings(**walk, negative_prompt="[blurry:5]"))
    check_animation(DiffusionSettings(**walk, prompt_schedule="0: a \\[cat|dog\\]"))  # text
