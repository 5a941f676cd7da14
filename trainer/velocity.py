"""`python -m trainer velocity`: train the velocity model on POP909's performed velocities.

    python -m trainer velocity --data data_cache/pop909 --run runs/velocity \
        --out diffbgm/assets/velocity --epochs 8 --threads 1

Every onset of the training songs (001-800) is one example: its features
(diffbgm.velocity.note_features, with the velocity control of its phrase exactly as the
diffusion model is conditioned: the phrase's mean onset velocity as a POP909 quantile, back
to MIDI units through the calibration) and its performed velocity. A small MLP predicts a
mean and a log-spread (Gaussian negative log-likelihood). Validation songs 801-830 give the
validation loss and, from their standardised residuals, how the residual is correlated
between the notes of one chord and from one onset step to the next (the sampling's
ResidualConfig). Songs 831-859 are left for the report.

Resumable: RUN/features.npz keeps the extracted examples, RUN/last/ the weights, the
optimiser state and the epoch, written after every epoch (atomically); a rerun continues.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffbgm.controls import DYNAMIC_CONTROLS
from diffbgm.errors import DiffBGMError
from diffbgm.music.calibration import Calibration
from diffbgm.music.roll import RollSpec
from diffbgm.velocity import (
    FEATURE_NAMES,
    MODE_BLOCK_STEPS,
    N_LEVELS,
    VELOCITY_CENTRE,
    VELOCITY_SCALE,
    ResidualConfig,
    VelocityConfig,
    VelocityModel,
    note_features,
    save_velocity_model,
)
from trainer.dataset import (
    CachedSong,
    load_cached_song,
    piece_conditions_for_song,
    way_of_playing,
)

VALID_SONGS = tuple(range(801, 831))  # choose on these; 831-859 are for the report


@dataclass(frozen=True)
class VelocityTrainConfig:
    hidden: tuple[int, ...] = (64, 64)
    epochs: int = 8
    batch: int = 2048
    lr: float = 2e-3
    seed: int = 0
    max_train_notes: int = 0  # > 0: a random subset of this many training notes
    # Sampling settings stored with the model, one pair per way of playing, each chosen on
    # the songs of 801-830 played that way with benchmarks/velocity_realism.py --playing
    # (docs/evaluation.md, "The way of playing as an input"); the residual and the share of
    # notes on one velocity are measured on the training songs played that way.
    residual_scale: float = 1.0
    mode_weight: float = 1.5
    wide_residual_scale: float = 1.4
    wide_mode_weight: float = 4.0


@dataclass(frozen=True)
class NoteSet:
    """Examples of many songs: features, velocities, and (song, step) of every note."""

    features: np.ndarray  # (N, F) float32
    velocity: np.ndarray  # (N,) float32 MIDI velocity
    song: np.ndarray  # (N,) int song number
    step: np.ndarray  # (N,) int step in the song


def song_notes(song: CachedSong, calibration: Calibration, spec: RollSpec) -> NoteSet:
    """The examples of one cached song (needs its performed velocities); its way of playing
    (even or wide) is read from its performed velocities (trainer.dataset.way_of_playing)."""
    if song.velocity is None:
        raise DiffBGMError(f"song {song.song_id}: the cache holds no velocities")
    conditions = piece_conditions_for_song(song, calibration, "phrases", spec)
    column = DYNAMIC_CONTROLS.index("velocity")
    raw = np.asarray(calibration.to_raw("velocity", conditions.dynamic[:, column].astype(float)))
    step_control = raw[conditions.segment_ids]
    steps, pitches, features = note_features(
        song.onset,
        song.sustain,
        step_control,
        conditions.segment_ids,
        spec.pitch_low,
        way_of_playing(song),
    )
    return NoteSet(
        features=features,
        velocity=song.velocity[steps, pitches].astype(np.float32),
        song=np.full(steps.size, int(song.song_id)),
        step=steps,
    )


def subset(notes: NoteSet, keep: np.ndarray) -> NoteSet:
    """The notes where `keep` (a boolean mask over them) holds."""
    return NoteSet(notes.features[keep], notes.velocity[keep], notes.song[keep], notes.step[keep])


def concat(sets: list[NoteSet]) -> NoteSet:
    return NoteSet(
        features=np.concatenate([s.features for s in sets]),
        velocity=np.concatenate([s.velocity for s in sets]),
        song=np.concatenate([s.song for s in sets]),
        step=np.concatenate([s.step for s in sets]),
    )


def collect_notes(cache: Path, numbers: list[int], calibration: Calibration) -> NoteSet:
    """Examples of the cached songs among `numbers` (songs not in the cache are skipped)."""
    spec = RollSpec()
    sets = []
    for number in numbers:
        path = cache / "songs" / f"{number:03d}.npz"
        if path.is_file():
            sets.append(song_notes(load_cached_song(path), calibration, spec))
    if not sets:
        raise DiffBGMError(f"none of the songs {numbers[0]}-{numbers[-1]} are in {cache}")
    return concat(sets)


def load_or_collect(
    run: Path, cache: Path, calibration: Calibration, train_songs: list[int]
) -> tuple[NoteSet, NoteSet]:
    """(train, valid) examples, extracted once and kept in RUN/features.npz."""
    stored = run / "features.npz"
    if stored.is_file():
        with np.load(stored) as data:
            sets = [
                NoteSet(
                    *(data[f"{part}_{name}"] for name in ("features", "velocity", "song", "step"))
                )
                for part in ("train", "valid")
            ]
        if sets[0].features.shape[1] == len(FEATURE_NAMES):
            return sets[0], sets[1]
    train = collect_notes(cache, train_songs, calibration)
    valid = collect_notes(cache, list(VALID_SONGS), calibration)
    run.mkdir(parents=True, exist_ok=True)
    arrays = {
        f"{part}_{name}": getattr(notes, name)
        for part, notes in (("train", train), ("valid", valid))
        for name in ("features", "velocity", "song", "step")
    }
    np.savez(run / "features.tmp.npz", **arrays)
    (run / "features.tmp.npz").replace(stored)
    return train, valid


def build_network(n_features: int, hidden: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, 2))  # mean, log-spread (network units)
    return nn.Sequential(*layers)


def gaussian_nll(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of targets (network units) under N(mean, exp(log_std)²)."""
    mean, log_std = output[:, 0], output[:, 1].clamp(-6.0, 3.0)
    return (log_std + 0.5 * ((target - mean) / log_std.exp()) ** 2).mean() + 0.5 * math.log(
        2 * math.pi
    )


