"""Recalling an earlier segment's music: the map, the transposition, the sampler's guide."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffbgm.generation.recall import RecallGuide, recall_map
from diffbgm.generation.windows import sample_piece
from diffbgm.model.conditions import PieceConditions
from diffbgm.model.config import ModelConfig, preset
from diffbgm.model.diffusion import Diffusion, SamplerSettings
from diffbgm.model.unet import Denoiser
from trainer.dataset import phrase_recalls
from trainer.sample import crop_piece

BAR = 16


def triad(root: int) -> list[int]:
    return [root % 12, (root + 4) % 12, (root + 7) % 12]


def piece_from(
    segment_steps: list[int], recalls: list[int] | None, bar_roots: list[int]
) -> PieceConditions:
    """Segments of any length in steps; one chord per bar with the given roots."""
    ids = np.concatenate([np.full(n, i) for i, n in enumerate(segment_steps)])
    chords = np.zeros((ids.size, 12), dtype=np.float32)
    for bar, root in enumerate(bar_roots):
        chords[bar * BAR : (bar + 1) * BAR, triad(root)] = 1
    n = len(segment_steps)
    return PieceConditions(
        chord_pcs=chords,
        segment_ids=ids.astype(np.int64),
        dynamic=np.full((n, 4), 0.5, dtype=np.float32),
        semantic=np.full((n, 6), 0.5, dtype=np.float32),
        global_=np.eye(14, dtype=np.float32)[0],
        recalls=None if recalls is None else np.asarray(recalls),
    )


def piece_with(
    bars_per_segment: list[int], recalls: list[int] | None, roots: list[int]
) -> PieceConditions:
    """Segments of whole bars; one chord per bar with the given roots (cycled)."""
    n_bars = sum(bars_per_segment)
    bar_roots = [roots[bar % len(roots)] for bar in range(n_bars)]
    return piece_from([n * BAR for n in bars_per_segment], recalls, bar_roots)


def test_recall_map_loops_the_source_bars_bar_line_on_bar_line() -> None:
    piece = piece_with([2, 2, 3], [-1, -1, 0], roots=[0, 5])
    source, shift = recall_map(piece)
    assert (source[: 4 * BAR] == -1).all()
    steps = np.arange(4 * BAR, 7 * BAR)
    # bars 4, 5, 6 take bars 0, 1, 0 of the 2-bar source, each step at its place in the bar
    expected = np.concatenate([np.arange(0, 2 * BAR), np.arange(0, BAR)])
    np.testing.assert_array_equal(source[steps], expected)
    assert (shift == 0).all()


def test_phrases_with_a_pickup_are_recalled_beat_for_beat() -> None:
    # half-bar pickup, then phrases of 2 bars starting mid-bar; one chord throughout
    piece = piece_from([8, 2 * BAR, 2 * BAR, 2 * BAR + 8], [-1, -1, -1, 1], bar_roots=[0] * 7)
    source, _ = recall_map(piece)
    start = 8 + 4 * BAR  # the recalling phrase starts half a bar in, like its source
    np.testing.assert_array_equal(source[start : start + 2 * BAR], np.arange(8, 8 + 2 * BAR))
    np.testing.assert_array_equal(source[start + 2 * BAR :], np.arange(8, 16))


def test_a_phrase_asked_back_with_another_density_plays_it_at_changing_edges() -> None:
    """A B A' C: A' recalls A. Asked for A's density, A' is recalled whole. Asked for twice
    A's density, its first bar (B asks for A's density: a change) and its last bar (C asks
    for less: a change) are composed afresh; with C asking for what A' asks, only the first."""
    piece = piece_with([2, 2, 3, 2], [-1, -1, 0, -1], roots=[0, 5])
    a_prime = np.arange(4 * BAR, 7 * BAR)
    same, _ = recall_map(piece, onsets_per_bar=np.array([10.0, 10.0, 10.0, 10.0]))
    assert (same[a_prime] >= 0).all()
    busier, shift = recall_map(piece, onsets_per_bar=np.array([10.0, 10.0, 20.0, 10.0]))
    assert (busier[4 * BAR : 5 * BAR] == -1).all() and (busier[6 * BAR : 7 * BAR] == -1).all()
    np.testing.assert_array_equal(busier[5 * BAR : 6 * BAR], np.arange(BAR, 2 * BAR))
    assert (shift == 0).all()
    into_alike, _ = recall_map(piece, onsets_per_bar=np.array([10.0, 10.0, 20.0, 19.0]))
    assert (into_alike[4 * BAR : 5 * BAR] == -1).all() and (
        into_alike[5 * BAR : 7 * BAR] >= 0
    ).all()
    unchanged, _ = recall_map(piece)
    assert (unchanged[a_prime] >= 0).all()


