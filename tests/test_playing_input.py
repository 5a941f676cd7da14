"""The way of playing (even or wide dynamics) as an input of the note network: the global
features carry it after the key, a model reads as many of them as its config says, and a
model from before the input warm-starts with it at zero."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from diffbgm.controls import N_GLOBAL_FEATURES, N_KEY_FEATURES, global_features, key_features
from diffbgm.model.conditions import model_global, two_segment_conditions
from diffbgm.model.config import preset
from diffbgm.model.unet import Denoiser
from trainer.train import with_zero_global_columns


def test_global_features_are_the_key_then_the_way_of_playing() -> None:
    even = global_features(3, minor=True)
    assert len(even) == N_GLOBAL_FEATURES == N_KEY_FEATURES + 1
    assert even[:N_KEY_FEATURES] == key_features(3, minor=True) and even[-1] == 0.0
    assert global_features(3, minor=True, playing="wide")[-1] == 1.0
    with pytest.raises(ValueError, match="playing must be one of even, wide"):
        global_features(3, minor=True, playing="loud")


def test_a_model_reads_as_many_global_features_as_its_config_says() -> None:
    both = torch.tensor([[*global_features(0, False, "wide")]])
    assert model_global(both, N_KEY_FEATURES).shape == (1, N_KEY_FEATURES)
    assert torch.equal(model_global(both, N_GLOBAL_FEATURES), both)
    with pytest.raises(ValueError, match="reads 15 global features, the conditions have 14"):
        model_global(both[:, :N_KEY_FEATURES], N_GLOBAL_FEATURES)


def with_playing(cond, playing: str):  # type: ignore[no-untyped-def]
    """The conditions with the key of C major and the given way of playing."""
    row = torch.tensor(global_features(0, False, playing))
    return cond.with_(global_=row.expand(cond.batch_size, -1).clone())


def outputs(model: Denoiser, playing: str) -> torch.Tensor:
    config = model.config
    cond = with_playing(two_segment_conditions(config, batch=2, seed=1), playing)
    noise = torch.randn(
        2, 2, config.window_steps, config.n_pitches, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        return model(noise, torch.full((2,), 400), cond)


def test_a_model_before_the_input_ignores_it_and_widens_to_the_same_predictions() -> None:
    torch.manual_seed(0)
    old = Denoiser(preset("tiny")).eval()
    assert torch.equal(outputs(old, "even"), outputs(old, "wide"))
    widened = Denoiser(replace(preset("tiny"), global_dim=N_GLOBAL_FEATURES)).eval()
    widened.load_state_dict(with_zero_global_columns(old.state_dict(), N_GLOBAL_FEATURES))
    for playing in ("even", "wide"):
        assert torch.allclose(outputs(widened, playing), outputs(old, playing), atol=1e-6)
    # once its new weights move, the widened model writes for the way of playing
    with torch.no_grad():
        widened.tokens.global_proj.weight[:, -1] = 0.5
    assert not torch.allclose(outputs(widened, "even"), outputs(widened, "wide"))
