"""What differs between ipywidgets 7.7 (Google Colab's) and 8, in one place.

- tooltips: `description_tooltip` in 7, `tooltip` in 8 (7's Button already has `tooltip`);
- `Accordion`: 7 opens the first pane unless told otherwise; 8 starts folded;
- `FileUpload.value`: a dict {name: {"metadata": ..., "content": bytes}} in 7, a tuple of dicts
  {"name", "type", "size", "content": memoryview, ...} in 8. Colab's front end delivers files of
  1 MB or more with an empty content, so an empty upload is refused with what to do instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

COLAB_UPLOAD_HINT = ("Colab's upload button delivers files of 1 MB or more empty; use "
                     "google.colab.files.upload() or type a path")


def set_tooltip(widget: Any, text: str) -> None:
    """Show `text` when the pointer rests on the widget, on ipywidgets 7 and 8."""
    if widget.has_trait("tooltip"):
        widget.tooltip = text
    elif widget.has_trait("description_tooltip"):
        widget.description_tooltip = text


def tooltip_of(widget: Any) -> str | None:
    """The tooltip `set_tooltip` gave, on ipywidgets 7 and 8."""
    for name in ("tooltip", "description_tooltip"):
        if widget.has_trait(name):
            return getattr(widget, name)
    return None


def folded_accordion(children: list[Any], titles: list[str]) -> Any:
    """An Accordion with these panes, all folded (7 would open the first)."""
    import ipywidgets as w

    accordion = w.Accordion(children=children)
    for i, title in enumerate(titles):
        accordion.set_title(i, title)
    accordion.selected_index = None
    return accordion


def read_upload(widget: Any) -> list[tuple[str, bytes]]:
    """A FileUpload's files as (name, bytes), from ipywidgets 7 (dict) or 8 (tuple of dicts).

    Accepts the widget or its value. `ValueError` for a file that arrived empty (Colab's
    front end does that to files of 1 MB or more), saying what to do instead.
    """
    value = getattr(widget, "value", widget)
    if isinstance(value, Mapping):  # ipywidgets 7: {name: {"metadata": {...}, "content": b}}
        entries: Iterable[tuple[str, Any, Any]] = (
            (name, item.get("content"), (item.get("metadata") or {}).get("size"))
            for name, item in value.items())
    else:  # ipywidgets 8: ({"name": ..., "size": ..., "content": memoryview}, ...)
        entries = ((item["name"], item.get("content"), item.get("size")) for item in value or ())
    files = []
    for name, content, size in entries:
        data = bytes(content) if content is not None else b""
        if not data:
            why = "is empty" if size == 0 else f"arrived empty; {COLAB_UPLOAD_HINT}"
            raise ValueError(f"upload: {name} {why}")
        files.append((str(name), data))
    return files
