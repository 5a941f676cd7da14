"""Fit the melody split's note model on POP909 songs (their MELODY track is the answer).

    python -m trainer.melody_split --songs 1-800 --out diffbgm/assets/melody_split.json

A small model (logistic regression with --hidden 0, else one hidden ReLU layer) of
`diffbgm.arrange.parts.note_features` on "is this note of the merged roll (MELODY + BRIDGE +
PIANO) also a MELODY note" (same onset step and pitch). The
validation songs (801-859) stay out; benchmarks/melody_split.py measures the split on them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from diffbgm.arrange.parts import SplitWeights, note_features
from diffbgm.errors import DiffBGMError
from diffbgm.music.pop909 import Song, load_song
from diffbgm.music.roll import roll_to_notes
from trainer.__main__ import default_pop909_dir, parse_song_range


def labelled_notes(song: Song) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Notes of the merged roll, their features and whether each is a MELODY note."""
    notes = roll_to_notes(song.roll)
    melody = {(int(s), int(p)) for s, p in roll_to_notes(song.melody_roll)[:, :2]}
    labels = np.array([(int(s), int(p)) in melody for s, p in notes[:, :2]], dtype=bool)
    return notes, note_features(song.roll, notes, song.spec.pitch_low), labels


def songs_in(folder: Path, numbers: Iterable[int]) -> Iterable[Song]:
    """The POP909 songs that exist among `numbers` (a missing or broken one is skipped)."""
    for number in numbers:
        path = folder / f"{number:03d}"
        if not path.is_dir():
            continue
        try:
            yield load_song(path)
        except DiffBGMError as exc:
            print(f"skipping {path.name}: {exc}", file=sys.stderr)


def training_table(songs: Iterable[Song]) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of every note of `songs`, stacked."""
    features, labels = [], []
    for song in songs:
        _, x, y = labelled_notes(song)
        features.append(x)
        labels.append(y)
    if not features:
        raise DiffBGMError("no POP909 songs found to fit the melody split on")
    return np.concatenate(features), np.concatenate(labels)


def fit_weights(x: np.ndarray, y: np.ndarray, hidden: int, seed: int = 0) -> SplitWeights:
    """Logistic regression (hidden = 0) or a one-hidden-layer ReLU network on standardised
    features."""
    mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    z = (x - mean) / scale
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    if hidden == 0:
        from sklearn.linear_model import LogisticRegression

        logistic = LogisticRegression(max_iter=2000).fit(z, y)
        layers = ((logistic.coef_.T.copy(), logistic.intercept_.copy()),)
    else:
        from sklearn.neural_network import MLPClassifier

        net = MLPClassifier(
            hidden_layer_sizes=(hidden,), early_stopping=True, max_iter=60, random_state=seed
        ).fit(z, y)
        layers = tuple(zip(net.coefs_, net.intercepts_, strict=True))
    return SplitWeights(mean, scale, layers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.melody_split", description=__doc__)
    parser.add_argument("--data", type=Path, default=default_pop909_dir(), help="POP909 folder")
    parser.add_argument("--songs", type=parse_song_range, default="1-800", help="e.g. 1-800")
    parser.add_argument("--out", type=Path, required=True, help="weights JSON to write")
    parser.add_argument("--hidden", type=int, default=96, help="hidden units (0: logistic)")
    parser.add_argument("--table", type=Path, default=None, help="features cache (.npz)")
    args = parser.parse_args(argv)
    if args.table is not None and args.table.is_file():
        with np.load(args.table) as saved:
            x, y = saved["x"], saved["y"]
    else:
        x, y = training_table(songs_in(args.data, args.songs))
        if args.table is not None:
            np.savez_compressed(args.table, x=x, y=y)
    weights = fit_weights(x, y, args.hidden)
    data = {
        **weights.to_dict(),
        "fitted_on": f"POP909 songs {args.songs[0]}-{args.songs[-1]}",
        "n_notes": int(len(y)),
        "hidden": args.hidden,
    }
    args.out.write_text(json.dumps(data) + "\n")
    accuracy = float(((weights.logits(x) > 0) == y).mean())
    print(f"fitted on {len(y)} notes ({y.mean():.1%} melody), training accuracy {accuracy:.3f}")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
