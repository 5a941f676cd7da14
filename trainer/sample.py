"""`python -m trainer sample`: pieces from a model, conditioned on validation songs or random
conditions, written as MIDI (and WAV).

Conditions of a song = its real chords, its phrase segments and the controls measured on
them (POP909 models), or its video's features (BGM909 models, `--bgm909`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffbgm.checkpoint import LoadedModel
from diffbgm.controls import (
    DEFAULT_PLAYING,
    DYNAMIC_CONTROLS,
    SEMANTIC_CONTROLS,
    TEMPO_FEATURE,
    global_features,
    tempo_feature,
)
from diffbgm.errors import DiffBGMError
from diffbgm.generation import GenerationConfig, generate_roll
from diffbgm.generation.config import KnobValue
from diffbgm.generation.decoding import DecodedRoll
from diffbgm.model.conditions import PieceConditions
from diffbgm.model.config import ModelConfig
from diffbgm.music.calibration import Calibration
from diffbgm.music.roll import PianoRoll, RollSpec, roll_to_midi
from trainer.dataset import (
    CachedSong,
    load_cached_song,
    piece_conditions_for_song,
    way_of_playing,
)
from trainer.models import load_for_inference

RANDOM_PIECE_TEMPO_BPM = 120.0  # what random conditions are told and rendered at
# Triads (root offset from the tonic, minor?) of the major and natural minor scales.
MAJOR_TRIADS = ((0, False), (2, True), (4, True), (5, False), (7, False), (9, True))
MINOR_TRIADS = ((0, True), (3, False), (5, True), (7, True), (8, False), (10, False))


@dataclass(frozen=True)
class SongPiece:
    """The first bars of a real song: its conditions and, for comparison, its real notes."""

    song_id: str
    conditions: PieceConditions
    onset: np.ndarray  # (T, P) bool, the real music
    sustain: np.ndarray  # (T, P) bool
    tempo_bpm: float
    key: tuple[int, bool]  # tonic pitch class, minor
    velocity: np.ndarray | None = None  # (T, P) uint8 performed velocities, if cached
    playing: str = (
        DEFAULT_PLAYING  # how the whole song is performed (trainer.dataset.way_of_playing)
    )


@dataclass(frozen=True)
class SampleOptions:
    model: str
    out: str
    generation: GenerationConfig  # the model's settings with the command line's changes
    data: str = "data_cache/pop909"
    songs: tuple[int, ...] = ()
    n_random: int = 0
    bars: int = 16
    tempo_bpm: float | None = None  # None: the song's tempo (120 for random conditions)
    seed: int = 0
    wav: bool = False
    bgm909: str | None = None


def song_generation(config: GenerationConfig, bgm909: object) -> GenerationConfig:
    """BGM909 models are steered by video features, not POP909 density quantiles: their
    segments ask for no onsets per bar, so density-matched decoding is off for them."""
    return config if bgm909 is None else config.with_overrides(density_slack=0.0)


def resolve_generation(model: str, overrides: Mapping[str, KnobValue]) -> GenerationConfig:
    """The generation settings stored with `model` (checkpoint or run) with `overrides`."""
    return load_for_inference(model).generation.with_overrides(**overrides)


def roll_spec_of(config: ModelConfig) -> RollSpec:
    return RollSpec(pitch_low=config.pitch_low, n_pitches=config.n_pitches)


def crop_piece(piece: PieceConditions, n_steps: int) -> PieceConditions:
    """The first `n_steps` steps of a piece; segments renumbered from 0, features kept."""
    n_steps = min(n_steps, piece.n_steps)
    ids = piece.segment_ids[:n_steps]
    used = np.unique(ids)
    recalls = None
    if piece.recalls is not None:
        # Segments are numbered in time order and recall earlier ones, so a kept segment's
        # source is kept too (cropping keeps a prefix); only its number changes.
        kept = piece.recalls[used]
        recalls = np.where(kept >= 0, np.searchsorted(used, kept), -1)
    return PieceConditions(
        chord_pcs=piece.chord_pcs[:n_steps],
        segment_ids=np.searchsorted(used, ids).astype(np.int64),
        dynamic=piece.dynamic[used],
        semantic=piece.semantic[used],
        global_=piece.global_,
        recalls=recalls,
    )


@dataclass(frozen=True)
class SongJob:
    """One training song for a worker process to compose: the model folder, its settings and
    the song's first `bars` bars (`trainer critic`, `trainer selfdata`)."""

    model: str
    generation: GenerationConfig
    data: str
    song: int
    bars: int
    seed: int


