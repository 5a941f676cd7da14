"""One error family for everything a user can get wrong; messages are meant for people."""

from __future__ import annotations


class DiffBGMError(Exception):
    """Base class: a problem with the user's input or environment, explained in plain words."""


class VideoError(DiffBGMError):
    """The video cannot be used (corrupt, empty, no video stream, over the limits, ...)."""


class MidiError(DiffBGMError):
    """A MIDI file or its annotations cannot be read."""


class AnnotationError(MidiError):
    """A POP909 annotation file (beats, chords, keys, phrases) is missing or malformed."""


class RenderError(DiffBGMError):
    """Audio rendering or muxing failed (FluidSynth/ffmpeg missing or failing)."""


class CheckpointError(DiffBGMError):
    """A model checkpoint cannot be found or loaded."""


class PlanError(DiffBGMError):
    """A music plan or one of its overrides is invalid."""


class GenerationError(DiffBGMError):
    """A generation setting is out of range or unknown."""
