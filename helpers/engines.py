"""The engines, one record each: the one list the CLI, the notebooks and the forms take.

An engine is a package with the four stages (`check_inputs`, `load_models`, `run`, `generate`)
and a settings class whose `kind` is the engine's name. Its record says what the rest of the
project needs to know: its model fields, its tiny test settings, the callback a notebook shows
its progress with, the setting a finished run grows by, and which prompt grammar its forms
preview. A third engine is one more record (and its package). No heavy imports here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any


@dataclass(frozen=True)
class Engine:
    """What the CLI, the notebooks and the forms know of one engine."""

    name: str  # the CLI command, the settings' kind, model.json's "engine"
    title: str  # in messages and forms
    package: str  # the module with check_inputs, load_models, run, generate, catalogue_models
    help: str  # the CLI command's one line
    description: str  # the CLI command's description
    model_fields: tuple[str, ...]  # settings fields that name models (notebook 2 chooses them)
    test_settings: Mapping[str, Any] = field(default_factory=dict)  # the tiny models, in seconds
    callback: str = "on_image"  # how a run reports a new picture: "on_step" (each iteration,
    #                             VQGAN+CLIP's Step) or "on_image" (each saved image)
    length: str = "batch_count"  # the setting a finished run (not an animation) grows by
    unit: str = "images"  # what `length` counts
    grammar: str = "web-ui"  # the prompt language its forms preview: "pieces" (ours alone) or
    #                          "web-ui" (the web UI's syntax around our pieces)
    from_image: bool = True  # `--from-image`: its package has `settings_from_image`

    @property
    def settings(self) -> type:
        """The engine's settings class."""
        from helpers.settings import SETTINGS_KINDS

        return SETTINGS_KINDS[self.name]

    def module(self) -> ModuleType:
        """The engine's package (imported now: it may bring torch)."""
        return importlib.import_module(self.package)


def _frozen(values: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(values)


ENGINES: dict[str, Engine] = {e.name: e for e in (
    Engine("vqgan-clip", "VQGAN+CLIP", "helpers.vqgan_clip", "generate with VQGAN+CLIP",
           "Optimise a VQGAN image so CLIP agrees with weighted prompts.", ("vqgan", "clip"),
           _frozen({"vqgan": "test-tiny-vqgan", "clip": "test-tiny-clip", "width": 64,
                    "height": 64, "iterations": 6, "save_every": 2, "cutn": 4,
                    "iterations_per_frame": 2, "frames": 3}),
           callback="on_step", length="iterations", unit="iterations", grammar="pieces",
           from_image=False),
    Engine("diffusion", "latent diffusion", "helpers.diffusion",
           "generate with Stable Diffusion (diffusers)",
           "txt2img / img2img / inpaint / outpaint / ControlNet with weighted prompts and web-UI "
           "samplers.",
           ("model", "vae", "model_config"),
           _frozen({"model": "test-tiny-sd", "vae": "", "model_config": "", "width": 64,
                    "height": 64, "steps": 4, "mask_model": "test-tiny-clipseg",
                    "depth_model": "test-tiny-depth"})),
)}


def get_engine(name: str) -> Engine:
    """The record of an engine by name; a `ValueError` naming the `engine` setting otherwise."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"engine: {name!r} is not one of {', '.join(ENGINES)}") from None
