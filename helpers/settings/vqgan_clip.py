"""Settings of a VQGAN+CLIP run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from helpers.precision import PRECISIONS
from helpers.settings.base import (
    MAX_FRAMES,
    MOTION,
    SWITCHES,
    RunSettings,
    border_setting,
    check_motion,
    motion_setting,
)
from helpers.settings.fields import MAX_PROMPT_CHARS, fail, setting

AUGMENT_PRESETS = ("crowson2021", "nerdyrodent")  # exact pipelines (vqgan_clip/losses.py)
AUGMENTS = (
    "flip",
    "affine",
    "perspective",
    "jitter",
    "erasing",
    "sharpness",
    "noise",
    "rotation",
    "resized_crop",
    "thin_plate_spline",
)
OPTIMIZERS = ("Adam", "AdamW", "Adamax", "Adagrad", "RAdam", "RMSprop")
INIT_NOISE = ("", "pixels", "gradient")
CUT_METHODS = ("classic", "pooled")
MAX_ITERATIONS = 1_000_000


@dataclass(frozen=True)
class VQGANClipSettings(RunSettings):
    """A VQGAN+CLIP run: a VQGAN latent optimised so CLIP agrees with the prompts."""

    kind: ClassVar[str] = "vqgan-clip"

    image_prompts: str = setting("", 'target images, "a.png:1 | https://x.org/b.jpg:0.5"',
                                 metavar="TEXT", flags=("--image-prompt",), group="prompt",
                                 max_chars=MAX_PROMPT_CHARS)
    noise_prompts: str = setting("", 'seeded random targets, "seed:weight | ..."',
                                 metavar="TEXT", flags=("--noise-prompt",), advanced=True,
                                 group="prompt")
    init_image: str = setting("", "start from this image (path or URL); empty: random tokens",
                              metavar="PATH|URL", text="path", group="image")
    init_weight: float = setting(0.0, "pull towards the start image's latent (MSE); 0 = none",
                                 min=0, max=1000, metavar="X", advanced=True, group="image")
    init_noise: str = setting("", "start from a noise image instead of random tokens",
                              choices=INIT_NOISE, advanced=True, group="image")
    iterations: int = setting(300, "optimisation steps", min=1, max=MAX_ITERATIONS,
                              unit="steps", metavar="N", group="run")
    save_every: int = setting(50, "save a frame every N iterations (and the last one)", min=1,
                              max=MAX_ITERATIONS, metavar="N", group="run")
    story_every: int = setting(0, 'with "^" between prompt sets: switch every N iterations; '
                               "0 = off", min=0, max=MAX_ITERATIONS, metavar="N", advanced=True,
                               group="prompt")
    prompt_schedule: str = setting("", 'keyframes, a line each: "0: desert\\n100: snow" '
                                   "(replaces the prompt); keys are iterations, or frames with "
                                   "--animate (weights then blend from key to key)",
                                   metavar="TEXT", text="lines", advanced=True, group="prompt")
    vqgan: str = setting("vqgan_imagenet_f16_16384", "VQGAN: catalogue name or path to a .ckpt "
                         "(its .yaml beside it)", metavar="NAME|PATH", group="model")
    clip: str = setting("openai/clip-vit-base-patch32", 'CLIP models with weights, "name:1 | '
                        'name:0.5" (catalogue names, Hub ids or folders)', metavar="TEXT",
                        group="model")
    cutn: int = setting(32, "cutouts per step", min=1, max=1024, metavar="N", advanced=True,
                        group="guidance")
    cut_pow: float = setting(1.0, "cutout size exponent: higher, smaller cutouts", min=0,
                             min_open=True, max=10, metavar="X", advanced=True, group="guidance")
    cut_method: str = setting("classic", "cutouts: random squares Lanczos-resampled (classic, "
                              "Crowson's notebook) or the whole image average+max pooled "
                              "(pooled, nerdyrodent's \"latest\")", choices=CUT_METHODS,
                              advanced=True, group="guidance")
    augments: tuple[str, ...] = setting(("crowson2021",), "kornia augmentations of the cutouts: "
                                        "a preset alone, the exact pipeline of Crowson's 2021 "
                                        "notebook (crowson2021) or of nerdyrodent's VQGAN-CLIP "
                                        "(nerdyrodent), or your own list in order (\"none\" for "
                                        "none)", choices=AUGMENT_PRESETS + AUGMENTS,
                                        metavar="NAMES", flags=("--augment",), advanced=True,
                                        group="guidance")
    noise_fac: float = setting(0.1, "noise on each cutout, after the augmentations: Gaussian, of "
                               "a strength drawn from [0, X] per cutout; 0 = none", min=0, max=1,
                               metavar="X", advanced=True, group="guidance")
    optimizer: str = setting("Adam", "torch.optim optimiser", choices=OPTIMIZERS, casefold=True,
                             advanced=True, group="guidance")
    lr: float = setting(0.1, "learning rate (step size)", min=0, min_open=True, max=10,
                        metavar="X", group="guidance")
    precision: str = setting("auto", "arithmetic: auto (bf16 on a CUDA GPU that has it, else "
                             "fp32), fp32, bf16 or fp16", choices=PRECISIONS, advanced=True,
                             group="device")
    device: str = setting("auto", "auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:1, mps",
                          metavar="DEVICE", advanced=True, group="device")
    animate: str = setting("", 'animation: "zoom" saves a frame every iterations_per_frame '
                           "iterations, then zooms / turns / moves the image by the schedules "
                           "and goes on; empty = a single image", choices=("", "zoom"),
                           group="animation")
    frames: int = setting(60, "frames of an animation (with --animate)", min=1, max=MAX_FRAMES,
                          metavar="N", group="animation")
    iterations_per_frame: int = setting(10, "iterations between two frames of an animation",
                                        min=1, max=100_000, metavar="K", group="animation")
    zoom: str = motion_setting("zoom")
    angle: str = motion_setting("angle")
    translation_x: str = motion_setting("translation_x")
    translation_y: str = motion_setting("translation_y")
    motion_border: str = border_setting("zoom")
    checkpointing: str = setting("auto", "recompute the decoder in the backward pass: less "
                                 "memory, ~25% slower (auto: when the size needs it)",
                                 choices=SWITCHES, advanced=True, group="device")

    def _parse_prompt(self) -> object:
        from helpers.prompts import parse_prompts, parse_story

        return parse_story(self.prompt) if self.story_every else parse_prompts(self.prompt)

    def validate(self) -> None:
        """Cross-field rules; `ValueError` naming the field and value of the first bad one."""
        super().validate()
        aims = (self.prompt, self.image_prompts, self.init_image, self.prompt_schedule)
        if not any(a.strip() for a in aims):
            fail("prompt", self.prompt, "give a prompt, an image prompt or an init image")
        if self.prompt_schedule.strip():
            _check_schedule(self)
        if self.noise_prompts.strip():
            _check_noise_prompts(self.noise_prompts)
        presets = [a for a in self.augments if a in AUGMENT_PRESETS]
        if presets and len(self.augments) > 1:
            fail("augments", ",".join(self.augments), f"the preset {presets[0]} stands alone; "
                 "name augmentations without it for your own list")
        if self.init_image.strip() and self.init_noise:
            fail("init_noise", self.init_noise, "cannot be combined with init_image")
        for name in MOTION:
            check_motion(name, getattr(self, name))
        if self.animate and self.story_every:
            fail("story_every", self.story_every, "use prompt_schedule (keys are frames) in an "
                 "animation")
        for name in ("vqgan", "clip", "device"):
            if not getattr(self, name).strip():
                fail(name, getattr(self, name), "must not be empty")
        parse_clip_spec(self.clip)


def parse_clip_spec(spec: str) -> list[tuple[str, float]]:
    """`"openai/clip-vit-base-patch32:1 | openai/clip-vit-base-patch16:0.5"` -> [(name, weight)]."""
    from helpers.prompts import parse_prompts

    try:
        pieces = parse_prompts(spec)
    except ValueError as e:
        raise ValueError(f"clip: {e}") from None
    for p in pieces:
        if p.stop != float("-inf"):
            raise ValueError(f"clip: a model takes a weight, not a stop value ({p.text!r})")
        if not (p.weight > 0 and math.isfinite(p.weight)):
            raise ValueError(f"clip: weights must be positive (got {p.weight} for {p.text!r})")
    return [(p.text, p.weight) for p in pieces]


def _check_schedule(settings: VQGANClipSettings) -> None:
    """A prompt schedule stands alone (no story_every) and parses."""
    from helpers.animation import check_prompt_schedule

    if settings.story_every:
        fail("prompt_schedule", settings.prompt_schedule, "cannot be combined with story_every")
    check_prompt_schedule(settings.prompt_schedule)


def _check_noise_prompts(text: str) -> None:
    """Noise prompts are `seed:weight` pieces: every text must be a whole number."""
    from helpers.prompts import parse_prompts

    try:
        pieces = parse_prompts(text)
    except ValueError as e:
        raise ValueError(f"noise_prompts: {e}") from None
    for number, piece in enumerate(pieces, 1):
        if not piece.text.strip().isdigit():
            fail("noise_prompts", text, f"piece {number} {piece.text!r} is not a seed (a whole "
                 "number such as 42:0.5)")
        if not math.isfinite(piece.weight):
            fail("noise_prompts", text, f"piece {number} has no finite weight")
