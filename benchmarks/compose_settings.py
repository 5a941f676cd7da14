"""Compose-stage seconds of generation settings on one plan, alternating in one process.

    python benchmarks/compose_settings.py --settings dpm:15 unipc:12 --repeats 3 --threads 2

The 30 s clip is analysed and planned once; then `Composer.compose_roll` (sampling and
decoding) runs each setting in turn, `--repeats` rounds, so slow and fast moments of a shared
machine fall on every setting alike. A setting is `sampler:steps[:knob=value...]` on top of
the shipped generation config. Printed: the seconds of every run and the network calls (and
items) per compose.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from diffbgm.options import ComposeOptions
from diffbgm.pipeline import Composer
from diffbgm.video.probe import probe_video

CLIP = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "big_buck_bunny_0_30.webm"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=CLIP)
    parser.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    parser.add_argument("--settings", nargs="+", default=["dpm:15", "unipc:12"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    composer = Composer.from_pretrained(args.model, threads=args.threads)
    options = ComposeOptions(seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        analysis = composer.analyse(args.video, probe_video(args.video), options, None, Path(tmp))
    plan = composer.plan(analysis, options)
    base = composer.generation_config(options)
    items: list[int] = []
    composer.loaded.model.register_forward_hook(lambda _m, a, _o: items.append(a[0].shape[0]))
    seconds: dict[str, list[float]] = {setting: [] for setting in args.settings}
    calls: dict[str, tuple[int, int]] = {}
    composer.compose_roll(plan, 0, base.with_setting(args.settings[0]))  # warm-up
    for _ in range(args.repeats):
        for setting in args.settings:
            items.clear()
            start = time.perf_counter()
            composer.compose_roll(plan, 0, base.with_setting(setting))
            seconds[setting].append(round(time.perf_counter() - start, 2))
            calls[setting] = (len(items), sum(items))
    print(f"{args.video.name}, {args.threads} threads, {args.repeats} rounds")
    print("| setting | network calls (items) | seconds | median |")
    print("|---|---|---|---|")
    for setting, values in seconds.items():
        n_calls, n_items = calls[setting]
        print(f"| {setting} | {n_calls} ({n_items}) | {values} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