def load_song_piece(
    cache_dir: Path, song_id: str, bars: int, config: ModelConfig, bgm909_dir: Path | None = None
) -> SongPiece:
    """A cached song's first `bars` bars (16 steps each) with the conditions the model takes."""
    path = cache_dir / "songs" / f"{song_id}.npz"
    if not path.is_file():
        raise DiffBGMError(f"song {song_id} is not in the cache {cache_dir} ({path} missing)")
    song: CachedSong = load_cached_song(path)
    spec = roll_spec_of(config)
    if bgm909_dir is not None:
        from trainer.bgm909 import with_video

        piece = with_video(song, bgm909_dir).piece
    else:
        calibration = Calibration.load(cache_dir / "calibration.json")
        piece = piece_conditions_for_song(song, calibration, "phrases", spec)
    n_steps = min(bars * spec.steps_per_bar, song.n_steps)
    if song.onset.shape[1] != config.n_pitches:
        raise DiffBGMError(
            f"the cache has {song.onset.shape[1]} pitches, the model {config.n_pitches}"
        )
    return SongPiece(
        song_id=song.song_id,
        conditions=crop_piece(piece, n_steps),
        onset=song.onset[:n_steps],
        sustain=song.sustain[:n_steps],
        tempo_bpm=song.tempo_bpm,
        key=(song.key_tonic_pc, song.key_minor),
        velocity=None if song.velocity is None else song.velocity[:n_steps],
        playing=way_of_playing(song),
    )


def random_piece(
    config: ModelConfig,
    bars: int,
    rng: np.random.Generator,
    tempo_bpm: float = RANDOM_PIECE_TEMPO_BPM,
) -> PieceConditions:
    """Random but musical conditions at `tempo_bpm`: a key, a diatonic triad per bar, segments
    of 2-4 bars with random controls. Feature sizes other than the POP909 controls (BGM909
    models) get standard-normal features."""
    steps_per_bar = 16
    tonic, minor = int(rng.integers(12)), bool(rng.random() < 0.4)
    triads = MINOR_TRIADS if minor else MAJOR_TRIADS
    chord_pcs = np.zeros((bars * steps_per_bar, 12), dtype=np.float32)
    for bar in range(bars):
        offset, triad_minor = triads[int(rng.integers(len(triads)))]
        root = (tonic + offset) % 12
        for interval in (0, 3 if triad_minor else 4, 7):
            chord_pcs[bar * steps_per_bar : (bar + 1) * steps_per_bar, (root + interval) % 12] = 1
    lengths: list[int] = []
    while sum(lengths) < bars:
        lengths.append(min(int(rng.integers(2, 5)), bars - sum(lengths)))
    segment_ids = np.repeat(np.arange(len(lengths)), np.asarray(lengths) * steps_per_bar)
    n_segments = len(lengths)
    if config.dynamic_dim == len(DYNAMIC_CONTROLS):
        dynamic = rng.uniform(0.1, 0.9, size=(n_segments, config.dynamic_dim))
    else:
        dynamic = rng.normal(size=(n_segments, config.dynamic_dim))
    if config.semantic_dim == len(SEMANTIC_CONTROLS):
        starts = np.cumsum([0, *lengths[:-1]]) / bars
        semantic = np.stack(
            [
                [
                    float(rng.random() < 0.7),
                    float(i == 0),
                    float(i == n_segments - 1),
                    float(minor),
                    rng.uniform(0.2, 0.8),
                    starts[i],
                ]  # fmt: skip
                for i in range(n_segments)
            ]
        )
    else:
        semantic = rng.normal(size=(n_segments, config.semantic_dim))
    # every global feature, as a song's or a plan's conditions carry them (the model reads the
    # first config.global_dim); zeros after them for a model that reads more
    known = global_features(tonic, minor, tempo_bpm=tempo_bpm)
    global_ = np.zeros(max(config.global_dim, len(known)), dtype=np.float32)
    global_[: len(known)] = known
    return PieceConditions(
        chord_pcs=chord_pcs,
        segment_ids=segment_ids.astype(np.int64),
        dynamic=dynamic.astype(np.float32),
        semantic=semantic.astype(np.float32),
        global_=global_,
    )


