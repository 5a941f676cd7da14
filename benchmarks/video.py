"""Time the video analysis of a 30 s 720p clip, stage by stage, and optionally score the shot
detectors against the hand-annotated clips in tests/annotations.

    python benchmarks/video.py                 # 720p H.264 made from the shared 30 s clip
    python benchmarks/video.py --video X.mp4   # any video
    python benchmarks/video.py --f1 content,adaptive,transnetv2
    python benchmarks/video.py --compare d76afa7   # before (that commit) vs now, as ratios
    python benchmarks/video.py --decode-floor      # decoder alone vs decode_frames (CPU s)

Without the shared clip, a synthetic 30 s 720p clip (coloured shots, moving squares) is made.

`--compare REF` analyses the shared 30 s clip (720p VP8, as uploaded) and the same clip looped
to `--long-minutes` (stream copy) with the `diffbgm` package of git commit REF and with this
checkout, each run in a fresh process (warmed up on a tiny clip first), before and after taking
turns, `--repeats` times; it prints the median seconds per stage, the whole analysis's wall and
CPU seconds (all threads) and the process's peak RSS, and the ratios after / before.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# `--compare` runs each analysis in a fresh process with the package under test first on the path.
if os.environ.get("BENCH_PACKAGE_ROOT"):
    sys.path.insert(0, os.environ["BENCH_PACKAGE_ROOT"])

from diffbgm.video.analyze import analyze_video  # noqa: E402
from diffbgm.video.decode import decode_frames  # noqa: E402
from diffbgm.video.mux import ffmpeg_exe  # noqa: E402
from diffbgm.video.shots import TRANSNET_DECODE, ShotOptions, detect_cuts, shot_f1  # noqa: E402
from tests.conftest import shared_data_dir  # noqa: E402


def make_720p_clip(folder: Path) -> Path:
    """A 30 s 1280x720 H.264 clip: the shared Big Buck Bunny excerpt re-encoded, or synthetic."""
    target = folder / "bench_720p.mp4"
    source = shared_data_dir() / "videos" / "big_buck_bunny_0_30.webm"
    if source.exists():
        subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-y", "-i", str(source), "-vf", "scale=1280:720",
             "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(target)],
            check=True,
        )  # fmt: skip
        return target
    from tests.video_fixtures import SyntheticShot, write_video

    colours = [(200, 60, 40), (40, 80, 200), (60, 180, 80), (220, 200, 60), (90, 40, 140)]
    shots = [SyntheticShot(6.0, c, 100.0 + 60 * i) for i, c in enumerate(colours)]
    return write_video(target, shots, fps=24, size=(1280, 720))


def time_analysis(video: Path, repeats: int) -> None:
    runs = []
    # CPU seconds (all threads) do not depend on how busy the machine is; wall seconds do.
    cpu: list[float] = []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        analysis = analyze_video(video)
        runs.append((time.perf_counter() - start, analysis.timings_s))
        cpu.append(time.process_time() - cpu_start)
    info = analysis.info
    print(f"video: {video.name} {info.width}x{info.height} {info.fps:.2f} fps "
          f"{info.duration_s:.1f} s {info.video_codec}; {len(analysis.shots)} shots")  # fmt: skip
    for stage in runs[0][1]:
        values = [timings[stage] for _total, timings in runs]
        print(f"  {stage:<10} median {statistics.median(values):6.3f} s")
    totals = [total for total, _timings in runs]
    print(f"  {'total':<10} median {statistics.median(totals):6.3f} s "
          f"(min {min(totals):.3f}, max {max(totals):.3f}, {repeats} runs); "
          f"CPU time median {statistics.median(cpu):.3f} s")  # fmt: skip


def score_detectors(methods: list[str]) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from tests.test_shots import EDGE_S, REAL_CLIPS, real_clip

    for annotation in REAL_CLIPS:
        try:
            path, truth, duration = real_clip(annotation)
        except BaseException as skipped:  # pytest.skip raises a BaseException subclass
            print(f"{annotation}: skipped ({skipped})")
            continue
        for method in methods:
            options = ShotOptions(method=method)  # type: ignore[arg-type]
            decode = TRANSNET_DECODE if method == "transnetv2" else None
            frames = decode_frames(path, options=decode) if decode else decode_frames(path)
            start = time.perf_counter()
            cuts = detect_cuts(frames, options)
            elapsed = time.perf_counter() - start
            found = [t for t in cuts if EDGE_S <= t <= duration - EDGE_S]
            p, r, f1 = shot_f1(truth, found)
            print(json.dumps({"clip": path.name, "method": method, "precision": round(p, 3),
                              "recall": round(r, 3), "f1": round(f1, 3), "true": len(truth),
                              "found": len(found), "detect_s": round(elapsed, 2)}))  # fmt: skip


def analyse_once(video: Path) -> None:
    """Analyse `video` once (probe included, after a warm-up on a tiny synthetic clip, as in a
    running app) and print one JSON line: wall seconds per stage, the total wall and CPU seconds
    and this process's peak RSS in MB (run in a fresh process)."""
    from diffbgm.video.probe import probe_video
    from tests.video_fixtures import write_video

    with tempfile.TemporaryDirectory() as tmp:  # warm: imports and first-call set-up done
        analyze_video(write_video(Path(tmp) / "warm.mp4"))
    start, cpu_start = time.perf_counter(), time.process_time()
    info = probe_video(video)
    probe_s = time.perf_counter() - start
    analysis = analyze_video(video, info=info)
    row = {"probe": probe_s, **analysis.timings_s}
    row["total wall"] = time.perf_counter() - start
    row["total CPU"] = time.process_time() - cpu_start
    row["peak RSS MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row["shots found"] = len(analysis.shots)
    row["cut times"] = analysis.cut_times_s
    row["features"] = [
        [value for value in feature.to_dict().values() if isinstance(value, float)]
        for feature in analysis.features
    ]
    row["package"] = str(Path(sys.modules["diffbgm"].__file__ or "").parent.parent)
    print(json.dumps(row))


def compare(ref: str, long_minutes: float, repeats: int) -> None:
    """Before (git commit `ref`) vs this checkout on the 30 s clip and its looped long version."""
    from e2e import make_long_video

    clip = shared_data_dir() / "videos" / "big_buck_bunny_0_30.webm"
    if not clip.exists():
        raise SystemExit(f"--compare needs the shared clip {clip}")
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        before.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", ref, "diffbgm"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        videos = {"30 s clip": clip, f"{long_minutes:g}-minute loop": make_long_video(
            clip, long_minutes, Path(tmp))}  # fmt: skip
        roots = {f"before ({ref})": before, "after": REPO}
        for label, video in videos.items():
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in roots}
            for _ in range(repeats):
                for name, root in roots.items():  # taking turns: load changes hit both alike
                    runs[name].append(_analyse_in_fresh_process(video, root))
            _print_comparison(label, runs)