def test_a_phrase_labelled_a_bar_early_is_recalled_from_where_its_chords_line_up() -> None:
    # bar 0 intro; bars 1-4 the phrase (roots 0 5 7 2); bars 5-6 something else; bars 7-11
    # labelled as the phrase's return, but the return only starts at bar 8
    roots = [3, 0, 5, 7, 2, 9, 4, 10, 0, 5, 7, 2]
    piece = piece_from([BAR, 4 * BAR, 2 * BAR, 5 * BAR], [-1, -1, -1, 1], roots)
    source, _ = recall_map(piece)
    np.testing.assert_array_equal(source[8 * BAR : 12 * BAR], np.arange(BAR, 5 * BAR))
    assert (source[7 * BAR : 8 * BAR] == -1).all()  # its first bar's chord is not the phrase's


def test_a_clear_key_change_is_recalled_transposed_and_a_varied_one_is_not() -> None:
    # roots 0,5 | 9,7 | 2,7: the third segment is the first a whole tone up
    up_a_tone = piece_with([2, 2, 2], [-1, -1, 0], roots=[0, 5, 9, 7, 2, 7])
    _, shift = recall_map(up_a_tone)
    assert (shift[4 * BAR :] == 2).all() and (shift[: 4 * BAR] == 0).all()
    # roots 0,5 | 9,7 | 0,9: half the chords agree in place, nothing agrees better shifted
    varied = piece_with([2, 2, 2], [-1, -1, 0], roots=[0, 5, 9, 7, 0, 9])
    source, shift = recall_map(varied)
    assert (shift == 0).all()
    # ... and only its bar with the same chord is recalled: other chords would clash
    np.testing.assert_array_equal(source[4 * BAR : 5 * BAR], np.arange(BAR))
    assert (source[5 * BAR :] == -1).all()


def test_recalls_must_point_back() -> None:
    with pytest.raises(ValueError, match="earlier"):
        piece_with([1, 1], [1, -1], roots=[0])
    with pytest.raises(ValueError, match="earlier"):
        piece_with([1, 1], [-1, 1], roots=[0])
    with pytest.raises(ValueError, match="one entry per segment"):
        piece_with([1, 1], [-1], roots=[0])


def test_phrase_letters_recall_their_first_occurrence() -> None:
    recalls = phrase_recalls(["i", "A", "A", "B", "-", "A", "B", "-", "o"])
    np.testing.assert_array_equal(recalls, [-1, -1, 1, -1, -1, 1, 3, -1, -1])


def test_cropping_keeps_and_renumbers_recalls() -> None:
    piece = piece_with([1, 1, 1, 1], [-1, -1, 0, 1], roots=[0])
    cropped = crop_piece(piece, 3 * BAR)
    assert cropped.recalls is not None
    np.testing.assert_array_equal(cropped.recalls, [-1, -1, 0])


@pytest.fixture(scope="module")
def setup() -> tuple[Denoiser, ModelConfig]:
    torch.manual_seed(0)
    config = preset("tiny", n_pitches=16, pitch_low=60)
    return Denoiser(config).eval(), config


