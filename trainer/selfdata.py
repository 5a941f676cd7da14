"""`python -m trainer selfdata`: a training cache of the model's own chosen music.

    python -m trainer selfdata --model checkpoints/diffbgm-small --songs 1-150 --bars 16 \
        --candidates 4 --branch-at 0 --out data_cache/self

Best-of-n self-training (rejection-sampling fine-tuning): the model composes the first bars
of training songs from their real conditions, several candidates a window with the window
critic keeping one (`--candidates`), and each song is written back in the POP909 cache's
format with its notes replaced by the composed ones. Everything else is the real song's:
chords, phrases, and the per-bar table the training windows' controls are measured on, so a
window's controls are the ones the music was composed for. Fine-tuning the student on it
(`trainer train --conditional-student --data OUT`) moves its own distribution towards the
candidates the critic prefers, at the cost of one candidate when sampling.

The valid split is the real one (the songs' files are copied), so validation losses stay
comparable with every other run. Songs 801-859 are never composed.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffbgm.checkpoint import load_checkpoint
from diffbgm.errors import DiffBGMError
from diffbgm.generation import generate_roll
from trainer.sample import SongJob, load_song_piece, roll_spec_of
from trainer.workers import worker_pool

# the cache's arrays with one row per 16th step, and those with one row per bar
STEP_ARRAYS = ("onset", "sustain", "velocity", "chord_pcs", "step_times_s")
BAR_ARRAYS = ("bar_starts", "bar_segment", "bar_table")


@dataclass(frozen=True)
class SelfDataOptions:
    model: str
    out: str
    data: str = "data_cache/pop909"
    songs: tuple[int, ...] = tuple(range(1, 151))
    bars: int = 16
    seed: int = 0
    workers: int = 2
    overrides: tuple[tuple[str, Any], ...] = ()  # generation knobs over the model's own


def cropped_song(
    arrays: dict[str, np.ndarray], bars: int, steps_per_bar: int = 16
) -> dict[str, np.ndarray]:
    """A cached song's arrays cut to its first `bars` bars, or fewer: up to the first bar
    that is not `steps_per_bar` steps long (the sampler composes whole bars from step 0)."""
    starts = arrays["bar_starts"].astype(np.int64)
    bar_ends = np.append(starts[1:], arrays["onset"].shape[0])
    regular = (starts == steps_per_bar * np.arange(len(starts))) & (
        bar_ends - starts == steps_per_bar
    )
    kept = min(bars, int(np.argmin(regular)) if not regular.all() else len(starts))
    end = kept * steps_per_bar
    cropped = dict(arrays)
    for name in STEP_ARRAYS:
        if name in cropped:
            cropped[name] = cropped[name][:end]
    for name in BAR_ARRAYS:
        cropped[name] = cropped[name][:kept]
    return cropped


def composed_song(
    arrays: dict[str, np.ndarray], onset: np.ndarray, sustain: np.ndarray
) -> dict[str, np.ndarray]:
    """The real song's arrays with the composed notes in place of its own (same steps)."""
    if onset.shape != arrays["onset"].shape or sustain.shape != onset.shape:
        raise DiffBGMError(
            f"composed notes {onset.shape} do not cover the song's {arrays['onset'].shape}"
        )
    out = dict(arrays)
    out["onset"] = onset.astype(np.uint8)
    out["sustain"] = (sustain | onset).astype(np.uint8)
    if "velocity" in out:
        # the training rolls carry no velocities; the per-bar table keeps the real ones, so
        # the velocity control is still the one the music was composed for
        out["velocity"] = np.where(onset, arrays["velocity"], 0).astype(arrays["velocity"].dtype)
    return out


def _compose(job: SongJob) -> dict[str, np.ndarray] | None:
    """The song composed, or None where fewer than a window's bars are regular."""
    torch.set_num_threads(1)
    loaded = load_checkpoint(job.model)
    steps_per_bar = roll_spec_of(loaded.config).steps_per_bar
    song_id = f"{job.song:03d}"
    with np.load(Path(job.data) / "songs" / f"{song_id}.npz") as data:
        arrays = cropped_song({name: data[name] for name in data.files}, job.bars, steps_per_bar)
    bars = len(arrays["bar_starts"])
    if bars * steps_per_bar < loaded.config.window_steps:
        return None
    piece = load_song_piece(Path(job.data), song_id, bars, loaded.config)
    notes = generate_roll(loaded, piece.conditions, job.generation, job.seed).notes
    return composed_song(arrays, notes.onset, notes.sustain)


def build_self_data(options: SelfDataOptions) -> Path:
    """Compose the songs (in `options.workers` processes) and write the cache; returns it."""
    held_out = [song for song in options.songs if song > 800]
    if held_out:
        raise DiffBGMError(
            f"songs {held_out[0]}-{held_out[-1]} are validation songs: compose songs up to 800"
        )
    source, out = Path(options.data), Path(options.out)
    index_file = source / "index.json"
    if not index_file.is_file():
        raise DiffBGMError(f"no POP909 cache at {source} (run `python -m trainer cache`)")
    if out.resolve() == source.resolve():
        raise DiffBGMError("--out must be another folder than --data")
    index = json.loads(index_file.read_text(encoding="utf-8"))
    cached = set(index["splits"]["train"])
    loaded = load_checkpoint(options.model)
    generation = replace(loaded.generation, **dict(options.overrides))
    jobs = [
        SongJob(options.model, generation, options.data, song, options.bars, options.seed + n)
        for n, song in enumerate(options.songs)
        if f"{song:03d}" in cached
    ]
    if not jobs:
        raise DiffBGMError(f"none of the songs is in the train split of {source}")
    (out / "songs").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    written: list[str] = []
    with worker_pool(max(1, options.workers)) as pool:
        for n, (job, arrays) in enumerate(zip(jobs, pool.map(_compose, jobs), strict=True), 1):
            song_id = f"{job.song:03d}"
            if arrays is None:
                print(f"song {song_id} skipped: its first bars are not whole 4/4 bars")
            else:
                np.savez_compressed(out / "songs" / f"{song_id}.npz", **arrays)  # type: ignore[arg-type]
                written.append(song_id)
            if n % 10 == 0 or n == len(jobs):
                print(f"{n}/{len(jobs)} songs composed, {time.perf_counter() - started:.0f} s")
    for song_id in index["splits"]["valid"]:
        shutil.copyfile(source / "songs" / f"{song_id}.npz", out / "songs" / f"{song_id}.npz")
    shutil.copyfile(source / "calibration.json", out / "calibration.json")
    index["splits"] = {"train": written, "valid": index["splits"]["valid"]}
    index["composed"] = {
        "model": str(options.model),
        "bars": options.bars,
        "seed": options.seed,
        "generation": generation.to_dict(),
    }
    (out / "index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return out
