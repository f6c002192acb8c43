"""Frame counts of a video and blend smoothing (cross-fades), streamed.

The arithmetic, in one place (the tests check videos against it):
- ping-pong of n frames: 2n - 2 frames for n >= 2 (forward, then back without either end);
  1 frame stays 1;
- smoothing m frames at f fps up to F fps (blend or motion): the video keeps the same span,
  from the first frame to the last, and shows a frame every 1/F s:
  floor((m - 1) * F / f) + 1 frames. Output frame k shows source position p = k * f / F; blend
  mixes frames floor(p) and floor(p) + 1 with weight p - floor(p) on the second.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def pingpong_count(n: int) -> int:
    """Frames of a ping-pong of n frames: 2n - 2 (n >= 2), 1 for a single frame."""
    return 2 * n - 2 if n >= 2 else n


def smoothed_count(n: int, fps: int, target_fps: int) -> int:
    """Frames of n frames at `fps` smoothed to `target_fps`: floor((n - 1) * F / f) + 1."""
    return (n - 1) * target_fps // fps + 1


def video_frame_count(n: int, fps: int, pingpong: bool = False, target_fps: int = 0) -> int:
    """Frames of the video made from n selected frames (ping-pong first, then smoothing)."""
    played = pingpong_count(n) if pingpong else n
    return smoothed_count(played, fps, target_fps) if target_fps else played


def blend(frames: Iterable[bytes], n: int, fps: int, target_fps: int) -> Iterator[bytes]:
    """Cross-faded rgb24 frames at `target_fps` from n frames at `fps`; holds two at most."""
    import numpy as np

    source = iter(frames)
    index, current, following = 0, next(source), None
    for k in range(smoothed_count(n, fps, target_fps)):
        position, remainder = divmod(k * fps, target_fps)
        while index < position:
            current = following if following is not None else next(source)
            following, index = None, index + 1
        if not remainder:
            yield current
            continue
        if following is None:
            following = next(source)
        weight = remainder / target_fps
        a = np.frombuffer(current, np.uint8).astype(np.float32)
        b = np.frombuffer(following, np.uint8).astype(np.float32)
        yield (a + (b - a) * weight + 0.5).astype(np.uint8).tobytes()
