"""How often does the key inferred from a user's chords match the song's annotated key?

    python benchmarks/key_from_chords.py [--songs 801-859] [--changes 4 8 16]

A user who types a progression and no key gets the key `diffbgm.plan.harmony.key_from_chords`
reads from it. Here the progressions are real: the first N chord changes of POP909 songs the
chord model never saw (801-859, those with one key region in key_audio.txt), each compared
with the song's annotated key. Printed per N: exact matches, the relative key (same key
signature, the other mode), another error; and a simple rule for comparison (the tonic is
the root of the chord held longest, its mode that chord's).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from diffbgm.music.chords import note_pc, parse_chord
from diffbgm.music.harmony import load_chord_model
from diffbgm.plan.harmony import key_from_chords
from diffbgm.plan.records import PlanKey

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pop909"


def song_progression(song: Path) -> list[tuple[str, float]]:
    """(Harte label, seconds held) of every chord change, no-chord spans left out."""
    changes: list[tuple[str, float]] = []
    for line in (song / "chord_midi.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) != 3 or parse_chord(parts[2]).is_none:
            continue
        held = float(parts[1]) - float(parts[0])
        if changes and changes[-1][0] == parts[2]:
            changes[-1] = (parts[2], changes[-1][1] + held)
        else:
            changes.append((parts[2], held))
    return changes


def single_key(song: Path) -> PlanKey | None:
    regions = [line.split() for line in (song / "key_audio.txt").read_text().splitlines()]
    keys = {parts[2] for parts in regions if len(parts) == 3}
    if len(keys) != 1:
        return None
    tonic, _, mode = keys.pop().partition(":")
    return PlanKey(note_pc(tonic), "minor" if mode == "min" else "major")


def longest_chord_key(progression: list[tuple[str, float]]) -> PlanKey:
    held: dict[str, float] = {}
    for label, seconds in progression:
        held[label] = held.get(label, 0.0) + seconds
    chord = parse_chord(max(held, key=lambda label: held[label]))
    assert chord.root_pc is not None
    return PlanKey(chord.root_pc, "minor" if chord.is_minor else "major")


def verdict(found: PlanKey, truth: PlanKey) -> str:
    if found == truth:
        return "exact"
    relative = (truth.tonic_pc + (9 if truth.mode == "major" else 3)) % 12
    if found.mode != truth.mode and found.tonic_pc == relative:
        return "relative"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--songs", default="801-859")
    parser.add_argument("--changes", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    first, last = (int(x) for x in args.songs.split("-"))
    model = load_chord_model()
    songs = []
    for number in range(first, last + 1):
        folder = args.data / f"{number:03d}"
        truth = single_key(folder) if folder.is_dir() else None
        if truth is not None:
            songs.append((folder, truth, song_progression(folder)))
    print(f"{len(songs)} songs with one annotated key ({args.songs})")
    print("changes | method            | exact | relative | other")
    for n in args.changes:
        for name in ("key_from_chords", "longest chord"):
            counts: Counter[str] = Counter()
            for _, truth, progression in songs:
                part = progression[:n]
                if name == "key_from_chords":
                    found = key_from_chords([label for label, _ in part], model)
                else:
                    found = longest_chord_key(part)
                counts[verdict(found, truth)] += 1
            total = max(1, len(songs))
            print(
                f"{n:7d} | {name:17s} | {counts['exact'] / total:5.0%} | "
                f"{counts['relative'] / total:8.0%} | {counts['other'] / total:5.0%}"
            )


if __name__ == "__main__":
    main()
