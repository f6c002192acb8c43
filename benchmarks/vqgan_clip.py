"""VQGAN+CLIP loop speed and memory on full-size architectures with random weights.

The f16 16384 VQGAN and CLIP ViT-B/32 shapes cost the same compute as the real weights.
CPU: 256x256, cutn 8, fp32. GPU: 512x512, cutn 32 (the default cutouts: classic, crowson2021
augmentations, noise 0.1): fp32, mixed precision (`auto`: bf16 autocast) and the reference
notebooks' precision (VQGAN fp32, CLIP fp16 weights), compared by speed and loss curve over 100
iterations; then the largest square size that fits in 16 GB.

    python benchmarks/vqgan_clip.py [--iterations N] [--skip-largest]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import resource
import tempfile
import time
from pathlib import Path

import torch

from helpers.clip import CLIP_MEAN, CLIP_STD, Clip
from helpers.settings import VQGANClipSettings
from helpers.vqgan import VQGAN, taming_config, vqmodel_config
from helpers.vqgan_clip import Loaded, run

GB = 1024**3


def full_size_models(device: torch.device) -> Loaded:
    """Random-weight VQGAN f16 16384 and CLIP ViT-B/32, in the real shapes."""
    from diffusers import VQModel
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    from helpers.testing import tiny_clip

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


def timed_run(settings: VQGANClipSettings, models: Loaded, warmup: int = 2):
    """(seconds per iteration after warm-up, peak memory in bytes, loss per iteration)."""
    cuda = models.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    losses, start = [], None
    for step in run(settings, models):
        losses.append(step.loss)
        if step.i == warmup:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
    if cuda:
        torch.cuda.synchronize()
    per_it = (time.perf_counter() - start) / (settings.iterations - warmup)
    peak = (torch.cuda.max_memory_allocated() if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return per_it, peak, losses


def settings_for(size: int, cutn: int, iterations: int, precision: str) -> VQGANClipSettings:
    return VQGANClipSettings(prompt="a lighthouse in a storm:1 | oil painting:0.5", width=size,
                             height=size, cutn=cutn, iterations=iterations, seed=0,
                             precision=precision)


def largest_square(models: Loaded, precision: str, checkpointing: bool,
                   budget: int = 16 * GB) -> int:
    """The largest multiple-of-64 square size whose peak memory stays within `budget`."""
    models.vqgan.checkpointing = checkpointing
    best, size = 0, 512
    while size <= 2048:
        try:
            _, peak, _ = timed_run(settings_for(size, 32, 3, precision), models, warmup=1)
        except torch.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
        if peak > budget:
            break
        best, size = size, size + 64
    models.vqgan.checkpointing = False
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--skip-largest", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    models = full_size_models(device)
    if device.type == "cpu":
        n = args.iterations or 6
        per_it, peak, _ = timed_run(settings_for(256, 8, n, "fp32"), models)
        print(f"cpu 256x256 cutn 8 fp32: {per_it:.2f} s/it, peak RSS {peak / GB:.2f} GB")
        return
    name = torch.cuda.get_device_name()
    n = args.iterations or 100
    fp32 = timed_run(settings_for(512, 32, n, "fp32"), models)
    mixed_name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    mixed = timed_run(settings_for(512, 32, n, mixed_name), models)
    reference = timed_run(settings_for(512, 32, n, "fp32"), reference_precision(models))
    print(f"{name} 512x512 cutn 32, {n} iterations")
    runs = (("fp32", fp32), (mixed_name, mixed), ("reference (VQGAN fp32, CLIP fp16)", reference))
    for label, (per_it, peak, _) in runs:
        print(f"  {label}: {per_it * 1000:.1f} ms/it, peak {peak / GB:.2f} GB")
    print(f"  speed-up {mixed_name} vs fp32: {fp32[0] / mixed[0]:.2f}x (target >= 2), "
          f"vs the reference: {reference[0] / mixed[0]:.2f}x")
    tail = slice(-10, None)
    last = {label: sum(losses[tail]) / 10 for label, (_, _, losses) in runs}
    print("  mean loss of the last 10 iterations: "
          + ", ".join(f"{label} {value:.4f}" for label, value in last.items()))
    ref_last = last["reference (VQGAN fp32, CLIP fp16)"]
    for label in ("fp32", mixed_name):
        print(f"  {label} vs the reference: {(last[label] - ref_last) / ref_last * 100:+.2f}% "
              "(target within 2%)")
    print("  loss every 10 iterations (fp32 / " + mixed_name + " / reference):")
    for i in range(9, n, 10):
        print(f"    {i + 1:4d}: {fp32[2][i]:.4f} / {mixed[2][i]:.4f} / {reference[2][i]:.4f}")
    if not args.skip_largest:
        for precision in ("fp32", mixed_name):
            for ckpt in (False, True):
                size = largest_square(models, precision, ckpt)
                print(f"  largest square within 16 GB, {precision}, decoder checkpointing "
                      f"{'on' if ckpt else 'off'}: {size} px (target >= 1024)")


if __name__ == "__main__":
    main()
