"""Weighted prompts for diffusion: text encoding in 77-token chunks, blend and composable modes.

Prompt grammar (DESIGN §4): positive pieces are weighted, weights normalised to sum 1.
- `blend`: one noise prediction on the weighted mean of the pieces' text embeddings.
- `composable` (Liu et al. 2022, "Compositional Visual Generation with Composable Diffusion
  Models", arXiv:2206.01714): one noise prediction per piece, combined so that the pipeline's own
  classifier-free guidance gives  uncond + cfg * sum_i w_i (cond_i - uncond).  `ComposedUNet`
  replaces the UNet's forward during a pipeline call: given the pipeline's [uncond, cond] batch it
  evaluates every piece in ONE batched UNet call and returns [uncond, sum_i w_i cond_i].
The unconditional side is the negative prompt's pieces plus the prompt's negative-weight pieces
(with |weight|), normalised to sum 1; with several of them, composable mode evaluates each and
averages the predictions, blend mode averages the embeddings. A `stop` value is an error here.

Long prompts are not truncated: like the web UI, the tokens are cut into chunks of 75, each
encoded as its own 77-token sequence (start, 75 tokens, end / padding) and the chunk embeddings
concatenated; shorter conditionings are padded with the empty prompt's chunk to a common length.
Clip skip has the web UI's meaning: N = take CLIP's N-th layer from the end (1 = the last).
diffusers counts skipped layers instead, so web UI N == diffusers `clip_skip=N-1`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from helpers.prompts import Prompt, parse_prompts

log = logging.getLogger(__name__)
Piece = tuple[str, float]  # (text, weight)


# --- planning: pure Python ------------------------------------------------------------------


def _check_no_stop(prompts: list[Prompt]) -> None:
    for number, p in enumerate(prompts, 1):
        if p.stop != -math.inf:
            raise ValueError(f"piece {number} {p.text!r} has a stop value ({p.stop:g}); stop "
                             "has no meaning for diffusion, write 'text:weight' only")


def _normalised(pieces: list[Piece]) -> tuple[Piece, ...]:
    total = sum(w for _, w in pieces)
    return tuple((text, w / total) for text, w in pieces)


def positive_pieces(prompt: str) -> tuple[Piece, ...]:
    """The prompt's positive pieces with weights normalised to sum 1 ('' = unconditional)."""
    if not prompt.strip():
        return (("", 1.0),)
    prompts = parse_prompts(prompt)
    _check_no_stop(prompts)
    pieces = [(p.text, p.weight) for p in prompts if p.weight > 0]
    if not pieces:
        raise ValueError(f"{prompt!r} has no piece with a positive weight; negative pieces only "
                         "steer away, so give at least one positive piece")
    return _normalised(pieces)


def negative_pieces(negative_prompt: str, prompt: str = "") -> tuple[Piece, ...]:
    """The unconditional side: negative-prompt pieces and the prompt's negative-weight pieces.

    Weights are normalised to sum 1; empty when there is nothing (the model's default).
    """
    pieces: list[Piece] = []
    if negative_prompt.strip():
        prompts = parse_prompts(negative_prompt)
        _check_no_stop(prompts)
        for number, p in enumerate(prompts, 1):
            if p.weight < 0:
                raise ValueError(f"piece {number} {p.text!r} has weight {p.weight:g}; negative "
                                 "prompt weights must be positive")
        pieces += [(p.text, p.weight) for p in prompts if p.weight > 0]
    if prompt.strip():
        pieces += [(p.text, -p.weight) for p in parse_prompts(prompt) if p.weight < 0]
    return _normalised(pieces) if pieces else ()


@dataclass(frozen=True)
class PromptPlan:
    """What to encode: positive and unconditional pieces, and how to combine them."""

    positive: tuple[Piece, ...]  # weights sum to 1
    negative: tuple[Piece, ...]  # weights sum to 1; () = the model's default unconditional
    mode: str = "composable"  # "composable" or "blend"

    @property
    def composed(self) -> bool:
        """Whether the UNet must be wrapped (several predictions per step)."""
        return self.mode == "composable" and (len(self.positive) > 1 or len(self.negative) > 1)


