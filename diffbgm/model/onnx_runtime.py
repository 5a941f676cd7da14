"""The denoiser run by ONNX Runtime: where sampling is float32 on a CPU, 1.4-1.5x faster per
network call than torch (AVX2 AMD EPYC, 2026-12-02: 92 against 141 ms at one thread, batch 1;
`benchmarks/onnx_runtime.py`).

Where the hardware computes bf16 natively, torch's bf16 autocast stays faster (an AMX Xeon,
session 16: ONNX Runtime fp32 9-28 % slower per call), so `sampling_runtime` picks ONNX Runtime
only for float32 sampling on a CPU. The graph is exported from the weights in memory once
(torch's TorchScript exporter, about 4 s) and kept on disk under a key of the weights, the
model config and the torch version, so a restart, a worker process or another checkpoint never
reads a stale graph. A call the graph was not exported for (DeepCache reuse, a window longer
than the model's) runs the torch denoiser instead.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import time
import warnings
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from diffbgm.model.conditions import Conditions, model_global, two_segment_conditions

if TYPE_CHECKING:
    from diffbgm.model.config import ModelConfig
    from diffbgm.model.unet import DeepFeatures, Denoiser

LOG = logging.getLogger(__name__)
CACHE_ENV = "DIFFBGM_ONNX_CACHE"
OPSET = 17
# A graph is 14 MB (the small model) and every new set of weights or torch version adds one.
# After an export the cache keeps every graph used within KEEP_DAYS and, beyond those, the
# KEEP_RECENT most recently used; a graph in use is touched on every compose, so a running
# server's graph is never the oldest. Partial files of an export that was killed go after an hour.
KEEP_DAYS = 30
KEEP_RECENT = 4
STALE_PARTIAL_S = 3600.0


def onnx_runtime_installed() -> bool:
    """onnxruntime to run the graph and onnx, which torch's exporter needs, both importable."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def sampling_runtime(onnx_wanted: bool, precision: str, device: torch.device) -> str:
    """What runs the network while sampling: "onnxruntime" when the generation config wants it
    (`onnx_runtime`), sampling is float32 on a CPU and ONNX Runtime is installed; else "torch"."""
    if onnx_wanted and precision == "fp32" and device.type == "cpu" and onnx_runtime_installed():
        return "onnxruntime"
    return "torch"


def cache_folder(env: dict[str, str] | None = None) -> Path:
    """$DIFFBGM_ONNX_CACHE, else $XDG_CACHE_HOME/diffbgm/onnx, else ~/.cache/diffbgm/onnx."""
    env = dict(os.environ) if env is None else env
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser()
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "diffbgm" / "onnx"


# --- export ---------------------------------------------------------------------------------
def condition_names(config: ModelConfig) -> list[str]:
    """The Conditions fields the network reads (`recalled` only with `recall_input`)."""
    names = [spec.name for spec in fields(Conditions)]
    return names if config.recall_input else [n for n in names if n != "recalled"]


def input_names(config: ModelConfig) -> list[str]:
    """The graph's inputs, in order: x_t, t, the conditions, drop (and guidance)."""
    names = ["x_t", "t", *condition_names(config), "drop"]
    return [*names, "guidance"] if config.guidance_embedding else names


class FlatInputs(nn.Module):
    """The denoiser with flat tensor inputs named by `input_names` (the exporter cannot take
    the Conditions dataclass)."""

    def __init__(self, denoiser: Denoiser) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.names = input_names(denoiser.config)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.names, tensors, strict=True))
        cond = Conditions(**{name: named[name] for name in condition_names(self.denoiser.config)})
        return self.denoiser(named["x_t"], named["t"], cond, named["drop"], named.get("guidance"))


