"""Where one model stands against the targets of issue 19, with the noise of seeds and songs.

    python -m trainer targets docs/eval/s46_shipped_831_859_s0.json \
        docs/eval/s46_shipped_831_859_s1.json

Every file is a `python -m trainer evaluate --json` report of the same songs and bars, one
per seed. For each target with a band in `trainer.compare.TARGETS` (the realism test's
accuracy <= 65 %; PCHE, GPS, MusDr's SI, chord tones and polyphony within 3 % of real;
onsets within 5 %; density and register Spearman >= 0.9) the mean over the reports gets an
interval, two-sided at 1 - 2 alpha: a bootstrap over the songs where the report keeps
per-song data (each song's value moves with its seed as well, so the seeds' noise is in it;
would the figure hold on other songs?), else a t-interval over the seeds (the controls'
Spearman, pooled over segments; realism in reports before session 46). "met" when the whole
interval lies in the band, "not met" when none of it does, else "undecided": a single seed's
figure on a favourable side of a band is not a target met. One report without per-song data
gets no interval and no verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trainer.compare import TARGETS, Report, Target, differing_option, resampled_values


@dataclass(frozen=True)
class Standing:
    """One target: the mean over the reports, its interval and the verdict."""

    target: str
    band: tuple[float, float]
    reports: int
    value: float
    low: float  # the interval (NaN: one report and no per-song data)
    high: float
    verdict: str  # 'met', 'not met', 'undecided' or 'no interval'


def check_same_songs(reports: Sequence[Report]) -> None:
    """Reports of one model must be of the same songs and bars, each of its own seed."""
    if not reports:
        raise ValueError("no reports")
    for report in reports[1:]:
        option = differing_option(reports[0], report, ignore=("seed",))
        if option is not None:
            raise ValueError(f"{report['_path']} differs from {reports[0]['_path']} in {option!r}")
    seeds = [report["options"]["seed"] for report in reports]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"two reports of one seed among seeds {seeds}")


def _interval(
    target: Target, reports: Sequence[Report], values: list[float], alpha: float
) -> tuple[float, float]:
    """The songs' bootstrap interval of the mean over the reports where the songs can be
    resampled (each song's value varies with its seeds too, so the seeds' noise is in it),
    else a t-interval over the seeds; NaNs with one report and no per-song data."""
    from scipy import stats

    resampled = resampled_values(target, reports)
    if resampled is not None:
        means = resampled.mean(axis=0)
        means = means[np.isfinite(means)]
        if means.size:
            return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean = sum(values) / n
    half = float(stats.t.ppf(1 - alpha, n - 1) * stats.sem(values))
    return mean - half, mean + half


def standings(reports: Sequence[Report], alpha: float = 0.05) -> list[Standing]:
    """Every target with a band that all the reports have."""
    check_same_songs(reports)
    out = []
    for target in TARGETS:
        if target.band is None:
            continue
        read = [target.read(report) for report in reports]
        values = [value for value in read if value is not None]
        if len(values) < len(read):
            continue  # e.g. MusDr's SI switched off in some report
        value = sum(values) / len(values)
        low, high = _interval(target, reports, values, alpha)
        band_low, band_high = target.band
        if math.isnan(low):
            verdict = "no interval"  # one report and no per-song data: no noise to judge by
        elif band_low <= low and high <= band_high:
            verdict = "met"
        elif high < band_low or low > band_high:
            verdict = "not met"
        else:
            verdict = "undecided"
        out.append(Standing(target.name, target.band, len(values), value, low, high, verdict))
    return out


def _band(target: str, band: tuple[float, float]) -> str:
    low, high = band
    if target.startswith("realism"):
        return f"≤ {high:g}"
    if high >= 100:
        return f"≥ {low:g}"
    return f"within ±{high:g} %"


def markdown(rows: Sequence[Standing], alpha: float) -> str:
    level = round(100 * (1 - 2 * alpha))
    lines = [
        f"Mean over {rows[0].reports if rows else 0} report(s); {level} % interval: a bootstrap "
        "over the songs, else a t-interval over the seeds. Accuracy in %, gaps in % of "
        "real, Spearman x 100 (issue 19 asks density and register of the network alone: "
        "`evaluate --density-slack 0 --recall 0 --groove 0 --edge-bars 0`).",
        "",
        "| target | band | value | interval | verdict |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        signed = "+.1f" if row.band[0] < 0 else ".1f"
        interval = "–" if math.isnan(row.low) else f"{row.low:{signed}} … {row.high:{signed}}"
        lines.append(
            f"| {row.target} | {_band(row.target, row.band)} | {row.value:{signed}} | "
            f"{interval} | {row.verdict} |"
        )
    return "\n".join(lines)


def to_json(rows: Sequence[Standing]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]
