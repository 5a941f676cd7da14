"""Autoguidance: a checkpoint's weak model, the push away from it, and the knobs that ask for it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from diffbgm.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from diffbgm.errors import CheckpointError, GenerationError
from diffbgm.generation import GenerationConfig, generate_roll
from diffbgm.generation.generate import sampling_network
from diffbgm.model.autoguidance import Autoguided, check_weak_model
from diffbgm.model.conditions import Conditions, PieceConditions
from diffbgm.model.onnx_runtime import OnnxDenoiser, condition_names, example_inputs
from diffbgm.model.unet import Denoiser
from tests.test_generation import TINY, _piece


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return load_checkpoint(TINY)


def _weak_copy(tiny: LoadedModel, seed: int = 7) -> Denoiser:
    """The tiny preset with other (random) weights: weak enough to move the music."""
    torch.manual_seed(seed)
    return Denoiser(tiny.config).eval()


def _inputs(tiny: LoadedModel, t: list[int]) -> tuple[torch.Tensor, torch.Tensor, Conditions]:
    """Noisy windows and conditions of a two-segment piece, one per timestep in t."""
    x_t, _, *cond_values, _drop = example_inputs(tiny.config, len(t))
    cond = Conditions(**dict(zip(condition_names(tiny.config), cond_values, strict=True)))
    return x_t, torch.tensor(t), cond


def test_the_push_is_w_minus_one_times_the_difference_and_only_from_its_timestep(
    tiny: LoadedModel,
) -> None:
    weak = _weak_copy(tiny)
    x_t, t, cond = _inputs(tiny, [900, 100])
    guided = Autoguided(tiny.model, weak, weight=2.5, from_t=500)
    with torch.no_grad():
        out = guided(x_t, t, cond)
        good = tiny.model(x_t, t, cond).float()
        bad = weak(x_t, t, cond).float()
    expected_noisy = good[0] + 1.5 * (good[0] - bad[0])
    assert torch.allclose(out[0], expected_noisy, atol=1e-5)
    assert torch.equal(out[1], good[1])  # t = 100 < 500: the model alone
    assert not torch.allclose(out[0], good[0])
    assert guided.config is tiny.config


def test_weight_one_or_quiet_steps_never_call_the_weak_model(tiny: LoadedModel) -> None:
    calls: list[int] = []

    class Counting(torch.nn.Module):
        def forward(self, *args: object) -> torch.Tensor:
            calls.append(1)
            raise AssertionError("the weak model was called")

    x_t, t, cond = _inputs(tiny, [999, 999])
    with torch.no_grad():
        plain = tiny.model(x_t, t, cond).float()
        assert torch.equal(Autoguided(tiny.model, Counting(), 1.0, 0)(x_t, t, cond), plain)
        x_t, t, cond = _inputs(tiny, [499, 0])
        assert Autoguided(tiny.model, Counting(), 3.0, 500)(x_t, t, cond).shape == plain.shape
    assert calls == []


def test_a_weak_model_must_share_the_schedule_and_the_window(tiny: LoadedModel) -> None:
    check_weak_model(tiny.config, replace(tiny.config, base_channels=8, d_cond=16))
    eps = replace(tiny.config, diffusion=replace(tiny.config.diffusion, prediction="eps"))
    with pytest.raises(ValueError, match="cannot be mixed"):
        check_weak_model(tiny.config, eps)
    with pytest.raises(ValueError, match="window"):
        check_weak_model(tiny.config, replace(tiny.config, window_steps=64))


def _checkpoint_with_weak(tmp_path: Path, tiny: LoadedModel, weak_config=None) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, tiny.model, tiny.config, dict(tiny.extra))
    config = weak_config or replace(tiny.config, base_channels=8, d_cond=16)
    torch.manual_seed(3)
    save_checkpoint(folder / "weak", Denoiser(config).eval(), config, {"role": "weak"})
    return folder


def test_a_checkpoint_loads_its_weak_folder_and_refuses_a_mismatched_one(
    tmp_path: Path, tiny: LoadedModel
) -> None:
    assert tiny.weak is None
    loaded = load_checkpoint(_checkpoint_with_weak(tmp_path / "a", tiny))
    assert loaded.weak is not None and loaded.weak.extra == {"role": "weak"}
    assert loaded.weak.config.base_channels == 8 and loaded.weak.weak is None
    bad = replace(tiny.config, window_steps=64)
    with pytest.raises(CheckpointError, match="weak.*window"):
        load_checkpoint(_checkpoint_with_weak(tmp_path / "b", tiny, bad))


def _notes(model: LoadedModel, piece: PieceConditions, config: GenerationConfig) -> np.ndarray:
    roll = generate_roll(model, piece, config, seed=5)
    return np.stack([roll.onset, roll.sustain])


def test_generation_autoguides_only_when_asked_and_only_with_a_weak_model(
    tmp_path: Path, tiny: LoadedModel
) -> None:
    piece = _piece(4, (0.5, 0.5))
    plain = GenerationConfig(steps=4, guidance=1.0, onnx_runtime=False)
    with pytest.raises(GenerationError, match="needs a weak model"):
        generate_roll(tiny, piece, replace(plain, autoguidance=2.0), seed=0)
    loaded = load_checkpoint(_checkpoint_with_weak(tmp_path, tiny))
    reference = _notes(tiny, piece, plain)
    assert np.array_equal(_notes(loaded, piece, plain), reference)  # weight 1: as without
    # share 0: from t = 1000, past the noisiest timestep: never pushed
    none = replace(plain, autoguidance=3.0, autoguidance_share=0.0)
    assert np.array_equal(_notes(loaded, piece, none), reference)
    pushed = _notes(loaded, piece, replace(plain, autoguidance=3.0))
    assert not np.array_equal(pushed, reference)


def test_the_weak_model_runs_where_the_model_runs(tmp_path: Path, tiny: LoadedModel) -> None:
    loaded = load_checkpoint(_checkpoint_with_weak(tmp_path, tiny))
    onnx = GenerationConfig(autoguidance=2.0, autoguidance_share=0.5, onnx_runtime=True)
    network = sampling_network(loaded, onnx, "fp32")
    assert isinstance(network, Autoguided) and network.from_t == 500
    assert isinstance(network.network, OnnxDenoiser) and isinstance(network.weak, OnnxDenoiser)
    # two sessions called in turn: neither pool may spin and take the cores from the other
    assert not network.network.spinning and not network.weak.spinning
    torch_network = sampling_network(loaded, replace(onnx, onnx_runtime=False), "fp32")
    assert isinstance(torch_network, Autoguided) and torch_network.weak is loaded.weak.model  # type: ignore[union-attr]
    unguided = sampling_network(loaded, replace(onnx, autoguidance=1.0), "fp32")
    assert isinstance(unguided, OnnxDenoiser) and unguided.spinning


def test_the_shipped_model_carries_its_weak_model() -> None:
    shipped = load_checkpoint(TINY.parent / "diffbgm-small")
    assert shipped.weak is not None
    weak = shipped.weak.config
    assert (weak.base_channels, weak.d_cond) == (16, 64)
    assert weak.diffusion == shipped.config.diffusion
    assert "autoguidance" in shipped.weak.extra["role"]
