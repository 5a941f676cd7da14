"""Compose stage alone under each dtype, runtime and thread count: which default pays here.

    python benchmarks/compose_dtype.py                  # the 30 s clip, 1 and 2 threads
    python benchmarks/compose_dtype.py --cases fp32 onnx --repeats 3
    python benchmarks/compose_dtype.py --threads 1 --video diffbgm/assets/examples/shapes.mp4

The plan is made once; then `Composer.compose_roll` (sampling + decoding, the shipped
generation settings) is timed in each case, the cases interleaved, `--repeats` times, in one
child process per thread count (torch's thread count is process-wide). The cases:
- bf16: torch under bf16 autocast, forced even where the CPU only emulates bf16 (the library
  itself then samples in fp32: `diffbgm.device.sampling_precision`), so the benchmark shows
  what that rule saves on this CPU;
- fp32: torch in float32;
- onnx: ONNX Runtime in float32 (`diffbgm.model.onnx_runtime`; the graph exported before the
  timing starts).
Prints the best seconds of each case, each case's ratio to the first, and 1-thread / N-thread,
and whether the cases wrote the same notes.
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
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "videos" / "big_buck_bunny_0_30.webm"


CASES = {  # name -> (bf16, onnx_runtime)
    "bf16": (True, False),
    "fp32": (False, False),
    "onnx": (False, True),
}


def child(
    video: Path, threads: int, model: str | None, repeats: int, cases: list[str]
) -> dict[str, Any]:
    import hashlib

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
    configs = {
        name: base.with_overrides(bf16=CASES[name][0], onnx_runtime=CASES[name][1])
        for name in cases
    }
    if "onnx" in cases:
        composer.compose_roll(plan, 0, configs["onnx"])  # the export, once, outside the timing
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    notes: dict[str, str] = {}
    for _ in range(repeats):
        for name in cases:
            start = time.perf_counter()
            roll = composer.compose_roll(plan, 0, configs[name])
            seconds[name].append(round(time.perf_counter() - start, 2))
            notes[name] = hashlib.sha256(roll.onset.tobytes() + roll.sustain.tobytes()).hexdigest()
    return {"seconds": seconds, "notes": notes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=CLIP)
    parser.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.video, args.child, args.model, args.repeats, args.cases)))
        return
    from diffbgm.device import native_bf16

    native = native_bf16(torch.device("cpu"))
    print(f"{args.video.name}; load average {os.getloadavg()[0]:.2f} at start")
    print(f"CPU: {torch.backends.cpu.get_cpu_capability()}, native bf16: {native}")
    first = args.cases[0]
    ratios = [f"{name} / {first}" for name in args.cases[1:]]
    header = [f"{name} s" for name in args.cases] + ratios
    print("| threads | " + " | ".join(header) + " | notes |")
    print("|---" * (2 + len(args.cases) + len(ratios)) + "|")
    best: dict[int, float] = {}
    for threads in args.threads:
        command = [sys.executable, __file__, "--child", str(threads), "--video", str(args.video)]
        command += ["--repeats", str(args.repeats), "--cases", *args.cases]
        command += ["--model", args.model] if args.model else []
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        fastest = {name: min(values) for name, values in result["seconds"].items()}
        best[threads] = min(fastest.values())
        same = "same" if len(set(result["notes"].values())) == 1 else "differ"
        cells = [f"{fastest[name]:.2f}" for name in args.cases]
        cells += [f"{fastest[name] / fastest[first]:.2f}" for name in args.cases[1:]]
        print(f"| {threads} | " + " | ".join(cells) + f" | {same} |", flush=True)
    if len(best) > 1:
        one = best[min(best)]
        for threads, value in sorted(best.items())[1:]:
            print(f"{min(best)} thread(s) / {threads}: {one / value:.2f}x")


if __name__ == "__main__":
    main()
