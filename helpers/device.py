"""Which device a run uses: `auto`, or a device the user named, checked before anything loads."""

from __future__ import annotations

from typing import Any

from helpers.reporting import Log, plural

DEVICE_HELP = "auto (CUDA, then Apple MPS, then the CPU), cpu, cuda, cuda:1, mps"


def pick_device(name: str = "auto", log: Log = print) -> Any:
    """CUDA if present, else MPS, else the CPU with a one-line warning; or the named device.

    A named device that does not exist here is a `ValueError` that says what there is.
    """
    import torch

    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        log("warning: no GPU found, running on the CPU (slow: expect minutes per few iterations)")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device: {name!r} is not a device; use {DEVICE_HELP}") from None
    _check_present(device, name)
    return device


def _check_present(device: Any, name: str) -> None:
    import torch

    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device: {name!r} needs an NVIDIA GPU with CUDA, and this machine "
                             f"has none; use 'auto' or 'cpu'")
        if (device.index or 0) >= count:
            raise ValueError(f"device: {name!r} does not exist: this machine has "
                             f"{plural(count, 'CUDA GPU')}, cuda:0 to cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device: {name!r} needs Apple's Metal (MPS), which this machine "
                         f"lacks; use 'auto' or 'cpu'")
    elif device.type == "mps" and (device.index or 0) > 0:
        raise ValueError(f"device: {name!r} does not exist: Apple's Metal has one device, 'mps'")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device: {name!r} is not supported; use {DEVICE_HELP}")

