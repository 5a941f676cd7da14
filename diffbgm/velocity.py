"""Learned velocities: how hard each note is struck, from the notes around it.

A generated roll has notes but no dynamics. A small network, trained on POP909's performed
velocities (`python -m trainer velocity`), reads each onset in its context — pitch, place in
the bar, chord size and the note's place in the chord (top, bass), length, how busy the
music around it is, the top voice's melodic step — with the segment's velocity control
(the plan's loudness, in MIDI units through the calibration) and the piece's way of playing
(evenly or with wide dynamics, PLAYINGS) and predicts a mean and a spread. Velocities are drawn from that with a seeded residual whose shape and
piece-to-piece width were measured on real songs, and per 4 bars one velocity that a share
of the notes take (as in real songs), so that loudness varies from note to note the way a
performance does while each segment keeps the loudness the plan asks for.

Inference is numpy only (the weights are a few thousand floats in safetensors); the
training code lives in trainer/velocity.py. No torch, no MIDI library here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from diffbgm.controls import DEFAULT_PLAYING, PLAYINGS

DEFAULT_DIR = Path(__file__).resolve().parent / "assets" / "velocity"
STEPS_PER_BAR = 16
MAX_LENGTH = 32  # note lengths beyond two bars count as two bars
CONTEXT_STEPS = 8  # local density and register: onsets within this many steps either side
VELOCITY_CENTRE, VELOCITY_SCALE = 80.0, 20.0  # MIDI velocity <-> network units

# Feature names, in the order of the columns `note_features` returns.
FEATURE_NAMES: tuple[str, ...] = (
    "control",  # the segment's velocity control, (MIDI - 80) / 20
    "pitch",  # (MIDI pitch - 60) / 24
    "pitch_vs_context",  # pitch minus the mean onset pitch around it, in octaves
    *(f"bar_pos_{i:02d}" for i in range(STEPS_PER_BAR)),  # one-hot place in the bar
    "chord_size",  # notes struck at this step / 4
    "rank_from_top",  # 0 = highest struck note, / 4, capped at 1
    "rank_from_bottom",  # 0 = lowest struck note, / 4, capped at 1
    "is_top",
    "is_bass",
    "is_highest_sounding",  # no held note above it: a melody cue
    "held_notes",  # notes still sounding (struck earlier) at this step / 4
    "octave_doubled",  # the same pitch class an octave away struck with it
    "length",  # log(1 + steps) / log(1 + MAX_LENGTH)
    "local_density",  # onsets within +-CONTEXT_STEPS steps / 16
    "gap_before",  # steps since the previous onset step / 16, capped at 1
    "gap_after",  # steps to the next onset step / 16, capped at 1
    "top_step",  # |interval| from the previous top note, for a top note, / 12, capped at 1
    "segment_bars_in",  # bars since the segment began / 8, capped at 1
    "segment_share",  # place in the segment, 0 at its start to 1 at its end
    "wide_playing",  # 1: the piece is played with wide dynamics, 0: evenly (PLAYINGS)
)


N_LEVELS = 101  # quantile tables: 0 %, 1 %, ..., 100 %
MODE_BLOCK_STEPS = 64  # the shared velocity is drawn per 4 bars


@dataclass(frozen=True)
class ResidualConfig:
    """How a note's velocity is drawn around its predicted mean, in units of its spread.

    shape: quantiles (0 %, 1 %, ..., 100 %) of the standardised residuals of the training
        notes, each song's divided by its own scale: the residual's shape, heavier-tailed
        than a normal one (empty: standard normal);
    piece_scale: quantiles of that per-song scale (the root mean square of a song's
        standardised residuals): some songs are played evenly, some with wide dynamics, so a
        piece draws its own (empty: 1);
    mode_share, mode_offset: quantiles, over the 4-bar blocks of the training songs, of the
        share of a block's notes at its most common velocity and of where that velocity lies
        ((mode - mean prediction) / mean spread): real blocks hold one velocity many notes
        share, which independent residuals do not give;
    scale: multiplies every residual (1 = as measured; 0 = the predicted means alone);
    mode_weight: multiplies the drawn share (0 = no shared velocity).
    scale and mode_weight were chosen on validation songs (docs/evaluation.md, "Learned
    velocities"). Otherwise residuals are drawn independently: measured on real songs, the
    residuals of notes struck together, and of consecutive onset steps, hardly correlate.
    """

    shape: tuple[float, ...] = ()
    piece_scale: tuple[float, ...] = ()
    mode_share: tuple[float, ...] = ()
    mode_offset: tuple[float, ...] = ()
    scale: float = 1.0
    mode_weight: float = 1.0

    def sample(
        self, mean: np.ndarray, spread: np.ndarray, steps: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """(notes,) velocities (not yet rounded) of one piece's notes; `steps` sorted."""
        levels = np.linspace(0.0, 1.0, N_LEVELS)
        piece = (
            float(np.interp(rng.random(), levels, self.piece_scale)) if self.piece_scale else 1.0
        )
        if self.shape:
            residual = np.interp(rng.random(mean.size), levels, self.shape)
        else:
            residual = rng.standard_normal(mean.size)
        values = mean + self.scale * piece * spread * residual
        if not self.mode_share or self.mode_weight <= 0:
            return values
        # Real 4-bar windows hold one velocity many notes share (a tenth to a fifth of them):
        # each block draws that value and the share of its notes that take it.
        blocks = steps // MODE_BLOCK_STEPS
        for block in np.unique(blocks):
            members = np.flatnonzero(blocks == block)
            share = self.mode_weight * float(np.interp(rng.random(), levels, self.mode_share))
            offset = float(np.interp(rng.random(), levels, self.mode_offset))
            level = mean[members].mean() + self.scale * piece * spread[members].mean() * offset
            takes = rng.random(members.size) < share
            values[members[takes]] = level
            # the block keeps its predicted loudness: the shared value must not move the
            # segment away from its velocity control
            values[members] += mean[members].mean() - values[members].mean()
        return values


@dataclass(frozen=True)
class VelocityConfig:
    """The network's shape and the residuals it samples with (stored in config.json).

    residual: how evenly played pieces are sampled (and every piece, for a model without the
    way of playing or without wide_residual); wide_residual: pieces played with wide
    dynamics. Each is measured on the training songs played that way, and its settings are
    chosen on the validation songs played that way."""

    hidden: tuple[int, ...] = (64, 64)
    residual: ResidualConfig = field(default_factory=ResidualConfig)
    features: tuple[str, ...] = FEATURE_NAMES
    meta: dict[str, object] = field(default_factory=dict)
    wide_residual: ResidualConfig | None = None

    def residual_for(self, playing: str) -> ResidualConfig:
        """The residual a piece played `playing` is sampled with."""
        if playing == "wide" and self.wide_residual is not None:
            return self.wide_residual
        return self.residual

    def with_residual_for(self, playing: str, residual: ResidualConfig) -> VelocityConfig:
        """This config with the residual that `playing` samples with replaced."""
        if playing == "wide" and self.wide_residual is not None:
            return replace(self, wide_residual=residual)
        return replace(self, residual=residual)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        data["features"] = list(self.features)
        data["residual"] = _residual_dict(self.residual)
        if self.wide_residual is None:
            del data["wide_residual"]
        else:
            data["wide_residual"] = _residual_dict(self.wide_residual)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> VelocityConfig:
        residual = data.get("residual", {})
        wide = data.get("wide_residual")
        hidden = data.get("hidden", (64, 64))
        features = data.get("features", FEATURE_NAMES)
        meta = data.get("meta", {})
        if not isinstance(residual, dict) or not isinstance(meta, dict):
            raise ValueError("velocity config: 'residual' and 'meta' must be objects")
        if wide is not None and not isinstance(wide, dict):
            raise ValueError("velocity config: 'wide_residual' must be an object")
        if not isinstance(hidden, list | tuple) or not isinstance(features, list | tuple):
            raise ValueError("velocity config: 'hidden' and 'features' must be lists")
        return cls(
            hidden=tuple(int(h) for h in hidden),
            residual=_residual_from(residual),
            features=tuple(str(f) for f in features),
            meta=dict(meta),
            wide_residual=None if wide is None else _residual_from(wide),
        )


def _residual_dict(residual: ResidualConfig) -> dict[str, object]:
    return {
        "shape": [round(v, 5) for v in residual.shape],
        "piece_scale": [round(v, 5) for v in residual.piece_scale],
        "mode_share": [round(v, 5) for v in residual.mode_share],
        "mode_offset": [round(v, 5) for v in residual.mode_offset],
        "scale": residual.scale,
        "mode_weight": residual.mode_weight,
    }


def _residual_from(data: dict[str, object]) -> ResidualConfig:
    def values(name: str) -> tuple[float, ...]:
        stored = data.get(name, ())
        if not isinstance(stored, list | tuple):
            raise ValueError(f"velocity config: residual '{name}' must be a list")
        return tuple(float(v) for v in stored)

    return ResidualConfig(
        shape=values("shape"),
        piece_scale=values("piece_scale"),
        mode_share=values("mode_share"),
        mode_offset=values("mode_offset"),
        scale=float(data.get("scale", 1.0)),  # type: ignore[arg-type]
        mode_weight=float(data.get("mode_weight", 1.0)),  # type: ignore[arg-type]
    )


def note_lengths(onset: np.ndarray, sustain: np.ndarray) -> np.ndarray:
    """(T, P) int: at every onset, how many steps the note lasts (0 elsewhere), capped at
    MAX_LENGTH. A note lasts while its pitch keeps sounding and no new onset strikes it."""
    on = np.asarray(onset, dtype=bool)
    continues = np.asarray(sustain, dtype=bool) & ~on
    run = np.zeros(on.shape[1], dtype=np.int64)  # continuing steps from t+1 on
    lengths = np.zeros(on.shape, dtype=np.int64)
    for step in range(on.shape[0] - 1, -1, -1):
        lengths[step] = np.where(on[step], 1 + run, 0)
        run = np.where(continues[step], np.minimum(run + 1, MAX_LENGTH), 0)
    return np.minimum(lengths, MAX_LENGTH)


def _window_sum(per_step: np.ndarray, half: int) -> np.ndarray:
    """Sum over steps [t - half, t + half] of a (T,) array, cut at the roll's edges."""
    padded = np.concatenate([[0.0], np.cumsum(per_step, dtype=np.float64)])
    steps = np.arange(per_step.shape[0])
    high = np.minimum(steps + half + 1, per_step.shape[0])
    low = np.maximum(steps - half, 0)
    return padded[high] - padded[low]


def note_features(
    onset: np.ndarray,
    sustain: np.ndarray,
    step_control: np.ndarray,
    step_segment: np.ndarray,
    pitch_low: int = 21,
    playing: str = DEFAULT_PLAYING,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, pitches, features) of every onset, in step then pitch order.

    step_control: (T,) the velocity control of every step in MIDI units (the segment's
    control through the calibration); step_segment: (T,) segment index of every step;
    playing: how the piece is played, one of PLAYINGS.
    """
    if playing not in PLAYINGS:
        raise ValueError(f"playing must be one of {', '.join(PLAYINGS)}, got {playing!r}")
    on = np.asarray(onset, dtype=bool)
    sounding = on | np.asarray(sustain, dtype=bool)
    n_steps = on.shape[0]
    steps, pitches = np.nonzero(on)
    n_notes = steps.size
    midi = (pitches + pitch_low).astype(np.float64)
    per_step = on.sum(axis=1)
    chord_size = per_step[steps].astype(np.float64)
    rank_bottom = (np.cumsum(on, axis=1)[steps, pitches] - 1).astype(np.float64)
    rank_top = chord_size - 1 - rank_bottom
    # the highest sounding pitch of each step (held notes count): -1 where nothing sounds
    any_sounding = sounding.any(axis=1)
    highest = np.where(any_sounding, on.shape[1] - 1 - sounding[:, ::-1].argmax(axis=1), -1)
    held = (sounding & ~on).sum(axis=1)
    up = np.zeros_like(on)
    up[:, :-12] = on[:, 12:]
    down = np.zeros_like(on)
    down[:, 12:] = on[:, :-12]
    doubled = (up | down)[steps, pitches]
    lengths = note_lengths(on, sounding)[steps, pitches].astype(np.float64)
    density = _window_sum(per_step.astype(np.float64), CONTEXT_STEPS)
    pitch_sum = _window_sum((on * (np.arange(on.shape[1]) + pitch_low)).sum(axis=1), CONTEXT_STEPS)
    context_pitch = pitch_sum / np.maximum(density, 1.0)
    # neighbouring onset steps and the top voice's melodic step
    onset_steps = np.flatnonzero(per_step > 0)
    place = np.searchsorted(onset_steps, steps)
    gap_before = np.where(
        place > 0, steps - onset_steps[np.maximum(place - 1, 0)], STEPS_PER_BAR
    ).astype(np.float64)
    gap_after = np.where(
        place < onset_steps.size - 1,
        onset_steps[np.minimum(place + 1, max(onset_steps.size - 1, 0))] - steps,
        STEPS_PER_BAR,
    ).astype(np.float64)
    top_pitch = np.where(per_step > 0, on.shape[1] - 1 - on[:, ::-1].argmax(axis=1), 0)
    top_of_onsets = top_pitch[onset_steps]
    previous_top = np.where(place > 0, top_of_onsets[np.maximum(place - 1, 0)], pitches)
    is_top = rank_top == 0
    top_step = np.where(is_top, np.abs(pitches - previous_top), 0).astype(np.float64)
    # where the note stands in its segment
    segment = np.asarray(step_segment)[:n_steps]
    starts_here = np.concatenate([[True], segment[1:] != segment[:-1]])
    segment_start = np.maximum.accumulate(np.where(starts_here, np.arange(n_steps), 0))
    ends_here = np.concatenate([segment[1:] != segment[:-1], [True]])
    rev = np.where(ends_here[::-1], np.arange(n_steps)[::-1], n_steps)
    segment_end = np.minimum.accumulate(rev)[::-1] + 1  # exclusive end of each step's segment
    into = (steps - segment_start[steps]).astype(np.float64)
    span = np.maximum(segment_end[steps] - segment_start[steps] - 1, 1).astype(np.float64)
    bar_pos = np.zeros((n_notes, STEPS_PER_BAR))
    bar_pos[np.arange(n_notes), steps % STEPS_PER_BAR] = 1.0
    control = np.asarray(step_control, dtype=np.float64)[:n_steps][steps]
    columns = [
        (control - VELOCITY_CENTRE) / VELOCITY_SCALE,
        (midi - 60.0) / 24.0,
        (midi - context_pitch[steps]) / 12.0,
        *bar_pos.T,
        chord_size / 4.0,
        np.minimum(rank_top / 4.0, 1.0),
        np.minimum(rank_bottom / 4.0, 1.0),
        is_top.astype(np.float64),
        (rank_bottom == 0).astype(np.float64),
        (pitches >= highest[steps]).astype(np.float64),
        held[steps] / 4.0,
        doubled.astype(np.float64),
        np.log1p(lengths) / np.log1p(MAX_LENGTH),
        density[steps] / 16.0,
        np.minimum(gap_before / STEPS_PER_BAR, 1.0),
        np.minimum(gap_after / STEPS_PER_BAR, 1.0),
        np.minimum(top_step / 12.0, 1.0),
        np.minimum(into / STEPS_PER_BAR / 8.0, 1.0),
        into / span,
        np.full(n_notes, 1.0 if playing == "wide" else 0.0),
    ]
    features = np.stack(columns, axis=1) if n_notes else np.zeros((0, len(FEATURE_NAMES)))
    return steps, pitches, features.astype(np.float32)


def echo_sources(
    steps: np.ndarray,
    pitches: np.ndarray,
    source_step: np.ndarray,
    semitones: np.ndarray,
    n_pitches: int,
) -> np.ndarray:
    """(notes,) the index of the note each note repeats, or -1: the note struck at its step's
    source step (`source_step`, -1 = not recalled) on its pitch moved back by the step's
    transposition. `steps`, `pitches`: every onset, in step then pitch order."""
    n_steps = np.asarray(source_step).shape[0]
    index = np.full((n_steps, n_pitches), -1, dtype=np.int64)
    index[steps, pitches] = np.arange(steps.size)
    source = np.asarray(source_step)[steps]
    source_pitch = pitches - np.asarray(semitones)[steps]
    found = (source >= 0) & (source_pitch >= 0) & (source_pitch < n_pitches)
    out = np.full(steps.size, -1, dtype=np.int64)
    out[found] = index[source[found], source_pitch[found]]
    return out


def echo_recalled(values: np.ndarray, mean: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Velocities where a note that repeats an earlier one (`sources`, from `echo_sources`)
    lies as far from its own predicted mean as that note lies from its: a repeated phrase is
    played with its first playing's accents, at the loudness its own segment asks for.

    Independent residuals made repeated phrases less alike than real songs' (MusDr's SI
    further from real); echoing them was nearer on every validation seed (docs/evaluation.md,
    "Repeated phrases played alike"). Sources lie at earlier steps, so one pass in note order
    carries a repeat of a repeat."""
    out = np.array(values, dtype=np.float64)
    for note in np.flatnonzero(sources >= 0):
        source = sources[note]
        out[note] = out[source] + mean[note] - mean[source]
    return out


@dataclass(frozen=True)
class VelocityModel:
    """A trained velocity network (numpy weights) and how it samples."""

    config: VelocityConfig
    weights: list[tuple[np.ndarray, np.ndarray]]  # (in, out) matrix and bias per layer
    mean: np.ndarray  # (F,) feature standardisation
    scale: np.ndarray  # (F,)

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, spread) of every note's velocity, in MIDI units, from (notes, FEATURE_NAMES)
        features. A model trained before an input existed reads only the columns it knows."""
        x = np.asarray(features, dtype=np.float32)
        if tuple(self.config.features) != FEATURE_NAMES:
            x = x[:, [FEATURE_NAMES.index(name) for name in self.config.features]]
        x = (x - self.mean) / self.scale
        for index, (matrix, bias) in enumerate(self.weights):
            x = x @ matrix + bias
            if index < len(self.weights) - 1:
                x = np.maximum(x, 0.0)
        mean = x[:, 0] * VELOCITY_SCALE + VELOCITY_CENTRE
        spread = np.exp(np.clip(x[:, 1], -6.0, 3.0)) * VELOCITY_SCALE
        return mean.astype(np.float64), spread.astype(np.float64)

    def velocities(
        self,
        onset: np.ndarray,
        sustain: np.ndarray,
        step_control: np.ndarray,
        step_segment: np.ndarray,
        seed: int,
        pitch_low: int = 21,
        residual: ResidualConfig | None = None,
        playing: str = DEFAULT_PLAYING,
        recalled: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """(T, P) uint8 MIDI velocities at the onsets (0 elsewhere), reproducible per seed;
        `playing`: evenly or with wide dynamics (PLAYINGS); `recalled`: where each step's
        music was recalled from ((T,) source step or -1, (T,) semitones; the generation's
        recall map): a recalled note is played as the note it repeats (`echo_recalled`)."""
        steps, pitches, features = note_features(
            onset, sustain, step_control, step_segment, pitch_low, playing
        )
        out = np.zeros(np.asarray(onset).shape, dtype=np.uint8)
        if steps.size == 0:
            return out
        mean, spread = self.predict(features)
        how = residual or self.config.residual_for(playing)
        values = how.sample(mean, spread, steps, np.random.default_rng(seed))
        if recalled is not None:
            source_step, semitones = recalled
            n_pitches = int(np.asarray(onset).shape[-1])
            sources = echo_sources(steps, pitches, source_step, semitones, n_pitches)
            values = echo_recalled(values, mean, sources)
        values = np.rint(values)
        out[steps, pitches] = np.clip(values, 1, 127).astype(np.uint8)
        return out


def save_velocity_model(model: VelocityModel, folder: Path) -> None:
    """config.json + model.safetensors (float32) in `folder`."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"feature_mean": model.mean, "feature_scale": model.scale}
    for index, (matrix, bias) in enumerate(model.weights):
        tensors[f"layer{index}.weight"] = np.ascontiguousarray(matrix, dtype=np.float32)
        tensors[f"layer{index}.bias"] = np.ascontiguousarray(bias, dtype=np.float32)
    save_file(
        {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()},
        str(folder / "model.safetensors"),
    )
    (folder / "config.json").write_text(json.dumps(model.config.to_dict(), indent=1) + "\n")


def load_velocity_model(folder: str | Path | None = None) -> VelocityModel:
    """The velocity model in `folder` (default: the one shipped in diffbgm/assets/velocity)."""
    from safetensors.numpy import load_file

    from diffbgm.errors import DiffBGMError

    path = Path(folder) if folder is not None else DEFAULT_DIR
    try:
        config = VelocityConfig.from_dict(json.loads((path / "config.json").read_text()))
        tensors = load_file(str(path / "model.safetensors"))
    except (OSError, ValueError, TypeError) as exc:
        raise DiffBGMError(f"cannot read the velocity model in {path}: {exc}") from exc
    unknown = sorted(set(config.features) - set(FEATURE_NAMES))
    if unknown:
        raise DiffBGMError(
            f"{path}: the velocity model reads features this version does not compute: "
            + ", ".join(unknown)
        )
    layers = len(config.hidden) + 1
    weights = [(tensors[f"layer{i}.weight"], tensors[f"layer{i}.bias"]) for i in range(layers)]
    return VelocityModel(config, weights, tensors["feature_mean"], tensors["feature_scale"])
