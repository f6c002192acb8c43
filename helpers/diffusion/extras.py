"""LoRA and textual inversion, as the web UI takes them from the prompt.

`<lora:name>` / `<lora:name:weight>` / `<lora:name:te:unet>` in the prompt (or in the prompt
schedule) loads `name` from the workspace's `loras/` folder; a word of the prompt or negative
prompt that names a file in `embeddings/` loads that textual-inversion embedding. As in the
web UI, the tags are taken out of the text the encoders get, and tags in the negative prompt
are plain text. `check_extras` finds every file before anything heavy is loaded;
`applied(pipe, settings)` loads them for one run (diffusers' LoRA and textual-inversion
loaders, on peft) and unloads them after it, so a reused pipeline is left as it came.

Hashes are the web UI's (`Lora hashes`, `TI hashes`): the first 12 hex digits of a sha256 -
for a LoRA in a .safetensors file, its `sshs_model_hash` metadata or else the sha256 of the
bytes after the header (kohya-ss' "addnet" hash); for anything else, of the whole file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from helpers.diffusion.prompt_syntax import EncoderPrompts
from helpers.files import load_json
from helpers.reporting import Log, logger_level
from helpers.settings import DiffusionSettings

if TYPE_CHECKING:
    from helpers.diffusion.families import Family

LORA_FOLDER = "loras"
EMBEDDINGS_FOLDER = "embeddings"
LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt", ".bin")
EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")
LORA_KINDS = ("lora", "lyco")  # the web UI reads <lyco:...> as <lora:...>
_TAG_HEAD = re.compile(r"<(\w+):")  # the web UI's extra-network tag <kind:body> (`_tags`)
_ADAPTER = "dreamframe_lora_{}"
MAX_NAME = 200  # characters of a LoRA's name (its file name without the suffix)


class Extra(NamedTuple):
    """One LoRA or embedding a run uses."""

    kind: str  # "lora" | "embedding"
    name: str  # as the prompt names it
    path: Path
    short_hash: str  # the web UI's: 12 hex digits
    weights: tuple[float, float] = (1.0, 1.0)  # LoRA: (text encoder, UNet) multipliers


# --- reading the prompt -------------------------------------------------------------------------


def _tags(text: str) -> list[tuple[int, int, str, str]]:
    """(start, end, kind, body) of each tag, as the web UI's regex `<(\\w+):([^>]+)>` finds them,
    in one pass: that regex reads the rest of the text again from every `<kind:` left open."""
    found, pos = [], 0
    while (head := _TAG_HEAD.search(text, pos)) is not None:
        close = text.find(">", head.end())
        if close < 0:  # no `>` after this tag's start: none after any later one either
            break
        if close > head.end():
            found.append((head.start(), close + 1, head.group(1), text[head.end():close]))
            pos = close + 1
        else:  # `<kind:>` has no body
            pos = head.start() + 1
    return found


def strip_tags(text: str) -> str:
    """`text` without its `<kind:...>` tags, as the web UI gives it to the text encoder."""
    kept, pos = [], 0
    for start, end, _, _ in _tags(text):
        kept.append(text[pos:start])
        pos = end
    return "".join(kept) + text[pos:]


def lora_tags(text: str) -> list[tuple[str, tuple[float, float]]]:
    """(name, (text encoder, UNet) weights) of each `<lora:...>` tag; other kinds are refused."""
    found = []
    for _, _, kind, body in _tags(text):
        if kind not in LORA_KINDS:
            shown = body if len(body) <= 100 else f"{body[:97]}..."  # a tag may run on and on
            raise ValueError(f"prompt: <{kind}:{shown}>: only <lora:name:weight> tags are "
                             "supported")
        found.append(_lora_args(body))
    return found


def _lora_args(body: str) -> tuple[str, tuple[float, float]]:
    """The web UI's arguments: name, then te and unet multipliers (by place or `te=`/`unet=`)."""
    name, *args = [a.strip() for a in body.split(":")]
    named = dict(a.split("=", 1) for a in args if "=" in a)
    places = [a for a in args if "=" not in a]
    unknown = sorted(set(named) - {"te", "unet"})
    if not name or unknown or len(places) > 2:
        raise ValueError(f"prompt: <lora:{body}>: write <lora:name>, <lora:name:weight> or "
                         "<lora:name:te_weight:unet_weight>")
    te = _weight(named.get("te", places[0] if places else "1"), body)
    unet = _weight(named.get("unet", places[1] if len(places) > 1 else str(te)), body)
    return name, (te, unet)


