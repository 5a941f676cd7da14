"""A chord-sequence model learned from POP909: which chord follows which, in scale degrees.

Chords are reduced to *degree tokens* "D:Q": D = root in semitones above the key's tonic
(0..11), Q = a quality class (maj, min, maj7, min7, 7, sus2, sus4, dim, aug); inversions are
dropped. Major and minor keys have separate tables, because the same degree means a different
chord function in each. The sequences are chord *changes* (a chord held over several beats is
one token), so the model says what comes next, and a separate harmonic-rhythm table
(chord changes per bar, quantiles over POP909 songs) says how often the chord changes.

The model is an interpolated trigram / bigram / unigram over those tokens, keeping only the
most frequent continuations of each context so the shipped JSON stays small.
Sampling adds cadences: segment ends lean toward the tonic after a dominant or subdominant,
and the last chord of a piece is the tonic.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffbgm.errors import AnnotationError, PlanError
from diffbgm.music.chords import ChordError, note_pc, parse_chord

MODES: tuple[str, ...] = ("major", "minor")

DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[1] / "assets" / "chord_model.json"

# Flat spellings, as POP909 writes most roots.
ROOT_NAMES: tuple[str, ...] = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")

# Harte shorthand (as parse_chord reports it; extensions such as sus4(b7) keep their
# shorthand) -> quality class; anything unlisted is skipped when counting.
_QUALITY_CLASS: dict[str, str] = {
    "maj": "maj",
    "maj6": "maj",
    "min": "min",
    "min6": "min",
    "maj7": "maj7",
    "min7": "min7",
    "minmaj7": "min",
    "7": "7",
    "sus2": "sus2",
    "sus4": "sus4",
    "dim": "dim",
    "dim7": "dim",
    "hdim7": "dim",
    "aug": "aug",
}
QUALITY_CLASSES: tuple[str, ...] = ("maj", "min", "maj7", "min7", "7", "sus2", "sus4", "dim", "aug")
MINOR_CLASSES: frozenset[str] = frozenset({"min", "min7", "dim"})

_START = "<s>"  # context marker before the first chord of a phrase


@dataclass(frozen=True)
class ChordModelConfig:
    """How the model is built: which songs, how much of it is kept, how it is smoothed."""

    first_song: int = 1
    last_song: int = 800  # POP909 001-800 = train; 801-859 stay unseen for validation
    min_token_share: float = 0.002  # tokens rarer than this (share of chord changes) are dropped
    top_k: int = 8  # continuations kept per context
    min_context_count: int = 12  # trigram contexts seen fewer times are dropped
    weights: tuple[float, float, float] = (0.6, 0.3, 0.1)  # trigram, bigram, unigram


@dataclass(frozen=True)
class ChordModel:
    """Trigram/bigram/unigram tables per mode over degree tokens, and POP909's harmonic rhythm.

    `changes_per_bar_quantiles`: 21 quantiles (0, 0.05, ..., 1) of chord changes per bar over
    the training songs. `key_counts`: how many training songs are in each key ("Eb minor").
    """

    vocab: dict[str, list[str]]
    unigram: dict[str, dict[str, float]]
    bigram: dict[str, dict[str, dict[str, float]]]
    trigram: dict[str, dict[str, dict[str, float]]]
    changes_per_bar_quantiles: list[float]
    key_counts: dict[str, int]
    weights: tuple[float, float, float]
    source: dict[str, Any]

    def next_distribution(self, mode: str, history: Sequence[str]) -> dict[str, float]:
        """P(next token | last two tokens of `history`) over the mode's vocabulary."""
        _check_mode(mode)
        w_tri, w_bi, w_uni = self.weights
        prev1 = history[-1] if history else _START
        prev2 = history[-2] if len(history) >= 2 else _START
        tri = self.trigram[mode].get(f"{prev2} {prev1}", {})
        bi = self.bigram[mode].get(prev1, {})
        uni = self.unigram[mode]
        # Missing levels give their weight to the levels below, so a known context dominates.
        if not tri:
            w_bi, w_tri = w_bi + w_tri, 0.0
        if not bi:
            w_uni, w_bi = w_uni + w_bi, 0.0
        probs = {
            tok: w_tri * tri.get(tok, 0.0) + w_bi * bi.get(tok, 0.0) + w_uni * uni.get(tok, 0.0)
            for tok in self.vocab[mode]
        }
        total = sum(probs.values())
        return {tok: p / total for tok, p in probs.items()}

    def most_likely_next(self, mode: str, history: Sequence[str]) -> str:
        dist = self.next_distribution(mode, history)
        return max(dist, key=lambda tok: dist[tok])

    def changes_per_bar(self, quantile: float) -> float:
        """POP909's chord changes per bar at `quantile` in [0, 1] (linear between the 21 points)."""
        grid = np.linspace(0.0, 1.0, len(self.changes_per_bar_quantiles))
        return float(np.interp(quantile, grid, self.changes_per_bar_quantiles))

    def changes_per_bar_quantile(self, changes_per_bar: float) -> float:
        """Inverse of `changes_per_bar`: where a rate lies in POP909's distribution, in [0, 1]."""
        table = np.asarray(self.changes_per_bar_quantiles)
        grid = np.linspace(0.0, 1.0, len(table))
        if changes_per_bar <= table[0]:
            return 0.0
        if changes_per_bar >= table[-1]:
            return 1.0
        i = int(np.searchsorted(table, changes_per_bar, side="right")) - 1
        frac = (changes_per_bar - table[i]) / (table[i + 1] - table[i])
        return float(grid[i] + frac * (grid[i + 1] - grid[i]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "diffbgm-chord-model/1",
            "vocab": self.vocab,
            "unigram": self.unigram,
            "bigram": self.bigram,
            "trigram": self.trigram,
            "changes_per_bar_quantiles": self.changes_per_bar_quantiles,
            "key_counts": self.key_counts,
            "weights": list(self.weights),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChordModel:
        w = data["weights"]
        return cls(
            vocab={m: list(v) for m, v in data["vocab"].items()},
            unigram=data["unigram"],
            bigram=data["bigram"],
            trigram=data["trigram"],
            changes_per_bar_quantiles=[float(x) for x in data["changes_per_bar_quantiles"]],
            key_counts={k: int(v) for k, v in data["key_counts"].items()},
            weights=(float(w[0]), float(w[1]), float(w[2])),
            source=dict(data.get("source", {})),
        )


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise PlanError(f"unknown mode {mode!r}: use 'major' or 'minor'")


# --- labels and tokens -------------------------------------------------------------------


def label_to_token(label: str, tonic_pc: int) -> str | None:
    """Harte label ('G:7/3') -> degree token ('7:7' in C); None for 'N', bad labels, rare qualities."""
    try:
        chord = parse_chord(label)
    except ChordError:
        return None
    qclass = _QUALITY_CLASS.get(chord.quality)
    if chord.root_pc is None or qclass is None:
        return None
    return f"{(chord.root_pc - tonic_pc) % 12}:{qclass}"


def token_to_label(token: str, tonic_pc: int) -> str:
    """Degree token -> Harte label in the key of `tonic_pc` ('5:maj' in A -> 'D:maj')."""
    degree, _, qclass = token.partition(":")
    return f"{ROOT_NAMES[(int(degree) + tonic_pc) % 12]}:{qclass}"


def token_is_minor(token: str) -> bool:
    """True for minor-type chords (min, min7, dim), as the `minor_share` control counts them."""
    return token.partition(":")[2] in MINOR_CLASSES


def tonic_token(mode: str) -> str:
    _check_mode(mode)
    return "0:maj" if mode == "major" else "0:min"


def cadence_tokens(mode: str) -> tuple[str, ...]:
    """Chords that lead into the tonic at a cadence: dominant (V, V7) and subdominant (IV/iv)."""
    _check_mode(mode)
    if mode == "major":
        return ("7:maj", "7:7", "5:maj", "7:sus4")
    return ("7:maj", "7:7", "7:min", "5:min", "10:maj")


# --- building from POP909 ----------------------------------------------------------------


def _parse_key(text: str) -> tuple[int, str] | None:
    """'Gb:maj' -> (6, 'major'); None when the key cannot be read."""
    root, _, mode = text.strip().partition(":")
    if mode not in ("maj", "min"):
        return None
    try:
        return note_pc(root), "major" if mode == "maj" else "minor"
    except ChordError:
        return None


def _read_rows(path: Path, n_fields: int) -> list[list[str]]:
    if not path.exists():
        raise AnnotationError(f"{path} is missing")
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= n_fields:
            rows.append(parts)
    return rows


def _key_regions(song_dir: Path) -> list[tuple[float, float, int, str]]:
    """(start_s, end_s, tonic_pc, mode) per key region, from key_audio.txt or analyzed_key.txt."""
    regions = []
    for row in _read_rows(song_dir / "key_audio.txt", 3):
        key = _parse_key(row[2])
        if key is not None:
            regions.append((float(row[0]), float(row[1]), key[0], key[1]))
    if not regions:
        for row in _read_rows(song_dir / "analyzed_key.txt", 1):
            key = _parse_key(row[0])
            if key is not None:
                return [(-np.inf, np.inf, key[0], key[1])]
    return regions


def _key_at(regions: list[tuple[float, float, int, str]], time_s: float) -> tuple[int, str] | None:
    for start, end, tonic, mode in regions:
        if start - 0.5 <= time_s < end:
            return tonic, mode
    return None


def song_token_phrases(song_dir: Path) -> dict[str, list[list[str]]]:
    """A song's chord changes as degree tokens per mode, split at 'N', unknown chords and key changes."""
    regions = _key_regions(song_dir)
    phrases: dict[str, list[list[str]]] = {m: [] for m in MODES}
    current: list[str] = []
    current_mode = ""
    for row in _read_rows(song_dir / "chord_midi.txt", 3):
        key = _key_at(regions, float(row[0]))
        token = None if key is None else label_to_token(row[2], key[0])
        if token is None or key is None or (current and key[1] != current_mode):
            if current:
                phrases[current_mode].append(current)
            current = []
            if token is None or key is None:
                continue
        current_mode = key[1]
        if not current or current[-1] != token:
            current.append(token)
    if current:
        phrases[current_mode].append(current)
    return phrases


def song_changes_per_bar(song_dir: Path) -> float | None:
    """Chord changes per 4/4 bar over the stretch of the song that has chords (None if none)."""
    downbeats = [
        float(r[0]) for r in _read_rows(song_dir / "beat_midi.txt", 3) if float(r[2]) > 0.5
    ]
    rows = [r for r in _read_rows(song_dir / "chord_midi.txt", 3) if r[2] != "N"]
    if len(downbeats) < 2 or not rows:
        return None
    start, end = float(rows[0][0]), float(rows[-1][1])
    n_bars = np.count_nonzero(
        (np.asarray(downbeats) >= start - 0.1) & (np.asarray(downbeats) < end - 0.1)
    )
    changes = sum(1 for prev, row in zip(rows, rows[1:], strict=False) if row[2] != prev[2]) + 1
    return changes / n_bars if n_bars else None


def _normalise(counter: Counter[str], keep: Iterable[str], top_k: int) -> dict[str, float]:
    kept = [(tok, n) for tok, n in counter.most_common() if tok in set(keep)][:top_k]
    total = sum(n for _, n in kept)
    return {tok: round(n / total, 4) for tok, n in kept} if total else {}


def build_chord_model(pop909_dir: Path, config: ChordModelConfig | None = None) -> ChordModel:
    """Count chord changes of POP909 songs `first_song`..`last_song` into a ChordModel."""
    cfg = config or ChordModelConfig()
    song_dirs = [pop909_dir / f"{i:03d}" for i in range(cfg.first_song, cfg.last_song + 1)]
    song_dirs = [d for d in song_dirs if (d / "chord_midi.txt").exists()]
    if not song_dirs:
        raise AnnotationError(f"no POP909 songs with chord_midi.txt under {pop909_dir}")
    phrases: dict[str, list[list[str]]] = {m: [] for m in MODES}
    rates: list[float] = []
    key_counts: Counter[str] = Counter()
    for song_dir in song_dirs:
        for mode, song_phrases in song_token_phrases(song_dir).items():
            phrases[mode].extend(song_phrases)
        rate = song_changes_per_bar(song_dir)
        if rate is not None:
            rates.append(rate)
        regions = _key_regions(song_dir)
        if regions:
            key_counts[f"{ROOT_NAMES[regions[0][2]]} {regions[0][3]}"] += 1
    vocab: dict[str, list[str]] = {}
    unigram: dict[str, dict[str, float]] = {}
    bigram: dict[str, dict[str, dict[str, float]]] = {}
    trigram: dict[str, dict[str, dict[str, float]]] = {}
    for mode in MODES:
        counts: Counter[str] = Counter(tok for p in phrases[mode] for tok in p)
        total = sum(counts.values())
        keep = [tok for tok, n in counts.most_common() if n / total >= cfg.min_token_share]
        vocab[mode] = keep
        unigram[mode] = _normalise(counts, keep, len(keep))
        bi: defaultdict[str, Counter[str]] = defaultdict(Counter)
        tri: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for phrase in phrases[mode]:
            padded = [_START, _START, *phrase]
            for a, b, c in zip(padded, padded[1:], padded[2:], strict=False):
                bi[b][c] += 1
                tri[f"{a} {b}"][c] += 1
        bigram[mode] = {
            ctx: _normalise(c, keep, cfg.top_k)
            for ctx, c in bi.items()
            if (ctx in keep or ctx == _START) and sum(c.values()) >= cfg.min_context_count
        }
        trigram[mode] = {
            ctx: _normalise(c, keep, cfg.top_k)
            for ctx, c in tri.items()
            if all(t in keep or t == _START for t in ctx.split(" "))
            and sum(c.values()) >= cfg.min_context_count
        }
    quantiles = np.quantile(np.asarray(rates), np.linspace(0.0, 1.0, 21)) if rates else np.ones(21)
    return ChordModel(
        vocab=vocab,
        unigram=unigram,
        bigram=bigram,
        trigram=trigram,
        changes_per_bar_quantiles=[round(float(q), 4) for q in quantiles],
        key_counts=dict(sorted(key_counts.items())),
        weights=cfg.weights,
        source={
            "dataset": "POP909",
            "songs": f"{cfg.first_song:03d}-{cfg.last_song:03d}",
            "n_songs": len(song_dirs),
            "n_chord_changes": {m: sum(len(p) for p in phrases[m]) for m in MODES},
            "top_k": cfg.top_k,
            "min_token_share": cfg.min_token_share,
            "min_context_count": cfg.min_context_count,
        },
    )


def save_chord_model(model: ChordModel, path: Path = DEFAULT_MODEL_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(model.to_dict(), separators=(",", ":"), sort_keys=True))
    return path


def load_chord_model(path: Path = DEFAULT_MODEL_PATH) -> ChordModel:
    """Read a model JSON (by default the one shipped in diffbgm/assets)."""
    try:
        return ChordModel.from_dict(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise PlanError(
            f"chord model {path} is missing: build it with `python -m trainer chords`"
        ) from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise PlanError(f"chord model {path} is not a valid chord-model JSON: {exc}") from exc


def build_and_save_chord_model(
    pop909_dir: Path, out_path: Path = DEFAULT_MODEL_PATH, config: ChordModelConfig | None = None
) -> Path:
    """What `python -m trainer chords` runs: build from POP909 train songs, write the JSON."""
    return save_chord_model(build_chord_model(pop909_dir, config), out_path)


# --- sampling ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CadenceConfig:
    """How strongly segment ends lean toward a cadence (multipliers on the model's probabilities)."""

    tonic_boost: float = 4.0  # last chord of a segment: tonic
    approach_boost: float = 3.0  # second-to-last chord of a segment: dominant / subdominant
    temperature: float = 1.0  # > 1 flattens the model's distribution, < 1 sharpens it


def _draw(dist: dict[str, float], rng: np.random.Generator, temperature: float) -> str:
    tokens = list(dist)
    weights = np.asarray([dist[t] for t in tokens], dtype=np.float64) ** (1.0 / temperature)
    return tokens[int(rng.choice(len(tokens), p=weights / weights.sum()))]


def sample_progression(
    model: ChordModel,
    mode: str,
    chords_per_segment: Sequence[int],
    rng: np.random.Generator,
    cadence: CadenceConfig | None = None,
) -> list[list[str]]:
    """Degree tokens for each segment (`chords_per_segment[i]` of them), one continuous sequence.

    No chord repeats its predecessor (they are chord *changes*), except a final tonic that
    follows a segment which already ended on it. The last chord of every
    segment leans toward the tonic and the one before toward a dominant/subdominant; the
    piece's last chord is the tonic and, when there is room, it is approached from one of
    `cadence_tokens(mode)`.
    """
    _check_mode(mode)
    cad = cadence or CadenceConfig()
    tonic = tonic_token(mode)
    approach = [t for t in cadence_tokens(mode) if t in model.vocab[mode]]
    history: list[str] = []
    result: list[list[str]] = []
    n_segments = len(chords_per_segment)
    for seg_index, n_chords in enumerate(chords_per_segment):
        seg_tokens: list[str] = []
        last_segment = seg_index == n_segments - 1
        for slot in range(n_chords):
            from_end = n_chords - 1 - slot
            dist = dict(model.next_distribution(mode, history))
            if history:
                dist.pop(history[-1], None)
            if last_segment and from_end == 0:
                token = tonic
            else:
                if last_segment and from_end == 1 and approach:
                    dist = {
                        t: dist.get(t, 0.0) + 1e-6
                        for t in approach
                        if not history or t != history[-1]
                    } or dist
                elif from_end == 0 and tonic in dist:
                    dist[tonic] *= cad.tonic_boost
                elif from_end == 1:
                    for t in approach:
                        if t in dist:
                            dist[t] *= cad.approach_boost
                token = _draw(dist, rng, cad.temperature)
            seg_tokens.append(token)
            history.append(token)
        result.append(seg_tokens)
    return result
