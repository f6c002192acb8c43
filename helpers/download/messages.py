"""What the user reads: log lines' sizes, and the advice that ends every download error."""

from __future__ import annotations

from pathlib import Path

from helpers.download.errors import Failure

_EXAMPLES = {"vqgan": "--vqgan /path/to/model.ckpt", "clip": "--clip /path/to/clip-folder",
             "diffusion": "--model /path/to/model.safetensors",
             "clipseg": "--mask-model /path/to/clipseg-folder",
             "controlnet": "/path/to/controlnet.safetensors",
             "depth": "--depth-model /path/to/depth-folder",
             "upscaler": "--upscaler /path/to/RealESRGAN_x4plus.pth",
             "face": "--restore-faces /path/to/GFPGANv1.4.pth",
             "caption": "--caption-model /path/to/blip-folder"}
_TEST_FLAGS = {"vqgan": "--vqgan test-tiny-vqgan --clip test-tiny-clip",
               "clip": "--vqgan test-tiny-vqgan --clip test-tiny-clip",
               "diffusion": "--model test-tiny-sd",
               "upscaler": "--upscaler test-tiny-esrgan",
               "face": "--restore-faces test-tiny-gfpgan",
               "caption": "--caption-model test-tiny-blip"}


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
        head = f"could not download {label} from {_mirrors(len(failures))}"
    lines = [head + ":"] + [f"  {i}. {f.where}: {f.reason}" for i, f in enumerate(failures, 1)]
    return "\n".join([*lines, advice(kind, target)])


def offline_message(missing: list, cache: Path) -> str:
    """No network and models missing from the cache: every one of them, once, and what to do."""
    needs = "the model this run needs is" if len(missing) == 1 else \
        f"the {len(missing)} models this run needs are"
    lines = [f"no network connection, and {needs} not in the cache ({cache}):"]
    for model in missing:
        files = ", ".join(f.name for f in model.files) or model.hub_repo
        lines.append(f"  {model.name} ({model.kind}, {human(model.size)}): {files}")
    lines.append("Connect to the internet and run again (the download resumes), or give a local "
                 "path, URL, Google Drive id or Hub id for each model.")
    hint = offline_models_hint(*(m.kind for m in missing))
    return "\n".join(lines + ([hint] if hint else []))


def advice(kind: str, target: Path | None) -> str:
    """How to supply a model yourself (`target`: where a file dropped into the cache goes),
    and how to try Dreamframe without it."""
    example = _EXAMPLES.get(kind, _EXAMPLES["vqgan"])
    where = f"put the file at {target}" if target else "download it into a folder and pass that"
    text = ("You can supply it yourself: give a local path, an http(s) URL, a Google Drive id "
            f"or a Hugging Face Hub id (owner/repo or owner/repo/file), e.g. {example}; or "
            f"{where}, and run again.")
    hint = offline_models_hint(kind)
    return f"{text}\n{hint}" if hint else text


def offline_models_hint(*kinds: str) -> str:
    """How to try Dreamframe offline with the test models of these kinds ("" for none)."""
    flags = list(dict.fromkeys(_TEST_FLAGS[k] for k in kinds if k in _TEST_FLAGS))
    if not flags:
        return ""
    return ("To try Dreamframe without downloading anything, use the offline test models "
            f"(random weights: they make noise, not art): {' or '.join(flags)}; in the "
            "notebooks, test_models = True.")


def _mirrors(count: int) -> str:
    return "its only mirror" if count == 1 else f"any of its {count} mirrors"
