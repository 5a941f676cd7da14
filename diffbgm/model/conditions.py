"""What the denoiser is conditioned on, as one batch of tensors.

This is the contract between the data (POP909 cache, BGM909 features, a video's MusicPlan)
and the model. Shapes use B = batch, T = 16th-note steps in the window, P = pitches,
S = segment slots in the window (max_segments), Dd / Ds / Dg = feature sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from diffbgm.model.config import ModelConfig


@dataclass(frozen=True)
class Conditions:
    chord: torch.Tensor  # (B, 1, T, P) float {0,1}: 1 where the pitch's class is a tone of the chord sounding at that step
    segment_ids: torch.Tensor  # (B, T) long in [0, S): the segment each step belongs to
    segment_mask: torch.Tensor  # (B, S) bool: which segment slots are real
    dynamic: torch.Tensor  # (B, S, Dd) float: per-segment dynamic features ("how busy")
    semantic: torch.Tensor  # (B, S, Ds) float: per-segment semantic features ("what it is")
    global_: torch.Tensor  # (B, Dg) float: global features (key, ...)
    # (B, 3, T, P) float {0,1} or None: the music each step repeats (onset, sustain of the
    # earlier phrase's step it recalls) and, in the third channel, 1 where a step has such
    # music; read only by a model with `recall_input` (None = nothing recalled)
    recalled: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Conditions:
        return self._map(lambda value: value.to(device))

    def index(self, idx: torch.Tensor | slice) -> Conditions:
        return self._map(lambda value: value[idx])

    def _map(self, change: Callable[[torch.Tensor], torch.Tensor]) -> Conditions:
        values: dict[str, Any] = {
            name: None if value is None else change(value) for name, value in self._values().items()
        }
        return Conditions(**values)

    def cat(self, other: Conditions) -> Conditions:
        """Batch-concatenate (used to run conditional and unconditional passes together).
        Where only one side has `recalled`, the other side's is all zeros (nothing recalled)."""
        mine, theirs = (
            self._recalled_filled(other)._values(),
            other._recalled_filled(self)._values(),
        )
        values: dict[str, Any] = {
            name: None if value is None else torch.cat([value, theirs[name]])
            for name, value in mine.items()
        }
        return Conditions(**values)

    def _recalled_filled(self, like: Conditions) -> Conditions:
        """These conditions with zeros as `recalled` where `like` has one and they do not."""
        if self.recalled is not None or like.recalled is None:
            return self
        shape = (self.batch_size, *like.recalled.shape[1:])
        return replace(self, recalled=like.recalled.new_zeros(shape))

    def _values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def with_(self, **changes: torch.Tensor) -> Conditions:
        return replace(self, **changes)

    @property
    def batch_size(self) -> int:
        return int(self.chord.shape[0])


@dataclass(frozen=True)
class PieceConditions:
    """Conditions for a whole piece (a song or a video's plan), as numpy arrays.

    Windows for training or sampling are cut from it with `window`. N = segments in the piece.
    Chords are stored as pitch-class sets so transposition is a roll of the 12 columns.
    """

    chord_pcs: np.ndarray  # (T, 12) {0,1}: pitch classes of the chord sounding at each step
    segment_ids: np.ndarray  # (T,) int in [0, N): segment of each step, non-decreasing
    dynamic: np.ndarray  # (N, Dd) float
    semantic: np.ndarray  # (N, Ds) float
    global_: np.ndarray  # (Dg,) float; for POP909 the key (see diffbgm.controls.key_features)
    # (N,) int or None: per segment, an earlier segment whose music it takes up again (a
    # repeated phrase, a returning scene), -1 for none. Used by the sampler, not the network.
    recalls: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.recalls is None:
            return
        recalls = np.asarray(self.recalls, dtype=np.int64)
        n = self.dynamic.shape[0]
        if recalls.shape != (n,):
            raise ValueError(f"recalls needs one entry per segment ({n}), got {recalls.shape}")
        later = recalls >= np.arange(n)
        if (recalls < -1).any() or later.any():
            raise ValueError("a segment can only recall an earlier segment (or -1 for none)")
        object.__setattr__(self, "recalls", recalls)

    @property
    def n_steps(self) -> int:
        return int(self.segment_ids.shape[0])

    def window(self, start: int, length: int, max_segments: int) -> WindowConditions:
        """Steps [start, start+length) with segments renumbered from 0.

        Steps past the end of the piece are padded with the last segment and no chord.
        If the window holds more than `max_segments` segments, the last ones are merged
        into slot max_segments-1 (its features are those of the first merged segment).
        """
        end = min(start + length, self.n_steps)
        ids = self.segment_ids[start:end]
        pcs = np.zeros((length, 12), dtype=np.float32)
        pcs[: end - start] = self.chord_pcs[start:end]
        if end - start < length:
            ids = np.concatenate([ids, np.full(length - (end - start), ids[-1], dtype=ids.dtype)])
        present = np.unique(ids)  # sorted global segment ids in this window
        slot_of = {int(g): min(i, max_segments - 1) for i, g in enumerate(present)}
        local = np.array([slot_of[int(g)] for g in ids], dtype=np.int64)
        n_slots = min(len(present), max_segments)
        dyn = np.zeros((max_segments, self.dynamic.shape[1]), dtype=np.float32)
        sem = np.zeros((max_segments, self.semantic.shape[1]), dtype=np.float32)
        dyn[:n_slots] = self.dynamic[present[:n_slots]]
        sem[:n_slots] = self.semantic[present[:n_slots]]
        mask = np.zeros(max_segments, dtype=bool)
        mask[:n_slots] = True
        return WindowConditions(pcs, local, mask, dyn, sem, self.global_.astype(np.float32))

    def with_global_feature(self, index: int, value: float) -> PieceConditions:
        """A copy with global feature `index` (e.g. controls.TEMPO_FEATURE) set to `value`."""
        glob = self.global_.copy()
        glob[index] = value
        return replace(self, global_=glob)

    def transpose(self, semitones: int) -> PieceConditions:
        """Shift the chords by `semitones`; a key one-hot in global_[:12] moves with them."""
        glob = self.global_.copy()
        if glob.shape[0] >= 12:
            glob[:12] = np.roll(glob[:12], semitones)
        return replace(self, chord_pcs=np.roll(self.chord_pcs, semitones, axis=1), global_=glob)


