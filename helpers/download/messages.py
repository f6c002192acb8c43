"""What the user reads: log lines' sizes, and the advice that ends every download error."""

from __future__ import annotations

from pathlib import Path

from helpers.download.errors import Failure

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


def offline_message(missing: list, cache: Path) -> str:
    """No network and models missing from the cache: every one of them, once, and what to do."""
    lines = [f"no network connection, and {len(missing)} model(s) this run needs are not in "
             f"the cache ({cache}):"]
    for model in missing:
        files = ", ".join(f.name for f in model.files) or model.hub_repo
        lines.append(f"  {model.name} ({model.kind}, {human(model.size)}): {files}")
    lines.append("Connect to the internet and run again (the download resumes), or give a local "
                 "path, URL, Google Drive id or Hub id for each model.")
    return "\n".join(lines)


def advice(kind: str, target: Path | None) -> str:
    """How to supply a model yourself; `target`: where a file dropped into the cache goes."""
    example = _EXAMPLES.get(kind, _EXAMPLES["vqgan"])
    where = f"put the file at {target}" if target else "download it into a folder and pass that"
    return ("You can supply it yourself: give a local path, an http(s) URL, a Google Drive id "
            f"or a Hugging Face Hub id (owner/repo or owner/repo/file), e.g. {example}; or "
            f"{where}, and run again.")
