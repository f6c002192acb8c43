"""The memory planner both engines use: memory-saving options switched on until a run fits.

Each engine gives a function estimating the peak bytes of its run with a set of options on
(VQGAN+CLIP: decoder checkpointing; diffusion: VAE slicing / tiling, attention slicing, model
CPU offload). Free memory is the GPU's on CUDA and the RAM on the CPU. A run that does not fit
even with every option on is refused before anything loads, with the estimate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

GB = 1e9
HEADROOM = 0.9  # plan for at most this share of the free memory
Estimate = Callable[[Mapping[str, bool]], float]  # options -> peak bytes


def free_memory(device: Any) -> int | None:
    """Free bytes on a torch device: CUDA memory, or available RAM for the CPU; None if unknown."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        return available_ram()
    return None


def available_ram() -> int | None:
    """MemAvailable from /proc/meminfo (what can be had without swapping), else free pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError):
            return None
    return None


def plan(estimate: Estimate, switches: Mapping[str, str], order: Sequence[str],
         free: float | None, what: str, device_type: str) -> dict[str, bool]:
    """Options on or off: `switches` maps each to "on" / "off" / "auto"; `auto` ones are
    switched on in `order` until the estimate fits. `ValueError` naming `what` (the size) when
    even every allowed option on does not fit."""
    chosen = {name: switches[name] == "on" for name in order}
    if free is None:
        return chosen
    budget = HEADROOM * free
    for name in order:
        if estimate(chosen) <= budget:
            break
        if switches[name] == "auto":
            chosen[name] = True
    best = {name: chosen[name] or switches[name] == "auto" for name in order}
    need = estimate(best)
    if need > budget:
        where = "GPU memory" if device_type == "cuda" else "memory"
        raise ValueError(f"{what} needs about {need / GB:.1f} GB of {where}, "
                         f"{free / GB:.1f} GB is free; use a smaller size"
                         + _hint(switches, order))
    return chosen


def _hint(switches: Mapping[str, str], order: Sequence[str]) -> str:
    off = [n for n in order if switches[n] == "off"]
    return f" or turn on {', '.join(off)}" if off else ""