def plan_prompts(prompt: str, negative_prompt: str = "", mode: str = "composable") -> PromptPlan:
    """Split a prompt and negative prompt into the pieces to encode."""
    if mode not in ("composable", "blend"):
        raise ValueError(f"prompt_mode: must be 'composable' or 'blend' (got {mode!r})")
    return PromptPlan(positive_pieces(prompt), negative_pieces(negative_prompt, prompt), mode)


# --- text encoding ----------------------------------------------------------------------------


@dataclass
class Encoded:
    """Text embeddings of one side: (K, L, D) for K pieces, pooled (K, P) for SDXL."""

    embeds: Any  # torch.Tensor
    pooled: Any = None  # torch.Tensor | None
    weights: Any = None  # torch.Tensor (K,), sums to 1

    def blended(self) -> Encoded:
        """The weighted mean over pieces, as one piece."""
        if self.embeds.shape[0] == 1:
            return self
        w = self.weights.to(self.embeds.dtype)
        embeds = (w.view(-1, 1, 1) * self.embeds).sum(0, keepdim=True)
        pooled = None if self.pooled is None else (w.view(-1, 1) * self.pooled).sum(0, keepdim=True)
        return Encoded(embeds, pooled, w.new_ones(1))


def _chunk_ids(tokenizer, text: str) -> list[list[int]]:
    """Token ids of `text` as 77-token chunks: start, up to 75 tokens, end, padding."""
    length = tokenizer.model_max_length
    ids = tokenizer(text, add_special_tokens=False, truncation=False).input_ids
    body = length - 2
    chunks = [ids[i:i + body] for i in range(0, len(ids), body)] or [[]]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return [[tokenizer.bos_token_id, *c, tokenizer.eos_token_id] + [pad] * (body - len(c))
            for c in chunks]


def _clip_hidden(encoder, ids, clip_skip: int, sdxl: bool):
    """CLIP hidden states of the chunks (n, 77, D), with the web UI's clip skip."""
    out = encoder(ids, output_hidden_states=True)
    if sdxl:  # SDXL conditions on the penultimate layer without the final norm
        return out.hidden_states[-(clip_skip + 1)], out[0]
    if clip_skip == 1:
        return out[0], None
    final_norm = getattr(encoder, "text_model", encoder).final_layer_norm  # transformers 4 / 5
    return final_norm(out.hidden_states[-clip_skip]), None


def _encode_clip(pipe, text: str, clip_skip: int) -> tuple[Any, Any]:
    """(1, n*77, D) embeddings and the pooled SDXL embedding of one text, chunked."""
    import torch

    pairs = [(pipe.tokenizer, pipe.text_encoder)]
    sdxl = hasattr(pipe, "text_encoder_2")
    if sdxl:
        pairs = [(t, e) for t, e in (*pairs, (pipe.tokenizer_2, pipe.text_encoder_2)) if e]
    hidden, pooled = [], None
    for tokenizer, encoder in pairs:
        ids = torch.tensor(_chunk_ids(tokenizer, text), device=encoder.device)
        states, pooled_all = _clip_hidden(encoder, ids, clip_skip, sdxl)
        hidden.append(states.reshape(1, -1, states.shape[-1]))
        if pooled_all is not None and pooled_all.ndim == 2:
            pooled = pooled_all[:1]  # the web UI pools the first chunk
    return torch.cat(hidden, dim=-1), pooled


def _encode_bert(pipe, text: str) -> tuple[Any, Any]:
    """LDM's BERT: one 77-token sequence, as LDMTextToImagePipeline encodes it."""
    tokens = pipe.tokenizer(text, padding="max_length", max_length=77, truncation=True,
                            return_tensors="pt")
    full = pipe.tokenizer(text).input_ids
    if len(full) > 77:
        log.warning("prompt piece %r is longer than 77 tokens: the latent-diffusion model's "
                    "BERT encoder reads only the first 77", text)
    return pipe.bert(tokens.input_ids.to(pipe.bert.device))[0], None