def generate(
    loaded: LoadedModel,
    piece: PieceConditions,
    config: GenerationConfig,
    seed: int,
    calibration: Calibration | None = None,
) -> PianoRoll:
    """A whole piece through diffbgm.generation.generate_roll, as a PianoRoll. No velocity
    channel is generated: roll_to_midi then plays the default velocity. Pass `calibration`
    (the shipped one) when generating many pieces, so it is read once."""
    return notes_roll(generate_roll(loaded, piece, config, seed, calibration=calibration).notes)


def notes_roll(notes: DecodedRoll) -> PianoRoll:
    """Decoded notes as a PianoRoll without velocities (roll_to_midi plays the default)."""
    return PianoRoll(
        onset=notes.onset,
        sustain=notes.sustain,
        velocity=np.zeros(notes.onset.shape, dtype=np.uint8),
    )


def write_piece(
    roll: PianoRoll, spec: RollSpec, tempo_bpm: float, stem: Path, wav: bool
) -> list[Path]:
    """MIDI (and WAV) of a roll; returns the files written."""
    midi = roll_to_midi(roll, tempo_bpm, spec)
    midi_path = stem.with_suffix(".mid")
    midi.write(str(midi_path))
    written = [midi_path]
    if wav:
        from diffbgm.errors import RenderError
        from diffbgm.music.render import render_wav

        try:
            written.append(render_wav(midi_path, stem.with_suffix(".wav")).path)
        except RenderError as exc:
            # The MIDI is the result; a failed rendering must not lose the other pieces.
            print(f"warning: no WAV for {midi_path}: {exc}", file=sys.stderr)
    return written


def sample_to_folder(options: SampleOptions) -> list[Path]:
    """Generate the requested pieces into options.out; returns the files written."""
    if not options.songs and options.n_random <= 0:
        raise DiffBGMError("nothing to sample: give --songs (e.g. 801-804) and/or --random N")
    loaded = load_for_inference(options.model)
    spec = roll_spec_of(loaded.config)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    bgm909 = Path(options.bgm909) if options.bgm909 else None
    config = song_generation(options.generation, bgm909)
    calibration = Calibration.load()  # the shipped one, as the app decodes with; read once
    for n, song_number in enumerate(options.songs):
        song = load_song_piece(
            Path(options.data), f"{song_number:03d}", options.bars, loaded.config, bgm909
        )
        tempo = options.tempo_bpm or song.tempo_bpm
        conditions = song.conditions
        if options.tempo_bpm:  # the network is told the tempo the music will be played at
            conditions = conditions.with_global_feature(TEMPO_FEATURE, tempo_feature(tempo))
        roll = generate(loaded, conditions, config, options.seed + n, calibration)
        written += write_piece(roll, spec, tempo, out / f"song{song.song_id}", options.wav)
    rng = np.random.default_rng(options.seed)
    for n in range(options.n_random):
        tempo = options.tempo_bpm or RANDOM_PIECE_TEMPO_BPM
        piece = random_piece(loaded.config, options.bars, rng, tempo)
        roll = generate(loaded, piece, config, options.seed + 1000 + n, calibration)
        written += write_piece(roll, spec, tempo, out / f"random{n:03d}", options.wav)
    return written
