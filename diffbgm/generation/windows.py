"""Long pieces: window-by-window sampling with overlap in-painting.

A piece longer than one window is generated left to right. Each window after the first starts
`window_steps - overlap_steps` 16th steps after the previous one and in-paints its first
`overlap_steps` steps from what is already there, so phrases continue across window borders.
The same machinery regenerates one segment: pass the old roll as `known_roll` and a
`known_mask` that is 1 everywhere except the steps to redo; windows with nothing to redo are
copied, not sampled. A `RecallGuide` steers returning phrases toward the music they repeat,
and a network with `recall_input` is shown that music as well.

With `window_batch` > 1 the windows are sampled in rounds instead, several per network call
(a CPU does more work per second on a batch): first every other window, each on its own,
then the windows between them, each in-painting a bar on both sides. A window that recalls
earlier music waits for the round after the window that holds its source (`two_pass_rounds`).

With `max_window_steps` the windows may be longer than the model's own (`window_spans`): fewer
of them, so less to sample. A window ends before a phrase that recalls music of the same
window (a recall is guided by final music only) and holds no more segments than the model has
slots for.

With `candidates` > 1 every window is sampled that many times in one batch, from as many noise
streams, and `choose` keeps one of them (the window critic, `diffbgm.generation.critic`); the
next window in-paints from the kept one. With `branch_at` > 0 the candidates share the
sampler's first calls and branch there (`Branching`): a stochastic sampler's fresh noise
makes them differ in detail, at a fraction of the calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from diffbgm.generation.recall import RecallGuide, recall_input
from diffbgm.model.conditions import PieceConditions, stack_windows
from diffbgm.model.config import ModelConfig
from diffbgm.model.diffusion import Branching, Diffusion, SamplerSettings

# (N, 2, T, P) candidates in [-1, 1] of the window starting at step `start`, start -> the
# index of the one to keep
CandidateChooser = Callable[[np.ndarray, int], int]


def window_starts(n_steps: int, window_steps: int, overlap_steps: int) -> list[int]:
    """Start steps of the windows that cover [0, n_steps) with the given overlap."""
    if not 0 <= overlap_steps < window_steps:
        raise ValueError(f"overlap_steps must be in [0, {window_steps}), got {overlap_steps}")
    hop = window_steps - overlap_steps
    starts = [0]
    while starts[-1] + window_steps < n_steps:
        starts.append(starts[-1] + hop)
    return starts


def written_by(n_steps: int, window_steps: int, overlap_steps: int) -> np.ndarray:
    """(n_steps,) the index of the window that samples each step when windows are sampled
    left to right (`window_starts`): a step written by an earlier window is final when a
    later one is sampled, so a recall guide can follow it."""
    writer = np.zeros(n_steps, dtype=np.int64)
    for index, start in enumerate(window_starts(n_steps, window_steps, overlap_steps)[1:], 1):
        writer[start + overlap_steps :] = index
    return writer


def window_spans(
    n_steps: int,
    shortest: int,
    longest: int,
    overlap: int,
    factor: int,
    segment_ids: np.ndarray,
    slots: int,
    source: np.ndarray | None = None,
) -> list[tuple[int, int]]:
    """(start, length) of windows of `shortest` to `longest` steps (multiples of `factor`)
    that cover [0, n_steps), each overlapping the one before by `overlap`, left to right.

    Each window is made as long as it may be: it holds at most `slots` segments (more would
    be merged: `PieceConditions.window`), and no step of it recalls (`source`, (T,) source step
    or -1) music that the same window would write, since a recall is guided by final music
    only. Where even `shortest` steps break a rule, the window keeps `shortest` steps (the
    model's own window, as in the fixed layout). The last window may run past the end (padded).
    """
    shortest = math.ceil(shortest / factor) * factor
    longest = max(shortest, longest // factor * factor)
    if longest <= overlap:
        raise ValueError(f"overlap_steps must be below the window, got {overlap} >= {longest}")
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        final = start + (overlap if spans else 0)  # steps written before this window runs
        length = shortest
        for candidate in range(longest, shortest, -factor):
            end = min(start + candidate, n_steps)
            recalled = np.zeros(0) if source is None else source[final:end]
            clash = bool(((recalled >= final) & (recalled < end)).any())
            if not clash and len(np.unique(segment_ids[start:end])) <= slots:
                length = candidate
                break
        if start + length >= n_steps:  # the last window: no longer than the piece needs
            spans.append((start, max(shortest, math.ceil((n_steps - start) / factor) * factor)))
            return spans
        spans.append((start, length))
        start += length - overlap


def two_pass_rounds(
    starts: list[int], window: int, n_steps: int, source: np.ndarray | None = None
) -> list[list[int]]:
    """Window indices per round of two-pass sampling; windows of a round are independent.

    Even windows (0, 2, ...) need nothing; odd ones need both neighbours (they in-paint their
    overlaps). Each step's final music comes from its even window where it has one, else its
    odd window; a window whose recalled steps (`source`, (T,) source step or -1) come from
    another window's music waits for that window too, except an even window for the odd one
    just before it (which waits for it: a cycle; those steps are then composed unguided).
    A window's round is one more than the latest round it waits for.
    """
    owner = np.full(n_steps, -1, dtype=np.int64)
    for parity in (1, 0):  # even windows written last: they own the overlaps
        for i in range(parity, len(starts), 2):
            owner[starts[i] : starts[i] + window] = i
    needs: list[set[int]] = []
    for i, start in enumerate(starts):
        need = {i - 1, i + 1} & set(range(len(starts))) if i % 2 else set()
        if source is not None:
            recalled = source[start : start + window]
            need |= {int(w) for w in np.unique(owner[recalled[recalled >= 0]])}
            need -= {i} if i % 2 else {i, i - 1}
        needs.append(need)
    rounds: dict[int, int] = {}

    def round_of(i: int, seen: frozenset[int]) -> int:
        if i not in rounds:
            waits = [round_of(j, seen | {i}) for j in needs[i] if j not in seen | {i}]
            rounds[i] = 1 + max(waits, default=-1)
        return rounds[i]

    for i in range(len(starts)):
        round_of(i, frozenset())
    return [
        [i for i in range(len(starts)) if rounds[i] == r] for r in range(max(rounds.values()) + 1)
    ]


def piece_mask(mask: np.ndarray | None, shape: tuple[int, int, int]) -> np.ndarray:
    """known_mask as given ((T,), (T, P) or (2, T, P), 1 = keep) -> bool (2, T, P)."""
    if mask is None:
        return np.zeros(shape, dtype=bool)
    mask = np.asarray(mask).astype(bool)
    if mask.ndim == 1:
        mask = mask[None, :, None]
    elif mask.ndim == 2:
        mask = mask[None]
    try:
        return np.broadcast_to(mask, shape).copy()
    except ValueError as exc:
        raise ValueError(f"known_mask of shape {mask.shape} does not fit a roll {shape}") from exc


def sample_piece(
    model: nn.Module,
    diffusion: Diffusion,
    piece: PieceConditions,
    config: ModelConfig,
    generator: torch.Generator | None,
    settings: SamplerSettings = SamplerSettings(),
    *,
    window_steps: int | None = None,
    overlap_steps: int = 16,
    known_roll: np.ndarray | None = None,
    known_mask: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    guide: RecallGuide | None = None,
    window_batch: int = 1,
    max_window_steps: int = 0,
    candidates: int = 1,
    choose: CandidateChooser | None = None,
    branch_at: float = 0.0,
    followed: np.ndarray | None = None,
) -> np.ndarray:
    """Sample a whole piece -> float32 (2, T_total, P) in [-1, 1] (onset, sustain).

    settings: the sampler's knobs, the same for every window (`SamplerSettings`).
    window_steps defaults to config.window_steps (16th steps; a multiple of the UNet's time
    factor); with max_window_steps above it (and windows one by one), windows of up to that
    many steps are laid out by `window_spans`. overlap_steps (default one bar) are in-painted
    from the previous window.
    known_roll (2, T_total, P) with known_mask (1 = keep) keeps part of an existing piece.
    guide: where returning phrases take their music from (None: no recall).
    window_batch: 1 = left to right, one window per call; more = two-pass rounds, up to this
    many windows per call (needs overlap_steps <= half a window, else left to right).
    progress(done, total) counts denoising steps over all windows that are sampled.
    candidates > 1 (with `choose`): each window sampled that many times, `choose` keeps one;
    they share the first `branch_at` [0-1) of the sampler's calls and branch there
    (`Branching`).
    followed: a (T_total,) int array, filled in place: the source step (`guide.source`) of
    each step the recall guide steered, -1 at the others. Which steps a guide can follow
    depends on the layout (a source must be final when its recalling window is sampled), so
    this is the record of what the sampler did, in any layout.
    """
    if candidates > 1 and choose is None:
        raise ValueError("candidates > 1 needs a chooser")
    total = piece.n_steps
    window = window_steps or config.window_steps
    shape = (2, total, config.n_pitches)
    keep = piece_mask(known_mask, shape)
    roll = np.zeros(shape, dtype=np.float32)
    if known_roll is not None:
        if known_roll.shape != shape:
            raise ValueError(f"known_roll has shape {known_roll.shape}, expected {shape}")
        roll[keep] = known_roll[keep]
    done = np.asarray(keep.all(axis=(0, 2)))  # steps whose content is final (kept: already)
    starts = window_starts(total, window, overlap_steps)
    lengths = [window] * len(starts)
    batched = window_batch > 1 and 2 * overlap_steps <= window and len(starts) > 1
    if batched:
        rounds = two_pass_rounds(starts, window, total, guide.source if guide else None)
    else:
        if max_window_steps > window and not window_steps:
            spans = window_spans(
                total, window, max_window_steps, overlap_steps, config.time_factor,
                piece.segment_ids, config.max_segments, guide.source if guide else None,
            )  # fmt: skip
            starts, lengths = [s for s, _ in spans], [n for _, n in spans]
        rounds = [[i] for i in range(len(starts))]  # left to right, one window a call
    return _sample_rounds(
        model, diffusion, piece, config, generator, lengths, starts, rounds, roll, keep, done,
        settings=settings, progress=progress, guide=guide,
        window_batch=window_batch if batched else 1, candidates=candidates, choose=choose,
        branch_at=branch_at, followed=followed,
    )  # fmt: skip


def _sample_rounds(
    model: nn.Module,
    diffusion: Diffusion,
    piece: PieceConditions,
    config: ModelConfig,
    generator: torch.Generator | None,
    lengths: list[int],
    starts: list[int],
    rounds: list[list[int]],
    roll: np.ndarray,
    keep: np.ndarray,
    done: np.ndarray,
    *,
    settings: SamplerSettings,
    progress: Callable[[int, int], None] | None,
    guide: RecallGuide | None,
    window_batch: int,
    candidates: int = 1,
    choose: CandidateChooser | None = None,
    branch_at: float = 0.0,
    followed: np.ndarray | None = None,
) -> np.ndarray:
    """Sample the windows (starts[i], lengths[i] steps) round by round (a round's windows are
    independent), up to window_batch of them per network call (windows of one length: the
    batched layout is uniform); the roll is filled in place and returned, and `followed`
    (if given) records the steps the recall guide steered (`sample_piece`)."""
    if followed is not None:
        followed[:] = -1
    total, pitches = roll.shape[1], config.n_pitches
    window_generators = _window_generators(generator, len(starts), candidates)
    todo = {i for i, s in enumerate(starts) if not keep[:, s : s + lengths[i]].all()}
    # denoising steps a window (skipped ones too)
    calls = len(diffusion.sampling_timesteps(settings.steps, settings.final_call))
    branching = Branching(math.ceil(branch_at * calls), candidates) if candidates > 1 else None
    n_denoise, finished = len(todo) * calls, 0
    for members in rounds:
        pending = []
        for i in members:
            if i in todo and not done[starts[i] : starts[i] + lengths[i]].all():
                pending.append(i)
            else:  # nothing left to sample here
                done[starts[i] : starts[i] + lengths[i]] = True
        for at in range(0, len(pending), window_batch):
            chunk = pending[at : at + window_batch]
            window = lengths[chunk[0]]
            rows = [i for i in chunk for _ in range(candidates)]  # a window's candidates in a row
            known, known_mask, guided, guided_mask, guided_until = _chunk_paintings(
                rows, starts, window, roll, keep, done, guide, pitches
            )
            cond = stack_windows(
                [piece.window(starts[i], window, config.max_segments) for i in rows],
                config.pitch_low,
                pitches,
            )
            if config.recall_input and guided is not None and guided_mask is not None:
                # the network hears what it repeats, as in training (trainer.dataset)
                recalled = recall_input(guided, np.asarray(guided_mask[:, 0].any(axis=-1)))
                cond = cond.with_(recalled=torch.from_numpy(recalled))

            def report(step: int, _n: int, base: int = finished, size: int = len(chunk)) -> None:
                if progress is not None:
                    progress(base + step * size, n_denoise)

            x = diffusion.sample(
                model,
                cond,
                None
                if window_generators is None
                else [g for i in chunk for g in window_generators[i]],
                settings=settings,
                known=torch.from_numpy(known),
                known_mask=torch.from_numpy(known_mask),
                progress=report,
                guide=None if guided is None else torch.from_numpy(guided),
                guide_mask=None if guided_mask is None else torch.from_numpy(guided_mask),
                guide_until=0 if guided_until is None else torch.from_numpy(guided_until),
                branch=branching,
            )
            values = x.float().cpu().numpy()  # (B * candidates, 2, W, P)
            for place, i in enumerate(chunk):
                start, end = starts[i], min(starts[i] + window, total)
                drawn = values[place * candidates : (place + 1) * candidates, :, : end - start]
                kept = 0 if choose is None or candidates == 1 else choose(drawn, start)
                roll[:, start:end] = drawn[kept]
                done[start:end] = True
                if followed is not None and guided_mask is not None and guide is not None:
                    steered = start + np.flatnonzero(
                        guided_mask[place * candidates, 0, : end - start].any(axis=-1)
                    )
                    followed[steered] = guide.source[steered]
            finished += calls * len(chunk)
    return roll


def _window_generators(
    generator: torch.Generator | None, n_windows: int, candidates: int = 1
) -> list[list[torch.Generator]] | None:
    """`candidates` generators per window, seeded from `generator` before any window is
    sampled; a window's first candidate draws the noise it draws with one candidate.

    A window's noise then depends on the seed and its index only: not on how many steps the
    sampler takes, nor on which windows share its network call. So two settings sampled with
    one seed start every window from the same noise, and their music can be compared window
    by window (benchmarks/paired_change.py) instead of as two unrelated draws.
    """
    if generator is None:
        return None
    seeds = torch.randint(0, 2**62, (n_windows,), generator=generator, device=generator.device)
    more = torch.randint(
        0, 2**62, (n_windows, candidates - 1), generator=generator, device=generator.device
    )
    return [
        [torch.Generator(generator.device).manual_seed(int(seed)) for seed in (first, *others)]
        for first, others in zip(seeds.tolist(), more.tolist(), strict=True)
    ]


def _chunk_paintings(
    chunk: list[int],
    starts: list[int],
    window: int,
    roll: np.ndarray,
    keep: np.ndarray,
    done: np.ndarray,
    guide: RecallGuide | None,
    pitches: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(B, 2, W, P) known music and mask (kept or final already), recall guide and mask and
    (B, 1, W, 1) each step's until_t (None where no window of the chunk recalls anything) of a
    chunk of windows."""
    total = roll.shape[1]
    knowns, masks, guides, guide_masks = [], [], [], []
    untils: list[np.ndarray] = []
    for i in chunk:
        start, end = starts[i], min(starts[i] + window, total)
        window_keep = np.zeros((2, window, pitches), dtype=bool)
        window_keep[:, : end - start] = keep[:, start:end] | done[None, start:end, None]
        known = np.zeros_like(window_keep, dtype=np.float32)
        known[:, : end - start] = roll[:, start:end]
        music, where = (
            (None, None) if guide is None else guide.for_window(roll, done, start, window_keep)
        )
        knowns.append(known)
        masks.append(window_keep)
        guides.append(np.zeros_like(known) if music is None else music)
        guide_masks.append(np.zeros_like(window_keep) if where is None else where)
        if guide is not None:
            untils.append(guide.until_steps(start, window))
    if not any(mask.any() for mask in guide_masks):
        return np.stack(knowns), np.stack(masks), None, None, None
    until = np.stack(untils)[:, None, :, None]  # (B, 1, W, 1)
    return np.stack(knowns), np.stack(masks), np.stack(guides), np.stack(guide_masks), until
