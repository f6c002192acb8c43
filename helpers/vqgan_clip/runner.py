"""VQGAN+CLIP, stage 4: a run end to end, into a run folder, resumable after any stop.

check inputs -> load models -> the loop -> frames and resume points. The run folder is made
only after the models loaded, so bad input writes nothing. At every frame the image is saved,
then its resume point (z, optimiser, RNG, frames so far): a kill between the two leaves one
frame the resume point does not know, which a resumed run makes again, so after any number of
stops a run has exactly the frames of an uninterrupted one. That frame is known by the number
and hash announced before it was written (`runs.PENDING_FILE`); any other file numbered past
the resume point (renamed or added by hand) is moved aside, never deleted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import runs
from helpers.reporting import Log, progress_bar
from helpers.settings import VQGANClipSettings
from helpers.vqgan_clip.checks import Checked, animation_plan, check_inputs
from helpers.vqgan_clip.loading import Loaded, load_models
from helpers.vqgan_clip.loop import Step, frame_due, run, to_pil

OnStep = Callable[[Step, Path], object]  # (the finished step, the run folder)
RESUME_CHANGES = ("iterations", "frames", "device")  # what may differ when a run continues


def infotext(settings: VQGANClipSettings, i: int, loss: float) -> str:
    """The web-UI style infotext of a VQGAN+CLIP frame."""
    from helpers.metadata.infotext import format_infotext

    params = {
        "Steps": i,
        "Frame": (i - 1) // settings.iterations_per_frame + 1 if settings.animate else None,
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


def generate(settings: VQGANClipSettings | None = None, *, resume: str | os.PathLike | None = None,
             changes: dict[str, Any] | None = None, cache: str | os.PathLike | None = None,
             log: Log = print, progress: bool = True, on_step: OnStep | None = None,
             loaded: Loaded | None = None) -> Path:
    """Run VQGAN+CLIP into a new run folder, or continue the run folder `resume` (`changes`:
    more iterations, another device); return the run folder."""
    state = None
    if resume is not None:
        settings, state = resume_point(Path(resume), changes or {})
    elif settings is None:
        raise ValueError("settings: give settings for a new run, or a run folder to resume")
    checked = check_inputs(settings, cache, log)
    loaded = loaded or load_models(checked, cache, log, progress)
    if resume is None:
        run_dir = runs.new_run(Path(checked.settings.out), runs.run_title(checked.settings),
                               checked.settings.to_json())
    else:
        run_dir = _continue(Path(resume), checked.settings, state, log)
    log(f"run folder: {run_dir}")
    _loop(checked, loaded, run_dir, state, progress, on_step)
    return run_dir


def _loop(checked: Checked, loaded: Loaded, run_dir: Path, state: dict | None, progress: bool,
          on_step: OnStep | None) -> None:
    settings = checked.settings
    frames = int(state.get("frames", 0)) if state else 0
    done = int(state["i"]) if state else 0
    bar = progress_bar(settings.iterations, "vqgan-clip", progress, initial=done)
    try:
        for step in run(settings, loaded, checked.inputs, state):
            if frame_due(settings, step.i):
                frames = save(run_dir, settings, step, frames + 1)
                done = step.i
                bar.set_postfix(loss=f"{step.loss:.4f}", refresh=False)
            bar.update(1)
            if on_step is not None:
                on_step(step, run_dir)
    except KeyboardInterrupt:
        raise runs.RunStopped(run_dir, f"stopped: frames up to iteration {done} are saved in "
                              f"{run_dir}; continue with python -m helpers vqgan-clip "
                              f"--resume {run_dir}") from None
    finally:
        bar.close()


def save(run_dir: Path, settings: VQGANClipSettings, step: Step, index: int) -> int:
    """Save frame `index` of a step (its image after the update, 8-bit truncated as the
    references save theirs), then the resume point that knows of it; return `index`."""
    runs.save_frame(run_dir, index, to_pil(step.image), infotext(settings, step.i, step.loss),
                    settings.to_json(), announce=True)
    runs.save_resume_point(run_dir, step.state(), index)
    return index


def resume_point(run_dir: Path, changes: dict[str, Any]) -> tuple[VQGANClipSettings, dict]:
    """The stored settings with `changes` applied, and the resume state; nothing is written."""
    settings = animation_plan(runs.resumed_settings(run_dir, VQGANClipSettings, changes,
                                                    RESUME_CHANGES))
    state = runs.load_state(run_dir)
    if not isinstance(state.get("i"), int):
        raise ValueError(f"resume: the resume point {run_dir / runs.STATE_FILE} is damaged "
                         "(no iteration number)")
    if state["i"] >= settings.iterations:
        raise ValueError(
            f"{'frames' if settings.animate else 'iterations'}: the run already did "
            f"{state['i']} iterations; give more to continue it (it has "
            f"{settings.frames if settings.animate else settings.iterations})"
        )
    return settings, state


def _continue(run_dir: Path, settings: VQGANClipSettings, state: dict, log: Log) -> Path:
    """Make the folder agree with its resume point: drop the frame a kill left behind the state
    and set aside what else lies past it, and record changed settings (only now, after every
    check passed)."""
    runs.clear_after_resume_point(run_dir, state, log)
    runs.write_run_settings(run_dir, settings.to_json())
    return run_dir
