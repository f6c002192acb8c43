"""Which device a run uses, and how much memory it has free."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

Log = Callable[[str], object]


def pick_device(name: str = "auto", log: Log = print) -> Any:
    """CUDA if present, else MPS, else the CPU with a one-line warning; or the named device."""
    import torch

    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    log("warning: no GPU found, running on the CPU (slow: expect minutes per few iterations)")
    return torch.device("cpu")


def free_memory(device: Any) -> int | None:
    """Free bytes on a torch device: CUDA memory, or RAM for the CPU; None when unknown."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu" and hasattr(os, "sysconf"):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return None
