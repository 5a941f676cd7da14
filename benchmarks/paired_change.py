"""Is a generation setting at metric parity with another? Paired change per song.

    python benchmarks/paired_change.py docs/eval/pop909_801_830_dpm15.json \
        runs/guidance/dpm15_gs0.5_801-830.json [more candidate JSONs] [--tolerance 2]

Both files are `python -m trainer evaluate --json` reports of the same songs and seeds (each
song keeps its seed, so song by song the two runs differ only by the setting). For every
metric of the generated music: the change of its mean over songs (the number the evaluation's
table shows) in percent of the reference's mean, with a standard error from the per-song
differences; and, in brackets, the mean of the per-song changes in percent (the statistic used
before session 11: a song whose value is small weighs heavily in it, so for SI-bar it is
noisier and biased by Jensen's inequality). The pooled control obedience (Spearman) side by
side. A candidate passes when every change of the mean lies within --tolerance percent
(`--rule per-song` judges by the bracketed statistic instead).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

METRICS = (
    "pche",
    "gps",
    "si_bar_short",
    "si_bar_mid",
    "chord_tone_ratio",
    "in_key_ratio",
    "polyphony",
    "onsets_per_bar",
    # MusDr's audio SI: only in reports run without --no-musdr-si ("–" otherwise)
    "si_musdr_short",
    "si_musdr_mid",
    "si_musdr_long",
)
OBEDIENCE = ("register_obedience", "density_obedience", "polyphony_obedience")


def per_song(run: dict) -> dict[str, dict[str, float]]:
    """song id -> the generated music's metrics."""
    return {song["song"]: song["generated"] for song in run["songs"]}


def _pairs(reference: dict, candidate: dict, metric: str) -> list[tuple[float, float]]:
    """(reference, candidate) values of the songs both runs have a finite value for."""
    ref, cand = per_song(reference), per_song(candidate)
    return [
        (ref[s][metric], cand[s][metric])
        for s in sorted(set(ref) & set(cand))
        if _finite(ref[s].get(metric)) and _finite(cand[s].get(metric))
    ]


def _mean_and_error(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (NaN where there are too few values)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def paired_change(reference: dict, candidate: dict, metric: str) -> tuple[float, float, int]:
    """(mean % change, standard error, songs) over the songs both runs have a value for."""
    changes = [100.0 * (c - r) / r for r, c in _pairs(reference, candidate, metric) if r != 0]
    mean, error = _mean_and_error(changes)
    return mean, error, len(changes)


def change_of_mean(reference: dict, candidate: dict, metric: str) -> tuple[float, float, int]:
    """(% change of the mean over songs, standard error, songs): 100 * mean(cand - ref) /
    mean(ref) over the songs both runs have a value for; the error is that of the mean of the
    paired differences, scaled the same way."""
    pairs = _pairs(reference, candidate, metric)
    base = sum(r for r, _ in pairs) / len(pairs) if pairs else 0.0
    if base == 0:
        return math.nan, math.nan, len(pairs)
    mean, error = _mean_and_error([c - r for r, c in pairs])
    return 100.0 * mean / base, 100.0 * error / abs(base), len(pairs)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("candidates", type=Path, nargs="+")
    parser.add_argument("--tolerance", type=float, default=2.0, help="percent")
    parser.add_argument(
        "--rule",
        choices=("mean", "per-song"),
        default="mean",
        help="judge by the change of the mean (default) or the mean per-song change",
    )
    args = parser.parse_args(argv)

    reference = json.loads(args.reference.read_text())
    runs = [(path, json.loads(path.read_text())) for path in args.candidates]
    print(
        f"paired change from {args.reference.name}: change of the mean over songs in % ± "
        "standard error [mean per-song change in %]"
    )
    print("| metric | " + " | ".join(path.stem for path, _ in runs) + " |")
    print("|---|" + "---|" * len(runs))
    worst = {path: 0.0 for path, _ in runs}
    for metric in METRICS:
        cells = []
        for path, run in runs:
            of_mean, error, n = change_of_mean(reference, run, metric)
            per_song_mean, _, _ = paired_change(reference, run, metric)
            if n == 0:  # a report without this metric per song
                cells.append("–")
                continue
            judged = of_mean if args.rule == "mean" else per_song_mean
            # a statistic that cannot be computed (a zero reference) is not a pass
            worst[path] = max(worst[path], abs(judged) if math.isfinite(judged) else math.inf)
            cells.append(f"{of_mean:+.1f} % ± {error:.1f} [{per_song_mean:+.1f} %] (n={n})")
        print(f"| {metric} | " + " | ".join(cells) + " |")
    for name in OBEDIENCE:
        base = reference["control"]["generated"].get(name, math.nan)  # older reports lack some
        cells = [f"{run['control']['generated'].get(name, math.nan):.3f}" for _, run in runs]
        print(f"| {name} (reference {base:.3f}) | " + " | ".join(cells) + " |")
    failed = 0
    for path, _ in runs:
        verdict = "within" if worst[path] <= args.tolerance else "OUTSIDE"
        failed += verdict == "OUTSIDE"
        print(
            f"{path.stem}: largest change ({args.rule} rule) {worst[path]:.1f} % "
            f"({verdict} {args.tolerance:g} %)"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
