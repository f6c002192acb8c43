"""Diffusion animations: frames made one by one, yielded like the images of `loop.run`.

- walk: between consecutive keyframes (prompt and seed), the text embeddings blend linearly
  and the start noise spherically; a keyframe's frame is exactly the single image of its prompt
  and seed. A keyframe's weighted pieces are blended into one embedding.
- 2d (Deforum's 2D mode): frame 0 is a txt2img image (or img2img of the init image); each next
  frame is the previous one moved by the motion schedules, colour-matched to frame 0, noised,
  and re-drawn by img2img with the strength schedule. With motion_border "outpaint", what the
  motion exposed starts from the colours around it and fresh latent noise (`_latent_noise`).
- video: img2img over every Nth frame of an input video, read as a stream; ControlNet units
  steer each frame, a unit whose image is `video` with the map of that input frame (Deforum's
  "hybrid" idea: the restyled clip keeps the input's shapes).
Seeds per frame (per keyframe in a walk) follow `seed_mode`: iter, fixed or random. Like
`loop.run`, this module never saves: the runner does, and a resumed 2d animation continues from
its last saved frame (`load_frame`), the frames on disk being exactly what the next frame used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Any

from helpers.diffusion.conditioning import Encoded, encode_plans
from helpers.diffusion.frames import frame_seed, prompt_at, walk_keyframes
from helpers.diffusion.guidance import Conditioning
from helpers.diffusion.loading import Loaded, pipeline_for
from helpers.diffusion.loop import Generated, OnStep, call_pipeline, conditioning_of, step_callback
from helpers.diffusion.prompt_syntax import EncoderPrompts
from helpers.settings import DiffusionSettings
from helpers.settings.base import MOTION

LoadFrame = Callable[[int], Any]  # 1-based frame index -> the saved PIL image


def run_animation(settings: DiffusionSettings, loaded: Loaded, init_image: Any = None,
                  on_step: OnStep | None = None, skip: set[int] | frozenset[int] = frozenset(),
                  load_frame: LoadFrame | None = None,
                  prompts: EncoderPrompts | None = None,
                  control: Any = None) -> Iterator[Generated]:
    """Make the animation's frames; frames (1-based) in `skip` are on disk already (`prompts`:
    what the text encoders get, else the settings' prompts as written; `control`: a video
    animation's ControlNet units, a `control.run.FrameControl`)."""
    makers = {"walk": _walk, "2d": _two_d, "video": partial(_video, control=control)}
    prompts = prompts or EncoderPrompts.written(settings)
    yield from makers[settings.animate](settings, loaded, init_image, on_step, skip, load_frame,
                                        prompts)


# --- walk ------------------------------------------------------------------------------------


def _walk(settings, loaded, _init, on_step, skip, _load, prompts) -> Iterator[Generated]:
    pipe = pipeline_for(loaded, settings.sampler)
    keys = walk_keyframes(settings, prompts)
    sides = encode_plans(pipe, [prompts.plan(k.prompt, "blend") for k in keys],
                         settings.clip_skip)
    noises = [_start_noise(pipe, settings, k.seed, sides[0][0].embeds.dtype) for k in keys]
    for frame in range(keys[-1].frame + 1):
        if frame + 1 in skip:
            continue
        k = max(n for n, key in enumerate(keys) if key.frame <= frame)
        a, b = (k, k) if k == len(keys) - 1 else (k, k + 1)
        u = 0.0 if a == b else (frame - keys[a].frame) / (keys[b].frame - keys[a].frame)
        cond = _lerp(sides[a][0], sides[b][0], u)
        latents = _slerp(noises[a], noises[b], u)
        seed = keys[a].seed
        extra = {"latents": latents, "generator": [_drawn(pipe, settings, seed, latents)]}
        images = call_pipeline(pipe, loaded.family, settings,
                               Conditioning.fixed(cond, sides[a][1]), [seed], None,
                               _callback(frame, on_step), extra)
        yield Generated(frame + 1, seed, images[0])


