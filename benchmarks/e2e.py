"""End-to-end benchmark: per-stage seconds, real-time factor and peak memory.

    python benchmarks/e2e.py                      # the 30 s clip (warm) + a generated 10-minute video
    python benchmarks/e2e.py --model checkpoints/diffbgm-tiny --long-minutes 0

Each case runs in a fresh child process so its peak RSS is its own. "warm" = the second
compose in the same process (model loaded, caches filled), which is what a server sees.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "videos" / "big_buck_bunny_0_30.webm"


def make_long_video(source: Path, minutes: float, folder: Path) -> Path:
    """Loop `source` (stream copy, no re-encode) until it lasts about `minutes`."""
    from diffbgm.video.mux import ffmpeg_exe
    from diffbgm.video.probe import probe_video

    loops = max(1, round(minutes * 60 / probe_video(source).duration_s))
    out = folder / f"long_{minutes:g}min{source.suffix}"
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-stream_loop", str(loops - 1)]
    subprocess.run([*cmd, "-i", str(source), "-c", "copy", str(out)], check=True)
    return out


def run_case(video: Path, model: str | None, runs: int, steps: int | None) -> dict:
    """Compose `runs` times in this process; report the last run and this process's peak RSS."""
    from diffbgm.pipeline import ComposeOptions, Composer

    start = time.perf_counter()
    composer = Composer.from_pretrained(model)
    load_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            wall = time.perf_counter()
            options = ComposeOptions(seed=i, generation={} if steps is None else {"steps": steps})
            result = composer(video, Path(tmp) / f"run{i}", options)
            wall = time.perf_counter() - wall
    report = result.report
    return {
        "video": video.name,
        "duration_s": report.plan.duration_s,
        "model": composer.model_id,
        "generation": report.generation.to_dict(),
        "model_load_s": round(load_s, 2),
        "stages_s": report.timings_s,
        "wall_s": round(wall, 2),
        "real_time_factor": round(wall / report.plan.duration_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cut_alignment": report.metrics.cut_alignment,  # None: the video has no cut
    }


def child(video: Path, model: str | None, runs: int, steps: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", str(video), "--runs", str(runs)]
    if model:
        cmd += ["--model", model]
    if steps:
        cmd += ["--steps", str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_case(title: str, case: dict) -> None:
    print(f"\n## {title}: {case['video']} ({case['duration_s']:.0f} s), model {case['model']}")
    print(f"generation: {case['generation']}")
    print("| stage | seconds |\n|---|---|")
    for stage, seconds in case["stages_s"].items():
        print(f"| {stage} | {seconds:.2f} |")
    print(
        f"wall {case['wall_s']:.2f} s · real-time factor {case['real_time_factor']:.3f} · "
        f"peak RSS {case['peak_rss_mb']:.0f} MB · model load {case['model_load_s']:.2f} s · "
        f"cut alignment {_alignment(case['cut_alignment'])}"
    )


def _alignment(value: float | None) -> str:
    return "– (no cuts)" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    parser.add_argument("--video", type=Path, default=CLIP)
    parser.add_argument("--long-minutes", type=float, default=10.0, help="0 skips the long video")
    parser.add_argument("--steps", type=int, default=None, help="override denoising steps")
    parser.add_argument("--runs", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(run_case(args.child, args.model, args.runs, args.steps)))
        return
    if not args.video.exists():
        raise SystemExit(f"video not found: {args.video}")
    print_case("short clip, warm", child(args.video, args.model, 2, args.steps))
    if args.long_minutes > 0:
        with tempfile.TemporaryDirectory() as tmp:
            long_video = make_long_video(args.video, args.long_minutes, Path(tmp))
            print_case("long video, cold", child(long_video, args.model, 1, args.steps))


if __name__ == "__main__":
    main()
