"""Text embeddings for diffusion as the web UI makes them, and the composable UNet.

What a prompt means (our pieces, AND parts, emphasis, BREAK, chunks) is `prompt_syntax`'s; here
it becomes embeddings as in AUTOMATIC1111/stable-diffusion-webui (modules/sd_hijack_clip.py at
00e09382, sd_hijack_open_clip.py, sd_emphasis.py; web UI 1.8-1.10):
- A piece's tokens are cut into chunks of 75, each encoded as its own 77-token sequence (start,
  75 tokens, end / padding), and the chunk embeddings concatenated.
- Emphasis ("Original", the web UI's default): a chunk's CLIP output is multiplied per token by
  the token's multiplier, then scaled so that its mean is the mean before (per encoder for
  SDXL). A text without emphasis skips this step: up to 75 tokens it encodes exactly as a plain
  diffusers call does.
- Clip skip, the web UI's N (1 = the last layer), per family. SD 1.x: layer N from the end,
  through the final norm. SD 2.x: ignored, as there (its OpenCLIP encoder is recognised by
  `hidden_act == "gelu"`; OpenAI's CLIP has "quick_gelu"). SDXL: OpenCLIP-G always gives its
  penultimate layer; CLIP-L gives layer max(N, 2) from the end without the norm - the web UI's
  numbers by default for N = 1, 2 and with its "Clip skip SDXL" option for N >= 2 (without the
  option the web UI ignores clip skip on SDXL).
- Lengths. The pieces of one side are padded to the longest with their last vector repeated
  (the web UI's `stack_conds` for AND parts). The shorter side is padded with the empty prompt's
  chunk (zeros where SDXL's unconditional is zeros) and `Encoded.length` keeps its own length.
  The web UI (by default) evaluates each side at its own length; masking the padding out of
  cross-attention gives the same numbers (`helpers.diffusion.guidance` does). Unmasked - the
  plain pipeline path - the numbers are those of the web UI's "Pad prompt/negative prompt"
  option.
- Pieces are combined by prediction (`helpers.diffusion.guidance`) when composable, by
  embedding in blend mode, where each AND part's pieces are blended into one embedding.
- Prompt editing and alternation (`encode_schedule`): each piece's text at every switch step
  of the web UI's schedule (`prompt_schedule`), encoded once per distinct text, every stretch
  padded to one length.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from helpers.diffusion.families import pipeline_family
from helpers.diffusion.prompt_syntax import (
    BREAK_SEGMENT,
    CHUNK,
    Part,
    Piece,
    PromptPlan,
    Segment,
    chunk_tokens,
    negative_pieces,
    parse_attention,
    plain_text,
    plan_prompts,
    positive_pieces,
)

if TYPE_CHECKING:
    from helpers.diffusion.guidance import Conditioning

__all__ = ["Encoded", "Piece", "PromptPlan", "encode_plan", "encode_plans",
           "encode_schedule", "encode_side", "encode_text", "match_lengths", "negative_pieces",
           "plan_prompts", "positive_pieces", "prompt_chunks", "text_encoders"]

log = logging.getLogger(__name__)
Chunk = tuple[list[int], list[float]]  # 77 token ids and their emphasis multipliers


@dataclass
class Encoded:
    """Text embeddings of one side: (K, L, D) for K pieces, pooled (K, P) for SDXL."""

    embeds: Any  # torch.Tensor
    pooled: Any = None  # torch.Tensor | None
    weights: Any = None  # torch.Tensor (K,): composable weights; the unconditional side's sum to 1
    length: int | None = None  # the side's own length; later positions pad it (None: no padding)

    def attention_mask(self) -> Any:
        """(K, L) bool, False where the padding to the other side's length must not be seen by
        cross-attention (`encoder_attention_mask`); None when nothing is padded."""
        import torch

        k, total = self.embeds.shape[:2]
        if self.length is None or self.length >= total:
            return None
        return (torch.arange(total, device=self.embeds.device) < self.length).expand(k, total)

    def blended(self, parts: tuple[Part, ...] = ()) -> Encoded:
        """The weighted mean of each AND part's pieces, as one piece with the part's weight."""
        import torch

        parts = parts or ((self.embeds.shape[0], 1.0),)
        if len(parts) == self.embeds.shape[0] and all(w == 1 for _, w in parts):
            return self
        w = self.weights.to(self.embeds.dtype)
        embeds, pooled, start = [], [], 0
        for count, weight in parts:
            share = w[start:start + count] / weight
            embeds.append((share.view(-1, 1, 1) * self.embeds[start:start + count]).sum(0))
            if self.pooled is not None:
                pooled.append((share.view(-1, 1) * self.pooled[start:start + count]).sum(0))
            start += count
        return Encoded(torch.stack(embeds), torch.stack(pooled) if pooled else None,
                       torch.tensor([weight for _, weight in parts]), self.length)


# --- text encoding ----------------------------------------------------------------------------


def _chunks(tokenizer, segments: list[Segment]) -> list[Chunk]:
    """The 77-token chunks of parsed segments: start, up to 75 tokens, end, padding."""
    texts = [text for text, _ in segments]
    ids = tokenizer(texts, add_special_tokens=False, truncation=False).input_ids
    runs = [None if s == BREAK_SEGMENT else (t, s[1]) for s, t in zip(segments, ids, strict=True)]
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    comma = None if comma == tokenizer.unk_token_id else comma
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    chunks = []
    for chunk in chunk_tokens(runs, comma):
        fill = CHUNK - len(chunk)
        chunks.append(([bos, *(t for t, _ in chunk), eos] + [pad] * fill,
                       [1.0, *(m for _, m in chunk), 1.0] + [1.0] * fill))
    return chunks


def prompt_chunks(tokenizer, text: str) -> list[Chunk]:
    """The 77-token chunks of a piece's text: token ids and emphasis multipliers."""
    return _chunks(tokenizer, parse_attention(text))


