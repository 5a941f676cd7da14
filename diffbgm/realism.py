"""Realism test: can a classifier tell generated music from real music? (two-sample test)

The summary metrics (PCHE, GPS, SI, ...) can all be close to real while the music is still
easy to tell apart. A classifier two-sample test asks the question directly: features of
4-bar windows of generated and of real music are given to a simple classifier, with
cross-validation grouped by song (a song's windows are never both in training and in test,
so a classifier cannot win by recognising a song). Accuracy 0.5 means the classifier cannot
tell them apart; real vs real songs (two disjoint halves) is the floor.

Features are computed per window on the 16th grid (see `window_features`); velocity
statistics are an explicit option because generated rolls carry no velocities (the app
gives them learned ones, diffbgm/velocity.py) while real POP909 songs keep the performed ones.

Pure numpy + scikit-learn; no torch, no MIDI library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

# Feature names, in the order of the columns `window_features` returns.
ONSET_POSITION_FEATURES = tuple(f"onset_pos_{i:02d}" for i in range(16))
HARMONIC_INTERVAL_FEATURES = tuple(f"harmonic_ic_{i:02d}" for i in range(12))
NOTE_FEATURES: tuple[str, ...] = (
    *ONSET_POSITION_FEATURES,
    "onsets_per_bar",
    "notes_per_onset_mean",
    "notes_per_onset_std",
    "single_note_onset_share",
    "note_length_mean",
    "note_length_std",
    "short_note_share",  # notes of at most 2 sixteenths
    "long_note_share",  # notes of at least 8 sixteenths
    "polyphony_mean",
    "polyphony_std",
    "silent_step_share",
    "pitch_mean",
    "pitch_min",
    "pitch_max",
    "pitch_std",
    "bass_mean",  # lowest onset pitch per onset step, averaged
    "top_mean",  # highest onset pitch per onset step, averaged
    *HARMONIC_INTERVAL_FEATURES,
    "melodic_step_mean",  # mean |interval| between successive top-voice notes
    "melodic_repeat_share",
    "melodic_stepwise_share",  # 1-2 semitones
    "melodic_leap_share",  # 5 semitones or more
    "octave_doubling_share",  # onset steps of >= 2 notes holding an octave (or unison) pair
)
VELOCITY_FEATURES: tuple[str, ...] = (
    "velocity_mean",
    "velocity_std",
    "velocity_distinct",
)


# What a listener would call one aspect of the music: the test run on one group alone, or on
# every feature but one group, says which aspect gives the generated music away.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "rhythm": (*ONSET_POSITION_FEATURES, "onsets_per_bar"),
    "texture": (
        "notes_per_onset_mean",
        "notes_per_onset_std",
        "single_note_onset_share",
        "polyphony_mean",
        "polyphony_std",
        "silent_step_share",
        "octave_doubling_share",
    ),
    "note lengths": ("note_length_mean", "note_length_std", "short_note_share", "long_note_share"),
    "register": ("pitch_mean", "pitch_min", "pitch_max", "pitch_std", "bass_mean", "top_mean"),
    "harmony": HARMONIC_INTERVAL_FEATURES,
    "melody": (
        "melodic_step_mean",
        "melodic_repeat_share",
        "melodic_stepwise_share",
        "melodic_leap_share",
    ),
    "velocity": VELOCITY_FEATURES,
}


@dataclass(frozen=True)
class RealismConfig:
    """Windows and classifiers of the test.

    window_bars: bars per window (4); windows do not overlap; a trailing partial window and
        windows with fewer than `min_onsets` notes are left out (silence is not music to judge).
    folds: cross-validation folds (fewer when there are fewer songs per class).
    seed: for fold assignment and the forest.
    repeats: cross-validations with other fold assignments and forests (seeds seed,
        seed + 1, ...), averaged: one split's accuracy moves by about 1.5 points with its
        seed on 240 + 240 windows (docs/evaluation.md, "Choosing beyond the noise").
    """

    steps_per_bar: int = 16
    pitch_low: int = 21
    window_bars: int = 4
    min_onsets: int = 4
    folds: int = 5
    seed: int = 0
    trees: int = 200
    repeats: int = 1


def feature_names(with_velocity: bool) -> tuple[str, ...]:
    return NOTE_FEATURES + (VELOCITY_FEATURES if with_velocity else ())


def _binary(name: str, roll: np.ndarray) -> np.ndarray:
    arr = np.asarray(roll)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a (steps, pitches) array, got shape {arr.shape}")
    return arr.astype(bool)


def note_lengths(onset: np.ndarray, sustain: np.ndarray) -> np.ndarray:
    """Length in steps of every note that starts in the roll (cut at the roll's end).

    A note lasts from its onset while the pitch keeps sounding (sustain set) and no new onset
    of the same pitch starts."""
    on = _binary("onset", onset)
    sounding = on | _binary("sustain", sustain)
    lengths = []
    n_steps = on.shape[0]
    for step, pitch in zip(*np.nonzero(on), strict=True):
        end = step + 1
        while end < n_steps and sounding[end, pitch] and not on[end, pitch]:
            end += 1
        lengths.append(end - step)
    return np.asarray(lengths, dtype=np.float64)


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else 0.0


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else 0.0


def _std(values: np.ndarray) -> float:
    return float(values.std()) if values.size else 0.0


def window_features(
    onset: np.ndarray,
    sustain: np.ndarray,
    velocity: np.ndarray | None = None,
    config: RealismConfig = RealismConfig(),
) -> np.ndarray:
    """Feature vector of one window (any length; normally 4 bars), in `feature_names` order.

    With `velocity` ((T, P) MIDI velocities, non-zero at onsets) the velocity statistics are
    appended. Statistics of something absent (no chords, a single top note) are 0.
    """
    on = _binary("onset", onset)
    sounding = on | _binary("sustain", sustain)
    n_steps = on.shape[0]
    spb = config.steps_per_bar
    steps, pitches = np.nonzero(on)
    midi = pitches + config.pitch_low
    n_notes = steps.size
    # onset positions within the bar, as shares of all onsets
    positions = np.bincount(steps % spb, minlength=spb)[:16].astype(np.float64)
    positions = positions / n_notes if n_notes else positions
    # chord sizes: notes started per onset step
    per_step = on.sum(axis=1)
    chord_sizes = per_step[per_step > 0].astype(np.float64)
    lengths = note_lengths(on, sounding)
    poly = sounding.sum(axis=1).astype(np.float64)
    busy = poly[poly > 0]
    onset_steps = np.flatnonzero(per_step > 0)
    bass = np.array([on[s].argmax() for s in onset_steps], dtype=np.float64) + config.pitch_low
    top = np.array([on.shape[1] - 1 - on[s, ::-1].argmax() for s in onset_steps], dtype=np.float64)
    top += config.pitch_low
    # harmonic intervals: every pair of notes sounding together at an onset step, mod 12
    ic_counts = np.zeros(12)
    doubled = []
    for s in onset_steps:
        held = np.flatnonzero(sounding[s])
        if held.size < 2:
            continue
        diffs = (held[None, :] - held[:, None])[np.triu_indices(held.size, 1)]
        ic_counts += np.bincount(diffs % 12, minlength=12)
        if per_step[s] >= 2:
            struck = np.flatnonzero(on[s])
            struck_diffs = (struck[None, :] - struck[:, None])[np.triu_indices(struck.size, 1)]
            doubled.append(bool((struck_diffs % 12 == 0).any()))
    ic_total = ic_counts.sum()
    ic_share = ic_counts / ic_total if ic_total else ic_counts
    melodic = np.abs(np.diff(top))
    n_bars = max(n_steps / spb, 1e-9)
    values = [
        *positions,
        n_notes / n_bars,
        _mean(chord_sizes),
        _std(chord_sizes),
        _share(chord_sizes == 1),
        _mean(lengths),
        _std(lengths),
        _share(lengths <= 2),
        _share(lengths >= 8),
        _mean(busy),
        _std(busy),
        _share(poly == 0),
        _mean(midi.astype(np.float64)),
        float(midi.min()) if n_notes else 0.0,
        float(midi.max()) if n_notes else 0.0,
        _std(midi.astype(np.float64)),
        _mean(bass),
        _mean(top),
        *ic_share,
        _mean(melodic),
        _share(melodic == 0),
        _share((melodic >= 1) & (melodic <= 2)),
        _share(melodic >= 5),
        _share(np.asarray(doubled, dtype=bool)),
    ]
    if velocity is not None:
        vel = np.asarray(velocity, dtype=np.float64)[on]
        values += [_mean(vel), _std(vel), float(np.unique(vel).size)]
    return np.asarray(values, dtype=np.float64)


def piece_windows(
    onset: np.ndarray,
    sustain: np.ndarray,
    velocity: np.ndarray | None = None,
    config: RealismConfig = RealismConfig(),
) -> np.ndarray:
    """(windows, features): the features of every whole, non-overlapping window of a piece
    with at least `min_onsets` notes."""
    on = _binary("onset", onset)
    sus = _binary("sustain", sustain)
    size = config.window_bars * config.steps_per_bar
    rows = []
    for start in range(0, on.shape[0] - size + 1, size):
        window = slice(start, start + size)
        if on[window].sum() < config.min_onsets:
            continue
        vel = None if velocity is None else np.asarray(velocity)[window]
        rows.append(window_features(on[window], sus[window], vel, config))
    width = len(feature_names(velocity is not None))
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), width)


@dataclass(frozen=True)
class TwoSampleResult:
    """Cross-validated accuracy of telling sample B from sample A, and what tells them apart.

    accuracy: mean balanced accuracy over the folds (= accuracy when both classes are equally
        large in a fold); std over the folds. top_features: (name, weight) of the features
        that separate most: standardised logistic coefficients (> 0: larger in B) or forest
        impurity importances, fitted on all windows.
    per_song: song -> [A windows told right, A windows, B windows told right, B windows],
        from the held-out predictions, summed over the repeats, so a comparison can resample
        songs (`trainer compare`).
    repeats: cross-validations averaged (accuracy: over all their folds).
    """

    classifier: str
    accuracy: float
    std: float
    folds: int
    windows_a: int
    windows_b: int
    songs: int
    top_features: list[tuple[str, float]] = field(default_factory=list)
    per_song: dict[str, list[int]] = field(default_factory=dict)
    repeats: int = 1


def _classifier(kind: str, config: RealismConfig):  # type: ignore[no-untyped-def]
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logistic":
        return make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=5000, C=1.0, class_weight="balanced")
        )
    if kind == "forest":
        return RandomForestClassifier(
            n_estimators=config.trees,
            min_samples_leaf=2,
            class_weight="balanced",
            random_state=config.seed,
            n_jobs=1,
        )
    raise ValueError(f"unknown classifier {kind!r}: choose 'logistic' or 'forest'")


CLASSIFIERS = ("logistic", "forest")


def grouped_folds(
    labels: np.ndarray, groups: np.ndarray, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs; every group (song) lies wholly in one test fold, and the
    folds keep the two classes about as balanced as the groups allow (at most as many folds
    as either class has songs)."""
    from sklearn.model_selection import StratifiedGroupKFold

    # every test fold should hold songs of both classes: with songs of one class each (real
    # vs real), holding out more songs of one class than of the other biases the training
    # part against it and the accuracy falls below chance
    per_class = min(np.unique(groups[labels == label]).size for label in np.unique(labels))
    n_splits = max(2, min(folds, per_class))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(labels.size), labels, groups))


