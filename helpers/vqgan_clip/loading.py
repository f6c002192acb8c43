"""VQGAN+CLIP, stage 2: the models of a checked run, downloaded if need be and loaded once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.reporting import Log
from helpers.vqgan_clip.checks import Checked


@dataclass
class Loaded:
    """The loaded models of a VQGAN+CLIP run."""

    vqgan: Any  # helpers.vqgan_clip.vqgan.VQGAN
    clips: list  # helpers.vqgan_clip.clip.Clip, each with its loss weight
    device: Any


def load_models(checked: Checked, cache: str | os.PathLike | None = None, log: Log = print,
                progress: bool = True) -> Loaded:
    """Fetch what is missing (one message listing it all when offline), then load the VQGAN
    and the CLIP models onto the checked device."""
    from helpers.download import fetch_all
    from helpers.reporting import library_bars
    from helpers.vqgan_clip.clip import load_clip_from
    from helpers.vqgan_clip.vqgan import checkpoint_in, load_vqgan

    ref = checked.vqgan
    catalogue = [m for m in (ref.model, *(c.model for c, _ in checked.clips)) if m is not None]
    fetched = dict(zip([id(m) for m in catalogue],
                       fetch_all(catalogue, cache, progress=progress, log=log), strict=True))
    ckpt = ref.ckpt or checkpoint_in(Path(fetched[id(ref.model)]))
    vqgan = load_vqgan(ckpt, device=checked.device)
    vqgan.checkpointing = checked.checkpointing
    with library_bars(progress):
        clips = [load_clip_from(_clip_folder(c, fetched, cache, progress, log), c.name, w,
                                device=checked.device)
                 for c, w in checked.clips]
    warn_long_prompts(checked.settings, clips, log)
    return Loaded(vqgan, clips, checked.device)


def warn_long_prompts(settings: Any, clips: list, log: Log) -> None:
    """A warning for each text prompt longer than a CLIP's context, with what it loses."""
    from helpers.vqgan_clip.plan import prompt_plan

    texts, _ = prompt_plan(settings)
    warned = set()
    for clip in clips:
        for number, text in enumerate(texts, 1):
            dropped = clip.cut_off(text) if number not in warned else ""
            if dropped:
                warned.add(number)
                start = text if len(text) <= 40 else text[:40].rstrip() + "..."
                log(f"warning: prompt piece {number} ({start!r}) is longer than "
                    f"{clip.tokenizer.model_max_length} tokens, CLIP's limit: its end "
                    f"{dropped!r} is dropped; shorten it or split it with \"|\"")


def _clip_folder(ref: Any, fetched: dict[int, Path], cache: str | os.PathLike | None,
                 progress: bool, log: Log) -> Path:
    """A CLIP's folder: fetched with the catalogue models above, else found or fetched now."""
    from helpers.vqgan_clip.clip import clip_folder

    if ref.model is not None:
        return Path(fetched[id(ref.model)])
    return clip_folder(ref, cache, progress, log)
