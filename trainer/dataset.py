"""POP909 windows for training: rolls on bar lines with their segment conditions.

Segments stand in for a video's shots: the phrases of the song, and with augmentation
phrases cut into random pieces of 1-4 bars (shots are often short). Each segment's
dynamic controls are measured on its own notes and turned into POP909 quantiles by the
calibration; the semantic ones come from the phrase labels and chords.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from diffbgm.controls import DYNAMIC_CONTROLS, PLAYINGS, SEMANTIC_CONTROLS, global_features
from diffbgm.errors import DiffBGMError
from diffbgm.generation.recall import recall_input, recall_map, transposed_steps
from diffbgm.metrics import odd_16th_share
from diffbgm.model.conditions import Conditions, PieceConditions, WindowConditions, stack_windows
from diffbgm.music.calibration import Calibration
from diffbgm.music.pop909 import COLUMN, UNLABELLED, segment_raw_controls
from diffbgm.music.roll import RollSpec

MAX_TRANSPOSE = 5  # semitones either way
SUB_SEGMENT_BARS = (1, 4)  # length range of the pieces a phrase is cut into
SPLIT_PROBABILITY = 0.5  # share of phrases cut into pieces when augmenting
# share of training windows shown no recalled music although they repeat a phrase: the
# sampler has none where the source is not composed yet, or where recall is switched off
RECALL_DROP_PROBABILITY = 0.25

Segment = tuple[int, int, str]  # first bar, end bar (exclusive), phrase letter


class WindowItem(TypedDict):
    """One training window."""

    roll: np.ndarray  # (2, T, P) float32 in {-1, +1}: onset, sustain
    cond: WindowConditions
    song_id: str
    bar: int  # the song's bar where the window starts
    # (3, T, P) float32: the music its steps repeat (`Conditions.recalled`), or None
    recalled: NotRequired[np.ndarray | None]


@dataclass(frozen=True)
class CachedSong:
    """One song of the cache, in memory. T steps, B bars, P pitches."""

    song_id: str
    onset: np.ndarray  # (T, P) bool
    sustain: np.ndarray  # (T, P) bool
    chord_pcs: np.ndarray  # (T, 12) float32
    bar_starts: np.ndarray  # (B,) int64
    bar_segment: np.ndarray  # (B,) int64 phrase segment of each bar
    segment_labels: tuple[str, ...]  # (N,) phrase letters
    bar_cumsum: np.ndarray  # (B + 1, K) float64 running sums of the per-bar table
    key_tonic_pc: int
    key_minor: bool
    tempo_bpm: float
    # (T, P) uint8 performed MIDI velocities at onsets; None in caches written without them
    velocity: np.ndarray | None = None

    @property
    def n_steps(self) -> int:
        return int(self.onset.shape[0])

    @cached_property
    def figuration(self) -> float:
        """Share of the song's onsets on the odd 16ths (diffbgm.controls, the figuration)."""
        return odd_16th_share(self.onset)

    @property
    def n_bars(self) -> int:
        return int(self.bar_starts.shape[0])

    def bar_end_step(self, bar: int) -> int:
        """First step after bar `bar - 1`, i.e. where bar `bar` starts (T past the last)."""
        return int(self.bar_starts[bar]) if bar < self.n_bars else self.n_steps

    def phrase_segments(self) -> list[Segment]:
        """The song's phrase segments in order, as (first bar, end bar, letter)."""
        changes = np.flatnonzero(np.diff(self.bar_segment)) + 1
        firsts = np.concatenate([[0], changes])
        ends = np.append(changes, self.n_bars)
        return [
            (int(a), int(b), self.segment_labels[int(self.bar_segment[a])])
            for a, b in zip(firsts, ends, strict=True)
        ]


