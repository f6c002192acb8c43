"""Diffusion engine overhead: our engine vs. a plain diffusers pipeline on the same model.

For each web-UI sampler measured ("DPM++ 2M" and "Euler a", run by our k-diffusion-style
samplers in `helpers.diffusion.sampling`), one run times two arms on the same loaded components,
size, steps, CFG and seed, taking turns so that drift hits both alike (fastest of --runs kept):
  ours:  the engine as `generate` runs it, less the run folder: the model checked and loaded
         once (`check_inputs`, `load_models`, `memory_options`), then per image `pipeline_for`
         and `loop.run` (prompt planning, chunked encoding, our sigmas and sampler, VAE decode);
  plain: the model's own diffusers pipeline called with the prompt text, with diffusers'
         equivalent scheduler (DPMSolverMultistepScheduler with Karras sigmas, which is what
         "DPM++ 2M" means in the web UI; EulerAncestralDiscreteScheduler for "Euler a").
Each sampler ends in a line `DPM++ 2M: ours 1.23 s, plain diffusers 1.20 s
(DPMSolverMultistepScheduler): overhead: 1.02x` (ours / plain; target <= 1.03 on a GPU).
Before them, composable prompts of 2 and 4 pieces vs. one piece (one batched UNet call per step:
on a GPU well under linear, i.e. 2 pieces < 1.5x, 4 pieces < 2.5x).

Defaults: the tiny random-weight test model on the CPU (built into the cache on first use, no
network), 128x128, 10 steps, one warm-up and 3 timed runs. A real model, a GPU and real sizes
when asked; on a machine without the network `--model sd15-shaped` builds SD 1.5's shapes with
random weights (the same compute as the real weights):

    python benchmarks/diffusion.py                     # tiny model, CPU
    python benchmarks/diffusion.py --model sd-1.5 --device cuda --size 512 --steps 25
    python benchmarks/diffusion.py --model sd15-shaped --device cuda --size 512 --steps 25
    python benchmarks/diffusion.py --smoke             # the least work, same lines (seconds)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TINY = "test-tiny-sd"
SD15_SHAPED = "sd15-shaped"  # --model value: SD 1.5's shapes with random weights, built here
PROMPT = "a photograph of a lighthouse on a cliff at sunset"
NEGATIVE = "blurry"
PIECES = ("a lighthouse on a cliff", "a stormy sea", "sunset clouds", "oil painting")
# Our sampler -> diffusers' scheduler for the same method and schedule ("Automatic" schedules:
# Karras for DPM++ 2M, the model's uniform one for Euler a).
REFERENCE = {"DPM++ 2M": ("DPMSolverMultistepScheduler",
                          {"algorithm_type": "dpmsolver++", "solver_order": 2,
                           "use_karras_sigmas": True}),
             "Euler a": ("EulerAncestralDiscreteScheduler", {})}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=TINY, help=f"catalogue name, Hub id or folder; "
                        f"{SD15_SHAPED!r}: SD 1.5's shapes with random weights (default {TINY})")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto, ... (default cpu)")
    parser.add_argument("--precision", default="auto", help="auto (fp16 on a GPU), fp32, ...")
    parser.add_argument("--size", type=int, default=128, help="square size in pixels")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per arm, fastest kept")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per arm first")
    parser.add_argument("--smoke", action="store_true",
                        help="the least work through the same code: 32 px, 2 steps, 1 run, no "
                             "warm-up (on the tiny model unless --model says otherwise)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.steps, args.runs, args.warmup = 32, 2, 1, 0
    return args


def main(argv: list[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if model == SD15_SHAPED:
            model = str(sd15_shaped_folder(Path(scratch) / SD15_SHAPED))
        settings = base_settings(args, model, scratch)
        measure(settings, args.runs, args.warmup, label=args.model)


def base_settings(args: argparse.Namespace, model: str, out: str):
    from helpers.settings import DiffusionSettings

    return DiffusionSettings(prompt=PROMPT, negative_prompt=NEGATIVE, model=model,
                             width=args.size, height=args.size, steps=args.steps, seed=0,
                             cfg_scale=7.0, device=args.device, precision=args.precision,
                             out=out)


def measure(settings, runs: int, warmup: int, label: str) -> None:
    """Load once, time every arm, print the ratio lines."""
    from helpers.diffusion import check_inputs, load_models
    from helpers.diffusion.loading import memory_options
    from helpers.reporting import no_log

    checked = check_inputs(settings, log=no_log)
    loaded = load_models(checked, log=no_log, progress=False)
    settings = checked.settings
    device = checked.device
    print(f"model {label}, {device}, {loaded.pipe.dtype}, {settings.width}x{settings.height}, "
          f"{settings.steps} steps, CFG {settings.cfg_scale:g}; fastest of {runs}")
    with memory_options(loaded.pipe, checked.memory, device):
        arms: dict[Any, Callable[[], float]] = {}
        for sampler in REFERENCE:
            these = settings.replace(sampler=sampler)
            arms[sampler, "ours"] = lambda s=these: time_ours(loaded, s, device)
            plain = plain_pipeline(loaded, sampler)
            arms[sampler, "plain"] = lambda s=these, p=plain: time_plain(p, s, device)
        one = settings.replace(sampler=next(iter(REFERENCE)))
        for count in (2, 4):
            composed = one.replace(prompt=" | ".join(PIECES[:count]))
            arms[count] = lambda s=composed: time_ours(loaded, s, device)
        best = fastest(arms, runs, warmup)
    report(best)


def plain_pipeline(loaded, sampler: str):
    """The model's own pipeline class on the loaded components, with diffusers' scheduler for
    `sampler` built on the model's scheduler config."""
    import logging

    import diffusers

    from helpers.precision import dtype_kwargs
    from helpers.reporting import logger_level

    name, options = REFERENCE[sampler]
    scheduler = getattr(diffusers, name).from_config(loaded.scheduler_config, **options)
    # the components keep their dtype: hush the warning diffusers logs for the no-op cast
    with logger_level("diffusers.models.modeling_utils", logging.ERROR):
        pipe = type(loaded.pipe).from_pipe(loaded.pipe, scheduler=scheduler,
                                           **dtype_kwargs("diffusers", loaded.pipe.dtype))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sync(device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def time_ours(loaded, settings, device) -> float:
    """Seconds for one image the way `generate` makes it (a run's pipeline, then the loop)."""
    from helpers.diffusion import run
    from helpers.diffusion.loading import pipeline_for

    start = sync(device)
    pipe = pipeline_for(loaded, settings.sampler)
    images = list(run(settings, loaded, pipe=pipe))
    assert len(images) == 1
    return sync(device) - start


def time_plain(pipe, settings, device) -> float:
    """Seconds for one image from a plain diffusers call."""
    import torch

    start = sync(device)
    pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=settings.steps,
         guidance_scale=settings.cfg_scale, height=settings.height, width=settings.width,
         generator=torch.Generator("cpu").manual_seed(settings.seed))
    return sync(device) - start


