"""Model upscaling: our `upscale_image` vs. spandrel's model called directly, on one model file.

One run, the same weights file and the same picture (random pixels, fixed seed), three arms
taking turns so that drift hits them alike (median of --runs, after --warmup untimed calls):
  ours, tiled:    `load_upscaler` then `upscale_image` with the planner's tile (`plan_tile`), or,
                  where the planner says the whole picture fits, the largest planner tile under
                  the picture's side (two tiles a side for a picture under them all), so the
                  tiled path is always measured (it computes the overlaps twice);
  ours, untiled:  the same with tile 0 (the whole picture at once);
  spandrel:       `spandrel.ModelLoader().load_from_file(path)`, the picture as a tensor, the
                  model called under torch.inference_mode, back to 8-bit pixels (fp16 on CUDA
                  where the model supports it, as ours).
Throughput is megapixels of output per second. Peak memory beside the planner's estimate
(`upscale.tile_bytes`): on CUDA torch.cuda.max_memory_allocated over the loaded model; on the
CPU the peak RSS of each arm run once in a fresh child process, and its rise over the loaded
model. The last line is `ours / spandrel: 1.02x in time (target <= 1.05: met)` (ours untiled:
the same work).

The default model is Real-ESRGAN x4plus's shape (RRDBNet: 23 blocks, 64 features, 4x) with
random weights (the same compute as the real file, no network); --model takes a catalogue name
("R-ESRGAN 4x+"), a file, a URL or a Hub file instead. The picture is 256x256 on the CPU,
1024x1024 on CUDA, unless --size says otherwise.

    python benchmarks/upscale.py                      # R-ESRGAN-shaped, CPU, 256x256
    python benchmarks/upscale.py --device cuda        # 1024x1024
    python benchmarks/upscale.py --model "R-ESRGAN 4x+" --device cuda
    python benchmarks/upscale.py --smoke              # the tiny ESRGAN, 48x48, 1 run (seconds)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ESRGAN_SHAPED = "esrgan-shaped"  # --model value: Real-ESRGAN x4plus's shapes, random weights
TINY = "test-tiny-esrgan"
TARGET_RATIO = 1.05
ARMS = ("tiled", "untiled", "spandrel")
MB = 1024 * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=ESRGAN_SHAPED,
                        help=f"catalogue name, file, URL or Hub file; {ESRGAN_SHAPED!r}: "
                             "Real-ESRGAN x4plus's shapes with random weights (default)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto, ... (default cpu)")
    parser.add_argument("--size", type=int, default=None,
                        help="square picture side in pixels (default 256 on the CPU, 1024 on "
                             "CUDA)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per arm, median kept")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per arm first")
    parser.add_argument("--smoke", action="store_true",
                        help=f"the least work through the same code: {TINY}, 48x48, 1 run, no "
                             "warm-up")
    parser.add_argument("--peak-of", choices=ARMS, help=argparse.SUPPRESS)  # the child's arm
    parser.add_argument("--tile", type=int, default=0, help=argparse.SUPPRESS)  # the child's
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.size, args.runs, args.warmup = TINY, 48, 1, 0
    return args


def main(argv: list[str] | None = None) -> None:
    import torch

    from helpers.device import pick_device
    from helpers.reporting import no_log

    args = parse_args(argv)
    torch.set_grad_enabled(False)
    device = pick_device(args.device, no_log)
    if args.size is None:
        args.size = 1024 if device.type == "cuda" else 256
    if args.peak_of:
        child_peak(args, device)
        return
    with tempfile.TemporaryDirectory() as scratch:
        path = model_file(args.model, Path(scratch))
        measure(args, path, device)


def model_file(model: str, scratch: Path) -> Path:
    """The weights file: Real-ESRGAN x4plus's shapes built here, or the model's file."""
    if model != ESRGAN_SHAPED:
        from helpers.diffusion.tools.upscalers import upscaler_file

        return upscaler_file(model)
    import torch

    from helpers.testing import _rrdb_state_dict, _seeded

    with _seeded(0):
        state = _rrdb_state_dict(3, features=64, grow=32, blocks=23)
    path = scratch / "RealESRGAN_x4plus-shaped.pth"
    torch.save({"params_ema": state}, path)  # as RealESRGAN_x4plus.pth holds it
    return path


def picture(size: int):
    """A random RGB picture, the same in every process."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def load_arms(path: Path, device, size: int) -> tuple[dict, int, object]:
    """{arm: callable of a picture}, the tiled arm's tile, and our model descriptor."""
    from helpers.diffusion.tools.upscale import OVERLAP, TILES, plan_tile, upscale_image
    from helpers.diffusion.tools.upscalers import load_upscaler

    ours = load_upscaler(str(path), device).model
    planned = plan_tile(ours, (size, size))
    tile = planned or next((t for t in TILES if t < size), -(-(size + OVERLAP) // 2))
    direct = direct_model(path, ours)
    return {"tiled": partial(upscale_image, ours, tile=tile),
            "untiled": partial(upscale_image, ours, tile=0),
            "spandrel": partial(call_spandrel, direct)}, tile, ours


def direct_model(path: Path, like):
    """spandrel's own loader on the file, on our model's device and dtype."""
    from spandrel import ModelLoader

    return ModelLoader().load_from_file(path).to(like.device).to(like.dtype).eval()


def call_spandrel(model, image):
    """spandrel's model on a picture, the plain way: a tensor in, 8-bit pixels out."""
    import numpy as np
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        y = model(x.to(model.device, model.dtype))[0].float().clamp(0, 1)
        return (y * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def sync(device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def measure(args: argparse.Namespace, path: Path, device) -> None:
    """Load every arm once, report memory, time the arms in turns, print the ratio lines."""
    arms, tile, model = load_arms(path, device, args.size)
    image = picture(args.size)
    out = args.size * model.scale
    megapixels = out * out / 1e6
    name = "R-ESRGAN-shaped (RRDBNet: 23 blocks, 64 features; random weights)" \
        if args.model == ESRGAN_SHAPED else args.model
    print(f"model {name}: {model.architecture.name} {model.scale}x, {device}, {model.dtype}; "
          f"{args.size}x{args.size} -> {out}x{out}; median of {args.runs}")
    report_plan(model, args.size, tile)
    report_memory(args, path, device, arms, image, tile, model)
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for run in range(args.warmup + args.runs):
        for arm in ARMS[run % 3:] + ARMS[:run % 3]:  # no arm always first
            start = sync(device)
            arms[arm](image)
            if run >= args.warmup:
                times[arm].append(sync(device) - start)
    report_time({arm: statistics.median(t) for arm, t in times.items()}, megapixels, tile)


def report_plan(model, size: int, tile: int) -> None:
    from helpers.diffusion.tools.upscale import plan_tile
    from helpers.memory import free_memory

    planned = plan_tile(model, (size, size))
    free = free_memory(model.device)
    print(f"planner: {f'tiles of {planned}' if planned else 'untiled'} "
          f"({(free or 0) / MB:.0f} MB free); the tiled arm uses tiles of {tile}")


def estimate(model, pixels: int) -> float:
    """The planner's estimate, in MB, of a call on `pixels` input pixels."""
    from helpers.diffusion.tools.upscale import tile_bytes

    half = model.dtype.is_floating_point and model.dtype.itemsize == 2
    return tile_bytes(pixels, model.scale, half) / MB


def report_memory(args, path: Path, device, arms: dict, image, tile: int, model) -> None:
    """Each arm's peak memory beside the planner's estimate."""
    whole, tiled = estimate(model, args.size ** 2), estimate(model, min(tile, args.size) ** 2)
    print(f"planner's estimate: {whole:.0f} MB untiled, {tiled:.0f} MB a {tile} tile")
    for arm in ARMS:
        if device.type == "cuda":
            peak = cuda_peak(device, partial(arms[arm], image))
            print(f"peak CUDA memory, {arm:>8}: {peak:7.0f} MB over the loaded model")
        else:
            peak = run_child(args, path, arm, tile)
            print(f"peak RSS (fresh process), {arm:>8}: {peak['peak']:7.0f} MB, "
                  f"{peak['peak'] - peak['loaded']:+7.0f} MB over the loaded model")


def cuda_peak(device, call) -> float:
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    call()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / MB


def run_child(args, path: Path, arm: str, tile: int) -> dict[str, float]:
    """Peak RSS (MB) of a fresh process that loads the model and runs `arm` once."""
    command = [sys.executable, __file__, "--peak-of", arm, "--model", str(path), "--device",
               args.device, "--size", str(args.size), "--tile", str(tile)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def child_peak(args: argparse.Namespace, device) -> None:
    """In the child: load, note the RSS high-water mark, run the arm once, print both."""
    from helpers.diffusion.tools.upscale import upscale_image
    from helpers.diffusion.tools.upscalers import load_upscaler

    image = picture(args.size)
    path = Path(args.model)
    if args.peak_of == "spandrel":
        from spandrel import ModelLoader

        call = partial(call_spandrel, ModelLoader().load_from_file(path).to(device).eval(),
                       image)
    else:
        tile = args.tile if args.peak_of == "tiled" else 0
        call = partial(upscale_image, load_upscaler(str(path), device).model, image, tile)
    loaded = rss_peak()
    call()
    print(json.dumps({"loaded": loaded, "peak": rss_peak()}))


def rss_peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB  # Linux: kB


def report_time(medians: dict[str, float], megapixels: float, tile: int) -> None:
    base = medians["spandrel"]
    labels = {"tiled": f"ours, tiles of {tile}", "untiled": "ours, untiled", "spandrel":
              "spandrel direct"}
    for arm in ARMS:
        print(f"{labels[arm]:>17}: {medians[arm]:8.3f} s ({megapixels / medians[arm]:7.3f} MP/s),"
              f" {medians[arm] / base:.2f}x spandrel")
    ratio = medians["untiled"] / base
    print(f"ours / spandrel: {ratio:.2f}x in time (target <= {TARGET_RATIO}: "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'})")


if __name__ == "__main__":
    main()
