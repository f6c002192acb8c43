"""Frames -> video: `check_video` (everything that can fail, nothing written), then `assemble`.

The video lands atomically: ffmpeg writes a hidden temporary file beside it
(`.video.mp4.XXXXXXXX.part`), renamed into place when complete; a failure or Ctrl-C leaves
nothing. Nothing is ever overwritten: the default name is `video.mp4` in the run folder (or the
folder of images), then `video-2.mp4`...

A kill (or a crash of the machine) can still leave a `.part`: each video made removes the stale
ones of its folder. A `.part` is stale when its writer is gone: while encoding, `video` holds a
lock (`flock`) on its `.part`, which the system lets go when the process ends, so an unlocked
one untouched for `PART_GRACE` seconds (the moment between creating and locking it) is stale;
where the disk has no locks, one untouched for `STALE_PART` seconds is.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers.files import atomic_replace, writable_folder
from helpers.reporting import Log, plural, progress_bar
from helpers.runs import FRAMES_FOLDER, MAX_NAME_TRIES, SETTINGS_FILE, TRAJECTORY_FOLDER
from helpers.settings.video import VideoSettings
from helpers.video import frames as fr
from helpers.video.ffmpeg import (
    MOTION_MIN_SIDE,
    Job,
    ffmetadata_text,
    ffmpeg_args,
    find_ffmpeg,
    has_audio,
    run_ffmpeg,
)
from helpers.video.metadata import metadata_fields, source_settings
from helpers.video.smooth import blend, video_frame_count

# minterpolate keeps back the last frames it gets: the last frame goes in twice more, and
# `-frames:v` cuts the video at floor((n - 1) * F / f) + 1 frames, as for blend.
MOTION_TAIL = 2
SHORT_VIDEO = 1.0  # seconds: a shorter video gets a hint on how to make it longer
PART_GRACE = 60  # seconds an unlocked .part is left alone (its writer may be about to lock it)
STALE_PART = 3600  # seconds: an untouched .part is stale where the disk has no locks
_PART_NAME = re.compile(r"^\..+\.(mp4|webm|gif)\.[a-z0-9_]{8}\.part$",  # what mkstemp makes
                        re.IGNORECASE)


@dataclass(frozen=True)
class Plan:
    """A checked video: the frame files in play order, what ffmpeg makes, where it goes."""

    frames: tuple[Path, ...]  # after selection and ping-pong, before smoothing
    size: tuple[int, int]  # of the frames (other sizes are resized to it)
    fps: int  # of the frames before smoothing
    job: Job
    output: Path
    exe: str
    blend: bool  # cross-fades made here (motion smoothing is ffmpeg's)
    name: str = ""  # the default name's base ("video"): another free one if taken meanwhile

    @property
    def piped(self) -> int:
        """How many frames go down ffmpeg's pipe (per pass)."""
        if self.blend:
            return self.job.frames
        return len(self.frames) + (MOTION_TAIL if self.job.motion else 0)


def check_video(source: str | Path, settings: VideoSettings) -> Plan:
    """Everything that can fail before encoding, checked; nothing is written."""
    folder = fr.frames_folder(source, settings.trajectory)
    chosen = fr.select_frames(fr.numbered_frames(folder), settings.start, settings.end,
                              settings.every, settings.allow_gaps)
    size = fr.frame_size(chosen, settings.resize)
    if settings.smooth == "motion" and min(size) < MOTION_MIN_SIDE:
        raise ValueError(f"smooth: motion needs frames of at least {MOTION_MIN_SIDE}x"
                         f"{MOTION_MIN_SIDE} pixels (got {size[0]}x{size[1]}); use blend")
    exe = find_ffmpeg(settings.ffmpeg)
    audio = _check_audio(exe, settings.audio)
    run_dir = _run_folder(folder)
    played = fr.pingpong(chosen) if settings.pingpong else chosen
    job = _job(settings, size, len(chosen), source_settings(run_dir, chosen[0].path), audio)
    output, name = _output_path(settings, run_dir or folder)
    return Plan(tuple(f.path for f in played), size, settings.fps, job, output, exe,
                settings.smooth == "blend", name)


def _job(settings: VideoSettings, size: tuple[int, int], chosen: int, source: dict | None,
         audio: str) -> Job:
    smoothing = settings.smooth != "none"
    title, comment = metadata_fields(source) if settings.format != "gif" else ("", "")
    return Job(width=size[0], height=size[1],
               input_fps=settings.output_fps if settings.smooth == "blend" else settings.fps,
               output_fps=settings.output_fps, format=settings.format, crf=settings.crf,
               frames=video_frame_count(chosen, settings.fps, settings.pingpong,
                                        settings.target_fps if smoothing else 0),
               motion=settings.smooth == "motion", audio=audio, title=title,
               comment=comment)


def _check_audio(exe: str, audio: str) -> str:
    """The soundtrack's path ("" for none), checked to hold sound ffmpeg can read."""
    if not audio:
        return ""
    path = Path(audio).expanduser()
    if not path.is_file():
        raise ValueError(f"audio: {path} {'is a folder' if path.is_dir() else 'not found'}")
    if not has_audio(exe, path):
        raise ValueError(f"audio: {path} has no sound that ffmpeg can read")
    return str(path)


def _run_folder(folder: Path) -> Path | None:
    """The run folder the frames belong to (`frames/` or `trajectory/K/frames/`), if any."""
    if folder.name != FRAMES_FOLDER:
        return None
    parent = folder.parent
    run_dir = parent.parent.parent if parent.parent.name == TRAJECTORY_FOLDER else parent
    return run_dir if (run_dir / SETTINGS_FILE).is_file() else None


