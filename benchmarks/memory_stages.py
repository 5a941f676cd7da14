"""Peak memory per pipeline stage for a long video: where the RSS goes.

    python benchmarks/memory_stages.py                # 10 minutes of the 30 s clip, looped
    python benchmarks/memory_stages.py --minutes 20 --model checkpoints/diffbgm-tiny

Composes once with the shipped defaults while a thread samples this process's resident set
size every 0.1 s, then prints each stage's seconds and the largest RSS seen while it ran
(stages from report.json, in their order). `benchmarks/e2e.py` gives the whole-run peak.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from e2e import CLIP, make_long_video

from diffbgm.pipeline import ComposeOptions, Composer


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    args = parser.parse_args()
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample(start: float) -> None:
        while not done.is_set():
            samples.append((time.perf_counter() - start, rss_mb()))
            time.sleep(0.1)

    with tempfile.TemporaryDirectory() as tmp:
        video = make_long_video(CLIP, args.minutes, Path(tmp))
        composer = Composer.from_pretrained(args.model)
        start = time.perf_counter()
        sampler = threading.Thread(target=sample, args=(start,), daemon=True)
        sampler.start()
        result = composer(video, Path(tmp) / "out", ComposeOptions(seed=0))
        done.set()
        sampler.join()
    print(f"{args.minutes:g} minutes of {CLIP.name}, model {composer.model_id}")
    print("| stage | seconds | peak RSS MB |\n|---|---|---|")
    begin = 0.0
    for stage, seconds in result.report.timings_s.items():
        if stage == "total":
            continue
        seen = [mb for t, mb in samples if begin <= t <= begin + seconds]
        print(f"| {stage} | {seconds:.1f} | {max(seen) if seen else float('nan'):.0f} |")
        begin += seconds
    print(f"peak RSS over the compose: {max(mb for _, mb in samples):.0f} MB")


if __name__ == "__main__":
    main()
