"""How many notes lie outside both the key and the chord, real and generated, and what they cost PCHE.

    python benchmarks/outside_key.py --songs 801-830 --midi DIR [DIR ...]

DIR holds the MIDI of `trainer evaluate --midi-dir` (song<ID>.mid, on the song's own grid).
For each song's first bars, real (the cache) and generated, counts the notes whose pitch class
is neither in the key (major, or natural minor with its leading tone) nor in the chord
sounding with them (`diffbgm.generation.decoding.pitches_outside_key_and_chord`, the key
filter's own test), and gives PCHE as measured and with those notes left out, each as a gap
from the real songs' PCHE. The pitch-class histogram's entropy rises steeply with a rare pitch
class, so a few such notes move PCHE much more than their share of the notes
(docs/evaluation.md, "Notes outside the key and the chord").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from diffbgm.generation.decoding import pitches_outside_key_and_chord
from diffbgm.metrics import MetricConfig, pitch_class_entropy
from diffbgm.model.conditions import PieceConditions

try:
    from benchmarks.tempo_rhythm import add_song_arguments, songs_and_generated
except ModuleNotFoundError:  # run as a script: benchmarks/ is on the path
    from tempo_rhythm import add_song_arguments, songs_and_generated  # type: ignore[no-redef]


def outside_notes(onset: np.ndarray, piece: PieceConditions, pitch_low: int) -> np.ndarray:
    """(T, P) bool: the onsets outside both the key and the chord (none without a key)."""
    outside = pitches_outside_key_and_chord(piece, onset.shape[1], pitch_low)
    if outside is None:
        return np.zeros_like(onset, dtype=bool)
    return onset.astype(bool) & outside[: onset.shape[0]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_song_arguments(parser)
    args = parser.parse_args()
    if not args.midi:
        parser.error("--midi: at least one folder of generated MIDI")
    metric = MetricConfig()
    notes = {"real": [0, 0], **{str(m): [0, 0] for m in args.midi}}  # [all, outside]
    pche: dict[str, list[tuple[float, float]]] = {key: [] for key in notes}
    for _, song, generated in songs_and_generated(
        args.songs, Path(args.data), args.bars, args.model, args.midi
    ):
        if len(generated) != len(args.midi):
            continue  # a folder lacks this song: compare like with like
        rolls = {
            "real": song.onset,
            **{str(m): g.onset for m, g in zip(args.midi, generated, strict=True)},
        }
        for key, onset in rolls.items():
            outside = outside_notes(onset, song.conditions, metric.pitch_low)
            notes[key][0] += int(onset.sum())
            notes[key][1] += int(outside.sum())
            kept = onset.astype(bool) & ~outside
            pche[key].append(
                (pitch_class_entropy(onset, metric), pitch_class_entropy(kept, metric))
            )
    real_pche = float(np.mean([measured for measured, _ in pche["real"]]))
    print(f"{len(pche['real'])} songs x {args.bars} bars; PCHE gaps in % of the real songs'")
    print("| music | notes | outside key and chord | PCHE gap | without them |")
    print("|---|---|---|---|---|")
    for key, (total, outside) in notes.items():
        measured, kept = (float(np.mean(col)) for col in zip(*pche[key], strict=True))
        print(
            f"| {key} | {total} | {100 * outside / max(total, 1):.2f} % "
            f"| {100 * (measured / real_pche - 1):+.1f} % | {100 * (kept / real_pche - 1):+.1f} % |"
        )


if __name__ == "__main__":
    main()
