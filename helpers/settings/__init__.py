"""Settings of a run: one frozen dataclass per kind of run, validated up front, saved as JSON.

A settings object is built and validated before any model loads; bad input fails here with a
`ValueError` that names the field and the bad value. Each field declares its help, range,
choices and form level once, in its metadata (`fields.setting`); the CLI flags and the notebook
forms are generated from it. No heavy imports in this package.
"""

from __future__ import annotations

import json

from helpers.settings.base import (
    MAX_SEED,
    MAX_SIDE,
    RunSettings,
    Settings,
    field_names,
    random_seed,
)
from helpers.settings.diffusion import DiffusionSettings
from helpers.settings.fields import Meta, fail, meta_of, setting
from helpers.settings.video import VideoSettings
from helpers.settings.vqgan_clip import AUGMENTS, OPTIMIZERS, VQGANClipSettings, parse_clip_spec

SETTINGS_KINDS: dict[str, type[Settings]] = {
    VQGANClipSettings.kind: VQGANClipSettings,
    DiffusionSettings.kind: DiffusionSettings,
    VideoSettings.kind: VideoSettings,
}


def settings_from_json(text: str) -> Settings:
    """Read settings of any kind from JSON, dispatching on its "kind" key."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"settings are not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"settings must be a JSON object, got {type(data).__name__}")
    kind = data.get("kind")
    if kind not in SETTINGS_KINDS:
        fail("kind", kind, f"must be one of {', '.join(SETTINGS_KINDS)}")
    return SETTINGS_KINDS[kind].from_dict(data)


__all__ = [
    "AUGMENTS",
    "MAX_SEED",
    "MAX_SIDE",
    "OPTIMIZERS",
    "SETTINGS_KINDS",
    "DiffusionSettings",
    "Meta",
    "RunSettings",
    "Settings",
    "VQGANClipSettings",
    "VideoSettings",
    "field_names",
    "meta_of",
    "parse_clip_spec",
    "random_seed",
    "setting",
    "settings_from_json",
]
