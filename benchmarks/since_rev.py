"""The 30 s clip composed by the code of an earlier commit and by today's, in the same run.

    python benchmarks/since_rev.py                     # against cce049a (where issue 20 began)
    python benchmarks/since_rev.py --rev 8adb71e --warm-runs 3

`benchmarks/e2e.py` compares today's generation with the old one on today's pipeline (its
baseline changes only the sampler's settings). This script runs the whole of an older
commit instead: its own analysis, plan, generation defaults, shipped model, audio and mux,
checked out in a temporary `git worktree` and run with this environment's interpreter, so
it answers "how much faster is a compose than when the issue was filed", measured at the same
hour on the same machine. Each side composes in its own child process: one cold compose,
then `--warm-runs` warm ones (seeds 0, 1, ...), each with its own defaults (threads too);
reported: the median warm wall time, the CPU seconds of that run (the child and its ffmpeg and
FluidSynth children) and the ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "benchmarks"))  # last: nothing here shadows a library

from e2e import CLIP, cpu_seconds  # noqa: E402

# The last commit before issue 20's work began (2026-11-30 01:49): the code the issue's
# 23.3 s was measured with.
ISSUE_20_FILED = "cce049a"


def compose_runs(video: Path, runs: int, model: str | None) -> dict[str, list[float]]:
    """Compose `video` runs times with the `diffbgm` found first on sys.path (its defaults;
    `model`: a checkpoint folder, None: that code's shipped model): wall and CPU seconds per run,
    the first being the cold one. Only the API every version has is used."""
    from diffbgm.pipeline import ComposeOptions, Composer

    composer = Composer.from_pretrained(model)
    walls, cpus = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(runs):
            wall, cpu = time.perf_counter(), cpu_seconds()
            composer(video, Path(tmp) / f"run{seed}", ComposeOptions(seed=seed))
            walls.append(time.perf_counter() - wall)
            cpus.append(cpu_seconds() - cpu)
    return {"wall_s": walls, "cpu_s": cpus}


def run_side(code: Path, video: Path, runs: int, model: str | None) -> dict[str, list[float]]:
    """compose_runs in a child process whose `diffbgm` is the one in `code`."""
    script = (
        f"import sys, json; sys.path.insert(0, {str(code)!r}); "
        f"sys.path.append({str(REPO / 'benchmarks')!r}); "
        "from since_rev import compose_runs; from pathlib import Path; "
        f"print(json.dumps(compose_runs(Path({str(video)!r}), {runs}, {model!r})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=code, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"the compose in {code} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_warm(side: dict[str, list[float]]) -> tuple[float, float, list[float]]:
    """(median warm wall, that run's CPU seconds, every warm wall); the cold run left out."""
    warm = list(zip(side["wall_s"][1:], side["cpu_s"][1:], strict=True)) or list(
        zip(side["wall_s"], side["cpu_s"], strict=True)
    )
    wall, cpu = sorted(warm)[len(warm) // 2]
    return wall, cpu, [w for w, _ in warm]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rev", default=ISSUE_20_FILED, help="the earlier commit")
    parser.add_argument("--video", type=Path, default=CLIP)
    parser.add_argument("--warm-runs", type=int, default=3)
    args = parser.parse_args()
    if not args.video.exists():
        raise SystemExit(f"video not found: {args.video}")
    video = args.video.resolve()
    runs = 1 + args.warm_runs
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(old), args.rev],
            check=True,
        )
        try:
            sides = {
                args.rev: run_side(old, video, runs, None),
                "today": run_side(REPO, video, runs, None),
            }
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=False
            )
    print(f"{video.name}: one cold and {args.warm_runs} warm composes each, own defaults")
    print("| code | median warm s | CPU s of that run | warm runs s | cold s |")
    print("|---|---|---|---|---|")
    medians = {}
    for name, side in sides.items():
        wall, cpu, warm = median_warm(side)
        medians[name] = wall
        walls = " / ".join(f"{w:.2f}" for w in warm)
        print(f"| {name} | {wall:.2f} | {cpu:.1f} | {walls} | {side['wall_s'][0]:.2f} |")
    print(f"today is {medians[args.rev] / medians['today']:.2f}× faster than {args.rev}")


if __name__ == "__main__":
    main()
