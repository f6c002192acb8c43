"""Settings of a run: one frozen dataclass per kind of run, validated up front, saved as JSON.

A settings object is built and validated before any model loads; bad input fails here with a
`ValueError` that names the field and the bad value. No heavy imports in this module.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

MAX_SIDE = 4096  # pixels; larger images do not fit any consumer GPU with either engine
MAX_SEED = 2**32 - 1  # the seed range of the Stable Diffusion web UIs

AUGMENTS = (
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
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
INIT_NOISE = ("", "pixels", "gradient")
CUT_METHODS = ("classic", "pooled")


def random_seed() -> int:
    """A fresh seed in the web UIs' range, recorded in the run so it can be repeated."""
    import secrets

    return secrets.randbelow(MAX_SEED + 1)


def _fail(name: str, value: object, why: str) -> None:
    raise ValueError(f"{name}: {why} (got {value!r})")


def _type_ok(value: object, annotation: object) -> bool:
    """Whether a JSON-like value fits a field annotation (int counts as float, bool not as int)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        return isinstance(value, tuple) and all(_type_ok(v, item) for v in value)
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RunSettings:
    """What every run shares: prompt, size, seed and where the run folder goes."""

    kind: ClassVar[str] = "run"

    prompt: str = ""  # weighted prompts, "desert:50 | snow:25" (see helpers/prompts.py)
    width: int = 512  # pixels; each engine rounds down to its own multiple, with a message
    height: int = 512  # pixels
    seed: int | None = None  # None: a random seed, recorded in the run's settings.json
    out: str = "workspace"  # the workspace folder; runs land in <out>/runs/<time>-<slug>/

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):  # JSON has no tuples
                object.__setattr__(self, f.name, tuple(value))
                value = tuple(value)
            if not _type_ok(value, self._hints()[f.name]):
                _fail(f.name, value, f"expected {self._hints()[f.name]}")
        self.validate()

    @classmethod
    def _hints(cls) -> dict[str, Any]:
        return typing.get_type_hints(cls)

    def validate(self) -> None:
        """Raise `ValueError` naming the field and value of the first bad setting."""
        for name in ("width", "height"):
            value = getattr(self, name)
            if not 1 <= value <= MAX_SIDE:
                _fail(name, value, f"must be between 1 and {MAX_SIDE} pixels")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            _fail("seed", self.seed, f"must be between 0 and {MAX_SEED}, or empty for random")
        if not self.out.strip():
            _fail("out", self.out, "must name a folder")
        if self.prompt.strip():
            try:
                self._parse_prompt()
            except ValueError as e:
                raise ValueError(f"prompt: {e}") from None

    def _parse_prompt(self) -> object:
        from helpers.prompts import parse_prompts

        return parse_prompts(self.prompt)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-ready values, with the kind of run first."""
        return {"kind": self.kind, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        """The settings as indented JSON (infinities as strings, so the file stays strict JSON)."""
        return json.dumps(_encode(self.to_dict()), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSettings:
        """Build settings from a dict; unknown keys and a wrong kind are errors naming them."""
        data = dict(data)
        kind = data.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ValueError(f"kind: these are {kind!r} settings, not {cls.kind!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown settings for {cls.kind}: {', '.join(unknown)}")
        return cls(**_decode(data))

    @classmethod
    def from_json(cls, text: str) -> RunSettings:
        """Inverse of `to_json`."""
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> RunSettings:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _encode(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


@dataclass(frozen=True)
class VQGANClipSettings(RunSettings):
    """A VQGAN+CLIP run: a VQGAN latent optimised so CLIP agrees with the prompts."""

    kind: ClassVar[str] = "vqgan-clip"

    image_prompts: str = ""  # target images, "a.png:1 | https://x.org/b.jpg:0.5"
    noise_prompts: str = ""  # seeded random embeddings, "seed:weight | ..."
    init_image: str = ""  # path or URL of a start image; empty: random codebook tokens
    init_weight: float = 0.0  # pull towards the initial latent (MSE), 0 = none
    init_noise: str = ""  # "", "pixels" or "gradient": a noise image to start from
    iterations: int = 300  # optimisation steps
    save_every: int = 50  # save a frame every N iterations (and the last one)
    story_every: int = 0  # with "^"-separated prompt sets: switch every N iterations; 0 = off
    prompt_schedule: str = ""  # keyframes by iteration, a line each: "0: desert\n100: snow"
    vqgan: str = "vqgan_imagenet_f16_16384"  # catalogue name or path to a .ckpt
    clip: str = "openai/clip-vit-base-patch32"  # "name:weight | name:weight": several CLIPs
    cutn: int = 32  # cutouts per step
    cut_pow: float = 1.0  # cutout size exponent: higher, smaller cutouts
    cut_method: str = "classic"  # "classic" random crops, or "pooled" (whole image, pooled)
    augments: tuple[str, ...] = ("affine", "perspective", "jitter", "erasing")  # kornia augments
    optimizer: str = "Adam"  # any of OPTIMIZERS, from torch.optim
    lr: float = 0.1  # learning rate (step size)
    precision: str = "auto"  # "auto" (fastest that keeps quality), "fp32", "bf16" or "fp16"
    device: str = "auto"  # "auto" (cuda, then mps, then cpu), or a torch device string
    checkpointing: str = "auto"  # decoder recomputed in backward: "auto" (when needed), on, off

    def _parse_prompt(self) -> object:
        from helpers.prompts import parse_prompts, parse_story

        return parse_story(self.prompt) if self.story_every else parse_prompts(self.prompt)

    def validate(self) -> None:
        """Raise `ValueError` naming the field and value of the first bad setting."""
        super().validate()
        aims = (self.prompt, self.image_prompts, self.init_image, self.prompt_schedule)
        if not any(a.strip() for a in aims):
            _fail("prompt", self.prompt, "give a prompt, an image prompt or an init image")
        if self.prompt_schedule.strip():
            _check_schedule(self)
        positive = {
            "iterations": self.iterations,
            "save_every": self.save_every,
            "cutn": self.cutn,
        }
        for name, value in positive.items():
            if value < 1:
                _fail(name, value, "must be at least 1")
        if self.story_every < 0:
            _fail("story_every", self.story_every, "must be 0 (off) or positive")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            _fail("lr", self.lr, "must be a positive number")
        if not (self.cut_pow > 0 and math.isfinite(self.cut_pow)):
            _fail("cut_pow", self.cut_pow, "must be a positive number")
        if not math.isfinite(self.init_weight) or self.init_weight < 0:
            _fail("init_weight", self.init_weight, "must be zero or positive")
        _choice("init_noise", self.init_noise, INIT_NOISE)
        _choice("cut_method", self.cut_method, CUT_METHODS)
        _choice("checkpointing", self.checkpointing, ("auto", "on", "off"))
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("precision", self.precision, PRECISIONS)
        for augment in self.augments:
            _choice("augments", augment, AUGMENTS)
        for name in ("vqgan", "clip"):
            if not getattr(self, name).strip():
                _fail(name, getattr(self, name), "must name a model")


@dataclass(frozen=True)
class DiffusionSettings(RunSettings):
    """A latent-diffusion run (Stable Diffusion family through diffusers): txt2img or img2img."""

    kind: ClassVar[str] = "diffusion"
    PROMPT_MODES: ClassVar[tuple[str, ...]] = ("composable", "blend")
    SEED_MODES: ClassVar[tuple[str, ...]] = ("iter", "fixed", "random")
    PREVIEW_MODES: ClassVar[tuple[str, ...]] = ("fast", "vae")
    SWITCHES: ClassVar[tuple[str, ...]] = ("auto", "on", "off")
    MAX_CLIP_SKIP: ClassVar[int] = 12

    negative_prompt: str = ""  # the unconditional side; weighted pieces too ("blurry | text:0.5")
    model: str = "sd-1.5"  # catalogue name, Hub id, diffusers folder, or .safetensors / .ckpt file
    model_config: str = ""  # single-file models: diffusers folder or Hub id with its configs;
    #                          "" = chosen from the file's keys (SD 1.x, SD 2.x or SDXL)
    vae: str = ""  # VAE override: Hub id, diffusers folder or single file; "" = the model's own
    sampler: str = "Euler a"  # web UI sampler name ("DPM++ 2M Karras", ...; see diffusion/samplers)
    steps: int = 20  # denoising steps; img2img runs about steps * strength of them
    cfg_scale: float = 7.0  # classifier-free guidance scale; <= 1 turns guidance off (Turbo: 0)
    prompt_mode: str = "composable"  # "composable": a noise prediction per piece; "blend": one
    #                                   prediction on the weighted mean of the text embeddings
    clip_skip: int = 1  # web UI meaning: 1 = last CLIP layer, 2 = the one before (= diffusers 1)
    init_image: str = ""  # img2img: path of the start image (resized to width x height)
    strength: float = 0.75  # img2img denoising strength in (0, 1]; 1 = keep nothing of the image
    batch_count: int = 1  # batches run one after another
    batch_size: int = 1  # images per batch (generated together)
    seed_mode: str = "iter"  # "iter": seed, seed+1, ...; "fixed": one seed for all; "random"
    preview_every: int = 0  # call the preview callback every N steps; 0 = no previews
    preview_mode: str = "fast"  # "fast": linear latent-to-RGB approximation; "vae": full decode
    save_trajectory: bool = False  # save each step's image under trajectory/<image>/ for videos
    sdxl_original_size: tuple[int, ...] = ()  # SDXL only: size conditioning (W, H); () = output
    precision: str = "auto"  # "auto" (fp16 on CUDA, fp32 elsewhere), "fp32", "bf16" or "fp16"
    device: str = "auto"  # "auto" (cuda, then mps, then cpu), or a torch device string
    attention_slicing: str = "auto"  # "auto" (from free GPU memory), "on" or "off"
    vae_slicing: str = "auto"  # decode the images of a batch one at a time
    vae_tiling: str = "auto"  # decode large images in overlapping tiles
    cpu_offload: str = "auto"  # model CPU offload: each model on the GPU only while it runs

    def _parse_prompt(self) -> object:
        from helpers.diffusion.conditioning import positive_pieces

        return positive_pieces(self.prompt)

    def validate(self) -> None:
        """Raise `ValueError` naming the field and value of the first bad setting."""
        super().validate()
        from helpers.diffusion.conditioning import negative_pieces
        from helpers.diffusion.samplers import SAMPLER_NAMES

        for name in ("width", "height"):
            if getattr(self, name) < 8:
                _fail(name, getattr(self, name), "must be at least 8 pixels")
        if self.negative_prompt.strip():
            try:
                negative_pieces(self.negative_prompt)
            except ValueError as e:
                raise ValueError(f"negative_prompt: {e}") from None
        for name in ("steps", "batch_count", "batch_size"):
            if getattr(self, name) < 1:
                _fail(name, getattr(self, name), "must be at least 1")
        if not (math.isfinite(self.cfg_scale) and self.cfg_scale >= 0):
            _fail("cfg_scale", self.cfg_scale, "must be a number >= 0")
        if not (0 < self.strength <= 1):
            _fail("strength", self.strength, "must be in (0, 1]")
        if not 1 <= self.clip_skip <= self.MAX_CLIP_SKIP:
            _fail("clip_skip", self.clip_skip, f"must be between 1 and {self.MAX_CLIP_SKIP}")
        if self.preview_every < 0:
            _fail("preview_every", self.preview_every, "must be 0 (off) or positive")
        if self.sdxl_original_size and (len(self.sdxl_original_size) != 2
                                        or min(self.sdxl_original_size) < 1):
            _fail("sdxl_original_size", self.sdxl_original_size, "must be () or (width, height)")
        _choice("sampler", self.sampler, SAMPLER_NAMES)
        _choice("prompt_mode", self.prompt_mode, self.PROMPT_MODES)
        _choice("seed_mode", self.seed_mode, self.SEED_MODES)
        _choice("preview_mode", self.preview_mode, self.PREVIEW_MODES)
        _choice("precision", self.precision, PRECISIONS)
        for name in ("attention_slicing", "vae_slicing", "vae_tiling", "cpu_offload"):
            _choice(name, getattr(self, name), self.SWITCHES)
        for name in ("model", "device"):
            if not getattr(self, name).strip():
                _fail(name, getattr(self, name), "must not be empty")


def _check_schedule(settings: VQGANClipSettings) -> None:
    from helpers.prompts import parse_prompt_schedule

    if settings.story_every:
        _fail("prompt_schedule", settings.prompt_schedule, "cannot be combined with story_every")
    try:
        parse_prompt_schedule(settings.prompt_schedule)
    except ValueError as e:
        raise ValueError(f"prompt_schedule: {e}") from None


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        _fail(name, value, f"must be one of {shown}")


SETTINGS_KINDS: dict[str, type[RunSettings]] = {
    VQGANClipSettings.kind: VQGANClipSettings,
    DiffusionSettings.kind: DiffusionSettings,
}


def settings_from_json(text: str) -> RunSettings:
    """Read settings of any kind from JSON, dispatching on its "kind" key."""
    data = json.loads(text)
    kind = data.get("kind")
    if kind not in SETTINGS_KINDS:
        _fail("kind", kind, f"must be one of {', '.join(SETTINGS_KINDS)}")
    return SETTINGS_KINDS[kind].from_dict(data)


__all__ = [
    "AUGMENTS",
    "OPTIMIZERS",
    "PRECISIONS",
    "DiffusionSettings",
    "RunSettings",
    "VQGANClipSettings",
    "settings_from_json",
]
