"""`python -m helpers ...`: headless runs and model management.

The flags of `vqgan-clip` and `diffusion` are generated from the settings classes' field
metadata (`helpers.settings.fields`): a field added to a settings class appears here with its
help, range and choices, and nothing else to write. Each subcommand imports what it needs
inside its handler, so `--help` and argument parsing stay fast (no torch import).

Every expected failure prints `error: ...` and exits with status 2, having written nothing;
Ctrl-C keeps finished work, says how to continue, and exits with 130; an unexpected failure
prints one line and how to see the traceback (`--debug`). Output cut short by its reader
(`python -m helpers info a.png | head -1`) ends the command quietly with status 141, as for
any command a closed pipe stops.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from helpers.catalog import KINDS
from helpers.engines import ENGINES, Engine
from helpers.reporting import no_log, stderr_log

Handler = Callable[[argparse.Namespace], int]
EXIT_ERROR, EXIT_BUG, EXIT_INTERRUPTED = 2, 1, 130
EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `yes | head -1`'s `yes`


class StdoutClosed(Exception):
    """Whoever read the command's output stopped reading (`... | head -1`)."""


def out(text: object = "") -> None:
    """Print one line of the command's output (stdout); `StdoutClosed` if nobody reads it."""
    try:
        print(text)
    except BrokenPipeError:
        raise StdoutClosed from None


# --- flags from the settings metadata --------------------------------------------------------


def flag_name(field: str) -> str:
    """The CLI flag of a settings field: `cfg_scale` -> `--cfg-scale`."""
    return "--" + field.replace("_", "-")


def add_settings_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per settings field, with the field's help, range, unit, choices and default."""
    from helpers.settings import meta_of

    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.kind} settings")
    for field in dataclasses.fields(cls):
        meta = meta_of(field)
        names = [flag_name(field.name), *meta.flags]
        group.add_argument(*names, dest=field.name, default=None, help=_help(field, meta),
                           **_value_kwargs(hints[field.name], meta))


def _value_kwargs(annotation: Any, meta: Any) -> dict[str, Any]:
    """argparse's type / nargs / action for a field's annotation."""
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is tuple:
        if args[0] is str:
            return {"type": names_list, "metavar": meta.metavar or "A,B"}
        return {"type": args[0], "nargs": meta.nargs or "+", "metavar": _metavars(meta)}
    base = args[0] if args else annotation
    if meta.text == "lines":  # each use of the flag one line
        return {"type": lines, "action": JoinLines, "metavar": meta.metavar}
    kind = {int: int, float: float}.get(base, str)
    return {"type": kind, "metavar": meta.metavar or _choices_metavar(meta)}


class JoinLines(argparse.Action):
    """A multi-line setting's flag: each use adds a line (`--control A --control B`)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        old = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, values if old is None else f"{old}\n{values}")


def _metavars(meta: Any) -> Any:
    parts = (meta.metavar or "").split()
    return tuple(parts) if meta.nargs and len(parts) == meta.nargs else meta.metavar


def _choices_metavar(meta: Any) -> str | None:
    if meta.choices and len(meta.choices) <= 6:
        return "{" + ",".join(c or "''" for c in meta.choices) + "}"
    return None


def _help(field: dataclasses.Field, meta: Any) -> str:
    """The help line: the field's help, its range and unit, its choices, its default."""
    from helpers.settings.fields import help_line

    parts = [help_line(meta)]
    if meta.choices and len(meta.choices) > 6:
        parts.append("one of: " + ", ".join(meta.choices))
    default = field.default
    if default not in (None, "", (), False):
        shown = ",".join(default) if isinstance(default, tuple) else default
        parts.append(f"default {shown}")
    return "; ".join(parts).replace("%", "%%")


def lines(text: str) -> str:
    r"""A literal `\n` typed in a shell becomes a line break."""
    return text.replace("\\n", "\n")


def names_list(text: str) -> tuple[str, ...]:
    """`affine,jitter` or `none` -> a tuple of names."""
    names = [n.strip() for n in text.replace(" ", ",").split(",") if n.strip()]
    return () if names == ["none"] else tuple(names)


