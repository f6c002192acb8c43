"""VQGAN+CLIP loop overhead: our loop vs. the reference notebooks' plain loop, same work.

One run, the same loaded models, settings and seed for both arms, taking turns (fastest of
--runs kept, seconds per iteration after --warmup iterations of each run):
  ours:  `helpers.vqgan_clip.run` (prompt schedule, cutouts and losses, autocast and grad scaler,
         the optimiser, z clamped to the codebook's range, a `Step` per iteration);
  plain: the loop the notebooks write, on the same start latent and loss terms: zero_grad,
         decode, loss, backward, Adam step, clamp.
The final losses of both are printed (the same work gives the same loss on the CPU), then the
last line: `ours / plain loop: 0.123 s/it vs 0.120 s/it: overhead: 1.02x`.

Defaults: the tiny random-weight test models on the CPU (built into the cache on first use, no
network), 128x128, cutn 8, 12 iterations, 3 runs. `--full-size` builds the f16 16384 VQGAN and
CLIP ViT-B/32 shapes with random weights (the same compute as the real weights). On a GPU,
`--precisions` first compares fp32, mixed precision (bf16 autocast) and the reference notebooks'
precision (VQGAN fp32, CLIP fp16 weights) by speed and loss curve, then finds the largest square
size that fits in 16 GB (--skip-largest to leave that out).

    python benchmarks/vqgan_clip.py                    # tiny models, CPU
    python benchmarks/vqgan_clip.py --full-size --device cuda --size 512 --cutn 32 \\
        --iterations 100 --precision bf16 --precisions
    python benchmarks/vqgan_clip.py --smoke            # the least work, same lines (seconds)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from helpers.precision import autocast_dtype
from helpers.settings import VQGANClipSettings
from helpers.vqgan_clip import Inputs, Loaded, check_inputs, load_models, run
from helpers.vqgan_clip.loop import initial_z, loss_fn, synth

GB = 1024**3
PROMPT = "a lighthouse in a storm:1 | oil painting:0.5"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-size", action="store_true",
                        help="VQGAN f16 16384 and CLIP ViT-B/32 shapes, random weights")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto, ... (default cpu)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"),
                        help="arithmetic of both arms (default fp32)")
    parser.add_argument("--size", type=int, default=128, help="square size in pixels")
    parser.add_argument("--cutn", type=int, default=8, help="cutouts per iteration")
    parser.add_argument("--iterations", type=int, default=12, help="iterations per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations of each run")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per arm, fastest kept")
    parser.add_argument("--precisions", action="store_true",
                        help="GPU: compare fp32, bf16 and the notebooks' precision first")
    parser.add_argument("--skip-largest", action="store_true",
                        help="with --precisions: leave out the largest size within 16 GB")
    parser.add_argument("--smoke", action="store_true",
                        help="the least work through the same code: 32 px, cutn 1, 2 iterations "
                             "(1 timed), 1 run")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.cutn, args.iterations, args.warmup, args.runs = 32, 1, 2, 1, 1
    if args.iterations <= args.warmup:
        parser.error("--iterations must be more than --warmup")
    return args


def settings_for(args: argparse.Namespace, out: str, **changes) -> VQGANClipSettings:
    values = {"prompt": PROMPT, "width": args.size, "height": args.size, "cutn": args.cutn,
              "iterations": args.iterations, "seed": 0, "precision": args.precision,
              "device": args.device, "vqgan": "test-tiny-vqgan", "clip": "test-tiny-clip",
              "out": out, **changes}
    return VQGANClipSettings(**values)


def main(argv: list[str] | None = None) -> None:
    from helpers.reporting import no_log

    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        checked = check_inputs(settings_for(args, scratch), log=no_log)
        settings = checked.settings
        models = full_size_models(checked.device) if args.full_size \
            else load_models(checked, log=no_log, progress=False)
        what = "full-size shapes, random weights" if args.full_size else "tiny test models"
        print(f"{what}, {checked.device}, {settings.width}x{settings.height}, cutn "
              f"{settings.cutn}, {settings.precision}, {settings.iterations} iterations "
              f"({args.warmup} untimed); fastest of {args.runs}")
        if args.precisions:
            compare_precisions(settings, models, args.skip_largest)
        overhead(settings, models, args.runs, args.warmup)


def overhead(settings: VQGANClipSettings, models: Loaded, runs: int, warmup: int) -> None:
    """Time both arms, taking turns; print their final losses and the overhead line."""
    arms = {"ours": lambda: timed(ours_loop(settings, models), models.device, warmup),
            "plain": lambda: timed(plain_loop(settings, models), models.device, warmup)}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in arms}
    for _ in range(runs):
        for name, arm in arms.items():
            results[name].append(arm())
    (ours, ours_loss), (plain, plain_loss) = (min(results[name]) for name in arms)
    print(f"final loss: ours {ours_loss:.4f}, plain loop {plain_loss:.4f}")
    print(f"ours / plain loop: {ours:.3f} s/it vs {plain:.3f} s/it: overhead: "
          f"{ours / plain:.2f}x")


def ours_loop(settings: VQGANClipSettings, models: Loaded) -> Iterator[Callable[[], float]]:
    """Our loop; yields each iteration's loss (read only at the end, so nothing syncs)."""
    for step in run(settings, models):
        yield lambda step=step: step.loss


