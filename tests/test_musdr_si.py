"""SI as MusDr computes it (diffbgm.musdr_si): chroma, SSM, scape-plot fitness, ranges."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from diffbgm.musdr_si import (
    SAMPLE_RATE,
    chroma_10hz,
    frame_rows,
    indicator_from_plot,
    scape_plot,
    segment_fitness,
    self_similarity,
    smooth_downsample,
    structureness_from_ssm,
    threshold_relative,
)


def _reference_fitness(ssm: np.ndarray, start: int, length: int) -> float:
    """One segment the long way: Müller's accumulated score, then the path family read off
    it cell by cell as MusDr's backtracking does, then the fitness."""
    n = ssm.shape[0]
    seg = ssm[:, start : start + length]
    width = length + 1
    d = np.full((n, width), -np.inf)
    d[0, 0], d[0, 1] = 0.0, seg[0, 0]
    for r in range(1, n):
        d[r, 0] = max(d[r - 1, 0], d[r - 1, -1])
        d[r, 1] = d[r, 0] + seg[r, 0]
        for m in range(2, width):
            above2 = d[r - 2, m - 1] if r >= 2 else -np.inf
            d[r, m] = seg[r, m - 1] + max(d[r - 1, m - 1], d[r - 1, m - 2], above2)
    score = max(d[n - 1, 0], d[n - 1, -1])
    paths: list[list[int]] = []  # rows of each path's cells
    path: list[int] = []
    r, m = n - 1, 0
    if d[r, -1] >= d[r, 0]:
        m = width - 1
        path.append(r)
    while r > 0 or m > 0:
        if r == 0:
            r, m = 0, m - 1
        elif m == 0:
            if d[r - 1, -1] > d[r - 1, 0]:
                if path:
                    paths.append(path)
                path = [r - 1]
                r, m = r - 1, width - 1
            else:
                r -= 1
        elif m == 1:
            m = 0
        else:
            options = [(r - 1, m - 1)]
            if r > 2:
                options.append((r - 2, m - 1))
            if m > 2:
                options.append((r - 1, m - 2))
            best = max(options, key=lambda cell: d[cell])  # first of equals wins
            path.append(best[0])
            r, m = best
    paths.append(path)
    cells = sum(len(p) for p in paths)
    coverage = sum(max(p) - min(p) + 1 for p in paths)
    score_n = (score - length) / (cells + 1e-16)
    coverage_n = (coverage - length) / (n + 1e-16)
    return 2 * score_n * coverage_n / (score_n + coverage_n + 1e-16)


def _random_ssm(rng: np.random.Generator, n: int) -> np.ndarray:
    features = smooth_downsample(np.abs(rng.normal(size=(12, n * 5))))
    return self_similarity(features[:, :n])


def test_fitness_matches_the_segment_by_segment_backtracking() -> None:
    rng = np.random.default_rng(0)
    for n in (9, 16):
        ssm = _random_ssm(rng, n)
        for length in range(1, n + 1):
            fast = segment_fitness(ssm, length)
            slow = [_reference_fitness(ssm, s, length) for s in range(n - length + 1)]
            np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)


def _features(order: str, rng: np.random.Generator, frames: int = 16) -> np.ndarray:
    """2 Hz features: a section per letter, equal letters identical (exact repeats)."""
    sections = {letter: np.abs(rng.normal(size=(12, frames))) for letter in set(order)}
    x = np.concatenate([sections[letter] for letter in order], axis=1)
    return x / np.linalg.norm(x, axis=0, keepdims=True)


def test_an_exact_repeat_raises_si() -> None:
    rng = np.random.default_rng(3)
    repeated = structureness_from_ssm(self_similarity(_features("ABAC", rng)))
    through = structureness_from_ssm(self_similarity(_features("ABCD", rng)))
    assert repeated["short"] > through["short"] + 0.1
    assert repeated["mid"] > through["mid"] + 0.1
    assert all(0 <= v <= 1 for v in (*repeated.values(), *through.values()))


def test_ranges_are_musdrs_rows_in_2hz_frames() -> None:
    assert frame_rows(3, 8) == (5, 16)  # segment lengths 6 ... 16 frames
    assert frame_rows(15, 128) == (29, 256)
    plot = np.zeros((20, 20))
    plot[5, 0] = 0.3  # a 6-frame segment (3 s)
    plot[16, 0] = 0.9  # a 17-frame segment (8.5 s): outside SI(3, 8)
    assert indicator_from_plot(plot, 3, 8) == 0.3
    assert indicator_from_plot(plot, 15, 128) == 0.0  # shorter than 30 frames: no long SI


def test_threshold_keeps_the_top_quarter_rescaled() -> None:
    s = np.arange(16, dtype=float).reshape(4, 4) / 15
    out = threshold_relative(s)
    assert (out == -2).sum() == 12
    assert sorted(out[out >= 0].tolist()) == [0.0, 1 / 3, 2 / 3, 1.0]


def test_chroma_of_a_tone_is_its_pitch_class() -> None:
    t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    a440 = np.sin(2 * np.pi * 440 * t)
    chroma = chroma_10hz(a440)
    assert chroma.shape == (12, 21)
    assert (chroma[:, 2:-2].argmax(axis=0) == 9).all()  # A
    np.testing.assert_allclose(np.linalg.norm(chroma, axis=0), 1.0)
    x = smooth_downsample(chroma)
    assert x.shape == (12, 5)
    silent = smooth_downsample(np.zeros((12, 10)))
    np.testing.assert_allclose(silent, 1 / math.sqrt(12))


MUSDR = os.environ.get("MUSDR_REPO")  # a checkout of github.com/slSeanWU/MusDr


@pytest.mark.skipif(not MUSDR, reason="set MUSDR_REPO to a MusDr checkout to compare")
def test_reproduces_musdrs_own_scape_plots() -> None:
    folder = Path(str(MUSDR)) / "musdr" / "testdata"
    for ssm_file in sorted((folder / "ssm").glob("*_ssm.npy")):
        ssm = np.load(ssm_file)
        theirs = np.load(folder / "scplot" / ssm_file.name.replace("_ssm", "_fitness"))
        if ssm.shape[0] > 140:
            continue  # the longest one takes half a minute
        np.testing.assert_allclose(scape_plot(ssm), theirs, atol=1e-12)
