"""Does ONNX Runtime run the denoiser faster than PyTorch on this CPU? (issue 20)

    python benchmarks/onnx_runtime.py [--model checkpoints/diffbgm-small] [--repeats 40] [--bf16]

Exports the shipped denoiser to ONNX as sampling does (`diffbgm.model.onnx_runtime`), checks
that ONNX Runtime's float32 output matches PyTorch's, and prints the median milliseconds per
network call of PyTorch float32, PyTorch under bf16 autocast (only where the CPU computes bf16
natively, or with --bf16) and ONNX Runtime float32, with 1 and 2 threads at batch 1 and 2, and
ONNX Runtime's ratio to the torch precision sampling would use here
(`diffbgm.device.sampling_precision`). The app samples with ONNX Runtime only where that
precision is float32 (`sampling_runtime`): on an AMX Xeon, bf16 autocast was faster.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffbgm.checkpoint import load_checkpoint
from diffbgm.device import native_bf16, sampling_precision
from diffbgm.model.onnx_runtime import FlatInputs, example_inputs, export_denoiser, input_names
from diffbgm.model.unet import Denoiser

REPO = Path(__file__).resolve().parents[1]


def median_ms(call: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def row(
    denoiser: Denoiser, session: Any, threads: int, batch: int, repeats: int, bf16_too: bool
) -> str:
    """One table row: the error against PyTorch and each runtime's milliseconds."""
    tensors = example_inputs(denoiser.config, batch, seed=batch)
    wanted = {node.name for node in session.get_inputs()}
    names = input_names(denoiser.config)
    feed = {n: v.numpy() for n, v in zip(names, tensors, strict=True) if n in wanted}
    graph = FlatInputs(denoiser).eval()

    def onnx_call() -> Any:
        return session.run(["out"], feed)

    def fp32_call() -> torch.Tensor:
        return graph(*tensors)

    def bf16_call() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return graph(*tensors)

    with torch.no_grad():
        error = float(np.abs(onnx_call()[0] - fp32_call().numpy()).max())
        fp32 = median_ms(fp32_call, repeats)
        bf16 = median_ms(bf16_call, repeats) if bf16_too else math.nan
    onnx = median_ms(onnx_call, repeats)
    torch_used = bf16 if sampling_precision(True, torch.device("cpu")) == "bf16" else fp32
    return (
        f"| {threads} | {batch} | {error:.1e} | {fp32:.1f} | {bf16:.1f} | {onnx:.1f} "
        f"| {onnx / torch_used:.2f}× |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "checkpoints" / "diffbgm-small"))
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument(
        "--bf16", action="store_true", help="time bf16 autocast even where the CPU emulates it"
    )
    args = parser.parse_args()
    native = native_bf16(torch.device("cpu"))
    try:
        import onnxruntime as ort
    except ImportError:
        raise SystemExit("needs onnxruntime and onnx (requirements.txt): make setup") from None
    denoiser = load_checkpoint(args.model).model.eval()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "denoiser.onnx"
        start = time.perf_counter()
        export_denoiser(denoiser, path)
        print(f"export {time.perf_counter() - start:.2f} s, {path.stat().st_size / 1e6:.1f} MB")
        print(f"CPU: {torch.backends.cpu.get_cpu_capability()}, native bf16: {native}")
        used = "bf16" if native else "fp32"
        print(
            "| threads | batch | max abs error vs torch fp32 | torch fp32 ms | torch bf16 ms "
            f"| onnxruntime fp32 ms | onnxruntime / torch {used} |"
        )
        print("|---|---|---|---|---|---|---|")
        for threads in (1, 2):
            torch.set_num_threads(threads)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for batch in (1, 2):
                bf16_too = native or args.bf16
                print(row(denoiser, session, threads, batch, args.repeats, bf16_too))


if __name__ == "__main__":
    main()
