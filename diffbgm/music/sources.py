"""Audio read a stretch at a time: in memory, a raw float32 file, or a WAV file.

The level of a mix (diffbgm.music.level) is measured and applied in passes over the audio; a
long video's mix is 200 MB a channel pair every ten minutes, so the passes read it from disk
in stretches instead of holding it. Every source answers `read(start, stop)` with exactly
stop - start float32 frames, zeros past its end (a stem shorter than the video is padded
that way), and may be read from several threads at once (each read opens the file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile


class AudioSource(Protocol):
    """(frames, channels) float32 audio, read a stretch at a time."""

    @property
    def frames(self) -> int: ...

    @property
    def channels(self) -> int: ...

    def read(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, channels) float32; zeros where the audio has no frames."""
        ...


def _padded(values: np.ndarray, start: int, stop: int, channels: int) -> np.ndarray:
    if values.shape[0] == stop - start:
        return values
    out = np.zeros((stop - start, channels), dtype=values.dtype)
    out[: values.shape[0]] = values
    return out


@dataclass(frozen=True)
class ArrayAudio:
    """An in-memory (samples, channels) array as a source (1-D: one channel)."""

    audio: np.ndarray

    @property
    def frames(self) -> int:
        return int(self.audio.shape[0])

    @property
    def channels(self) -> int:
        return 1 if self.audio.ndim == 1 else int(self.audio.shape[1])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Float64 audio stays float64 (pyloudnorm's precision, for comparisons with it)."""
        part = self.audio[max(0, start) : max(0, stop)]
        if not np.issubdtype(part.dtype, np.floating):
            part = part.astype(np.float32)
        part = part.reshape(part.shape[0], self.channels)
        return _padded(part, start, stop, self.channels)


@dataclass(frozen=True)
class RawAudio:
    """Interleaved float32 frames in a headerless file (the mix while it is being made)."""

    path: Path
    frames: int
    channels: int

    @classmethod
    def silent(cls, path: Path, frames: int, channels: int) -> RawAudio:
        """A file of `frames` silent frames (sparse where the file system allows)."""
        with open(path, "wb") as handle:
            handle.truncate(frames * channels * 4)
        return cls(path, frames, channels)

    def read(self, start: int, stop: int) -> np.ndarray:
        stop = max(start, stop)
        count = max(0, min(stop, self.frames) - start)
        values = np.fromfile(
            self.path,
            dtype=np.float32,
            count=count * self.channels,
            offset=start * self.channels * 4,
        ).reshape(count, self.channels)
        return _padded(values, start, stop, self.channels)

    def write(self, start: int, values: np.ndarray) -> None:
        """Write (n, channels) `values` over the frames from `start` on."""
        with open(self.path, "r+b") as handle:
            handle.seek(start * self.channels * 4)
            handle.write(np.ascontiguousarray(values, dtype=np.float32).tobytes())

    def add(self, start: int, values: np.ndarray) -> None:
        """Add (n, channels) float32 `values` to the frames from `start` on, in place."""
        with open(self.path, "r+b") as handle:
            handle.seek(start * self.channels * 4)
            current = np.fromfile(handle, dtype=np.float32, count=values.size)
            current = current.reshape(values.shape) + values.astype(np.float32, copy=False)
            handle.seek(start * self.channels * 4)
            handle.write(current.tobytes())


@dataclass(frozen=True)
class WavAudio:
    """A sound file that libsndfile reads (FluidSynth's float WAVs); its length and channels
    are read once, when made with `of`."""

    path: Path
    frames: int
    channels: int
    sample_rate: int

    @classmethod
    def of(cls, path: Path) -> WavAudio:
        info = soundfile.info(str(path))
        return cls(path, int(info.frames), int(info.channels), int(info.samplerate))

    def read(self, start: int, stop: int) -> np.ndarray:
        count = max(0, min(stop, self.frames) - start)
        with soundfile.SoundFile(str(self.path)) as handle:
            handle.seek(min(start, self.frames))
            values = handle.read(frames=count, dtype="float32", always_2d=True)
        return _padded(values, start, stop, self.channels)


@dataclass(frozen=True)
class FadedAudio:
    """`source` cut to `frames` frames (zeros after its end) with a linear fade-out over the
    last `fade` of them: how a render longer than the video is fitted to it."""

    source: AudioSource
    frames: int
    fade: int

    @property
    def channels(self) -> int:
        return self.source.channels

    def read(self, start: int, stop: int) -> np.ndarray:
        values = self.source.read(start, max(start, min(stop, self.frames)))
        values = _padded(values, start, stop, self.channels)
        fade_from = self.frames - self.fade
        lo, hi = max(start, fade_from), min(stop, self.frames)
        if self.fade > 0 and lo < hi:
            ramp = np.linspace(1.0, 0.0, self.fade, dtype=np.float32)
            values = values.copy()  # a source may hand out a view of its own samples
            values[lo - start : hi - start] *= ramp[lo - fade_from : hi - fade_from, None]
        return values


def as_source(audio: np.ndarray | AudioSource) -> AudioSource:
    """An in-memory array as a source (ArrayAudio); a source as it is."""
    return ArrayAudio(audio) if isinstance(audio, np.ndarray) else audio


def stretches(frames: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) of consecutive stretches of at most `size` frames covering `frames`."""
    return [(start, min(frames, start + size)) for start in range(0, frames, size)]