def standardiser(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = features.mean(axis=0).astype(np.float32)
    scale = features.std(axis=0).astype(np.float32)
    return mean, np.where(scale > 1e-6, scale, 1.0).astype(np.float32)


def to_velocity_model(
    network: nn.Sequential, config: VelocityConfig, mean: np.ndarray, scale: np.ndarray
) -> VelocityModel:
    linears = [m for m in network if isinstance(m, nn.Linear)]
    weights = [
        (m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in linears
    ]
    return VelocityModel(config, weights, mean, scale)


def residual_correlations(z: np.ndarray, notes: NoteSet) -> tuple[float, float]:
    """(notes struck together, notes of consecutive onset steps): the mean product of the
    standardised residuals of such pairs over their mean square."""
    key = notes.song.astype(np.int64) * 1_000_000 + notes.step
    order = np.argsort(key, kind="stable")
    key, z = key[order], z[order]
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    counts = np.diff(np.append(starts, key.size)).astype(np.float64)
    sums = np.add.reduceat(z, starts)
    squares = np.add.reduceat(z * z, starts)
    variance = float(np.mean(z * z))
    pairs = counts * (counts - 1)  # ordered pairs of distinct notes of one step
    chord = float((sums**2 - squares).sum() / max(pairs.sum(), 1.0)) / variance
    same_song = (key[starts][1:] // 1_000_000) == (key[starts][:-1] // 1_000_000)
    cross = sums[:-1] * sums[1:]
    cross_pairs = counts[:-1] * counts[1:]
    step = float(cross[same_song].sum() / cross_pairs[same_song].sum()) / variance
    return chord, step


def measured_residual(model: VelocityModel, notes: NoteSet) -> ResidualConfig:
    """The residual's shape and per-song width, measured on (training) songs."""
    mean, spread = model.predict(notes.features)
    z = (notes.velocity - mean) / spread
    songs, inverse = np.unique(notes.song, return_inverse=True)
    song_scale = np.sqrt(np.bincount(inverse, z * z) / np.bincount(inverse))
    levels = np.linspace(0.0, 1.0, N_LEVELS)
    shape = np.quantile(z / song_scale[inverse], levels)
    piece_scale = np.quantile(song_scale, levels)
    shares, offsets = mode_statistics(notes, mean, spread)
    return ResidualConfig(
        shape=tuple(float(v) for v in shape),
        piece_scale=tuple(float(v) for v in piece_scale),
        mode_share=tuple(float(v) for v in np.quantile(shares, levels)),
        mode_offset=tuple(float(v) for v in np.quantile(offsets, levels)),
    )


def mode_statistics(
    notes: NoteSet, mean: np.ndarray, spread: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per 4-bar block of every song (>= 4 notes): the share of its notes at its most common
    velocity, and where that velocity lies: (mode - mean prediction) / mean spread."""
    key = notes.song.astype(np.int64) * 100_000 + notes.step // MODE_BLOCK_STEPS
    order = np.lexsort((notes.velocity, key))
    key, velocity = key[order], notes.velocity[order]
    mean, spread = mean[order], spread[order]
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    ends = np.append(starts[1:], key.size)
    shares, offsets = [], []
    for begin, end in zip(starts, ends, strict=True):
        if end - begin < 4:
            continue
        values, counts = np.unique(velocity[begin:end], return_counts=True)
        shares.append(counts.max() / (end - begin))
        block_mean, block_spread = mean[begin:end].mean(), spread[begin:end].mean()
        offsets.append((values[counts.argmax()] - block_mean) / block_spread)
    return np.asarray(shares), np.asarray(offsets)


def _save_last(run: Path, network: nn.Module, optimiser: torch.optim.Optimizer, epoch: int) -> None:
    tmp = run / "last.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in network.state_dict().items()}, str(tmp / "model.safetensors")
    )
    state = optimiser.state_dict()
    moments = {}
    for index, slot in state["state"].items():
        for name, value in slot.items():
            moments[f"{index}.{name}"] = torch.as_tensor(value).contiguous()
    save_file(moments, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"epoch": epoch}))
    final = run / "last"
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def _load_last(run: Path, network: nn.Module, optimiser: torch.optim.Optimizer) -> int:
    """Epochs already done (0 for a fresh run); restores weights and optimiser state."""
    last = run / "last"
    if not (last / "state.json").is_file():
        return 0
    network.load_state_dict(load_file(str(last / "model.safetensors")))
    moments = load_file(str(last / "optimizer.safetensors"))
    state = optimiser.state_dict()
    for key, value in moments.items():
        index, name = key.split(".", 1)
        state["state"].setdefault(int(index), {})[name] = value
    optimiser.load_state_dict(state)
    return int(json.loads((last / "state.json").read_text())["epoch"])


def train_velocity(
    train: NoteSet,
    valid: NoteSet,
    config: VelocityTrainConfig,
    run: Path | None = None,
    log: bool = True,
) -> tuple[VelocityModel, dict[str, float]]:
    """Train (or continue) the network; returns the model with its measured residual and
    the validation figures."""
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    features, target = train.features, train.velocity
    if config.max_train_notes and features.shape[0] > config.max_train_notes:
        keep = np.random.default_rng(config.seed).choice(
            features.shape[0], config.max_train_notes, replace=False
        )
        features, target = features[keep], target[keep]
    mean, scale = standardiser(features)
    x = torch.from_numpy((features - mean) / scale)
    y = torch.from_numpy((target - VELOCITY_CENTRE) / VELOCITY_SCALE)
    xv = torch.from_numpy((valid.features - mean) / scale)
    yv = torch.from_numpy((valid.velocity - VELOCITY_CENTRE) / VELOCITY_SCALE)
    network = build_network(x.shape[1], config.hidden)
    optimiser = torch.optim.Adam(network.parameters(), lr=config.lr)
    done = _load_last(run, network, optimiser) if run is not None else 0
    for epoch in range(done, config.epochs):
        started = time.perf_counter()
        # the epoch's order depends on the seed and the epoch only: a resumed run repeats it
        order = torch.randperm(x.shape[0], generator=generator.manual_seed(config.seed + epoch))
        lr = config.lr * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))
        for group in optimiser.param_groups:
            group["lr"] = lr
        network.train()
        total = 0.0
        for begin in range(0, x.shape[0], config.batch):
            batch = order[begin : begin + config.batch]
            loss = gaussian_nll(network(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * batch.numel()
        with torch.no_grad():
            valid_loss = float(gaussian_nll(network(xv), yv))
        if run is not None:
            _save_last(run, network, optimiser, epoch + 1)
        if log:
            print(
                f"epoch {epoch + 1}/{config.epochs}: train nll {total / x.shape[0]:.4f}, "
                f"valid nll {valid_loss:.4f} ({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
    velocity_config = VelocityConfig(hidden=config.hidden)
    model = to_velocity_model(network.eval(), velocity_config, mean, scale)
    wide = train.features[:, FEATURE_NAMES.index("wide_playing")] > 0.5
    residual = measured_residual(model, subset(train, ~wide))
    wide_residual = measured_residual(model, subset(train, wide)) if wide.any() else residual
    chord_correlation, step_correlation = residual_correlations(
        (valid.velocity - model.predict(valid.features)[0]) / model.predict(valid.features)[1],
        valid,
    )
    predicted, spread = model.predict(valid.features)
    figures = {
        "valid_nll": float(gaussian_nll(network(xv), yv).detach()),
        "valid_mae_of_mean": float(np.mean(np.abs(predicted - valid.velocity))),
        "valid_mae_of_control_alone": float(
            np.mean(
                np.abs(valid.features[:, 0] * VELOCITY_SCALE + VELOCITY_CENTRE - valid.velocity)
            )
        ),
        "valid_mean_spread": float(spread.mean()),
        "train_notes": float(x.shape[0]),
        "valid_notes": float(xv.shape[0]),
        "residual_correlation_same_step": chord_correlation,
        "residual_correlation_next_step": step_correlation,
        "piece_scale_median": residual.piece_scale[N_LEVELS // 2],
        "wide_piece_scale_median": wide_residual.piece_scale[N_LEVELS // 2],
        "train_songs_even": float(np.unique(train.song[~wide]).size),
        "train_songs_wide": float(np.unique(train.song[wide]).size),
    }
    meta: dict[str, object] = {
        "training": {**vars(config), "hidden": list(config.hidden)},
        "validation": figures,
    }
    residual = replace(residual, scale=config.residual_scale, mode_weight=config.mode_weight)
    wide_residual = replace(
        wide_residual, scale=config.wide_residual_scale, mode_weight=config.wide_mode_weight
    )
    config_out = replace(velocity_config, residual=residual, wide_residual=wide_residual, meta=meta)
    return replace(model, config=config_out), figures


def run_training(
    cache: Path, run: Path, out: Path | None, config: VelocityTrainConfig, train_songs: list[int]
) -> dict[str, float]:
    calibration = Calibration.load(cache / "calibration.json")
    started = time.perf_counter()
    train, valid = load_or_collect(run, cache, calibration, train_songs)
    print(
        f"{train.features.shape[0]} training notes, {valid.features.shape[0]} validation notes "
        f"({time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    model, figures = train_velocity(train, valid, config, run)
    save_velocity_model(model, run / "export")
    if out is not None:
        save_velocity_model(model, out)
    return figures
