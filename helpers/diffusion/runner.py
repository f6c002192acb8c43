"""Diffusion, stage 4: a run end to end, into a run folder, resumable after any stop.

check inputs -> load the model -> the loop -> every image saved as soon as its batch is done,
with the web UI's infotext and its own settings (its seed, batch of one), so `--from-image`
re-makes any one of them. The run folder is made only after the model loaded, so bad input
writes nothing. Images are independent of each other: a stopped run continues with the images
it lacks (`resume`), the same ones an uninterrupted run makes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import runs
from helpers.diffusion.animate import run_animation
from helpers.diffusion.checks import Checked, check_inputs
from helpers.diffusion.extras import applied, infotext_hashes
from helpers.diffusion.frames import frame_count
from helpers.diffusion.image_info import image_settings as image_settings  # re-exported
from helpers.diffusion.image_info import save_image
from helpers.diffusion.image_info import settings_from_image as settings_from_image  # re-exported
from helpers.diffusion.loading import Loaded, load_models, memory_options, pipeline_for
from helpers.diffusion.loop import fast_preview, run
from helpers.diffusion.prompt_syntax import EncoderPrompts
from helpers.reporting import Log, plural, progress_bar
from helpers.settings import DiffusionSettings

OnImage = Callable[[Path, Any], object]  # (saved PNG, PIL image)
OnPreview = Callable[[int, int, Any], object]  # (step, steps in all, PIL image)
RESUME_CHANGES = ("batch_count", "frames", "device")  # what may differ when a run continues


def generate(settings: DiffusionSettings | None = None, *,
             resume: str | os.PathLike | None = None, changes: dict[str, Any] | None = None,
             cache: str | os.PathLike | None = None, log: Log = print, progress: bool = True,
             on_image: OnImage | None = None, on_preview: OnPreview | None = None,
             loaded: Loaded | None = None) -> Path:
    """Run `settings` into a new run folder, or continue the run folder `resume` (`changes`:
    more batches, another device); return the run folder (`loaded`: a pipeline to reuse)."""
    if resume is not None:
        settings = resume_settings(Path(resume), changes or {})
    elif settings is None:
        raise ValueError("settings: give settings for a new run, or a run folder to resume")
    checked = check_inputs(settings, cache, log)
    settings = checked.settings
    if loaded is None:
        loaded = load_models(checked, cache, log, progress)
    elif checked.control:  # a reused pipeline: the ControlNets it lacks
        from helpers.diffusion.tools.control.run import load_controlnets

        load_controlnets(loaded, checked.control, cache, log)
    if resume is None:
        run_dir = runs.new_run(Path(settings.out), runs.run_title(settings), settings.to_json())
    else:
        run_dir = Path(resume)
        runs.write_run_settings(run_dir, settings.to_json())
    done = {int(p.stem) for p in runs.list_frames(run_dir)}
    if checked.control:
        from helpers.diffusion.tools.control.run import save_maps

        save_maps(run_dir, checked.control)
    log(f"run folder: {run_dir}")
    saved = _loop(checked, loaded, run_dir, done, progress, on_image, on_preview, log)
    log(f"{plural(saved, 'image')} in {run_dir}")
    return run_dir


def _loop(checked: Checked, loaded: Loaded, run_dir: Path, done: set[int], progress: bool,
          on_image: OnImage | None, on_preview: OnPreview | None, log: Log) -> int:
    """Make and save every image the run folder lacks; return how many it has."""
    settings = checked.settings
    units = _units(settings)  # batches, or an animation's frames
    steps = settings.steps
    if checked.init_image is not None or settings.animate in ("2d", "video"):
        steps = int(steps * settings.strength)  # img2img skips the first steps
    left = (units or 1) - len(done) // (1 if settings.animate else settings.batch_size)
    bar = progress_bar(max(steps, 1) * left, "diffusion", progress, unit="step")
    on_step = _on_step(settings, loaded, run_dir, on_preview, bar, units)
    by_image = not loaded.family.reports_steps  # count whole images
    hashes = infotext_hashes(settings, checked.extras)  # once a run, not once an image
    saved = len(done)
    try:
        with applied(loaded.pipe, settings, log, checked.extras) as prompts, \
                memory_options(loaded.pipe, checked.memory, checked.device):
            for item in _items(checked, prompts, loaded, run_dir, on_step, done):
                if checked.faces is not None:
                    item = _restored(item, checked.faces, settings)
                path = save_image(run_dir, item, settings, loaded, hashes)
                saved += 1
                if by_image:
                    bar.update(steps)
                if on_image:
                    on_image(path, item.image)
    except KeyboardInterrupt:
        raise runs.RunStopped(run_dir, f"stopped: {plural(saved, 'image')} saved in {run_dir}; "
                              f"continue with python -m helpers diffusion --resume {run_dir}"
                              ) from None
    finally:
        bar.close()
    return saved


def _items(checked: Checked, prompts: EncoderPrompts, loaded: Loaded, run_dir: Path,
           on_step, done: set[int]):
    """The images (or animation frames) the run folder lacks, as they are made (`prompts`:
    what the text encoders get)."""
    settings = checked.settings
    if settings.animate:
        from helpers.diffusion.tools.control.run import frame_control

        def load_frame(index: int) -> Any:
            return runs.read_frame(run_dir, index)

        return run_animation(settings, loaded, checked.init_image, on_step, done, load_frame,
                             prompts, frame_control(checked, loaded, run_dir))
    from helpers.diffusion.loop import sd_upscale
    from helpers.diffusion.tools.control.run import run_control
    from helpers.diffusion.tools.sd_upscale import Upscaling

    pipe = pipeline_for(loaded, settings.sampler, checked.init_image is not None)
    control = run_control(settings, checked.control, loaded, checked.device)
    make = sd_upscale if isinstance(checked.init_image, Upscaling) else run  # tile by tile
    made = make(settings, loaded, checked.init_image, on_step, pipe, skip=done,
                plan=prompts.plan(), control=control)
    return (item for item in made if item.index not in done)


def _restored(item: Any, restorer: Any, settings: DiffusionSettings) -> Any:
    """The image (or frame) with its faces restored, as the web UI's Restore faces does."""
    from dataclasses import replace

    from helpers.diffusion.tools.faces import restore_faces

    return replace(item, image=restore_faces(restorer, item.image, settings.face_visibility,
                                             settings.codeformer_weight))