def given_settings(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The settings fields the user gave flags for; the dataclass holds every default."""
    values = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(cls)}
    values = {k: v for k, v in values.items() if v is not None}
    if getattr(args, "size", None):
        values["width"], values["height"] = args.size
    return values


def _run_options(p: argparse.ArgumentParser, engine: str) -> None:
    p.add_argument("--size", type=int, nargs=2, metavar=("W", "H"),
                   help="image size in pixels: the same as --width W --height H")
    p.add_argument("--resume", metavar="RUN", help=f"continue a stopped {engine} run folder")
    _add_common(p)


# --- engine commands -------------------------------------------------------------------------


def cmd_engine(args: argparse.Namespace) -> int:
    """Run the engine the command names; print the run folder as the last line."""
    from helpers.engines import get_engine

    record = get_engine(args.command)
    module, cls = record.module(), record.settings
    settings = None
    if getattr(args, "from_image", None):
        if args.resume:
            raise ValueError("from_image: cannot be combined with --resume")
        settings = module.settings_from_image(args.from_image, log=_log(args),
                                              **given_settings(args, cls))
    return _generate(args, cls, module.generate, settings)


def _generate(args: argparse.Namespace, cls: type, generate: Callable,
              settings: Any = None) -> int:
    values = given_settings(args, cls)
    options = {"cache": args.cache, "log": _log(args), "progress": not args.quiet}
    if args.resume:
        run_dir = generate(resume=args.resume, changes=values, **options)
    else:
        run_dir = generate(settings if settings is not None else cls(**values), **options)
    out(run_dir)
    return 0


def _add_engine(sub: argparse._SubParsersAction, record: Engine) -> None:
    """The engine's command: a flag per setting, --size, --resume, and --from-image where the
    engine reads pictures."""
    p = sub.add_parser(record.name, help=record.help, description=record.description)
    add_settings_flags(p, record.settings)
    _run_options(p, record.name)
    if record.from_image:
        p.add_argument("--from-image", metavar="PNG",
                       help="re-run with the settings stored in an image (flags override them)")
    p.set_defaults(handler=cmd_engine)


# --- other commands --------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    """List the catalogue with sizes and whether each model is in the cache."""
    from helpers.catalog import list_models
    from helpers.download import cache_folder, is_cached
    from helpers.download.messages import human

    cache = cache_folder(args.cache)
    models = list_models(args.kind)
    width = max(len(m.name) for m in models)
    out(f"{'name':<{width}}  {'kind':<10}  {'size':>8}  cached  description")
    for m in models:
        cached = "yes" if is_cached(m, cache) else "no"
        note = f"[test model: random weights] {m.description}" if m.test else m.description
        size = human(m.size) if m.size else "?"
        out(f"{m.name:<{width}}  {m.kind:<10}  {size:>8}  {cached:<6}  {note}")
    out(f"cache: {cache}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch catalogue models into the cache; print each model's folder."""
    from helpers.catalog import get_model
    from helpers.download import cache_folder, fetch_all

    cache = cache_folder(args.cache)
    models = [get_model(name) for name in args.names]
    for path in fetch_all(models, cache, progress=not args.quiet, log=_log(args)):
        out(path)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print the infotext and the settings stored in images and videos."""
    from helpers.runs import format_image_info
    from helpers.video.metadata import VIDEO_SUFFIXES, format_video_info

    for i, image in enumerate(args.images):
        if len(args.images) > 1:
            out(("\n" if i else "") + f"== {image}")
        video = Path(image).suffix.lower() in VIDEO_SUFFIXES
        out(format_video_info(image) if video else format_image_info(image))
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    """Make a video of a run folder or a folder of images; print its path as the last line."""
    from helpers.settings import VideoSettings
    from helpers.video import assemble

    settings = VideoSettings(**given_settings(args, VideoSettings))
    out(assemble(args.source, settings, log=_log(args), progress=not args.quiet))
    return 0


def _add_video(sub: argparse._SubParsersAction) -> None:
    from helpers.settings import VideoSettings

    p = sub.add_parser("video", help="make an mp4, webm or gif of a run's frames",
                       description="Frames -> video through ffmpeg: a run folder (its frames, "
                       "or --trajectory K) or any folder of numbered images, in natural order.")
    p.add_argument("source", metavar="SOURCE", help="a run folder or a folder of images")
    add_settings_flags(p, VideoSettings)
    _add_switches(p, "no progress bar or messages")
    p.set_defaults(handler=cmd_video)


def cmd_upscale(args: argparse.Namespace) -> int:
    """Upscale a picture or a run's frames; print the new file or folder as the last line."""
    from helpers.diffusion.tools.upscale import upscale_path

    out(upscale_path(args.source, args.upscaler, args.scale, args.tile, args.out,
                     device=args.device, cache=args.cache, log=_log(args),
                     progress=not args.quiet, restore_faces=args.restore_faces,
                     face_visibility=args.face_visibility,
                     codeformer_weight=args.codeformer_weight))
    return 0


def _add_upscale(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upscale", help="upscale a picture or every frame of a run",
                       description="A picture -> a new file beside it (NAME-x4.png, never "
                       "over a file); a run folder -> its frames into RUN/upscaled-x4-NAME/ "
                       "(frames done before are skipped, so a stopped run continues).")
    p.add_argument("source", metavar="IMAGE|RUN", help="a picture or a run folder")
    p.add_argument("--scale", type=float, default=4.0,
                   help="how many times larger, 1 to 8 (default 4); a model's own scale "
                   "is reached by its passes, then Lanczos to this one")
    p.add_argument("--upscaler", default="R-ESRGAN 4x+", metavar="NAME",
                   help="Lanczos, Nearest, a catalogue upscaler (python -m helpers models "
                   "--kind upscaler), or a .pth / .safetensors file, URL or Hub file "
                   "(default: R-ESRGAN 4x+)")
    p.add_argument("--tile", type=int, metavar="N",
                   help="tile side in input pixels, 0 for none (default: the largest that "
                   "fits the free memory)")
    p.add_argument("--out", metavar="DIR", help="write here instead (default: beside the "
                   "picture, or in the run folder)")
    p.add_argument("--restore-faces", default="", metavar="NAME",
                   help="then restore faces: GFPGAN or CodeFormer (a catalogue name, or a "
                   ".pth / .safetensors file); default: none")
    p.add_argument("--face-visibility", type=float, default=1.0, metavar="X",
                   help="restore faces: how much of the restored face shows, 0 to 1 "
                   "(default 1)")
    p.add_argument("--codeformer-weight", type=float, default=0.5, metavar="X",
                   help="restore faces, CodeFormer: 0 = the most restoration, 1 = the least "
                   "(default 0.5)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    _add_common(p)
    p.set_defaults(handler=cmd_upscale)


def cmd_interrogate(args: argparse.Namespace) -> int:
    """Print a prompt for a picture (its stored prompt, else BLIP + CLIP) as the last line."""
    from helpers.diffusion.tools.interrogate import describe_image

    out(describe_image(args.image, args.mode, args.caption_model, args.clip_model,
                       force=args.force, device=args.device, cache=args.cache, log=_log(args),
                       term_limit=args.terms))
    return 0


def _add_interrogate(sub: argparse._SubParsersAction) -> None:
    from helpers.diffusion.tools.interrogate import (
        DEFAULT_CAPTION,
        DEFAULT_CLIP,
        MODES,
        SDXL_CLIP,
        TERM_LIMIT,
    )

    p = sub.add_parser("interrogate", help="a prompt for a picture (the web UI's Interrogate "
                       "CLIP)", description="A picture -> a prompt to paste: its BLIP caption, "
                       "then (--mode clip) the artist, medium, movement and flavours CLIP finds "
                       "closest. A picture that carries its prompt (infotext) gives that back.")
    p.add_argument("image", metavar="IMAGE", help="a picture: path, URL or Google Drive id")
    p.add_argument("--mode", choices=MODES, default="clip",
                   help="caption: BLIP's caption only; clip: caption + CLIP's best terms "
                   "(default: clip)")
    p.add_argument("--caption-model", default=DEFAULT_CAPTION, metavar="NAME",
                   help="blip-large, blip-base, a Hub id or a folder (default: "
                   f"{DEFAULT_CAPTION})")
    p.add_argument("--clip-model", default=DEFAULT_CLIP, metavar="NAME",
                   help=f"the CLIP ranking the terms: {DEFAULT_CLIP} for SD 1.x prompts, "
                   f"{SDXL_CLIP} for SDXL, any catalogue CLIP, Hub id or folder "
                   f"(default: {DEFAULT_CLIP})")
    p.add_argument("--force", action="store_true",
                   help="interrogate even a picture that carries its prompt")
    p.add_argument("--terms", type=int, default=TERM_LIMIT, metavar="N",
                   help="CLIP ranks the first N lines of each term list, 0 for all (the "
                   f"flavours are about 100,000: slow the first time) (default: {TERM_LIMIT}, "
                   "as the web UI)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    _add_common(p)
    p.set_defaults(handler=cmd_interrogate)


def _log(args: argparse.Namespace) -> Callable[[str], object]:
    return no_log if getattr(args, "quiet", False) else stderr_log


def _add_common(p: argparse.ArgumentParser, quiet: str = "no progress bars or messages") -> None:
    """--cache, --quiet and --debug."""
    p.add_argument("--cache", metavar="DIR",
                   help="model cache folder (default: $DREAMFRAME_CACHE or ~/.cache/dreamframe)")
    _add_switches(p, quiet)


def _add_switches(p: argparse.ArgumentParser, quiet: str) -> None:
    """--quiet (with its help) and --debug."""
    p.add_argument("--quiet", action="store_true", help=quiet)
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers",
        description="Dreamframe: text-to-image art and frame videos, headless.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("models", help="list the model catalogue and what is cached")
    p.add_argument("--kind", choices=KINDS, help="only this kind")
    _add_common(p)
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("download", help="download models into the cache")
    p.add_argument("names", nargs="+", metavar="NAME", help="catalogue names")
    _add_common(p)
    p.set_defaults(handler=cmd_download)

    for record in ENGINES.values():
        _add_engine(sub, record)

    _add_video(sub)
    _add_upscale(sub)
    _add_interrogate(sub)

    p = sub.add_parser("info", help="print the settings stored in images and videos")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="PNG files or videos (.mp4, .webm) made by Dreamframe")
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    p.set_defaults(handler=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad input ends with one `error:` message and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        code = _handle(args)
        _flush_stdout()  # a closed pipe shows here, while we can still end quietly
        return code
    except StdoutClosed:
        return _stdout_closed()
    except KeyboardInterrupt as e:
        print(getattr(e, "message", "interrupted"), file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        if args.debug:
            raise
        return _report(e)


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise StdoutClosed from None


def _stdout_closed() -> int:
    """End quietly when stdout's reader is gone: what is left to print goes to /dev/null
    (else Python's last flush at exit reports the broken pipe), and the status says so."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout (tests capture it)
        pass
    return EXIT_PIPE


# The commands that load models: the libraries they import are silenced before they load.
LOADING = (*ENGINES, "download", "upscale", "interrogate")


def _handle(args: argparse.Namespace) -> int:
    """Run the command with the libraries' own chatter (warnings, logs, loading bars) hidden,
    as in the notebooks; `--quiet` hides our messages and the download bars too; `--debug`
    shows everything."""
    from helpers.reporting import quiet

    silent = getattr(args, "quiet", False)
    with quiet(not getattr(args, "debug", False), downloads=not silent,
               imports=args.command in LOADING):
        return args.handler(args)


def _report(error: Exception) -> int:
    """`error: ...` for what a user can fix (status 2); a short note for a bug (status 1)."""
    from helpers.download import DownloadError

    if isinstance(error, (ValueError, OSError, DownloadError)):
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    if type(error).__name__ == "OutOfMemoryError":
        print("error: out of memory on the GPU; use a smaller size or batch, fewer cutouts, "
              "or turn on the memory options (--checkpointing on, --attention-slicing on, "
              "--cpu-offload on)", file=sys.stderr)
        return EXIT_ERROR
    message = (str(error).strip().splitlines() or [""])[0][:200]
    print(f"error: unexpected {type(error).__name__}: {message}\nThis is a bug in Dreamframe "
          "or a library; run the same command with --debug to see the traceback, and report "
          "it.", file=sys.stderr)
    return EXIT_BUG
