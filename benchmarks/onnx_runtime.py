"""Would ONNX Runtime run the denoiser faster than PyTorch on this CPU? (issue 20)

    pip install onnx==1.23.1 onnxruntime==1.30.0     # not project dependencies
    python benchmarks/onnx_runtime.py [--model checkpoints/diffbgm-small] [--repeats 40]

Exports the shipped denoiser to ONNX (torch's TorchScript exporter, batch size variable; the
model writes its attention out while exporting, `diffbgm.model.attention.attend`), checks
that ONNX Runtime's float32 output matches PyTorch's, and prints the median milliseconds per
network call of PyTorch float32, PyTorch with bf16 autocast (the shipped setting) and ONNX
Runtime float32, with 1 and 2 threads at batch 1 and 2. Nothing in the app uses ONNX Runtime:
it was measured not to be faster than the shipped bf16 autocast (docs/model.md, "ONNX
Runtime").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from diffbgm.checkpoint import load_checkpoint
from diffbgm.model.conditions import Conditions, two_segment_conditions
from diffbgm.model.unet import Denoiser

REPO = Path(__file__).resolve().parents[1]


class FlatInputs(nn.Module):
    """The denoiser with flat tensor inputs (the exporter cannot take the Conditions dataclass)."""

    def __init__(self, denoiser: Denoiser) -> None:
        super().__init__()
        self.denoiser = denoiser

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        cond = Conditions(*tensors[2:8])
        guidance = tensors[9] if len(tensors) > 9 else None
        return self.denoiser(tensors[0], tensors[1], cond, tensors[8], guidance)


def example_inputs(denoiser: Denoiser, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Flat inputs: random noise, a window cut into two segments, drop and guidance."""
    cfg = denoiser.config
    generator = torch.Generator().manual_seed(seed)
    cond = two_segment_conditions(cfg, batch, seed)
    tensors: tuple[torch.Tensor, ...] = (
        torch.randn(batch, 2, cfg.window_steps, cfg.n_pitches, generator=generator),
        torch.full((batch,), 500, dtype=torch.long),
        *(getattr(cond, field.name) for field in fields(Conditions)),
        torch.zeros(batch, dtype=torch.bool),
    )
    if cfg.guidance_embedding:
        tensors += (torch.full((batch,), 2.0),)
    return tensors


def input_names(denoiser: Denoiser) -> list[str]:
    names = ["x_t", "t", *(field.name for field in fields(Conditions)), "drop"]
    return [*names, "guidance"] if denoiser.config.guidance_embedding else names


def export(denoiser: Denoiser, path: Path) -> None:
    names = input_names(denoiser)
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about the shapes it keeps constant (window length, head size)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            FlatInputs(denoiser).eval(),
            example_inputs(denoiser, batch=2),
            path,
            input_names=names,
            output_names=["out"],
            dynamic_axes={name: {0: "batch"} for name in [*names, "out"]},
            opset_version=17,
            dynamo=False,
        )


def median_ms(call: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def row(denoiser: Denoiser, session: Any, threads: int, batch: int, repeats: int) -> str:
    """One table row: the error against PyTorch and the three runtimes' milliseconds."""
    tensors = example_inputs(denoiser, batch, seed=batch)
    wanted = {node.name for node in session.get_inputs()}
    names = input_names(denoiser)
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
        bf16 = median_ms(bf16_call, repeats)
    onnx = median_ms(onnx_call, repeats)
    return (
        f"| {threads} | {batch} | {error:.1e} | {fp32:.1f} | {bf16:.1f} | {onnx:.1f} "
        f"| {onnx / bf16:.2f}× |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "checkpoints" / "diffbgm-small"))
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    try:
        import onnxruntime as ort
    except ImportError:
        raise SystemExit(
            "needs onnxruntime and onnx: pip install onnx==1.23.1 onnxruntime==1.30.0"
        ) from None
    denoiser = load_checkpoint(args.model).model.eval()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "denoiser.onnx"
        start = time.perf_counter()
        export(denoiser, path)
        print(f"export {time.perf_counter() - start:.2f} s, {path.stat().st_size / 1e6:.1f} MB")
        print(
            "| threads | batch | max abs error vs torch fp32 | torch fp32 ms | torch bf16 ms "
            "| onnxruntime fp32 ms | onnxruntime / bf16 |"
        )
        print("|---|---|---|---|---|---|---|")
        for threads in (1, 2):
            torch.set_num_threads(threads)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for batch in (1, 2):
                print(row(denoiser, session, threads, batch, args.repeats))


if __name__ == "__main__":
    main()
