"""Settings of a run: one frozen dataclass per kind of run, validated up front, saved as JSON.

A settings object is built and validated before any model loads; bad input fails here with a
`ValueError` that names the field and the bad value. Each field declares its help, range,
choices and form level once, in its metadata (`fields.setting`); the CLI flags and the notebook
forms are generated from it. No heavy imports in this package.
"""

from __future__ import annotations

from helpers.settings.base import (
    MAX_SEED,
    MAX_SIDE,
    RunSettings,
    Settings,
    field_names,
    random_seed,
)
from helpers.settings.diffusion import DiffusionSettings
from helpers.settings.fields import (
    MAX_EXPRESSION_CHARS,
    MAX_PROMPT_CHARS,
    MAX_TEXT_CHARS,
    Meta,
    fail,
    meta_of,
    setting,
)
from helpers.settings.video import VideoSettings
from helpers.settings.vqgan_clip import AUGMENTS, OPTIMIZERS, VQGANClipSettings, parse_clip_spec

SETTINGS_KINDS: dict[str, type[Settings]] = {
    VQGANClipSettings.kind: VQGANClipSettings,
    DiffusionSettings.kind: DiffusionSettings,
    VideoSettings.kind: VideoSettings,
}


def settings_from_json(text: str) -> Settings:
    """Read settings of any kind from JSON, dispatching on its "kind" key."""
    from helpers.files import load_json

    data = load_json(text, "settings", expect=dict)
    kind = data.get("kind")
    if kind not in SETTINGS_KINDS:
        fail("kind", kind, f"must be one of {', '.join(SETTINGS_KINDS)}")
    return SETTINGS_KINDS[kind].from_dict(data)


__all__ = [
    "AUGMENTS",
    "MAX_EXPRESSION_CHARS",
    "MAX_PROMPT_CHARS",
    "MAX_SEED",
    "MAX_SIDE",
    "MAX_TEXT_CHARS",
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
