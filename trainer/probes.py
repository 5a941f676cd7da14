"""Conditions told something else than the truth, to measure what an input is worth to a
network: how much worse it predicts, or how differently it writes, when told another way of
playing, another tempo or another figuration than each song's own (benchmarks/validation_loss.py,
benchmarks/noise_rhythm.py)."""

from __future__ import annotations

import torch

from diffbgm.controls import (
    FIGURATION_FEATURE,
    FIGURATION_MAX,
    PLAYING_FEATURE,
    TEMPO_CENTRE_BPM,
    TEMPO_FEATURE,
    tempo_feature,
    typical_figuration_of_feature,
)
from diffbgm.model.conditions import Conditions

PLAYING_PROBES = ("song", "flipped", "even", "wide")
TEMPO_PROBES = ("song", "centre", "double", "half")
FIGURATION_PROBES = ("song", "typical", "none", "most")


def told_playing(cond: Conditions, playing: str) -> Conditions:
    """The conditions with the way of playing told as `playing`."""
    told = cond.global_.clone()
    if playing == "flipped":
        told[:, PLAYING_FEATURE] = 1 - told[:, PLAYING_FEATURE]
    elif playing in ("even", "wide"):
        told[:, PLAYING_FEATURE] = float(playing == "wide")
    elif playing != "song":
        raise ValueError(f"playing must be one of {', '.join(PLAYING_PROBES)}, got {playing!r}")
    return cond.with_(global_=told)


def told_tempo(cond: Conditions, tempo: str) -> Conditions:
    """The conditions with the tempo told as `tempo` (the feature is log2 of the tempo over
    90 BPM, so doubling adds 1)."""
    told = cond.global_.clone()
    if tempo == "centre":
        told[:, TEMPO_FEATURE] = tempo_feature(TEMPO_CENTRE_BPM)
    elif tempo in ("double", "half"):
        shift = 1.0 if tempo == "double" else -1.0
        told[:, TEMPO_FEATURE] = (told[:, TEMPO_FEATURE] + shift).clamp(-1.0, 1.0)
    elif tempo != "song":
        raise ValueError(f"tempo must be one of {', '.join(TEMPO_PROBES)}, got {tempo!r}")
    return cond.with_(global_=told)


def told_figuration(cond: Conditions, figuration: str) -> Conditions:
    """The conditions with the figuration told as `figuration`: `typical` the share typical of
    each piece's tempo (what the app tells), `none` 0, `most` FIGURATION_MAX."""
    told = cond.global_.clone()
    if figuration == "typical":
        tempos = told[:, TEMPO_FEATURE].tolist()
        told[:, FIGURATION_FEATURE] = torch.tensor(
            [typical_figuration_of_feature(tempo) for tempo in tempos],
            dtype=told.dtype,
            device=told.device,
        )
    elif figuration in ("none", "most"):
        told[:, FIGURATION_FEATURE] = 0.0 if figuration == "none" else FIGURATION_MAX
    elif figuration != "song":
        raise ValueError(
            f"figuration must be one of {', '.join(FIGURATION_PROBES)}, got {figuration!r}"
        )
    return cond.with_(global_=told)
