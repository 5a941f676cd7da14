"""BGM909 mode: POP909 music conditioned on the released video features of its music video.

Per segment (a shot of the video, stretched over the song's beats — see bgm909_features):
dynamic = the mean visual feature (512), semantic = the mean caption feature (768); global =
the song's key. With the rule selector the captions (semantic) steer the early, noisy
denoising steps and the visual features (dynamic) the late ones, as in the paper.
The music comes from the POP909 training cache (`python -m trainer cache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffbgm.controls import global_features
from diffbgm.model.conditions import PieceConditions
from diffbgm.music.roll import RollSpec
from trainer.bgm909_features import (
    CAPTION_DIM,
    VISUAL_DIM,
    available_songs,
    load_video_features,
    video_conditions,
)
from trainer.dataset import (
    MAX_TRANSPOSE,
    CachedSong,
    WindowItem,
    load_split,
    regular_window_starts,
    shift_pitch,
    way_of_playing,
)

# The model sizes the BGM909 features need (a preset override).
BGM909_MODEL_OVERRIDES: dict[str, Any] = {"dynamic_dim": VISUAL_DIM, "semantic_dim": CAPTION_DIM}


@dataclass(frozen=True)
class Bgm909Song:
    """One cached POP909 song with the conditions of its video on the same 16th grid."""

    song: CachedSong
    piece: PieceConditions  # dynamic (N, 512), semantic (N, 768), global_ (14,) key

    @property
    def song_id(self) -> str:
        return self.song.song_id


def with_video(song: CachedSong, bgm909_dir: Path, steps_per_beat: int = 4) -> Bgm909Song:
    """Attach the song's BGM909 video features as its segment conditions."""
    video = video_conditions(
        load_video_features(bgm909_dir, song.song_id), song.n_steps, steps_per_beat
    )
    piece = PieceConditions(
        chord_pcs=song.chord_pcs,
        segment_ids=video.segment_ids,
        dynamic=video.dynamic,
        semantic=video.semantic,
        global_=np.asarray(
            global_features(
                song.key_tonic_pc, song.key_minor, way_of_playing(song), song.tempo_bpm
            ),
            dtype=np.float32,
        ),
    )
    return Bgm909Song(song, piece)


def load_bgm909_split(cache_dir: Path, bgm909_dir: Path, split: str) -> list[Bgm909Song]:
    """The cached songs of a split that have BGM909 features, with their video conditions."""
    have_video = set(available_songs(bgm909_dir))
    return [
        with_video(s, bgm909_dir) for s in load_split(cache_dir, split) if s.song_id in have_video
    ]


class Bgm909Windows:
    """Training windows of BGM909 songs: items dict(roll=(2, T, P) in {-1, 1}, cond=Window...).

    Windows start on bar lines and span `window_bars` regular 4/4 bars, as Pop909Windows.
    Augmentation transposes music and chords together by up to ±5 semitones; the shift of
    item i is drawn from (seed, i), so `set_seed` makes a batch reproducible.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        bgm909_dir: str | Path,
        split: str,
        window_bars: int,
        max_segments: int,
        augment: bool = False,
        seed: int = 0,
        spec: RollSpec | None = None,
    ) -> None:
        self.spec = spec or RollSpec()
        self.songs = load_bgm909_split(Path(cache_dir), Path(bgm909_dir), split)
        self.window_steps = window_bars * self.spec.steps_per_bar
        self.max_segments = max_segments
        self.augment = augment
        self.seed = seed
        self.windows = [
            (n, int(bar))
            for n, item in enumerate(self.songs)
            for bar in regular_window_starts(item.song, window_bars, self.spec.steps_per_bar)
        ]  # (song number, first bar) of every window

    def __len__(self) -> int:
        return len(self.windows)

    def set_seed(self, seed: int) -> None:
        self.seed = seed

    def __getitem__(self, index: int) -> WindowItem:
        song_no, bar = self.windows[index]
        item = self.songs[song_no]
        start = int(item.song.bar_starts[bar])
        stop = start + self.window_steps
        onset, sustain = item.song.onset[start:stop], item.song.sustain[start:stop]
        piece = item.piece
        if self.augment:
            rng = np.random.default_rng([self.seed, index])
            shift = int(rng.integers(-MAX_TRANSPOSE, MAX_TRANSPOSE + 1))
            onset, sustain = shift_pitch(onset, shift), shift_pitch(sustain, shift)
            piece = piece.transpose(shift)
        return WindowItem(
            roll=np.stack([onset, sustain]).astype(np.float32) * 2.0 - 1.0,
            cond=piece.window(start, self.window_steps, self.max_segments),
            song_id=item.song_id,
            bar=bar,
        )
