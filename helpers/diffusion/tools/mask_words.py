"""A mask from words for inpainting: CLIPSeg through transformers (`--mask-prompt "the sky"`).

CLIPSeg (Lüddecke & Ecker 2022, "Image Segmentation Using Text and Image Prompts") predicts, for
an image and a text, one logit per pixel at its input size (352 px). Each `|`-separated piece of
the words is segmented on its own; its logits are sigmoid-ed and upsampled to the image size
(bilinear), and the mask is their union (the max of the probabilities), thresholded, then
dilated. The model is a catalogue name (`clipseg`, `test-tiny-clipseg`), a Hub id or a folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.reporting import Log

if TYPE_CHECKING:
    import torch
    from PIL import Image


FIELD = "mask_prompt"  # the setting the words' errors name
MODEL_FIELD = "mask_model"  # the setting the model's errors name
MAX_MASK_WORDS = 16  # pieces in one mask prompt: each costs one CLIPSeg pass
MAX_DILATION = 256  # pixels; far beyond a seam's needs, and the max-pool stays quick


@dataclass(frozen=True)
class Segmenter:
    """A loaded CLIPSeg: the frozen model and its processor (tokenizer + image processor)."""

    name: str
    model: Any  # transformers.CLIPSegForImageSegmentation
    processor: Any  # transformers.CLIPSegProcessor


def mask_from_words(image: Image.Image, words: str, threshold: float = 0.4, dilation: int = 4,
                    cache: str | Path | None = None, log: Log = print, model: str = "clipseg",
                    device: str | torch.device = "cpu") -> Image.Image:
    """An "L" mask of the image's size: 255 where CLIPSeg finds `words` ("a | b": either)."""
    from PIL import Image

    pieces = check_mask_words(words)
    check_mask_options(threshold, dilation)
    probabilities = word_probabilities(load_segmenter(model, cache, log, device), image, pieces)
    mask = dilate(probabilities > threshold, dilation)
    log(f"{FIELD}: {mask.float().mean().item():.0%} of the image is masked")
    return Image.fromarray(mask.cpu().numpy().astype("uint8") * 255)


def check_mask_words(words: str) -> list[str]:
    """The pieces of `words` split on `|`; `ValueError` naming `mask_prompt` for bad words."""
    from helpers.prompts import parse_prompts, shown
    from helpers.settings.fields import MAX_PROMPT_CHARS

    if not isinstance(words, str):
        raise ValueError(f"{FIELD} must be text, not {type(words).__name__}")
    if not words.strip():
        raise ValueError(f"{FIELD} is empty: give the words of what to repaint, e.g. 'the sky'")
    if len(words) > MAX_PROMPT_CHARS:
        raise ValueError(f"{FIELD} has {len(words)} characters; at most {MAX_PROMPT_CHARS}")
    try:
        prompts = parse_prompts(words, strict=False)
    except ValueError as e:
        raise ValueError(f"{FIELD}: {e}") from None
    weighted = [p.text for p in prompts if p.weight != 1 or p.stop != float("-inf")]
    if weighted:
        raise ValueError(f"{FIELD}: {shown(weighted[0])} has a weight; mask words take none "
                         "(write \\: for a colon in the words)")
    if len(prompts) > MAX_MASK_WORDS:
        raise ValueError(f"{FIELD} has {len(prompts)} pieces; at most {MAX_MASK_WORDS}")
    return [p.text for p in prompts]


def check_mask_options(threshold: float, dilation: int) -> None:
    """`ValueError` naming `mask_prompt` for a threshold outside [0, 1] or a bad dilation."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or not 0 <= threshold <= 1:
        raise ValueError(f"{FIELD}: threshold must be a number from 0 to 1, got {threshold!r}")
    if isinstance(dilation, bool) or not isinstance(dilation, int) \
            or not 0 <= dilation <= MAX_DILATION:
        raise ValueError(f"{FIELD}: dilation must be a whole number of pixels from 0 to "
                         f"{MAX_DILATION}, got {dilation!r}")


def clipseg_folder(name: str, cache: str | Path | None = None, log: Log = print) -> Path:
    """The local folder of a CLIPSeg model (catalogue name, Hub id or folder), fetched if need
    be; `ValueError` or `DownloadError` naming `mask_model` and the model when it cannot be."""
    from helpers.catalog import CLIP_FILES, CLIP_WEIGHTS
    from helpers.download import FolderKind, fetch_model_folder

    what = FolderKind("clipseg", MODEL_FIELD, "CLIPSeg model", "CLIPSeg", "clipseg",
                      CLIP_FILES, CLIP_WEIGHTS, unknown="CLIPSeg model: ")
    return fetch_model_folder(name, what, ("clipseg",), cache, log)


def load_segmenter(name: str = "clipseg", cache: str | Path | None = None, log: Log = print,
                   device: str | torch.device = "cpu") -> Segmenter:
    """Load a CLIPSeg model (catalogue name, Hub id or folder), frozen, in float32 on `device`."""
    import torch
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    from helpers.precision import dtype_kwargs

    folder = clipseg_folder(name, cache, log)
    model = CLIPSegForImageSegmentation.from_pretrained(
        folder, **dtype_kwargs("transformers", torch.float32))
    model = model.to(device).eval().requires_grad_(False)
    return Segmenter(name, model, CLIPSegProcessor.from_pretrained(folder))


def word_probabilities(segmenter: Segmenter, image: Image.Image,
                       pieces: list[str]) -> torch.Tensor:
    """Per pixel of `image`, the highest CLIPSeg probability of any piece: (height, width)."""
    import torch

    model, processor = segmenter.model, segmenter.processor
    device = model.device
    pixels = processor.image_processor(images=image.convert("RGB"), return_tensors="pt")
    pixels = pixels["pixel_values"].to(device, model.dtype).expand(len(pieces), -1, -1, -1)
    tokens = processor.tokenizer(pieces, padding=True, truncation=True, return_tensors="pt",
                                 max_length=model.config.text_config.max_position_embeddings)
    with torch.inference_mode():
        logits = model(input_ids=tokens["input_ids"].to(device), pixel_values=pixels,
                       attention_mask=tokens["attention_mask"].to(device)).logits
    logits = logits.float().reshape(len(pieces), 1, *logits.shape[-2:])  # 4.x squeezes batch 1
    best = None
    for row in logits:  # one upsampled map at a time: the image may be large
        probability = upsample(torch.sigmoid(row), (image.height, image.width))
        best = probability if best is None else torch.maximum(best, probability)
    return best


def upsample(probability: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (1, h, w) map resized to `size` (height, width), bilinear: (height, width)."""
    import torch.nn.functional as F

    return F.interpolate(probability[None], size=size, mode="bilinear", align_corners=False)[0, 0]


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """A boolean (height, width) mask grown by `radius` pixels along both axes (a square, as a
    max-pool of side 2 * radius + 1 makes it), in two 1-D passes."""
    import torch.nn.functional as F

    if radius == 0:
        return mask
    side = 2 * radius + 1
    grown = F.max_pool2d(mask[None, None].float(), (1, side), stride=1, padding=(0, radius))
    grown = F.max_pool2d(grown, (side, 1), stride=1, padding=(radius, 0))
    return grown[0, 0] > 0
