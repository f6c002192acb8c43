"""Settings of a video made from frames: `python -m helpers video SOURCE ...` and notebook 5."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import ClassVar

from helpers.settings.base import Settings
from helpers.settings.fields import fail, setting

FORMATS = ("mp4", "webm", "gif")
SMOOTHING = ("none", "blend", "motion")
MAX_FPS = 240
MAX_CRF = {"mp4": 51, "webm": 63}  # x264's and VP9's quality scales (0 = lossless)


@dataclass(frozen=True)
class VideoSettings(Settings):
    """How frames become a video: which frames, in what order, how fast, and how encoded."""

    kind: ClassVar[str] = "video"

    fps: int = setting(12, "frames per second of the video", min=1, max=MAX_FPS, unit="fps",
                       metavar="N", group="timing")
    format: str = setting("mp4", "mp4 (H.264), webm (VP9) or gif (one palette for all frames)",
                          choices=FORMATS, casefold=True, group="encoding")
    crf: int = setting(17, "quality: lower is better and larger (mp4 0-51, webm 0-63; not "
                       "used by gif)", min=0, max=63, metavar="N", advanced=True,
                       group="encoding")
    start: int = setting(0, "first frame number to use (the number in its name); 0 = from "
                         "the first", min=0, metavar="N", advanced=True, group="frames")
    end: int = setting(0, "last frame number to use; 0 = to the last", min=0, metavar="N",
                       advanced=True, group="frames")
    every: int = setting(1, "use every N-th frame of those selected", min=1, max=10_000,
                         metavar="N", advanced=True, group="frames")
    pingpong: bool = setting(False, "play forward then back (the end frames are not repeated, "
                             "so it loops smoothly)", group="timing")
    smooth: str = setting("none", "add frames up to --target-fps: blend (cross-fades) or motion "
                          "(ffmpeg's motion interpolation; frames at least 32x32)",
                          choices=SMOOTHING, casefold=True, group="timing")
    target_fps: int = setting(0, "frames per second after smoothing; 0 = no smoothing",
                              min=0, max=MAX_FPS, unit="fps", metavar="N", group="timing")
    audio: str = setting("", "soundtrack file (any format ffmpeg reads), cut to the video's "
                         "length", metavar="FILE", text="path", group="output")
    out: str = setting("", "video file to write; empty = video.<format> in the source "
                       "folder (video-2, ... if taken)", metavar="FILE", text="path",
                       group="output")
    trajectory: int = setting(0, "a run's denoising trajectory of image K instead of its "
                              "frames; 0 = the frames", min=0, metavar="K", advanced=True,
                              group="frames")
    resize: bool = setting(False, "resize frames of other sizes to the first frame's size "
                           "(else mixed sizes are an error)", advanced=True, group="frames")
    allow_gaps: bool = setting(False, "join the frames around missing frame numbers (else a "
                               "gap is an error)", advanced=True, group="frames")
    ffmpeg: str = setting("bundled", "the ffmpeg to run: bundled (imageio-ffmpeg's) or system "
                          "(the one on the PATH)", choices=("bundled", "system"),
                          casefold=True, advanced=True, group="encoding")

    def validate(self) -> None:
        """Cross-field rules: crf per format, frame range, smoothing, audio, output name."""
        if self.format in MAX_CRF and self.crf > MAX_CRF[self.format]:
            fail("crf", self.crf, f"must be between 0 and {MAX_CRF[self.format]} for "
                 f"{self.format}")
        if self.end and self.end < self.start:
            fail("end", self.end, f"must be 0 (to the last frame) or at least start "
                 f"({self.start})")
        self._validate_smoothing()
        if self.audio and self.format == "gif":
            fail("audio", self.audio, "a gif has no sound; use format mp4 or webm")
        self._validate_out()

    def _validate_smoothing(self) -> None:
        if self.smooth == "none" and self.target_fps:
            fail("target_fps", self.target_fps, "only used with smooth blend or motion")
        if self.smooth != "none" and self.target_fps <= self.fps:
            fail("target_fps", self.target_fps, f"must be greater than fps ({self.fps}) to "
                 f"smooth with {self.smooth}")

    def _validate_out(self) -> None:
        if not self.out:
            return
        suffix = PurePath(self.out).suffix.lower().lstrip(".")
        if suffix != self.format:
            hint = f"give format {suffix} or " if suffix in FORMATS else "give "
            fail("out", self.out, f"must end in .{self.format} for format {self.format}; "
                 f"{hint}a name ending in .{self.format}")

    @property
    def output_fps(self) -> int:
        """Frames per second of the file written: the target when smoothing."""
        return self.target_fps if self.smooth != "none" else self.fps