def sample(
    setup: tuple[Denoiser, ModelConfig],
    piece: PieceConditions,
    strength: float,
    onsets_per_bar: np.ndarray | None = None,
    *,
    keep_map: bool = False,
    overlap_steps: int = 16,
) -> np.ndarray:
    model, config = setup
    guide = RecallGuide.build(
        piece, strength, config.diffusion.num_train_steps, onsets_per_bar, keep_map=keep_map
    )
    return sample_piece(
        model,
        Diffusion(config.diffusion),
        piece,
        config,
        torch.Generator().manual_seed(3),
        SamplerSettings(steps=8, guidance=2.0),
        overlap_steps=overlap_steps,
        guide=guide,
    )


def test_recall_strength_zero_changes_nothing_and_one_copies(
    setup: tuple[Denoiser, ModelConfig],
) -> None:
    # two 2-bar segments, same chords; the window (2 bars in `tiny`) sees one at a time
    piece = piece_with([2, 2], [-1, 0], roots=[0, 5])
    plain = piece_with([2, 2], None, roots=[0, 5])
    np.testing.assert_array_equal(sample(setup, piece, 0.0), sample(setup, plain, 0.0))
    copied = sample(setup, piece, 1.0)
    first, second = copied[:, : 2 * BAR], copied[:, 2 * BAR :]
    np.testing.assert_array_equal(first, second)
    # asked back twice as busy: the bar after the boundary is composed afresh, the next copied
    changed = sample(setup, piece, 1.0, onsets_per_bar=np.array([10.0, 20.0]))
    assert not np.array_equal(changed[:, 2 * BAR : 3 * BAR], changed[:, :BAR])
    np.testing.assert_array_equal(changed[:, 3 * BAR :], changed[:, BAR : 2 * BAR])


def test_partial_recall_brings_the_repeat_closer_to_its_source(
    setup: tuple[Denoiser, ModelConfig],
) -> None:
    piece = piece_with([2, 2], [-1, 0], roots=[0, 5])

    def distance(roll: np.ndarray) -> float:
        return float(np.abs(roll[:, : 2 * BAR] - roll[:, 2 * BAR :]).mean())

    free, half, most = (sample(setup, piece, s) for s in (0.0, 0.6, 0.9))
    assert distance(most) < distance(half) < 0.75 * distance(free)
    with pytest.raises(ValueError, match="recall strength"):
        sample(setup, piece, 1.5)


def test_guide_needs_its_mask(setup: tuple[Denoiser, ModelConfig]) -> None:
    model, config = setup
    from diffbgm.model.conditions import stack_windows

    piece = piece_with([2], None, roots=[0])
    cond = stack_windows(
        [piece.window(0, config.window_steps, config.max_segments)],
        config.pitch_low,
        config.n_pitches,
    )
    with pytest.raises(ValueError, match="guide"):
        Diffusion(config.diffusion).sample(
            model,
            cond,
            None,
            SamplerSettings(steps=2),
            guide=torch.zeros(1, 2, config.window_steps, 16),
        )


