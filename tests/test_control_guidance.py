"""Control guidance: the push away from a typical segment, where it applies, and its knobs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from diffbgm.checkpoint import LoadedModel, load_checkpoint
from diffbgm.controls import DYNAMIC_CONTROLS
from diffbgm.errors import GenerationError
from diffbgm.generation import GenerationConfig, generate_roll
from diffbgm.generation.generate import sampling_network
from diffbgm.model.autoguidance import Autoguided
from diffbgm.model.conditions import Conditions
from diffbgm.model.control_guidance import TYPICAL_QUANTILE, ControlGuided
from diffbgm.model.onnx_runtime import OnnxDenoiser, condition_names, example_inputs
from tests.test_generation import TINY, _piece

REGISTER = DYNAMIC_CONTROLS.index("register")


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return load_checkpoint(TINY)


def _inputs(tiny: LoadedModel, t: list[int]) -> tuple[torch.Tensor, torch.Tensor, Conditions]:
    x_t, _, *cond_values, _drop = example_inputs(tiny.config, len(t))
    cond = Conditions(**dict(zip(condition_names(tiny.config), cond_values, strict=True)))
    high = cond.dynamic.clone()
    high[..., REGISTER] = 0.9  # a register far from the typical one
    return x_t, torch.tensor(t), cond.with_(dynamic=high)


def test_the_push_is_away_from_the_typical_register_and_only_below_its_timestep(
    tiny: LoadedModel,
) -> None:
    x_t, t, cond = _inputs(tiny, [100, 900])
    guided = ControlGuided(tiny.model, weight=2.0, below_t=500, columns=[REGISTER])
    typical = cond.dynamic.clone()
    typical[..., REGISTER] = TYPICAL_QUANTILE
    with torch.no_grad():
        out = guided(x_t, t, cond)
        asked = tiny.model(x_t, t, cond).float()
        plain = tiny.model(x_t, t, cond.with_(dynamic=typical)).float()
    assert torch.allclose(out[0], asked[0] + (asked[0] - plain[0]), atol=1e-4)
    assert torch.allclose(out[1], asked[1], atol=1e-5)  # t = 900 >= 500: the network alone
    assert not torch.allclose(out[0], asked[0], atol=1e-4)
    assert guided.config is tiny.config
    # only the guided column is set to the median; the other controls keep what was asked
    neutral = guided.typical(cond).dynamic
    others = [i for i in range(len(DYNAMIC_CONTROLS)) if i != REGISTER]
    assert torch.equal(neutral[..., others], cond.dynamic[..., others])
    assert bool((neutral[..., REGISTER] == TYPICAL_QUANTILE).all())


def test_a_typical_request_or_weight_one_is_not_pushed(tiny: LoadedModel) -> None:
    x_t, t, cond = _inputs(tiny, [100, 200])
    with torch.no_grad():
        asked = tiny.model(x_t, t, cond).float()
        assert torch.equal(ControlGuided(tiny.model, 1.0, 1000, [REGISTER])(x_t, t, cond), asked)
        typical = ControlGuided(tiny.model, 3.0, 1000, [REGISTER]).typical(cond)
        pushed = ControlGuided(tiny.model, 3.0, 1000, [REGISTER])(x_t, t, typical)
        assert torch.allclose(pushed, tiny.model(x_t, t, typical).float(), atol=1e-5)


def test_settings_name_dynamic_controls_and_refuse_deep_reuse() -> None:
    assert GenerationConfig().guided_controls == ["register"]
    both = GenerationConfig(control_guidance_controls="density, register")
    assert both.guided_controls == ["density", "register"]
    with pytest.raises(GenerationError, match="must name dynamic controls"):
        GenerationConfig(control_guidance_controls="tempo")
    with pytest.raises(GenerationError, match="must name dynamic controls"):
        GenerationConfig(control_guidance_controls=" , ")
    with pytest.raises(GenerationError, match="deep_reuse"):
        GenerationConfig(control_guidance=2.0, deep_reuse=1)
    with pytest.raises(GenerationError, match="between 1 and 10"):
        GenerationConfig(control_guidance=0.5)


def test_the_sampling_network_wraps_autoguidance_and_maps_the_share(tiny: LoadedModel) -> None:
    config = GenerationConfig(
        control_guidance=2.0,
        control_guidance_share=0.3,
        control_guidance_controls="register,density",
    )
    network = sampling_network(tiny, replace(config, onnx_runtime=False), "fp32")
    assert isinstance(network, ControlGuided)
    assert network.below_t == 300 and network.columns == [REGISTER, 0]
    assert network.network is tiny.model
    shipped = load_checkpoint(TINY.parent / "diffbgm-small")
    with_weak = sampling_network(
        shipped, replace(config, autoguidance=2.5, onnx_runtime=False), "fp32"
    )
    assert isinstance(with_weak, ControlGuided) and isinstance(with_weak.network, Autoguided)


def test_generation_guides_the_controls_only_when_asked(tiny: LoadedModel) -> None:
    piece = _piece(4, (0.5, 0.5))
    piece = replace(piece, dynamic=np.array([[0.5, 0.5, 0.1, 0.5], [0.5, 0.5, 0.9, 0.5]], "f4"))
    plain = GenerationConfig(steps=4, guidance=1.0, onnx_runtime=False)

    def notes(config: GenerationConfig) -> np.ndarray:
        return generate_roll(tiny, piece, config, seed=5).raw  # (2, T, P) before decoding

    reference = notes(plain)
    # share 0: below t = 0, before the quietest timestep: never pushed
    never = replace(plain, control_guidance=3.0, control_guidance_share=0.0)
    assert np.array_equal(notes(never), reference)
    everywhere = replace(plain, control_guidance=3.0, control_guidance_share=1.0)
    assert not np.allclose(notes(everywhere), reference, atol=1e-3)
    fewer = replace(tiny, config=replace(tiny.config, dynamic_dim=3))
    with pytest.raises(GenerationError, match="needs the 4 dynamic controls"):
        generate_roll(fewer, piece, replace(plain, control_guidance=2.0), seed=0)


def test_the_app_form_asks_for_control_guidance_within_the_knobs_limits() -> None:
    from webapp.handlers import compose_options

    form = ("", 0, "auto", 0, 0, None, None, 1, "duck", None, "solo-piano", None)
    assert compose_options(*form, 2.0).generation == {"control_guidance": 2.0}
    assert "control_guidance" not in compose_options(*form, None).generation  # model default
    with pytest.raises(GenerationError, match="control_guidance"):
        compose_options(*form, 0.5)


def test_both_passes_run_as_one_batch_through_onnx_runtime_too(tiny: LoadedModel) -> None:
    """Where sampling is float32 on a CPU the network is an ONNX Runtime session: the doubled
    batch must go through it and give the torch module's push."""
    config = GenerationConfig(control_guidance=2.0, onnx_runtime=True)
    onnx = sampling_network(tiny, config, "fp32")
    assert isinstance(onnx, ControlGuided) and isinstance(onnx.network, OnnxDenoiser)
    torch_network = sampling_network(tiny, replace(config, onnx_runtime=False), "fp32")
    x_t, t, cond = _inputs(tiny, [100, 400])
    with torch.no_grad():
        assert torch.allclose(onnx(x_t, t, cond), torch_network(x_t, t, cond), atol=1e-3)
    assert not onnx.network.failed


