"""Long pieces: window layout, overlap in-painting, segment regeneration, roll decoding."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from diffbgm.errors import GenerationError
from diffbgm.generation.config import GenerationConfig
from diffbgm.generation.decoding import decode_roll, density_matched_thresholds
from diffbgm.generation.windows import (
    sample_piece,
    two_pass_rounds,
    window_spans,
    window_starts,
)
from diffbgm.model.conditions import PieceConditions
from diffbgm.model.config import ModelConfig, preset
from diffbgm.model.diffusion import Diffusion, SamplerSettings
from diffbgm.model.unet import Denoiser


def make_piece(n_steps: int, n_segments: int, seed: int = 0) -> PieceConditions:
    rng = np.random.default_rng(seed)
    bounds = np.linspace(0, n_steps, n_segments + 1).astype(int)
    ids = np.zeros(n_steps, dtype=np.int64)
    for i, start in enumerate(bounds[:-1]):
        ids[start:] = i
    chords = np.zeros((n_steps, 12), dtype=np.float32)
    for start in range(0, n_steps, 8):
        root = int(rng.integers(12))
        chords[start : start + 8, [root, (root + 4) % 12, (root + 7) % 12]] = 1
    return PieceConditions(
        chord_pcs=chords,
        segment_ids=ids,
        dynamic=rng.random((n_segments, 4)).astype(np.float32),
        semantic=rng.random((n_segments, 6)).astype(np.float32),
        global_=np.eye(14, dtype=np.float32)[0],
    )


class SpyDiffusion(Diffusion):
    """Records what every window was given and what it returned."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config.diffusion)
        self.calls: list[dict[str, Any]] = []

    def sample(self, model, cond, generator, **kwargs):  # type: ignore[no-untyped-def, override]
        out = super().sample(model, cond, generator, **kwargs)
        self.calls.append({"known": kwargs["known"], "mask": kwargs["known_mask"], "out": out})
        return out


@pytest.fixture(scope="module")
def setup() -> tuple[Denoiser, ModelConfig]:
    torch.manual_seed(0)
    config = preset("tiny", n_pitches=16, pitch_low=60)
    return Denoiser(config).eval(), config


def test_window_starts_cover_the_piece() -> None:
    assert window_starts(80, 32, 8) == [0, 24, 48]
    assert window_starts(32, 32, 8) == [0]
    assert window_starts(10, 32, 8) == [0]
    assert window_starts(100, 32, 0) == [0, 32, 64, 96]
    with pytest.raises(ValueError):
        window_starts(100, 32, 32)


def _check_spans(spans: list[tuple[int, int]], n_steps: int, overlap: int) -> None:
    assert spans[0][0] == 0 and spans[-1][0] + spans[-1][1] >= n_steps  # covered
    for (start, length), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert next_start == start + length - overlap  # each in-paints exactly one overlap


def test_window_spans_stop_before_a_phrase_that_recalls_music_of_the_same_window() -> None:
    # the 30 s example: 13 bars, steps 112-159 recall steps 0-47
    segments = np.repeat([0, 1, 2, 3], [88, 24, 48, 48])
    source = np.full(208, -1)
    source[112:160] = np.arange(48)
    spans = window_spans(208, 64, 128, 16, 4, segments, 8, source)
    assert spans == [(0, 112), (96, 112)]  # two windows instead of four; the recall's
    # source (0-47) is final before the window that holds the recall runs
    free = window_spans(208, 64, 128, 16, 4, segments, 8, None)
    assert free == [(0, 128), (112, 96)]