def fastest(arms: dict[Any, Callable[[], float]], runs: int, warmup: int) -> dict[Any, float]:
    """Each arm's fastest run after `warmup` untimed ones; arms take turns, so drift hits all
    alike."""
    for _ in range(warmup):
        for arm in arms.values():
            arm()
    times: dict[Any, list[float]] = {name: [] for name in arms}
    for _ in range(runs):
        for name, arm in arms.items():
            times[name].append(arm())
    return {name: min(values) for name, values in times.items()}


def report(best: dict[Any, float]) -> None:
    """Composable pieces first, then one overhead line per sampler (the benchmark's last lines)."""
    one = best[next(iter(REFERENCE)), "ours"]
    for count in (2, 4):
        print(f"composable, {count} pieces: {best[count]:.3f} s -> {best[count] / one:.2f}x one "
              f"piece (batch {1 + count} vs 2 per UNet call; linear would be "
              f"{(1 + count) / 2:.1f}x)")
    for sampler, (scheduler, _) in REFERENCE.items():
        ours, plain = best[sampler, "ours"], best[sampler, "plain"]
        print(f"{sampler}: ours {ours:.3f} s, plain diffusers {plain:.3f} s ({scheduler}): "
              f"overhead: {ours / plain:.2f}x")


def sd15_shaped_folder(folder: Path) -> Path:
    """A diffusers folder with SD 1.5's UNet, VAE and text-encoder shapes, random weights."""
    import torch
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
    # any tokenizer: its ids only index the embeddings
    tokenizer = CLIPTokenizer.from_pretrained(tiny_sd(folder.parent / "tiny") / "tokenizer")
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
    pipe.to(torch.float16).save_pretrained(folder)  # half the bytes to write; loaded as asked
    return folder


if __name__ == "__main__":
    main()