def _weight(text: str, body: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"prompt: <lora:{body}>: weight {text!r} is not a number") from None


def _texts(settings: DiffusionSettings) -> tuple[str, str]:
    """The positive texts (prompt and prompt schedule) and the negative prompt."""
    return f"{settings.prompt}\n{settings.prompt_schedule}", settings.negative_prompt


# --- finding the files --------------------------------------------------------------------------


def check_extras(settings: DiffusionSettings, family: Family | None = None) -> list[Extra]:
    """Every LoRA and embedding the settings' prompts use, found in the workspace (`out`), with
    its hash; a `ValueError` naming the folder for a LoRA that is not there."""
    positive, negative = _texts(settings)
    workspace = Path(settings.out).expanduser()
    loras = _loras(lora_tags(positive), workspace / LORA_FOLDER)
    embeddings = _embeddings(strip_tags(positive), negative, workspace / EMBEDDINGS_FOLDER)
    found = loras + embeddings
    if found and family is not None and not family.extras:
        raise ValueError(f"prompt: {found[0].name}: the {family.title} model takes no LoRA or "
                         "textual-inversion embeddings")
    return found


def _loras(tags: list[tuple[str, tuple[float, float]]], folder: Path) -> list[Extra]:
    chosen: dict[str, tuple[float, float]] = {}
    for name, weights in tags:
        if chosen.setdefault(name, weights) != weights:
            raise ValueError(f"prompt: <lora:{name}> appears with two weights; give one")
    found = []
    for name, weights in chosen.items():
        path = _find(folder, _lora_name(name), LORA_SUFFIXES)
        if path is None:
            where = folder if folder.is_dir() else f"{folder} (the folder does not exist)"
            raise ValueError(f"prompt: <lora:{name}>: no {name}.safetensors (or .pt, .ckpt) in "
                             f"{where}; put the LoRA file there")
        _check_file(f"prompt: <lora:{name}>", path, folder.parent, _lora_problem)
        found.append(Extra("lora", name, path, lora_hash(path), weights))
    return found


def _lora_name(name: str) -> str:
    """A `<lora:name>` tag's name, refused unless it can be a file's name in the LoRA folder."""
    shown = name if len(name) <= 60 else f"{name[:40]}..."
    if len(name) > MAX_NAME:
        raise ValueError(f"prompt: <lora:{shown}>: the name is {len(name):,} characters long; "
                         f"a LoRA's name is its file name without the suffix, at most {MAX_NAME}")
    if name in (".", "..") or re.search(r"[/\\\x00-\x1f]", name):
        raise ValueError(f"prompt: <lora:{shown}>: a LoRA's name is the name of a file in the "
                         "loras folder, without folders, '..' or control characters")
    return name


def _embeddings(positive: str, negative: str, folder: Path) -> list[Extra]:
    """The embeddings whose name (file stem) is a word of the prompts: the prompt's first."""
    if not folder.is_dir():
        return []
    files = {p.stem: p for p in sorted(folder.rglob("*"))
             if p.is_file() and p.suffix.lower() in EMBEDDING_SUFFIXES}
    found = []
    for setting, text in (("prompt", positive), ("negative_prompt", negative)):
        for name, path in files.items():
            if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) and \
                    all(e.name != name for e in found):
                _check_file(f"{setting}: {name}", path, folder.parent, _embedding_problem)
                found.append(Extra("embedding", name, path, file_hash(path)))
    return found


