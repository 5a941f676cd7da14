"""The control vocabulary shared by the data, the model and the plan.

Every control value the model sees lies in [0, 1]. Dynamic and density-like controls are
*quantiles* of their distribution over POP909 training segments (0.5 = a typical POP909
segment), so a plan made from a video and a segment cut from a song speak the same units.
The quantile tables that turn raw values (onsets per bar, MIDI pitch, ...) into these units
live in the calibration file written when the training cache is built.

`relative_change` is here, not in diffbgm.metrics, because the plan (contrast at cuts), the
sampler (edge contrast) and the evaluation must measure a change of level alike, and the plan
may not import the metrics.
"""

from __future__ import annotations

import math

# Per segment, "how busy": these steer the late (fine) denoising steps.
DYNAMIC_CONTROLS: tuple[str, ...] = (
    "density",  # onsets per bar, as a POP909 quantile
    "velocity",  # mean MIDI velocity of onsets, as a quantile
    "register",  # mean MIDI pitch of onsets, as a quantile
    "polyphony",  # mean number of sounding pitches per 16th step, as a quantile
)

# Per segment, "what it is": these steer the early (coarse) denoising steps.
SEMANTIC_CONTROLS: tuple[str, ...] = (
    "melodic",  # 1 if the segment carries a lead melody (POP909 uppercase phrase), else 0
    "intro",  # 1 for an opening segment (POP909 phrase 'i')
    "outro",  # 1 for a closing segment (POP909 phrase 'o')
    "minor_share",  # share of the segment's chord time on minor-type chords, in [0, 1]
    "harmonic_rhythm",  # chord changes per bar, as a quantile
    "position",  # segment start / piece length, in [0, 1]: where in the piece we are
)

# Global tokens, visible to every music frame: the key, the way the piece is played, its tempo
# and its figuration.
N_KEY_FEATURES = 14  # tonic pitch class one-hot (12) + mode one-hot (major, minor)
# POP909's performances come two ways: evenly (the velocities of a 4-bar window spread by 5-8)
# or with wide dynamics (13-20), and the notes differ with them (docs/evaluation.md, "Two ways
# of playing"). The evaluation passes the real song's way; the app asks the user.
PLAYINGS: tuple[str, ...] = ("even", "wide")
DEFAULT_PLAYING = "even"
# The roll's grid is the 16th of a beat at any tempo, so without the tempo a network cannot tell
# a ballad at 60 BPM, which POP909 fills with 16th-note figures (a third of its onsets on the
# odd 16ths), from a song at 120, which moves in 8ths (a twentieth): docs/evaluation.md, "The
# tempo as an input". The feature is log2(tempo / 90 BPM), clipped to [-1, 1] (45-180 BPM).
TEMPO_CENTRE_BPM = 90.0
# The tempo alone did not teach a network to write those figures (session 58), so the piece
# also says how figured it is: the share of its onsets on the odd 16ths (metrics.odd_16th_share
# of the whole song; a song's predicts its 4-bar windows' at r = 0.82). The app, which has no
# song, takes the share typical of its tempo: the least-squares line over POP909's training
# songs, share = 0.129 - 0.269 * log2(tempo / 90 BPM) (r = 0.68; python
# benchmarks/figuration_tempo.py prints the fit), clipped to [0, FIGURATION_MAX].
FIGURATION_AT_CENTRE = 0.129
FIGURATION_PER_OCTAVE = -0.269
FIGURATION_MAX = 0.6  # the most figured training song: 0.615
# key + wide playing (1) or even (0) + tempo + figuration. A model reads the first
# ModelConfig.global_dim of them, so one built before an input existed reads those before it.
N_GLOBAL_FEATURES = N_KEY_FEATURES + 3
PLAYING_FEATURE = N_KEY_FEATURES  # where each sits in the global vector
TEMPO_FEATURE = N_KEY_FEATURES + 1
FIGURATION_FEATURE = N_KEY_FEATURES + 2


def key_features(tonic_pc: int, minor: bool) -> list[float]:
    """One-hot key vector of length N_KEY_FEATURES: 12 tonic pitch classes, then major/minor."""
    vec = [0.0] * N_KEY_FEATURES
    vec[tonic_pc % 12] = 1.0
    vec[13 if minor else 12] = 1.0
    return vec


def tempo_feature(tempo_bpm: float) -> float:
    """log2(tempo / TEMPO_CENTRE_BPM), clipped to [-1, 1]: 0 at 90 BPM, -1 at 45, +1 at 180."""
    if not math.isfinite(tempo_bpm) or tempo_bpm <= 0:
        raise ValueError(f"tempo must be a positive number of beats per minute, got {tempo_bpm}")
    return float(min(max(math.log2(tempo_bpm / TEMPO_CENTRE_BPM), -1.0), 1.0))


def typical_figuration(tempo_bpm: float) -> float:
    """The share of onsets on the odd 16ths typical of a POP909 song at this tempo (0.29 at
    60 BPM, 0.13 at 90, 0.02 at 120), in [0, FIGURATION_MAX]."""
    return typical_figuration_of_feature(tempo_feature(tempo_bpm))


def typical_figuration_of_feature(tempo: float) -> float:
    """`typical_figuration` of a tempo already given as its feature (`tempo_feature`), as a
    network's conditions carry it."""
    share = FIGURATION_AT_CENTRE + FIGURATION_PER_OCTAVE * tempo
    return float(min(max(share, 0.0), FIGURATION_MAX))


def figuration_feature(share: float) -> float:
    """The figuration as the network reads it: the share of onsets on the odd 16ths, in
    [0, FIGURATION_MAX]."""
    if not math.isfinite(share) or share < 0:
        raise ValueError(f"figuration must be a share of onsets in [0, 1], got {share}")
    return float(min(share, FIGURATION_MAX))


def global_features(
    tonic_pc: int,
    minor: bool,
    playing: str = DEFAULT_PLAYING,
    tempo_bpm: float = TEMPO_CENTRE_BPM,
    figuration: float | None = None,
) -> list[float]:
    """The piece's global vector, length N_GLOBAL_FEATURES: the key, then 1 if the piece is
    played with wide dynamics (0 evenly), then `tempo_feature(tempo_bpm)`, then the figuration
    (`figuration_feature`; None takes `typical_figuration(tempo_bpm)`)."""
    if playing not in PLAYINGS:
        raise ValueError(f"playing must be one of {', '.join(PLAYINGS)}, got {playing!r}")
    share = typical_figuration(tempo_bpm) if figuration is None else figuration
    return [
        *key_features(tonic_pc, minor),
        float(playing == "wide"),
        tempo_feature(tempo_bpm),
        figuration_feature(share),
    ]


def relative_change(a: float, b: float) -> float:
    """|b - a| over the mean of the two (how much a level changes, e.g. onsets per bar across
    a boundary); 0 when both are 0."""
    mean = (a + b) / 2
    return abs(b - a) / mean if mean > 0 else 0.0
