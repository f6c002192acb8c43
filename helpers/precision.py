"""Precision: which dtype each engine computes in, from the `precision` setting and the device.

One policy per engine, both here:
- VQGAN+CLIP keeps fp32 weights and runs the step under autocast: `auto` is bf16 on a CUDA GPU
  that has it, else plain fp32 (the CPU and MPS gain nothing reliable from it).
- Diffusion loads its weights in the compute dtype: `auto` is fp16 on CUDA and MPS (what the
  web UIs do), fp32 on the CPU.
fp16 needs a GPU in both: CPU kernels for it are missing or slow.
"""

from __future__ import annotations

from typing import Any

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _named(precision: str) -> Any:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def check_precision(precision: str, device: Any) -> None:
    """`ValueError` when the precision cannot run on the device."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    if precision == "fp16" and device.type not in ("cuda", "mps"):
        raise ValueError(f"precision: 'fp16' needs a GPU (the device is {device.type}); use "
                         "'auto', 'fp32' or 'bf16'")


def autocast_dtype(precision: str, device: Any) -> Any:
    """VQGAN+CLIP: the autocast dtype for a precision on a device; None means plain fp32."""
    import torch

    check_precision(precision, device)
    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else None
    return None if precision == "fp32" else _named(precision)


def weights_dtype(precision: str, device: Any) -> Any:
    """Diffusion: the dtype weights are loaded and run in."""
    import torch

    check_precision(precision, device)
    if precision == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    return _named(precision)


def dtype_kwargs(library: str, dtype: Any) -> dict[str, Any]:
    """The `from_pretrained` keyword for a dtype: `dtype` where the library renamed
    `torch_dtype` (diffusers 0.40, transformers 4.56), else `torch_dtype`."""
    import importlib

    from packaging.version import Version

    renamed_in = {"diffusers": "0.40", "transformers": "4.56"}[library]
    version = Version(importlib.import_module(library).__version__)
    key = "dtype" if version.release >= Version(renamed_in).release else "torch_dtype"
    return {key: dtype}
