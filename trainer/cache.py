"""Build the POP909 training cache: one compressed npz per song, an index, the calibration.

    python -m trainer.cache [--pop909 DIR] [--out data_cache/pop909] [--workers 2]

Each `songs/NNN.npz` holds the song on the 16th grid from its first 4/4 downbeat:
onset, sustain, velocity (T, P) uint8; chord_pcs (T, 12) uint8; step_times_s (T,);
bar_starts (B,); bar_segment (B,) segment index of each bar; segment_labels (N,) phrase
letters ('-' = bars the labels do not cover); bar_table (B, len(BAR_COLUMNS)) per-bar sums;
key = (tonic pitch class, minor 0/1); tempo_bpm. `index.json` lists songs per split and the
skipped songs with their reasons. The calibration (quantiles of the raw controls over train
phrases) goes to `calibration.json` in the cache and to diffbgm/assets.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from diffbgm.errors import DiffBGMError
from diffbgm.music.calibration import DEFAULT_PATH as DEFAULT_CALIBRATION_PATH
from diffbgm.music.calibration import Calibration
from diffbgm.music.pop909 import (
    BAR_COLUMNS,
    RAW_CONTROLS,
    bar_segments,
    bar_table,
    load_song,
    segment_raw_controls,
)
from diffbgm.music.roll import RollSpec
from trainer.workers import die_with_parent

LOG = logging.getLogger(__name__)
DEFAULT_OUT = Path("data_cache/pop909")
DEFAULT_POP909 = (
    Path(
        os.environ.get(
            "DIFFBGM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
        )
    )
    / "pop909"
)
LAST_TRAIN_SONG = 800  # songs 001-800 train, 801-859 validation


def split_of(song_id: str) -> str:
    return "train" if int(song_id) <= LAST_TRAIN_SONG else "valid"


def song_arrays(song_dir: Path, spec: RollSpec) -> dict[str, np.ndarray]:
    """Everything the cache stores for one song; raises DiffBGMError when unusable."""
    song = load_song(song_dir, spec)
    if song.meter_beats != spec.beats_per_bar:
        raise DiffBGMError(
            f"{song_dir}: not in 4/4 (median {song.meter_beats} beats between 4/4 downbeats)"
        )
    seg_of_bar, labels = bar_segments(song)
    return {
        "onset": song.roll.onset.astype(np.uint8),
        "sustain": song.roll.sustain.astype(np.uint8),
        "velocity": song.roll.velocity,
        "chord_pcs": song.chord_pcs,
        "step_times_s": song.step_times_s,
        "bar_starts": song.bar_starts.astype(np.int32),
        "bar_segment": seg_of_bar.astype(np.int32),
        "segment_labels": np.asarray(labels, dtype="<U1"),
        "bar_table": bar_table(song).astype(np.float32),
        "key": np.asarray([song.key_tonic_pc, int(song.key_minor)], dtype=np.int32),
        "tempo_bpm": np.asarray(song.tempo_bpm, dtype=np.float32),
        "dropped_notes": np.asarray(song.roll.dropped_notes, dtype=np.int32),
    }


def cache_one(job: tuple[Path, Path, RollSpec]) -> tuple[str, str | None]:
    """Write one song's npz; returns (song id, None) or (song id, reason it was skipped)."""
    song_dir, out_dir, spec = job
    try:
        arrays = song_arrays(song_dir, spec)
    except DiffBGMError as exc:
        return song_dir.name, str(exc)
    np.savez_compressed(out_dir / "songs" / f"{song_dir.name}.npz", **arrays)  # type: ignore[arg-type]
    return song_dir.name, None


