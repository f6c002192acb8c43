"""`python -m helpers ...`: headless runs and model management.

Each subcommand imports what it needs inside its handler, so `--help` and argument parsing
stay fast (no torch import).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def cmd_models(args: argparse.Namespace) -> int:
    """List the catalogue with sizes and whether each model is in the cache."""
    from helpers.catalog import list_models
    from helpers.download import cache_dir, is_cached
    from helpers.download.messages import human

    models = list_models(args.kind)
    width = max(len(m.name) for m in models)
    print(f"{'name':<{width}}  {'kind':<9}  {'size':>8}  cached  description")
    for m in models:
        cached = "yes" if is_cached(m, args.cache) else "no"
        note = f"[test model: random weights] {m.description}" if m.test else m.description
        size = human(m.size) if m.size else "?"
        print(f"{m.name:<{width}}  {m.kind:<9}  {size:>8}  {cached:<6}  {note}")
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


def cmd_vqgan_clip(args: argparse.Namespace) -> int:
    """Run VQGAN+CLIP; print the run folder as the last line."""
    from helpers.render import render_vqgan_clip
    from helpers.settings import VQGANClipSettings

    settings = None
    if args.resume is None:
        settings = VQGANClipSettings(**_given(args, VQGAN_CLIP_FLAGS))
    bar = _progress(args)
    run_dir = render_vqgan_clip(settings, resume=args.resume, iterations=args.iterations,
                                cache=args.cache, on_step=bar, log=_log)
    bar.close()
    print(run_dir)
    return 0


# flag destination -> settings field, for flags whose names differ from the field
VQGAN_CLIP_FLAGS = {
    "prompt": "prompt", "image_prompt": "image_prompts", "noise_prompt": "noise_prompts",
    "init_image": "init_image", "init_weight": "init_weight", "init_noise": "init_noise",
    "iterations": "iterations", "save_every": "save_every", "story_every": "story_every",
    "prompt_schedule": "prompt_schedule",
    "seed": "seed", "vqgan": "vqgan", "clip": "clip", "cutn": "cutn", "cut_pow": "cut_pow",
    "cut_method": "cut_method", "augment": "augments", "optimizer": "optimizer", "lr": "lr",
    "precision": "precision", "device": "device", "out": "out",
    "checkpointing": "checkpointing",
}


def _given(args: argparse.Namespace, flags: dict[str, str]) -> dict[str, object]:
    """Settings fields for the flags the user gave; the dataclass holds every default."""
    values = {field: getattr(args, dest) for dest, field in flags.items()}
    values = {k: v for k, v in values.items() if v is not None}
    if getattr(args, "size", None):
        values["width"], values["height"] = args.size
    return values


class _Bar:
    """A tqdm progress bar on stderr, fed by step callbacks."""

    def __init__(self, disable: bool):
        self.disable, self.bar = disable, None

    def __call__(self, step, run_dir) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(initial=step.i - 1, disable=self.disable, file=sys.stderr,
                            unit="it", desc="vqgan-clip")
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{step.loss:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress(args: argparse.Namespace) -> _Bar:
    return _Bar(disable=args.quiet)


def _lines(text: str) -> str:
    r"""A literal `\n` typed in a shell becomes a line break."""
    return text.replace("\\n", "\n")


def _augments(text: str) -> tuple[str, ...]:
    """`affine,jitter` or `none` -> a tuple of names."""
    names = [n.strip() for n in text.replace(" ", ",").split(",") if n.strip()]
    return () if names == ["none"] else tuple(names)


def _add_vqgan_clip(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vqgan-clip", help="generate with VQGAN+CLIP",
                       description="Optimise a VQGAN image so CLIP agrees with weighted prompts.")
    add = p.add_argument
    add("--prompt", help='weighted prompts, e.g. "desert:50 | snow:25" ("^" between story sets)')
    add("--image-prompt", metavar="TEXT", help='target images, "a.png:1 | https://x/b.jpg:0.5"')
    add("--noise-prompt", metavar="TEXT", help='seeded noise targets, "seed:weight | ..."')
    add("--init-image", metavar="PATH|URL", help="start from this image")
    add("--init-weight", type=float, metavar="X", help="pull towards the init image's latent")
    add("--init-noise", choices=["pixels", "gradient"], help="start from a noise image")
    add("--size", type=int, nargs=2, metavar=("W", "H"), help="image size in pixels")
    add("--iterations", type=int, metavar="N", help="optimisation steps")
    add("--save-every", type=int, metavar="K", help="save a frame every K iterations")
    add("--story-every", type=int, metavar="N", help="switch story prompt sets every N steps")
    add("--prompt-schedule", metavar="TEXT", type=_lines,
        help='keyframes by iteration, "0: desert\\n100: sea" (overrides --prompt)')
    add("--seed", type=int, metavar="S", help="random seed (default: random, recorded)")
    add("--vqgan", metavar="NAME|PATH", help="catalogue name or .ckpt path")
    add("--clip", metavar="TEXT", help='CLIP models with weights, "name:1 | name:0.5"')
    add("--cutn", type=int, metavar="N", help="cutouts per step")
    add("--cut-pow", type=float, metavar="X", help="cutout size exponent")
    add("--cut-method", choices=["classic", "pooled"], help="how cutouts are made")
    add("--augment", type=_augments, metavar="NAMES", help="comma-separated augmentations, or none")
    add("--optimizer", metavar="NAME", help="Adam, AdamW, Adamax, Adagrad, RAdam or RMSprop")
    add("--lr", type=float, metavar="X", help="learning rate")
    add("--precision", choices=["auto", "fp32", "bf16", "fp16"], help="arithmetic precision")
    add("--device", metavar="DEVICE", help="auto, cuda, mps, cpu, cuda:1 ...")
    add("--checkpointing", choices=["auto", "on", "off"],
        help="recompute the decoder in the backward pass: less memory, ~25%% slower")
    add("--out", metavar="DIR", help="workspace folder (runs go in DIR/runs/)")
    add("--resume", metavar="RUN", help="continue a stopped run folder")
    add("--quiet", action="store_true", help="no progress bar")
    _add_cache(p)
    p.set_defaults(handler=cmd_vqgan_clip)


def cmd_diffusion(args: argparse.Namespace) -> int:
    """Run latent diffusion; print the run folder as the last line."""
    from helpers.diffusion import generate, settings_from_image
    from helpers.settings import DiffusionSettings

    values = _given(args, DIFFUSION_FLAGS)
    if args.from_image:
        settings = settings_from_image(args.from_image, **values)
    else:
        settings = DiffusionSettings(**values)
    preview = None if args.quiet else _preview_log
    print(generate(settings, cache=args.cache, log=_log, on_preview=preview))
    return 0


def _preview_log(step: int, total: int, _image: object) -> None:
    _log(f"step {step}/{total}")


DIFFUSION_FLAGS = {
    "prompt": "prompt", "negative": "negative_prompt", "model": "model",
    "model_config": "model_config", "vae": "vae", "sampler": "sampler", "steps": "steps",
    "cfg": "cfg_scale", "seed": "seed", "init_image": "init_image", "strength": "strength",
    "batch_count": "batch_count", "batch_size": "batch_size", "seed_mode": "seed_mode",
    "prompt_mode": "prompt_mode", "clip_skip": "clip_skip", "preview_every": "preview_every",
    "preview_mode": "preview_mode", "save_trajectory": "save_trajectory",
    "sdxl_original_size": "sdxl_original_size", "precision": "precision", "device": "device",
    "attention_slicing": "attention_slicing", "vae_slicing": "vae_slicing",
    "vae_tiling": "vae_tiling", "cpu_offload": "cpu_offload", "out": "out",
}


def _add_diffusion(sub: argparse._SubParsersAction) -> None:
    from helpers.diffusion.samplers import SAMPLER_NAMES

    p = sub.add_parser("diffusion", help="generate with Stable Diffusion (diffusers)",
                       description="txt2img / img2img with weighted prompts and web-UI samplers.")
    add = p.add_argument
    add("--prompt", help='weighted prompts, "desert:50 | snow:25"; negative weights push away')
    add("--negative", metavar="TEXT", help="negative prompt")
    add("--model", metavar="NAME|PATH", help="catalogue name, Hub id, folder or .safetensors file")
    add("--model-config", metavar="ID|DIR", help="configs for a single-file model")
    add("--vae", metavar="NAME|PATH", help="VAE override")
    add("--sampler", choices=SAMPLER_NAMES, metavar="NAME", help=", ".join(SAMPLER_NAMES))
    add("--steps", type=int, metavar="N", help="denoising steps")
    add("--cfg", type=float, metavar="X", help="CFG scale")
    add("--seed", type=int, metavar="S", help="random seed (default: random, recorded)")
    add("--size", type=int, nargs=2, metavar=("W", "H"), help="image size (multiple of 8)")
    add("--init-image", metavar="PATH", help="img2img start image")
    add("--strength", type=float, metavar="X", help="img2img denoising strength in (0, 1]")
    add("--batch-count", type=int, metavar="N", help="batches, one after another")
    add("--batch-size", type=int, metavar="N", help="images per batch")
    add("--seed-mode", choices=["iter", "fixed", "random"], help="seeds across images")
    add("--prompt-mode", choices=["composable", "blend"], help="how weighted pieces combine")
    add("--clip-skip", type=int, metavar="N", help="web-UI meaning: 1 = last layer, 2 = one before")
    add("--preview-every", type=int, metavar="N", help="preview every N steps")
    add("--preview-mode", choices=["fast", "vae"], help="latent approximation or full decode")
    add("--save-trajectory", action="store_true", default=None, help="save every step's image")
    add("--sdxl-original-size", type=int, nargs=2, metavar=("W", "H"), help="SDXL conditioning")
    add("--precision", choices=["auto", "fp32", "bf16", "fp16"], help="arithmetic precision")
    add("--device", metavar="DEVICE", help="auto, cuda, mps, cpu ...")
    for name in ("attention-slicing", "vae-slicing", "vae-tiling", "cpu-offload"):
        add(f"--{name}", choices=["auto", "on", "off"], help="memory option (auto: from free VRAM)")
    add("--out", metavar="DIR", help="workspace folder (runs go in DIR/runs/)")
    add("--from-image", metavar="PNG", help="re-run with the settings stored in an image")
    add("--quiet", action="store_true", help="no step messages")
    _add_cache(p)
    p.set_defaults(handler=cmd_diffusion)


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

    _add_vqgan_clip(sub)
    _add_diffusion(sub)

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
