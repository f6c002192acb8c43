"""`python -m helpers ...`: headless runs and model management.

Each subcommand imports what it needs inside its handler, so `--help` and argument parsing
stay fast (no torch import).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def _human_size(size: int | None) -> str:
    if not size:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return "?"


def cmd_models(args: argparse.Namespace) -> int:
    """List the catalogue with sizes and whether each model is in the cache."""
    from helpers.catalog import list_models
    from helpers.download import cache_dir, is_cached

    models = list_models(args.kind)
    width = max(len(m.name) for m in models)
    print(f"{'name':<{width}}  {'kind':<9}  {'size':>8}  cached  description")
    for m in models:
        cached = "yes" if is_cached(m, args.cache) else "no"
        note = f"[test model: random weights] {m.description}" if m.test else m.description
        print(f"{m.name:<{width}}  {m.kind:<9}  {_human_size(m.size):>8}  {cached:<6}  {note}")
    print(f"cache: {cache_dir(args.cache)}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch catalogue models into the cache; print each model's folder."""
    from helpers.download import fetch

    for name in args.names:
        path = fetch(name, cache=args.cache, progress=not args.quiet, log=_log)
        print(path)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print the infotext and the settings stored in images."""
    from helpers.runs import format_image_info

    for i, image in enumerate(args.images):
        if len(args.images) > 1:
            print(("\n" if i else "") + f"== {image}")
        print(format_image_info(image))
    return 0


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def _add_cache(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache",
        metavar="DIR",
        help="model cache folder (default: $DREAMFRAME_CACHE or ~/.cache/dreamframe)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers",
        description="Dreamframe: text-to-image art and frame videos, headless.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("models", help="list the model catalogue and what is cached")
    p.add_argument("--kind", choices=["vqgan", "clip", "diffusion"], help="only this kind")
    _add_cache(p)
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("download", help="download models into the cache")
    p.add_argument("names", nargs="+", metavar="NAME", help="catalogue names")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_cache(p)
    p.set_defaults(handler=cmd_download)

    p = sub.add_parser("info", help="print the settings stored in images")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG files made by Dreamframe")
    p.set_defaults(handler=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad input ends with one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
