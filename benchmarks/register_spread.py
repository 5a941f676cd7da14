"""Why does the network follow the register control less well than density? Segment by segment.

    python benchmarks/register_spread.py --model checkpoints/diffbgm-small --songs 801-830

Generates each song's first bars the way `trainer evaluate` does (same seeds), with the decode
steps off by default (the network alone), and compares every segment's requested register
quantile with the one its notes realise. Prints the pooled Spearman (the evaluation's
`register_obedience`), the same by segment length, across songs (each song's mean) and within
songs (deviations from each song's mean), and a straight-line fit: a slope near 1 with a
realised spread wider than the requested one says the network aims right and scatters, a slope
well below 1 says it does not move far enough.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from diffbgm.checkpoint import load_checkpoint
from diffbgm.controls import DYNAMIC_CONTROLS
from diffbgm.generation.config import GenerationConfig
from diffbgm.music.calibration import Calibration
from trainer.__main__ import parse_song_range
from trainer.evaluate import (
    STEPS_PER_BAR,
    EvalOptions,
    _Generator,
    load_song_piece,
    realised_controls,
    segment_starts,
)

LENGTH_BANDS = ((0.0, 2.0), (2.0, 4.0), (4.0, float("inf")))  # bars


@dataclass(frozen=True)
class Segment:
    song: int
    bars: float
    asked: float  # requested register quantile
    got: float  # realised by the generated notes (NaN: no onsets)


def song_range(text: str) -> tuple[int, ...]:
    """'801-830' (or '801-803,810') -> song numbers, as `trainer evaluate --songs` reads them."""
    return tuple(parse_song_range(text))


def generate_segments(
    model: str, data: str, songs: tuple[int, ...], bars: int, network_alone: bool, seed: int
) -> list[Segment]:
    """Every segment of every song, as requested and as generated (seeds as in the evaluation)."""
    generation = GenerationConfig.from_dict(load_checkpoint(Path(model)).extra["generation"])
    if network_alone:
        generation = replace(generation, density_slack=0.0, recall=0.0, groove=0.0, edge_bars=0)
    options = EvalOptions(model=model, generation=generation, data=data, songs=songs, bars=bars)
    options = replace(options, seed=seed)
    generator = _Generator(options)
    calibration = Calibration.load(Path(data) / "calibration.json")
    column = DYNAMIC_CONTROLS.index("register")
    config = generator.loaded.config
    segments: list[Segment] = []
    for index, number in enumerate(songs):
        song = load_song_piece(Path(data), f"{number:03d}", bars, config, None)
        roll, _ = generator((index, song.conditions))
        starts = segment_starts(song.conditions.segment_ids)
        ends = np.append(starts[1:], roll.onset.shape[0])
        realised = realised_controls(
            roll.onset, roll.sustain, starts, config.pitch_low, calibration
        )
        got = realised["register"]
        asked = song.conditions.dynamic[:, column]
        segments += [
            Segment(number, (end - start) / STEPS_PER_BAR, float(asked[i]), float(got[i]))
            for i, (start, end) in enumerate(zip(starts, ends, strict=True))
        ]
    return segments


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(spearmanr(x, y)[0]) if len(x) > 2 else float("nan")


def spread_report(segments: list[Segment]) -> dict[str, float]:
    """The statistics the module docstring lists, from segments with notes."""
    kept = [s for s in segments if np.isfinite(s.got) and np.isfinite(s.asked)]
    song = np.array([s.song for s in kept])
    bars = np.array([s.bars for s in kept])
    asked = np.array([s.asked for s in kept])
    got = np.array([s.got for s in kept])
    out = {"segments": float(len(kept)), "pooled": spearman(asked, got)}
    for low, high in LENGTH_BANDS:
        band = (bars >= low) & (bars < high)
        out[f"bars {low:g}-{high:g} (n={int(band.sum())})"] = spearman(asked[band], got[band])
    songs = np.unique(song)
    asked_mean = np.array([asked[song == s].mean() for s in songs])
    got_mean = np.array([got[song == s].mean() for s in songs])
    out["across songs (song means)"] = spearman(asked_mean, got_mean)
    at = np.searchsorted(songs, song)
    out["within songs (deviations)"] = spearman(asked - asked_mean[at], got - got_mean[at])
    slope, intercept = np.polyfit(asked, got, 1)
    out |= {
        "fit slope": float(slope),
        "fit intercept": float(intercept),
        "requested std": float(asked.std()),
        "realised std": float(got.std()),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="checkpoints/diffbgm-small")
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--songs", type=song_range, default=song_range("801-830"))
    parser.add_argument("--bars", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--with-decode-steps",
        action="store_true",
        help="keep the model's decode steps (density match, recall, groove, edge bars)",
    )
    args = parser.parse_args()
    segments = generate_segments(
        args.model, args.data, args.songs, args.bars, not args.with_decode_steps, args.seed
    )
    for name, value in spread_report(segments).items():
        print(f"{name:32s} {value:.3f}")


if __name__ == "__main__":
    main()