def test_the_spread_guidance_benchmark_pushes_up_above_the_centre_and_down_below(
    tiny: LoadedModel,
) -> None:
    from diffbgm.music.calibration import Calibration
    from tests.scripts import load_script

    bench = load_script("benchmarks/spread_guidance.py")
    x_t, t, cond = _inputs(tiny, [100, 900])
    table = Calibration.load().table("register")
    guided = bench.SpreadGuided(tiny.model, 1.0, 500, REGISTER, table, shift=0.1)
    upper = guided.upper_mask(cond, x_t.shape[-1])  # (B, 1, T, P)
    assert upper.shape == (2, 1, x_t.shape[2], x_t.shape[3])
    centre = float(np.interp(0.9, np.linspace(0, 1, len(table)), table)) - tiny.config.pitch_low
    assert (
        float(upper[0, 0, 0, int(centre) + 8]) > 0.9 > 0.1 > float(upper[0, 0, 0, int(centre) - 8])
    )
    with torch.no_grad():
        out = guided(x_t, t, cond)
        asked = tiny.model(x_t, t, cond).float()
        up = tiny.model(x_t, t, guided.shifted(cond, 0.1)).float()
        down = tiny.model(x_t, t, guided.shifted(cond, -0.1)).float()
    expected = upper * up + (1 - upper) * down  # weight 1: each side takes its pass
    assert torch.allclose(out[0], expected[0], atol=1e-4)
    assert torch.allclose(out[1], asked[1], atol=1e-5)  # t = 900 >= 500: the network alone
    assert float(guided.shifted(cond, 0.5).dynamic[..., REGISTER].max()) == 1.0  # clamped
    off = bench.SpreadGuided(tiny.model, 0.0, 1000, REGISTER, table)
    with torch.no_grad():
        assert torch.equal(off(x_t, t, cond), asked)