def _start_noise(pipe, settings: DiffusionSettings, seed: int, dtype: Any,
                 generator: Any = None) -> Any:
    """The start latents a pipeline call with this seed draws: the same CPU generator, shape
    and dtype (the pipeline moves them to its device)."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    shape = (1, pipe.unet.config.in_channels, settings.height // pipe.vae_scale_factor,
             settings.width // pipe.vae_scale_factor)
    generator = generator or torch.Generator("cpu").manual_seed(seed)
    return randn_tensor(shape, generator=[generator], device=torch.device("cpu"), dtype=dtype)


def _drawn(pipe, settings: DiffusionSettings, seed: int, latents: Any) -> Any:
    """A generator with this seed that has drawn the start latents already, as in a plain
    call: ancestral samplers then draw their step noise as a single image would."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    _start_noise(pipe, settings, seed, latents.dtype, generator)
    return generator


def _lerp(a: Encoded, b: Encoded, u: float) -> Encoded:
    if u == 0:
        return a
    pooled = None if a.pooled is None else (1 - u) * a.pooled + u * b.pooled
    return Encoded((1 - u) * a.embeds + u * b.embeds, pooled, a.weights)


def _slerp(a: Any, b: Any, u: float) -> Any:
    from helpers.motion import slerp

    return slerp(a, b, u)


def _callback(frame: int, on_step: OnStep | None):
    return step_callback(frame, on_step) if on_step else None


# --- 2d --------------------------------------------------------------------------------------


def _two_d(settings, loaded, init_image, on_step, skip, load_frame,
           prompts) -> Iterator[Generated]:
    import torch

    from helpers.animation import schedule_values
    from helpers.motion import add_noise, match_colors, moved_frame, to_pil, to_tensor

    frames = settings.frames
    motion = [schedule_values(getattr(settings, n), frames, n) for n in MOTION]
    noise = schedule_values(settings.noise_schedule, frames, "noise_schedule")
    strength = strength_at(settings)
    done = len([i for i in skip if i <= frames])  # frames are saved in order: 1..done
    first, prev = (load_frame(1), load_frame(done)) if done else (None, None)
    pipes = _Pipes(loaded, settings, prompts)
    for frame in range(done, frames):
        seed = frame_seed(settings, frame)
        start, exposed = init_image, None
        if frame > 0:
            moved, exposed = moved_frame(to_tensor(prev), tuple(v[frame] for v in motion),
                                         settings.motion_border)
            if settings.color_coherence == "lab":
                moved = match_colors(moved, to_tensor(first))
            generator = torch.Generator("cpu").manual_seed(seed)
            start = to_pil(add_noise(moved, noise[frame] / 2, generator))  # -1..1 -> 0..1
        with _latent_noise(pipes, settings, seed, exposed):
            prev = _draw(pipes, settings, frame, seed, start, strength(frame), on_step)
        first = first or prev
        yield Generated(frame + 1, seed, prev)


def _latent_noise(pipes: _Pipes, settings: DiffusionSettings, seed: int, exposed: Any):
    """While a 2d frame is drawn from a start whose motion exposed pixels (motion_border
    "outpaint"; `exposed`: (1, 1, H, W) bool, else None): fresh noise in the exposed area of
    its start latents, the web UI's masked content "latent noise" (`inpaint.start_latents`:
    the frame seed's first draw, the mask rounded at the latent size by `inpaint.latent_mask`),
    so new content is painted there while the rest is img2img'd as before."""
    if exposed is None or not bool(exposed.any()):
        return nullcontext()
    from helpers.motion import mask_image

    return _noised_encode(pipes.get(True).vae, mask_image(exposed), seed, settings.rng)