def plain_loop(settings: VQGANClipSettings, models: Loaded) -> Iterator[Callable[[], float]]:
    """The notebooks' loop on the same start latent, loss terms and optimiser settings."""
    torch.manual_seed(settings.seed)
    vqgan = models.vqgan
    z = initial_z(settings, models).requires_grad_(True)
    optimizer = getattr(torch.optim, settings.optimizer)([z], lr=settings.lr)
    losses_of = loss_fn(settings, models, Inputs())
    book = vqgan.codebook
    z_min = book.min(0).values.view(1, -1, 1, 1).float()
    z_max = book.max(0).values.view(1, -1, 1, 1).float()
    dtype = autocast_dtype(settings.precision, models.device)
    for i in range(1, settings.iterations + 1):
        optimizer.zero_grad()
        with torch.autocast(models.device.type, dtype=dtype or torch.bfloat16,
                            enabled=dtype is not None):
            loss = sum(losses_of(synth(vqgan, z), i))
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            z.copy_(z.maximum(z_min).minimum(z_max))
        yield lambda loss=loss: float(loss.detach())


def sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def timed(loop: Iterator[Callable[[], float]], device: torch.device,
          warmup: int) -> tuple[float, float]:
    """(seconds per iteration after `warmup` iterations, the last iteration's loss)."""
    start, count, last = 0.0, 0, None
    for loss in loop:
        count, last = count + 1, loss
        if count == warmup:
            start = sync(device)
    per_it = (sync(device) - start) / (count - warmup)
    return per_it, last()


# --- full-size shapes and the GPU precision comparison ---------------------------------------


def full_size_models(device: torch.device) -> Loaded:
    """Random-weight VQGAN f16 16384 and CLIP ViT-B/32, in the real shapes."""
    from diffusers import VQModel
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    from helpers.testing import tiny_clip
    from helpers.vqgan_clip.clip import CLIP_MEAN, CLIP_STD, Clip
    from helpers.vqgan_clip.vqgan import VQGAN, taming_config, vqmodel_config

    torch.manual_seed(0)
    params = taming_config(ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2,
                           attn_resolutions=[16], z_channels=256, embed_dim=256,
                           n_embed=16384)["model"]["params"]
    vq = VQModel(**vqmodel_config(params["ddconfig"], params["embed_dim"], params["n_embed"]))
    vqgan = VQGAN(vq).to(device).eval().requires_grad_(False)
    clip_model = CLIPModel(CLIPConfig()).to(device).eval().requires_grad_(False)  # ViT-B/32
    with tempfile.TemporaryDirectory() as folder:  # any tokenizer: ids index the embedding only
        tokenizer = CLIPTokenizer.from_pretrained(tiny_clip(Path(folder)))
    shape = (1, 3, 1, 1)
    clip = Clip("ViT-B/32 (random)", clip_model, tokenizer, 224,
                torch.tensor(CLIP_MEAN, device=device).view(shape),
                torch.tensor(CLIP_STD, device=device).view(shape))
    return Loaded(vqgan, [clip], device)