def test_groove_bias_favours_the_places_most_bars_use() -> None:
    from diffbgm.generation import GenerationConfig, decode
    from diffbgm.generation.decoding import groove_bias
    from diffbgm.music.calibration import Calibration

    onset = np.full((4 * BAR + BAR, 3), -1.0)
    for bar in range(4):  # quarter notes in three bars, one stray bar on the off-beats
        places = (0, 4, 8, 12) if bar < 3 else (2, 6)
        for place in places:
            onset[bar * BAR + place, bar % 3] = 0.9
    ids = np.array([0] * (4 * BAR) + [1] * BAR)  # segment 1 is a single bar
    bias = groove_bias(onset, ids, threshold=0.5, strength=0.2)
    assert bias[0] == pytest.approx(0.2 * (2 * 3 / 4 - 1))  # 3 of 4 bars: +0.1
    assert bias[3 * BAR + 2] == pytest.approx(0.2 * (2 * 1 / 4 - 1))  # 1 of 4: -0.1
    assert bias[1] == pytest.approx(-0.2)  # no bar: -strength
    assert (bias[4 * BAR :] == 0).all()
    # decoded: the stray bar's weak quarter-note candidates come in, its off-beats stay
    onset[3 * BAR + 4, 0] = 0.45
    x = np.stack([onset, np.full_like(onset, -1.0)])
    piece = piece_with([4, 1], None, roots=[0])
    config = GenerationConfig(onset_threshold=0.5)
    plain = decode(x, piece, config, Calibration.load())
    steady = decode(x, piece, config.with_overrides(groove=0.2), Calibration.load())
    assert not plain.onset[3 * BAR + 4].any() and steady.onset[3 * BAR + 4, 0]
    assert steady.onset[3 * BAR + 2].any()  # 0.9 - 0.1 still sounds: thinned, not erased
    with pytest.raises(ValueError, match="groove"):
        groove_bias(onset, ids, 0.5, -1.0)


class HeardRecalls(Denoiser):
    """A denoiser with the recall input that keeps the recalled music of every call."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.heard: list[torch.Tensor | None] = []

    def forward(self, x_t, t, cond, drop=None, guidance=None, deep=None):  # type: ignore[no-untyped-def]
        self.heard.append(None if cond.recalled is None else cond.recalled.clone())
        return super().forward(x_t, t, cond, drop, guidance, deep)


def test_a_network_with_the_recall_input_hears_the_source_and_strength_zero_paints_nothing() -> (
    None
):
    """The sampler shows a `recall_input` network the final music of the phrase a window
    repeats (its notes where the step recalls, 1 in the third channel), also at recall
    strength 0, which then paints no step: the repeat is the network's own doing."""
    from dataclasses import replace

    torch.manual_seed(0)
    config = replace(preset("tiny", n_pitches=16, pitch_low=60), recall_input=True)
    model = HeardRecalls(config).eval()
    piece = piece_with([2, 2], [-1, 0], roots=[0, 5])
    source = RecallGuide.build(piece, 0.0, 1000, keep_map=True).source
    assert (source[2 * BAR :] >= 0).all()
    roll = sample(setup=(model, config), piece=piece, strength=0.0, keep_map=True, overlap_steps=0)
    first_window, second_window = model.heard[0], model.heard[-1]
    assert first_window is None  # nothing to recall yet
    assert second_window is not None and second_window.shape == (2, 3, 2 * BAR, 16)
    first_music = roll[:, source[2 * BAR :]] > 0  # (2, T, P): what the first window wrote
    np.testing.assert_array_equal(second_window[0, :2].numpy() == 1.0, first_music)
    assert second_window[0, 2].eq(1).all()
    # strength 0 paints nothing: the weights start at zero, so the repeat is not a copy
    assert not np.array_equal(roll[:, 2 * BAR :], roll[:, : 2 * BAR])
    # a network without the input is shown nothing, and at strength 0 no map is made
    assert (RecallGuide.build(piece, 0.0, 1000).source == -1).all()


