"""VQGAN+CLIP, stage 3: the loop, a VQGAN latent optimised so that CLIP agrees with the prompts.

Katherine Crowson's method (2021; arXiv:2204.08583): each step quantises z against the codebook
(straight-through), decodes, takes cutouts, embeds them with CLIP and takes an optimiser step on
the prompt losses. `run` is a generator of `Step`s: it never prints, saves or displays, and it
keeps everything on the device: a step's image is decoded, and its losses and resume state are
copied to the CPU, only when the caller asks for them (a GPU waits for such a copy, so asking
every step is slow).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from helpers.motion import moved_frame, to_tensor
from helpers.precision import autocast_dtype
from helpers.prompts import Prompt, parse_prompts
from helpers.settings import VQGANClipSettings
from helpers.settings.base import MOTION
from helpers.vqgan_clip.checks import Inputs
from helpers.vqgan_clip.loading import Loaded
from helpers.vqgan_clip.losses import Cutouts, Target, clamp_with_grad, noise_target, prompt_loss
from helpers.vqgan_clip.plan import prompt_plan


@dataclass
class Step:
    """One finished iteration: its number (1-based), loss terms, and image and resume state
    after its update.

    `loss_terms` were measured on the image before the update (z after i - 1 updates);
    `image` is z after i updates, as the reference notebooks label the image of iteration i;
    it is decoded when first asked for, so only saved or shown steps pay for the decode.
    `image` and `state()` are those of this iteration: take them before the loop goes on.
    """

    i: int
    loss_terms: torch.Tensor  # (terms,) detached, on the run's device
    _decode: Callable[[], torch.Tensor] = field(repr=False)
    _snapshot: Callable[[], dict[str, Any]] = field(repr=False)
    _current: Callable[[], int] = field(repr=False)
    _image: torch.Tensor | None = field(default=None, repr=False)

    @property
    def losses(self) -> list[float]:
        """The loss terms as numbers (a copy from the device)."""
        return self.loss_terms.float().cpu().tolist()

    @property
    def loss(self) -> float:
        """The total loss of this iteration (a copy from the device)."""
        return float(self.loss_terms.float().sum())

    @property
    def image(self) -> torch.Tensor:
        """(1, 3, H, W) in [0, 1]: z after this iteration's update, decoded (on the device)."""
        if self._image is None:
            self._live("image")
            self._image = self._decode()
        return self._image

    def state(self) -> dict[str, Any]:
        """The resume point after this iteration, copied to the CPU."""
        self._live("state")
        return self._snapshot()

    def _live(self, what: str) -> None:
        if self._current() != self.i:
            raise RuntimeError(f"the {what} of iteration {self.i} is gone: take it before the "
                               "loop continues")


def latent_shape(settings: VQGANClipSettings, factor: int) -> tuple[int, int]:
    """(tokens high, tokens wide) for the requested size, rounded down to the VQGAN's factor."""
    return settings.height // factor, settings.width // factor


def _resized(image: Any, width: int, height: int) -> Any:
    """A PIL image in RGB, resized to (width, height) with Lanczos."""
    from PIL import Image

    return image.convert("RGB").resize((width, height), Image.LANCZOS)


def fit_area(size: tuple[int, int], out_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) with the aspect ratio of `size` and the area of the smaller of the two:
    how the VQGAN+CLIP notebooks size an image prompt before its cutouts."""
    ratio = size[0] / size[1]
    area = min(size[0] * size[1], out_size[0] * out_size[1])
    return max(1, round(math.sqrt(area * ratio))), max(1, round(math.sqrt(area / ratio)))


def noise_image(kind: str, height: int, width: int, device: torch.device) -> torch.Tensor:
    """A random start image in [0, 1]: "pixels" (random colours) or "gradient" (two colours)."""
    if kind == "pixels":
        return torch.rand(1, 3, height, width).to(device)
    ends = torch.rand(2, 3, 1, 1)
    t = torch.linspace(0, 1, width).view(1, 1, 1, width)
    horizontal = bool(torch.rand(()) < 0.5)
    if horizontal:
        t = torch.linspace(0, 1, height).view(1, 1, height, 1)
    image = ends[0] * (1 - t) + ends[1] * t
    return image.expand(1, 3, height, width).contiguous().to(device)


def initial_z(settings: VQGANClipSettings, loaded: Loaded, init: Any = None) -> torch.Tensor:
    """z from an init image (PIL) or a noise image, as the encoder's quantised codes (what the
    reference notebooks start from), or random codebook tokens."""
    vqgan, device = loaded.vqgan, loaded.device
    toks_y, toks_x = latent_shape(settings, vqgan.factor)
    height, width = toks_y * vqgan.factor, toks_x * vqgan.factor
    if init is not None:
        image = to_tensor(_resized(init, width, height), device)
    elif settings.init_noise:
        image = noise_image(settings.init_noise, height, width, device)
    else:
        tokens = torch.randint(vqgan.n_embed, (toks_y * toks_x,)).to(device)
        z = F.embedding(tokens, vqgan.codebook).T.reshape(1, vqgan.e_dim, toks_y, toks_x)
        return z.float()
    return _encode(vqgan, image)


@torch.no_grad()
def _encode(vqgan: Any, image: torch.Tensor) -> torch.Tensor:
    """An image in [0, 1] -> the encoder's quantised codes, as float z."""
    return vqgan.encode_quantized(image * 2 - 1).float()


