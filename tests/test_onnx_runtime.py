"""The denoiser under ONNX Runtime: same outputs as torch, chosen only where it pays, exported
once per weights, and never in the way of a compose."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from diffbgm.checkpoint import LoadedModel, load_checkpoint
from diffbgm.generation import GenerationConfig, generate_roll
from diffbgm.generation import generate as generate_module
from diffbgm.model import onnx_runtime
from diffbgm.model.conditions import two_segment_conditions
from diffbgm.model.config import preset
from diffbgm.model.onnx_runtime import (
    OnnxDenoiser,
    cache_folder,
    example_inputs,
    exported_graph,
    graph_key,
    onnx_denoiser,
    sampling_runtime,
)
from diffbgm.model.unet import DeepFeatures, Denoiser
from tests.test_generation import TINY, _piece

pytest.importorskip("onnxruntime", reason="ONNX Runtime is a runtime requirement")

CPU = torch.device("cpu")


def _denoiser(seed: int = 0, **overrides: object) -> Denoiser:
    torch.manual_seed(seed)
    return Denoiser(preset("tiny", **overrides)).eval()


def test_the_graph_computes_what_torch_computes_with_any_thread_count(tmp_path: Path) -> None:
    denoiser = _denoiser(guidance_embedding=True)
    network = onnx_denoiser(denoiser, tmp_path)
    x_t, t, *rest = example_inputs(denoiser.config, batch=3, seed=1)
    cond = two_segment_conditions(denoiser.config, 3, seed=1)
    drop, scales = torch.tensor([False, True, False]), torch.tensor([1.0, 2.0, 3.0])
    threads = torch.get_num_threads()
    try:
        outputs = []
        for count in (1, 2):
            torch.set_num_threads(count)
            with torch.no_grad():
                outputs.append(network(x_t, t, cond, drop, scales))
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        expected = denoiser(x_t, t, cond, drop, scales)
    assert outputs[0].shape == expected.shape == x_t.shape
    assert torch.allclose(outputs[0], expected, atol=1e-4), (outputs[0] - expected).abs().max()
    assert torch.equal(outputs[0], outputs[1])  # the app changes the count while it samples


def test_calls_the_graph_does_not_fit_run_the_torch_network(tmp_path: Path) -> None:
    denoiser = _denoiser()
    network = onnx_denoiser(denoiser, tmp_path)
    calls: list[int] = []
    original = denoiser.forward

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args[0].shape[2])
        return original(*args, **kwargs)

    denoiser.forward = counted  # type: ignore[method-assign]
    x_t, t, *_ = example_inputs(denoiser.config, batch=1)
    cond = two_segment_conditions(denoiser.config, 1)
    with torch.no_grad():
        network(x_t, t, cond)  # fits: ONNX Runtime
        assert calls == []
        network(x_t, t, cond, deep=DeepFeatures())  # DeepCache: torch
        longer = torch.cat([x_t, x_t], dim=2)
        long_cond = two_segment_conditions(replace(denoiser.config, window_steps=64), 1)
        assert network(longer, t, long_cond).shape == longer.shape  # a longer window: torch
    assert calls == [32, 64]


def test_the_runtime_is_onnx_only_for_fp32_on_a_cpu_where_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert sampling_runtime(True, "fp32", CPU) == "onnxruntime"
    assert sampling_runtime(False, "fp32", CPU) == "torch"
    assert sampling_runtime(True, "bf16", CPU) == "torch"  # native bf16 autocast is faster
    assert sampling_runtime(True, "fp32", torch.device("cuda")) == "torch"
    monkeypatch.setattr(onnx_runtime, "onnx_runtime_installed", lambda: False)
    assert sampling_runtime(True, "fp32", CPU) == "torch"


def test_the_graph_is_exported_once_per_weights_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports: list[Path] = []
    export = onnx_runtime.export_denoiser
    monkeypatch.setattr(
        onnx_runtime, "export_denoiser", lambda d, p: (exports.append(p), export(d, p))
    )
    first = _denoiser(seed=0)
    path = exported_graph(first, tmp_path)
    assert exported_graph(_denoiser(seed=0), tmp_path) == path and len(exports) == 1
    assert graph_key(_denoiser(seed=1)) != graph_key(first)  # other weights
    switched = _denoiser(seed=0)
    switched.config = replace(switched.config, sac=not switched.config.sac)  # an ablation switch
    assert graph_key(switched) != graph_key(first)
    with torch.no_grad():
        first.input.bias.add_(1.0)  # weights changed in place (training, then sampling)
    assert exported_graph(first, tmp_path) != path and len(exports) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name, exported_graph(first, tmp_path).name]
    )


def test_the_cache_keeps_recent_graphs_and_removes_old_ones(tmp_path: Path) -> None:
    """Every new set of weights adds a 14 MB graph: after an export, graphs unused for
    KEEP_DAYS go (beyond the KEEP_RECENT latest), and so do partial files of killed exports."""
    import os

    now = 1_000_000_000.0
    day = 86400.0
    ages = {f"denoiser-{i}.onnx": (i + 1) * 20 * day for i in range(7)}  # 20 ... 140 days
    ages |= {"x.partial": 2 * 3600.0, "y.partial": 60.0, "notes.txt": 400 * day}
    for name, age in ages.items():
        (tmp_path / name).write_bytes(b"0")
        os.utime(tmp_path / name, (now - age, now - age))
    keep = tmp_path / "denoiser-6.onnx"  # the oldest, but the one just exported
    removed = onnx_runtime.prune_cache(tmp_path, keep=keep, now=now)
    assert sorted(p.name for p in removed) == ["denoiser-4.onnx", "denoiser-5.onnx", "x.partial"]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [*(f"denoiser-{i}.onnx" for i in (0, 1, 2, 3, 6)), "notes.txt", "y.partial"]
    # a graph found in the cache counts as used now
    old = _denoiser(seed=0)
    path = exported_graph(old, tmp_path)
    os.utime(path, (now, now))
    assert exported_graph(old, tmp_path) == path and path.stat().st_mtime > now


def test_the_cache_folder_follows_the_environment(tmp_path: Path) -> None:
    assert cache_folder({"DIFFBGM_ONNX_CACHE": str(tmp_path)}) == tmp_path
    assert cache_folder({"XDG_CACHE_HOME": "/x"}) == Path("/x/diffbgm/onnx")
    assert cache_folder({}) == Path.home() / ".cache" / "diffbgm" / "onnx"


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return load_checkpoint(str(TINY))


def test_generate_roll_samples_through_onnx_runtime_and_writes_the_same_notes(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[str] = []
    choose = generate_module.sampling_network

    def spy(model, config, precision):  # type: ignore[no-untyped-def]
        network = choose(model, config, precision)
        used.append(type(network).__name__)
        return network

    monkeypatch.setattr(generate_module, "sampling_network", spy)
    monkeypatch.setattr(generate_module, "sampling_precision", lambda _wanted, _device: "fp32")
    piece, base = _piece(4, (0.3, 0.8)), tiny.generation.with_overrides(steps=4)
    onnx = generate_roll(tiny, piece, base.with_overrides(onnx_runtime=True), seed=3)
    plain = generate_roll(tiny, piece, base.with_overrides(onnx_runtime=False), seed=3)
    assert used == ["OnnxDenoiser", "Denoiser"]
    assert np.array_equal(onnx.onset, plain.onset) and np.array_equal(onnx.sustain, plain.sustain)
    assert np.abs(onnx.raw - plain.raw).max() < 1e-3


def test_a_failed_export_samples_with_torch_and_says_why(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(
        _denoiser: Denoiser, _folder: Path | None = None, spinning: bool = True
    ) -> OnnxDenoiser:
        raise PermissionError("read-only cache folder")

    monkeypatch.setattr(generate_module, "onnx_denoiser", broken)
    monkeypatch.setattr(generate_module, "sampling_precision", lambda _wanted, _device: "fp32")
    with caplog.at_level(logging.WARNING):
        roll = generate_roll(tiny, _piece(2, (0.5,)), GenerationConfig(steps=2), seed=0)
    assert roll.onset.shape[0] == 32
    assert "read-only cache folder" in caplog.text and "sampling with torch" in caplog.text


def test_an_unwritable_cache_folder_falls_back_to_a_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")  # mkdir under a file fails whoever runs the test (root included)
    fallback = tmp_path / "tmp"
    monkeypatch.setattr(onnx_runtime.tempfile, "gettempdir", lambda: str(fallback))
    path = exported_graph(_denoiser(), blocked / "onnx")
    assert path.is_file() and path.parent.parent == fallback


def test_a_session_without_spinning_computes_the_same(tmp_path: Path) -> None:
    denoiser = _denoiser()
    spinning = onnx_denoiser(denoiser, tmp_path)
    quiet = onnx_denoiser(denoiser, tmp_path, spinning=False)
    assert spinning.graph == quiet.graph  # one exported graph, two session options
    x_t, t, *_ = example_inputs(denoiser.config, batch=2, seed=4)
    cond = two_segment_conditions(denoiser.config, 2, seed=4)
    with torch.no_grad():
        assert torch.equal(spinning(x_t, t, cond), quiet(x_t, t, cond))
    options = onnx_runtime._session(quiet.graph, 2, False).get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    default = onnx_runtime._session(spinning.graph, 2, True).get_session_options()
    with pytest.raises(RuntimeError, match="allow_spinning"):  # unset: ONNX Runtime spins
        default.get_session_config_entry("session.intra_op.allow_spinning")


def test_a_broken_graph_file_runs_the_call_on_torch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    denoiser = _denoiser()
    network = onnx_denoiser(denoiser, tmp_path)
    Path(network.graph).write_bytes(b"not a graph")  # e.g. a disk that filled while writing
    x_t, t, *_ = example_inputs(denoiser.config, batch=1)
    cond = two_segment_conditions(denoiser.config, 1)
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        out = network(x_t, t, cond)
        expected = denoiser(x_t, t, cond)
    assert torch.equal(out, expected) and "ONNX Runtime failed" in caplog.text
    assert network.failed and not Path(network.graph).exists()  # re-exported by the next run