def _find(folder: Path, name: str, suffixes: tuple[str, ...]) -> Path | None:
    """The file `name` + one of `suffixes` in `folder` or a subfolder, as the web UI finds
    them: the top level first, then in the order of `suffixes` (only names of files there)."""
    if not folder.is_dir():
        return None
    files = [p for p in folder.rglob("*")
             if p.stem == name and p.suffix.lower() in suffixes and p.is_file()]
    return min(files, default=None, key=lambda p: (len(p.parts), suffixes.index(
        p.suffix.lower()), str(p)))


def _check_file(where: str, path: Path, workspace: Path,
                problem: Callable[[str, int, int], str | None]) -> None:
    """`ValueError` "`where`: file what is wrong", when `problem(path, size, mtime)` says so."""
    stat = path.stat()
    found = problem(str(path), stat.st_size, stat.st_mtime_ns)
    if found:
        shown = path.relative_to(workspace) if path.is_relative_to(workspace) else path
        raise ValueError(f"{where}: {shown} {found}")


@functools.lru_cache(maxsize=64)
def _lora_problem(path: str, size: int, mtime_ns: int) -> str | None:
    """What is wrong with a LoRA file, None if nothing (by path, size and time: read once)."""
    try:
        names = _tensor_names(Path(path))
    except ValueError as e:
        return str(e)
    if not any("lora" in n.lower() for n in names):  # diffusers' test of a LoRA's keys
        return "has no LoRA weights (no tensor named like lora_...): is it a LoRA file?"
    return None


@functools.lru_cache(maxsize=64)
def _embedding_problem(path: str, size: int, mtime_ns: int) -> str | None:
    """What is wrong with an embedding file, None if nothing (read once, as `_lora_problem`)."""
    try:
        embedding_vectors(Path(path))
    except ValueError as e:
        return str(e)
    return None


def _tensor_names(path: Path) -> list[str]:
    """The names of a weights file's tensors (a .safetensors file's header only)."""
    if path.suffix.lower() != ".safetensors":
        return [k for k, v in _weights(path).items() if _is_tensor(v)]
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as e:  # safetensors' own error is no ValueError
        raise ValueError(f"cannot be read as safetensors ({_first_line(e)})") from None


# --- hashes -------------------------------------------------------------------------------------


def file_hash(path: Path) -> str:
    """The web UI's short hash of a file: 12 hex digits of its sha256."""
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns, False)[:12]


def lora_hash(path: Path) -> str:
    """The web UI's LoRA hash: `sshs_model_hash` or the addnet hash for .safetensors files."""
    if path.suffix.lower() != ".safetensors":
        return file_hash(path)
    stated = safetensors_metadata(path).get("sshs_model_hash")
    if isinstance(stated, str) and stated:
        return stated[:12]
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns, True)[:12]


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int, after_header: bool) -> str:
    """sha256 of a file (of what follows the safetensors header, if asked); by size and time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if after_header:
            f.seek(8 + int.from_bytes(f.read(8), "little"))
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def safetensors_metadata(path: Path) -> dict[str, Any]:
    """The `__metadata__` of a .safetensors file's header ({} if none or unreadable)."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if size <= 0 or size > min(path.stat().st_size, 100 << 20):
            return {}
        try:
            header = load_json(f.read(size), f"the header of {path}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def infotext_hashes(settings: DiffusionSettings,
                    extras: list[Extra] | None = None) -> dict[str, str]:
    """`Lora hashes` and `TI hashes` as the web UI writes them: "name: hash, name: hash"
    (`extras`: what `check_extras` found for the settings, else it looks)."""
    extras = check_extras(settings) if extras is None else extras
    line = {}
    for kind, key in (("lora", "Lora hashes"), ("embedding", "TI hashes")):
        pairs = [f"{e.name.replace(':', '').replace(',', '')}: {e.short_hash}"
                 for e in extras if e.kind == kind]
        if pairs:
            line[key] = ", ".join(pairs)
    return line


# --- applying them to a pipeline ----------------------------------------------------------------