@torch.no_grad()
def image_targets(clip: Any, cutouts: Cutouts, images: list[tuple[Any, Prompt]],
                  size: tuple[int, int]) -> list[Target]:
    """One target per image prompt: its cutouts, embedded (several rows per target). The
    image keeps its aspect ratio, scaled down to the output's area (`size` is (H, W))."""
    targets = []
    for image, p in images:
        width, height = fit_area(image.size, (size[1], size[0]))
        tensor = to_tensor(_resized(image, width, height), clip.device)
        targets.append(Target(clip.encode_image(cutouts(tensor)), p.weight, p.stop))
    return targets


def noise_targets(clip: Any, prompts: list[Prompt]) -> list[Target]:
    """Noise prompts: "seed:weight" pieces -> seeded random directions in this CLIP's space."""
    dim = clip.model.config.projection_dim
    return [_move(noise_target(int(p.text), dim, p.weight, p.stop), clip.device) for p in prompts]


def _move(target: Target, device: torch.device) -> Target:
    return Target(target.embeds.to(device), target.weight, target.stop)


def _optimizer(settings: VQGANClipSettings, z: torch.Tensor) -> torch.optim.Optimizer:
    return getattr(torch.optim, settings.optimizer)([z], lr=settings.lr)


@dataclass
class Latent:
    """What the loop optimises: z and the optimiser that holds its moments."""

    z: torch.Tensor
    opt: torch.optim.Optimizer

    def snapshot(self, i: int) -> dict[str, Any]:
        """The resume point after iteration i, copied to the CPU."""
        state = {
            "i": i,
            "z": self.z.detach().cpu().clone(),
            "optimizer": _cpu(self.opt.state_dict()),
            "rng": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def restore(self, state: dict[str, Any]) -> int:
        """Put a resume point back; return its iteration."""
        try:
            with torch.no_grad():
                self.z.copy_(state["z"].to(self.z.device))
            self.opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise ValueError(f"resume: the resume point does not fit this run ({e})") from None
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return int(state["i"])


def _cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cpu(v) for v in value]
    return value


