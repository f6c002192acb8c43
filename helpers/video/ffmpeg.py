"""ffmpeg: which binary, the arguments of an encoding (one pure function), and running it.

Frames reach ffmpeg as raw RGB (rgb24) on its standard input, one at a time, so neither
process holds more than a few frames whatever the length of the video. The binary is the one
bundled with `imageio-ffmpeg` unless the user asks for the system's.

Every path reaches ffmpeg as a plain file (`plain_file`: `concat:x.wav` is a file so named, not
ffmpeg's concat protocol) and every file input may open files only (`-protocol_whitelist
file`: a playlist posing as a soundtrack cannot reach the network). The title and comment go
in an ffmetadata file (`ffmetadata_text`), never on the command line, which a long prompt
would overflow.
"""

from __future__ import annotations

import contextlib
import queue
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

AUDIO_CODECS = {"mp4": ["-c:a", "aac", "-b:a", "192k"], "webm": ["-c:a", "libopus", "-b:a", "128k"]}
VIDEO_CODECS = {
    "mp4": ["-c:v", "libx264", "-preset", "medium"],
    "webm": ["-c:v", "libvpx-vp9", "-b:v", "0", "-deadline", "good", "-cpu-used", "2",
             "-row-mt", "1"],
}
# sRGB frames are converted with the BT.709 matrix and tagged so, as players expect for video.
COLOUR = ("scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,"
          "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv")
# ffmpeg's motion-compensated interpolation, with the settings commonly used for art videos.
MOTION = "minterpolate=fps={fps}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1"
MOTION_MIN_SIDE = 32  # minterpolate refuses smaller frames
ERROR_LINES = 3
_FFMETA_SPECIAL = re.compile(r"[=;#\\\n\r]")  # ffmetadata's special characters
READ_AHEAD = 2  # frames decoded ahead of the one being written: memory stays flat


@dataclass(frozen=True)
class Job:
    """What ffmpeg is asked to make; `ffmpeg_args` turns it into arguments without reading
    any file."""

    width: int  # of the frames piped in
    height: int
    input_fps: int  # rate of the frames piped in
    output_fps: int  # rate of the video; higher than input_fps with motion smoothing
    frames: int  # frames the video holds
    format: str = "mp4"  # mp4, webm or gif
    crf: int = 17
    motion: bool = False  # minterpolate from input_fps up to output_fps
    audio: str = ""  # soundtrack file, cut to the video's length
    title: str = ""  # metadata (mp4, webm): the prompt
    comment: str = ""  # metadata (mp4, webm): the run's settings JSON on one line

    @property
    def has_metadata(self) -> bool:
        """Whether the video gets a title or comment (never a gif)."""
        return self.format != "gif" and bool(self.title or self.comment)

    @property
    def seconds(self) -> float:
        """The video's length."""
        return self.frames / self.output_fps


def ffmpeg_args(job: Job, output: str | Path, exe: str = "ffmpeg", stage: str = "video",
                palette: str | Path | None = None,
                metadata: str | Path | None = None) -> list[str]:
    """The command line that encodes `job` from rgb24 frames on stdin into `output`.

    A gif takes two passes over the frames: `stage="palette"` writes the palette image to
    `output`; `stage="video"` then needs it as `palette`. `metadata`: the ffmetadata file
    holding `ffmetadata_text(job)`, which the title and comment come from; without it they
    go on the command line (short values only: Linux takes 128 kB an argument).
    """
    if stage not in ("video", "palette"):
        raise ValueError(f"stage: must be 'video' or 'palette' (got {stage!r})")
    if job.format == "gif" and stage == "video" and palette is None:
        raise ValueError("palette: a gif's video stage needs the palette of the first stage")
    args = [exe, "-hide_banner", "-loglevel", "error", "-y", *_raw_input(job)]
    if stage == "palette":
        return [*args, "-vf", ",".join([*_filters(job), "palettegen"]), "-frames:v", "1",
                "-update", "1", "-f", "image2", plain_file(output)]
    if job.format == "gif":
        chain = ",".join(_filters(job)) or "null"
        return [*args, *file_input(palette), "-filter_complex",
                f"[0:v]{chain}[v];[v][1:v]paletteuse", "-frames:v", str(job.frames),
                "-f", "gif", plain_file(output)]
    return [*args, *_audio_input(job), *_metadata_input(job, metadata),
            "-vf", ",".join([*_filters(job), COLOUR]),
            *_maps(job), *VIDEO_CODECS[job.format], "-crf", str(job.crf),
            "-frames:v", str(job.frames), *_audio_codec(job), *_metadata(job, metadata),
            *(["-movflags", "+faststart"] if job.format == "mp4" else []),
            "-f", job.format, plain_file(output)]


def plain_file(path: str | Path) -> str:
    """A path as ffmpeg reads it as a file: `file:` before any path with a colon, which ffmpeg
    would otherwise take for a protocol (`concat:a.wav|b.wav`, `http://...`)."""
    text = str(path)
    return f"file:{text}" if ":" in text else text


def file_input(path: str | Path) -> list[str]:
    """`-i path` for a file input that may open files only (a playlist cannot fetch URLs)."""
    return ["-protocol_whitelist", "file", "-i", plain_file(path)]


def _raw_input(job: Job) -> list[str]:
    return ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{job.width}x{job.height}",
            "-framerate", str(job.input_fps), "-i", "pipe:0"]


