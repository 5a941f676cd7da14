"""Statistics for listening studies: means with t intervals, win rates with Wilson intervals.

Plain functions over plain numbers (no database), so they are easy to check by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class MeanInterval:
    """Sample mean of n scores and its two-sided confidence interval (t-distribution).

    `low`/`high` are None when n < 2 (no spread to estimate); `mean` is None when n == 0.
    """

    n: int
    mean: float | None
    low: float | None
    high: float | None
    std: float | None


@dataclass(frozen=True)
class Proportion:
    """`successes` out of `n` trials, the rate, and its Wilson score interval (None if n == 0)."""

    successes: int
    n: int
    rate: float | None
    low: float | None
    high: float | None


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def mean_interval(values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> MeanInterval:
    """Mean of `values` with a Student-t confidence interval (sample std, n - 1 dof)."""
    _check_confidence(confidence)
    n = len(values)
    if n == 0:
        return MeanInterval(n=0, mean=None, low=None, high=None, std=None)
    mean = math.fsum(values) / n
    if n == 1:
        return MeanInterval(n=1, mean=mean, low=None, high=None, std=None)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half_width = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return MeanInterval(n=n, mean=mean, low=mean - half_width, high=mean + half_width, std=std)


def wilson_interval(
    successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float] | None:
    """Wilson score interval for a binomial rate; None when there are no trials.

    Unlike the normal ('Wald') interval it stays inside [0, 1] and behaves at 0 or n wins.
    """
    _check_confidence(confidence)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n]; got {successes} of {n}")
    if n == 0:
        return None
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    rate = successes / n
    denominator = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    spread = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - spread), min(1.0, centre + spread)


def proportion(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> Proportion:
    """A win rate with its Wilson interval."""
    interval = wilson_interval(successes, n, confidence)
    if interval is None:
        return Proportion(successes=successes, n=n, rate=None, low=None, high=None)
    return Proportion(
        successes=successes, n=n, rate=successes / n, low=interval[0], high=interval[1]
    )


def binomial_p_value(successes: int, n: int) -> float | None:
    """Exact two-sided binomial test against no preference (p = 0.5); None when n == 0."""
    if n == 0:
        return None
    return float(stats.binomtest(successes, n, 0.5).pvalue)