def two_sample_test(
    sample_a: np.ndarray,
    groups_a: Sequence[str],
    sample_b: np.ndarray,
    groups_b: Sequence[str],
    names: Sequence[str],
    classifier: str = "logistic",
    config: RealismConfig = RealismConfig(),
    top: int = 5,
) -> TwoSampleResult:
    """Classifier two-sample test of window features A (label 0) against B (label 1).

    groups_*: the song of every window. Windows of one song (in A, in B, or in both: a
    generated piece and the real song it was conditioned on share the song) stay together
    in one fold. Needs at least two songs.
    """
    from sklearn.metrics import balanced_accuracy_score

    x = np.vstack([sample_a, sample_b])
    y = np.concatenate([np.zeros(len(sample_a), int), np.ones(len(sample_b), int)])
    groups = np.asarray([*groups_a, *groups_b], dtype=str)
    if np.unique(groups).size < 2 or len(sample_a) == 0 or len(sample_b) == 0:
        raise ValueError("the two-sample test needs windows of both samples from >= 2 songs")
    scores = []
    told = np.zeros(len(y), dtype=np.int64)  # held-out predictions right, over the repeats
    judged = np.zeros(len(y), dtype=np.int64)
    for repeat in range(max(1, config.repeats)):
        split = replace(config, seed=config.seed + repeat)
        for train, test in grouped_folds(y, groups, split.folds, split.seed):
            if np.unique(y[train]).size < 2:
                continue  # a fold whose training part holds one class says nothing
            model = _classifier(classifier, split).fit(x[train], y[train])
            predicted = model.predict(x[test])
            told[test] += predicted == y[test]
            judged[test] += 1
            if np.unique(y[test]).size < 2:
                scores.append(float((predicted == y[test]).mean()))
            else:
                scores.append(float(balanced_accuracy_score(y[test], predicted)))
    model = _classifier(classifier, config).fit(x, y)
    if classifier == "logistic":
        weights = np.asarray(model[-1].coef_[0])
    else:
        weights = np.asarray(model.feature_importances_)
    order = np.argsort(-np.abs(weights))[:top]
    return TwoSampleResult(
        classifier=classifier,
        accuracy=float(np.mean(scores)) if scores else math.nan,
        std=float(np.std(scores)) if scores else math.nan,
        folds=len(scores),
        windows_a=len(sample_a),
        windows_b=len(sample_b),
        songs=int(np.unique(groups).size),
        top_features=[(str(names[i]), float(weights[i])) for i in order],
        per_song=_told_per_song(groups, y, told, judged),
        repeats=max(1, config.repeats),
    )