def text_encoders(pipe) -> list[tuple[Any, Any]]:
    """The pipeline's (tokenizer, text encoder) pairs, in its family record's order."""
    return [(tokenizer, encoder) for tokenizer, encoder, _ in _encoders(pipe)]


def _encoders(pipe) -> list[tuple[Any, Any, str]]:
    """(tokenizer, text encoder, clip-skip rule) of each text encoder the pipeline has."""
    found = []
    for te in pipeline_family(pipe).text_encoders:
        encoder = getattr(pipe, te.encoder, None)
        if encoder is None:  # an SDXL refiner has no first encoder
            continue
        rule = te.rule
        if rule == "clip":
            open_clip = getattr(encoder.config, "hidden_act", "") == "gelu"
            rule = "sd2" if open_clip else "sd1"
        found.append((getattr(pipe, te.tokenizer), encoder, rule))
    return found


def _clip_hidden(encoder, ids, clip_skip: int, rule: str) -> tuple[Any, Any]:
    """Hidden states (n, 77, D) of the chunks, with clip skip as the web UI applies it, and the
    encoder's first output (SDXL's pooled embeddings for OpenCLIP-G)."""
    out = encoder(ids, output_hidden_states=True)
    states = out.hidden_states
    if clip_skip > len(states) - 1:
        raise ValueError(f"clip_skip: {clip_skip} is more than the text encoder's "
                         f"{len(states) - 1} layers")
    if rule == "sdxl-g":
        return states[-2], out[0]
    if rule == "sdxl-l":
        return states[-max(clip_skip, 2)], out[0]
    if rule == "sd2" or clip_skip == 1:
        return out[0], None
    final_norm = getattr(encoder, "text_model", encoder).final_layer_norm  # transformers 4 / 5
    return final_norm(states[-clip_skip]), None