@dataclass(frozen=True)
class WindowConditions:
    """One window's conditions, numpy, no batch axis; S = max_segments slots."""

    chord_pcs: np.ndarray  # (T, 12)
    segment_ids: np.ndarray  # (T,) int64 in [0, S)
    segment_mask: np.ndarray  # (S,) bool
    dynamic: np.ndarray  # (S, Dd)
    semantic: np.ndarray  # (S, Ds)
    global_: np.ndarray  # (Dg,)


def model_global(global_: torch.Tensor, global_dim: int) -> torch.Tensor:
    """(B, Dg) -> (B, global_dim): the global features a model reads. Conditions carry the
    key, the way of playing, the tempo and the figuration (controls.N_GLOBAL_FEATURES); a
    model built before an input existed reads the features before it alone."""
    if global_.shape[-1] < global_dim:
        raise ValueError(
            f"the model reads {global_dim} global features, the conditions have "
            f"{global_.shape[-1]} (build them with diffbgm.controls.global_features)"
        )
    return global_[..., :global_dim]


def chord_roll(chord_pcs: np.ndarray, pitch_low: int, n_pitches: int) -> np.ndarray:
    """(T, 12) pitch-class sets -> (T, n_pitches) chord-tone mask on the roll's pitch axis."""
    pitch_classes = (pitch_low + np.arange(n_pitches)) % 12
    return chord_pcs[:, pitch_classes].astype(np.float32)


def stack_windows(windows: list[WindowConditions], pitch_low: int, n_pitches: int) -> Conditions:
    """Batch windows into model-ready tensors."""
    chord = np.stack([chord_roll(w.chord_pcs, pitch_low, n_pitches) for w in windows])[:, None]
    return Conditions(
        chord=torch.from_numpy(chord),
        segment_ids=torch.from_numpy(np.stack([w.segment_ids for w in windows])).long(),
        segment_mask=torch.from_numpy(np.stack([w.segment_mask for w in windows])),
        dynamic=torch.from_numpy(np.stack([w.dynamic for w in windows])).float(),
        semantic=torch.from_numpy(np.stack([w.semantic for w in windows])).float(),
        global_=torch.from_numpy(np.stack([w.global_ for w in windows])).float(),
    )


def two_segment_conditions(
    config: ModelConfig, batch: int = 2, seed: int = 0, chord_density: float = 0.3
) -> Conditions:
    """Random conditions whose window is cut into two segments at its middle.

    For tests and benchmarks: random features and a random chord-tone mask."""
    gen = torch.Generator().manual_seed(seed)
    steps, slots = config.window_steps, config.max_segments
    ids = torch.zeros(batch, steps, dtype=torch.long)
    ids[:, steps // 2 :] = 1
    mask = torch.zeros(batch, slots, dtype=torch.bool)
    mask[:, :2] = True
    chord = torch.rand(batch, 1, steps, config.n_pitches, generator=gen) < chord_density
    return Conditions(
        chord=chord.float(),
        segment_ids=ids,
        segment_mask=mask,
        dynamic=torch.rand(batch, slots, config.dynamic_dim, generator=gen),
        semantic=torch.rand(batch, slots, config.semantic_dim, generator=gen),
        global_=torch.rand(batch, config.global_dim, generator=gen),
    )
