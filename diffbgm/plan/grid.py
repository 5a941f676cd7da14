"""Tempo and bar grid: choose a tempo and phase that put the shot cuts on bar lines, then
snap the cuts to the grid and turn them into segments of whole beats.

A cut that lands on a bar line lets the music change where the picture does; a cut that can
only reach a beat line still lands on the beat. Times are in seconds from the video start,
positions in beats from the grid origin (see diffbgm.plan).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from diffbgm.plan.config import PlanConfig
from diffbgm.plan.records import BEATS_PER_BAR


@dataclass(frozen=True)
class BarGrid:
    """A tempo and the time of the first downbeat; `cost` is what fit_bar_grid minimised."""

    tempo_bpm: float
    offset_s: float  # first downbeat at or before the video start, in (-bar, 0]
    cost: float


def mood_tempo_bpm(arousal: float, config: PlanConfig) -> float:
    """The tempo the mood asks for: calm (arousal 0) -> slow, excited (1) -> fast."""
    return config.tempo_slow_bpm + (config.tempo_fast_bpm - config.tempo_slow_bpm) * float(
        np.clip(arousal, 0, 1)
    )


def _line_costs(beats: np.ndarray, beat_s: np.ndarray, config: PlanConfig) -> np.ndarray:
    """Cost (s^2) of times `beats` (in beats from the grid origin): distance to the nearest bar
    line, or to the nearest beat line plus a penalty, capped."""
    # In-place arithmetic: fresh temporaries of the big (tempi, phases, cuts) array cost more
    # in page faults than the arithmetic itself.
    bar_cost = beats / BEATS_PER_BAR
    np.round(bar_cost, out=bar_cost)
    bar_cost *= -BEATS_PER_BAR
    bar_cost += beats  # signed distance to the nearest bar line, in beats
    bar_cost *= bar_cost
    bar_cost *= beat_s * beat_s
    beat_cost = np.round(beats)
    np.subtract(beats, beat_cost, out=beat_cost)
    beat_cost *= beat_cost
    beat_cost *= beat_s * beat_s
    beat_cost += config.beat_line_penalty_s**2
    np.minimum(bar_cost, beat_cost, out=bar_cost)
    np.minimum(bar_cost, config.residual_cap_s**2, out=bar_cost)
    return bar_cost


def fit_bar_grid(
    cut_times_s: Sequence[float],
    target_bpm: float,
    config: PlanConfig | None = None,
    tempo_bpm: float | None = None,
    weights: Sequence[float] | None = None,
) -> BarGrid:
    """Tempo and phase putting the cuts on bar lines (beat lines at a penalty), near target_bpm.

    Cost = sum over cuts of min(bar residual^2, beat residual^2 + penalty^2), capped, each
    times its weight (`weights`, one per cut; default 1), plus the video start weighted by
    `start_weight`, plus a soft prior on log2(tempo / target) outside a dead zone. Candidate
    phases are those that put some cut exactly on a bar or beat line; everything is evaluated
    at once as (tempi, phases, cuts) arrays.
    """
    cfg = config or PlanConfig()
    if tempo_bpm is not None:
        tempi = np.asarray([tempo_bpm], dtype=np.float64)
    else:
        tempi = np.arange(cfg.bpm_min, cfg.bpm_max + 1e-9, cfg.bpm_step)
    beat = 60.0 / tempi  # (Nt,)
    bar = beat * BEATS_PER_BAR
    cuts = np.asarray(cut_times_s, dtype=np.float64)  # (Nc,)
    shifts = np.arange(BEATS_PER_BAR)  # phases putting a cut on beat k of a bar
    candidates = cuts[None, :, None] - shifts[None, None, :] * beat[:, None, None]  # (Nt, Nc, 4)
    phases = np.concatenate([np.zeros((tempi.size, 1)), candidates.reshape(tempi.size, -1)], axis=1)
    phases = np.mod(phases, bar[:, None])  # (Nt, Np) in [0, bar)
    # float32 halves the memory traffic of the (Nt, Np, Nc) array; beats are small numbers.
    in_beats = ((cuts[None, None, :] - phases[:, :, None]) / beat[:, None, None]).astype(np.float32)
    cut_costs = _line_costs(in_beats, beat[:, None, None].astype(np.float32), cfg)
    if weights is not None:
        cut_costs *= np.asarray(weights, dtype=np.float32)[None, None, :]
    cost = cut_costs.sum(axis=2)
    start_cost = _line_costs(-phases / beat[:, None], beat[:, None], cfg)  # (Nt, Np)
    octaves = np.abs(np.log2(tempi / target_bpm))
    prior = cfg.tempo_prior_weight * np.maximum(octaves - cfg.tempo_prior_dead_zone, 0.0) ** 2
    # A sliver of the prior inside the dead zone only breaks ties between equally good tempi.
    prior = prior + 1e-4 * octaves
    total = cost + cfg.start_weight * start_cost + prior[:, None]  # (Nt, Np)
    t_idx, p_idx = np.unravel_index(int(np.argmin(total)), total.shape)
    phase = float(phases[t_idx, p_idx])
    bar_len = float(bar[t_idx])
    offset = phase - bar_len if phase > 1e-6 and bar_len - phase > 1e-6 else 0.0
    return BarGrid(tempo_bpm=float(tempi[t_idx]), offset_s=offset, cost=float(total[t_idx, p_idx]))


def nearest_bar(time_s: float, grid: BarGrid) -> int:
    """Beat index of the bar line nearest `time_s`."""
    position = (time_s - grid.offset_s) * grid.tempo_bpm / 60.0  # beats from the grid origin
    return int(round(position / BEATS_PER_BAR)) * BEATS_PER_BAR


def snap_to_beat(time_s: float, grid: BarGrid, config: PlanConfig) -> int:
    """Beat index of the line a cut goes to: the nearest bar line if within tolerance, else beat."""
    beat_s = 60.0 / grid.tempo_bpm
    position = (time_s - grid.offset_s) / beat_s  # in beats from the grid origin
    bar_beat = nearest_bar(time_s, grid)
    if abs(position - bar_beat) * beat_s <= config.bar_snap_tolerance_s:
        return bar_beat
    return int(round(position))


def _merge_short(edges: list[int], min_beats: int, kept: Collection[int] = ()) -> list[int]:
    """Drop boundaries until every segment has >= min_beats (a short one joins its shorter
    neighbour, unless the boundary that would go is in `kept` and the segment's other inner
    boundary is not: then that one goes)."""
    edges = sorted(set(edges))
    while len(edges) > 2:
        lengths = np.diff(edges)
        shortest = int(np.argmin(lengths))
        if lengths[shortest] >= min_beats:
            break
        if shortest == 0:
            drop = 1
        elif shortest == len(lengths) - 1:
            drop = shortest
        else:  # join the shorter neighbour, so merged segments stay balanced
            drop = shortest if lengths[shortest - 1] <= lengths[shortest + 1] else shortest + 1
        other = shortest + 1 if drop == shortest else shortest  # the segment's other boundary
        if edges[drop] in kept and 0 < other < len(edges) - 1 and edges[other] not in kept:
            drop = other
        del edges[drop]
    return edges


def _split_long(edges: list[int], max_bars: int, phrase_bars: int) -> list[int]:
    """Cut segments longer than max_bars into phrases of phrase_bars (a short rest joins the last)."""
    phrase = phrase_bars * BEATS_PER_BAR
    out = [edges[0]]
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        if end - start > max_bars * BEATS_PER_BAR:
            cuts = list(range(start + phrase, end, phrase))
            if cuts and end - cuts[-1] < phrase // 2:
                cuts.pop()
            out.extend(cuts)
        out.append(end)
    return out


def segment_edges(
    boundary_times_s: Sequence[float],
    grid: BarGrid,
    n_beats: int,
    config: PlanConfig,
    turn_times_s: Sequence[float] = (),
    user_times_s: Sequence[float] = (),
    user_on_downbeats: bool = False,
) -> list[int]:
    """Segment boundaries in beats (first 0, last n_beats) for boundary times in seconds (cuts:
    to a bar or beat line, `snap_to_beat`) and the turns of long takes (to the nearest bar
    line: a phrase starts on a downbeat). A turn that lands within a segment's least length of
    a cut or of either end is dropped, so merging short segments never removes a cut for it.
    The user's section starts (`user_times_s`) go where cuts go, or with `user_on_downbeats`
    to the nearest bar line, and are the last boundaries a too-short segment gives up."""
    kept = [
        nearest_bar(t, grid) if user_on_downbeats else snap_to_beat(t, grid, config)
        for t in user_times_s
    ]
    snapped = [snap_to_beat(t, grid, config) for t in boundary_times_s] + kept
    fixed = [0, *snapped, n_beats]
    for turn in sorted({nearest_bar(t, grid) for t in turn_times_s}):
        if all(abs(turn - edge) >= config.min_segment_beats for edge in fixed):
            snapped.append(turn)
    edges = [0, *[b for b in snapped if 0 < b < n_beats], n_beats]
    edges = _merge_short(edges, config.min_segment_beats, set(kept))
    return _split_long(edges, config.max_segment_bars, config.phrase_bars)


def cut_residuals(cut_times_s: Sequence[float], edge_times_s: np.ndarray) -> list[float]:
    """Each cut minus the nearest segment boundary, in seconds."""
    out = []
    for cut in cut_times_s:
        nearest = edge_times_s[int(np.argmin(np.abs(edge_times_s - cut)))]
        out.append(round(float(cut - nearest), 6))
    return out
