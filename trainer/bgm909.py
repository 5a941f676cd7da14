"""BGM909 mode: POP909 music conditioned on the released video features of its music video.

Per segment (a shot of the video, stretched over the song's beats — see bgm909_features):
dynamic = the mean visual feature (512), semantic = the mean caption feature (768); global =
the song's key. With the rule selector the captions (semantic) steer the early, noisy
denoising steps and the visual features (dynamic) the late ones, as in the paper.
The music comes from the POP909 training cache (`python -m trainer cache`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffbgm.controls import key_features
from diffbgm.errors import DiffBGMError
from diffbgm.model.conditions import PieceConditions
from trainer.bgm909_features import (
    CAPTION_DIM,
    VISUAL_DIM,
    available_songs,
    load_video_features,
    video_conditions,
)

# The model sizes the BGM909 features need (a preset override).
BGM909_MODEL_OVERRIDES: dict[str, Any] = {"dynamic_dim": VISUAL_DIM, "semantic_dim": CAPTION_DIM}
MAX_TRANSPOSE = 5  # semitones either way, as in POP909 training


@dataclass(frozen=True)
class Bgm909Song:
    """One song's music (binary rolls) and its video conditions on the same 16th grid."""

    song_id: str
    onset: np.ndarray  # (T, P) bool
    sustain: np.ndarray  # (T, P) bool
    bar_starts: np.ndarray  # (B,) step index of each bar
    tempo_bpm: float
    piece: PieceConditions  # dynamic (N, 512), semantic (N, 768), global_ (14,) key

    @property
    def n_steps(self) -> int:
        return int(self.onset.shape[0])


def cache_split(cache_dir: Path, split: str) -> list[str]:
    """Song ids of a split in the POP909 cache's index.json."""
    index_path = cache_dir / "index.json"
    if not index_path.is_file():
        raise DiffBGMError(
            f"{index_path} is missing: build the POP909 cache first (python -m trainer cache)"
        )
    splits = json.loads(index_path.read_text())["splits"]
    return list(splits.get(split, []))


def load_bgm909_song(
    cache_dir: Path, bgm909_dir: Path, song_id: str, steps_per_beat: int = 4
) -> Bgm909Song:
    """A cached POP909 song with the conditions of its video's features."""
    path = cache_dir / "songs" / f"{song_id}.npz"
    try:
        with np.load(path) as entry:
            onset = entry["onset"].astype(bool)
            sustain = entry["sustain"].astype(bool)
            chord_pcs = entry["chord_pcs"].astype(np.float32)
            bar_starts = entry["bar_starts"].astype(np.int64)
            tonic, minor = (int(v) for v in entry["key"])
            tempo = float(entry["tempo_bpm"])
    except (OSError, KeyError, ValueError) as exc:
        raise DiffBGMError(f"cannot read cached song {path}: {exc}") from exc
    video = video_conditions(
        load_video_features(bgm909_dir, song_id), onset.shape[0], steps_per_beat
    )
    piece = PieceConditions(
        chord_pcs=chord_pcs,
        segment_ids=video.segment_ids,
        dynamic=video.dynamic,
        semantic=video.semantic,
        global_=np.asarray(key_features(tonic, bool(minor)), dtype=np.float32),
    )
    return Bgm909Song(song_id, onset, sustain, bar_starts, tempo, piece)


def shift_pitch(roll: np.ndarray, semitones: int) -> np.ndarray:
    """Move a (..., P) roll up by `semitones` pitches; notes shifted out of range are lost."""
    out = np.zeros_like(roll)
    if semitones > 0:
        out[..., semitones:] = roll[..., :-semitones]
    elif semitones < 0:
        out[..., :semitones] = roll[..., -semitones:]
    else:
        out[...] = roll
    return out


class Bgm909Windows:
    """Training windows of BGM909 songs: items dict(roll=(2, T, P) in [-1, 1], cond=Window...).

    Windows start at every bar line and hold `window_steps` steps (the last ones padded with
    silence). Augmentation transposes music and chords together by up to ±5 semitones; the
    shift of item i is drawn from (seed, i), so `set_seed` makes a batch reproducible.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        bgm909_dir: str | Path,
        split: str,
        window_steps: int,
        max_segments: int,
        augment: bool = False,
        seed: int = 0,
        steps_per_beat: int = 4,
    ) -> None:
        cache, features = Path(cache_dir), Path(bgm909_dir)
        with_video = set(available_songs(features))
        ids = [s for s in cache_split(cache, split) if s in with_video]
        self.songs = [load_bgm909_song(cache, features, s, steps_per_beat) for s in ids]
        self.window_steps = window_steps
        self.max_segments = max_segments
        self.augment = augment
        self.seed = seed
        # (song number, start step) of every window
        self.windows = [
            (n, int(start))
            for n, song in enumerate(self.songs)
            for start in song.bar_starts
            if start < song.n_steps
        ]

    def __len__(self) -> int:
        return len(self.windows)

    def set_seed(self, seed: int) -> None:
        self.seed = seed

    def __getitem__(self, index: int) -> dict[str, Any]:
        song_no, start = self.windows[index]
        song = self.songs[song_no]
        length = self.window_steps
        end = min(start + length, song.n_steps)
        roll = np.zeros((2, length, song.onset.shape[1]), dtype=np.float32)
        roll[0, : end - start] = song.onset[start:end]
        roll[1, : end - start] = song.sustain[start:end]
        piece = song.piece
        if self.augment:
            shift = int(
                np.random.default_rng([self.seed, index]).integers(
                    -MAX_TRANSPOSE, MAX_TRANSPOSE + 1
                )
            )
            roll = shift_pitch(roll, shift)
            piece = piece.transpose(shift)
        return {
            "roll": roll * 2.0 - 1.0,
            "cond": piece.window(start, length, self.max_segments),
            "song_id": song.song_id,
            "start": start,
        }
