"""A window critic: of several sampled candidates for a window, keep the one that looks most real.

The network's 4-bar windows are told from real POP909 ones by their texture (chord sizes that
vary too much, a low top voice, too few notes off the beat: docs/evaluation.md, "Realism
test"), and guiding the sampler with a critic's gradient wrote dissonant notes instead
(session 28). Choosing among whole candidates cannot write anything the network did not:
the sampler draws N candidates of a window from N noise streams, decodes each with the plain
thresholds, and keeps the one this critic rates least likely to be generated (discriminator
rejection sampling, Azadi et al. 2019, as a best-of-N choice).

Realism alone drifts from what the video asks: choosing by it lowered register obedience from
0.80 to 0.67 on songs 801-830 (4 candidates), so the choice also weighs each candidate's
distance from the register its segments ask for (`AskedRegister`).

The critic is a random forest over the realism test's note features (`diffbgm.realism`),
trained by `python -m trainer critic` on generated and real windows of training songs, and
stored as flat arrays in `critic.safetensors` beside the weights: no pickle, and a forest is
evaluated here in NumPy without scikit-learn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from diffbgm.generation.decoding import decode_roll
from diffbgm.realism import RealismConfig, feature_names, window_features

CRITIC_NAME = "critic.safetensors"
LEAF = -1  # child index of a leaf node


@dataclass(frozen=True)
class Forest:
    """Decision trees as flat node arrays; node i of tree k is row roots[k] + i.

    left / right: global row of each child (LEAF at leaves); feature / threshold: the split
    (go left where x[feature] <= threshold); value: P(generated) at a leaf."""

    roots: np.ndarray  # (trees,) int64
    left: np.ndarray  # (nodes,) int64
    right: np.ndarray  # (nodes,) int64
    feature: np.ndarray  # (nodes,) int64
    threshold: np.ndarray  # (nodes,) float64
    value: np.ndarray  # (nodes,) float64

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, features) -> (n,) mean P(generated) over the trees."""
        # scikit-learn compares float32 features with its thresholds: do the same
        x = np.asarray(x, dtype=np.float32).astype(np.float64)
        node = np.broadcast_to(self.roots[None, :], (x.shape[0], self.roots.size)).copy()
        rows = np.arange(x.shape[0])[:, None]
        while True:
            inner = self.left[node] != LEAF
            if not inner.any():
                break
            goes_left = x[rows, self.feature[node]] <= self.threshold[node]
            child = np.where(goes_left, self.left[node], self.right[node])
            node = np.where(inner, child, node)
        return self.value[node].mean(axis=1)


@dataclass(frozen=True)
class AskedRegister:
    """The register a window's segments ask for, and how much distance from it counts."""

    segment_ids: np.ndarray  # (T,) the segment of each step of the window
    pitch: np.ndarray  # (T,) the mean MIDI pitch of onsets its segment's control asks for
    weight: float  # added to P(generated) per octave of distance

    def distance(self, onset: np.ndarray, pitch_low: int) -> float:
        """Octaves between each segment's mean onset pitch and the asked one, averaged over
        the window's segments weighted by their steps; segments without notes count 0."""
        steps, pitches = np.nonzero(onset)
        total, weights = 0.0, 0
        for segment in np.unique(self.segment_ids):
            inside = self.segment_ids[steps] == segment
            span = self.segment_ids == segment
            if inside.any():
                mean_pitch = float(pitches[inside].mean()) + pitch_low
                total += abs(mean_pitch - float(self.pitch[span].mean())) / 12.0 * span.sum()
            weights += int(span.sum())
        return total / max(weights, 1)