@contextlib.contextmanager
def applied(pipe: Any, settings: DiffusionSettings, log: Log = print,
            extras: list[Extra] | None = None) -> Iterator[EncoderPrompts]:
    """Load the run's LoRAs and embeddings into `pipe` for the `with` block; yield the prompts
    the text encoders are to get (tags out, multi-vector embeddings spelled as diffusers'
    tokens); the settings are not changed. Everything is unloaded after, whatever happens in
    the block (`extras`: what `check_extras` found for the settings, else it looks)."""
    extras = check_extras(settings) if extras is None else extras
    if not extras:
        yield _encoder_prompts(settings, {})
        return
    loras = [e for e in extras if e.kind == "lora"]
    had_adapters = _adapters(pipe)
    sizes = [(e, e.config.vocab_size) for _, e, _ in _encoders(pipe)] \
        if hasattr(pipe, "load_textual_inversion") else []
    tokens: list[tuple[str, int]] = []
    try:
        with logger_level("transformers", logging.ERROR):  # its note on resized embeddings
            _load_loras(pipe, loras)
            for extra in extras:
                if extra.kind == "embedding":
                    vectors = embedding_vectors(extra.path)
                    tokens.append((extra.name, _count(vectors)))
                    _load_embedding(pipe, extra, vectors)
        log(f"using {', '.join(f'{e.kind} {e.name}' for e in extras)}")
        yield _encoder_prompts(settings, dict(tokens))
    finally:
        _unload(pipe, loras, tokens, had_adapters)
        for encoder, size in sizes:
            encoder.config.vocab_size = size


def _adapters(pipe: Any) -> bool:
    """Whether the pipeline's models already carry LoRA adapters (someone else's)."""
    return any(getattr(getattr(pipe, n, None), "peft_config", None)
               for n in ("unet", "text_encoder", "text_encoder_2"))


def _load_loras(pipe: Any, loras: list[Extra]) -> None:
    if not loras:
        return
    if not hasattr(pipe, "load_lora_weights"):
        raise ValueError(f"prompt: <lora:{loras[0].name}>: this model takes no LoRA")
    names = []
    for i, extra in enumerate(loras):
        name = _ADAPTER.format(i)
        try:
            pipe.load_lora_weights(_lora_state(extra.path), adapter_name=name)
        except (ValueError, KeyError, RuntimeError, TypeError, IndexError) as e:
            raise ValueError(f"prompt: <lora:{extra.name}>: {extra.path} does not fit this "
                             f"model ({_first_line(e)})") from None
        if not any(name in (getattr(getattr(pipe, c, None), "peft_config", None) or {})
                   for c in ("unet", "text_encoder", "text_encoder_2")):
            raise ValueError(f"prompt: <lora:{extra.name}>: {extra.path} has no weights this "
                             "model has: a LoRA for another model family?")
        names.append(name)
    weights = [_component_weights(pipe, e.weights) for e in loras]
    pipe.set_adapters(names, adapter_weights=weights)


def _component_weights(pipe: Any, weights: tuple[float, float]) -> float | dict[str, float]:
    te, unet = weights
    if te == unet:
        return te
    encoders = [n for n in ("text_encoder", "text_encoder_2") if getattr(pipe, n, None)]
    return {"unet": unet, **{n: te for n in encoders}}


def _lora_state(path: Path) -> dict[str, Any]:
    """A LoRA file's tensors; a pickled one is read without running code from it."""
    return {k: v for k, v in _weights(path).items() if _is_tensor(v)}


def _weights(path: Path) -> dict[str, Any]:
    """A weights file's contents by name (a pickle read without running code from it);
    `ValueError` saying what is wrong, to follow the file's name, when it holds no dict."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors' own error is no ValueError
            raise ValueError(f"cannot be read as safetensors ({_first_line(e)})") from None
    from helpers.safeload import load_state_dict

    try:
        data = load_state_dict(path, depth=1)
    except ValueError:
        raise ValueError("is not a readable checkpoint (truncated, or not a PyTorch file)") \
            from None
    if data is None:
        raise ValueError("holds no tensors (it is not a checkpoint of named weights)")
    return data


def _is_tensor(value: Any) -> bool:
    import torch

    return torch.is_tensor(value)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:160]


def _load_embedding(pipe: Any, extra: Extra, vectors: dict[str, Any]) -> None:
    """Load one embedding's vectors under its name, into each text encoder."""
    if not hasattr(pipe, "load_textual_inversion"):
        raise ValueError(f"prompt: {extra.name}: this model takes no textual-inversion "
                         "embeddings")
    for tokenizer, encoder, key in _encoders(pipe):
        tensor = vectors.get(key, vectors.get(""))
        if tensor is None or tensor.shape[-1] != encoder.get_input_embeddings().embedding_dim:
            raise ValueError(f"prompt: {extra.name}: {extra.path} is not an embedding for this "
                             "model's text encoder (another model family?)")
        pipe.load_textual_inversion({extra.name: tensor}, token=extra.name,
                                    tokenizer=tokenizer, text_encoder=encoder)


