"""`python -m trainer critic`: train the window critic that picks among sampled candidates.

    python -m trainer critic --model checkpoints/diffbgm-small --songs 601-800 --workers 2

The model composes the first bars of each training song from its real conditions, one
candidate a window, exactly as it samples (the model's generation settings). Every sampler
window (4 bars, starting where the sampler starts them) is decoded with the plain thresholds,
as the sampler decodes candidates, and its note features (`diffbgm.realism`) are one
"generated" example; the real song's notes at the same steps are one "real" example. A random
forest learns to tell them apart; its song-grouped cross-validated accuracy is printed, and
the forest is written as `critic.safetensors` into the checkpoint folder
(`diffbgm.generation.critic`). Songs 801-859 are never used: 801-830 choose the number of
candidates, 831-859 report.

The features are kept in `--features` (an .npz): a rerun with other forest settings reads
them instead of composing again, as long as the songs, the bars, the seed, the networks'
weights and the generation settings are the ones they were composed with (a critic learns one
model's giveaways: features of another model's music would train the wrong critic).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from diffbgm.checkpoint import load_checkpoint, networks_sha256
from diffbgm.errors import DiffBGMError
from diffbgm.generation import GenerationConfig, generate_roll
from diffbgm.generation.critic import CRITIC_NAME, WindowCritic, forest_from_sklearn
from diffbgm.generation.decoding import decode_roll
from diffbgm.generation.windows import window_starts
from diffbgm.realism import RealismConfig, feature_names, two_sample_test, window_features
from trainer.sample import SongJob, load_song_piece
from trainer.workers import worker_pool


@dataclass(frozen=True)
class CriticOptions:
    model: str
    data: str = "data_cache/pop909"
    songs: tuple[int, ...] = tuple(range(601, 801))
    bars: int = 32
    seed: int = 0
    workers: int = 2
    trees: int = 100
    min_leaf: int = 4
    features: str = "runs/critic/features.npz"
    out: str | None = None  # default: the model folder's critic.safetensors


def _song_windows(job: SongJob) -> tuple[np.ndarray, np.ndarray]:
    """(generated, real) feature rows of one song's sampler windows (windows with too few
    notes on either side are left out, as the realism test leaves them out)."""
    torch.set_num_threads(1)
    loaded = load_checkpoint(job.model)
    song = load_song_piece(Path(job.data), f"{job.song:03d}", job.bars, loaded.config)
    raw = generate_roll(loaded, song.conditions, job.generation, job.seed).raw
    features = RealismConfig(pitch_low=loaded.config.pitch_low)
    window = loaded.config.window_steps
    generated, real = [], []
    for start in window_starts(raw.shape[1], window, job.generation.overlap_steps):
        if start + window > raw.shape[1]:
            continue  # a trailing partial window: the critic rates whole windows
        span = slice(start, start + window)
        notes = decode_roll(
            raw[:, span], job.generation.onset_threshold, job.generation.sustain_threshold
        )
        if min(notes.onset.sum(), song.onset[span].sum()) < features.min_onsets:
            continue
        generated.append(window_features(notes.onset, notes.sustain, None, features))
        real.append(window_features(song.onset[span], song.sustain[span], None, features))
    width = len(feature_names(False))
    return np.reshape(generated, (-1, width)), np.reshape(real, (-1, width))


def composition_identity(options: CriticOptions, generation: GenerationConfig) -> str | None:
    """What the composed windows depend on besides the songs: the networks' weights, the
    generation settings, the bars and the seed (None for a model without local weights,
    whose music is then never taken from the cache)."""
    networks = networks_sha256(options.model)
    if networks is None:
        return None
    settings = json.dumps(asdict(generation), sort_keys=True)
    return f"{networks} {options.bars} {options.seed} {settings}"


def collect_windows(options: CriticOptions) -> dict[str, np.ndarray]:
    """Feature rows of generated and real windows and the song of each, composing the songs
    (in `options.workers` processes) unless `options.features` already holds them."""
    held_out = sorted(song for song in options.songs if song >= 801)
    if held_out:
        raise DiffBGMError(
            f"songs {held_out[0]}-{held_out[-1]} are validation songs (801-830 choose the "
            "settings, 831-859 report): train the critic on songs up to 800"
        )
    loaded = load_checkpoint(options.model)
    generation = replace(loaded.generation, candidates=1)
    composer = composition_identity(options, generation)
    cached = Path(options.features)
    if cached.is_file() and composer is not None:
        data = dict(np.load(cached))
        if (
            data["asked"].tolist() == sorted(set(options.songs))
            and str(data.get("composer", "")) == composer
        ):
            print(f"features from {cached}")
            return data
        print(f"{cached} holds other songs or another model's music: composing again")
    # songs the cache lacks (POP909 leaves some numbers out) are skipped, not an error
    songs_dir = Path(options.data) / "songs"
    jobs = [
        SongJob(options.model, generation, options.data, song, options.bars, options.seed + n)
        for n, song in enumerate(options.songs)
        if (songs_dir / f"{song:03d}.npz").is_file()
    ]
    if not jobs:
        raise DiffBGMError(f"none of the songs is in the cache {options.data}")
    started = time.perf_counter()
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    with worker_pool(max(1, options.workers)) as pool:
        for n, result in enumerate(pool.map(_song_windows, jobs), start=1):
            rows.append(result)
            if n % 20 == 0 or n == len(jobs):
                print(f"{n}/{len(jobs)} songs composed, {time.perf_counter() - started:.0f} s")
    songs = np.concatenate(
        [np.full(len(gen), job.song) for job, (gen, _) in zip(jobs, rows, strict=True)]
    )
    data = {
        "generated": np.concatenate([gen for gen, _ in rows]),
        "real": np.concatenate([real for _, real in rows]),
        "songs": songs,
        "asked": np.asarray(sorted(set(options.songs))),
        "composer": np.asarray(composer or ""),
    }
    cached.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cached, **data)
    return data


def train_critic(options: CriticOptions) -> tuple[WindowCritic, float]:
    """Fit the forest on the collected windows: (critic, song-grouped CV accuracy)."""
    from sklearn.ensemble import RandomForestClassifier

    data = collect_windows(options)
    generated, real, songs = data["generated"], data["real"], data["songs"].astype(str)
    if len(generated) < 10:
        raise DiffBGMError(f"only {len(generated)} windows to learn from: give more songs")
    config = RealismConfig(trees=options.trees, seed=options.seed)
    names = feature_names(False)
    check = two_sample_test(real, list(songs), generated, list(songs), names, "forest", config)
    forest = RandomForestClassifier(
        n_estimators=options.trees,
        min_samples_leaf=options.min_leaf,
        class_weight="balanced",
        random_state=options.seed,
        n_jobs=max(1, options.workers),
    )
    x = np.vstack([real, generated])
    y = np.concatenate([np.zeros(len(real), int), np.ones(len(generated), int)])
    forest.fit(x, y)
    info = {
        "trained_on": f"songs {min(options.songs)}-{max(options.songs)}, first {options.bars} "
        f"bars, {len(generated)} windows a side",
        "model": str(options.model),
        "cv_accuracy": f"{check.accuracy:.3f}",
    }
    loaded = load_checkpoint(options.model)
    critic = WindowCritic(
        forest_from_sklearn(forest), RealismConfig(pitch_low=loaded.config.pitch_low), info
    )
    return critic, check.accuracy


def run_critic(options: CriticOptions) -> Path:
    critic, accuracy = train_critic(options)
    out = Path(options.out) if options.out else Path(options.model) / CRITIC_NAME
    critic.save(out)
    size = out.stat().st_size / 1e6
    print(f"grouped cross-validated accuracy (forest, generated vs real windows): {accuracy:.3f}")
    print(f"wrote {out} ({critic.forest.left.size} nodes, {size:.1f} MB)")
    return out