def test_window_spans_cover_the_piece_within_their_bounds() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n_steps = int(rng.integers(1, 1500))
        segments = np.sort(rng.integers(0, max(1, n_steps // 16), n_steps))
        source = np.full(n_steps, -1)
        at = int(rng.integers(0, n_steps))
        source[at:] = np.arange(n_steps - at) // 2  # recalls of earlier music
        spans = window_spans(n_steps, 64, 128, 16, 4, segments, 8, source)
        _check_spans(spans, n_steps, 16)
        for start, length in spans:
            assert length % 4 == 0 and 64 <= length <= 128
            end = min(start + length, n_steps)
            if length > 64:  # a longer window obeys both rules
                assert len(np.unique(segments[start:end])) <= 8
                final = start + (16 if start else 0)
                recalled = source[final:end]
                assert not ((recalled >= final) & (recalled < end)).any()
    with pytest.raises(ValueError):
        window_spans(100, 16, 16, 16, 4, np.zeros(100, dtype=int), 8)


def test_longer_windows_cover_the_piece_with_fewer_calls_unless_segments_forbid(
    setup: tuple[Denoiser, ModelConfig],
) -> None:
    model, config = setup  # tiny: 32-step windows, 8 segment slots
    # 3 segments: windows of 64 and 48 steps instead of five of 32 (hop 16); 24 segments of
    # 4 steps would put more than 8 in any longer window: the model's 32-step windows
    for n_segments, lengths in ((3, [64, 48]), (24, [32] * 5)):
        spy = SpyDiffusion(config)
        roll = sample_piece(
            model,
            spy,
            make_piece(96, n_segments),
            config,
            torch.Generator().manual_seed(0),
            SamplerSettings(steps=2),
            max_window_steps=64,
        )
        assert roll.shape == (2, 96, 16)
        assert [call["out"].shape[2] for call in spy.calls] == lengths, n_segments
        for previous, current in zip(spy.calls, spy.calls[1:], strict=False):
            assert torch.equal(current["out"][0, :, :16], previous["out"][0, :, -16:])


def test_overlaps_are_in_painted_from_the_previous_window(
    setup: tuple[Denoiser, ModelConfig],
) -> None:
    model, config = setup
    spy = SpyDiffusion(config)
    piece = make_piece(80, 3)
    progress: list[tuple[int, int]] = []
    roll = sample_piece(
        model,
        spy,
        piece,
        config,
        torch.Generator().manual_seed(0),
        SamplerSettings(steps=4),
        overlap_steps=8,
        progress=lambda i, n: progress.append((i, n)),
    )
    assert roll.shape == (2, 80, 16) and roll.dtype == np.float32
    assert np.abs(roll).max() <= 1.0
    assert len(spy.calls) == 3
    assert progress[-1] == (12, 12) and len(progress) == 12
    for previous, current in zip(spy.calls, spy.calls[1:], strict=False):
        mask = current["mask"][0]
        assert mask[:, :8].all() and not mask[:, 8:].any()
        # the kept overlap is the previous window's last 8 steps, and it comes out unchanged
        assert torch.equal(current["known"][0, :, :8], previous["out"][0, :, -8:])
        assert torch.equal(current["out"][0, :, :8], previous["out"][0, :, -8:])
    np.testing.assert_array_equal(roll[:, 48:80], spy.calls[2]["out"][0].numpy())


def test_sample_piece_is_deterministic(setup: tuple[Denoiser, ModelConfig]) -> None:
    model, config = setup
    diffusion = Diffusion(config.diffusion)
    piece = make_piece(48, 2)
    three = SamplerSettings(steps=3)
    a = sample_piece(model, diffusion, piece, config, torch.Generator().manual_seed(4), three)
    b = sample_piece(model, diffusion, piece, config, torch.Generator().manual_seed(4), three)
    np.testing.assert_array_equal(a, b)


def test_regenerating_one_segment_keeps_the_rest(setup: tuple[Denoiser, ModelConfig]) -> None:
    model, config = setup
    spy = SpyDiffusion(config)
    piece = make_piece(96, 3)
    old = sample_piece(
        model, spy, piece, config, torch.Generator().manual_seed(0), SamplerSettings(steps=3)
    )
    n_first = len(spy.calls)
    keep = piece.segment_ids != 2  # redo the last segment only (steps 64..95)
    new = sample_piece(
        model,
        spy,
        piece,
        config,
        torch.Generator().manual_seed(1),
        SamplerSettings(steps=3),
        known_roll=old,
        known_mask=keep,
    )
    np.testing.assert_array_equal(new[:, keep], old[:, keep])
    assert not np.array_equal(new[:, ~keep], old[:, ~keep])
    # windows [0, 32) and [16, 48) and [32, 64) are fully kept: only the later ones sample
    assert len(spy.calls) - n_first == 2
    with pytest.raises(ValueError, match="known_mask"):
        sample_piece(model, spy, piece, config, None, known_roll=old, known_mask=keep[:10])


def test_two_pass_rounds_put_independent_windows_together() -> None:
    starts = window_starts(200, 32, 8)  # hop 24: windows 0..7
    assert two_pass_rounds(starts, 32, 200) == [[0, 2, 4, 6], [1, 3, 5, 7]]
    # window 4 recalls the music of steps 30..40: window 1 owns 32..47 (between windows 0
    # and 2), window 0 owns 30..31; so window 4 waits for window 1, and its neighbours 3
    # and 5 wait for window 4
    source = np.full(200, -1)
    source[4 * 24 : 4 * 24 + 11] = np.arange(30, 41)
    rounds = two_pass_rounds(starts, 32, 200, source)
    assert rounds == [[0, 2, 6], [1, 7], [4], [3, 5]]
    # an even window recalling the odd window just before it does not wait (that odd window
    # waits for it): no cycle, the recalled steps stay unguided
    source = np.full(200, -1)
    source[2 * 24 + 20 : 2 * 24 + 24] = np.arange(40, 44)  # window 1's own steps
    assert two_pass_rounds(starts, 32, 200, source) == [[0, 2, 4, 6], [1, 3, 5, 7]]


def test_batched_windows_in_paint_both_neighbours_and_keep_known_music(
    setup: tuple[Denoiser, ModelConfig],
) -> None:
    model, config = setup
    spy = SpyDiffusion(config)
    piece = make_piece(128, 3)
    progress: list[tuple[int, int]] = []
    roll = sample_piece(
        model,
        spy,
        piece,
        config,
        torch.Generator().manual_seed(0),
        SamplerSettings(steps=4),
        overlap_steps=8,
        window_batch=8,
        progress=lambda i, n: progress.append((i, n)),
    )
    starts = window_starts(128, 32, 8)  # [0, 24, 48, 72, 96]
    assert len(spy.calls) == 2  # two rounds, one call each, instead of five calls
    assert [call["known"].shape[0] for call in spy.calls] == [3, 2]
    assert not spy.calls[0]["mask"].any()  # even windows: nothing to in-paint
    odd_mask = spy.calls[1]["mask"]
    assert odd_mask[:, :, :8].all() and odd_mask[:, :, -8:].all()
    assert not odd_mask[:, :, 8:-8].any()
    evens, odds = spy.calls[0]["out"].numpy(), spy.calls[1]["out"].numpy()
    for row, i in enumerate((0, 2, 4)):
        end = min(starts[i] + 32, 128)
        np.testing.assert_array_equal(roll[:, starts[i] : end], evens[row, :, : end - starts[i]])
    for row, i in enumerate((1, 3)):  # the overlaps come out as the even windows left them
        np.testing.assert_array_equal(roll[:, starts[i] : starts[i] + 32], odds[row])
    assert progress[-1] == (20, 20)
    # regenerating one segment with batched windows keeps the rest bit for bit
    keep = piece.segment_ids != 1
    new = sample_piece(
        model,
        Diffusion(config.diffusion),
        piece,
        config,
        torch.Generator().manual_seed(1),
        SamplerSettings(steps=3),
        overlap_steps=8,
        known_roll=roll,
        known_mask=keep,
        window_batch=8,
    )
    np.testing.assert_array_equal(new[:, keep], roll[:, keep])
    assert not np.array_equal(new[:, ~keep], roll[:, ~keep])


def test_decode_roll_builds_notes_from_onsets() -> None:
    x = -np.ones((2, 8, 3), dtype=np.float32)
    x[0, 1, 0] = 0.9  # note on pitch 0 from step 1 ...
    x[1, 1:4, 0] = 0.9  # ... held to step 3
    x[0, 3, 0] = 0.9  # a re-strike at step 3 starts a new note
    x[1, 5:7, 1] = 0.9  # sustain without onset: dropped
    x[0, 6, 2] = 0.9  # onset with no sustain: a one-step note
    x[0, 2, 1] = 0.3  # below a 0.5 threshold
    decoded = decode_roll(x)
    onset, sustain = decoded
    assert onset[:, 0].nonzero()[0].tolist() == [1, 3]
    assert sustain[:, 1].nonzero()[0].tolist() == [2]  # the sustain at steps 5-6 had no onset
    assert decoded.notes() == [(1, 3, 0), (2, 3, 1), (3, 4, 0), (6, 7, 2)]
    strict = decode_roll(x, onset_threshold=0.5)
    assert strict.notes() == [(1, 3, 0), (3, 4, 0), (6, 7, 2)]
    assert not strict.sustain[:, 1].any()
    with pytest.raises(ValueError):
        decode_roll(x[0])


def test_density_matched_thresholds_move_toward_the_request_within_the_band() -> None:
    rng = np.random.default_rng(0)
    onset_channel = rng.uniform(-1, 1, size=(64, 10))  # two 2-bar segments of 10 pitches
    ids = np.repeat([0, 1], 32)
    base, slack = 0.5, 0.3
    # segment 0 asks for 32 onsets per bar (64 in all); segment 1 for more than the band allows
    thresholds = density_matched_thresholds(
        onset_channel, ids, np.array([32.0, 500.0]), base, slack
    )
    first = onset_channel[:32] > thresholds[0]
    assert first.sum() == 64 and base - slack <= thresholds[0] <= base + slack
    assert np.all(thresholds[32:] == base - slack)  # clipped: the model keeps the last word
    assert np.all(thresholds[:32] == thresholds[0])
    plain = density_matched_thresholds(onset_channel, ids, np.array([32.0, 500.0]), base, 0.0)
    assert np.all(plain == base)
    decoded = decode_roll(np.stack([onset_channel, onset_channel]), thresholds)
    assert decoded.onset[:32].sum() == 64
    with pytest.raises(ValueError, match="thresholds"):
        decode_roll(np.stack([onset_channel, onset_channel]), thresholds[:10])


def test_density_matched_thresholds_keep_or_drop_a_tie_group_whole() -> None:
    """Clipped rolls tie at 1.0: asking for fewer onsets than the tie must not drop them all."""
    onset_channel = np.full((16, 4), -1.0)
    onset_channel[:, 0] = 1.0  # 16 confident onsets, tied
    onset_channel[:4, 1] = 0.55
    ids = np.zeros(16, dtype=np.int64)
    # 10 wanted: keeping the 16 tied (6 too many) beats dropping them (10 too few)
    keep = density_matched_thresholds(onset_channel, ids, np.array([10.0]), 0.5, 0.6)
    assert (onset_channel > keep[:, None]).sum() == 16
    # 3 wanted: dropping the tie leaves 0 onsets (3 too few) vs 13 too many: drop
    drop = density_matched_thresholds(onset_channel, ids, np.array([3.0]), 0.5, 0.6)
    assert (onset_channel > drop[:, None]).sum() == 0
    # 18 wanted: the 16 tied and the 4 at 0.55 (20) vs 16: keep 16... or 20 -- both 2 off
    more = density_matched_thresholds(onset_channel, ids, np.array([18.0]), 0.5, 0.6)
    assert (onset_channel > more[:, None]).sum() in (16, 20)


def test_edge_bars_are_density_matched_where_the_requests_differ() -> None:
    """A segment busy in its middle but sparse at its edges. Matched whole, its edges stay
    sparse; with edge_bars=1 the bar after a boundary where the request changes clearly
    plays the requested density, and the bar before a boundary where it hardly changes
    keeps the model's own phrasing."""
    rng = np.random.default_rng(1)
    onset_channel = rng.uniform(-1.0, 1.0, size=(96, 8))  # 1 bar, 4 bars, 1 bar
    onset_channel[32:64] = rng.uniform(0.6, 1.0, size=(32, 8))  # busy middle bars
    onset_channel[16:32] = rng.uniform(-1.0, 0.45, size=(16, 8))  # edges below the base cut
    onset_channel[64:80] = rng.uniform(-1.0, 0.45, size=(16, 8))
    ids = np.repeat([0, 1, 2], [16, 64, 16])
    request = np.array([5.0, 20.0, 18.0])  # 5 -> 20 is a change, 20 -> 18 is not
    whole = density_matched_thresholds(onset_channel, ids, request, 0.5, 0.5)
    edges = density_matched_thresholds(onset_channel, ids, request, 0.5, 0.5, edge_bars=1)
    first_bar, last_bar = slice(16, 32), slice(64, 80)
    assert (onset_channel[first_bar] > whole[first_bar, None]).sum() < 10
    assert (onset_channel[first_bar] > edges[first_bar, None]).sum() == 20
    assert np.array_equal(edges[last_bar], edges[48:64])  # one span with the middle
    assert (onset_channel[16:80] > edges[16:80, None]).sum() == pytest.approx(80, abs=2)
    # segments shorter than their edges and the rest are matched whole either way
    assert np.array_equal(edges[:16], whole[:16]) and np.array_equal(edges[80:], whole[80:])


def test_guidance_share_runs_the_quiet_steps_without_the_unconditional_pass(
    setup: tuple[Denoiser, ModelConfig],
) -> None:
    model, config = setup
    diffusion = Diffusion(config.diffusion)
    piece = make_piece(32, 1)
    batches: list[int] = []
    hook = model.register_forward_hook(lambda _m, args, _out: batches.append(args[0].shape[0]))

    def batch_sizes(settings: SamplerSettings) -> list[int]:
        batches.clear()
        sample_piece(model, diffusion, piece, config, torch.Generator().manual_seed(0), settings)
        return list(batches)

    try:
        full = batch_sizes(SamplerSettings(steps=5))
        # timesteps 999, 749 guided; 500 too (>=); 250, 0 not
        limited = batch_sizes(SamplerSettings(steps=5, guidance_until=500))
        # an interval [500, 999): 999 is at the open end, 749 and 500 inside, 250 and 0 below
        interval = batch_sizes(SamplerSettings(steps=5, guidance_until=500, guidance_from=999))
    finally:
        hook.remove()
    assert full == [2, 2, 2, 2, 2]  # conditional + unconditional in one call
    assert limited == [2, 2, 2, 1, 1]
    assert interval == [1, 2, 2, 1, 1]


class SeedSpy(Diffusion):
    """Records, per call, the seed of each window's noise generator."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config.diffusion)
        self.seeds: list[list[int]] = []

    def sample(self, model, cond, generator, **kwargs):  # type: ignore[no-untyped-def, override]
        self.seeds.append([g.initial_seed() for g in generator])
        return super().sample(model, cond, generator, **kwargs)


def test_each_window_draws_its_own_noise_whatever_the_steps_or_batching(
    setup: tuple[Denoiser, ModelConfig],
) -> None:
    model, config = setup
    piece = make_piece(96, 3)  # windows at 0, 16, 32, 48, 64

    def window_seeds(steps: int) -> dict[int, int]:
        spy = SeedSpy(config)
        generator = torch.Generator().manual_seed(5)
        sample_piece(model, spy, piece, config, generator, SamplerSettings(steps=steps))
        flat = [seed for call in spy.seeds for seed in call]
        assert len(flat) == len(set(flat)) == 5  # every window once, each its own stream
        return dict(enumerate(flat))

    left_to_right = window_seeds(steps=3)
    assert window_seeds(steps=6) == left_to_right  # another step count: the same noise
    spy = SeedSpy(config)
    generator = torch.Generator().manual_seed(5)
    sample_piece(model, spy, piece, config, generator, SamplerSettings(steps=3), window_batch=4)
    # batched in two passes (windows 0, 2, 4 first; 1 and 3 only where something is left):
    # each window keeps its own seed
    assert spy.seeds[0] == [left_to_right[0], left_to_right[2], left_to_right[4]]
    assert {s for call in spy.seeds for s in call} <= set(left_to_right.values())


def test_per_item_generators_draw_each_item_as_if_alone() -> None:
    from diffbgm.model.diffusion import _noise

    together = _noise(
        (2, 3, 4), [torch.Generator().manual_seed(s) for s in (1, 2)], torch.device("cpu")
    )
    alone = _noise((1, 3, 4), torch.Generator().manual_seed(2), torch.device("cpu"))
    assert torch.equal(together[1:], alone)
    with pytest.raises(ValueError, match="generators for a batch"):
        _noise((3, 4), [torch.Generator()], torch.device("cpu"))


def test_stochastic_ddim_is_a_generation_setting_and_reproducible(
    setup: tuple[Denoiser, ModelConfig],
) -> None:
    """`eta` reaches the sampler from the generation settings (and so from every CLI that
    takes them); fresh noise each step, drawn from the piece's generator, so a seed still
    gives the same music."""
    model, config = setup
    stochastic = GenerationConfig(sampler="ddim", steps=4, eta=1.0, guidance=1.0)
    settings = stochastic.sampler_settings(config.diffusion.num_train_steps)
    assert settings.eta == 1.0
    assert GenerationConfig.from_dict({"eta": 0.5}).eta == 0.5
    with pytest.raises(GenerationError, match="eta"):
        GenerationConfig(eta=1.5)
    with pytest.raises(GenerationError, match="ddim or dpm"):
        GenerationConfig(sampler="unipc", eta=1.0)
    diffusion = Diffusion(config.diffusion)
    piece = make_piece(48, 2)

    def draw(settings: SamplerSettings, seed: int) -> np.ndarray:
        generator = torch.Generator().manual_seed(seed)
        return sample_piece(model, diffusion, piece, config, generator, settings)

    half = stochastic.with_overrides(noise_share=0.5)
    assert half.sampler_settings(1000).noise_below == 500
    assert settings.noise_below is None
    for sampler in ("ddim", "dpm"):
        settings = replace(settings, sampler=sampler)
        ode = draw(replace(settings, eta=0.0), 3)
        np.testing.assert_array_equal(draw(settings, 3), draw(settings, 3))
        assert not np.array_equal(draw(settings, 3), ode)
        # noise only below t = 0 is none at all; below the middle, some
        np.testing.assert_array_equal(draw(replace(settings, noise_below=0), 3), ode)
        quiet_end = draw(replace(settings, noise_below=500), 3)
        assert not np.array_equal(quiet_end, ode)
        assert not np.array_equal(quiet_end, draw(settings, 3))


@pytest.mark.parametrize("window_batch", [1, 8])
def test_followed_records_the_steps_the_recall_guide_steered(
    setup: tuple[Denoiser, ModelConfig], window_batch: int
) -> None:
    from diffbgm.generation.recall import RecallGuide

    model, config = setup
    piece = make_piece(128, 3)
    source = np.full(128, -1, dtype=np.int64)
    source[64:72] = np.arange(8, 16)  # music of the first window: final before step 64's
    source[88:96] = np.arange(82, 90)  # music of its own window: never final in time
    # until_t -1: a guided step is painted to the last call, so it copies its source
    guide = RecallGuide(source, np.zeros(128, dtype=np.int64), until_t=-1)
    followed = np.full(128, 7, dtype=np.int64)  # stale values are cleared
    roll = sample_piece(
        model,
        Diffusion(config.diffusion),
        piece,
        config,
        torch.Generator().manual_seed(0),
        SamplerSettings(steps=3),
        overlap_steps=8,
        guide=guide,
        window_batch=window_batch,
        followed=followed,
    )
    np.testing.assert_array_equal(followed[64:72], np.arange(8, 16))
    np.testing.assert_array_equal(roll[:, 64:72], roll[:, 8:16])
    assert (followed[88:96] == -1).all()
    assert not np.array_equal(roll[:, 88:96], roll[:, 82:90])
    assert (np.delete(followed, np.arange(64, 72)) == -1).all()
