"""Interrogate: an image -> a prompt to paste (the web UI's "Interrogate CLIP").

`caption` mode: a caption from BLIP (Li et al. 2022, "BLIP: Bootstrapping Language-Image
Pre-training for Unified Vision-Language Understanding and Generation", arXiv:2201.12086)
through transformers (`BlipForConditionalGeneration` + `BlipProcessor`), greedy, at most
`CAPTION_TOKENS` new tokens: the web UI's interrogator is BLIP too. Florence-2 would caption
better but its Hub repos need `trust_remote_code`, which runs code downloaded from the Hub, so
it is not offered.

`clip` mode, the web UI's way: the caption, then the terms of each list that CLIP (Radford et
al. 2021, "Learning Transferable Visual Models From Natural Language Supervision") finds
closest to the image by cosine similarity, one artist, medium and movement and the top three
flavours (clip-interrogator's classic mode counts): "CAPTION, by ARTIST, MEDIUM, MOVEMENT,
flavour1, flavour2, flavour3". Artists are matched as "by NAME", as clip-interrogator does.
The lists are clip-interrogator's (`helpers/data/interrogate/README.md`). The text embeddings
of a list are computed once per CLIP, in batches, and kept in the cache as safetensors
(`<cache>/interrogate/<clip>-<fingerprint>/<list>-<checksum>.safetensors`, float16).

An image that carries its prompt (our PNGs, the web UI's PNG / JPEG / WebP infotext) gives that
prompt back without loading a model, unless `force`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.reporting import Log, no_log

if TYPE_CHECKING:
    import torch
    from PIL import Image

IMAGE_FIELD = "image"
MODE_FIELD = "mode"
CAPTION_FIELD = "caption_model"
CLIP_FIELD = "clip_model"
MODES = ("caption", "clip")
DEFAULT_CAPTION = "blip-large"
# The web UI's `interrogate_clip_dict_limit`: CLIP ranks the first 1,500 lines of each list (the
# flavours list has about 100,000; all of them take minutes on a GPU, an hour on a CPU, once).
TERM_LIMIT = 1500
DEFAULT_CLIP = "openai/clip-vit-large-patch14"  # SD 1.x's text encoder; SDXL: SDXL_CLIP
SDXL_CLIP = "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"
CATEGORIES = ("artists", "mediums", "movements", "flavors")  # in the prompt's order
TOP = {"artists": 1, "mediums": 1, "movements": 1, "flavors": 3}  # terms kept from each list
CAPTION_TOKENS = 32  # new tokens at most (clip-interrogator's caption_max_length)
TEXT_BATCH = 256  # texts per CLIP text-encoder call
MAX_TERMS = 200_000  # terms in one list: flavors.txt has about 100k
CACHE_FOLDER = "interrogate"
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


@dataclass(frozen=True)
class Captioner:
    """A loaded BLIP: the frozen model and its processor (tokenizer + image processor)."""

    name: str
    model: Any  # transformers.BlipForConditionalGeneration
    processor: Any  # transformers.BlipProcessor


@dataclass(frozen=True)
class Ranker:
    """A loaded CLIP for ranking terms: the model, its image processor and its cache folder."""

    clip: Any  # helpers.vqgan_clip.clip.Clip
    processor: Any  # the folder's CLIP image processor (resize, centre crop, normalise)
    folder: Path  # where this CLIP's term embeddings are cached


# --- the whole job ------------------------------------------------------------------------------


def describe_image(path: str, mode: str = "clip", caption_model: str = DEFAULT_CAPTION,
                   clip_model: str = DEFAULT_CLIP, force: bool = False, device: str = "auto",
                   cache: str | Path | None = None, log: Log = no_log,
                   term_limit: int = TERM_LIMIT) -> str:
    """The prompt of the image at `path` (file, URL or Drive id): its stored prompt when it
    carries one (unless `force`), else what `interrogate` makes of it (`term_limit`: the
    first lines of each term list CLIP ranks, 0 = all)."""
    from helpers.inputs import local_path, read_rgb

    check_options(mode, caption_model, clip_model)
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"{IMAGE_FIELD} is empty: give a picture's path or URL")
    local = local_path(path.strip(), IMAGE_FIELD, cache)
    if not force:
        stored = stored_prompt(local)
        if stored is not None:
            log(f"{IMAGE_FIELD}: {local.name} carries its prompt; printing it (--force to "
                "interrogate the picture instead)")
            return stored
    return interrogate(read_rgb(local, IMAGE_FIELD), mode, caption_model, clip_model, device,
                       cache, log, term_limit=term_limit)


def stored_prompt(path: str | Path) -> str | None:
    """The prompt an image carries (infotext, or our settings' `prompt`), None if it has none."""
    from helpers.metadata.infotext import parse_infotext
    from helpers.runs import read_image_info

    try:
        infotext, settings = read_image_info(Path(path), shortened=True)
        prompt = parse_infotext(infotext)["Prompt"] if infotext else None
    except ValueError as e:
        raise ValueError(f"{IMAGE_FIELD}: {e}") from None
    if not prompt and isinstance(settings, dict) and isinstance(settings.get("prompt"), str):
        prompt = settings["prompt"]
    return prompt.strip() if prompt and prompt.strip() else None


def interrogate(image: Image.Image, mode: str = "clip", caption_model: str = DEFAULT_CAPTION,
                clip_model: str = DEFAULT_CLIP, device: str = "auto",
                cache: str | Path | None = None, log: Log = no_log,
                terms: dict[str, list[str]] | None = None,
                term_limit: int = TERM_LIMIT) -> str:
    """A prompt for `image`: its caption, and in `clip` mode the best terms of each list
    (`terms`: lists by category instead of the packaged ones; `term_limit`: the first lines
    of each packaged list, 0 = all)."""
    from helpers.device import pick_device

    check_options(mode, caption_model, clip_model)
    device = str(pick_device(device, log))  # checked (and warned about) once
    text = caption(image, caption_model, device, cache, log)
    if mode == "caption":
        return text
    lists = terms if terms is not None else {c: load_terms(c, term_limit) for c in CATEGORIES}
    ranker = load_ranker(clip_model, device, cache, log)
    where = ranker.clip.device
    try:
        found = best_terms(ranker, image, lists, log)
    finally:
        del ranker
        _release(where)
    return ", ".join(part for part in (text, *found) if part)


def check_options(mode: str, caption_model: str, clip_model: str) -> None:
    """`ValueError` naming the setting for an unknown mode or a model name that is no
    folder, Hub id or catalogue model of its kind; nothing is loaded."""
    if mode not in MODES:
        raise ValueError(f"{MODE_FIELD}: {mode!r} is not a mode; use one of {', '.join(MODES)}")
    check_model_name(CAPTION_FIELD, caption_model, "caption")
    if mode == "clip":
        check_model_name(CLIP_FIELD, clip_model, "clip")


def check_model_name(field: str, name: str, kind: str) -> None:
    """`ValueError` naming `field` unless `name` is a folder, a Hub id (`owner/name`) or a
    catalogue model of `kind`."""
    from helpers.catalog import find_model, unknown_model

    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{field} is empty: name a model (python -m helpers models --kind "
                         f"{kind})")
    model = find_model(name.strip())
    if model is None:
        if Path(name.strip()).expanduser().is_dir() or _HUB_ID.fullmatch(name.strip()):
            return
        raise ValueError(f"{field}: {unknown_model(name.strip())}")
    if model.kind != kind:
        raise ValueError(f"{field}: {name!r} is a {model.kind} model, not a {kind} model "
                         f"(python -m helpers models --kind {kind})")


# --- caption ------------------------------------------------------------------------------------


def caption(image: Image.Image, model: str = DEFAULT_CAPTION, device: str = "auto",
            cache: str | Path | None = None, log: Log = no_log) -> str:
    """BLIP's caption of `image` (greedy); the model is freed afterwards."""
    captioner = load_captioner(model, device, cache, log)
    where = captioner.model.device
    try:
        return caption_with(captioner, image)
    finally:
        del captioner  # the last reference: the memory can go back
        _release(where)


def caption_folder(name: str, cache: str | Path | None = None, log: Log = no_log) -> Path:
    """The local folder of a caption model (catalogue name, Hub id or folder), fetched if need
    be; `ValueError` or `DownloadError` naming `caption_model` when it cannot be."""
    from helpers.catalog import BLIP_FILES, CLIP_WEIGHTS
    from helpers.download import FolderKind, fetch_model_folder

    what = FolderKind("caption", CAPTION_FIELD, "caption model", "BLIP", DEFAULT_CAPTION,
                      BLIP_FILES, CLIP_WEIGHTS, unknown="caption model: ")
    return fetch_model_folder(name.strip(), what, ("blip",), cache, log)


def load_captioner(name: str = DEFAULT_CAPTION, device: str = "auto",
                   cache: str | Path | None = None, log: Log = no_log) -> Captioner:
    """Load a BLIP captioner, frozen, on `device` (float16 on a GPU)."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from helpers.precision import dtype_kwargs

    folder = caption_folder(name, cache, log)
    where, dtype = _device_dtype(device, log)
    model = BlipForConditionalGeneration.from_pretrained(folder, **dtype_kwargs("transformers",
                                                                                 dtype))
    model = model.to(where).eval().requires_grad_(False)
    return Captioner(name, model, BlipProcessor.from_pretrained(folder))


def caption_with(captioner: Captioner, image: Image.Image,
                 max_tokens: int = CAPTION_TOKENS) -> str:
    """The caption of `image` by a loaded captioner: greedy, at most `max_tokens` tokens."""
    import torch

    model, processor = captioner.model, captioner.processor
    inputs = processor(images=image.convert("RGB"), return_tensors="pt")
    pixels = inputs["pixel_values"].to(model.device, model.dtype)
    with torch.inference_mode():
        tokens = model.generate(pixel_values=pixels, max_new_tokens=max_tokens, num_beams=1,
                                do_sample=False)
    return processor.batch_decode(tokens, skip_special_tokens=True)[0].strip()


# --- ranking terms with CLIP --------------------------------------------------------------------


def load_terms(category: str, limit: int = 0) -> list[str]:
    """One packaged term list (`CATEGORIES`): one term a line; its first `limit` (0: all)."""
    if category not in CATEGORIES:
        raise ValueError(f"terms: {category!r} is not a list; use one of {CATEGORIES}")
    if limit < 0:
        raise ValueError(f"term_limit: {limit} is negative; give 0 (every term) or more")
    text = resources.files("helpers").joinpath(f"data/interrogate/{category}.txt")
    terms = [line.strip() for line in text.read_text(encoding="utf-8").splitlines()
             if line.strip()]
    return terms[:limit] if limit else terms


def term_texts(category: str, terms: list[str]) -> list[str]:
    """What CLIP reads for the terms of a list: artists as "by NAME"."""
    return [f"by {t}" for t in terms] if category == "artists" else list(terms)


def rank_terms(image: Image.Image, terms: list[str], clip_model: str = DEFAULT_CLIP,
               top: int = 1, device: str = "auto", cache: str | Path | None = None,
               log: Log = no_log) -> list[str]:
    """The `top` terms closest to `image` by CLIP cosine similarity, best first."""
    terms = check_terms(terms)
    if not terms:
        return []
    ranker = load_ranker(clip_model, device, cache, log)
    where = ranker.clip.device
    try:
        features = image_features(ranker, image)
        return closest(features, text_embeddings(ranker, terms, log), terms, top)
    finally:
        del ranker
        _release(where)


def best_terms(ranker: Ranker, image: Image.Image, lists: dict[str, list[str]],
               log: Log = no_log) -> list[str]:
    """The best terms of each list for `image`, in `CATEGORIES` order (`TOP` of each)."""
    features = image_features(ranker, image)
    found: list[str] = []
    for category in CATEGORIES:
        terms = check_terms(lists.get(category, []), category)
        if terms:
            texts = term_texts(category, terms)
            found += closest(features, text_embeddings(ranker, texts, log, category), texts,
                             TOP[category])
    return found


def check_terms(terms: list[str], category: str = "terms") -> list[str]:
    """`ValueError` naming the list for blank, non-text or too many terms."""
    if not isinstance(terms, (list, tuple)) or len(terms) > MAX_TERMS:
        raise ValueError(f"{category}: give a list of at most {MAX_TERMS:,} terms")
    if any(not isinstance(t, str) or not t.strip() for t in terms):
        raise ValueError(f"{category}: every term must be non-empty text")
    return list(terms)


def load_ranker(name: str = DEFAULT_CLIP, device: str = "auto",
                cache: str | Path | None = None, log: Log = no_log) -> Ranker:
    """Load a CLIP (catalogue name, Hub id or folder; errors name `clip_model`) for ranking."""
    from helpers.download import cache_dir
    from helpers.vqgan_clip.clip import clip_folder, load_clip_from, resolve_clip

    try:
        folder = clip_folder(resolve_clip(name.strip()), cache, progress=True, log=log)
    except ValueError as e:
        raise ValueError(f"{CLIP_FIELD}: {str(e).removeprefix('clip: ')}") from None
    where, dtype = _device_dtype(device, log)
    clip = load_clip_from(folder, name, device=where, dtype=dtype)
    cached = cache_dir(cache) / CACHE_FOLDER / f"{_slug(name)}-{_fingerprint(folder)}"
    return Ranker(clip, _image_processor(folder, clip.input_size), cached)


def image_features(ranker: Ranker, image: Image.Image) -> torch.Tensor:
    """The unit-length CLIP embedding of `image` (CLIP's resize, centre crop, normalisation)."""
    import torch
    import torch.nn.functional as F

    model = ranker.clip.model
    pixels = ranker.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        pooled = model.vision_model(pixel_values=pixels.to(ranker.clip.device,
                                                           model.dtype)).pooler_output
        return F.normalize(model.visual_projection(pooled).float(), dim=-1)[0]


def closest(features: torch.Tensor, embeddings: torch.Tensor, texts: list[str],
            top: int) -> list[str]:
    """The `top` texts whose embeddings have the highest cosine similarity with `features`."""
    scores = embeddings.to(features.device, features.dtype) @ features
    return [texts[i] for i in scores.topk(min(top, len(texts))).indices.tolist()]


def text_embeddings(ranker: Ranker, texts: list[str], log: Log = no_log,
                    label: str = "terms") -> torch.Tensor:
    """Unit-length CLIP embeddings of `texts` (float16 rows), from the cache when it has them
    for this CLIP and these texts, else computed in batches and cached."""
    from safetensors.torch import load_file, save

    from helpers.files import atomic_write_bytes

    checksum = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    path = ranker.folder / f"{_slug(label)}-{checksum}.safetensors"
    if path.is_file():
        try:
            found = load_file(path)["embeddings"]
            if found.shape[0] == len(texts):
                return found
        except (OSError, KeyError, RuntimeError, ValueError):
            pass  # damaged: computed again below
    log(f"{CLIP_FIELD}: embedding {len(texts):,} {label} with {ranker.clip.name} (once; "
        "kept in the cache)")
    embeddings = encode_texts(ranker.clip, texts).half().cpu()
    for old in ranker.folder.glob(f"{_slug(label)}-*.safetensors"):
        old.unlink(missing_ok=True)  # an older list's embeddings
    atomic_write_bytes(path, save({"embeddings": embeddings}, {"checksum": checksum,
                                                                "model": ranker.clip.name}))
    return embeddings


def encode_texts(clip: Any, texts: list[str], batch: int = TEXT_BATCH) -> torch.Tensor:
    """Unit-length CLIP text embeddings, one row per text: `batch` texts a call, shortest
    first, each padded to its batch's longest (CLIP's causal attention and pooling at the end
    token make that equal to padding to 77 tokens, as `Clip.encode_text` does)."""
    import torch
    import torch.nn.functional as F

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
    rows = []
    for start in range(0, len(texts), batch):
        chunk = [texts[i] for i in order[start:start + batch]]
        tokens = clip.tokenizer(chunk, padding="longest", truncation=True,
                                max_length=clip.tokenizer.model_max_length, return_tensors="pt")
        with torch.inference_mode():
            pooled = clip.model.text_model(input_ids=tokens["input_ids"].to(clip.device))
            rows.append(F.normalize(clip.model.text_projection(pooled.pooler_output).float(),
                                    dim=-1))
    sorted_rows = torch.cat(rows)
    embeddings = torch.empty_like(sorted_rows)
    embeddings[torch.tensor(order, dtype=torch.long)] = sorted_rows
    return embeddings


# --- helpers ------------------------------------------------------------------------------------


def _image_processor(folder: Path, size: int) -> Any:
    """The folder's CLIP image processor, or CLIP's own preprocessing at `size`."""
    try:
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:  # transformers 4.x
        from transformers import CLIPImageProcessor as Processor

    from helpers.vqgan_clip.clip import CLIP_MEAN, CLIP_STD

    if (folder / "preprocessor_config.json").is_file():
        return Processor.from_pretrained(folder)
    return Processor(size={"shortest_edge": size},
                              crop_size={"height": size, "width": size},
                              image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))


def _device_dtype(device: str, log: Log) -> tuple[Any, Any]:
    """The device and the weights' dtype (float16 on a GPU, float32 on the CPU)."""
    from helpers.device import pick_device
    from helpers.precision import weights_dtype

    where = pick_device(device, log)
    return where, weights_dtype("auto", where)


def _fingerprint(folder: Path) -> str:
    """A short hash of the model folder (a Hub snapshot's path holds its commit) and its
    weight files' sizes and times, so other weights never reuse these embeddings."""
    stats = sorted(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                   for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    key = "\n".join([str(folder.resolve()), *stats])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name.strip())[-60:].strip("._") or "model"


def _release(device: Any) -> None:
    """Give the memory of a model no longer referenced back (GPU memory to the driver)."""
    from helpers.diffusion.tools.control.depth import release

    release(device)
