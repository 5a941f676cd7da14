"""Time the video analysis of a 30 s 720p clip, stage by stage, and optionally score the shot
detectors against the hand-annotated clips in tests/annotations.

    python benchmarks/video.py                 # 720p H.264 made from the shared 30 s clip
    python benchmarks/video.py --video X.mp4   # any video
    python benchmarks/video.py --f1 content,adaptive,transnetv2

Without the shared clip, a synthetic 30 s 720p clip (coloured shots, moving squares) is made.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, help="analyse this video instead")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--f1", default="", help="comma-separated detectors to score")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or make_720p_clip(Path(tmp))
        time_analysis(video, args.repeats)
    if args.f1:
        score_detectors(args.f1.split(","))


if __name__ == "__main__":
    main()
