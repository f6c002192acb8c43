"""Video assembly: our `assemble` vs. the same ffmpeg invoked directly on the same files.

One run, the same 300 PNG frames of 512x512 (moving gradients and shapes with a little noise,
written as the runs write them), the same bundled ffmpeg and the same encoding arguments
(`ffmpeg_args`: H.264, crf 17, yuv420p, BT.709). The only difference: ffmpeg reads the PNGs
itself (`-i %06d.png`), or we decode them and stream raw RGB down its stdin.
  1. peak memory (RSS) of our process making videos of a tenth of the frames (at most 30) and
     of all of them, each in a fresh child process, with ffmpeg's beside it (target: flat,
     under 300 MB);
  2. time: ours / direct, median of the runs, arms taking turns; the last line is
     `ours / direct: 1.04x in time (target <= 1.1: met), 1.01x in CPU`.

    python benchmarks/video.py [--frames N] [--size PX] [--runs N]
    python benchmarks/video.py --smoke     # 3 frames of 32x32, 1 run: the same lines, in seconds
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
from pathlib import Path

from helpers.reporting import no_log, plural
from helpers.settings import VideoSettings
from helpers.video import assemble, check_video, ffmpeg_args

TARGET_RATIO = 1.1
TARGET_MB = 300


def make_frames(folder: Path, count: int, size: int) -> Path:
    """`count` PNG frames that change smoothly, so the encoder has real work."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(count):
        t = i / count
        r = 127 + 127 * np.sin(6 * x + 4 * t * np.pi)
        g = 127 + 127 * np.cos(5 * y - 3 * t * np.pi)
        b = 255 * ((x - 0.5 - 0.3 * np.sin(2 * np.pi * t)) ** 2 + (y - 0.5) ** 2 < 0.04)
        pixels = np.stack([r, g, b], -1) + rng.normal(0, 4, (size, size, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i + 1:06d}.png")
    return folder


def direct_args(folder: Path, out: Path) -> list[str]:
    """Our ffmpeg arguments with ffmpeg reading the PNG files instead of our pipe."""
    plan = check_video(folder, VideoSettings(out=str(out)))
    args = ffmpeg_args(plan.job, out, plan.exe)
    start = args.index("-f")  # the raw-video input: -f rawvideo ... -i pipe:0
    end = args.index("pipe:0") + 1
    image_input = ["-framerate", str(plan.job.input_fps), "-i", str(folder / "%06d.png")]
    return args[:start] + image_input + args[end:]


def cpu_seconds() -> float:
    """CPU time so far of this process and its finished children (ffmpeg)."""
    me, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                        resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def timed(run) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of a call."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    run()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def time_ours(folder: Path, out: Path) -> tuple[float, float]:
    return timed(lambda: assemble(folder, VideoSettings(out=str(out)), log=no_log,
                                  progress=False))


def time_direct(folder: Path, out: Path) -> tuple[float, float]:
    args = direct_args(folder, out)
    return timed(lambda: subprocess.run(args, check=True))


def child_peak(folder: Path, frames: int, out: Path) -> dict[str, float]:
    """Peak RSS (MB) of a fresh process making a video of the first `frames` frames."""
    code = ("import json, resource, sys\n"
            "from helpers.reporting import no_log\n"
            "from helpers.settings import VideoSettings\n"
            "from helpers.video import assemble\n"
            f"assemble({str(folder)!r}, VideoSettings(end={frames}, out={str(out)!r}), "
            "log=no_log, progress=False)\n"
            "mb = lambda who: resource.getrusage(who).ru_maxrss / 1024\n"
            "print(json.dumps({'ours': mb(resource.RUSAGE_SELF), "
            "'ffmpeg': mb(resource.RUSAGE_CHILDREN)}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames in the video")
    parser.add_argument("--size", type=int, default=512, help="square frame size in pixels")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per arm, median kept")
    parser.add_argument("--smoke", action="store_true",
                        help="the least work through the same code: 3 frames of 32x32, 1 run")
    options = parser.parse_args(argv)
    if options.smoke:
        options.frames, options.size, options.runs = 3, 32, 1
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        begin = time.perf_counter()
        folder = make_frames(root / "frames", options.frames, options.size)
        print(f"{options.frames} frames of {options.size}x{options.size} written in "
              f"{time.perf_counter() - begin:.1f} s")
        print(f"direct: {' '.join(direct_args(folder, root / 'direct.mp4'))}")
        few = min(30, max(1, options.frames // 10))
        peaks = {n: child_peak(folder, n, root / f"peak-{n}.mp4")
                 for n in sorted({few, options.frames})}
        report_memory(peaks, direct_peak(folder, root / "direct-peak.mp4"))
        ours, direct = [], []
        for i in range(options.runs):
            direct.append(time_direct(folder, root / f"direct-{i}.mp4"))
            ours.append(time_ours(folder, root / f"ours-{i}.mp4"))
        report_time(ours, direct, options.frames)


def direct_peak(folder: Path, out: Path) -> float:
    """Peak RSS (MB) of ffmpeg reading the PNGs itself, run from a fresh process."""
    code = ("import resource, subprocess, sys\n"
            f"subprocess.run({direct_args(folder, out)!r}, check=True)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    return float(result.stdout.strip().splitlines()[-1])


def report_time(ours: list[tuple[float, float]], direct: list[tuple[float, float]],
                frames: int) -> None:
    """Medians of wall and CPU time; the wall-time ratio is the target."""
    (ours_wall, ours_cpu), (direct_wall, direct_cpu) = (
        [statistics.median(column) for column in zip(*runs, strict=True)]
        for runs in (ours, direct))
    ratio = ours_wall / direct_wall
    print(f"direct ffmpeg: {direct_wall:6.2f} s  ({frames / direct_wall:5.1f} frames/s), "
          f"CPU {direct_cpu:6.2f} s")
    print(f"ours:          {ours_wall:6.2f} s  ({frames / ours_wall:5.1f} frames/s), "
          f"CPU {ours_cpu:6.2f} s (decoding here, encoding in ffmpeg)")
    print(f"ours / direct: {ratio:.2f}x in time (target <= {TARGET_RATIO}: "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}), {ours_cpu / direct_cpu:.2f}x in CPU")


def report_memory(peaks: dict[int, dict[str, float]], direct: float) -> None:
    for frames, peak in peaks.items():
        print(f"peak RSS, {plural(frames, 'frame'):>11}: ours {peak['ours']:6.1f} MB, its ffmpeg "
              f"{peak['ffmpeg']:6.1f} MB")
    low, high = peaks[min(peaks)]["ours"], peaks[max(peaks)]["ours"]
    flat = high <= low * 1.1 + 5
    print(f"ours: {'flat' if flat else 'NOT flat'} ({high - low:+.1f} MB from "
          f"{min(peaks)} to {max(peaks)} frames), under {TARGET_MB} MB: "
          f"{'yes' if high < TARGET_MB else 'NO'}; direct ffmpeg alone: {direct:.1f} MB")


if __name__ == "__main__":
    main()
