"""decode_frames against a plain per-frame PyAV decode, and frame_series against its per-frame
definitions, on generated videos of odd sizes, rates and rotations.

decode_frames scales every kept frame with one reused swscale context and writes it into a
preallocated array; these tests pin that this gives exactly the pixels a frame's own
`to_ndarray(width=..., height=...)` gives (what it did before), at the same times.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from diffbgm.errors import VideoError
from diffbgm.video.decode import DecodedFrames, DecodeOptions, analysis_size, decode_frames
from diffbgm.video.features import frame_series
from diffbgm.video.probe import probe_video
from diffbgm.video.shots import _black_frames
from diffbgm.video.types import VideoInfo
from tests.video_fixtures import SyntheticShot, truncate, write_tiny_video, write_video

SHOTS = (
    SyntheticShot(0.9, (200, 60, 40), 0.0),
    SyntheticShot(0.7, (40, 80, 200), 150.0),
    SyntheticShot(0.8, (8, 8, 8), 0.0, square_colour=(12, 12, 12)),  # black
    SyntheticShot(0.8, (220, 200, 60), 300.0),
)


def per_frame_reference(path: Path, info: VideoInfo, long_side: int) -> dict[float, np.ndarray]:
    """Every frame of `path` (time in s -> upright analysis-size RGB), each converted on its own
    as decode_frames did before it reused one scaler."""
    out_w, out_h = analysis_size(info, long_side)
    scale_w, scale_h = (out_h, out_w) if info.rotation_deg % 180 == 90 else (out_w, out_h)
    frames = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start_s = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        for index, frame in enumerate(container.decode(stream)):
            t = (float(frame.time) if frame.time is not None else index / info.fps) - start_s
            image = frame.to_ndarray(
                width=scale_w, height=scale_h, format="rgb24", interpolation="FAST_BILINEAR"
            )
            frames[round(t, 6)] = np.rot90(image, info.rotation_deg // 90)
    return frames


def assert_same_as_reference(path: Path, options: DecodeOptions = DecodeOptions()) -> None:
    info = probe_video(path)
    frames = decode_frames(path, info, options)
    reference = per_frame_reference(path, info, options.long_side)
    assert frames.rgb.flags.c_contiguous and frames.rgb.dtype == np.uint8
    assert frames.rgb.shape == (frames.n_frames, *reference[0.0].shape)
    for t, image in zip(frames.times_s, frames.rgb, strict=True):
        assert np.array_equal(image, reference[round(float(t), 6)]), f"frame at {t:.3f} s"


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("plain.mp4", {}),
        ("ntsc_odd_aspect.mp4", {"fps": Fraction(30000, 1001), "size": (322, 180)}),
        ("fps60_skips_nonref.mp4", {"fps": 60, "size": (256, 144)}),
        ("fps7_below_analysis_rate.mp4", {"fps": 7.3}),
        ("rotated.mp4", {"rotation_deg": 90, "size": (192, 108)}),
        ("vp8.webm", {"codec": "libvpx", "size": (320, 180), "fps": 24}),
    ],
)
def test_decode_equals_per_frame_conversion(tmp_path: Path, name: str, kwargs: dict) -> None:
    assert_same_as_reference(write_video(tmp_path / name, SHOTS, **kwargs))


def test_variable_frame_rate_equals_per_frame_conversion(tmp_path: Path) -> None:
    times = np.cumsum(np.tile([0.02, 0.05, 0.11], 30))
    path = write_video(tmp_path / "vfr.mp4", SHOTS, frame_times_s=[0.0, *times[times < 3.1]])
    assert probe_video(path).variable_fps
    assert_same_as_reference(path, DecodeOptions(max_fps=10.0))


@pytest.mark.parametrize("size", [(161, 97), (3, 401), (1, 1)])
def test_odd_sizes_equal_per_frame_conversion(tmp_path: Path, size: tuple[int, int]) -> None:
    assert_same_as_reference(write_tiny_video(tmp_path / "odd.mp4", *size))


def test_buffer_grows_when_the_stated_duration_is_short(tmp_path: Path) -> None:
    """A container that understates its duration still gives every frame (the preallocated
    array grows), the same ones as with the true duration."""
    path = write_video(tmp_path / "clip.mp4", SHOTS)
    info = probe_video(path)
    truth = decode_frames(path, info)
    short = decode_frames(path, replace(info, duration_s=0.3))
    assert short.n_frames == truth.n_frames > 30
    assert np.array_equal(short.times_s, truth.times_s)
    assert np.array_equal(short.rgb, truth.rgb)


def test_a_file_cut_short_after_probing_gives_a_clear_error(tmp_path: Path) -> None:
    """MP4 keeps its index at the end: cut short it cannot be opened, which is a VideoError
    naming the file (not FFmpeg's own exception). WebM cut short decodes up to the cut."""
    mp4 = write_video(tmp_path / "clip.mp4", SHOTS, with_audio=True)
    with pytest.raises(VideoError, match="'cut.mp4' cannot be decoded"):
        decode_frames(truncate(mp4, tmp_path / "cut.mp4", 0.5), probe_video(mp4))
    webm = write_video(tmp_path / "clip.webm", SHOTS, codec="libvpx")
    info = probe_video(webm)
    whole = decode_frames(webm, info)
    cut = decode_frames(truncate(webm, tmp_path / "cut.webm", 0.5), info)
    assert 0 < cut.n_frames < whole.n_frames
    assert np.array_equal(cut.rgb, whole.rgb[: cut.n_frames])


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> DecodedFrames:
    path = write_video(tmp_path_factory.mktemp("series") / "s.mp4", SHOTS, size=(200, 120))
    return decode_frames(path)


def test_frame_series_matches_its_per_frame_definitions(frames: DecodedFrames) -> None:
    series = frame_series(frames, chunk=7)  # chunks that do not divide the frame count
    luma = frames.gray().astype(np.float64) / 255.0
    rgb = frames.rgb.astype(np.float64) / 255.0
    red, blue = rgb[..., 0].mean(axis=(1, 2)), rgb[..., 2].mean(axis=(1, 2))
    saturation = [cv2.cvtColor(f, cv2.COLOR_RGB2HSV)[..., 1].mean() / 255.0 for f in frames.rgb]
    steps = np.abs(np.diff(luma, axis=0)).mean(axis=(1, 2))
    np.testing.assert_allclose(series.brightness, luma.mean(axis=(1, 2)), atol=1e-6)
    np.testing.assert_allclose(series.contrast, luma.std(axis=(1, 2)), atol=1e-6)
    np.testing.assert_allclose(series.saturation, saturation, atol=1e-6)
    np.testing.assert_allclose(
        series.warmth, (red - blue) / np.maximum(red + blue, 1e-3), atol=1e-5
    )
    np.testing.assert_allclose(series.difference, np.r_[0.0, steps], atol=1e-6)
    assert series.motion_px_s[0] == 0.0 and series.motion_px_s.max() > 0.0


def test_frame_series_does_not_depend_on_the_chunk(frames: DecodedFrames) -> None:
    one, other = frame_series(frames, chunk=256), frame_series(frames, chunk=5)
    for name in ("brightness", "contrast", "saturation", "warmth", "motion_px_s", "difference"):
        assert np.array_equal(getattr(one, name), getattr(other, name)), name


def test_gray_does_not_depend_on_the_chunk(frames: DecodedFrames) -> None:
    assert np.array_equal(frames.gray(chunk=3), frames.gray(chunk=1000))


def test_black_frames_are_mean_values_under_the_level(frames: DecodedFrames) -> None:
    mean = frames.rgb.reshape(frames.n_frames, -1).mean(axis=1) / 255.0
    assert np.array_equal(_black_frames(frames, 0.06), mean < 0.06)
    assert _black_frames(frames, 0.06).any() and not _black_frames(frames, 0.06).all()


def test_frame_series_of_one_frame_and_of_strided_frames() -> None:
    """A one-frame video has no difference to measure; frames that are a rotated view (not
    contiguous) measure as a contiguous copy does (luma may differ by one level at a rounding
    tie: numpy's matrix product takes another path for strided input)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 40, 64, 3), dtype=np.uint8)
    one = frame_series(DecodedFrames(np.zeros(1), rgb[:1], duration_s=0.1))
    assert one.difference.tolist() == [0.0] and one.motion_px_s.tolist() == [0.0]
    turned = np.rot90(rgb, 1, axes=(1, 2))
    assert not turned.flags.c_contiguous
    times = np.arange(5) / 12.0
    strided = frame_series(DecodedFrames(times, turned, duration_s=0.5))
    copied = frame_series(DecodedFrames(times, np.ascontiguousarray(turned), duration_s=0.5))
    assert np.array_equal(strided.saturation, copied.saturation)
    assert np.array_equal(strided.warmth, copied.warmth)
    for name in ("brightness", "contrast", "difference"):
        np.testing.assert_allclose(getattr(strided, name), getattr(copied, name), atol=1e-3)
