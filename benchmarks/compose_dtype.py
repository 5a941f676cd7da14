"""Compose stage alone under each dtype and thread count: which default pays on this CPU.

    python benchmarks/compose_dtype.py                  # the 30 s clip, 1 and 2 threads
    python benchmarks/compose_dtype.py --threads 1 --video diffbgm/assets/examples/shapes.mp4

The plan is made once; then `Composer.compose_roll` (sampling + decoding, the shipped
generation settings) is timed with bf16 autocast on and off, twice each, in one child process
per thread count (torch's thread count is process-wide). Prints seconds and the fp32 / bf16
and 1-thread / N-thread ratios. The bf16 case is forced even where the CPU only emulates bf16
(the library itself then samples in fp32: `diffbgm.device.sampling_precision`), so the
benchmark shows what that rule saves on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "videos" / "big_buck_bunny_0_30.webm"


def child(video: Path, threads: int, model: str | None, repeats: int) -> dict[str, list[float]]:
    from diffbgm.generation import generate
    from diffbgm.options import ComposeOptions
    from diffbgm.pipeline import Composer
    from diffbgm.video.probe import probe_video

    # the config's bf16 switch alone, whatever the hardware: bf16 here even where emulated
    generate.sampling_precision = lambda wanted, _device: "bf16" if wanted else "fp32"  # type: ignore[assignment]
    composer = Composer.from_pretrained(model, threads=threads)
    options = ComposeOptions(seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        analysis = composer.analyse(video, probe_video(video), options, None, Path(tmp))
    plan = composer.plan(analysis, options)
    base = composer.generation_config(options)
    seconds: dict[str, list[float]] = {"bf16": [], "fp32": []}
    for _ in range(repeats):
        for name, bf16 in (("bf16", True), ("fp32", False)):
            start = time.perf_counter()
            composer.compose_roll(plan, 0, base.with_overrides(bf16=bf16))
            seconds[name].append(round(time.perf_counter() - start, 2))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=CLIP)
    parser.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.video, args.child, args.model, args.repeats)))
        return
    from diffbgm.device import native_bf16

    native = native_bf16(torch.device("cpu"))
    print(f"{args.video.name}; load average {os.getloadavg()[0]:.2f} at start")
    print(f"CPU: {torch.backends.cpu.get_cpu_capability()}, native bf16: {native}")
    print("| threads | bf16 s | fp32 s | fp32 / bf16 |")
    print("|---|---|---|---|")
    best: dict[int, float] = {}
    for threads in args.threads:
        command = [sys.executable, __file__, "--child", str(threads), "--video", str(args.video)]
        command += ["--repeats", str(args.repeats)] + (
            ["--model", args.model] if args.model else []
        )
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        seconds = json.loads(out.strip().splitlines()[-1])
        bf16, fp32 = min(seconds["bf16"]), min(seconds["fp32"])
        best[threads] = min(bf16, fp32)
        print(f"| {threads} | {bf16:.2f} | {fp32:.2f} | {fp32 / bf16:.2f} |", flush=True)
    if len(best) > 1:
        one = best[min(best)]
        for threads, value in sorted(best.items())[1:]:
            print(f"{min(best)} thread(s) / {threads}: {one / value:.2f}x")


if __name__ == "__main__":
    main()
