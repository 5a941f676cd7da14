"""How well the melody split finds POP909's MELODY track, and what it finds in generated music.

    python benchmarks/melody_split.py --tune 801-830 --report 831-859 [--generated DIR]

Input: every song's merged roll (MELODY + BRIDGE + PIANO, as the model writes it); answer: its
MELODY track. Note F1 matches (onset step, pitch). --tune tries the settings below on the
tune songs and prints each; --report measures the skyline, the default SplitConfig and the
best tuned one on the report songs. --generated DIR (MIDI files of `python -m trainer sample`)
adds the split melody's monophony and register next to the real MELODY tracks'.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pretty_midi

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from diffbgm.arrange.parts import (  # noqa: E402
    WEIGHTS_PATH,
    SplitConfig,
    SplitWeights,
    best_line,
    melody_mask,
    note_f1,
    note_features,
)
from diffbgm.music.pop909 import Song  # noqa: E402
from diffbgm.music.roll import PianoRoll, RollSpec, midi_to_roll, roll_to_notes  # noqa: E402
from trainer.__main__ import default_pop909_dir, parse_song_range  # noqa: E402
from trainer.melody_split import songs_in  # noqa: E402

PITCH_LOW = RollSpec().pitch_low
TUNE_GRID = {
    "score_offset": (0.0, 0.5, 1.0, 1.5),
    "leap_cost": (0.05, 0.15, 0.3),
    "restart_cost": (1.0, 2.0),
}


@dataclass(frozen=True)
class Case:
    """One song, ready for any split setting: its merged notes, their log-odds, the answer."""

    song: Song
    notes: np.ndarray
    logits: np.ndarray
    truth: np.ndarray

    def melody(self, config: SplitConfig) -> np.ndarray:
        if config.method == "skyline":
            return self.notes[melody_mask(self.song.roll, self.notes, PITCH_LOW, config)]
        scores = self.logits + config.score_offset
        return self.notes[best_line(self.notes, scores, config, PITCH_LOW)]


def cases(songs: list[Song], weights: SplitWeights) -> list[Case]:
    found = []
    for song in songs:
        notes = roll_to_notes(song.roll)
        logits = weights.logits(note_features(song.roll, notes, PITCH_LOW))
        found.append(Case(song, notes, logits, roll_to_notes(song.melody_roll)))
    return found


def f1_over(songs: list[Case], config: SplitConfig) -> tuple[float, float, float]:
    """Precision, recall, F1 pooled over all notes of `songs`."""
    hits = n_pred = n_true = 0
    for case in songs:
        pred = case.melody(config)
        precision, _, _ = note_f1(pred, case.truth)
        hits += round(precision * len(pred))
        n_pred += len(pred)
        n_true += len(case.truth)
    precision, recall = hits / max(n_pred, 1), hits / max(n_true, 1)
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-9)


def line_stats(melodies: list[np.ndarray], pitch_low: int) -> tuple[float, float, float, float]:
    """Monophony (share of steps where the line sounds with at most one note), median, 5 %
    and 95 % pitch (MIDI) of the notes (rows of roll_to_notes, not cut at the next onset)."""
    mono_steps = sounding_steps = 0
    pitches = []
    for notes in melodies:
        if len(notes) == 0:
            continue
        count = np.zeros(int(notes[:, 2].max()) + 1, dtype=np.int64)
        for start, _, end in notes:
            count[start:end] += 1
        sounding_steps += int((count >= 1).sum())
        mono_steps += int((count == 1).sum())
        pitches.append(notes[:, 1] + pitch_low)
    all_pitches = np.concatenate(pitches) if pitches else np.zeros(1)
    low, median, high = np.percentile(all_pitches, [5, 50, 95])
    return mono_steps / max(sounding_steps, 1), float(median), float(low), float(high)


def generated_rolls(folder: Path, spec: RollSpec) -> list[PianoRoll]:
    """The MIDI files of `trainer sample` back on their 16th grid (they have one tempo)."""
    rolls = []
    for path in sorted(folder.glob("*.mid")):
        midi = pretty_midi.PrettyMIDI(str(path))
        step_s = 60.0 / float(midi.get_tempo_changes()[1][0]) / spec.steps_per_beat
        n_steps = int(np.ceil(midi.get_end_time() / step_s)) + 1
        rolls.append(midi_to_roll(midi, np.arange(n_steps) * step_s, spec, name=path.name))
    return rolls


def print_line(label: str, stats: tuple[float, float, float, float], n: int) -> None:
    mono, median, low, high = stats
    print(f"| {label} | {n} | {mono:.3f} | {median:.0f} | {low:.0f}-{high:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=default_pop909_dir())
    parser.add_argument("--tune", type=parse_song_range, default=None)
    parser.add_argument("--report", type=parse_song_range, default=parse_song_range("831-859"))
    parser.add_argument("--generated", type=Path, default=None, help="MIDI files to split")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH, help="note model JSON")
    args = parser.parse_args()
    weights = SplitWeights.load(args.weights)
    print(f"note model: {args.weights.name}")
    default = SplitConfig()
    best = default
    if args.tune:
        tune = cases(list(songs_in(args.data, args.tune)), weights)
        print(f"tuning on {len(tune)} songs ({args.tune[0]}-{args.tune[-1]})")
        print("| " + " | ".join(TUNE_GRID) + " | precision | recall | F1 |")
        print("|---" * (len(TUNE_GRID) + 3) + "|")
        best_f1 = -1.0
        for values in itertools.product(*TUNE_GRID.values()):
            config = replace(default, **dict(zip(TUNE_GRID, values, strict=True)))
            p, r, f1 = f1_over(tune, config)
            print("| " + " | ".join(map(str, values)) + f" | {p:.3f} | {r:.3f} | {f1:.3f} |")
            if f1 > best_f1:
                best, best_f1 = config, f1
        print(f"best: {best}")
    report = cases(list(songs_in(args.data, args.report)), weights)
    print(f"\nreport songs: {len(report)} ({args.report[0]}-{args.report[-1]})")
    print("| split | precision | recall | F1 |\n|---|---|---|---|")
    candidates = {"skyline": SplitConfig(method="skyline"), "voice (default)": default}
    if best != default:
        candidates["voice (tuned)"] = best
    for label, config in candidates.items():
        p, r, f1 = f1_over(report, config)
        print(f"| {label} | {p:.3f} | {r:.3f} | {f1:.3f} |")

    print(
        "\n| melody line | pieces | monophony | median pitch | 5-95 % pitch |\n|---|---|---|---|---|"
    )
    real_lines = [case.truth for case in report]
    print_line("POP909 MELODY track", line_stats(real_lines, PITCH_LOW), len(report))
    split_real = [case.melody(best) for case in report]
    print_line("split of the real merged roll", line_stats(split_real, PITCH_LOW), len(report))
    if args.generated:
        rolls = generated_rolls(args.generated, RollSpec())
        split_generated = []
        for roll in rolls:
            notes = roll_to_notes(roll)
            split_generated.append(notes[melody_mask(roll, notes, PITCH_LOW, best, weights)])
        label = f"split of generated ({args.generated.name})"
        print_line(label, line_stats(split_generated, PITCH_LOW), len(rolls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
