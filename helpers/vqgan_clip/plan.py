"""VQGAN+CLIP's prompts over a run: every text to encode, and the prompts of each iteration.

Used by loading (the texts CLIP encodes once) and by the loop (the prompts of an iteration);
pure prompt logic, no torch.
"""

from __future__ import annotations

from collections.abc import Callable

from helpers.prompts import (
    Prompt,
    parse_prompt_schedule,
    parse_prompts,
    parse_story,
    prompts_at,
    story_prompts,
)
from helpers.settings import VQGANClipSettings

PromptsAt = Callable[[int], list[Prompt]]


def prompt_plan(settings: VQGANClipSettings) -> tuple[list[str], PromptsAt]:
    """Every text prompt of a run, and a function giving the prompts of iteration i (1-based).

    A keyframed `prompt_schedule` (keys are iterations; in an animation they are frames and the
    weights blend from key to key), story mode ("^" between sets, switching every
    `story_every` iterations), or one set.
    """
    if settings.prompt_schedule.strip():
        schedule = parse_prompt_schedule(settings.prompt_schedule)
        texts = [p.text for key in schedule for p in schedule[key]]
        if settings.animate:
            from helpers.animation import prompts_at_frame

            every, text = settings.iterations_per_frame, settings.prompt_schedule
            return _unique(texts), lambda i: prompts_at_frame(text, (i - 1) // every)
        return _unique(texts), lambda i: prompts_at(schedule, i - 1)
    if settings.story_every:
        story = parse_story(settings.prompt)
        texts = [p.text for prompts in story for p in prompts]
        return _unique(texts), lambda i: story_prompts(story, i - 1, settings.story_every)
    prompts = parse_prompts(settings.prompt) if settings.prompt.strip() else []
    return _unique([p.text for p in prompts]), lambda i: prompts


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))