def encode_text(pipe, text: str, clip_skip: int = 1) -> tuple[Any, Any]:
    """Embeddings (1, L, D) and pooled embedding (SDXL, else None) of one text."""
    if hasattr(pipe, "bert"):
        return _encode_bert(pipe, text)
    return _encode_clip(pipe, text, clip_skip)


def _pad_to(embeds, length: int, filler):
    """Pad (1, L, D) embeddings to `length` with repeats of the (1, 77, D) filler chunk."""
    import torch

    missing = length - embeds.shape[1]
    if missing <= 0:
        return embeds
    reps = math.ceil(missing / filler.shape[1])
    return torch.cat([embeds, filler.repeat(1, reps, 1)[:, :missing]], dim=1)


def encode_side(pipe, pieces: tuple[Piece, ...], clip_skip: int, zeros_like=None) -> Encoded:
    """Encode the pieces of one side; `zeros_like` (for an empty side) gives SDXL's zeros."""
    import torch

    if not pieces and zeros_like is not None:
        pooled = None if zeros_like.pooled is None else torch.zeros_like(zeros_like.pooled[:1])
        return Encoded(torch.zeros_like(zeros_like.embeds[:1]), pooled, torch.ones(1))
    encoded = [encode_text(pipe, text, clip_skip) for text, _ in pieces or (("", 1.0),)]
    weights = torch.tensor([w for _, w in pieces or (("", 1.0),)], dtype=torch.float32)
    pooled = None if encoded[0][1] is None else torch.cat([p for _, p in encoded])
    return Encoded(_same_length([e for e, _ in encoded], pipe, clip_skip), pooled, weights)


def _same_length(embeds: list, pipe, clip_skip: int):
    """Stack (1, L_i, D) embeddings, padding the shorter ones with the empty prompt's chunk."""
    import torch

    length = max(e.shape[1] for e in embeds)
    if any(e.shape[1] != length for e in embeds):
        filler = encode_text(pipe, "", clip_skip)[0]
        embeds = [_pad_to(e, length, filler) for e in embeds]
    return torch.cat(embeds)


def match_lengths(pipe, clip_skip: int, *sides: Encoded) -> None:
    """Pad the sides' embeddings in place to one sequence length (the pipeline needs it)."""
    import torch

    length = max(s.embeds.shape[1] for s in sides)
    if all(s.embeds.shape[1] == length for s in sides):
        return
    filler = encode_text(pipe, "", clip_skip)[0]
    for side in sides:
        pad = filler if side.embeds.any() else torch.zeros_like(filler)  # SDXL's zeros stay
        side.embeds = torch.cat([_pad_to(e[None], length, pad) for e in side.embeds])


def encode_plan(pipe, plan: PromptPlan, clip_skip: int = 1) -> tuple[Encoded, Encoded]:
    """(cond, uncond) embeddings of a plan, padded to one length; blended in blend mode.

    An empty unconditional side is the empty prompt, or zeros where the pipeline's config
    says so (SDXL's `force_zeros_for_empty_prompt`), as a plain diffusers call would do.
    """
    import torch

    with torch.no_grad():
        cond = encode_side(pipe, plan.positive, clip_skip)
        zeros = getattr(pipe.config, "force_zeros_for_empty_prompt", False)
        uncond = encode_side(pipe, plan.negative, clip_skip, cond if zeros else None)
        match_lengths(pipe, clip_skip, cond, uncond)
    if plan.mode == "blend":
        cond, uncond = cond.blended(), uncond.blended()
    return cond, uncond


# --- composable: one batched UNet call for all pieces ------------------------------------------


