"""Where the realism test is right: the figured songs against the rest, seed by seed.

    python benchmarks/figured_songs.py --reports docs/eval/s56_playing_801_830_s{0,1,2}.json \
        --candidate docs/eval/s61_double_time_801_830_s{0,1,2}.json [--from 0.25]

POP909's figured songs (at least `--from` of their onsets on the odd 16ths: slow songs that
run in 16th-note figures) are where the realism test tells generated music from real most
often (docs/evaluation.md, "Double time"). Each song's figuration is read from the training
cache (the share over the whole song, as the conditions carry it). For each evaluation report
(`trainer evaluate --json`) and each classifier and kind of window, the share of the windows
the test told right, generated and real together, among the figured songs and among the rest;
with `--candidate` reports (paired by position with `--reports`), both and their difference.
The classifiers are fitted on all songs together, so a change in one group can move the other
group's accuracy although its music is the same.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

KINDS = ("notes only", "with velocities")
CLASSIFIERS = ("logistic", "forest")


def song_figurations(data: Path, songs: list[str]) -> dict[str, float]:
    from trainer.dataset import load_cached_song

    return {song: load_cached_song(data / "songs" / f"{song}.npz").figuration for song in songs}


def told_by_group(report: dict, figured: set[str]) -> dict[tuple[str, str], tuple[float, float]]:
    """(kind, classifier) -> (accuracy on the figured songs' windows, on the rest's)."""
    result = {}
    for kind in KINDS:
        for classifier in CLASSIFIERS:
            per_song = report["realism"][kind]["generated vs real"][classifier]["per_song"]
            right = {True: 0, False: 0}
            total = {True: 0, False: 0}
            for song, (gen_right, gen, real_right, real) in per_song.items():
                right[song in figured] += gen_right + real_right
                total[song in figured] += gen + real
            result[(kind, classifier)] = (
                right[True] / max(1, total[True]),
                right[False] / max(1, total[False]),
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reports", nargs="+", type=Path, required=True)
    parser.add_argument("--candidate", nargs="*", type=Path, default=[])
    parser.add_argument("--data", type=Path, default=Path("data_cache/pop909"))
    parser.add_argument("--from", dest="least", type=float, default=0.25)
    args = parser.parse_args()
    if args.candidate and len(args.candidate) != len(args.reports):
        parser.error("--candidate needs one report for each of --reports")
    reports = [json.loads(path.read_text()) for path in args.reports]
    candidates = [json.loads(path.read_text()) for path in args.candidate]
    songs = sorted(reports[0]["realism"]["notes only"]["generated vs real"]["forest"]["per_song"])
    figurations = song_figurations(args.data, songs)
    figured = {song for song, share in figurations.items() if share >= args.least}
    print(
        f"{len(figured)} of {len(songs)} songs ask for at least {args.least:g} of their onsets "
        f"on the odd 16ths: {', '.join(sorted(figured))}"
    )
    reference_told = [told_by_group(report, figured) for report in reports]
    candidate_told = [told_by_group(report, figured) for report in candidates]
    print("\n| kind | classifier | figured songs | the rest |")
    print("|---|---|---|---|")
    for kind in KINDS:
        for classifier in CLASSIFIERS:
            cells = []
            for group in (0, 1):
                ref = np.array([told[(kind, classifier)][group] for told in reference_told])
                text = f"{100 * ref.mean():.1f}"
                if candidates:
                    cand = np.array([told[(kind, classifier)][group] for told in candidate_told])
                    change = 100 * (cand - ref)
                    text += (
                        f" → {100 * cand.mean():.1f} ({change.mean():+.1f}; a seed "
                        f"{', '.join(f'{c:+.1f}' for c in change)})"
                    )
                cells.append(text)
            print(f"| {kind} | {classifier} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
