"""Reading the BGM909 video features the Diff-BGM authors released, and turning them into
per-segment conditions of a POP909 song.

Layout (as the authors' loader `diffbgm/data/dataset.py` reads it, under data/bgm909/):
    new_raw_video_feats/NNN.pth   torch tensor (T_frames, 512): VideoCLIP visual features
    caption_feats/NNN.npy         float array (T_cap, 768): BERT features of BLIP captions
    detection/NNN_scenes.txt      TransNetV2 shots, one per line: `start_frame end_frame`
                                  (both inclusive, 0-based video frames)
NNN is the POP909 song id with three digits.

Time alignment: the authors stretch both feature sequences linearly over the song's beats
(feature row int(i * T / n_beats) for beat i) and never relate frames to seconds. We follow
that: the video's frames are stretched over the song the same way, so a shot boundary at
frame f of a video of F frames lands at beat round(f / F * n_beats). No frame rate is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffbgm.errors import DiffBGMError

VISUAL_DIR = "new_raw_video_feats"
CAPTION_DIR = "caption_feats"
SHOTS_DIR = "detection"
VISUAL_DIM = 512
CAPTION_DIM = 768


class Bgm909Error(DiffBGMError):
    """A BGM909 feature file is missing or malformed."""


@dataclass(frozen=True)
class VideoFeatures:
    """One song's released features, as loaded (no alignment to the music yet)."""

    visual: np.ndarray  # (T_frames, 512) float32
    caption: np.ndarray  # (T_cap, 768) float32
    shots: np.ndarray  # (n_shots, 2) int: start_frame, end_frame (inclusive)

    @property
    def n_frames(self) -> int:
        """Frames of the video, as the shot detector saw them (last shot's end + 1)."""
        return int(self.shots[-1, 1]) + 1


def song_name(song_id: int | str) -> str:
    return f"{int(song_id):03d}"


def feature_paths(root: Path, song_id: int | str) -> tuple[Path, Path, Path]:
    """(visual .pth, caption .npy, shots .txt) of a song in the BGM909 layout under `root`."""
    name = song_name(song_id)
    return (
        root / VISUAL_DIR / f"{name}.pth",
        root / CAPTION_DIR / f"{name}.npy",
        root / SHOTS_DIR / f"{name}_scenes.txt",
    )


def available_songs(root: Path) -> list[str]:
    """Song ids (3 digits) that have all three feature files under `root`, sorted."""
    if not (root / VISUAL_DIR).is_dir():
        raise Bgm909Error(
            f"{root} is not a BGM909 feature folder: {root / VISUAL_DIR} is missing "
            f"(expected {VISUAL_DIR}/, {CAPTION_DIR}/ and {SHOTS_DIR}/)"
        )
    names = sorted(p.stem for p in (root / VISUAL_DIR).glob("*.pth"))
    return [n for n in names if all(p.exists() for p in feature_paths(root, n))]


def read_shots(path: Path) -> np.ndarray:
    """TransNetV2 `NNN_scenes.txt` -> (n_shots, 2) int array of inclusive frame ranges."""
    try:
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        shots = np.asarray([[int(float(a)), int(float(b))] for a, b, *_ in rows], dtype=np.int64)
    except (OSError, ValueError) as exc:
        raise Bgm909Error(f"cannot read shots from {path}: {exc}") from exc
    if shots.shape[0] == 0:
        raise Bgm909Error(f"{path} lists no shots")
    if np.any(shots[:, 1] < shots[:, 0]) or np.any(shots[1:, 0] <= shots[:-1, 0]):
        raise Bgm909Error(f"{path}: shots must be increasing `start end` frame pairs")
    return shots.reshape(-1, 2)