def reference_precision(models: Loaded) -> Loaded:
    """The notebooks' arithmetic: the VQGAN in fp32, CLIP with fp16 weights (as `clip.load`
    gives it on a GPU), no autocast; run it with precision fp32."""
    clips = [dataclasses.replace(c, model=copy.deepcopy(c.model).half()) for c in models.clips]
    return Loaded(models.vqgan, clips, models.device)


def precision_run(settings: VQGANClipSettings, models: Loaded, warmup: int = 2):
    """(seconds per iteration after warm-up, peak memory in bytes, loss per iteration)."""
    cuda = models.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    losses = []

    def loop() -> Iterator[Callable[[], float]]:
        for step in run(settings, models):
            losses.append(step.loss)
            yield lambda: losses[-1]

    per_it, _ = timed(loop(), models.device, warmup)
    peak = (torch.cuda.max_memory_allocated() if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return per_it, peak, losses


def compare_precisions(settings: VQGANClipSettings, models: Loaded, skip_largest: bool) -> None:
    """fp32 vs. bf16 autocast vs. the notebooks' precision: speed, memory, loss curves."""
    if models.device.type != "cuda":
        raise SystemExit("error: --precisions needs a CUDA device (--device cuda)")
    n = settings.iterations
    mixed_name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    runs = {"fp32": precision_run(settings.replace(precision="fp32"), models),
            mixed_name: precision_run(settings.replace(precision=mixed_name), models),
            "reference": precision_run(settings.replace(precision="fp32"),
                                       reference_precision(models))}
    print(f"{torch.cuda.get_device_name()}: reference = VQGAN fp32, CLIP fp16 weights")
    for label, (per_it, peak, _) in runs.items():
        print(f"  {label}: {per_it * 1000:.1f} ms/it, peak {peak / GB:.2f} GB")
    fp32, mixed, reference = (runs[k][0] for k in ("fp32", mixed_name, "reference"))
    print(f"  speed-up {mixed_name} vs fp32: {fp32 / mixed:.2f}x (target >= 2), vs the "
          f"reference: {reference / mixed:.2f}x")
    tail = min(10, n)
    last = {label: sum(losses[-tail:]) / tail for label, (_, _, losses) in runs.items()}
    for label in ("fp32", mixed_name):
        change = (last[label] - last["reference"]) / last["reference"] * 100
        print(f"  mean loss of the last {tail} iterations, {label} vs the reference: "
              f"{change:+.2f}% (target within 2%)")
    for i in range(9, n, 10):
        print(f"    {i + 1:4d}: " + " / ".join(f"{runs[k][2][i]:.4f}" for k in runs))
    if not skip_largest:
        for precision in ("fp32", mixed_name):
            for ckpt in (False, True):
                size = largest_square(settings.replace(precision=precision), models, ckpt)
                print(f"  largest square within 16 GB, {precision}, decoder checkpointing "
                      f"{'on' if ckpt else 'off'}: {size} px (target >= 1024)")


def largest_square(settings: VQGANClipSettings, models: Loaded, checkpointing: bool,
                   budget: int = 16 * GB) -> int:
    """The largest multiple-of-64 square size whose peak memory stays within `budget`."""
    models.vqgan.checkpointing = checkpointing
    best, size = 0, 512
    while size <= 2048:
        try:
            trial = settings.replace(width=size, height=size, iterations=3)
            _, peak, _ = precision_run(trial, models, warmup=1)
        except torch.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
        if peak > budget:
            break
        best, size = size, size + 64
    models.vqgan.checkpointing = False
    return best


if __name__ == "__main__":
    main()