@contextmanager
def _noised_encode(vae: Any, mask: Any, seed: int, rng: str) -> Iterator[None]:
    """`vae.encode` wrapped in the block: the latent distribution it returns is the noise
    (`mask`: an L image, 255 = noise) where masked, with no spread there, so both sampler paths'
    img2img (ours takes its mean, diffusers' pipelines a sample) start from that noise."""
    from helpers.diffusion.sampling.noise import ImageNoise
    from helpers.diffusion.tools.inpaint import latent_mask, start_latents

    encode, own = vae.encode, vae.__dict__.get("encode")

    def noised(*args: Any, **kwargs: Any) -> Any:
        output = encode(*args, **kwargs)
        dist = output.latent_dist if hasattr(output, "latent_dist") else output[0]
        mean = dist.mean
        small = latent_mask(mask, (mean.shape[-1], mean.shape[-2])).to(mean.device, mean.dtype)
        noise = ImageNoise([seed], mean.shape[1:], rng, mean.device).first()
        noise = (noise / vae.config.scaling_factor).to(mean.dtype)  # unit scale -> the VAE's
        dist.mean = start_latents(mean, small, "latent noise", noise)
        dist.std = dist.std * (1 - small)
        return output

    vae.encode = noised
    try:
        yield
    finally:
        if own is None:
            del vae.encode
        else:
            vae.encode = own


def strength_at(settings: DiffusionSettings) -> Callable[[int], float]:
    """The img2img strength of a frame: the schedule's value, else `strength` (the check stage
    checked the schedule's range at every frame: `animation.check_schedule_values`)."""
    if not settings.strength_schedule.strip():
        return lambda _frame: settings.strength
    from helpers.animation import parse_schedule

    return parse_schedule(settings.strength_schedule, "strength_schedule").at


class _Pipes:
    """txt2img and img2img pipelines of a run, made when first needed, and its prompts."""

    def __init__(self, loaded: Loaded, settings: DiffusionSettings, prompts: EncoderPrompts):
        self.loaded, self.settings, self.made = loaded, settings, {}
        self.prompts = prompts

    def get(self, img2img: bool):
        if img2img not in self.made:
            self.made[img2img] = pipeline_for(self.loaded, self.settings.sampler, img2img)
        return self.made[img2img]


def _draw(pipes: _Pipes, settings: DiffusionSettings, frame: int, seed: int, image: Any,
          strength: float, on_step: OnStep | None, control: Any = None) -> Any:
    """One frame: txt2img without an image, else img2img at `strength`, prompt of the frame
    (`control`: the frame's ControlNet units, a `control.run.RunControl`)."""
    pipe = pipes.get(image is not None)
    frame_settings = settings.replace(strength=strength)
    plan = pipes.prompts.plan(prompt_at(settings, frame, pipes.prompts))
    first, hires = conditioning_of(pipe, plan, frame_settings, pipes.loaded.family,
                                   image is not None)
    return call_pipeline(pipe, pipes.loaded.family, frame_settings, first, [seed], image,
                         _callback(frame, on_step), hires=hires, control=control)[0]


# --- video input -----------------------------------------------------------------------------


def _video(settings, loaded, _init, on_step, skip, load_frame, prompts,
           control=None) -> Iterator[Generated]:
    from helpers.motion import match_colors, to_pil, to_tensor

    if settings.control.strip() and control is None:
        raise ValueError("control: a video animation's units come as a control.run."
                         "FrameControl (control.run.frame_control); none was given")
    strength = strength_at(settings)
    pipes = _Pipes(loaded, settings, prompts)
    first = load_frame(1) if 1 in skip else None
    for frame, source in enumerate(video_frames(settings)):
        if frame + 1 in skip:
            continue
        units = control.at(frame + 1, source) if control is not None else None
        if first is not None and settings.color_coherence == "lab":
            source = to_pil(match_colors(to_tensor(source), to_tensor(first)))
        seed = frame_seed(settings, frame)
        image = _draw(pipes, settings, frame, seed, source, strength(frame), on_step, units)
        first = first or image
        yield Generated(frame + 1, seed, image)


def video_frames(settings: DiffusionSettings) -> Iterator[Any]:
    """Every `video_every`-th frame of the input video as a PIL image of the run's size,
    streamed (never the whole video in memory), at most `frames` of them."""
    import imageio_ffmpeg
    from PIL import Image

    reader = imageio_ffmpeg.read_frames(settings.init_video)
    try:
        meta = next(reader)
        size = meta["size"]
        taken = 0
        for n, raw in enumerate(reader):
            if n % settings.video_every:
                continue
            image = Image.frombytes("RGB", size, raw)
            yield image.resize((settings.width, settings.height), Image.Resampling.LANCZOS)
            taken += 1
            if settings.frames and taken == settings.frames:
                return
    finally:
        reader.close()
