"""Does the music follow the picture within one take? (a long shot whose motion changes)

    python benchmarks/within_shot.py --seeds 3

One-take videos without a cut (`diffbgm.video.synthetic.write_one_take_video`: a pan over a
fixed texture whose speed changes part by part; brightness and colour stay alike) are
analysed and planned like any upload; the planner splits the take into phrases. Three plans
each: the default (phrases start where the take turns, `PlanConfig.take_turns`, and take
their controls from the stretches they show, `within_shot_features`); phrases on the fixed
4-bar grid with the stretches' controls; and the planner before session 50 (the grid and the
shot's average). Per phrase it prints the picture's motion there, the requested density and
the realised onsets per bar (mean over seeds, the shipped model and defaults); then, over all
phrases, the Spearman correlation of the phrase's motion with its realised onsets per bar,
the realised onsets per bar of the moving phrases over the still ones, and how far each
change of speed lies from the nearest phrase start (seconds).
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

# speeds in pixels per second on the 160 px wide picture, one per part
PROFILES: dict[str, tuple[float, ...]] = {
    "still, pan, still": (0.0, 24.0, 0.0),
    "pan, still, pan": (24.0, 0.0, 24.0),
    "speeding up": (0.0, 8.0, 16.0, 24.0, 32.0),
}
STILL = 0.02  # phrases below this motion count as still, above 0.1 as moving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="checkpoint folder (default: shipped)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--part-s", type=float, default=10.0, help="seconds per part")
    args = parser.parse_args()

    from diffbgm.metrics import spearman
    from diffbgm.pipeline import ComposeOptions, Composer
    from diffbgm.plan import PlanConfig, segment_features
    from diffbgm.video.analyze import analyze_video
    from diffbgm.video.synthetic import write_one_take_video
    from trainer.evaluate import span_density

    composer = Composer.from_pretrained(args.model)
    settings = {
        "turns": PlanConfig(),
        "4-bar grid": PlanConfig(take_turns=False),
        "shot average": PlanConfig(take_turns=False, within_shot_features=False),
    }
    misses: dict[str, list[float]] = {name: [] for name in settings}
    motion_all: dict[str, list[float]] = {name: [] for name in settings}
    played: dict[str, list[float]] = {name: [] for name in settings}
    with tempfile.TemporaryDirectory() as folder:
        for profile, speeds in PROFILES.items():
            path = write_one_take_video(Path(folder) / "take.mp4", speeds, args.part_s)
            analysis = analyze_video(path)
            print(f"{profile} ({len(analysis.shots)} shot(s), speeds {speeds} px/s):")
            for name, config in settings.items():
                options = ComposeOptions()
                plan = composer.plan(analysis, replace(options, seed=0), config)
                spans = plan.segment_bounds_s()
                rows, _ = segment_features(analysis, spans, within_shots=True)  # what each shows
                realised = np.zeros(len(plan.segments))
                for seed in range(args.seeds):
                    seeded = replace(options, seed=seed)
                    plan = composer.plan(analysis, seeded, config)
                    roll = composer.compose_roll(plan, seed, composer.generation_config(seeded))
                    steps = roll.onset.shape[0]
                    ids = plan.step_segment_ids(steps)
                    for index in range(len(plan.segments)):
                        inside = np.flatnonzero(ids == index)
                        if inside.size:  # a segment past the roll's end has no steps
                            realised[index] += span_density(roll.onset, inside[0], inside[-1] + 1)
                realised /= args.seeds
                played[name].extend(realised.tolist())
                starts = np.asarray([a for a, _ in spans])
                for change in args.part_s * np.arange(1, len(speeds)):
                    misses[name].append(float(np.abs(starts - change).min()))
                cells = ", ".join(
                    f"{row['motion']:.2f}/{seg.dynamic['density']:.2f}/{got:.1f}"
                    + ("" if seg.recalls < 0 else f" (recalls {seg.recalls})")
                    for row, seg, got in zip(rows, plan.segments, realised, strict=True)
                )
                print(f"  {name:12s} motion/requested/realised per phrase: {cells}")
                print(
                    f"  {'':12s} phrases start at (s): " + ", ".join(f"{a:.1f}" for a, _ in spans)
                )
                motion_all[name].extend(row["motion"] for row in rows)
    for name, values in played.items():
        got, motion = np.asarray(values), np.asarray(motion_all[name])
        still, moving = motion < STILL, motion > 0.1
        ratio = got[moving].mean() / max(got[still].mean(), 1e-9)
        print(
            f"{name}: Spearman(motion, realised onsets per bar) over {len(got)} phrases "
            f"{spearman(motion, got):.3f}; moving / still phrases {got[moving].mean():.2f} / "
            f"{got[still].mean():.2f} onsets per bar = {ratio:.2f}x; a change of speed to the "
            f"nearest phrase start: mean {np.mean(misses[name]):.2f} s, "
            f"max {np.max(misses[name]):.2f} s"
        )


if __name__ == "__main__":
    main()