@dataclass(frozen=True)
class WindowCritic:
    """Rates decoded windows by how likely they are generated; picks the most real-looking."""

    forest: Forest
    features: RealismConfig  # pitch_low and steps_per_bar of the rolls it rates
    info: dict[str, str]  # what it was trained on (written to the file's metadata)

    def p_generated(self, onsets: list[np.ndarray], sustains: list[np.ndarray]) -> np.ndarray:
        """P(generated) of decoded windows, each (T, P) bool onset and sustain."""
        rows = [
            window_features(on, sus, None, self.features)
            for on, sus in zip(onsets, sustains, strict=True)
        ]
        return self.forest.predict(np.stack(rows))

    def choose(
        self,
        candidates: np.ndarray,
        onset_threshold: float,
        sustain_threshold: float,
        register: AskedRegister | None = None,
    ) -> int:
        """Index of the candidate (N, 2, T, P) in [-1, 1] that looks most real when decoded
        with the plain thresholds, plus `register`'s weighted distance where given (the first
        one on a tie, so N = 1 changes nothing)."""
        if candidates.shape[0] == 1:
            return 0
        decoded = [decode_roll(c, onset_threshold, sustain_threshold) for c in candidates]
        scores = self.p_generated([d.onset for d in decoded], [d.sustain for d in decoded])
        if register is not None and register.weight > 0:
            pitch_low = self.features.pitch_low
            scores = scores + register.weight * np.array(
                [register.distance(d.onset, pitch_low) for d in decoded]
            )
        return int(np.argmin(scores))

    def save(self, path: str | Path) -> None:
        arrays = {
            "roots": self.forest.roots.astype(np.int32),
            "left": self.forest.left.astype(np.int32),
            "right": self.forest.right.astype(np.int32),
            "feature": self.forest.feature.astype(np.int32),
            "threshold": self.forest.threshold,
            "value": self.forest.value.astype(np.float32),
        }
        meta = {
            "format": "diffbgm-critic",
            "features": json.dumps(list(feature_names(False))),
            "pitch_low": str(self.features.pitch_low),
            "steps_per_bar": str(self.features.steps_per_bar),
            **self.info,
        }
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path), meta)

    @classmethod
    def load(cls, path: str | Path) -> WindowCritic:
        """Read a critic file; ValueError where it is not one or its features differ."""
        from safetensors import safe_open

        with safe_open(str(path), "np") as handle:
            meta = dict(handle.metadata() or {})
        if meta.get("format") != "diffbgm-critic":
            raise ValueError(f"{path} is not a diffbgm critic")
        if json.loads(meta["features"]) != list(feature_names(False)):
            raise ValueError(f"{path} rates other window features than this version computes")
        arrays = load_file(str(path))
        forest = Forest(
            roots=arrays["roots"].astype(np.int64),
            left=arrays["left"].astype(np.int64),
            right=arrays["right"].astype(np.int64),
            feature=arrays["feature"].astype(np.int64),
            threshold=arrays["threshold"].astype(np.float64),
            value=arrays["value"].astype(np.float64),
        )
        features = RealismConfig(
            pitch_low=int(meta["pitch_low"]), steps_per_bar=int(meta["steps_per_bar"])
        )
        info = {
            k: v
            for k, v in meta.items()
            if k not in ("format", "features", "pitch_low", "steps_per_bar")
        }
        return cls(forest, features, info)


def forest_from_sklearn(model: object) -> Forest:
    """The flat arrays of a fitted scikit-learn RandomForestClassifier (classes 0 = real,
    1 = generated)."""
    trees = model.estimators_  # type: ignore[attr-defined]
    roots, parts, offset = [], [], 0
    for estimator in trees:
        tree = estimator.tree_
        n = tree.node_count
        leaf = tree.children_left == -1
        counts = tree.value[:, 0, :]  # (n, 2) class weights (or shares) per node
        share = counts[:, 1] / np.maximum(counts.sum(axis=1), 1e-12)
        parts.append(
            (
                np.where(leaf, LEAF, tree.children_left + offset),
                np.where(leaf, LEAF, tree.children_right + offset),
                np.where(leaf, 0, tree.feature),
                np.where(leaf, 0.0, tree.threshold),
                share,
            )
        )
        roots.append(offset)
        offset += n
    left, right, feature, threshold, value = (np.concatenate(p) for p in zip(*parts, strict=True))
    return Forest(
        roots=np.asarray(roots, dtype=np.int64),
        left=left.astype(np.int64),
        right=right.astype(np.int64),
        feature=feature.astype(np.int64),
        threshold=threshold.astype(np.float64),
        value=value.astype(np.float64),
    )
