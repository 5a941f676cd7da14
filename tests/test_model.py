"""The denoiser: shapes, segment-aware cross-attention, the feature selector, the null."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from diffbgm.model.attention import (
    ConditionTokens,
    CrossAttentionBlock,
    attend,
    cross_attention_mask,
    frame_segments,
    gate_bias,
    n_tokens,
    sac_visibility,
    selector_visibility,
)
from diffbgm.model.conditions import Conditions, two_segment_conditions
from diffbgm.model.config import ModelConfig, preset
from diffbgm.model.unet import DeepFeatures, Denoiser, count_parameters


def perturb_slot(cond: Conditions, slot: int, seed: int = 1) -> Conditions:
    gen = torch.Generator().manual_seed(seed)
    dynamic, semantic = cond.dynamic.clone(), cond.semantic.clone()
    dynamic[:, slot] = torch.rand(dynamic[:, slot].shape, generator=gen) * 5
    semantic[:, slot] = torch.rand(semantic[:, slot].shape, generator=gen) * 5
    return cond.with_(dynamic=dynamic, semantic=semantic)


def test_presets_sizes_and_output_shape() -> None:
    sizes = {name: count_parameters(Denoiser(preset(name))) for name in ("tiny", "small")}
    assert 50_000 <= sizes["tiny"] <= 150_000
    assert 3_000_000 <= sizes["small"] <= 7_000_000
    config = preset("tiny")
    model = Denoiser(config)
    cond = two_segment_conditions(config)
    x = torch.randn(2, 2, config.window_steps, config.n_pitches)
    out = model(x, torch.tensor([3, 900]), cond)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_config_json_round_trip_and_validation() -> None:
    config = preset("small", selector="learned", sac=False)
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({**config.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="multiple of"):
        preset("small", window_steps=66)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_attention_written_out_for_export_equals_the_fused_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 12, 8, generator=g) for _ in range(3))
    bias = torch.where(torch.rand(2, 1, 12, 12, generator=g) > 0.3, 0.0, float("-inf"))
    bias[..., 0] = 0.0  # every query sees at least one key
    fused = attend(q, k, v, bias)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    written = attend(q, k, v, bias)
    assert torch.allclose(written, fused, atol=1e-5)
    assert torch.allclose(attend(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-5)


def test_frame_segments_takes_the_majority() -> None:
    ids = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 2]])
    assert frame_segments(ids, 1, 4).tolist() == ids.tolist()
    assert frame_segments(ids, 2, 4).tolist() == [[0, 0, 1, 1]]  # ties -> the earlier segment
    assert frame_segments(ids, 4, 4).tolist() == [[0, 1]]


def test_sac_visibility_own_segment_plus_globals() -> None:
    slots = 3
    frames = torch.tensor([[0, 1, 1]])
    real = torch.tensor([[True, True, False]])
    vis = sac_visibility(frames, real, sac=True)[0]  # (F, K)
    assert vis.shape == (3, n_tokens(slots))
    # frame 0 sees dynamic 0, semantic 0 (index 3) and the two global tokens
    assert vis[0].nonzero().flatten().tolist() == [0, 3, 6, 7]
    assert vis[1].nonzero().flatten().tolist() == [1, 4, 6, 7]
    ablation = sac_visibility(frames, real, sac=False)[0]
    assert ablation[0].nonzero().flatten().tolist() == [0, 1, 3, 4, 6, 7]


@pytest.mark.parametrize("mode", ["rule", "learned", "none"])
def test_selector_shows_semantic_early_dynamic_late(mode: str) -> None:
    slots, threshold = 2, 200.0
    t = torch.tensor([0, 199, 200, 999])
    vis = selector_visibility(t, mode, threshold, slots)  # (4, K)
    dynamic, semantic, globals_ = vis[:, :slots], vis[:, slots : 2 * slots], vis[:, 2 * slots :]
    assert globals_.all()
    if mode == "rule":
        assert dynamic.all(dim=1).tolist() == [True, True, False, False]
        assert semantic.all(dim=1).tolist() == [False, False, True, True]
        assert not (dynamic & semantic).any()
    else:
        assert vis.all()


def test_gate_bias_weights_semantic_by_g() -> None:
    bias = gate_bias(torch.tensor([0.0, 20.0, -20.0]), max_segments=1)  # (3, K=4)
    half = torch.log(torch.tensor(0.5))
    assert torch.allclose(bias[0, :2], half.expand(2))
    assert bias[1, 1] > -1e-6 and bias[1, 0] < -19  # g -> 1: semantic kept, dynamic hidden
    assert bias[2, 0] > -1e-6 and bias[2, 1] < -19
    assert (bias[:, 2:] == 0).all()


def test_sac_block_isolates_segments() -> None:
    torch.manual_seed(0)
    config = preset("tiny")
    tokens_net = ConditionTokens(config)
    block = CrossAttentionBlock(24, config.d_cond, config.n_heads)
    cond = two_segment_conditions(config)
    other = perturb_slot(cond, slot=1)
    no_drop = torch.zeros(2, dtype=torch.bool)
    x = torch.randn(2, 24, config.window_steps, 10)
    t = torch.tensor([10, 10])

    half = config.window_steps // 2
    for sac in (True, False):
        cfg = replace(config, sac=sac, selector="none")
        mask = cross_attention_mask(cond, t, 1, cfg)
        out_a = block(x, tokens_net(cond, no_drop), mask)
        out_b = block(x, tokens_net(other, no_drop), mask)
        seg_a_change = (out_a[:, :, :half] - out_b[:, :, :half]).abs().max()
        seg_b_change = (out_a[:, :, half:] - out_b[:, :, half:]).abs().max()
        assert seg_b_change > 1e-3
        if sac:
            assert seg_a_change == 0.0
        else:
            assert seg_a_change > 1e-3


def influence_by_segment(model: Denoiser, cond: Conditions) -> tuple[float, float]:
    """Mean |output change| over segment A's and over segment B's steps when segment B's
    tokens change."""
    config = model.config
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, config.window_steps, config.n_pitches, generator=gen)
    t = torch.tensor([500, 500])
    with torch.no_grad():
        delta = (model(x, t, cond) - model(x, t, perturb_slot(cond, 1))).abs()
    half = config.window_steps // 2
    return float(delta[:, :, :half].mean()), float(delta[:, :, half:].mean())


def test_whole_model_sac_limits_influence_across_segments() -> None:
    # Convolutions, GroupNorm statistics and the middle self-attention mix frames, so
    # segment B's tokens still reach segment A's output through B's activations (measured
    # in docs/model.md); SAC must still make B's tokens move B far more than A, and A less
    # than in the ablation where A's frames attend to B's tokens directly.
    torch.manual_seed(0)
    config = preset("tiny", selector="none")
    sac_model = Denoiser(config).eval()
    full_model = Denoiser(replace(config, sac=False)).eval()
    full_model.load_state_dict(sac_model.state_dict())
    cond = two_segment_conditions(config)
    sac_a, sac_b = influence_by_segment(sac_model, cond)
    full_a, _ = influence_by_segment(full_model, cond)
    assert sac_a < 0.6 * sac_b
    assert sac_a < full_a


def test_rule_selector_hides_the_other_feature_kind_in_the_whole_model() -> None:
    torch.manual_seed(0)
    config = preset("tiny")  # rule, threshold 0.2 -> t >= 200 is the semantic phase
    model = Denoiser(config).eval()
    cond = two_segment_conditions(config)
    new_dynamic = cond.with_(dynamic=torch.rand_like(cond.dynamic) * 5)
    new_semantic = cond.with_(semantic=torch.rand_like(cond.semantic) * 5)
    x = torch.randn(2, 2, config.window_steps, config.n_pitches)
    early, late = torch.tensor([900, 200]), torch.tensor([199, 0])
    with torch.no_grad():
        assert torch.equal(model(x, early, cond), model(x, early, new_dynamic))
        assert not torch.allclose(model(x, early, cond), model(x, early, new_semantic))
        assert torch.equal(model(x, late, cond), model(x, late, new_semantic))
        assert not torch.allclose(model(x, late, cond), model(x, late, new_dynamic))


def test_learned_selector_sees_both_kinds_through_a_gate() -> None:
    torch.manual_seed(0)
    model = Denoiser(preset("tiny", selector="learned")).eval()
    assert model.gate is not None
    cond = two_segment_conditions(model.config)
    x = torch.randn(2, 2, model.config.window_steps, model.config.n_pitches)
    t = torch.tensor([900, 50])
    with torch.no_grad():
        base = model(x, t, cond)
        for changed in (
            cond.with_(dynamic=cond.dynamic * 5 + 1),
            cond.with_(semantic=cond.semantic * 5 + 1),
        ):
            assert not torch.allclose(base, model(x, t, changed))
        share = model.semantic_share(t)
    assert share is not None and share.shape == (2,)
    assert bool(((share > 0) & (share < 1)).all())
    assert Denoiser(preset("tiny")).semantic_share(t) is None  # the rule has no gate
    # the ablation switches the config to 'none': the trained gate must stop acting
    model.config = replace(model.config, selector="none")
    with torch.no_grad():
        assert not torch.allclose(base, model(x, t, cond))


def test_dropped_items_ignore_every_condition() -> None:
    torch.manual_seed(0)
    config = preset("tiny")
    model = Denoiser(config).eval()
    cond = two_segment_conditions(config, seed=0)
    other = two_segment_conditions(config, seed=5)
    other = other.with_(segment_ids=torch.zeros_like(other.segment_ids))  # one segment only
    x = torch.randn(2, 2, config.window_steps, config.n_pitches)
    t = torch.tensor([700, 30])
    drop = torch.ones(2, dtype=torch.bool)
    with torch.no_grad():
        assert torch.allclose(model(x, t, cond, drop), model(x, t, other, drop), atol=1e-6)
        assert not torch.allclose(model(x, t, cond), model(x, t, other), atol=1e-4)


def test_forward_runs_under_bf16_autocast() -> None:
    config = preset("tiny")
    model = Denoiser(config)
    cond = two_segment_conditions(config)
    x = torch.randn(2, 2, config.window_steps, config.n_pitches)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, torch.tensor([1, 999]), cond, torch.tensor([False, True]))
    assert out.shape == x.shape and torch.isfinite(out.float()).all()


def test_deep_features_are_kept_by_a_full_call_and_reused_by_the_next() -> None:
    torch.manual_seed(0)
    config = preset("tiny")
    model = Denoiser(config).eval()
    cond = two_segment_conditions(config)
    x = torch.randn(2, 2, config.window_steps, config.n_pitches)
    t = torch.tensor([300, 300])
    with torch.no_grad():
        plain = model(x, t, cond)
        deep = DeepFeatures()
        kept = model(x, t, cond, deep=deep)  # computes everything, keeps the deep part
        assert torch.equal(kept, plain) and deep.value is not None
        assert deep.value.shape[:2] == (2, config.base_channels * config.channel_mults[1])
        deep.reuse = True
        assert torch.equal(model(x, t, cond, deep=deep), plain)  # same input: same output
        # another input: only the outermost level sees it
        y = x + 0.5 * torch.randn_like(x)
        reused, full = model(y, t, cond, deep=deep), model(y, t, cond)
        assert not torch.equal(reused, full)
        deep.value = torch.zeros_like(deep.value)  # the kept part is really what is used
        assert not torch.equal(model(y, t, cond, deep=deep), reused)
        # a batch of another size cannot reuse the kept part: the whole network runs
        one = model(y[:1], t[:1], cond.index(slice(0, 1)), deep=deep)
        assert torch.equal(one, model(y[:1], t[:1], cond.index(slice(0, 1))))


def test_pitch_embedding_starts_as_the_model_without_it_and_then_tells_pitches_apart() -> None:
    """A warm start adds the embedding at zero (the same predictions as before); once it is
    non-zero the output depends on absolute pitch. Without it a pattern shifted along the
    keyboard gives nearly the shifted output (only the zero padding at the ends tells pitches
    apart, through the normalisation statistics: 0.3 % of the output here)."""
    torch.manual_seed(0)
    config = preset("tiny")
    plain = Denoiser(config).eval()
    with_rows = Denoiser(replace(config, pitch_embedding=True)).eval()
    missing, unexpected = with_rows.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["pitch_embedding"] and not unexpected
    cond = two_segment_conditions(config)
    cond = cond.with_(chord=torch.zeros_like(cond.chord))  # no pitch classes marked
    x = torch.zeros(2, 2, config.window_steps, config.n_pitches)
    x[:, :, :, 30:34] = 1.0
    shifted = torch.roll(x, 12, dims=-1)
    t = torch.tensor([500, 500])

    def shift_error(model: Denoiser) -> float:
        """Mean |out(shifted) - shifted out| away from the ends, relative to mean |out|."""
        a, b = model(x, t, cond), model(shifted, t, cond)
        middle = slice(20, 60)
        gap = (torch.roll(a, 12, dims=-1) - b)[..., middle].abs().mean()
        return float(gap / a.abs().mean())

    with torch.no_grad():
        assert torch.equal(with_rows(x, t, cond), plain(x, t, cond))
        assert shift_error(plain) < 0.01
        assert with_rows.pitch_embedding is not None
        with_rows.pitch_embedding.normal_(0.0, 1.0)
        assert shift_error(with_rows) > 0.2


def test_recall_input_starts_as_the_model_without_it_and_then_hears_the_recalled_music() -> None:
    """Added at zero, the recall input predicts exactly as the model without it, with or
    without recalled music; trained (non-zero), the output follows the recalled music, and
    the unconditional pass (drop) does not hear it, as it hears no other condition."""
    torch.manual_seed(0)
    config = preset("tiny")
    plain = Denoiser(config).eval()
    hearing = Denoiser(replace(config, recall_input=True)).eval()
    missing, unexpected = hearing.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["recall_input.bias", "recall_input.weight"] and not unexpected
    cond = two_segment_conditions(config)
    recalled = (torch.rand(2, 3, config.window_steps, config.n_pitches) < 0.2).float()
    heard = cond.with_(recalled=recalled)
    x = torch.randn(2, 2, config.window_steps, config.n_pitches)
    t = torch.tensor([700, 300])
    drop = torch.tensor([True, False])
    with torch.no_grad():
        assert torch.equal(hearing(x, t, heard), plain(x, t, cond))
        assert torch.equal(hearing(x, t, cond), plain(x, t, cond))
        assert hearing.recall_input is not None
        hearing.recall_input.weight.normal_(0.0, 0.5)
        other = heard.with_(recalled=torch.roll(recalled, 5, dims=-1))
        assert not torch.allclose(hearing(x, t, heard), hearing(x, t, other))
        # silence recalled and nothing recalled are the same input
        silent = heard.with_(recalled=torch.zeros_like(recalled))
        assert torch.equal(hearing(x, t, silent), hearing(x, t, cond))
        unconditional = hearing(x, t, heard, drop)[0]
        assert torch.equal(unconditional, hearing(x, t, other, drop)[0])


def test_conditions_with_and_without_recalled_music_batch_together() -> None:
    """The guided sampler batches a window with another that recalls nothing: the missing
    recalled music is zeros, and indexing or moving keeps it where it is."""
    config = preset("tiny")
    cond = two_segment_conditions(config)
    recalled = torch.ones(2, 3, config.window_steps, config.n_pitches)
    both = cond.with_(recalled=recalled).cat(cond)
    assert both.recalled is not None and both.batch_size == 4
    assert both.recalled[:2].eq(1).all() and both.recalled[2:].eq(0).all()
    assert cond.cat(cond).recalled is None and cond.index(slice(0, 1)).recalled is None
    first = both.index(slice(0, 1)).to("cpu")
    assert first.recalled is not None and first.recalled.shape[0] == 1