class ComposedUNet:
    """A UNet forward that evaluates every piece of both sides in one batched call.

    Called like the UNet with the pipeline's batch, [uncond (B), cond (B)] under guidance or
    [cond (B)] without. Each image's latents are repeated once per piece, each piece's
    embeddings once per image; the predictions are combined per side with the side's weights,
    and [sum_j v_j uncond_j, sum_i w_i cond_i] (or the cond part alone) is returned in the form
    the UNet returns. The pipeline's own encoder states are ignored: the pieces are ours.
    """

    def __init__(self, forward, cond: Encoded, uncond: Encoded, images: int):
        self.forward = forward  # the UNet's own forward (with any offload hooks)
        self.cond = cond
        self.uncond = uncond
        self.images = images  # B: images per pipeline call

    def _sides(self, n: int) -> list[tuple[Encoded, slice]]:
        b = self.images
        if n == 2 * b:
            return [(self.uncond, slice(0, b)), (self.cond, slice(b, 2 * b))]
        if n == b:
            return [(self.cond, slice(0, b))]
        raise RuntimeError(f"composable prompts: UNet batch {n} is neither {b} nor {2 * b}")

    def __call__(self, sample, timestep, encoder_hidden_states=None, **kwargs):
        import torch

        n, b = sample.shape[0], self.images
        sides = self._sides(n)
        states = torch.cat([s.embeds.to(sample.device, sample.dtype).repeat_interleave(b, 0)
                            for s, _ in sides])
        added = dict(kwargs.pop("added_cond_kwargs", None) or {})
        if "text_embeds" in added and sides[0][0].pooled is not None:
            added["text_embeds"] = torch.cat(
                [s.pooled.to(sample.device, added["text_embeds"].dtype).repeat_interleave(b, 0)
                 for s, _ in sides])
        expand = _expander(n, sides)
        kwargs = {k: expand(v) for k, v in kwargs.items()}
        if added:
            kwargs["added_cond_kwargs"] = {k: v if k == "text_embeds" else expand(v)
                                           for k, v in added.items()}
        out = self.forward(expand(sample), expand(timestep), encoder_hidden_states=states,
                           **kwargs)
        noise = out[0] if isinstance(out, tuple) else out.sample
        combined = torch.cat(_combine(noise, sides, b))
        return (combined,) if isinstance(out, tuple) else type(out)(sample=combined)


def _expander(n: int, sides: list[tuple[Encoded, slice]]):
    """A function repeating each side's part of a per-sample tensor once per piece."""
    import torch

    def expand(value):
        if not (torch.is_tensor(value) and value.ndim > 0 and value.shape[0] == n):
            return value  # a scalar timestep, a flag, a per-call tensor
        reps = [value[part].repeat(side.embeds.shape[0], *([1] * (value.ndim - 1)))
                for side, part in sides]
        return torch.cat(reps)

    return expand


def _combine(noise, sides: list[tuple[Encoded, slice]], b: int) -> list:
    """Per side, the weighted sum of the pieces' predictions: (B, ...) each."""
    result, start = [], 0
    for side, _ in sides:
        k = side.embeds.shape[0]
        part = noise[start:start + k * b].reshape(k, b, *noise.shape[1:])
        weights = side.weights.to(noise.device, noise.dtype).view(k, *([1] * (noise.ndim)))
        result.append(part[0] if k == 1 else (weights * part).sum(0))
        start += k * b
    return result


@contextmanager
def composed_unet(unet, cond: Encoded, uncond: Encoded, images: int) -> Iterator[ComposedUNet]:
    """Within the block, calling `unet` runs a `ComposedUNet`; its forward is restored after."""
    own = vars(unet).get("forward")  # an instance-level forward (accelerate's offload hooks)
    wrapper = ComposedUNet(unet.forward, cond, uncond, images)
    unet.forward = wrapper
    try:
        yield wrapper
    finally:
        if own is not None:
            unet.forward = own
        else:
            del unet.forward
