"""Notebook 3's "Describe an image": a path / URL box and a button that put a prompt for the
picture into the form's prompt box (`helpers.diffusion.tools.interrogate.describe_image`: the
picture's stored prompt, else BLIP's caption and CLIP's best terms).

Core widgets only (ipywidgets 7.7 and 8); nothing runs at import, and the models load only on
a click. An error shows in red under the button and leaves the prompt as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as w

from helpers.widgets.compat import set_tooltip
from helpers.widgets.preview import error_html, hint_html, ok_html

Options = Callable[[], Mapping[str, Any]]  # describe_image's keywords, read at each click


def describe_button(prompt: Any, options: Options | Mapping[str, Any] | None = None,
                    describe: Callable[..., str] | None = None) -> w.VBox:
    """A box with a picture path / URL field, a mode, a force switch and a "Describe" button
    that sets `prompt` (a Textarea) to the picture's prompt. `options`: keywords for
    `describe_image` (caption_model, clip_model, device, cache), or a function returning them
    at click time. The box's `path`, `mode`, `force`, `button` and `status` are its widgets."""
    path = w.Text(placeholder="a picture's path or URL", description="Picture",
                  layout=w.Layout(width="60%"))
    mode = w.Dropdown(options=[("caption + CLIP terms", "clip"), ("caption only", "caption")],
                      value="clip", description="Describe", layout=w.Layout(width="auto"))
    force = w.Checkbox(value=False, description="even if it carries a prompt", indent=False)
    set_tooltip(force, "a picture with infotext gives its stored prompt; tick to interrogate "
                "the pixels instead")
    button = w.Button(description="Describe an image", icon="search",
                      tooltip="put a prompt for the picture into the prompt box")
    status = w.HTML("")
    box = w.VBox([w.HBox([path, button]), w.HBox([mode, force]), status])
    box.path, box.mode, box.force, box.button, box.status = path, mode, force, button, status
    button.on_click(lambda _: describe_into(box, prompt, options, describe))
    return box


def describe_into(box: w.VBox, prompt: Any, options: Options | Mapping[str, Any] | None,
                  describe: Callable[..., str] | None = None) -> str | None:
    """What a click does: the prompt of the box's picture into `prompt`; None on an error,
    which shows in the box's status line."""
    if describe is None:
        from helpers.diffusion.tools.interrogate import describe_image as describe
    status = box.status

    def log(message: str) -> None:
        status.value = hint_html(message)

    box.button.disabled = True
    log("describing the picture (the first time downloads the models)...")
    try:
        given = dict(options() if callable(options) else options or {})
        text = describe(box.path.value.strip(), **{**given, "mode": box.mode.value,
                                                   "force": box.force.value, "log": log})
    except Exception as e:  # a callback's error would go nowhere a user looks
        status.value = error_html(f"error: {e}" if isinstance(e, (ValueError, OSError)) else
                                  f"error: unexpected {type(e).__name__}: {e}")
        return None
    finally:
        box.button.disabled = False
    prompt.value = text
    status.value = ok_html("the prompt box now holds the picture's prompt")
    return text
