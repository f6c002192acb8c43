"""Frames -> mp4 / webm / gif through ffmpeg (imageio-ffmpeg's bundled binary), streamed.

`assemble(source, VideoSettings(...))` makes the video of a run folder (its frames, or the
denoising trajectory of one image) or of any folder of numbered images, and returns its path;
`python -m helpers video SOURCE ...` does the same. The modules:

- `frames`: listing in natural order, selection (start, end, every), gaps, sizes, ping-pong;
- `smooth`: the frame-count arithmetic and blend smoothing (cross-fades);
- `ffmpeg`: the binary, `ffmpeg_args` (a pure function) and streaming frames into it;
- `metadata`: the prompt and settings written into the video and read back (`info`);
- `assemble`: the checks (nothing written on bad input) and the atomic, never-overwriting write;
- `notebook`: `show_video` (inline, Colab too) and `offer_download` (Colab).
"""

from helpers.video.assemble import Plan, assemble, check_video
from helpers.video.ffmpeg import Job, ffmpeg_args, find_ffmpeg
from helpers.video.frames import numbered_frames
from helpers.video.metadata import VIDEO_SUFFIXES, format_video_info, read_video_info
from helpers.video.notebook import offer_download, show_video, video_html
from helpers.video.smooth import pingpong_count, smoothed_count, video_frame_count

__all__ = [
    "VIDEO_SUFFIXES",
    "Job",
    "Plan",
    "assemble",
    "check_video",
    "ffmpeg_args",
    "find_ffmpeg",
    "format_video_info",
    "numbered_frames",
    "offer_download",
    "pingpong_count",
    "read_video_info",
    "show_video",
    "smoothed_count",
    "video_frame_count",
    "video_html",
]