def segment_samples(entry: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Raw controls of every segment (phrase or unlabelled run) of one cached song."""
    table = entry["bar_table"].astype(np.float64)
    samples: dict[str, list[float]] = {name: [] for name in RAW_CONTROLS}
    for seg in np.unique(entry["bar_segment"]):
        raw = segment_raw_controls(table[entry["bar_segment"] == seg].sum(axis=0))
        for name in RAW_CONTROLS:
            samples[name].append(raw[name])
    return samples


def fit_calibration(out_dir: Path, train_ids: list[str], spec: RollSpec) -> Calibration:
    """Quantile tables of the raw controls over the phrases of the training songs."""
    pooled: dict[str, list[float]] = {name: [] for name in RAW_CONTROLS}
    for song_id in train_ids:
        with np.load(out_dir / "songs" / f"{song_id}.npz") as entry:
            arrays = {"bar_table": entry["bar_table"], "bar_segment": entry["bar_segment"]}
        for name, values in segment_samples(arrays).items():
            pooled[name].extend(values)
    meta: dict[str, object] = {
        "source": "POP909 songs 001-800, one sample per phrase segment",
        "n_songs": len(train_ids),
        "n_segments": len(pooled["density"]),
        "spec": asdict(spec),
        "units": {
            "density": "onsets per 16-step bar",
            "velocity": "mean MIDI velocity of onsets",
            "register": "mean MIDI pitch of onsets",
            "polyphony": "mean sounding pitches per 16th step",
            "harmonic_rhythm": "chord changes per 16-step bar",
            "minor_share": "share of chord time on minor-type chords",
            "melody_density": "MELODY-track onsets per 16-step bar",
        },
    }
    return Calibration.fit({k: np.asarray(v) for k, v in pooled.items()}, meta)


def build_cache(
    pop909_dir: str | Path,
    out_dir: str | Path = DEFAULT_OUT,
    spec: RollSpec | None = None,
    songs: list[str] | None = None,
    workers: int = 2,
    calibration_path: str | Path | None = DEFAULT_CALIBRATION_PATH,
) -> dict[str, object]:
    """Cache POP909 songs (all NNN folders, or the ids in `songs`) and fit the calibration.

    Returns the index written to out_dir/index.json. `calibration_path=None` keeps the
    calibration in the cache folder only (tests use that to leave the shipped asset alone).
    """
    spec = spec or RollSpec()
    source, out = Path(pop909_dir), Path(out_dir)
    ids = songs or sorted(p.name for p in source.iterdir() if p.is_dir() and p.name.isdigit())
    if not ids:
        raise DiffBGMError(f"no POP909 song folders (NNN/) in {source}")
    (out / "songs").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = [(source / song_id, out, spec) for song_id in ids]
    if workers > 1:
        with get_context("fork").Pool(workers, die_with_parent, (os.getpid(),)) as pool:
            results = pool.map(cache_one, jobs, chunksize=8)
    else:
        results = [cache_one(job) for job in jobs]
    skipped = {song_id: reason for song_id, reason in results if reason is not None}
    for song_id, reason in skipped.items():
        LOG.warning("skipped song %s: %s", song_id, reason)
    cached = [song_id for song_id, reason in results if reason is None]
    splits = {
        "train": [s for s in cached if split_of(s) == "train"],
        "valid": [s for s in cached if split_of(s) == "valid"],
    }
    index: dict[str, object] = {
        "spec": asdict(spec),
        "bar_columns": list(BAR_COLUMNS),
        "splits": splits,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if splits["train"]:
        calibration = fit_calibration(out, splits["train"], spec)
        calibration.save(out / "calibration.json")
        if calibration_path is not None:
            calibration.save(calibration_path)
    (out / "index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    LOG.info(
        "cached %d songs (%d train, %d valid), skipped %d, in %.1f s",
        len(cached),
        len(splits["train"]),
        len(splits["valid"]),
        len(skipped),
        index["seconds"],
    )
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trainer cache", description=__doc__.splitlines()[0])
    parser.add_argument("--pop909", type=Path, default=DEFAULT_POP909, help="POP909 folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="cache folder")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--songs", nargs="*", help="song ids such as 001 002 (default: all)")
    parser.add_argument(
        "--calibration", type=Path, default=DEFAULT_CALIBRATION_PATH, help="where to write it"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    index = build_cache(
        args.pop909, args.out, RollSpec(), args.songs, args.workers, args.calibration
    )
    splits, skipped = index["splits"], index["skipped"]
    assert isinstance(splits, dict) and isinstance(skipped, dict)
    counts = ", ".join(f"{len(v)} {k}" for k, v in splits.items())
    print(f"cache in {args.out}: {counts}, {len(skipped)} skipped, {index['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