def run(settings: VQGANClipSettings, loaded: Loaded, inputs: Inputs | None = None,
        resume: dict[str, Any] | None = None) -> Iterator[Step]:
    """Optimise a VQGAN latent towards the prompts; yield a `Step` per iteration.

    In a zoom animation, each frame after the first starts from the last frame's image moved
    by the motion schedules (what the motion exposed: the edge pixels stretched, or with
    motion_border "outpaint" the colours around it) and encoded again, with a fresh optimiser.
    """
    inputs = inputs or Inputs()
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    vqgan, device = loaded.vqgan, loaded.device
    z = initial_z(settings, loaded, inputs.init).requires_grad_(True)
    z_orig = z.detach().clone()
    latent = Latent(z, _optimizer(settings, z))
    losses_of = loss_fn(settings, loaded, inputs)  # image targets draw cutouts: before restore
    start = latent.restore(resume) if resume else 0
    next_frame = _frame_start(settings, loaded)
    z_min, z_max = _codebook_range(vqgan)
    dtype = autocast_dtype(settings.precision, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    live = [start]  # the iteration whose state z, the optimiser and the RNG hold right now
    for i in range(start + 1, settings.iterations + 1):
        live[0] = 0  # mid-iteration: no step's state is valid until this one is done
        if next_frame is not None and i > 1 and (i - 1) % settings.iterations_per_frame == 0:
            latent = next_frame(latent, (i - 1) // settings.iterations_per_frame)
        z, opt = latent.z, latent.opt
        opt.zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            image = synth(vqgan, z)
            losses = losses_of(image, i)
            if settings.init_weight:
                losses.append(F.mse_loss(z, z_orig) * (settings.init_weight / 2))
        scaler.scale(sum(losses)).backward()
        scaler.step(opt)
        scaler.update()
        with torch.no_grad():
            z.copy_(z.maximum(z_min).minimum(z_max))
        live[0] = i
        terms = torch.stack([v.detach().float() for v in losses])
        yield Step(i, terms, lambda z=z: decoded(vqgan, z),
                   lambda i=i, latent=latent: latent.snapshot(i), lambda: live[0])


def synth(vqgan: Any, z: torch.Tensor) -> torch.Tensor:
    """The image of z in [0, 1]: quantised (straight-through), decoded, clamped with gradient."""
    return clamp_with_grad(vqgan.decode(vqgan.quantize(z)).add(1).div(2))


@torch.no_grad()
def decoded(vqgan: Any, z: torch.Tensor) -> torch.Tensor:
    """The image of z in [0, 1] (float, no gradient): a saved frame, a zoom frame's start."""
    return synth(vqgan, z).float()


def _codebook_range(vqgan: Any) -> tuple[torch.Tensor, torch.Tensor]:
    book = vqgan.codebook
    return (book.min(0).values.view(1, -1, 1, 1).float(),
            book.max(0).values.view(1, -1, 1, 1).float())


def _frame_start(settings: VQGANClipSettings, loaded: Loaded):
    """In a zoom animation, a function (latent, frame) -> the latent frame starts from."""
    if not settings.animate:
        return None
    from helpers.animation import schedule_values

    motion = [schedule_values(getattr(settings, name), settings.frames, name) for name in MOTION]
    vqgan = loaded.vqgan

    @torch.no_grad()
    def next_frame(latent: Latent, frame: int) -> Latent:
        moved, _exposed = moved_frame(decoded(vqgan, latent.z),
                                      tuple(values[frame] for values in motion),
                                      settings.motion_border)
        z = _encode(vqgan, moved).requires_grad_(True)
        return Latent(z, _optimizer(settings, z))

    return next_frame


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def loss_fn(settings: VQGANClipSettings, loaded: Loaded, inputs: Inputs):
    """A function (image, i) -> the prompt loss terms of iteration i, for every CLIP model."""
    texts, prompts_for = prompt_plan(settings)
    noise = parse_prompts(settings.noise_prompts) if settings.noise_prompts.strip() else []
    vqgan = loaded.vqgan
    size = tuple(n * vqgan.factor for n in latent_shape(settings, vqgan.factor))
    per_clip = []
    for clip in loaded.clips:
        cutouts = Cutouts(clip.input_size, settings.cutn, settings.cut_pow, settings.augments,
                          settings.cut_method, settings.noise_fac)
        fixed = image_targets(clip, cutouts, inputs.image_prompts, size)
        fixed += noise_targets(clip, noise)
        embeds = dict(zip(texts, clip.encode_text(texts), strict=True)) if texts else {}
        per_clip.append((clip, cutouts, fixed, embeds))

    def losses(image: torch.Tensor, i: int) -> list[torch.Tensor]:
        prompts = prompts_for(i)
        terms = []
        for clip, cutouts, fixed, embeds in per_clip:
            image_embeds = clip.encode_image(cutouts(image))
            targets = [Target(embeds[p.text][None], p.weight, p.stop) for p in prompts]
            terms += [clip.weight * prompt_loss(image_embeds, t) for t in targets + fixed]
        return terms

    return losses


def to_pil(image: torch.Tensor) -> Any:
    """(1, 3, H, W) in [0, 1] -> a PIL image, truncated to 8 bits (x * 255, the integer part)
    as the reference notebooks save their frames (torchvision's to_pil_image of a float image).
    """
    from PIL import Image

    array = image[0].detach().float().cpu().clamp(0, 1).mul(255).byte()
    return Image.fromarray(array.permute(1, 2, 0).numpy())


def frame_due(settings: VQGANClipSettings, i: int) -> bool:
    """Whether iteration i is saved as a frame: every `save_every` and the last one."""
    return i % settings.save_every == 0 or i == settings.iterations


__all__ = ["Step", "decoded", "fit_area", "frame_due", "initial_z", "loss_fn", "noise_image",
           "run", "synth", "to_pil"]
