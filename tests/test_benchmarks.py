"""Every benchmark still runs with today's API: each script's --smoke mode, as a user runs it.

A smoke run does the least work through the same code as a full run and ends with the same
ratio lines; the tests check those lines' format only, never a speed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from common import needs_spandrel

ROOT = Path(__file__).resolve().parents[1]
RATIO = r"\d+\.\d+x"
# Each benchmark's last lines, in order.
LAST_LINES = {
    "diffusion": [
        rf"composable, 2 pieces: \d+\.\d+ s -> {RATIO} one piece .*",
        rf"composable, 4 pieces: \d+\.\d+ s -> {RATIO} one piece .*",
        rf"DPM\+\+ 2M: ours \d+\.\d+ s, plain diffusers \d+\.\d+ s "
        rf"\(DPMSolverMultistepScheduler\): overhead: {RATIO}",
        rf"Euler a: ours \d+\.\d+ s, plain diffusers \d+\.\d+ s "
        rf"\(EulerAncestralDiscreteScheduler\): overhead: {RATIO}",
    ],
    "video": [rf"ours / direct: {RATIO} in time \(target <= 1\.1: (met|NOT met)\), "
              rf"{RATIO} in CPU"],
    "vqgan_clip": [r"final loss: ours (\d+\.\d+), plain loop (\d+\.\d+)",
                   rf"ours / plain loop: \d+\.\d+ s/it vs \d+\.\d+ s/it: overhead: {RATIO}"],
}


def smoke(name: str) -> list[str]:
    """The stdout lines of `python benchmarks/<name>.py --smoke`, offline, on the session cache."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # DREAMFRAME_CACHE: the session's (conftest)
    result = subprocess.run([sys.executable, f"benchmarks/{name}.py", "--smoke"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()


def assert_ends_with(lines: list[str], patterns: list[str]) -> list[re.Match]:
    tail = lines[-len(patterns):]
    assert len(tail) == len(patterns), lines
    matches = [re.fullmatch(p, line) for p, line in zip(patterns, tail, strict=True)]
    assert all(matches), "\n".join(lines)
    return matches


@pytest.mark.slow
def test_diffusion_benchmark_smoke_run_ends_with_its_overhead_lines(tiny_models):
    assert_ends_with(smoke("diffusion"), LAST_LINES["diffusion"])


def test_video_benchmark_smoke_run_ends_with_its_time_ratio_line():
    lines = smoke("video")
    assert_ends_with(lines, LAST_LINES["video"])
    assert any(line.startswith("ours: flat") or line.startswith("ours: NOT flat")
               for line in lines), lines  # the memory comparison ran too


@pytest.mark.slow
def test_vqgan_clip_benchmark_smoke_run_does_the_same_work_in_both_arms(tiny_models):
    losses, _ = assert_ends_with(smoke("vqgan_clip"), LAST_LINES["vqgan_clip"])
    assert losses[1] == losses[2]  # the plain loop computes what ours does, on the CPU


@needs_spandrel
def test_upscale_benchmark_smoke_run_ends_with_its_time_ratio_line():
    lines = smoke("upscale")
    assert_ends_with(lines, [rf"ours / spandrel: {RATIO} in time \(target <= 1\.05: "
                             r"(met|NOT met)\)"])
    peaks = [line for line in lines if line.startswith("peak ")]
    assert len(peaks) == 3, lines  # every arm's peak memory, beside the planner's estimate
    assert any(line.startswith("planner's estimate: ") for line in lines), lines
