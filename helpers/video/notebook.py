"""Videos in notebooks: shown inline, and offered for download on Colab.

Colab cannot serve files from its machine to the page, so the video travels inside the page as
a base64 data URI; that works in Jupyter too.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

MIME = {".mp4": "video/mp4", ".webm": "video/webm", ".gif": "image/gif"}
MAX_INLINE_BYTES = 50 * 2**20  # larger pages make browsers and Colab's output area struggle


def video_html(path: str | Path, width: int = 512, max_bytes: int = MAX_INLINE_BYTES) -> str:
    """An HTML5 `<video>` (or `<img>` for a gif) holding the file as a data URI."""
    path = Path(path)
    mime = MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"video: {path} is not an mp4, webm or gif file")
    if not path.is_file():
        raise ValueError(f"video: {path} not found")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"video: {path} is {size / 2**20:.0f} MB, too large to show inline "
                         f"(at most {max_bytes / 2**20:.0f} MB); download it instead")
    src = f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
    if mime == "image/gif":
        return f'<img src="{src}" width="{width}" alt="{path.name}">'
    return (f'<video width="{width}" controls loop autoplay muted playsinline>'
            f'<source src="{src}" type="{mime}">Your browser cannot play {path.name}.</video>')


def show_video(path: str | Path, width: int = 512) -> Any:
    """An `IPython.display.HTML` that plays the video inline (Jupyter and Colab)."""
    from IPython.display import HTML

    return HTML(video_html(path, width))


def offer_download(path: str | Path) -> bool:
    """On Colab, have the browser download the file; elsewhere do nothing. True if offered."""
    try:
        from google.colab import files
    except ImportError:
        return False
    files.download(str(path))
    return True
