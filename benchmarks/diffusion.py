"""Diffusion engine overhead and composable-prompt cost, on SD 1.5-shaped random weights.

One run, same components, scheduler, steps and seed for every arm:
  1. ours (helpers.diffusion.loop.run: prompt planning, chunked encoding, sampler by name)
     vs. a plain diffusers StableDiffusionPipeline call -> ratio (target <= 1.03);
  2. composable prompts with 2 and 4 positive pieces vs. one piece (one batched UNet call
     per step: target on GPU well under linear, i.e. 2 pieces < 1.5x, 4 pieces < 2.5x).
CPU: 256x256, 4 steps, fp32. GPU: 512x512, 25 steps, fp16, with denoising iterations per second
next to diffusers' documented A100 figure (about 22 it/s for SD 1.5 without torch.compile).

    python benchmarks/diffusion.py [--steps N] [--size PX] [--repeats N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from helpers.diffusion.loading import Loaded
from helpers.diffusion.loop import run
from helpers.diffusion.models import ModelRef
from helpers.diffusion.samplers import make_scheduler
from helpers.settings import DiffusionSettings

A100_ITS = 22.0  # diffusers docs ("Speed up inference"): SD 1.5, fp16, SDPA, no compile
PROMPT = "a photograph of a lighthouse on a cliff at sunset"
PIECES = ("a lighthouse on a cliff", "a stormy sea", "sunset clouds", "oil painting")


def sd15_shaped_pipeline(device: torch.device, dtype: torch.dtype):
    """StableDiffusionPipeline with SD 1.5's UNet, VAE and text-encoder shapes, random weights."""
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from helpers.testing import tiny_sd

    torch.manual_seed(0)
    unet = UNet2DConditionModel(  # SD 1.5's unet/config.json values (the class defaults)
        sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                        latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512)
    with tempfile.TemporaryDirectory() as folder:  # any tokenizer: ids only index embeddings
        tokenizer = CLIPTokenizer.from_pretrained(tiny_sd(Path(folder)) / "tokenizer")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=768,
                                        intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77,
                                        bos_token_id=tokenizer.bos_token_id,
                                        eos_token_id=tokenizer.eos_token_id,
                                        pad_token_id=tokenizer.pad_token_id))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device) if dtype == torch.float32 else pipe.to(device, dtype)


class Clock:
    """Wall time of a call, and of its denoising loop from the step callback's timestamps."""

    def __init__(self, device: torch.device):
        self.device, self.stamps = device, []

    def sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def step(self, *args) -> dict:
        self.stamps.append(self.sync())
        return {}

    def loop_its(self) -> float:
        """Denoising iterations per second between the first and the last step."""
        s = self.stamps
        return (len(s) - 1) / (s[-1] - s[0]) if len(s) > 1 else float("nan")


def time_plain(pipe, settings: DiffusionSettings, device: torch.device) -> tuple[float, float]:
    """A plain diffusers call: (seconds, loop it/s)."""
    clock = Clock(device)
    pipe.scheduler = make_scheduler(settings.sampler, dict(pipe.scheduler.config))
    start = clock.sync()
    with torch.no_grad():
        pipe(PROMPT, negative_prompt="blurry", num_inference_steps=settings.steps,
             guidance_scale=settings.cfg_scale, height=settings.height, width=settings.width,
             generator=torch.Generator().manual_seed(settings.seed),
             callback_on_step_end=lambda p, i, t, kw: clock.step(),
             callback_on_step_end_tensor_inputs=["latents"])
    return clock.sync() - start, clock.loop_its()


def time_ours(loaded: Loaded, settings: DiffusionSettings,
              device: torch.device) -> tuple[float, float]:
    """Our loop on the same components: (seconds, loop it/s)."""
    clock = Clock(device)
    start = clock.sync()
    images = list(run(settings, loaded, on_step=lambda *args: clock.step()))
    assert len(images) == 1
    return clock.sync() - start, clock.loop_its()


def fastest(arms: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Each arm's fastest run (seconds, loop it/s); arms take turns, so drift hits all alike."""
    results: dict[str, list] = {name: [] for name in arms}
    for _ in range(repeats):
        for name, arm in arms.items():
            results[name].append(arm())
    return {name: min(runs, key=lambda r: r[0]) for name, runs in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, help="denoising steps (CPU 4, GPU 25)")
    parser.add_argument("--size", type=int, help="square size in pixels (CPU 256, GPU 512)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per arm, fastest kept")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if cuda else torch.float32
    size, steps = args.size or (512 if cuda else 256), args.steps or (25 if cuda else 4)
    torch.set_grad_enabled(False)
    pipe = sd15_shaped_pipeline(device, dtype)
    loaded = Loaded(pipe, "sd", ModelRef("random", "folder", "sd", "sd15-shaped-random"),
                    scheduler_config=dict(pipe.scheduler.config))
    settings = DiffusionSettings(prompt=PROMPT, negative_prompt="blurry", model="random",
                                 width=size, height=size, steps=steps, seed=0,
                                 sampler="DPM++ 2M", cfg_scale=7.0)
    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"device: {name}, {dtype}, {size}x{size}, {steps} steps, SD 1.5-shaped random "
          f"weights, DPM++ 2M, CFG 7; fastest of {args.repeats}")
    time_ours(loaded, settings.replace(steps=2), device)  # warm-up
    arms = {"plain": lambda: time_plain(pipe, settings, device),
            "ours": lambda: time_ours(loaded, settings, device)}
    for count in (2, 4):
        piece_settings = settings.replace(prompt=" | ".join(PIECES[:count]))
        arms[count] = lambda s=piece_settings: time_ours(loaded, s, device)
    best = fastest(arms, args.repeats)
    plain, ours = best["plain"], best["ours"]
    print(f"plain diffusers: {plain[0]:7.2f} s  ({plain[1]:.2f} it/s denoising)")
    print(f"ours:            {ours[0]:7.2f} s  ({ours[1]:.2f} it/s denoising)")
    print(f"ours / plain: {ours[0] / plain[0]:.3f} in time, {plain[1] / ours[1]:.3f} in "
          "denoising it/s (target <= 1.03)")
    if cuda:
        print(f"denoising it/s: ours {ours[1]:.1f}, diffusers' documented A100 figure "
              f"~{A100_ITS:.0f} it/s")
    for count in (2, 4):
        composed = best[count]
        print(f"composable, {count} pieces: {composed[0]:7.2f} s  -> {composed[0] / ours[0]:.2f}x "
              f"one piece (batch {1 + count} vs 2 per UNet call; linear would be "
              f"{(1 + count) / 2:.1f}x)")

if __name__ == "__main__":
    main()
