"""Does a form's returning section play its first occurrence again?

    python benchmarks/form_repeats.py [--video V] [--sections "11.9, 15.7, 23"] [--form "A B A B"]

Composes the video (default: the Big Buck Bunny clip of ../shared/data) with the shipped
model, the given section starts and form, then prints, for every bar of a returning segment,
the share of onsets it has in common with the bar it repeats (Jaccard over (step, pitch)
onsets), against the same share between bars at the same place of segments that do not
repeat each other.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from diffbgm.options import ComposeOptions, parse_form, parse_sections
from diffbgm.pipeline import Composer

VIDEO = Path(__file__).resolve().parents[1].parent / "shared/data/videos/big_buck_bunny_0_30.webm"
STEPS_PER_BAR = 16


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--sections", default="11.9, 15.7, 23")
    parser.add_argument("--form", default="A B A B")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    options = ComposeOptions(
        seed=args.seed,
        sections=parse_sections(args.sections),
        form=parse_form(args.form),
        audio="replace",
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = Composer.from_pretrained()(args.video, Path(tmp) / "out", options)
        onset = np.load(result.out_dir / "roll.npz")["onset"]
    plan = result.report.plan
    bar = STEPS_PER_BAR

    def bar_roll(b: int) -> np.ndarray:
        return onset[b * bar : (b + 1) * bar]

    repeated, others = [], []
    for segment in plan.segments:
        if segment.recalls < 0:
            continue
        source = plan.segments[segment.recalls]
        source_bars = max(source.n_beats // 4, 1)
        for k in range(segment.n_beats // 4):
            target_bar = segment.start_beat // 4 + k
            source_bar = source.start_beat // 4 + k % source_bars
            share = jaccard(bar_roll(target_bar), bar_roll(source_bar))
            last = target_bar == plan.n_bars - 1
            print(
                f"bar {target_bar + 1:3d} repeats bar {source_bar + 1:3d}: {share:.2f}"
                + ("  (the piece's last bar: its own cadence)" if last else "")
            )
            if not last:
                repeated.append(share)
    firsts = [s for s in plan.segments if s.recalls < 0]
    for a in firsts:  # the same place in two segments that do not repeat each other
        for b in firsts:
            if a.index < b.index:
                for k in range(min(a.n_beats, b.n_beats) // 4):
                    pair = bar_roll(a.start_beat // 4 + k), bar_roll(b.start_beat // 4 + k)
                    others.append(jaccard(*pair))
    if repeated:
        print(f"repeated bars: {min(repeated):.2f}-{max(repeated):.2f} shared onsets")
    if others:
        print(f"bars of segments that do not repeat: {min(others):.2f}-{max(others):.2f}")


if __name__ == "__main__":
    main()
