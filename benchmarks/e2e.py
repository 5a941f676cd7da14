"""End-to-end benchmark: per-stage seconds, real-time factor and peak memory, today's shipped
defaults side by side with the old ones (issue 20's baseline), as ratios.

    python benchmarks/e2e.py                      # the 30 s clip (warm) + a generated 10-minute video
    python benchmarks/e2e.py --long-minutes 0     # the 30 s clip only (VP8, and as H.264)
    python benchmarks/e2e.py --only shipped       # no baseline column
    python benchmarks/e2e.py --model checkpoints/diffbgm-tiny --long-minutes 0 --only shipped

Each case runs in a fresh child process so its peak RSS is its own. "warm" = a compose after
the first in the same process (model loaded, caches filled), which is what a server sees; the
short clip is composed warm `--warm-runs` times (default 3) and the median run is reported,
with the CPU seconds it used (this process and its ffmpeg children: on two cores the wall
time cannot fall below half of it), also split by stage (a child's CPU counts in the stage that
reaps it: the background picture encode mostly in `video`).
The baseline is the generation that shipped before issue 20: DDIM 25 steps, guidance at every
step (two network items per step), windows one by one, contiguous convolutions, on one torch
thread, with the network that shipped then: when the shipped model is a guidance-distilled
student, its teacher (`distilled_from` in its config.json); the rest of the
pipeline is today's for both (the background picture encode, the analysis), so the ratio is
the sampler's share only. `--record docs/speed.json` writes the shipped figures with the defaults they
were measured with; tests/test_speed_record.py fails when the defaults change without a new one.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "videos" / "big_buck_bunny_0_30.webm"
# The defaults before issue 20 (measured then: 23.3 s for the 30 s clip on an idle machine).
BASELINE: dict[str, Any] = {
    "generation": {
        "sampler": "ddim",
        "steps": 25,
        "guidance_share": 1.0,
        "deep_reuse": 0,
        "max_window_steps": 0,
        "window_batch": 1,
        "channels_last": False,
        "onnx_runtime": False,  # torch ran the network then
    },
    "threads": 1,
}
SHIPPED: dict[str, Any] = {"generation": {}, "threads": "auto"}
SETTINGS = {"baseline": BASELINE, "shipped": SHIPPED}


def make_long_video(source: Path, minutes: float, folder: Path) -> Path:
    """Loop `source` (stream copy, no re-encode) until it lasts about `minutes`."""
    from diffbgm.video.mux import ffmpeg_exe
    from diffbgm.video.probe import probe_video

    loops = max(1, round(minutes * 60 / probe_video(source).duration_s))
    out = folder / f"long_{minutes:g}min{source.suffix}"
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-stream_loop", str(loops - 1)]
    subprocess.run([*cmd, "-i", str(source), "-c", "copy", str(out)], check=True)
    return out


def make_h264_copy(source: Path, folder: Path) -> Path:
    """`source` re-encoded once, before any timing, to H.264 + AAC in an MP4 (x264 veryfast,
    CRF 20): the kind of file a phone or a screen recorder uploads. Its picture is copied into
    the composed MP4 as it is (`video_can_be_copied`), so no picture encode runs while it is
    composed; the VP8 clip itself needs one."""
    from diffbgm.video.mux import ffmpeg_exe

    out = folder / f"{source.stem}_h264.mp4"
    cmd = [ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", "-i", str(source)]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"]
    subprocess.run([*cmd, "-c:a", "aac", "-b:a", "160k", str(out)], check=True)
    return out


def baseline_model(model: str | None) -> str | None:
    """The network of the baseline: a distilled student's teacher, else the model itself."""
    from diffbgm.checkpoint import read_config
    from diffbgm.pipeline import DEFAULT_MODEL

    folder = Path(model) if model else DEFAULT_MODEL
    if not folder.is_dir():
        return model  # a Hub id: no teacher to look up
    _, extra = read_config(folder)
    teacher = extra.get("distilled_from")
    return str(REPO / teacher) if teacher else model


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (ffmpeg, FluidSynth)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def stage_cpu_seconds(marks: list[tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per stage from the (stage, cpu_seconds()) marks of a compose's progress
    callback (called as each stage starts and ends); the time between stages (the probe,
    roll.npz, report.json) is "other". A child's CPU counts in the stage that reaps it: the
    background picture encode is reaped when it ends (in compose or later) or by the mux."""
    seconds: dict[str, float] = {}
    for (before, start), (stage, end) in itertools.pairwise(marks):
        key = stage if stage == before else "other"
        seconds[key] = round(seconds.get(key, 0.0) + end - start, 2)
    return seconds


def stage_marker(marks: list[tuple[str, float]]) -> Callable[[int, int, str], None]:
    """A compose progress callback that appends (stage, cpu_seconds()) to `marks`."""

    def mark(_done: int, _total: int, stage: str) -> None:
        marks.append((stage, cpu_seconds()))

    return mark


def weights_sha256(model: str | None) -> str | None:
    """The measured networks' identity: a new default model needs a new speed record."""
    from diffbgm.checkpoint import networks_sha256
    from diffbgm.pipeline import DEFAULT_MODEL

    return networks_sha256(model or DEFAULT_MODEL)


def run_case(video: Path, model: str | None, runs: int, which: str) -> dict:
    """Compose `runs` times in this process (seeds 0, 1, ...). With more than one run the first
    is the cold one and is left out; of the others the run with the median wall time is
    reported (its stage times), with every warm wall time beside it. Peak RSS: this process's."""
    from diffbgm.pipeline import ComposeOptions, Composer

    setting = SETTINGS[which]
    if which == "baseline":
        model = baseline_model(model)
    start = time.perf_counter()
    composer = Composer.from_pretrained(model, threads=setting["threads"])
    load_s = time.perf_counter() - start
    timed = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            wall, cpu = time.perf_counter(), cpu_seconds()
            marks = [("other", cpu)]
            options = ComposeOptions(seed=i, generation=setting["generation"])
            result = composer(
                video,
                Path(tmp) / f"run{i}",
                options,
                progress=stage_marker(marks),
            )
            marks.append(("other", cpu_seconds()))
            elapsed = time.perf_counter() - wall
            timed.append((elapsed, marks[-1][1] - cpu, result.report, stage_cpu_seconds(marks)))
    kept = timed[1:] if runs > 1 else timed
    wall, cpu, report, stages_cpu = sorted(kept, key=lambda run: run[0])[len(kept) // 2]
    return {
        "video": video.name,
        "duration_s": report.plan.duration_s,
        "model": composer.model_id,
        "generation": report.generation.to_dict(),
        "precision": report.precision,
        "runtime": report.runtime,
        "threads": setting["threads"],
        "model_load_s": round(load_s, 2),
        "stages_s": report.timings_s,
        "stages_cpu_s": stages_cpu,
        "wall_s": round(wall, 2),
        "warm_walls_s": [round(run[0], 2) for run in kept] if runs > 1 else None,
        "cpu_s": round(cpu, 1),
        "real_time_factor": round(wall / report.plan.duration_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cut_alignment": report.metrics.cut_alignment,  # None: the video has no cut
    }


def child(video: Path, model: str | None, runs: int, which: str) -> dict:
    cmd = [sys.executable, __file__, "--child", str(video), "--runs", str(runs), "--which", which]
    if model:
        cmd += ["--model", model]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    """The CPU the figures belong to and the precision the shipped defaults sample in on it
    (bf16 only where native: diffbgm.device.sampling_precision)."""
    import platform

    import torch

    from diffbgm.device import native_bf16

    name = platform.processor()
    try:
        with open("/proc/cpuinfo") as info:
            names = [
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            ]
        name = names[0] if names else name
    except OSError:
        pass
    cpu = torch.device("cpu")
    return {
        "cpu": name,
        "cores": os.cpu_count(),
        "vector_unit": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16(cpu),
    }


def load_average() -> float:
    return os.getloadavg()[0]


def speed_probe(frames: int = 96, repeats: int = 3) -> float:
    """CPU seconds of a fixed piece of work: libx264 (ultrafast, one thread) on `frames` frames
    of ffmpeg's 720p test pattern, the median of `repeats`. The same compose cost 7.7 to 8.5
    CPU s on this machine within one session as its speed varied; recorded beside the figures,
    this says which speed they were measured at (lower = faster)."""
    from diffbgm.video.mux import ffmpeg_exe

    pattern = "testsrc2=size=1280x720:rate=24"
    cmd = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", pattern]
    cmd += ["-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-threads", "1"]
    seconds = []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([*cmd, "-f", "null", "-"], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return round(statistics.median(seconds), 3)


def print_cases(title: str, cases: dict[str, dict]) -> None:
    """One table: a column per setting, and new/old ratios when both ran."""
    first = next(iter(cases.values()))
    print(f"\n## {title}: {first['video']} ({first['duration_s']:.0f} s)")
    for which, case in cases.items():
        print(
            f"{which}: model {case['model']} · {case['generation']} · threads {case['threads']}"
            f" · precision {case.get('precision', '?')} · runtime {case.get('runtime', '?')}"
        )
    names = list(cases)
    both = names == ["baseline", "shipped"]
    header = "| stage | " + " | ".join(f"{n} s" for n in names) + (" | ratio |" if both else " |")
    print(header + "\n|---|" + "---|" * (len(names) + int(both)))
    stages = list(dict.fromkeys(s for c in cases.values() for s in c["stages_s"]))
    for stage in [*stages, "peak RSS MB"]:
        key = "peak_rss_mb" if stage == "peak RSS MB" else None
        values = [c[key] if key else c["stages_s"].get(stage, 0.0) for c in cases.values()]
        row = f"| {stage} | " + " | ".join(f"{v:.2f}" for v in values)
        if both:
            ratio = values[0] / values[1] if values[1] > 0 else float("nan")
            row += f" | {ratio:.2f}×"
        print(row + " |")
    for which, case in cases.items():
        if case.get("stages_cpu_s"):
            by_stage = ", ".join(f"{k} {v:.2f}" for k, v in case["stages_cpu_s"].items())
            print(f"{which}: CPU s by stage (this process + children reaped in it): {by_stage}")
    for which, case in cases.items():
        warm = case.get("warm_walls_s")
        print(
            f"{which}: wall {case['wall_s']:.2f} s"
            + (f" (median of warm runs {warm})" if warm else "")
            + f" · CPU {case.get('cpu_s', float('nan')):.1f} s"
            + f" · real-time factor {case['real_time_factor']:.3f} · model load "
            f"{case['model_load_s']:.2f} s"
        )
    if both:
        speedup = cases["baseline"]["wall_s"] / cases["shipped"]["wall_s"]
        print(f"shipped defaults are {speedup:.2f}× faster than the baseline")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    parser.add_argument("--video", type=Path, default=CLIP)
    parser.add_argument("--long-minutes", type=float, default=10.0, help="0 skips the long video")
    parser.add_argument("--only", choices=list(SETTINGS), default=None)
    parser.add_argument("--record", type=Path, default=None, help="write the shipped figures")
    parser.add_argument(
        "--warm-runs",
        type=int,
        default=3,
        help="warm composes of the short clip after the cold one; the median is reported "
        "(this machine's speed varies ~10-25 %% from run to run)",
    )
    parser.add_argument(
        "--h264",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also compose the clip re-encoded to H.264 first (shipped defaults; the upload's "
        "picture is then copied into the MP4)",
    )
    parser.add_argument("--runs", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument(
        "--which", choices=list(SETTINGS), default="shipped", help=argparse.SUPPRESS
    )
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(run_case(args.child, args.model, args.runs, args.which)))
        return
    if not args.video.exists():
        raise SystemExit(f"video not found: {args.video}")
    order = [args.only] if args.only else ["baseline", "shipped"]
    load_at_start = load_average()
    print(f"load average at start: {load_at_start:.2f} (idle machine: < 0.5)")
    measured_on = machine()
    print(f"machine: {measured_on}")
    probe_at_start = speed_probe()
    print(f"speed probe at start: {probe_at_start:.3f} CPU s (lower = faster; speed_probe())")
    short = {w: child(args.video, args.model, 1 + args.warm_runs, w) for w in order}
    print_cases("short clip, warm", short)
    copied: dict[str, dict] = {}
    if args.h264 and "shipped" in order:
        with tempfile.TemporaryDirectory() as tmp:
            h264 = make_h264_copy(args.video, Path(tmp))
            copied = {"shipped": child(h264, args.model, 1 + args.warm_runs, "shipped")}
        print_cases("the same clip as H.264 (its picture copied, not re-encoded), warm", copied)
    long: dict[str, dict] = {}
    if args.long_minutes > 0:
        with tempfile.TemporaryDirectory() as tmp:
            long_video = make_long_video(args.video, args.long_minutes, Path(tmp))
            long = {w: child(long_video, args.model, 1, w) for w in order}
        print_cases("long video, cold", long)
    probe_at_end = speed_probe()
    print(f"speed probe at the end: {probe_at_end:.3f} CPU s (at start {probe_at_start:.3f})")
    if args.record is not None and "shipped" in short:
        record = {
            "date": datetime.date.today().isoformat(),
            "command": "python benchmarks/e2e.py"
            + ("" if long else " --long-minutes 0")
            + ("" if copied else " --no-h264")
            + f" --warm-runs {args.warm_runs}",
            "load_average_at_start": round(load_at_start, 2),
            "speed_probe_cpu_s": {"start": probe_at_start, "end": probe_at_end},
            "machine": measured_on,
            "defaults": {
                "generation": short["shipped"]["generation"],
                "threads": "auto",
                "weights_sha256": weights_sha256(args.model),
            },
            "short": short["shipped"],
            "short_h264": copied.get("shipped"),
            "long": long.get("shipped"),
        }
        args.record.write_text(json.dumps(record, indent=2) + "\n")
        print(f"recorded in {args.record}")


if __name__ == "__main__":
    main()
