"""A VQGAN+CLIP run end to end: check inputs, load models, loop, save frames and resume points.

One call per action for the notebooks and the CLI. Order matters: settings and input files are
checked and models loaded before the run folder is made, so bad input writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers.device import pick_device
from helpers.inputs import open_image
from helpers.settings import VQGANClipSettings, random_seed

Log = Callable[[str], object]
STATE = "state.pt"  # the resume point beside the frames: z, optimiser, RNG, iteration


def load_inputs(settings: VQGANClipSettings, cache: str | Path | None = None) -> Any:
    """Read the init image and image prompts before any model loads."""
    from helpers.prompts import parse_prompts
    from helpers.vqgan_clip import Inputs

    inputs = Inputs()
    if settings.init_image:
        inputs.init = open_image(settings.init_image, "init_image", cache)
    if settings.image_prompts.strip():
        for p in parse_prompts(settings.image_prompts):
            inputs.image_prompts.append((open_image(p.text, "image_prompts", cache), p))
    return inputs


def vqgan_checkpoint(spec: str, cache: str | Path | None = None, log: Log = print) -> Path:
    """The .ckpt of a catalogue VQGAN (downloaded if needed) or of a user's path."""
    from helpers.catalog import get_model
    from helpers.download import fetch

    path = Path(spec).expanduser()
    if path.suffix in (".ckpt", ".safetensors") or path.exists():
        if not path.exists():
            raise ValueError(f"vqgan: checkpoint not found: {spec!r}")
        return path / "model.ckpt" if path.is_dir() else path
    model = get_model(spec)
    if model.kind != "vqgan":
        raise ValueError(f"vqgan: {spec!r} is a {model.kind} model, not a VQGAN")
    found = Path(fetch(model, cache=cache, log=log))
    return found / "model.ckpt" if found.is_dir() else found


def load_models(settings: VQGANClipSettings, cache: str | Path | None = None,
                log: Log = print) -> Any:
    """Load the VQGAN and the CLIP models of a run onto the chosen device."""
    from helpers.clip import load_clips, parse_clip_spec
    from helpers.vqgan import load_vqgan
    from helpers.vqgan_clip import Models, plan_memory

    parse_clip_spec(settings.clip)  # a bad spec fails before anything downloads
    device = pick_device(settings.device, log)
    checkpointing = plan_memory(settings, device)
    if checkpointing and settings.checkpointing == "auto":
        log("decoder checkpointing on: this size needs it to fit in memory (about 25% slower)")
    vqgan = load_vqgan(vqgan_checkpoint(settings.vqgan, cache, log), device=device)
    vqgan.checkpointing = checkpointing
    clips = load_clips(settings.clip, device=device, cache=cache)
    return Models(vqgan, clips, device)


def _check_size(settings: VQGANClipSettings, factor: int, log: Log) -> VQGANClipSettings:
    width, height = (settings.width // factor) * factor, (settings.height // factor) * factor
    if not width or not height:
        raise ValueError(
            f"size: {settings.width}x{settings.height} is smaller than one latent token of this "
            f"VQGAN ({factor}x{factor} pixels)"
        )
    if (width, height) != (settings.width, settings.height):
        log(f"size {settings.width}x{settings.height} rounded down to {width}x{height} "
            f"(a multiple of the VQGAN's factor {factor})")
    return settings.replace(width=width, height=height)


def infotext(settings: VQGANClipSettings, i: int, loss: float) -> str:
    """The web-UI style infotext of a VQGAN+CLIP frame."""
    from helpers.runs import format_infotext

    params = {
        "Steps": i,
        "Sampler": "VQGAN+CLIP",
        "Optimizer": settings.optimizer,
        "Learning rate": settings.lr,
        "Seed": settings.seed,
        "Size": f"{settings.width}x{settings.height}",
        "Model": Path(settings.vqgan).stem if "/" in settings.vqgan else settings.vqgan,
        "CLIP": settings.clip,
        "Cutouts": settings.cutn,
        "Cut power": settings.cut_pow,
        "Loss": f"{loss:.4f}",
    }
    return format_infotext(settings.prompt, "", params)


StepCallback = Callable[[Any, Path], object]


def render_vqgan_clip(
    settings: VQGANClipSettings | None = None,
    *,
    resume: str | Path | None = None,
    iterations: int | None = None,
    cache: str | Path | None = None,
    on_step: StepCallback | None = None,
    log: Log = print,
) -> Path:
    """Run VQGAN+CLIP into a new run folder (or continue `resume`); return the run folder."""
    from helpers import runs
    from helpers.vqgan_clip import frame_due, run

    state = None
    if resume is not None:
        run_dir = Path(resume)
        settings, state = _resume_point(run_dir, iterations)
    elif settings is None:
        raise ValueError("settings: give settings for a new run, or a run folder to resume")
    if settings.seed is None:
        settings = settings.replace(seed=random_seed())
    inputs = load_inputs(settings, cache)
    models = load_models(settings, cache, log)
    settings = _check_size(settings, models.vqgan.factor, log)
    if resume is None:
        run_dir = runs.new_run(Path(settings.out), settings.prompt, settings.to_json())
    log(f"run folder: {run_dir}")
    last, saved = None, None
    try:
        for step in run(settings, models, inputs, state):
            last = step
            if frame_due(settings, step.i):
                saved = _save(run_dir, settings, step)
            if on_step is not None:
                on_step(step, run_dir)
    except KeyboardInterrupt:
        if last is not None and saved is not last:
            _save(run_dir, settings, last)
        log(f"stopped after iteration {last.i if last else 0}; continue with --resume {run_dir}")
    return run_dir


def _save(run_dir: Path, settings: VQGANClipSettings, step: Any) -> Any:
    from helpers import runs
    from helpers.vqgan_clip import to_pil

    index = runs.next_frame_index(run_dir)
    runs.save_frame(run_dir, index, to_pil(step.image), infotext(settings, step.i, step.loss),
                    settings.to_json())
    runs.save_state(run_dir, step.state, STATE)
    return step


def _resume_point(run_dir: Path, iterations: int | None) -> tuple[VQGANClipSettings, Any]:
    from helpers import runs

    settings_file = run_dir / "settings.json"
    if not settings_file.is_file():
        raise ValueError(f"resume: {run_dir} is not a run folder (no settings.json)")
    settings = VQGANClipSettings.from_json(settings_file.read_text())
    if not (run_dir / STATE).is_file():
        raise ValueError(f"resume: {run_dir} has no resume point ({STATE})")
    state = runs.load_state(run_dir, STATE)
    if iterations is not None and iterations != settings.iterations:
        from helpers.files import atomic_write_text

        settings = settings.replace(iterations=iterations)
        atomic_write_text(settings_file, settings.to_json())
    if state["i"] >= settings.iterations:
        raise ValueError(
            f"iterations: the run already did {state['i']} of {settings.iterations}; "
            "give more iterations to continue it"
        )
    return settings, state