def test_the_recall_input_benchmark_tells_a_network_that_ignores_the_music() -> None:
    """benchmarks/recall_input.py: a network whose recall input is still zero has the same
    errors with the recalled music shown and hidden; the last column is the recalled notes'
    own error against the real ones."""
    from dataclasses import replace

    from diffbgm.model.conditions import two_segment_conditions
    from tests.scripts import load_script

    bench = load_script("benchmarks/recall_input.py")
    torch.manual_seed(0)
    config = replace(preset("tiny"), recall_input=True)
    model = Denoiser(config).eval()
    cond = two_segment_conditions(config)
    notes = (torch.rand(2, 2, config.window_steps, config.n_pitches) < 0.1).float()
    where = torch.zeros(2, 1, config.window_steps, config.n_pitches)
    where[:, :, 8:24] = 1.0
    cond = cond.with_(recalled=torch.cat([notes * where, where], dim=1))
    roll = torch.where(torch.rand(notes.shape) < 0.1, 1.0, -1.0)
    rows = bench.recall_use(model, Diffusion(config.diffusion), roll, cond, [900, 300])
    inside = where.bool().expand_as(roll)
    expected = float(((notes * 2 - 1 - roll) ** 2)[inside].mean())
    for row in rows:
        assert row.to_real_with == row.to_real_without
        assert row.to_recalled_with == row.to_recalled_without
        assert row.recalled_to_real == pytest.approx(expected)
    with pytest.raises(ValueError, match="no recalled music"):
        bench.recall_use(model, Diffusion(config.diffusion), roll, cond.with_(recalled=None), [9])


def test_inner_recall_follows_the_bar_four_before_inside_a_phrase_where_chords_agree() -> None:
    from diffbgm.generation.recall import inner_recall_steps

    # one 10-bar phrase over a 4-bar chord loop, but bar 9 leaves the loop; then a 3-bar one
    roots = [0, 5, 7, 0, 0, 5, 7, 0, 0, 2, 0, 0, 0]
    piece = piece_from([10 * BAR, 3 * BAR], None, roots)
    source = np.full(piece.n_steps, -1)
    follows = inner_recall_steps(piece, source, lag_bars=4)
    inner = follows >= 0
    assert (follows[inner] == np.flatnonzero(inner) - 4 * BAR).all()
    by_bar = inner.reshape(-1, BAR)
    assert by_bar.all(axis=1).tolist() == [False] * 4 + [True] * 5 + [False] * 4
    assert (by_bar.any(axis=1) == by_bar.all(axis=1)).all()  # whole bars
    assert not by_bar[9].any()  # its chord (D) is not the one four bars before (C)
    # a bar another phrase's recall covers keeps that recall
    source[5 * BAR : 6 * BAR] = 0
    assert (inner_recall_steps(piece, source, lag_bars=4)[5 * BAR : 6 * BAR] == -1).all()
    # lag 2: from the third bar of a phrase on
    two = inner_recall_steps(piece, np.full(piece.n_steps, -1), lag_bars=2).reshape(-1, BAR)
    assert (two >= 0).all(axis=1)[10:].tolist() == [False, False, True]


