"""VQGAN+CLIP: a VQGAN latent optimised so that CLIP agrees with weighted prompts.

The same four stages as `helpers.diffusion`, under the same names:
`checks.check_inputs` (everything before loading) -> `loading.load_models` -> `loop.run` (a
generator of steps, no side effects) -> `runner.generate` (run folder, frames, resume points).
Its building blocks live in it too: `vqgan` (taming checkpoints), `clip`, `losses` (cutouts and
CLIP losses).
The public API loads lazily, so importing this package stays cheap.
"""

from __future__ import annotations

from helpers.lazy import lazy_exports

_EXPORTS = {
    "check_inputs": "checks",
    "catalogue_models": "checks",
    "Checked": "checks",
    "Inputs": "checks",
    "estimate_memory": "checks",
    "load_models": "loading",
    "Loaded": "loading",
    "run": "loop",
    "Step": "loop",
    "generate": "runner",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
