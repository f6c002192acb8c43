"""The picture of a run in notebook 4: a placeholder line until the first frame, then the newest.

An `Image` widget without a value shows the browser's broken-image icon (ipywidgets 7 and 8),
so the image stays hidden (`layout.display = "none"`) until a frame arrives; meanwhile a grey
line says where the picture will be. A run that ends without a frame (an error, a stop) leaves
nothing shown: its message says why.
"""

from __future__ import annotations

import io
from typing import Any

import ipywidgets as w

from helpers.widgets.preview import hint_html

WAITING = "The picture appears here at the run's first frame."
HIDDEN = "none"  # the CSS display of what is not shown
STEP_EVERY = 10  # VQGAN+CLIP iterations between two pictures


class RunPicture:
    """A run's picture: `show(image)` for each new frame, `ended()` when the run stops."""

    def __init__(self, max_width: str = "512px"):
        self.image = w.Image(format="png", layout=w.Layout(max_width=max_width, display=HIDDEN))
        self.image.add_class("dreamframe-run-picture")
        self.placeholder = w.HTML(hint_html(WAITING))
        self.placeholder.add_class("dreamframe-run-placeholder")
        self.widget = w.VBox([self.placeholder, self.image])
        self.frames = 0  # frames shown so far

    def show(self, image: Any) -> None:
        """Show a frame (a PIL image) in place of the one before."""
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        self.image.value = buffer.getvalue()
        self.image.layout.display = None  # shown: the widget's own display
        self.placeholder.layout.display = HIDDEN
        self.frames += 1

    def ended(self) -> None:
        """The run is over: without a frame, nothing stays shown (no placeholder, no icon)."""
        if not self.frames:
            self.placeholder.layout.display = HIDDEN

    def callbacks(self, engine: str) -> dict[str, Any]:
        """The engine's callback (`on_step` or `on_image`) that shows its newest frame here."""
        from helpers.engines import get_engine

        if get_engine(engine).callback == "on_step":  # VQGAN+CLIP's Step, every iteration
            return {"on_step": lambda step, _run_dir: self._step(step)}
        return {"on_image": lambda _path, image: self.show(image)}

    def _step(self, step: Any) -> None:
        """A VQGAN+CLIP step's image, at the first and every STEP_EVERY-th (copies cost time)."""
        from helpers.vqgan_clip.loop import to_pil

        if step.i == 1 or step.i % STEP_EVERY == 0:
            self.show(to_pil(step.image))

    @property
    def visible(self) -> bool:
        """Whether the picture is shown (False until the first frame)."""
        return self.image.layout.display != HIDDEN and bool(self.image.value)
