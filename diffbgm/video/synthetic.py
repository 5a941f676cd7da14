"""Small synthetic videos with known shots: for self-tests, tests and benchmarks.

Flat-colour shots that change every `cut_every_s` seconds, with a white square moving across
them, encoded as H.264 (160x120, 12 fps): the shot detector finds the cuts, the motion
features see the square, and any install can make one without a media file at hand.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

SHOT_COLOURS = ((200, 40, 40), (30, 60, 190), (40, 170, 60), (220, 200, 40))


def write_shots_video(
    path: Path, seconds: float = 4.0, cut_every_s: float = 2.0, fps: int = 12
) -> Path:
    """Write the clip to `path` (MP4, H.264) and return the path."""
    import av

    width, height = 160, 120
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for index in range(int(seconds * fps)):
            t = index / fps
            frame = np.empty((height, width, 3), dtype=np.uint8)
            frame[:] = SHOT_COLOURS[int(t // cut_every_s) % len(SHOT_COLOURS)]
            x = int(t * 60) % (width - 30)
            frame[45:75, x : x + 30] = 255
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = index
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
