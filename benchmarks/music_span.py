"""Music over part of a video: where it lands, what it costs, and the sound around it.

    python benchmarks/music_span.py [--video V] [--start 0:05] [--end 0:20] [--seed 0]
    python benchmarks/music_span.py --edges 2 4 8      # the plans alone, for PlanConfig.span_edge_weight

Composes the video (default: the Big Buck Bunny clip of ../shared/data, else the shipped
example) twice with the shipped model, over the whole video and over the asked part, and
prints per stage the seconds of each and their ratio; then where the part's music starts and
ends against the asked times, the bar grid (the first downbeat, whether the last bar ends at
the end), whether every note lies inside the part, and the level of the sound in the MP4
before, under and after the music, against the video's own sound there (ducked only under
the music; "duck" mode).

With --edges it composes nothing: for each weight of the music's edges in the tempo search
(PlanConfig.span_edge_weight) it plans spans of the three videos of
benchmarks/video_boundaries.py (starts at 10/20/30/45 % of each, ends at 60/75/93 %) and
prints per video how many spans start and end on bar lines, and how close the cuts inside
come to a line (residual within 0.1 and 0.5 of a beat).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pretty_midi

from diffbgm.options import ComposeOptions, parse_time
from diffbgm.pipeline import Composer, Result

REPO = Path(__file__).resolve().parents[1]
BBB = REPO.parent / "shared/data/videos/big_buck_bunny_0_30.webm"
EXAMPLE = REPO / "diffbgm/assets/examples/shapes.mp4"


def sound_levels_db(mp4: Path, windows: list[tuple[float, float]]) -> list[float]:
    """RMS level (dBFS) of the MP4's sound in each (start, end) window, first channel."""
    import av

    with av.open(str(mp4)) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray() for frame in container.decode(stream)]
        rate = stream.rate
    sound = np.concatenate(frames, axis=1)[0]
    levels = []
    for a, b in windows:
        piece = sound[int(a * rate) : int(b * rate)]
        rms = float(np.sqrt(np.mean(piece**2))) if piece.size else 0.0
        levels.append(20 * np.log10(max(rms, 1e-9)))
    return levels


def compose(composer: Composer, video: Path, out: Path, options: ComposeOptions) -> Result:
    composer(video, out / "warm-up", options)  # first-call costs (model load, caches) apart
    return composer(video, out / "timed", options)


def edge_survey(weights: list[float]) -> None:
    import itertools
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from video_boundaries import default_videos

    from diffbgm.plan import PlanConfig, PlanOverrides, make_plan
    from diffbgm.video.analyze import analyze_video

    analyses = [analyze_video(video) for video in default_videos()]
    for weight in weights:
        config = PlanConfig(span_edge_weight=weight)
        for analysis in analyses:
            d = analysis.info.duration_s
            spans = [
                (a, b)
                for a, b in itertools.product(
                    (0.1 * d, 0.2 * d, 0.3 * d, 0.45 * d), (0.6 * d, 0.75 * d, 0.93 * d)
                )
                if b - a >= 2.0
            ]
            starts = ends = 0
            residuals: list[float] = []
            for a, b in spans:
                overrides = PlanOverrides(music_start_s=a, music_end_s=b)
                plan = make_plan(analysis, overrides, seed=0, config=config)
                first, last = plan.music_span_s
                starts += abs(plan.offset_s - first) < 1e-6
                ends += abs(plan.offset_s + plan.n_bars * plan.bar_s - last) < 1e-6
                residuals += [abs(r) / plan.beat_s for r in plan.cut_residuals_s]
            near = np.asarray(residuals)
            print(
                f"weight {weight:g} {analysis.info.path.name}: {len(spans)} spans, start on a "
                f"bar line {starts}, end {ends}; {near.size} cuts inside, within 0.1 / 0.5 "
                f"beat of a line {np.mean(near < 0.1):.2f} / {np.mean(near < 0.5):.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", type=Path, default=BBB if BBB.is_file() else EXAMPLE)
    parser.add_argument("--start", default="0:05")
    parser.add_argument("--end", default="0:20")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--edges", type=float, nargs="+", metavar="WEIGHT")
    args = parser.parse_args()
    if args.edges:
        edge_survey(args.edges)
        return
    start, end = parse_time(args.start), parse_time(args.end)
    whole_options = ComposeOptions(seed=args.seed)
    part_options = ComposeOptions(seed=args.seed, music_start_s=start, music_end_s=end)
    composer = Composer.from_pretrained()
    with tempfile.TemporaryDirectory() as tmp:
        whole = compose(composer, args.video, Path(tmp) / "whole", whole_options)
        part = compose(composer, args.video, Path(tmp) / "part", part_options)
        plan = part.report.plan
        first, last = plan.music_span_s
        midi = pretty_midi.PrettyMIDI(str(part.midi_path))
        notes = [note for instrument in midi.instruments for note in instrument.notes]
        tick = 60.0 / plan.tempo_bpm / midi.resolution  # the MIDI file's rounding of times
        duration = plan.duration_s
        has_sound = part.report.video_info.has_audio
        windows = [(0.2, first - 0.6), (first + 0.6, last - 0.6), (last + 0.6, duration - 0.2)]
        levels = sound_levels_db(part.video_path, windows) if has_sound else []
        whole_levels = sound_levels_db(whole.video_path, windows) if has_sound else []
        own_levels = sound_levels_db(args.video, windows) if has_sound else []

    print(f"{args.video.name}: {duration:.2f} s; music asked {args.start}-{args.end}")
    print(f"{'stage':10s} {'whole':>8s} {'part':>8s} {'part/whole':>10s}")
    for stage, seconds in whole.report.timings_s.items():
        other = part.report.timings_s.get(stage, float("nan"))
        ratio = other / seconds if seconds > 0 else float("nan")
        print(f"{stage:10s} {seconds:8.2f} {other:8.2f} {ratio:10.2f}")
    print(
        f"bars: whole {whole.report.plan.n_bars}, part {plan.n_bars}; "
        f"tempo {plan.tempo_bpm:g} BPM (whole {whole.report.plan.tempo_bpm:g})"
    )
    print(
        f"music from {first:.3f} s (asked {start}) to {last:.3f} s (asked {end}); first "
        f"downbeat {plan.offset_s:.3f} s; last bar ends at "
        f"{plan.offset_s + plan.n_bars * plan.bar_s:.3f} s"
    )
    inside = all(first - tick <= n.start and n.end <= last + tick for n in notes)
    print(
        f"notes: {len(notes)}, first at {min(n.start for n in notes):.3f} s, last ends at "
        f"{max(n.end for n in notes):.3f} s; all inside the part (to a MIDI tick): {inside}"
    )
    if levels:
        names = ("before", "under", "after")
        print(
            "video with music, dBFS (before / under / after the music): part "
            + " / ".join(f"{name} {level:.1f}" for name, level in zip(names, levels, strict=True))
            + "; whole "
            + " / ".join(f"{level:.1f}" for level in whole_levels)
            + "; the video's own sound "
            + " / ".join(f"{level:.1f}" for level in own_levels)
        )
    else:
        print("the video has no sound of its own: nothing to duck")


if __name__ == "__main__":
    main()
