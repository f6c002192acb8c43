"""ipywidgets forms generated from the settings metadata, for the notebooks.

`SettingsForm(cls, values, exclude=..., uploads=...)` is the form of a settings class: basic
fields shown by section, advanced ones folded, live previews of prompts and schedules, uploads
with thumbnails, size presets, a random-seed button, loading from runs and images; for
diffusion, an image mode (txt2img, img2img, inpaint, outpaint) with previews of the mask and
the grown canvas (`image_section`), and ControlNet units with notebook 2's ControlNets as
their defaults (`control_units`); it works on ipywidgets 7.7 (Google Colab's) and 8 with core
widgets only. `ModelForm` (`models`) is notebook 2's choice of models and ControlNets.
`RunPicture` is a run's picture in notebook 4 (hidden until its first frame). `prompt_preview`
and `schedule_check` are the live checks as HTML; `read_upload` reads a FileUpload on 7 and 8.

Names load lazily: `from helpers.widgets import prompt_preview` does not import ipywidgets, and
nothing here imports torch.
"""

from __future__ import annotations

from helpers.lazy import lazy_exports

_EXPORTS = {
    "SettingsForm": "form",
    "RunPicture": "picture",
    "prompt_preview": "preview",
    "prompt_schedule_preview": "preview",
    "schedule_check": "preview",
    "read_upload": "compat",
    "save_upload": "uploads",
    "SIZE_PRESETS": "layout",
    "GROUP_ORDER": "layout",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