def example_inputs(config: ModelConfig, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Flat inputs: noise, a window cut into two segments (nothing recalled), drop, guidance."""
    generator = torch.Generator().manual_seed(seed)
    cond = two_segment_conditions(config, batch, seed)
    if config.recall_input:
        cond = cond.with_(recalled=torch.zeros(batch, 3, config.window_steps, config.n_pitches))
    tensors: tuple[torch.Tensor, ...] = (
        torch.randn(batch, 2, config.window_steps, config.n_pitches, generator=generator),
        torch.full((batch,), 500, dtype=torch.long),
        *(getattr(cond, name) for name in condition_names(config)),
        torch.zeros(batch, dtype=torch.bool),
    )
    if config.guidance_embedding:
        tensors += (torch.full((batch,), 2.0),)
    return tensors


def export_denoiser(denoiser: Denoiser, path: Path) -> None:
    """Write the float32 denoiser as an ONNX graph for windows of the model's own length, with
    the batch size left free."""
    names = input_names(denoiser.config)
    flat = FlatInputs(denoiser).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about the shapes it keeps constant (window length, head size)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            flat,
            example_inputs(denoiser.config, batch=2),
            str(path),
            input_names=names,
            output_names=["out"],
            dynamic_axes={name: {0: "batch"} for name in [*names, "out"]},
            opset_version=OPSET,
            dynamo=False,
        )


def graph_key(denoiser: Denoiser) -> str:
    """A name for the graph of these weights under this config and torch version."""
    digest = hashlib.sha256()
    config = json.dumps(denoiser.config.to_dict(), sort_keys=True, default=str)
    digest.update(f"{config}|torch {torch.__version__}|opset {OPSET}".encode())
    for name, tensor in denoiser.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def exported_graph(denoiser: Denoiser, folder: Path | None = None) -> Path:
    """The graph file of this denoiser, exported into `folder` (default `cache_folder()`, or a
    folder in the system's temporary directory where that cannot be written) the first time;
    written under a temporary name and renamed, so concurrent processes never read half a
    file."""
    name = f"denoiser-{graph_key(denoiser)}.onnx"
    folder = folder or cache_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK)
    except OSError:
        writable = False
    if not writable and not (folder / name).is_file():
        fallback = Path(tempfile.gettempdir()) / f"diffbgm-onnx-{os.getuid()}"
        LOG.warning("cannot write the ONNX cache %s; using %s", folder, fallback)
        folder = fallback
        folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if path.is_file():
        with contextlib.suppress(OSError):  # a read-only cache is still usable
            os.utime(path)
        return path
    handle, partial = tempfile.mkstemp(dir=folder, suffix=".partial")
    os.close(handle)
    try:
        export_denoiser(denoiser, Path(partial))
        os.chmod(partial, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)
    LOG.info("exported the denoiser to %s", path)
    for removed in prune_cache(folder, keep=path):
        LOG.info("removed the unused graph %s", removed.name)
    return path


def prune_cache(folder: Path, keep: Path, now: float | None = None) -> list[Path]:
    """Remove the graphs in `folder` unused for KEEP_DAYS, except `keep` and the KEEP_RECENT
    most recently used, and partial exports older than STALE_PARTIAL_S -> what was removed.
    Best effort: a file another process removed first, or one that cannot be removed, is
    skipped."""
    now = time.time() if now is None else now

    def last_used(path: Path) -> float | None:
        try:
            return path.stat().st_mtime
        except OSError:
            return None

    graphs = [(t, g) for g in folder.glob("denoiser-*.onnx") if (t := last_used(g)) is not None]
    graphs.sort(reverse=True)
    doomed = [
        graph
        for rank, (used, graph) in enumerate(graphs)
        if rank >= KEEP_RECENT and now - used > KEEP_DAYS * 86400 and graph != keep
    ]
    for partial in folder.glob("*.partial"):
        used = last_used(partial)
        if used is not None and now - used > STALE_PARTIAL_S:
            doomed.append(partial)
    removed = []
    for path in doomed:
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


# --- running ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _session(path: str, threads: int, spinning: bool = True) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Pool threads spin while they wait (ONNX Runtime's default). More than one thread runs
    # only when no background encode holds a core (`diffbgm.threads.SamplingThreads`), and
    # there spinning measured faster and cheaper for one network: the 30 s compose on 2 threads
    # took 1.32-1.45 s and 2.6-2.9 CPU s against 1.47-2.09 s and 2.6-3.8 CPU s without
    # (docs/model.md). Two networks called in turn (autoguidance) each have their own pool,
    # and one pool's threads still spinning after its call take the cores from the other's:
    # there each call took about twice as long with spinning (docs/model.md, "Two pools").
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class OnnxDenoiser(nn.Module):
    """Called like the Denoiser; runs ONNX Runtime with as many threads as torch is set to use
    (the app changes that count while it samples), the torch denoiser where the graph does not
    fit the call. The outputs are bit-identical across thread counts (checked in the tests)."""

    def __init__(self, denoiser: Denoiser, graph: Path, spinning: bool = True) -> None:
        super().__init__()
        self.fallback = denoiser  # also gives parameters() its device, as the sampler expects
        self.graph = str(graph)
        self.spinning = spinning  # False where another network's session runs in turn
        self.names = input_names(denoiser.config)
        self.failed = False  # set when ONNX Runtime could not run the graph

    @property
    def config(self) -> ModelConfig:
        return self.fallback.config

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: Conditions,
        drop: torch.Tensor | None = None,
        guidance: torch.Tensor | None = None,
        deep: DeepFeatures | None = None,
    ) -> torch.Tensor:
        """x_t (B, 2, T, P) float32 -> (B, 2, T, P) float32, as Denoiser.forward."""
        fits = x_t.shape[2] == self.config.window_steps and x_t.device.type == "cpu"
        if deep is not None or not fits or self.failed:
            return self.fallback(x_t, t, cond, drop, guidance, deep)
        batch = x_t.shape[0]
        if drop is None:
            drop = torch.zeros(batch, dtype=torch.bool)
        if self.config.recall_input and cond.recalled is None:
            cond = cond.with_(recalled=x_t.new_zeros(batch, 3, *x_t.shape[2:]))
        cond = cond.with_(global_=model_global(cond.global_, self.config.global_dim))
        values: dict[str, torch.Tensor | None] = {
            "x_t": x_t.float(),
            "t": t.long(),
            **{name: getattr(cond, name) for name in condition_names(self.config)},
            "drop": drop.bool(),
            "guidance": torch.ones(batch) if guidance is None else guidance.float(),
        }
        feed = {name: _array(values[name]) for name in self.names}
        try:
            session = _session(self.graph, max(1, torch.get_num_threads()), self.spinning)
            (out,) = session.run(["out"], feed)
        except Exception as exc:  # noqa: BLE001 - a broken graph file or runtime must not end a compose
            # torch from here on; the next process exports the graph afresh
            LOG.warning("ONNX Runtime failed (%s); sampling goes on with torch", exc)
            self.failed = True
            Path(self.graph).unlink(missing_ok=True)
            return self.fallback(x_t, t, cond, drop, guidance)
        return torch.from_numpy(out)


def _array(value: torch.Tensor | None) -> np.ndarray:
    assert value is not None
    return np.ascontiguousarray(value.detach().cpu().numpy())


def onnx_denoiser(
    denoiser: Denoiser, folder: Path | None = None, spinning: bool = True
) -> OnnxDenoiser:
    """The ONNX Runtime form of `denoiser` (exported on first use, then read from the cache);
    `spinning` False where another network's session is called in turn with it."""
    return OnnxDenoiser(denoiser, exported_graph(denoiser, folder), spinning)