def _analyse_in_fresh_process(video: Path, package_root: Path) -> dict[str, Any]:
    env = {**os.environ, "BENCH_PACKAGE_ROOT": str(package_root)}
    out = subprocess.run(
        [sys.executable, __file__, "--analyse-once", str(video)],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    row = json.loads(out.strip().splitlines()[-1])
    imported = Path(row.pop("package")).resolve()
    if imported != package_root.resolve():
        raise SystemExit(f"the analysis imported diffbgm from {imported}, not {package_root}")
    return row


def _print_comparison(label: str, runs: dict[str, list[dict[str, Any]]]) -> None:
    (before_name, before), (after_name, after) = runs.items()
    cuts = {json.dumps(run.pop("cut times")) for run in before + after}
    same = "the same in every run" if len(cuts) == 1 else "DIFFERENT between runs"
    features = [run.pop("features") for run in before + after]
    gap = max(
        (abs(a - b) for other in features[1:] for rows in zip(features[0], other, strict=False)
         for a, b in zip(*rows, strict=True)),
        default=0.0,
    )  # fmt: skip
    print(f"\n{label}: median of {len(before)} runs each; cut times {same}; "
          f"shot features differ by at most {gap:.1e} between runs")  # fmt: skip
    print(f"| | {before_name} | {after_name} | after / before |\n|---|---|---|---|")
    for key in before[0]:
        old = statistics.median(run[key] for run in before)
        new = statistics.median(run.get(key, float("nan")) for run in after)
        ratio = new / old if old else float("nan")
        unit = "" if key in ("peak RSS MB", "shots found") else " s"
        digits = 0 if unit == "" else 3
        print(f"| {key} | {old:.{digits}f}{unit} | {new:.{digits}f}{unit} | {ratio:.2f} |")


def decode_floor(video: Path, repeats: int) -> None:
    """CPU seconds of decoding every frame and nothing else vs `decode_frames` (which also
    picks, scales and stores the analysis frames): how close the decode stage is to the
    decoder's own cost."""
    import av

    from diffbgm.video.probe import probe_video

    info = probe_video(video)

    def decoder_alone() -> None:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for _frame in container.decode(stream):
                pass

    cpu: dict[str, list[float]] = {"decoder alone": [], "decode_frames": []}
    for _ in range(repeats):
        for name, run in (("decoder alone", decoder_alone),
                          ("decode_frames", lambda: decode_frames(video, info))):  # fmt: skip
            start = time.process_time()
            run()
            cpu[name].append(time.process_time() - start)
    for name, values in cpu.items():
        print(f"{video.name}: {name:<14} CPU median {statistics.median(values):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, help="analyse this video instead")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--f1", default="", help="comma-separated detectors to score")
    parser.add_argument("--compare", metavar="REF", help="before (git commit REF) vs now")
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--analyse-once", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--decode-floor", action="store_true", help="decoder alone vs decode_frames, CPU s"
    )
    args = parser.parse_args()
    if args.decode_floor:
        decode_floor(args.video or shared_data_dir() / "videos" / "big_buck_bunny_0_30.webm",
                     args.repeats)  # fmt: skip
        return
    if args.analyse_once:
        analyse_once(args.analyse_once)
        return
    if args.compare:
        compare(args.compare, args.long_minutes, args.repeats)
        return
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or make_720p_clip(Path(tmp))
        time_analysis(video, args.repeats)
    if args.f1:
        score_detectors(args.f1.split(","))


if __name__ == "__main__":
    main()