def _filters(job: Job) -> list[str]:
    """Motion smoothing, then (mp4, webm) one black column / row more for odd sizes, which
    4:2:0 video cannot hold."""
    filters = [MOTION.format(fps=job.output_fps)] if job.motion else []
    width, height = padded_size(job)
    if (width, height) != (job.width, job.height):
        filters.append(f"pad={width}:{height}")
    return filters


def _audio_input(job: Job) -> list[str]:
    if not job.audio:
        return []
    return ["-protocol_whitelist", "file", "-t", f"{job.seconds:.6f}", "-i",
            plain_file(job.audio)]


def _maps(job: Job) -> list[str]:
    return ["-map", "0:v:0", "-map", "1:a:0"] if job.audio else []


def _audio_codec(job: Job) -> list[str]:
    return AUDIO_CODECS[job.format] if job.audio else []


def _metadata_input(job: Job, metadata: str | Path | None) -> list[str]:
    return ["-f", "ffmetadata", *file_input(metadata)] if metadata and job.has_metadata else []


def _metadata(job: Job, metadata: str | Path | None) -> list[str]:
    """The global metadata: from the ffmetadata input (the last one), else the arguments."""
    if metadata and job.has_metadata:
        return ["-map_metadata", "2" if job.audio else "1"]
    pairs = (("title", job.title), ("comment", job.comment))
    return [arg for key, value in pairs if value for arg in ("-metadata", f"{key}={value}")]


def ffmetadata_text(job: Job) -> str:
    """ffmpeg's ffmetadata file of the job's title and comment (`=`, `;`, `#`, backslash and
    line ends escaped; NUL characters, which ffmpeg's strings cannot hold, left out)."""
    pairs = (("title", job.title), ("comment", job.comment))
    lines = [f"{key}={_ffmeta_escaped(value)}" for key, value in pairs if value]
    return "".join(f"{line}\n" for line in [";FFMETADATA1", *lines])


def _ffmeta_escaped(value: str) -> str:
    return _FFMETA_SPECIAL.sub(lambda m: "\\" + m.group(), value.replace("\0", ""))


def padded_size(job: Job) -> tuple[int, int]:
    """The size of the video's frames: odd sides grow by one for mp4 and webm."""
    if job.format == "gif":
        return job.width, job.height
    return job.width + job.width % 2, job.height + job.height % 2


# --- running it -------------------------------------------------------------------------------


def find_ffmpeg(which: str = "bundled") -> str:
    """The ffmpeg binary: imageio-ffmpeg's (`bundled`) or the one on the PATH (`system`)."""
    if which == "system":
        found = shutil.which("ffmpeg")
        if found is None:
            raise ValueError("ffmpeg: no ffmpeg on the PATH; install it (apt-get install "
                             "ffmpeg, brew install ffmpeg) or use --ffmpeg bundled")
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as e:
        raise ValueError(f"ffmpeg: the bundled ffmpeg is missing ({e}); pip install "
                         "imageio-ffmpeg, or use --ffmpeg system") from None


# Why not imageio_ffmpeg.write_frames: two-pass gif palette, filter_complex, metadata, colour tags.
def run_ffmpeg(args: list[str], frames: Iterable[bytes],
               on_frame: Callable[[], object] = lambda: None) -> None:
    """Run ffmpeg with `frames` streamed to its stdin; `ValueError` with its message on failure.

    On any exception (Ctrl-C included) ffmpeg is killed before the exception goes on.
    """
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=errors)
        try:
            _feed(process, frames, on_frame)
            code = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
        if code:
            errors.seek(0)
            raise ValueError(f"ffmpeg: failed with status {code}: "
                             f"{ffmpeg_message(errors.read().decode(errors='replace'))}")


def _feed(process: subprocess.Popen, frames: Iterable[bytes],
          on_frame: Callable[[], object]) -> None:
    with contextlib.closing(read_ahead(frames)) as ahead:
        try:
            for data in ahead:
                process.stdin.write(data)
                on_frame()
        except BrokenPipeError:  # ffmpeg stopped early; its status and message say why
            pass
    with contextlib.suppress(BrokenPipeError):
        process.stdin.close()


def read_ahead(items: Iterable[bytes], depth: int = READ_AHEAD) -> Iterator[bytes]:
    """`items`, made in a background thread up to `depth` ahead, so that decoding the next
    frame overlaps writing this one; an exception there (Ctrl-C included) is raised here."""
    ready: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                ready.put(entry, timeout=0.1)
                return True
        return False

    def make() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((None, None))
        except BaseException as e:  # handed to the consumer, which raises it
            put((None, e))

    threading.Thread(target=make, name="video frames", daemon=True).start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is None:
                return
            yield item
    finally:
        stop.set()


def ffmpeg_message(stderr: str) -> str:
    """ffmpeg's first error lines (the cause; later ones are consequences), without the
    `[component @ 0x...]` prefixes."""
    lines = [re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", line).strip()
             for line in stderr.splitlines()]
    kept = list(dict.fromkeys(line for line in lines if line))[:ERROR_LINES]
    return "; ".join(kept) or "no message"


def has_audio(exe: str, path: str | Path) -> bool:
    """Whether ffmpeg decodes sound from the file (read as a plain file): its first audio
    frame, with only errors printed, so a file's own tags never fill memory."""
    result = subprocess.run([exe, "-hide_banner", "-loglevel", "error", *file_input(path),
                             "-map", "0:a:0", "-frames:a", "1", "-f", "null", "-"],
                            stdin=subprocess.DEVNULL, capture_output=True, check=False)
    return result.returncode == 0
