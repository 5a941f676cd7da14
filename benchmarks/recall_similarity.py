"""How close does a recalled segment come to its source, by recall strength?

    python benchmarks/recall_similarity.py [VIDEO] --strengths 0 0.5 0.65 0.8 --seeds 0 7

Plans the video (default: the Big Buck Bunny clip in ../shared/data), takes the first
segment that recalls another, and for each strength and seed prints the share of
(pitch, onset step) pairs that the two segments' bars 2-3 have in common (Jaccard), with the
onset counts of both. 0 = unrelated music; 1 = the same notes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "videos" / "big_buck_bunny_0_30.webm"
STEPS_PER_BEAT = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("video", nargs="?", type=Path, default=CLIP)
    parser.add_argument("--model", default=None, help="checkpoint folder (default: shipped)")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.5, 0.65, 0.8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 7])
    args = parser.parse_args()

    from diffbgm.pipeline import ComposeOptions, Composer
    from diffbgm.video.analyze import analyze_video

    composer = Composer.from_pretrained(args.model)
    analysis = analyze_video(args.video)
    print("| recall | seed | shared (pitch, onset) | onsets source / repeat |")
    print("|---|---|---|---|")
    for strength in args.strengths:
        for seed in args.seeds:
            options = ComposeOptions(seed=seed, generation={"recall": strength})
            plan = composer.plan(analysis, options)
            repeat = next((s for s in plan.segments if s.recalls >= 0), None)
            if repeat is None:
                raise SystemExit(f"{args.video.name}: no segment of the plan recalls another")
            source = plan.segments[repeat.recalls]
            onset = composer.compose_roll(plan, seed, composer.generation_config(options)).onset
            bar = 4 * STEPS_PER_BEAT
            a = source.start_beat * STEPS_PER_BEAT + bar  # bars 2-3 of each segment
            b = repeat.start_beat * STEPS_PER_BEAT + bar
            x, y = onset[a : a + 2 * bar], onset[b : b + 2 * bar]
            shared = (x & y).sum() / max(int((x | y).sum()), 1)
            print(f"| {strength:g} | {seed} | {shared:.2f} | {int(x.sum())} / {int(y.sum())} |")


if __name__ == "__main__":
    main()