def _told_per_song(
    groups: np.ndarray, labels: np.ndarray, told: np.ndarray, judged: np.ndarray
) -> dict[str, list[int]]:
    """song -> [A told right, A judged, B told right, B judged], counted over the held-out
    predictions of every repeat."""
    out: dict[str, list[int]] = {}
    for song in np.unique(groups[judged > 0]):
        counts = []
        for label in (0, 1):
            at = (groups == song) & (labels == label)
            counts += [int(told[at].sum()), int(judged[at].sum())]
        out[str(song)] = counts
    return out


@dataclass
class WindowSet:
    """Window features of many pieces, with the song of every window."""

    names: tuple[str, ...]
    rows: list[np.ndarray] = field(default_factory=list)
    songs: list[str] = field(default_factory=list)

    def add(self, song: str, windows: np.ndarray) -> None:
        self.rows.append(windows)
        self.songs.extend([song] * len(windows))

    @property
    def features(self) -> np.ndarray:
        if not self.rows:
            return np.zeros((0, len(self.names)))
        return np.vstack(self.rows)

    def subset(self, keep: Sequence[str]) -> WindowSet:
        """The windows of the songs in `keep`."""
        wanted = set(keep)
        out = WindowSet(self.names)
        features = self.features
        mask = np.array([s in wanted for s in self.songs], dtype=bool)
        out.rows = [features[mask]] if mask.any() else []
        out.songs = [s for s in self.songs if s in wanted]
        return out


