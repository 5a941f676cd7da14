"""Recall: which segments take up the music of an earlier one, and the chords that follows.

A scene that comes back (the same shot continuing, or a look-alike shot after something
else) should bring back its music; the plan marks it with `PlanSegment.recalls` and repeats
the source's chords, and the sampler repeats the notes (diffbgm.model.sampling).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence

import numpy as np

from diffbgm.plan.config import PlanConfig
from diffbgm.plan.inputs import AnalysisLike
from diffbgm.plan.records import BEATS_PER_BAR, PlanChord


def plan_recalls(
    edges: Sequence[int],
    members: Sequence[tuple[int, ...]],
    rows: Sequence[Mapping[str, float]],
    embeddings: Sequence[np.ndarray | None],
    config: PlanConfig,
) -> list[int]:
    """For each segment, an earlier segment of the same scene whose music it takes up, or -1.

    - Phrases of one long shot alternate A B A B: phrase k of the shot takes up phrase k - 2
      (the music behind it) while the two still look alike (`rows`: what each phrase shows;
      a take whose picture changes gets new music). Taking up the previous phrase would loop
      one phrase for as long as the shot lasts.
    - A segment that looks like an earlier one it does not follow directly (a scene that
      comes back after something else; see PlanConfig.recall_*) takes up the most alike
      (ties: the earliest). Phrases of the same shots are compared by their statistics, as
      their shots' embeddings are the same.
    Only segments on bar lines take part, and a recall always points at a first occurrence,
    so a scene coming back three times brings back the same music each time. `embeddings`:
    per segment the mean CLIP embedding of its shots, or None.
    """
    recalls = [-1] * (len(edges) - 1)
    on_bar = [edge % BEATS_PER_BAR == 0 for edge in edges[:-1]]
    for later in range(len(recalls)):
        if not on_bar[later]:
            continue
        two_back = later - 2
        source = two_back if two_back < 0 or recalls[two_back] < 0 else recalls[two_back]
        if (
            two_back >= 0
            and members[two_back] == members[later] == members[later - 1]
            and _look_gap(rows[later], rows[source], None, None, config) <= 1.0
        ):
            if on_bar[two_back]:
                recalls[later] = source
            continue
        best_gap = math.inf
        for earlier in range(later - 1):  # not the segment it follows directly
            if not on_bar[earlier] or recalls[earlier] >= 0:
                continue
            same_shots = members[earlier] == members[later]
            gap = _look_gap(
                rows[later],
                rows[earlier],
                None if same_shots else embeddings[later],
                None if same_shots else embeddings[earlier],
                config,
            )
            if gap < best_gap and gap <= 1.0:
                recalls[later], best_gap = earlier, gap
    return recalls


def form_segments(
    edges: Sequence[int], section_beats: Sequence[int], form: Sequence[str], min_beats: int
) -> tuple[list[int], list[int]]:
    """Segments and recalls for the user's form: a section labelled like an earlier one plays
    that section again, bar for bar.

    edges: segment boundaries in beats (first 0, last the piece's end); section_beats: where
    the user's sections start (on bar lines, increasing, inside the piece); form: one label per
    section, the opening first. A section whose label is new keeps its segments; a returning
    one is cut as its first occurrence was (looped where it is longer, cut short where it is
    shorter; a tail shorter than `min_beats` joins the segment before it), ignoring the cuts
    inside it, and each of its segments recalls the one at the same place in the first
    occurrence. Nothing else recalls anything: the user gave the structure.
    -> (edges, recalls).
    """
    bounds = [0, *section_beats, edges[-1]]
    first: dict[str, int] = {}
    out: list[int] = []
    origin_of: list[int] = []  # per section: the section it repeats (itself when new)
    for section, label in enumerate(form):
        start, end = bounds[section], bounds[section + 1]
        origin = first.setdefault(label, section)
        origin_of.append(origin)
        if origin == section:
            inner = [e for e in edges if start < e < end]
        else:
            o_start, o_end = bounds[origin], bounds[origin + 1]
            pattern = [e - o_start for e in edges if o_start <= e < o_end]  # starts with 0
            length = o_end - o_start
            inner = sorted(
                start + lap + offset
                for lap in range(0, end - start, length)
                for offset in pattern
                if 0 < lap + offset < end - start
            )
            if inner and end - inner[-1] < min_beats:
                inner.pop()
        out.extend([start, *inner])
    out.append(edges[-1])
    recalls = [-1] * (len(out) - 1)
    for i, edge in enumerate(out[:-1]):
        section = bisect.bisect_right(bounds, edge) - 1  # the section this segment starts in
        origin = origin_of[section]
        if origin != section:
            length = bounds[origin + 1] - bounds[origin]
            recalls[i] = out.index(bounds[origin] + (edge - bounds[section]) % length)
    return out, recalls


def _look_gap(
    a: Mapping[str, float],
    b: Mapping[str, float],
    embedding_a: np.ndarray | None,
    embedding_b: np.ndarray | None,
    config: PlanConfig,
) -> float:
    """How unlike two segments look, as a share of the tolerance (<= 1: alike): 1 - cosine
    of their CLIP embeddings where both have them, else the largest gap of brightness,
    saturation, motion and colour temperature."""
    if embedding_a is not None and embedding_b is not None:
        norms = float(np.linalg.norm(embedding_a) * np.linalg.norm(embedding_b))
        if norms == 0:
            return math.inf
        cosine = float(embedding_a @ embedding_b) / norms
        return (1.0 - cosine) / max(1.0 - config.recall_clip_similarity, 1e-9)
    # colour temperature spans [-1, 1], the others [0, 1]: halve it to compare alike
    gaps = [abs(a[name] - b[name]) for name in ("brightness", "saturation", "motion")]
    gaps.append(abs(a["colour_temperature"] - b["colour_temperature"]) / 2)
    return max(gaps) / max(config.recall_look_tolerance, 1e-9)


def segment_embeddings(
    analysis: AnalysisLike, members: Sequence[tuple[int, ...]]
) -> list[np.ndarray | None]:
    """Per segment the mean semantic (CLIP) embedding of its shots; None where one lacks it."""
    by_shot = {row.shot_index: row.semantic for row in analysis.features}
    out: list[np.ndarray | None] = []
    for shots in members:
        found = [by_shot.get(i) for i in shots]
        vectors = [np.asarray(v, dtype=np.float64) for v in found if v is not None]
        out.append(np.mean(vectors, axis=0) if vectors and len(vectors) == len(found) else None)
    return out


def recall_chords(
    chords: Sequence[PlanChord], edges: Sequence[int], recalls: Sequence[int]
) -> list[PlanChord]:
    """The progression with each recalling segment's bars taking its source's chords, bar for
    bar in a loop (a returning scene brings back its harmony, which the sampler's recall needs
    to repeat the music), except in the last bar, which keeps its cadence. Chord spans are
    rebuilt from the beats; a new chord starts at every segment start."""
    n_beats = edges[-1]
    labels = [""] * n_beats
    for chord in chords:
        for beat in range(chord.start_beat, min(chord.start_beat + chord.n_beats, n_beats)):
            labels[beat] = chord.label
    for target, source in enumerate(recalls):
        if source < 0:
            continue
        src_start, src_end = edges[source], edges[source + 1]
        src_bars = (src_end - src_start) // BEATS_PER_BAR
        if src_bars < 1:
            continue
        # the piece's last bar keeps its own chords: the cadence that ends the music
        for beat in range(edges[target], min(edges[target + 1], n_beats - BEATS_PER_BAR)):
            offset = (beat - edges[target]) % (src_bars * BEATS_PER_BAR)
            labels[beat] = labels[src_start + offset]
    starts = set(edges)
    out: list[PlanChord] = []
    span_start = 0
    for beat in range(1, n_beats + 1):
        if beat == n_beats or beat in starts or labels[beat] != labels[span_start]:
            out.append(PlanChord.at_beat(span_start, beat - span_start, labels[span_start]))
            span_start = beat
    return out
