"""What the user reads: log lines' sizes, and the advice that ends every download error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from helpers.download.errors import Failure

Log = Callable[[str], object]  # where progress lines go (print, or a list's append in tests)

_EXAMPLES = {"vqgan": "--vqgan /path/to/model.ckpt", "clip": "--clip /path/to/clip-folder",
             "diffusion": "--model /path/to/model.safetensors"}


def human(size: int | None) -> str:
    """A byte count as the log shows it."""
    if size is None:
        return "size unknown"
    if size >= 10**9:
        return f"{size / 10**9:.1f} GB"
    return f"{size / 10**6:.1f} MB" if size >= 10**6 else f"{size} bytes"


def failure_message(label: str, failures: list[Failure], target: Path, kind: str) -> str:
    """The error for a file none of whose mirrors worked: one line per mirror, then advice."""
    if not failures:
        head = f"could not download {label}: the catalogue lists no source for it"
    elif all(f.unreachable for f in failures):
        head = (f"no network connection: could not reach any mirror of {label}. Check the "
                "internet connection. Tried")
    else:
        head = f"could not download {label} from any of its {len(failures)} mirrors"
    lines = [head + ":"] + [f"  {i}. {f.where}: {f.reason}" for i, f in enumerate(failures, 1)]
    return "\n".join([*lines, advice(kind, target)])


def advice(kind: str, target: Path | None) -> str:
    """How to supply a model yourself; `target`: where a file dropped into the cache goes."""
    example = _EXAMPLES.get(kind, _EXAMPLES["vqgan"])
    where = f"put the file at {target}" if target else "download it into a folder and pass that"
    return ("You can supply it yourself: give a local path, an http(s) URL, a Google Drive id "
            f"or a Hugging Face Hub id (owner/repo or owner/repo/file), e.g. {example}; or "
            f"{where}, and run again.")
