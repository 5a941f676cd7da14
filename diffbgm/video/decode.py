"""Fast, downscaled decoding for analysis: a few frames per second, a few hundred pixels wide.

Every frame still has to be decoded (inter-coded video depends on its neighbours), but only the
kept frames are scaled and converted, and when the source rate is well above the analysis rate
the decoder is told to skip frames nothing refers to, which is almost free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from diffbgm.errors import VideoError
from diffbgm.video.probe import probe_video
from diffbgm.video.types import VideoInfo

ProgressCallback = Callable[[float, str], None]


@dataclass(frozen=True)
class DecodeOptions:
    """How to sample a video for analysis.

    long_side: analysis frame size in pixels along its longer side (the other side follows the
      displayed aspect ratio; both even).
    max_fps: at most this many frames per second are kept (frames are picked by time, so odd
      and variable frame rates sample evenly).
    max_frames: memory guard; long videos are sampled more sparsely to stay under it.
    skip_nonref: let the decoder drop non-reference frames when the source rate is at least
      twice `max_fps` (they would be skipped anyway).
    """

    long_side: int = 160
    max_fps: float = 12.0
    max_frames: int = 9000
    skip_nonref: bool = True


@dataclass(frozen=True)
class DecodedFrames:
    """Upright, downscaled frames and their presentation times.

    times_s: (n,) float64 seconds from the start of the video.
    rgb: (n, height, width, 3) uint8.
    complete: False when decoding stopped early at a damaged part of the file.
    """

    times_s: np.ndarray
    rgb: np.ndarray
    duration_s: float
    complete: bool = True

    @property
    def n_frames(self) -> int:
        return int(self.times_s.shape[0])

    @property
    def frame_rate(self) -> float:
        """Mean analysis rate in frames per second."""
        if self.n_frames < 2:
            return 0.0
        return float((self.n_frames - 1) / max(1e-6, self.times_s[-1] - self.times_s[0]))

    def gray(self, chunk: int = 32) -> np.ndarray:
        """(n, height, width) uint8 luma (ITU-R BT.601 weights).

        Converted `chunk` frames at a time: a float copy of a 10-minute video's frames would
        cost gigabytes, and a chunk whose float copy stays in the CPU cache (32 frames of
        160x90: 5 MB) converts four times faster than one of 256."""
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        out = np.empty(self.rgb.shape[:3], dtype=np.uint8)
        for start in range(0, self.n_frames, chunk):
            part = self.rgb[start : start + chunk].astype(np.float32) @ weights
            out[start : start + chunk] = part.round().astype(np.uint8)
        return out


def analysis_size(info: VideoInfo, long_side: int) -> tuple[int, int]:
    """(width, height) in pixels of upright analysis frames: the longer side `long_side`, the
    displayed aspect ratio kept, both even."""
    display_w, display_h = info.display_size
    scale = long_side / max(display_w, display_h)
    return _even(display_w * scale), _even(display_h * scale)


def _even(pixels: float) -> int:
    return max(2, int(round(pixels / 2.0)) * 2)


def decode_frames(
    path: Path | str,
    info: VideoInfo | None = None,
    options: DecodeOptions = DecodeOptions(),
    progress: ProgressCallback | None = None,
) -> DecodedFrames:
    """Decode `path` into upright analysis frames (see DecodeOptions).

    `info` saves a second probe when the caller already has it. `progress(fraction, message)`
    is called every few dozen frames with fraction in [0, 1].
    """
    path = Path(path)
    info = info or probe_video(path)
    out_w, out_h = analysis_size(info, options.long_side)
    # The scaler runs before rotation, so a quarter-turned video is scaled to the swapped size.
    scale_w, scale_h = (out_h, out_w) if info.rotation_deg % 180 == 90 else (out_w, out_h)
    rate = min(options.max_fps, info.fps, options.max_frames / max(info.duration_s, 1e-6))
    step_s = 1.0 / max(rate, 1e-6)

    # Frames go straight into one preallocated array (grown if the stated duration was short):
    # a list of per-frame arrays stacked at the end would hold every frame twice at the peak.
    # Untouched capacity is never written, so the OS does not make it resident.
    frames = _FrameBuffer(
        capacity=int(info.duration_s * rate) + 16,
        shape=(out_h, out_w, 3),
    )
    # One scaler for the whole video: a frame's own `to_ndarray(width=...)` sets up a fresh
    # swscale context (and thread pool) per frame, which cost more than decoding the frame.
    # Same algorithm and sizes, so the pixels are identical; one thread suits 160x90 output.
    scaler = VideoReformatter()
    complete = True
    try:
        opened = av.open("file:" + str(path.resolve()))
    except av.FFmpegError as exc:  # e.g. cut short after it was probed
        raise VideoError(f"'{path.name}' cannot be decoded: {exc}") from exc
    with opened as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        # Raw streams carry no timestamps, so frame times come from counting frames: skipping
        # any would shift them.
        timed = container.duration is not None
        if options.skip_nonref and timed and info.fps >= 2 * rate and not info.variable_fps:
            stream.codec_context.skip_frame = "NONREF"
        start_s = 0.0
        if stream.start_time and stream.time_base:
            start_s = float(stream.start_time * stream.time_base)
        next_keep_s = 0.0
        try:
            for index, frame in enumerate(container.decode(stream)):
                t = _frame_time_s(frame, index, info.fps) - start_s
                if t + 1e-6 < next_keep_s:
                    continue
                next_keep_s = max(next_keep_s + step_s, t + 0.5 * step_s)
                small = scaler.reformat(
                    frame, scale_w, scale_h, "rgb24", interpolation="FAST_BILINEAR", threads=1
                )
                image = small.to_ndarray()  # a view of the scaled frame; copied just below
                frames.append(
                    t, np.rot90(image, info.rotation_deg // 90) if info.rotation_deg else image
                )
                if progress is not None and frames.n % 50 == 0:
                    progress(min(1.0, t / max(info.duration_s, 1e-6)), "decoding")
        except av.FFmpegError as exc:
            if not frames.n:
                raise VideoError(f"'{path.name}' cannot be decoded: {exc}") from exc
            complete = False
    if not frames.n:
        raise VideoError(f"'{path.name}' has no decodable video frames.")
    times, rgb = frames.arrays()
    return DecodedFrames(
        times_s=times,
        rgb=rgb,
        duration_s=max(info.duration_s, float(times[-1]) + step_s / 2),
        complete=complete,
    )


class _FrameBuffer:
    """Kept frames and their times in arrays that grow by half when full."""

    def __init__(self, capacity: int, shape: tuple[int, int, int]) -> None:
        self.n = 0
        self.times = np.empty(max(1, capacity), dtype=np.float64)
        self.rgb = np.empty((max(1, capacity), *shape), dtype=np.uint8)

    def append(self, time_s: float, image: np.ndarray) -> None:
        if self.n == self.times.shape[0]:
            grown = self.n + self.n // 2 + 16
            self.times = np.resize(self.times, grown)
            rgb = np.empty((grown, *self.rgb.shape[1:]), dtype=np.uint8)
            rgb[: self.n] = self.rgb
            self.rgb = rgb
        self.times[self.n] = time_s
        self.rgb[self.n] = image
        self.n += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(times_s, rgb) of the frames kept; rgb is a contiguous view of the buffer's start."""
        return self.times[: self.n].copy(), self.rgb[: self.n]


def _frame_time_s(frame: av.VideoFrame, index: int, fps: float) -> float:
    """Presentation time in seconds; frames without one (raw streams) fall back to index/fps."""
    if frame.time is not None:
        return float(frame.time)
    return index / fps
