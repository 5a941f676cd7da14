"""The piano-roll picture: the notes, the segments and the cuts land where their times say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from diffbgm.plot import ONSET_RGBA, SUSTAIN_RGBA, plot_pianoroll, roll_image


def _rgb(rgba: tuple[float, float, float, float]) -> np.ndarray:
    return np.round(np.array(rgba[:3]) * 255).astype(int)


def test_roll_image_colours_struck_and_held_steps_and_leaves_silence_clear() -> None:
    onset = np.zeros((8, 5), dtype=bool)
    sustain = np.zeros((8, 5), dtype=bool)
    sustain[2:6, 3] = True
    onset[2, 3] = True
    image = roll_image(onset, sustain)
    assert image.shape == (5, 8, 4)  # pitch rows, time columns
    assert tuple(image[3, 2]) == ONSET_RGBA
    assert all(tuple(image[3, t]) == SUSTAIN_RGBA for t in range(3, 6))
    assert image[:, :, 3].sum() == 4  # nothing else is drawn


def _columns_with(pixels: np.ndarray, colour: np.ndarray) -> np.ndarray:
    hit = np.all(np.abs(pixels[..., :3].astype(int) - colour) <= 2, axis=-1)
    return np.nonzero(hit.any(axis=0))[0]


def test_a_held_note_and_a_cut_are_drawn_at_their_times(tmp_path: Path) -> None:
    steps, pitches, step_s = 160, 40, 0.125  # 20 s
    onset = np.zeros((steps, pitches), dtype=bool)
    sustain = np.zeros((steps, pitches), dtype=bool)
    sustain[40:80, 20] = True  # 5 s to 10 s
    onset[40, 20] = True
    out = plot_pianoroll(
        onset,
        sustain,
        np.arange(steps) * step_s,
        pitch_low=40,
        out_path=tmp_path / "roll.png",
        segment_bounds_s=[(0.0, 12.0), (12.0, 20.0)],
        cut_times_s=[15.0],
        title="E major · 96.5 BPM · seed 0",
    )
    pixels = np.asarray(Image.open(out).convert("RGB"))
    note = _columns_with(pixels, _rgb(SUSTAIN_RGBA))
    red = (pixels[..., 0] > 170) & (pixels[..., 1] < 130) & (pixels[..., 2] < 130)
    cut = np.nonzero(red.sum(axis=0) > pixels.shape[0] // 2)[0]  # a line the axes' height
    assert note.size and cut.size
    struck = _columns_with(pixels, _rgb(ONSET_RGBA))
    assert struck.size and struck.max() < note.min() <= struck.max() + 2  # struck, then held
    # the note sounds from 5 s to 10 s and the cut is at 15 s: as far after the note's end
    # as the note is long (within 2 %: edge pixels are blended)
    left, right = struck.min(), note.max()
    assert right - left > 100
    assert abs((cut.mean() - right) - (right - left)) <= 0.02 * (right - left)
