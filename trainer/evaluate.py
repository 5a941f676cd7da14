"""`python -m trainer evaluate`: generated vs real music on validation songs.

Each song's first `bars` bars are generated from its real chords, phrase segments and
per-segment controls (or its video features, BGM909), then compared with the same bars of
the real song through diffbgm.metrics. Two more measures of whether the conditions are heard:
  * control obedience: Spearman correlation, over all segments of all songs, between the
    requested per-segment density (register, polyphony) quantile and the one realised by the
    notes;
  * boundary audibility: share of segment boundaries where the onset density changes by
    more than `boundary_threshold` (relative) or the mean register by more than
    `boundary_threshold` octaves, comparing the bar before with the bar after; and the same
    share among the boundaries whose controls ask for a change (density or register quantile
    moving by >= ASKED_CONTRAST), since many real phrase boundaries ask for none.
Ablations switch a component off at inference: SAC, the feature selector, or guidance.

Two more measures, on by default (`--no-realism`, `--no-musdr-si` switch them off):
  * realism: a classifier two-sample test on 4-bar windows of generated vs real music
    (diffbgm.realism), on notes alone and with velocities (generated: the velocities the app
    writes from the segments' velocity control, learned by default, `--velocity rule` for the
    old rule; real: POP909's performed ones), with real vs
    real (even vs odd song numbers) as the floor; averaged over `--realism-repeats`
    cross-validations (5), each with its own folds and forest, and with every song's held-out
    counts kept for `python -m trainer compare`; with `--realism-groups` also per aspect of
    the music (rhythm, texture, note lengths, register, harmony, melody, velocity): the test
    on that group of features alone and on all the others;
  * SI as MusDr computes it (diffbgm.musdr_si: the piece rendered by FluidSynth, 2 Hz chroma,
    seconds) as si_musdr_short/mid/long; the per-bar symbolic variant is si_bar_short/mid.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from diffbgm.checkpoint import LoadedModel
from diffbgm.controls import (
    DEFAULT_PLAYING,
    DYNAMIC_CONTROLS,
    FIGURATION_FEATURE,
    figuration_feature,
    typical_figuration,
)
from diffbgm.device import sampling_precision
from diffbgm.errors import DiffBGMError
from diffbgm.generation import GenerationConfig, generate_roll
from diffbgm.metrics import MetricConfig, aggregate, piece_metrics, relative_change, spearman
from diffbgm.model.conditions import PieceConditions
from diffbgm.model.config import SelectorMode
from diffbgm.model.onnx_runtime import sampling_runtime
from diffbgm.music.calibration import Calibration
from diffbgm.music.roll import PianoRoll, RollSpec, roll_to_midi
from diffbgm.outputs import VelocityMethod, velocities_from_controls
from diffbgm.plan import PlanConfig, contrast_at_cuts
from diffbgm.realism import (
    FeatureDifference,
    GroupResult,
    RealismConfig,
    TwoSampleResult,
    WindowSet,
    feature_differences,
    feature_names,
    group_tests,
    piece_windows,
    realism_report,
)
from trainer.models import load_for_inference, with_inference_switches
from trainer.sample import (
    SongPiece,
    load_song_piece,
    notes_roll,
    roll_spec_of,
    song_generation,
    write_piece,
)
from trainer.workers import worker_pool

Ablation = Literal["none", "no-sac", "no-selector", "no-guidance"]
ABLATIONS: tuple[str, ...] = ("none", "no-sac", "no-selector", "no-guidance")
STEPS_PER_BAR = 16
# A boundary "asks" for a change when density or register moves by at least this (quantile)
ASKED_CONTRAST = 0.25
# Controls whose obedience (Spearman, requested vs realised per segment) is reported.
OBEYED_CONTROLS: tuple[str, ...] = ("density", "register", "polyphony")
SONG_CONTROLS = "generated vs the song's controls"  # report key, with --cut-contrast only


@dataclass(frozen=True)
class EvalOptions:
    model: str
    generation: GenerationConfig  # the model's settings with the command line's changes
    data: str = "data_cache/pop909"
    songs: tuple[int, ...] = tuple(range(801, 860))
    bars: int = 32
    ablation: str = "none"
    seed: int = 0
    boundary_threshold: float = 0.25
    out_json: str | None = None
    midi_dir: str | None = None
    bgm909: str | None = None
    # > 0: the app's contrast rule at every segment boundary (diffbgm.plan.contrast_at_cuts)
    cut_contrast: float = 0.0
    workers: int = 1  # > 1: generate in this many processes of one thread each
    realism: bool = True  # the classifier two-sample test (diffbgm.realism)
    realism_repeats: int = 5  # cross-validations averaged (RealismConfig.repeats)
    # the realism test per feature group too, alone and left out (diffbgm.realism.group_tests)
    realism_groups: bool = False
    musdr_si: bool = True  # SI as MusDr computes it, from FluidSynth audio (diffbgm.musdr_si)
    velocity: VelocityMethod = "learned"  # generated velocities: the app's model, or the old rule
    # the learned velocities play a recalled phrase as the phrase it repeats, as the app does
    velocity_echo: bool = True
    # the figuration told (diffbgm.controls): the real song's, as its controls are, or the
    # share typical of its tempo, as the app tells (a network with global_dim 17 reads it)
    figuration: Literal["song", "typical"] = "song"


@dataclass(frozen=True)
class EvalReport:
    markdown: str
    data: dict[str, Any]


def apply_ablation(
    loaded: LoadedModel, ablation: str, config: GenerationConfig
) -> tuple[LoadedModel, GenerationConfig]:
    """The model and generation settings an ablation runs with."""
    if ablation not in ABLATIONS:
        raise DiffBGMError(f"unknown ablation {ablation!r}; choose one of {', '.join(ABLATIONS)}")
    if ablation in ("no-sac", "no-selector"):
        sac = False if ablation == "no-sac" else loaded.config.sac
        selector: SelectorMode | None = None if ablation == "no-sac" else "none"
        ablated = with_inference_switches(loaded, sac=sac, selector=selector)
        if loaded.figured is not None:  # the figured network stands in for the parent: alike
            figured = with_inference_switches(loaded.figured, sac=sac, selector=selector)
            ablated = replace(ablated, figured=figured)
        return ablated, config
    if ablation == "no-guidance":
        return loaded, config.with_overrides(guidance=1.0)
    return loaded, config


def segment_starts(segment_ids: np.ndarray) -> np.ndarray:
    """(T,) segment id per step -> first step of every segment."""
    return np.concatenate([[0], np.flatnonzero(np.diff(segment_ids)) + 1]).astype(np.int64)


def span_density(onset: np.ndarray, begin: int, end: int) -> float:
    """Onsets per 16-step bar in steps [begin, end)."""
    return float(onset[begin:end].sum()) * STEPS_PER_BAR / max(end - begin, 1)


def span_register(onset: np.ndarray, begin: int, end: int, pitch_low: int) -> float:
    """Mean MIDI pitch of the onsets in steps [begin, end) (NaN without onsets)."""
    _, pitches = np.nonzero(onset[begin:end])
    return float(pitches.mean() + pitch_low) if pitches.size else math.nan


def span_polyphony(sustain: np.ndarray, begin: int, end: int) -> float:
    """Mean number of sounding pitches per step in steps [begin, end) (the polyphony control's
    raw value: silent steps count as 0)."""
    return float(sustain[begin:end].sum()) / max(end - begin, 1)


def realised_controls(
    onset: np.ndarray,
    sustain: np.ndarray,
    starts: np.ndarray,
    pitch_low: int,
    calibration: Calibration,
) -> dict[str, np.ndarray]:
    """Per-segment density, register and polyphony of the notes, as POP909 quantiles (like
    the controls)."""
    ends = np.append(starts[1:], onset.shape[0])
    spans = list(zip(starts, ends, strict=True))
    density = [span_density(onset, a, b) for a, b in spans]
    register = [span_register(onset, a, b, pitch_low) for a, b in spans]
    register_q = [
        math.nan if math.isnan(r) else float(calibration.to_quantile("register", r))
        for r in register
    ]
    polyphony = np.asarray([span_polyphony(sustain, a, b) for a, b in spans])
    return {
        "density": np.asarray(calibration.to_quantile("density", np.asarray(density)), float),
        "register": np.asarray(register_q, dtype=np.float64),
        "polyphony": np.asarray(calibration.to_quantile("polyphony", polyphony), float),
    }


def boundary_changes(
    onset: np.ndarray, starts: np.ndarray, pitch_low: int, threshold: float
) -> list[tuple[int, bool]]:
    """(segment index after the boundary, audible?) per internal boundary that can be judged:
    the bar before vs the bar after, onset density (relative) or mean register (octaves)
    changing by more than `threshold`."""
    changes = []
    for index, boundary in enumerate(starts[1:], start=1):
        before = (max(boundary - STEPS_PER_BAR, 0), boundary)
        after = (boundary, min(boundary + STEPS_PER_BAR, onset.shape[0]))
        if after[1] - after[0] < STEPS_PER_BAR // 2:
            continue  # too little music after the last boundary to judge
        d0, d1 = span_density(onset, *before), span_density(onset, *after)
        density_change = relative_change(d0, d1)
        r0, r1 = span_register(onset, *before, pitch_low), span_register(onset, *after, pitch_low)
        register_change = 0.0 if math.isnan(r0) or math.isnan(r1) else abs(r1 - r0) / 12.0
        changes.append((index, density_change > threshold or register_change > threshold))
    return changes


def boundary_audibility(
    onset: np.ndarray, starts: np.ndarray, pitch_low: int, threshold: float
) -> tuple[int, int]:
    """(audible, total) internal segment boundaries: the bar before vs the bar after."""
    changes = boundary_changes(onset, starts, pitch_low, threshold)
    return sum(audible for _, audible in changes), len(changes)


def requested_contrast(dynamic: np.ndarray, index: int) -> float:
    """The largest change of the density or register control from segment index-1 to index."""
    columns = [DYNAMIC_CONTROLS.index(name) for name in ("density", "register")]
    return float(np.abs(dynamic[index, columns] - dynamic[index - 1, columns]).max())


def judged_boundaries(
    onset: np.ndarray, starts: np.ndarray, dynamic: np.ndarray, pitch_low: int, threshold: float
) -> list[tuple[bool, bool]]:
    """(audible?, asked for?) per judged boundary; asked = the controls change by at least
    ASKED_CONTRAST across it. `dynamic` (N, Dd) holds the segments' dynamic controls."""
    return [
        (audible, requested_contrast(dynamic, index) >= ASKED_CONTRAST)
        for index, audible in boundary_changes(onset, starts, pitch_low, threshold)
    ]