def test_inner_recall_takes_the_near_bar_where_the_far_one_cannot_be_followed() -> None:
    from diffbgm.generation.recall import inner_recall_steps
    from diffbgm.generation.windows import written_by

    # a 4-bar phrase, then a 6-bar one whose bar 8 leaves the chords of the bar four before
    piece = piece_from([4 * BAR, 6 * BAR], None, [0, 0, 0, 0, 0, 5, 7, 5, 7, 5])
    none = np.full(piece.n_steps, -1)
    # windows of 4 bars, 1 bar overlap: they write bars 0-3, 4-6, 7-9
    writer = written_by(piece.n_steps, 4 * BAR, BAR)
    assert writer.reshape(-1, BAR)[:, 0].tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]

    def lags(follows: np.ndarray) -> list[int]:
        first = follows.reshape(-1, BAR)[:, 0]
        return np.where(first >= 0, np.arange(10) - first // BAR, 0).tolist()

    # bars 2-3 and 6: the bar two before is written by their own window, so not yet final;
    # bar 7 is too early for the bar four before; bar 8's chords leave it (bar 4), not bar 6's
    assert lags(inner_recall_steps(piece, none, 4, near_bars=2, written_by=writer)) == [
        0, 0, 0, 0, 0, 0, 0, 2, 2, 4,
    ]  # fmt: skip
    # without a window layout every earlier bar counts as final
    assert lags(inner_recall_steps(piece, none, 4, near_bars=2)) == [0, 0, 2, 2, 0, 0, 0, 2, 2, 4]
    # without the near bars only bar 9 follows
    assert lags(inner_recall_steps(piece, none, 4, written_by=writer)) == [0] * 9 + [4]


def test_inner_recall_guides_with_its_own_strength() -> None:
    piece = piece_with([2, 8, 2], [-1, -1, 0], roots=[0, 5])  # the last phrase recalls the first
    plain = RecallGuide.build(piece, 0.9, 1000)
    guide = RecallGuide.build(piece, 0.9, 1000, inner_strength=0.5, inner_bars=4)
    assert guide.inner is not None
    # the phrase recall is as it was; bars 4.. of the long phrase follow the bar four before
    recalled = plain.source >= 0
    assert recalled[10 * BAR :].all()
    np.testing.assert_array_equal(guide.source[recalled], plain.source[recalled])
    steps = np.flatnonzero(guide.inner)
    np.testing.assert_array_equal(steps, np.arange(6 * BAR, 10 * BAR))
    assert (guide.source[steps] == steps - 4 * BAR).all()
    assert not (guide.inner & recalled).any()
    until = guide.until_steps(0, piece.n_steps)
    assert set(until[recalled]) == {plain.until_t} and set(until[guide.inner]) == {500}
    assert (until[:BAR] == plain.until_t).all()  # steps that recall nothing: never painted
    assert guide.until_steps(piece.n_steps - BAR, 2 * BAR).shape == (2 * BAR,)
    with pytest.raises(ValueError, match="inner recall must be in"):
        RecallGuide.build(piece, 0.9, 1000, inner_strength=1.5)


def test_inner_recall_at_full_strength_repeats_the_phrases_first_bars(
    setup: tuple[Denoiser, ModelConfig],
) -> None:
    model, config = setup
    piece = piece_with([4], None, roots=[0, 5])  # one 4-bar phrase; `tiny` windows: 2 bars
    diffusion = Diffusion(config.diffusion)

    def sample_with(inner_strength: float) -> np.ndarray:
        guide = RecallGuide.build(
            piece, 0.0, config.diffusion.num_train_steps,
            inner_strength=inner_strength, inner_bars=2,
        )  # fmt: skip
        return sample_piece(
            model, diffusion, piece, config, torch.Generator().manual_seed(3),
            SamplerSettings(steps=8, guidance=2.0), overlap_steps=0, guide=guide,
        )  # fmt: skip

    free, copied, loose = sample_with(0.0), sample_with(1.0), sample_with(0.5)
    assert not np.array_equal(free[:, 2 * BAR :], free[:, : 2 * BAR])
    np.testing.assert_array_equal(copied[:, 2 * BAR :], copied[:, : 2 * BAR])

    def distance(roll: np.ndarray) -> float:
        return float(np.abs(roll[:, 2 * BAR :] - roll[:, : 2 * BAR]).mean())

    assert distance(copied) < distance(loose) < distance(free)


def test_the_phrase_repeats_benchmark_measures_repeats_inside_and_across_phrases() -> None:
    from tests.scripts import load_script

    bench = load_script("benchmarks/phrase_repeats.py")
    piece = piece_with([4, 4], [-1, 0], roots=[0])
    onset = np.zeros((piece.n_steps, 12), dtype=bool)
    onset[0, 2] = onset[2 * BAR, 2] = True  # bar 2 repeats bar 0
    onset[BAR, 5] = onset[3 * BAR + 1, 5] = True  # bar 3 does not repeat bar 1
    onset[4 * BAR :] = onset[: 4 * BAR]  # the second phrase recalls the first, note for note
    shares = bench.inner_shares(onset, piece.segment_ids)
    assert shares[2] == [1.0, 0.0, 1.0, 0.0]  # two pairs in each phrase
    assert shares[4] == []  # no phrase is longer than four bars
    assert len(shares[1]) == 6 and max(shares[1]) == 0.0
    assert bench.recalled_shares(onset, piece) == [1.0, 1.0, 1.0, 1.0]