def _encoders(pipe: Any) -> list[tuple[Any, Any, str]]:
    """(tokenizer, text encoder, key of its vectors in an SDXL embedding file)."""
    from helpers.diffusion.families import pipeline_family

    return [(getattr(pipe, te.tokenizer), getattr(pipe, te.encoder), te.embedding_key)
            for te in pipeline_family(pipe).text_encoders
            if getattr(pipe, te.encoder, None) is not None]


def _count(vectors: dict[str, Any]) -> int:
    """How many vectors (tokens) an embedding has."""
    tensor = next(iter(vectors.values()))
    return int(tensor.reshape(-1, tensor.shape[-1]).shape[0])


def embedding_vectors(path: Path) -> dict[str, Any]:
    """An embedding file's vectors: {"": tensor} (SD 1/2), or {"clip_l", "clip_g"} (SDXL).

    The web UI's `.pt` (string_to_param), `emb_params` safetensors and diffusers' one-key files.
    `ValueError` saying what is wrong, to follow the file's name, for anything else.
    """
    data = _weights(path)
    if _is_vectors(data.get("clip_l")) and _is_vectors(data.get("clip_g")):
        return {"clip_l": data["clip_l"], "clip_g": data["clip_g"]}
    params = data.get("string_to_param")
    tensor = (next(iter(params.values()), None) if isinstance(params, dict) and params
              else data.get("emb_params"))
    if tensor is None:
        tensors = [v for v in data.values() if _is_tensor(v)]
        tensor = tensors[0] if len(tensors) == 1 else None
    if not _is_vectors(tensor):
        raise ValueError("is not a textual-inversion embedding (no vectors of one in it)")
    return {"": tensor}


def _is_vectors(value: Any) -> bool:
    """A float tensor of one or more vectors."""
    return _is_tensor(value) and value.is_floating_point() and value.ndim >= 1 and \
        value.numel() > 0


def _encoder_prompts(settings: DiffusionSettings, vectors: dict[str, int]) -> EncoderPrompts:
    """The prompts with tags out of the positive ones and each multi-vector embedding's name
    spelled as its tokens ("name name_1 name_2"), as diffusers' pipelines do."""
    def spell(text: str) -> str:
        for name, count in vectors.items():
            if count > 1:
                tokens = " ".join([name, *(f"{name}_{i}" for i in range(1, count))])
                text = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", tokens, text)
        return text

    return EncoderPrompts(spell(strip_tags(settings.prompt)), spell(settings.negative_prompt),
                          spell(strip_tags(settings.prompt_schedule)), settings.prompt_mode)


def _unload(pipe: Any, loras: list[Extra], tokens: list[tuple[str, int]],
            had_adapters: bool) -> None:
    """Undo `applied`: our adapters out (all LoRA layers, if there were none before), our
    tokens out of the tokenizers and text encoders."""
    if loras:
        if had_adapters:
            pipe.delete_adapters([_ADAPTER.format(i) for i in range(len(loras))])
        else:
            pipe.unload_lora_weights()
    for name, count in tokens:
        names = [name, *(f"{name}_{i}" for i in range(1, count))]
        for tokenizer, encoder, _ in _encoders(pipe):
            if name in tokenizer.get_vocab():
                pipe.unload_textual_inversion(names, tokenizer=tokenizer, text_encoder=encoder)