def load_cached_song(path: str | Path) -> CachedSong:
    """Read one `songs/NNN.npz` of the cache."""
    file = Path(path)
    try:
        with np.load(file) as data:
            table = data["bar_table"].astype(np.float64)
            return CachedSong(
                song_id=file.stem,
                onset=data["onset"].astype(bool),
                sustain=data["sustain"].astype(bool),
                chord_pcs=data["chord_pcs"].astype(np.float32),
                bar_starts=data["bar_starts"].astype(np.int64),
                bar_segment=data["bar_segment"].astype(np.int64),
                segment_labels=tuple(str(x) for x in data["segment_labels"]),
                bar_cumsum=np.vstack([np.zeros((1, table.shape[1])), np.cumsum(table, axis=0)]),
                key_tonic_pc=int(data["key"][0]),
                key_minor=bool(data["key"][1]),
                tempo_bpm=float(data["tempo_bpm"]),
                velocity=data["velocity"] if "velocity" in data.files else None,
            )
    except (OSError, KeyError, ValueError) as exc:
        raise DiffBGMError(f"cannot read cached song {file}: {exc}") from exc


# POP909's performances fall into two groups by how much the velocity of the notes varies:
# even (a song's median 4-bar spread about 5-8) and wide (about 13-20), few songs between,
# and whole runs of song numbers in one group (docs/evaluation.md, "Two ways of playing").
# A song of at most this spread counts as evenly played.
EVEN_VELOCITY_SPREAD = 9.0


def velocity_spread(song: CachedSong, window_steps: int = 64, min_notes: int = 4) -> float:
    """How widely the song is played: the median over its 4-bar windows (from step 0, not
    overlapping) of the standard deviation of the performed onset velocities, in MIDI units.
    Windows with fewer than `min_notes` notes are left out; NaN without velocities or windows."""
    if song.velocity is None:
        return float("nan")
    spreads = []
    for start in range(0, song.n_steps - window_steps + 1, window_steps):
        struck = song.onset[start : start + window_steps]
        values = song.velocity[start : start + window_steps][struck].astype(np.float64)
        if values.size >= min_notes:
            spreads.append(float(values.std()))
    return float(np.median(spreads)) if spreads else float("nan")


PLAYING = ("all", *PLAYINGS)  # the training songs to keep: every song, or one way


def is_played(song: CachedSong, playing: str) -> bool:
    """Whether the song is performed the way `playing` names: "all" takes every song, "even"
    those of velocity spread at most EVEN_VELOCITY_SPREAD, "wide" those above it (a song
    without performed velocities is neither)."""
    if playing not in PLAYING:
        raise ValueError(f"playing must be one of {', '.join(PLAYING)}, got {playing!r}")
    if playing == "all":
        return True
    spread = velocity_spread(song)
    if np.isnan(spread):
        return False
    return bool(spread <= EVEN_VELOCITY_SPREAD) == (playing == "even")


def way_of_playing(song: CachedSong) -> str:
    """How the song is performed, "even" or "wide" (diffbgm.velocity.PLAYINGS): the condition
    the velocity model is trained and evaluated with; "even" for a song without velocities."""
    return "wide" if is_played(song, "wide") else "even"


def load_split(cache_dir: str | Path, split: str) -> list[CachedSong]:
    """All cached songs of a split ('train' or 'valid') listed in the cache's index.json."""
    folder = Path(cache_dir)
    index_file = folder / "index.json"
    if not index_file.is_file():
        raise DiffBGMError(f"no POP909 cache at {folder} (run `python -m trainer cache`)")
    splits = json.loads(index_file.read_text(encoding="utf-8"))["splits"]
    if split not in splits:
        raise DiffBGMError(f"{index_file} has no split {split!r}; it has {sorted(splits)}")
    return [load_cached_song(folder / "songs" / f"{song_id}.npz") for song_id in splits[split]]


