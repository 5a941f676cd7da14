"""Conditions told something else than the truth, to measure what an input is worth to a
network: how much worse it predicts, or how differently it writes, when told another way of
playing or another tempo than each song's own (benchmarks/validation_loss.py,
benchmarks/noise_rhythm.py)."""

from __future__ import annotations

from diffbgm.controls import PLAYING_FEATURE, TEMPO_CENTRE_BPM, TEMPO_FEATURE, tempo_feature
from diffbgm.model.conditions import Conditions

PLAYING_PROBES = ("song", "flipped", "even", "wide")
TEMPO_PROBES = ("song", "centre", "double", "half")


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