def _output_path(settings: VideoSettings, folder: Path) -> tuple[Path, str]:
    """The video's path and, for a default name, its base (empty for an explicit --out)."""
    if settings.out:
        path = Path(settings.out).expanduser()
        if path.exists() or path.is_symlink():
            raise ValueError(f"out: {path} already exists; give another name (videos are "
                             "never overwritten)")
        writable_folder(path.parent, "out")
        if not path.parent.is_dir():
            raise ValueError(f"out: the folder {path.parent} does not exist; create it, or give "
                             "a path in an existing folder")
        return path, ""
    writable_folder(folder, "out")
    base = f"trajectory-{settings.trajectory}" if settings.trajectory else "video"
    return free_name(folder, base, settings.format), base


def free_name(folder: Path, base: str, suffix: str) -> Path:
    """`folder/base.suffix`, or `base-2.suffix`, `base-3.suffix`, ...: the first not taken."""
    for n in range(1, MAX_NAME_TRIES + 1):
        path = folder / (f"{base}.{suffix}" if n == 1 else f"{base}-{n}.{suffix}")
        if not path.exists() and not path.is_symlink():
            return path
    raise ValueError(f"out: no free name for {base}.{suffix} in {folder}; give --out")


def assemble(source: str | Path, settings: VideoSettings, log: Log = print,
             progress: bool = True) -> Path:
    """Make the video of `source` (a run folder or a folder of images); return its path."""
    plan = check_video(source, settings)
    job = plan.job
    log(f"video: {plural(len(plan.frames), 'frame')} of {plan.size[0]}x{plan.size[1]} -> "
        f"{plural(job.frames, 'frame')} at {job.output_fps} fps ({job.seconds:.2f} s), "
        f"{job.format}")
    if job.seconds < SHORT_VIDEO:
        log(short_video_hint(plan))
    passes = 2 if job.format == "gif" else 1
    bar = progress_bar(plan.piped * passes, "video", progress, unit="frame")
    try:
        path = _encode(plan, bar.update)
    finally:
        bar.close()
    log(f"video: {path}")
    return path


def short_video_hint(plan: Plan) -> str:
    """What makes a video that lasts under a second longer."""
    return (f"video: hint: the video lasts only {plan.job.seconds:.2f} s "
            f"({plural(len(plan.frames), 'frame')} at {plan.fps} fps); make more frames (a "
            "longer run, or a wider start/end/every selection), or lower fps (at 1 fps each "
            "frame shows for a second)")


def _encode(plan: Plan, on_frame: Callable[[], object]) -> Path:
    """Encode into a hidden temporary file beside the output (locked while this process
    lives), then move it into place; stale ones of other videos are removed first."""
    remove_stale_parts(plan.output.parent)
    fd, tmp = tempfile.mkstemp(dir=plan.output.parent, prefix=f".{plan.output.name}.",
                               suffix=".part")
    try:
        with contextlib.suppress(OSError):  # no locks here: the age tells instead
            _lock(fd)
        with tempfile.TemporaryDirectory() as scratch:
            palette, metadata = None, None
            if plan.job.has_metadata:  # a file: a long prompt overflows the command line
                metadata = Path(scratch) / "metadata.txt"
                metadata.write_text(ffmetadata_text(plan.job), encoding="utf-8")
            if plan.job.format == "gif":
                palette = Path(scratch) / "palette.png"
                run_ffmpeg(ffmpeg_args(plan.job, palette, plan.exe, "palette"),
                           frame_stream(plan), on_frame)
            run_ffmpeg(ffmpeg_args(plan.job, tmp, plan.exe, palette=palette,
                                   metadata=metadata), frame_stream(plan), on_frame)
        os.close(fd)  # before the rename: Windows renames no open file
        fd = -1
        return atomic_replace(tmp, _still_free(plan))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        if fd >= 0:
            os.close(fd)


def remove_stale_parts(folder: Path) -> list[Path]:
    """Remove the `.part` files of videos whose writer is gone (see the module's docstring);
    return them. Other files, and `.part` files that are not ours, are left alone."""
    removed = []
    for path in sorted(Path(folder).glob(".*.part")):
        if _PART_NAME.match(path.name) and not path.is_symlink() and _stale(path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def _stale(path: Path) -> bool:
    """Whether a `.part` has no living writer: unlocked and untouched for `PART_GRACE`
    seconds, or untouched for `STALE_PART` seconds where locks do not work."""
    try:
        age = time.time() - path.stat().st_mtime
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        locked = not _lock(fd)
    except OSError:  # no locks on this disk (some network and FUSE file systems)
        return age > STALE_PART
    finally:
        os.close(fd)
    return not locked and age > PART_GRACE


def _lock(fd: int) -> bool:
    """Take an exclusive lock on an open file without waiting; False when another holds it.
    `OSError` where the disk has no locks (on a system without `fcntl`, as if there were)."""
    try:
        import fcntl
    except ImportError:
        raise OSError("no file locks on this system") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _still_free(plan: Plan) -> Path:
    """The output path, or (a default name taken while encoding) the next free one."""
    out = plan.output
    if not (out.exists() or out.is_symlink()):
        return out
    if not plan.name:
        raise ValueError(f"out: {out} was created while the video was made; not overwritten")
    return free_name(out.parent, plan.name, out.suffix.lstrip("."))


def frame_stream(plan: Plan) -> Iterator[bytes]:
    """The rgb24 frames ffmpeg gets: cross-faded for blend, the last one repeated for motion."""
    images = (fr.read_frame(path, plan.size) for path in plan.frames)
    if plan.blend:
        yield from blend(images, len(plan.frames), plan.fps, plan.job.output_fps)
        return
    last = b""
    for last in images:
        yield last
    if plan.job.motion:
        yield from [last] * MOTION_TAIL
