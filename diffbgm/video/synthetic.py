"""Small synthetic videos with known shots: for self-tests, tests and benchmarks.

`write_shots_video`: flat-colour shots that change every `cut_every_s` seconds, with a white
square moving across them. `write_one_take_video`: one shot without a cut, a camera panning
over a textured scene at a speed that changes part by part (still, then moving, ...). Both
are H.264 (160x120 by default, 12 fps): the shot detector finds the cuts (or none), the
motion features see the movement, and any install can make one without a media file at hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

SHOT_COLOURS = ((200, 40, 40), (30, 60, 190), (40, 170, 60), (220, 200, 40))


def write_shots_video(
    path: Path, seconds: float = 4.0, cut_every_s: float = 2.0, fps: int = 12
) -> Path:
    """Write the clip to `path` (MP4, H.264) and return the path."""
    width, height = 160, 120

    def frames() -> Iterator[np.ndarray]:
        for index in range(int(seconds * fps)):
            t = index / fps
            frame = np.empty((height, width, 3), dtype=np.uint8)
            frame[:] = SHOT_COLOURS[int(t // cut_every_s) % len(SHOT_COLOURS)]
            x = int(t * 60) % (width - 30)
            frame[45:75, x : x + 30] = 255
            yield frame

    return _write_h264(path, frames(), (width, height), fps)


def write_one_take_video(
    path: Path,
    speeds_px_s: Sequence[float] = (0.0, 24.0, 0.0),
    part_s: float = 12.0,
    fps: int = 12,
    size: tuple[int, int] = (160, 120),
    seed: int = 0,
) -> Path:
    """Write one take (no cut) to `path`: a pan across a fixed, seeded texture whose speed is
    `speeds_px_s[i]` pixels per second during part i (each `part_s` seconds long); return it.

    The texture is smooth coloured noise, so optical flow finds the pan, and the picture's
    brightness and colour stay near alike throughout (within about 0.06 and 0.09 at the
    default size): what changes is the motion.
    """
    import cv2

    width, height = size
    rng = np.random.default_rng(seed)
    scene_width = 4 * width
    noise = rng.random((height // 24 + 2, scene_width // 24 + 2, 3)).astype(np.float32)
    scene = cv2.resize(noise, (scene_width, height), interpolation=cv2.INTER_CUBIC)
    scene = np.clip(60 + 140 * scene, 0, 255).astype(np.uint8)

    def frames() -> Iterator[np.ndarray]:
        offset = 0.0
        for index in range(int(round(len(speeds_px_s) * part_s * fps))):
            part = min(int(index / (part_s * fps)), len(speeds_px_s) - 1)
            offset += speeds_px_s[part] / fps
            start = int(offset) % scene_width
            columns = np.arange(start, start + width) % scene_width
            yield np.ascontiguousarray(scene[:, columns], dtype=np.uint8)

    return _write_h264(path, frames(), size, fps)


def _write_h264(path: Path, frames: Iterable[np.ndarray], size: tuple[int, int], fps: int) -> Path:
    """Encode (height, width, 3) uint8 RGB frames to `path` (MP4, H.264, yuv420p)."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.time_base = Fraction(1, fps)
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = index
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