def _emphasised(z, multipliers: list[list[float]]):
    """Chunk embeddings (n, 77, D) scaled per token, then each chunk back to its own mean."""
    import torch

    m = torch.tensor(multipliers, dtype=torch.float32, device=z.device)[..., None]
    before = z.float().mean(dim=(1, 2), keepdim=True)
    scaled = z.float() * m
    return (scaled * (before / scaled.mean(dim=(1, 2), keepdim=True))).to(z.dtype)


def _encode_clip(pipe, text: str, clip_skip: int) -> tuple[Any, Any]:
    """(1, n*77, D) embeddings and the pooled SDXL embedding of one text, chunked."""
    import torch

    segments = parse_attention(text)
    hidden, pooled = [], None
    for tokenizer, encoder, rule in _encoders(pipe):
        chunks = _chunks(tokenizer, segments)
        ids = torch.tensor([c[0] for c in chunks], device=encoder.device)
        states, first = _clip_hidden(encoder, ids, clip_skip, rule)
        multipliers = [c[1] for c in chunks]
        if any(m != 1.0 for row in multipliers for m in row):
            states = _emphasised(states, multipliers)
        hidden.append(states.reshape(1, -1, states.shape[-1]))
        if first is not None and first.ndim == 2:
            pooled = first[:1]  # the web UI pools the first chunk
    if len({h.shape[1] for h in hidden}) > 1:
        raise RuntimeError(f"the two SDXL tokenizers cut {text!r} into different chunks")
    return torch.cat(hidden, dim=-1), pooled


def _encode_bert(encoder: tuple[Any, Any, str], text: str) -> tuple[Any, Any]:
    """LDM's BERT: one 77-token sequence, as LDMTextToImagePipeline encodes it."""
    tokenizer, bert, _ = encoder
    plain = plain_text(text)
    if plain != text:
        log.warning("the latent-diffusion model's BERT encoder has no emphasis or BREAK; "
                    "it reads %r", plain)
    tokens = tokenizer(plain, padding="max_length", max_length=77, truncation=True,
                       return_tensors="pt")
    if len(tokenizer(plain).input_ids) > 77:
        log.warning("prompt piece %r is longer than 77 tokens: the latent-diffusion model's "
                    "BERT encoder reads only the first 77", plain)
    return bert(tokens.input_ids.to(bert.device))[0], None


def encode_text(pipe, text: str, clip_skip: int = 1) -> tuple[Any, Any]:
    """Embeddings (1, L, D) and pooled embedding (SDXL, else None) of one piece's text."""
    encoders = _encoders(pipe)
    if encoders[0][2] == "bert":
        return _encode_bert(encoders[0], text)
    return _encode_clip(pipe, text, clip_skip)


# --- both sides, one length ---------------------------------------------------------------------


def _pad_to(embeds, length: int, filler):
    """Pad (1, L, D) embeddings to `length` with repeats of the (1, 77, D) filler chunk."""
    import torch

    missing = length - embeds.shape[1]
    if missing <= 0:
        return embeds
    reps = math.ceil(missing / filler.shape[1])
    return torch.cat([embeds, filler.repeat(1, reps, 1)[:, :missing]], dim=1)


def _stacked(embeds: list):
    """Stack (1, L_i, D) embeddings, the shorter ones padded with their last vector."""
    import torch

    length = max(e.shape[1] for e in embeds)
    return torch.cat([e if e.shape[1] == length else
                      torch.cat([e, e[:, -1:].expand(-1, length - e.shape[1], -1)], dim=1)
                      for e in embeds])


def encode_side(pipe, pieces: tuple[Piece, ...], clip_skip: int, zeros_like=None,
                encoded: dict[str, tuple[Any, Any]] | None = None) -> Encoded:
    """Encode the pieces of one side; `zeros_like` (for an empty side) gives SDXL's zeros;
    `encoded`: texts already encoded (filled in)."""
    import torch

    if not pieces and zeros_like is not None:
        pooled = None if zeros_like.pooled is None else torch.zeros_like(zeros_like.pooled[:1])
        return Encoded(torch.zeros_like(zeros_like.embeds[:1]), pooled, torch.ones(1))
    pieces = pieces or (("", 1.0),)
    encoded = {} if encoded is None else encoded
    for text, _ in pieces:
        if text not in encoded:
            encoded[text] = encode_text(pipe, text, clip_skip)
    weights = torch.tensor([w for _, w in pieces], dtype=torch.float32)
    first = encoded[pieces[0][0]][1]
    pooled = None if first is None else torch.cat([encoded[t][1] for t, _ in pieces])
    return Encoded(_stacked([encoded[t][0] for t, _ in pieces]), pooled, weights)