@dataclass(frozen=True)
class FeatureDifference:
    """One feature's mean in each sample and their standardised difference
    d = (mean B - mean A) / pooled standard deviation (> 0: larger in B)."""

    name: str
    mean_a: float
    mean_b: float
    d: float


def feature_differences(
    a: WindowSet, b: WindowSet, top: int | None = 10
) -> list[FeatureDifference]:
    """The `top` features (all with None) whose means differ most between the windows of `a`
    and `b`, in pooled standard deviations: what the classifiers can see, in the music's own
    units."""
    fa, fb = a.features, b.features
    if not len(fa) or not len(fb):
        return []
    pooled = np.sqrt((fa.var(axis=0) + fb.var(axis=0)) / 2.0)
    d = np.divide(
        fb.mean(axis=0) - fa.mean(axis=0), pooled, out=np.zeros(pooled.shape), where=pooled > 0
    )
    order = np.argsort(-np.abs(d), kind="stable")[:top]
    return [
        FeatureDifference(a.names[i], float(fa[:, i].mean()), float(fb[:, i].mean()), float(d[i]))
        for i in order
    ]


def split_by_parity(songs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Two disjoint halves of a song list: even and odd song numbers (names that are not
    numbers alternate by their place in the sorted list)."""
    ordered = sorted(set(songs))
    even: list[str] = []
    odd: list[str] = []
    for place, song in enumerate(ordered):
        number = int(song) if song.isdigit() else place
        (even if number % 2 == 0 else odd).append(song)
    return even, odd


@dataclass(frozen=True)
class GroupResult:
    """The test on one feature group alone and on every feature but that group (accuracy per
    classifier, mean over the folds): a group whose removal costs the most accuracy is what
    gives the generated music away; a group that alone is told apart at the floor is not."""

    group: str
    features: int
    alone: dict[str, float]
    without: dict[str, float]


def group_tests(
    real: WindowSet, generated: WindowSet, config: RealismConfig = RealismConfig()
) -> list[GroupResult]:
    """The generated-vs-real test of every FEATURE_GROUPS group the windows have, on that
    group alone and without it (both classifiers)."""
    names = list(real.names)
    real_x, generated_x = real.features, generated.features  # each stacks its rows anew
    results = []
    for group, members in FEATURE_GROUPS.items():
        inside = [i for i, name in enumerate(names) if name in members]
        if not inside:
            continue
        outside = [i for i in range(len(names)) if i not in inside]
        accuracy: dict[str, dict[str, float]] = {"alone": {}, "without": {}}
        for part, columns in (("alone", inside), ("without", outside)):
            for kind in CLASSIFIERS:
                result = two_sample_test(
                    real_x[:, columns],
                    real.songs,
                    generated_x[:, columns],
                    generated.songs,
                    [names[i] for i in columns],
                    kind,
                    config,
                )
                accuracy[part][kind] = result.accuracy
        results.append(GroupResult(group, len(inside), accuracy["alone"], accuracy["without"]))
    return results


def realism_report(
    real: WindowSet, generated: WindowSet | None, config: RealismConfig = RealismConfig()
) -> dict[str, dict[str, TwoSampleResult]]:
    """{'generated vs real': {classifier: result}, 'real vs real (floor)': {...}}.

    The floor compares the real windows of even-numbered with odd-numbered songs; a
    comparison that cannot be made (too few songs) is left out."""
    out: dict[str, dict[str, TwoSampleResult]] = {}
    if generated is not None and len(set(generated.songs) | set(real.songs)) >= 2:
        out["generated vs real"] = {
            kind: two_sample_test(
                real.features,
                real.songs,
                generated.features,
                generated.songs,
                real.names,
                kind,
                config,
            )
            for kind in CLASSIFIERS
        }
    even, odd = split_by_parity(real.songs)
    if len(even) >= 1 and len(odd) >= 1 and len(even) + len(odd) >= 2:
        a, b = real.subset(even), real.subset(odd)
        out["real vs real (floor)"] = {
            kind: two_sample_test(
                a.features, a.songs, b.features, b.songs, real.names, kind, config
            )
            for kind in CLASSIFIERS
        }
    return out