def segment_features(
    song: CachedSong,
    segment: Segment,
    calibration: Calibration,
    spec: RollSpec,
    semitones: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(Dd,) dynamic and (Ds,) semantic controls of one run of bars, all in [0, 1], of the
    song's notes moved by `semitones` (a transposed training window must ask for the register
    its notes have: a shift of up to 5 semitones is more than the spread between the 25th and
    the 75th percentile of POP909's segment registers)."""
    first, end, letter = segment
    sums = song.bar_cumsum[end] - song.bar_cumsum[first]
    raw = segment_raw_controls(sums, spec.steps_per_bar)
    raw["register"] += semitones
    silent = not np.isfinite(raw["velocity"])
    dynamic = {
        "density": calibration.to_quantile("density", raw["density"]),
        "velocity": 0.0 if silent else calibration.to_quantile("velocity", raw["velocity"]),
        "register": 0.5 if silent else calibration.to_quantile("register", raw["register"]),
        "polyphony": calibration.to_quantile("polyphony", raw["polyphony"]),
    }
    melodic = letter.isupper() or (letter == UNLABELLED and sums[COLUMN["melody_onsets"]] > 0)
    semantic = {
        "melodic": float(melodic),
        "intro": float(letter == "i"),
        "outro": float(letter == "o"),
        "minor_share": raw["minor_share"],
        "harmonic_rhythm": calibration.to_quantile("harmonic_rhythm", raw["harmonic_rhythm"]),
        "position": song.bar_end_step(first) / max(song.n_steps, 1),
    }
    return (
        np.array([dynamic[name] for name in DYNAMIC_CONTROLS], dtype=np.float32),
        np.array([semantic[name] for name in SEMANTIC_CONTROLS], dtype=np.float32),
    )


def conditions_from_segments(
    song: CachedSong,
    segments: list[Segment],
    first_step: int,
    n_steps: int,
    calibration: Calibration,
    spec: RollSpec,
    semitones: int = 0,
) -> PieceConditions:
    """PieceConditions of steps [first_step, first_step + n_steps) cut into `segments`.

    The segments must cover those steps, in order; their features use their full bars, and
    their register is that of the notes moved by `semitones` (the chords are not moved: see
    `PieceConditions.transpose`).
    """
    step_ids = np.zeros(n_steps, dtype=np.int64)
    dynamic, semantic = [], []
    for i, segment in enumerate(segments):
        a = max(song.bar_end_step(segment[0]) - first_step, 0)
        step_ids[a:] = i
        dyn, sem = segment_features(song, segment, calibration, spec, semitones)
        dynamic.append(dyn)
        semantic.append(sem)
    chords = song.chord_pcs[first_step : first_step + n_steps]
    return PieceConditions(
        chord_pcs=chords,
        segment_ids=step_ids,
        dynamic=np.stack(dynamic),
        semantic=np.stack(semantic),
        global_=np.asarray(
            global_features(
                song.key_tonic_pc,
                song.key_minor,
                way_of_playing(song),
                song.tempo_bpm,
                song.figuration,
            ),
            dtype=np.float32,
        ),
        recalls=phrase_recalls([letter for _, _, letter in segments]),
    )


def phrase_recalls(letters: list[str]) -> np.ndarray:
    """(N,) for each segment the first earlier segment with the same phrase letter, else -1.

    POP909's letters name repeated phrases (A = the verse each time it comes back); bars
    the labels do not cover ('-') recall nothing. Every return points at the first
    occurrence, so a third verse recalls the first, not a variation of a variation.
    """
    first_of: dict[str, int] = {}
    recalls = np.full(len(letters), -1, dtype=np.int64)
    for index, letter in enumerate(letters):
        if letter == UNLABELLED:
            continue
        if letter in first_of:
            recalls[index] = first_of[letter]
        else:
            first_of[letter] = index
    return recalls


def piece_conditions_for_song(
    song: CachedSong,
    calibration: Calibration,
    segments: Literal["phrases", "bars"] = "phrases",
    spec: RollSpec | None = None,
) -> PieceConditions:
    """Conditions of a whole cached song, segments = its phrases or its single bars."""
    spec = spec or RollSpec()
    if segments == "phrases":
        parts = song.phrase_segments()
    elif segments == "bars":
        labels = [song.segment_labels[int(s)] for s in song.bar_segment]
        parts = [(b, b + 1, labels[b]) for b in range(song.n_bars)]
    else:
        raise ValueError(f"segments must be 'phrases' or 'bars', not {segments!r}")
    return conditions_from_segments(song, parts, 0, song.n_steps, calibration, spec)


def split_segment(segment: Segment, rng: np.random.Generator) -> list[Segment]:
    """Cut a phrase into consecutive pieces of SUB_SEGMENT_BARS bars (the last may be shorter)."""
    first, end, letter = segment
    pieces = []
    while first < end:
        length = int(rng.integers(SUB_SEGMENT_BARS[0], SUB_SEGMENT_BARS[1] + 1))
        pieces.append((first, min(first + length, end), letter))
        first += length
    return pieces


def shift_pitch(roll: np.ndarray, semitones: int) -> np.ndarray:
    """(T, P) roll moved up by `semitones` (down if negative); notes leaving the range drop."""
    if semitones == 0:
        return roll
    out = np.zeros_like(roll)
    if semitones > 0:
        out[:, semitones:] = roll[:, :-semitones]
    else:
        out[:, :semitones] = roll[:, -semitones:]
    return out


def regular_window_starts(song: CachedSong, window_bars: int, steps_per_bar: int) -> np.ndarray:
    """Bars where `window_bars` full bars of exactly `steps_per_bar` steps begin."""
    lengths = np.diff(np.append(song.bar_starts, song.n_steps))
    regular = (lengths == steps_per_bar).astype(np.int64)
    if len(regular) < window_bars:
        return np.zeros(0, dtype=np.int64)
    runs = np.convolve(regular, np.ones(window_bars, dtype=np.int64), mode="valid")
    return np.flatnonzero(runs == window_bars)


class Pop909Windows(Dataset):
    """Windows of `window_bars` bars (starting on bar lines) from a split of the POP909 cache.

    Item: dict(roll=(2, T, P) float32 in {-1, +1} (onset, sustain), cond=WindowConditions,
    song_id, bar). Windows span only regular 16-step bars. With `augment`, each item is
    transposed by a random -5..+5 semitones and its phrases randomly cut into 1-4 bar
    pieces; the random draws depend on (seed, epoch, index), so call `set_epoch` each epoch.
    `playing` ("even", "wide"): only the songs of the split played that way (`is_played`).
    `figured_from` > 0: only the songs with at least that figuration (`CachedSong.figuration`);
    `figured_below` < 1: only the songs with less.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        split: str,
        spec: RollSpec | None = None,
        window_bars: int = 4,
        max_segments: int = 8,
        augment: bool = True,
        seed: int = 0,
        calibration: Calibration | None = None,
        recall: bool = False,
        playing: str = "all",
        figured_from: float = 0.0,
        figured_below: float = 1.0,
    ) -> None:
        self.spec = spec or RollSpec()
        self.window_bars = window_bars
        self.window_steps = window_bars * self.spec.steps_per_bar
        self.max_segments = max_segments
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        cache = Path(cache_dir)
        self.calibration = calibration or Calibration.load(cache / "calibration.json")
        self.songs = [
            song
            for song in load_split(cache, split)
            if is_played(song, playing)
            and song.figuration >= figured_from
            and (figured_below >= 1.0 or song.figuration < figured_below)  # 1: no upper bound
        ]
        for song in self.songs:
            if song.onset.shape[1] != self.spec.n_pitches:
                raise DiffBGMError(
                    f"cache {cache} has {song.onset.shape[1]} pitches, the spec wants "
                    f"{self.spec.n_pitches}: rebuild it with this spec"
                )
        self.phrases = [song.phrase_segments() for song in self.songs]
        # per song, (T,) the step each step repeats (-1: none) and by how many semitones
        self.recall_maps = (
            [
                recall_map(piece_conditions_for_song(song, self.calibration, spec=self.spec))
                for song in self.songs
            ]
            if recall
            else None
        )
        self.phrase_of_bar = [song.bar_segment for song in self.songs]
        starts = [
            regular_window_starts(song, window_bars, self.spec.steps_per_bar) for song in self.songs
        ]
        self.index = np.concatenate(
            [np.stack([np.full(len(s), i), s], axis=1) for i, s in enumerate(starts)]
            + [np.zeros((0, 2), dtype=np.int64)]
        ).astype(np.int64)  # (N, 2): song number, first bar

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws (transposition, phrase cuts) for a new epoch."""
        self.epoch = epoch

    def window_segments(
        self, song_no: int, first_bar: int, rng: np.random.Generator | None
    ) -> list[Segment]:
        """Segments covering the window's bars: whole phrases, or random pieces of them."""
        song_phrases = self.phrases[song_no]
        bar_phrase = self.phrase_of_bar[song_no]
        # Phrase segments are numbered in order, so the window's phrases are a range.
        first_phrase = int(bar_phrase[first_bar])
        last_phrase = int(bar_phrase[first_bar + self.window_bars - 1])
        segments: list[Segment] = []
        for phrase in song_phrases[first_phrase : last_phrase + 1]:
            cut = rng is not None and rng.random() < SPLIT_PROBABILITY
            segments.extend(split_segment(phrase, rng) if cut and rng is not None else [phrase])
        end_bar = first_bar + self.window_bars
        return [s for s in segments if s[1] > first_bar and s[0] < end_bar]

    def __getitem__(self, item: int) -> WindowItem:
        song_no, first_bar = (int(x) for x in self.index[item])
        song = self.songs[song_no]
        rng = np.random.default_rng([self.seed, self.epoch, item]) if self.augment else None
        start = int(song.bar_starts[first_bar])
        stop = start + self.window_steps
        segments = self.window_segments(song_no, first_bar, rng)
        semitones = 0 if rng is None else int(rng.integers(-MAX_TRANSPOSE, MAX_TRANSPOSE + 1))
        piece = conditions_from_segments(
            song, segments, start, self.window_steps, self.calibration, self.spec, semitones
        ).transpose(semitones)
        onset = shift_pitch(song.onset[start:stop], semitones)
        sustain = shift_pitch(song.sustain[start:stop], semitones)
        roll = np.stack([onset, sustain]).astype(np.float32) * 2.0 - 1.0  # (2, T, P)
        window_item = WindowItem(
            roll=roll,
            cond=piece.window(0, self.window_steps, self.max_segments),
            song_id=song.song_id,
            bar=first_bar,
        )
        if self.recall_maps is not None:
            recalled = recalled_music(song, *self.recall_maps[song_no], start, stop)
            if rng is not None:
                if rng.random() < RECALL_DROP_PROBABILITY:
                    recalled[:] = 0.0
                recalled[:2] = [shift_pitch(channel, semitones) for channel in recalled[:2]]
            window_item["recalled"] = recalled
        return window_item


def recalled_music(
    song: CachedSong, source: np.ndarray, semitones: np.ndarray, start: int, stop: int
) -> np.ndarray:
    """(3, stop - start, P) float32 network input (`recall_input`) of the window's steps that
    repeat music from before the window (`source`, (T,) from `recall_map`): the sampler
    shows a window only music that is already final, which is mostly earlier windows'."""
    src = source[start:stop]
    at = np.flatnonzero((src >= 0) & (src < start))
    music = np.full((2, stop - start, song.onset.shape[1]), -1, dtype=np.int8)
    if at.size:
        notes = np.stack([song.onset[src[at]], song.sustain[src[at]]]).astype(np.int8) * 2 - 1
        music[:, at] = transposed_steps(notes, semitones[start:stop][at])
    where = np.zeros(stop - start, dtype=bool)
    where[at] = True
    return recall_input(music, where)


def collate_windows(items: list[WindowItem], spec: RollSpec) -> tuple[torch.Tensor, Conditions]:
    """Items of Pop909Windows -> (roll (B, 2, T, P) float32, Conditions of the batch)."""
    rolls = torch.from_numpy(np.stack([item["roll"] for item in items]))
    cond = stack_windows([item["cond"] for item in items], spec.pitch_low, spec.n_pitches)
    recalled = [item.get("recalled") for item in items]
    if all(r is not None for r in recalled):
        cond = cond.with_(recalled=torch.from_numpy(np.stack(recalled)))  # type: ignore[arg-type]
    return rolls, cond