def _as_matrix(array: np.ndarray, dim: int, path: Path) -> np.ndarray:
    matrix = np.asarray(array, dtype=np.float32)
    if matrix.ndim == 3 and matrix.shape[0] == 1:  # a stored batch axis of one
        matrix = matrix[0]
    if matrix.ndim != 2 or matrix.shape[1] != dim or matrix.shape[0] == 0:
        raise Bgm909Error(f"{path}: expected a (frames, {dim}) array, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise Bgm909Error(f"{path} holds NaN or infinite values")
    return matrix


def load_video_features(root: Path, song_id: int | str) -> VideoFeatures:
    """Load one song's visual, caption and shot files (tensors only: weights_only=True)."""
    visual_path, caption_path, shots_path = feature_paths(root, song_id)
    try:
        visual = torch.load(visual_path, map_location="cpu", weights_only=True)
        caption = np.load(caption_path, allow_pickle=False)
    except (OSError, ValueError, RuntimeError) as exc:
        raise Bgm909Error(
            f"cannot read the BGM909 features of song {song_name(song_id)}: {exc}"
        ) from exc
    if isinstance(visual, torch.Tensor):
        visual = visual.float().numpy()
    return VideoFeatures(
        visual=_as_matrix(visual, VISUAL_DIM, visual_path),
        caption=_as_matrix(caption, CAPTION_DIM, caption_path),
        shots=read_shots(shots_path),
    )


def stretch_rows(features: np.ndarray, n_rows: int) -> np.ndarray:
    """(T, D) -> (n_rows, D): row i is features[int(i * T / n_rows)] (the authors' stretch)."""
    src = (np.arange(n_rows) * (features.shape[0] / n_rows)).astype(np.int64)
    return features[np.minimum(src, features.shape[0] - 1)]


def shot_starts_in_beats(shots: np.ndarray, n_frames: int, n_beats: int) -> np.ndarray:
    """Beat index (0-based) where each shot after the first starts, frames stretched over the
    song's beats and rounded to the nearest beat; duplicates (shots under a beat) merge."""
    starts = np.round(shots[1:, 0] / n_frames * n_beats).astype(np.int64)
    return np.unique(starts[(starts > 0) & (starts < n_beats)])


def beat_segments(shots: np.ndarray, n_frames: int, n_beats: int) -> np.ndarray:
    """(n_beats,) int: the segment (shot, merged under a beat) each beat belongs to."""
    ids = np.zeros(n_beats, dtype=np.int64)
    ids[shot_starts_in_beats(shots, n_frames, n_beats)] = 1
    return np.cumsum(ids)


def segment_means(per_beat: np.ndarray, beat_segment: np.ndarray) -> np.ndarray:
    """(n_beats, D) features and (n_beats,) segment ids -> (n_segments, D) per-segment means."""
    n_segments = int(beat_segment.max()) + 1
    sums = np.zeros((n_segments, per_beat.shape[1]), dtype=np.float64)
    np.add.at(sums, beat_segment, per_beat)
    counts = np.bincount(beat_segment, minlength=n_segments)[:, None]
    return (sums / counts).astype(np.float32)


@dataclass(frozen=True)
class SongVideoConditions:
    """A song's video conditions on its step grid."""

    segment_ids: np.ndarray  # (T,) int: segment (shot) of each 16th step, non-decreasing
    dynamic: np.ndarray  # (N, 512): mean visual feature of each segment
    semantic: np.ndarray  # (N, 768): mean caption feature of each segment


def video_conditions(
    features: VideoFeatures, n_steps: int, steps_per_beat: int
) -> SongVideoConditions:
    """Align one song's video features with its `n_steps` steps (16th notes)."""
    n_beats = max(-(-n_steps // steps_per_beat), 1)
    beat_segment = beat_segments(features.shots, features.n_frames, n_beats)
    visual = stretch_rows(features.visual, n_beats)  # (n_beats, 512)
    caption = stretch_rows(features.caption, n_beats)  # (n_beats, 768)
    segment_ids = np.repeat(beat_segment, steps_per_beat)[:n_steps]
    return SongVideoConditions(
        segment_ids=segment_ids,
        dynamic=segment_means(visual, beat_segment),
        semantic=segment_means(caption, beat_segment),
    )
