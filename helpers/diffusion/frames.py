"""A diffusion run's images and frames, read from its settings alone (no model): each image's
or frame's seed, a walk's keyframes, the prompt of a frame, how many frames an animation makes.

The check stage, the loop, the animations, the runner and the infotext all read these, so
they live below all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from helpers.settings import MAX_SEED, DiffusionSettings, random_seed


def frame_seed(settings: DiffusionSettings, number: int) -> int:
    """The seed of image, frame or keyframe `number` (0-based) by seed mode: iter (wraps at
    2**32), fixed, or random (the base seed first, then fresh ones)."""
    base = settings.with_seed().seed
    if settings.seed_mode == "fixed":
        return base
    if settings.seed_mode == "random":
        return base if number == 0 else random_seed()
    return (base + number) % (MAX_SEED + 1)


def image_seeds(settings: DiffusionSettings) -> list[int]:
    """The seed of every image of the run, by seed mode (`frame_seed`)."""
    settings = settings.with_seed()  # one base seed for all of them
    return [frame_seed(settings, i) for i in range(settings.batch_count * settings.batch_size)]


@dataclass(frozen=True)
class Keyframe:
    """A walk's keyframe: its frame number, prompt and seed."""

    frame: int
    prompt: str
    seed: int


def prompt_at(settings: DiffusionSettings, frame: int, texts: Any = None) -> str:
    """The prompt of a frame: the schedule's weights at that frame, or the prompt (`texts`:
    the prompts the encoders get, `EncoderPrompts`; else the settings' own)."""
    texts = texts or settings
    if not texts.prompt_schedule.strip():
        return texts.prompt
    from helpers.animation import prompts_at_frame
    from helpers.prompts import format_prompts

    return format_prompts(prompts_at_frame(texts.prompt_schedule, frame))


def walk_keyframes(settings: DiffusionSettings, texts: Any = None) -> list[Keyframe]:
    """The keyframes of a walk; the last one is at the last frame (added if the schedule ends
    earlier, with the last prompt and the next seed). `texts` as in `prompt_at`."""
    from helpers.prompts import format_prompts, parse_prompt_schedule

    texts = texts or settings
    if texts.prompt_schedule.strip():
        schedule = parse_prompt_schedule(texts.prompt_schedule)
        keys = [(frame, format_prompts(prompts)) for frame, prompts in sorted(schedule.items())]
    else:
        keys = [(0, texts.prompt)]
    if keys[0][0] != 0:
        raise ValueError(f"prompt_schedule: a walk starts at a keyframe 0 (the first key is "
                         f"{keys[0][0]})")
    last = settings.frames - 1 if settings.frames else keys[-1][0]
    if last < keys[-1][0]:
        raise ValueError(f"frames: {settings.frames} frames end before the last keyframe "
                         f"({keys[-1][0]})")
    if last > keys[-1][0]:
        keys.append((last, keys[-1][1]))
    if len(keys) < 2:
        raise ValueError("frames: a walk needs two keyframes, or --frames to walk from the "
                         "first seed to the next")
    return [Keyframe(frame, prompt, frame_seed(settings, k))
            for k, (frame, prompt) in enumerate(keys)]


def frame_count(settings: DiffusionSettings) -> int | None:
    """How many frames the animation makes (None: as many as the input video gives)."""
    if settings.animate == "walk":
        return walk_keyframes(settings)[-1].frame + 1
    if settings.animate == "video" and not settings.frames:
        return None
    return settings.frames