def match_lengths(pipe, clip_skip: int, *sides: Encoded) -> None:
    """Pad the sides' embeddings in place to one sequence length (the pipeline needs it) with
    the empty prompt's chunk; each padded side keeps its own length in `length`."""
    import torch

    length = max(s.embeds.shape[1] for s in sides)
    if all(s.embeds.shape[1] == length for s in sides):
        return
    filler = encode_text(pipe, "", clip_skip)[0]
    for side in sides:
        own = side.embeds.shape[1]
        if own == length:
            continue
        pad = filler if side.embeds.any() else torch.zeros_like(filler)  # SDXL's zeros stay
        side.embeds = torch.cat([_pad_to(e[None], length, pad.to(e)) for e in side.embeds])
        side.length = own if side.length is None else side.length


def encode_plan(pipe, plan: PromptPlan, clip_skip: int = 1) -> tuple[Encoded, Encoded]:
    """(cond, uncond) embeddings of a plan, padded to one length; blended in blend mode.

    An empty unconditional side is the empty prompt, or zeros where the pipeline's config
    says so (SDXL's `force_zeros_for_empty_prompt`), as a plain diffusers call would do.
    The texts are taken as they are (no prompt editing: `encode_schedule` resolves it).
    """
    return encode_plans(pipe, [plan], clip_skip)[0]


def encode_plans(pipe, plans: list[PromptPlan],
                 clip_skip: int = 1) -> list[tuple[Encoded, Encoded]]:
    """(cond, uncond) of each plan, all padded to one length, each text encoded once."""
    import torch

    encoded: dict[str, tuple[Any, Any]] = {}
    zeros = getattr(pipe.config, "force_zeros_for_empty_prompt", False)
    sides = []
    with torch.no_grad():
        for plan in plans:
            cond = encode_side(pipe, plan.positive, clip_skip, None, encoded)
            uncond = encode_side(pipe, plan.negative, clip_skip, cond if zeros else None, encoded)
            sides.append((cond, uncond))
        match_lengths(pipe, clip_skip, *(side for pair in sides for side in pair))
    return [(c.blended(plan.parts), u.blended()) if plan.mode == "blend" else (c, u)
            for plan, (c, u) in zip(plans, sides, strict=True)]


def encode_schedule(pipe, plan: PromptPlan, clip_skip: int = 1, steps: int = 1,
                    hires_steps: int | None = None) -> Conditioning:
    """The plan's conditioning over a sampler run of `steps` model evaluations (the hires pass:
    `steps` of the first pass and `hires_steps` of its own), with prompt editing and
    alternation as the web UI schedules them: a stretch per switch step of any piece."""
    from helpers.diffusion.guidance import Conditioning
    from helpers.diffusion.prompt_schedule import schedule, text_at

    pieces = (*plan.positive, *plan.negative)
    schedules = [schedule(text, steps, hires_steps) for text, _ in pieces]
    ends = sorted({end for entries in schedules for end, _ in entries})
    plans = []
    for end in ends:
        texts = [text_at(entries, end) for entries in schedules]
        positive = tuple(zip(texts, (w for _, w in plan.positive), strict=False))
        negative = tuple(zip(texts[len(plan.positive):], (w for _, w in plan.negative),
                             strict=True))
        plans.append(replace(plan, positive=positive, negative=negative))
    encoded = encode_plans(pipe, plans, clip_skip)
    return Conditioning(tuple((end, *pair) for end, pair in zip(ends, encoded, strict=True)))