def _units(settings: DiffusionSettings) -> int | None:
    return frame_count(settings) if settings.animate else settings.batch_count


def _on_step(settings: DiffusionSettings, loaded: Loaded, run_dir: Path,
             on_preview: OnPreview | None, bar: Any, units: int | None):
    """The step callback: the progress bar, previews every N steps, trajectory frames."""
    previews = on_preview is not None and settings.preview_every > 0

    def on_step(batch: int, step: int, total: int, latents: Any, decode: Any) -> None:
        if step == 0 and units:  # the sampler knows its real count (second-order ones more)
            bar.total = bar.n + total * (units - batch)
        bar.update(1)
        if previews and (step + 1) % settings.preview_every == 0:
            if settings.preview_mode == "vae":
                image = decode(latents[:1])[0]
            else:
                image = fast_preview(latents[:1], loaded.family)[0]
            on_preview(step + 1, total, image)
        if settings.save_trajectory:
            _save_trajectory(run_dir, batch, step, decode(latents), settings)

    return on_step


def _save_trajectory(run_dir: Path, batch: int, step: int, images: list,
                     settings: DiffusionSettings) -> None:
    for k, image in enumerate(images):
        folder = runs.trajectory_dir(run_dir, batch * settings.batch_size + k + 1)
        folder.mkdir(parents=True, exist_ok=True)
        runs.save_frame(folder, step + 1, image, f"trajectory step {step + 1}",
                        settings.to_json(), overwrite=True)


def resume_settings(run_dir: Path, changes: dict[str, Any]) -> DiffusionSettings:
    """The stored settings of a run folder with `changes` applied; nothing is written."""
    settings = runs.resumed_settings(run_dir, DiffusionSettings, changes, RESUME_CHANGES)
    total = _units(settings)
    if not settings.animate and total is not None:
        total *= settings.batch_size
    if total is not None and len(runs.list_frames(run_dir)) >= total:
        what = "frames" if settings.animate else "batch_count"
        raise ValueError(f"{what}: the run already has its {plural(total, 'image')}; give a larger "
                         f"{what.replace('_', ' ')} to make more")
    return settings
