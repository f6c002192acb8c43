"""Latent diffusion (the Stable Diffusion family) through diffusers.

The same four stages as `helpers.vqgan_clip`, under the same names:
`checks.check_inputs` (everything before loading, memory plan included) ->
`loading.load_models` -> `loop.run` (a generator of images, no side effects) ->
`runner.generate` (run folder, images with infotext, resume). Building blocks: `families`
(one record per model family), `samplers` (web-UI sampler names), `prompt_syntax` and
`prompt_schedule` (what a prompt means, prompt editing), `conditioning` (text embeddings:
composable / blend, 77-token chunks, clip skip), `guidance` (classifier-free and composable
guidance for every sampler path), `sampling` (the web UI's samplers), `models` (what a model
spec is, single files), `image_info` (what each image carries, read back by
`settings_from_image`), `extras` (LoRA and textual inversion from the workspace).

The public API is importable from here; it loads lazily, so importing `helpers.diffusion` (or
its light `samplers` / `conditioning` modules, as settings validation does) stays cheap.
"""

from __future__ import annotations

from helpers.lazy import lazy_exports

_EXPORTS = {
    "generate": "runner",
    "settings_from_image": "image_info",
    "check_extras": "extras",
    "check_inputs": "checks",
    "catalogue_models": "checks",
    "Checked": "checks",
    "prepare": "checks",
    "load_models": "loading",
    "load_pipeline": "loading",
    "Loaded": "loading",
    "run": "loop",
    "plan_prompts": "conditioning",
    "encode_plan": "conditioning",
    "encode_schedule": "conditioning",
    "ComposedUNet": "guidance",
    "composed_unet": "guidance",
    "Guidance": "guidance",
    "SAMPLER_NAMES": "samplers",
    "get_sampler": "samplers",
    "make_scheduler": "samplers",
    "resolve_model": "models",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
