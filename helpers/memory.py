"""How much memory a device has free, for choosing memory-saving options before a run."""

from __future__ import annotations

import os
from typing import Any


def free_memory(device: Any) -> int | None:
    """Free bytes on a torch device: CUDA memory, or RAM for the CPU; None when unknown."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu" and hasattr(os, "sysconf"):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return None