def contrasted(piece: PieceConditions, ratio: float, calibration: Calibration) -> PieceConditions:
    """The piece with the planner's cut-contrast rule applied at every segment boundary, as
    if each segment were its own shot: where neighbours' requested onsets per bar differ by
    less than `ratio` of their mean, the later one's density request moves until they do."""
    rows = [dict(zip(DYNAMIC_CONTROLS, map(float, row), strict=True)) for row in piece.dynamic]
    own_shots = [(index,) for index in range(len(rows))]
    contrast_at_cuts(rows, own_shots, PlanConfig(cut_contrast=ratio), calibration)
    dynamic = np.array([[row[name] for name in DYNAMIC_CONTROLS] for row in rows])
    return replace(piece, dynamic=dynamic.astype(np.float32))


def _pooled(values: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(values) if values else np.zeros(0)


def obedience(requested: list[np.ndarray], realised: list[np.ndarray]) -> float:
    """Spearman over all segments of all songs, segments without a value skipped."""
    req, real = _pooled(requested), _pooled(realised)
    keep = np.isfinite(req) & np.isfinite(real)
    return spearman(req[keep], real[keep])


class _Accumulator:
    """Per-segment control values and boundary counts of one kind of music (generated/real)."""

    def __init__(self) -> None:
        self.requested: dict[str, list[np.ndarray]] = {name: [] for name in OBEYED_CONTROLS}
        self.realised: dict[str, list[np.ndarray]] = {name: [] for name in OBEYED_CONTROLS}
        self.audible = 0
        self.boundaries = 0
        self.asked_audible = 0  # boundaries where the controls ask for a clear change
        self.asked = 0

    def add(
        self,
        onset: np.ndarray,
        sustain: np.ndarray,
        song: SongPiece,
        pitch_low: int,
        calibration: Calibration,
        threshold: float,
    ) -> None:
        starts = segment_starts(song.conditions.segment_ids)
        got = realised_controls(onset, sustain, starts, pitch_low, calibration)
        for name in OBEYED_CONTROLS:
            column = DYNAMIC_CONTROLS.index(name)
            self.requested[name].append(song.conditions.dynamic[:, column].astype(np.float64))
            self.realised[name].append(got[name])
        dynamic = song.conditions.dynamic
        for audible, asked in judged_boundaries(onset, starts, dynamic, pitch_low, threshold):
            self.audible += audible
            self.boundaries += 1
            self.asked_audible += audible and asked
            self.asked += asked

    def summary(self, has_controls: bool) -> dict[str, float]:
        out = {
            "boundary_audibility": self.audible / self.boundaries if self.boundaries else math.nan,
            "boundaries": float(self.boundaries),
            "boundary_audibility_asked": self.asked_audible / self.asked
            if self.asked
            else math.nan,
            "boundaries_asked": float(self.asked),
        }
        if has_controls:
            for name in OBEYED_CONTROLS:
                out[f"{name}_obedience"] = obedience(self.requested[name], self.realised[name])
        return out


def app_velocities(
    onset: np.ndarray,
    sustain: np.ndarray,
    conditions: PieceConditions,
    calibration: Calibration,
    method: VelocityMethod = "learned",
    playing: str = DEFAULT_PLAYING,
    recalled: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The velocities the app would write for a generated roll (the roll itself has none):
    the velocity model (or the old rule) on each segment's velocity control, seeded by the
    notes as in the app; `playing`: the real song's way of playing, passed as its controls
    are (docs/evaluation.md, "Two ways of playing"); `recalled`: the generation's recall map
    (recalled phrases played as the phrases they repeat, as in the app)."""
    column = DYNAMIC_CONTROLS.index("velocity")
    return velocities_from_controls(
        onset,
        sustain,
        conditions.segment_ids,
        conditions.dynamic[:, column],
        calibration,
        method=method,
        playing=playing,
        recalled=recalled,
    )


MUSDR_NAMES = ("si_musdr_short", "si_musdr_mid", "si_musdr_long")


def musdr_structureness(roll: PianoRoll, tempo_bpm: float, spec: RollSpec) -> dict[str, float]:
    """si_musdr_short/mid/long of a roll rendered at a constant tempo (NaN if FluidSynth
    cannot render it: the other metrics still count)."""
    from diffbgm.errors import RenderError
    from diffbgm.musdr_si import structureness_from_midi

    try:
        values = structureness_from_midi(roll_to_midi(roll, tempo_bpm, spec))
    except RenderError:
        return dict.fromkeys(MUSDR_NAMES, math.nan)
    return {f"si_musdr_{name}": value for name, value in values.items()}


def _musdr_job(job: tuple[PianoRoll, float, RollSpec]) -> dict[str, float]:
    return musdr_structureness(*job)


def _musdr_values(
    jobs: list[tuple[PianoRoll, float, RollSpec]], workers: int
) -> list[dict[str, float]]:
    """MusDr SI of every (roll, tempo, spec), in `workers` processes when > 1 (seconds of
    rendering and scape plot per piece)."""
    if workers <= 1 or len(jobs) <= 1:
        return [_musdr_job(job) for job in jobs]
    with worker_pool(min(workers, len(jobs))) as pool:
        return list(pool.map(_musdr_job, jobs))


class _RealismWindows:
    """4-bar window features of generated and real music, notes only and with velocities."""

    def __init__(self, pitch_low: int, steps_per_bar: int, repeats: int = 1) -> None:
        self.config = RealismConfig(
            pitch_low=pitch_low, steps_per_bar=steps_per_bar, repeats=repeats
        )
        self.sets = {
            (kind, variant): WindowSet(feature_names(variant == "with velocities"))
            for kind in ("generated", "real")
            for variant in ("notes only", "with velocities")
        }

    def add(self, kind: str, song: str, roll: PianoRoll, velocity: np.ndarray | None) -> None:
        # One pass: the velocity features follow the note features, and which windows are
        # kept depends on the onsets alone, so the notes-only rows are a slice of the others.
        windows = piece_windows(roll.onset, roll.sustain, velocity, self.config)
        self.sets[(kind, "notes only")].add(song, windows[:, : len(feature_names(False))])
        if velocity is not None:
            self.sets[(kind, "with velocities")].add(song, windows)

    def differences(self) -> list[FeatureDifference]:
        """Every feature, generated (b) against real (a), the most different first; with the
        velocity features where both samples have velocities."""
        variant = self._fullest_variant()
        real, generated = self.sets[("real", variant)], self.sets[("generated", variant)]
        return feature_differences(real, generated, top=None)

    def _fullest_variant(self) -> str:
        """'with velocities' where both samples have them, else 'notes only'."""
        variant = "with velocities"
        if self.sets[("real", variant)].songs and self.sets[("generated", variant)].songs:
            return variant
        return "notes only"

    def groups(self) -> list[GroupResult]:
        """The generated-vs-real test per feature group (with velocities where both samples
        have them); empty without windows of both or with fewer than two songs."""
        variant = self._fullest_variant()
        real, generated = self.sets[("real", variant)], self.sets[("generated", variant)]
        if not real.songs or not generated.songs or len(set(real.songs) | set(generated.songs)) < 2:
            return []
        return group_tests(real, generated, self.config)

    def report(self) -> dict[str, dict[str, dict[str, TwoSampleResult]]]:
        """{variant: {comparison: {classifier: result}}}; variants lacking windows left out."""
        out = {}
        for variant in ("notes only", "with velocities"):
            real, generated = self.sets[("real", variant)], self.sets[("generated", variant)]
            if not real.songs:
                continue
            out[variant] = realism_report(real, generated if generated.songs else None, self.config)
        return out


def realism_markdown(
    report: dict[str, dict[str, dict[str, TwoSampleResult]]],
    differences: list[FeatureDifference] | None = None,
) -> str:
    """Accuracy table (0.5 = indistinguishable), the features that separate most, and the
    note features whose means differ most (generated against real)."""
    repeats = max(
        (r.repeats for results in report.values() for rs in results.values() for r in rs.values()),
        default=1,
    )
    lines = [
        "### Realism: classifier two-sample test on 4-bar windows (0.5 = cannot tell apart)",
        "",
        f"Mean ± std over the folds of {repeats} cross-validation(s).",
        "",
        "| features | comparison | logistic regression | random forest | windows: real / other "
        "| songs |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for variant, comparisons in report.items():
        for comparison, results in comparisons.items():
            logistic, forest = results.get("logistic"), results.get("forest")
            cells = [
                f"{_format(r.accuracy)} ± {_format(r.std)}" if r else "n/a"
                for r in (logistic, forest)
            ]
            any_result = logistic or forest
            assert any_result is not None
            lines.append(
                f"| {variant} | {comparison} | {cells[0]} | {cells[1]} | "
                f"{any_result.windows_a} / {any_result.windows_b} | {any_result.songs} |"
            )
            if comparison.startswith("generated") and logistic and forest:
                top_l = ", ".join(f"{n} {w:+.2f}" for n, w in logistic.top_features)
                top_f = ", ".join(f"{n} {w:.3f}" for n, w in forest.top_features)
                notes.append(
                    f"- {variant}: logistic (standardised coefficient, + = larger in generated): "
                    f"{top_l}; forest (importance): {top_f}"
                )
    means = []
    if differences:
        means = [
            "",
            "Features whose means differ most (d: generated - real, in pooled std; all of them "
            "in the JSON's realism_feature_means):",
            "",
            "| feature | generated | real | d |",
            "|---|---|---|---|",
            *(
                f"| {f.name} | {f.mean_b:.3f} | {f.mean_a:.3f} | {f.d:+.2f} |"
                for f in differences[:10]
            ),
        ]
    return "\n".join(lines + ["", "Features that separate most:", *notes, *means])


def groups_markdown(groups: list[GroupResult]) -> str:
    """The realism test per feature group: alone, and with every other feature."""
    lines = [
        "### Realism by aspect: the test on one feature group alone, and without it",
        "",
        "| group | features | alone: logistic / forest | without it: logistic / forest |",
        "|---|---|---|---|",
    ]
    for g in groups:
        alone = " / ".join(_format(g.alone[k]) for k in ("logistic", "forest"))
        without = " / ".join(_format(g.without[k]) for k in ("logistic", "forest"))
        lines.append(f"| {g.group} | {g.features} | {alone} | {without} |")
    return "\n".join(lines)


def _format(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def markdown_report(
    generated: dict[str, Any],
    real: dict[str, Any],
    control: dict[str, dict[str, float]],
    title: str,
) -> str:
    lines = [f"### {title}", "", "| metric | generated | real |", "|---|---|---|"]
    for name, gen in generated.items():
        ref = real.get(name)
        ref_text = f"{_format(ref.mean)} ± {_format(ref.std)}" if ref is not None else "n/a"
        lines.append(f"| {name} | {_format(gen.mean)} ± {_format(gen.std)} | {ref_text} |")
    for name in control["generated"]:
        lines.append(
            f"| {name} | {_format(control['generated'][name])} | "
            f"{_format(control['real'].get(name, math.nan))} |"
        )
    # with --cut-contrast: the same music judged against the controls the song itself has
    for name, value in control.get(SONG_CONTROLS, {}).items():
        lines.append(
            f"| {name} (the song's own controls) | {_format(value)} | "
            f"{_format(control['real'].get(name, math.nan))} |"
        )
    return "\n".join(lines)


# a song's generated notes (no velocities yet) and where its steps recalled their music from
_Generated = tuple[PianoRoll, "tuple[np.ndarray, np.ndarray] | None"]


class _Generator:
    """Generates one song's roll from its conditions with the evaluation's model and settings.

    Seeds follow the song's place in the requested list, so a song gets the same music
    whether it is generated here or in a worker process (`EvalOptions.workers`)."""

    def __init__(self, options: EvalOptions, threads: int = 0) -> None:
        if threads > 0:
            torch.set_num_threads(threads)
        loaded = load_for_inference(options.model)
        self.loaded, config = apply_ablation(loaded, options.ablation, options.generation)
        self.config = song_generation(config, options.bgm909)
        self.calibration = Calibration.load()  # the shipped one (decoding), read once
        self.options = options

    def __call__(self, job: tuple[int, PieceConditions]) -> _Generated:
        index, conditions = job
        generated = generate_roll(
            self.loaded,
            conditions,
            self.config,
            self.options.seed + index,
            calibration=self.calibration,
        )
        return notes_roll(generated.notes), generated.recalled


def _generate_in_worker(options: EvalOptions, job: tuple[int, PieceConditions]) -> _Generated:
    # The model is loaded per song: well under a second against tens of seconds of sampling.
    return _Generator(options, threads=1)(job)


def _generated_rolls(
    options: EvalOptions, generator: _Generator, jobs: list[tuple[int, PieceConditions]]
) -> Iterator[_Generated]:
    """The jobs' rolls and recall records in order: here, or in `options.workers` processes
    of one thread each."""
    if options.workers <= 1 or len(jobs) <= 1:
        yield from map(generator, jobs)
        return
    with worker_pool(min(options.workers, len(jobs))) as pool:
        yield from pool.map(_generate_in_worker, [options] * len(jobs), jobs)


def run_evaluation(options: EvalOptions) -> EvalReport:
    """Generate, measure, compare; returns the Markdown table and the full data (JSON-able)."""
    generator = _Generator(options)
    loaded, generation = generator.loaded, generator.config
    config = loaded.config
    spec = roll_spec_of(config)
    cache = Path(options.data)
    calibration = Calibration.load(cache / "calibration.json")
    metric_config = MetricConfig(steps_per_bar=spec.steps_per_bar, pitch_low=spec.pitch_low)
    has_controls = options.bgm909 is None  # BGM909 models are steered by video features
    bgm909 = Path(options.bgm909) if options.bgm909 else None
    per_song: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    cut_contrast = options.cut_contrast if has_controls else 0.0
    accumulators = {"generated": _Accumulator(), "real": _Accumulator()}
    if cut_contrast > 0:
        accumulators[SONG_CONTROLS] = _Accumulator()
    started = time.perf_counter()
    songs: list[tuple[SongPiece, SongPiece]] = []  # (the real song, what the model is asked)
    jobs: list[tuple[int, PieceConditions]] = []
    for n, number in enumerate(options.songs):
        song_id = f"{number:03d}"
        try:
            song = load_song_piece(cache, song_id, options.bars, config, bgm909)
        except DiffBGMError as exc:
            skipped[song_id] = str(exc)
            continue
        asked = song
        if options.figuration == "typical":
            typical = figuration_feature(typical_figuration(song.tempo_bpm))
            asked = replace(
                song, conditions=song.conditions.with_global_feature(FIGURATION_FEATURE, typical)
            )
        if cut_contrast > 0:
            asked = replace(
                asked, conditions=contrasted(asked.conditions, cut_contrast, calibration)
            )
        songs.append((song, asked))
        jobs.append((n, asked.conditions))
    rolls = _generated_rolls(options, generator, jobs)
    windows = (
        _RealismWindows(spec.pitch_low, spec.steps_per_bar, options.realism_repeats)
        if options.realism
        else None
    )
    audio_jobs: list[tuple[PianoRoll, float, RollSpec]] = []  # MusDr SI, after generation
    audio_targets: list[dict[str, float]] = []
    for (song, asked), (roll, recalled) in zip(songs, rolls, strict=True):
        song_id = song.song_id
        chords = song.conditions.chord_pcs
        gen_metrics = piece_metrics(roll.onset, roll.sustain, chords, song.key, metric_config)
        real_metrics = piece_metrics(song.onset, song.sustain, chords, song.key, metric_config)
        # generated: the velocities the app would write; real: the performed ones
        gen_velocity = (
            app_velocities(
                roll.onset,
                roll.sustain,
                asked.conditions,
                calibration,
                options.velocity,
                song.playing,
                recalled if options.velocity_echo else None,
            )
            if has_controls
            else None
        )
        real_roll = PianoRoll(
            song.onset,
            song.sustain,
            song.velocity
            if song.velocity is not None
            else np.zeros(song.onset.shape, dtype=np.uint8),
        )
        gen_roll = replace(roll, velocity=gen_velocity) if gen_velocity is not None else roll
        if windows is not None:
            windows.add("generated", song_id, gen_roll, gen_velocity)
            windows.add("real", song_id, real_roll, song.velocity)
        if options.musdr_si:
            audio_jobs += [(gen_roll, song.tempo_bpm, spec), (real_roll, song.tempo_bpm, spec)]
            audio_targets += [gen_metrics, real_metrics]
        accumulators["generated"].add(
            roll.onset, roll.sustain, asked, spec.pitch_low, calibration, options.boundary_threshold
        )
        if SONG_CONTROLS in accumulators:
            accumulators[SONG_CONTROLS].add(
                roll.onset,
                roll.sustain,
                song,
                spec.pitch_low,
                calibration,
                options.boundary_threshold,
            )
        accumulators["real"].add(
            song.onset, song.sustain, song, spec.pitch_low, calibration, options.boundary_threshold
        )
        per_song.append({"song": song_id, "generated": gen_metrics, "real": real_metrics})
        if options.midi_dir:
            Path(options.midi_dir).mkdir(parents=True, exist_ok=True)
            write_piece(
                roll, spec, song.tempo_bpm, Path(options.midi_dir) / f"song{song_id}", False
            )
    if not per_song:
        raise DiffBGMError(f"none of the songs could be evaluated: {skipped}")
    for target, values in zip(
        audio_targets, _musdr_values(audio_jobs, options.workers), strict=True
    ):
        target.update(values)
    generated = aggregate([s["generated"] for s in per_song])
    real = aggregate([s["real"] for s in per_song])
    control = {kind: acc.summary(has_controls) for kind, acc in accumulators.items()}
    title = (
        f"{len(per_song)} songs x {options.bars} bars, ablation {options.ablation}, "
        f"{generation.steps} {generation.sampler} steps, guidance {generation.guidance}, "
        f"onset threshold {generation.onset_threshold}"
    )
    if options.figuration != "song":
        title += f", figuration {options.figuration} for the tempo"
    if options.velocity == "rule":
        title += ", velocities by the old rule"
    elif not options.velocity_echo:
        title += ", recalled phrases' velocities drawn afresh"
    if SONG_CONTROLS in accumulators:
        title += f", cut contrast {options.cut_contrast} at every boundary"
    markdown = markdown_report(generated, real, control, title)
    realism = windows.report() if windows is not None else {}
    differences = windows.differences() if windows is not None else []
    groups = windows.groups() if windows is not None and options.realism_groups else []
    if realism:
        markdown += "\n\n" + realism_markdown(realism, differences)
    if groups:
        markdown += "\n\n" + groups_markdown(groups)
    if skipped:
        markdown += f"\n\nskipped {len(skipped)} songs: " + ", ".join(sorted(skipped))
    device = next(loaded.model.parameters()).device
    precision = sampling_precision(generation.bf16, device)
    data = {
        "options": asdict(options),
        "model": {"config": config.to_dict(), "extra": loaded.extra, "path": str(loaded.path)},
        "generation_used": generation.to_dict(),
        "precision": precision,
        "runtime": sampling_runtime(generation.onnx_runtime, precision, device),
        "summary": {
            "generated": {k: asdict(v) for k, v in generated.items()},
            "real": {k: asdict(v) for k, v in real.items()},
        },
        "control": control,
        "realism": {
            variant: {
                comparison: {kind: asdict(result) for kind, result in results.items()}
                for comparison, results in comparisons.items()
            }
            for variant, comparisons in realism.items()
        },
        "realism_feature_means": [asdict(difference) for difference in differences],
        "realism_groups": [asdict(group) for group in groups],
        "songs": per_song,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if options.out_json:
        Path(options.out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(options.out_json).write_text(json.dumps(data, indent=1, default=_json_default))
    return EvalReport(markdown=markdown, data=data)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
