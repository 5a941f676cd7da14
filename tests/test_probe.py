"""probe_video and decode_frames on broken, odd and hostile files generated in tmp_path."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from diffbgm.errors import VideoError
from diffbgm.video.decode import DecodeOptions, decode_frames
from diffbgm.video.probe import ProbeLimits, VideoProbeError, probe_video
from diffbgm.video.types import VideoInfo
from tests.video_fixtures import (
    SyntheticShot,
    truncate,
    write_audio_only,
    write_png,
    write_raw_h264,
    write_video,
)


def reason_of(path: Path, limits: ProbeLimits = ProbeLimits()) -> str:
    with pytest.raises(VideoProbeError) as caught:
        probe_video(path, limits)
    assert isinstance(caught.value, VideoError)
    assert path.name in str(caught.value) or str(path) in str(caught.value)
    return caught.value.reason


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", with_audio=True)


def test_a_good_clip_is_described(clip: Path) -> None:
    info = probe_video(clip)
    assert info.container.startswith("mov,mp4")
    assert info.video_codec == "h264"
    assert (info.width, info.height) == (160, 96)
    assert info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(4.5, abs=0.1)
    assert info.has_audio and not info.variable_fps and info.rotation_deg == 0
    assert info.n_frames_estimate == pytest.approx(112, abs=2)
    assert info.size_bytes == clip.stat().st_size
    assert VideoInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info


def test_missing_empty_and_directory(tmp_path: Path) -> None:
    assert reason_of(tmp_path / "nope.mp4") == "missing"
    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert reason_of(empty) == "empty"
    with pytest.raises(VideoProbeError, match="not a file"):
        probe_video(tmp_path)


def test_truncated_files_are_called_damaged(clip: Path, tmp_path: Path) -> None:
    # MP4 written moov-last: the index is lost, FFmpeg cannot open it.
    assert reason_of(truncate(clip, tmp_path / "cut.mp4", 0.5)) == "corrupt"
    # WebM keeps its header (and stated duration) up front: the missing tail is noticed.
    webm = write_video(tmp_path / "full.webm", codec="libvpx")
    assert reason_of(truncate(webm, tmp_path / "cut.webm", 0.4)) == "corrupt"


def test_audio_only_file(tmp_path: Path) -> None:
    assert reason_of(write_audio_only(tmp_path / "song.mp4")) == "audio_only"


def test_png_and_text_renamed_mp4(tmp_path: Path) -> None:
    assert reason_of(write_png(tmp_path / "photo.mp4")) == "image"
    text = tmp_path / "notes.mp4"
    text.write_text("These are my holiday notes, not a video. Ünïcödé too.\n" * 20)
    assert reason_of(text) == "text"
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert reason_of(noise) in ("not_media", "corrupt")


def test_raw_stream_without_duration_is_measured(tmp_path: Path) -> None:
    info = probe_video(write_raw_h264(tmp_path / "raw.mp4"))
    assert info.container == "h264"
    assert info.duration_s == pytest.approx(4.5, abs=0.1)
    frames = decode_frames(tmp_path / "raw.mp4", info)
    assert np.all(np.diff(frames.times_s) > 0)
    assert frames.times_s[-1] == pytest.approx(4.4, abs=0.15)


def test_zero_size_frames_cannot_be_made_so_size_comes_from_the_bitstream(
    clip: Path, tmp_path: Path
) -> None:
    # FFmpeg refuses to write 0x0 video, and zeroing the MP4 sample-entry size is overridden by
    # the H.264 SPS: the frame size reported is the decodable one.
    data = bytearray(clip.read_bytes())
    entry = data.find(b"avc1")
    data[entry + 28 : entry + 32] = b"\0\0\0\0"
    patched = tmp_path / "zeroed.mp4"
    patched.write_bytes(bytes(data))
    assert (probe_video(patched).width, probe_video(patched).height) == (160, 96)


@pytest.mark.parametrize("fps", [7.3, Fraction(30000, 1001), Fraction(24000, 1001)])
def test_odd_frame_rates(tmp_path: Path, fps: float | Fraction) -> None:
    path = write_video(tmp_path / "odd.mp4", fps=fps)
    info = probe_video(path)
    assert info.fps == pytest.approx(float(fps), rel=1e-3)
    assert not info.variable_fps
    frames = decode_frames(path, info)
    assert frames.frame_rate == pytest.approx(min(float(fps), 12.0), rel=0.15)
    assert frames.times_s[-1] == pytest.approx(4.5, abs=0.3)


def test_variable_frame_rate(tmp_path: Path) -> None:
    steps = np.tile([0.02, 0.06, 0.1], 50)
    times = [t for t in np.cumsum(np.r_[0.0, steps]) if t < 4.5]
    path = write_video(tmp_path / "vfr.mp4", frame_times_s=times)
    info = probe_video(path)
    assert info.variable_fps
    frames = decode_frames(path, info, DecodeOptions(max_fps=10.0))
    gaps = np.diff(frames.times_s)
    assert gaps.min() >= 0.02 - 1e-6 and gaps.max() <= 0.2 + 1e-6
    assert frames.times_s[-1] == pytest.approx(times[-1], abs=0.11)


def test_rotated_video_is_decoded_upright(tmp_path: Path) -> None:
    path = write_video(tmp_path / "phone.mp4", rotation_deg=90)
    info = probe_video(path)
    assert info.rotation_deg == 90
    assert info.display_size == (96, 160)
    frames = decode_frames(path, info, DecodeOptions(long_side=160))
    assert frames.rgb.shape[1:] == (160, 96, 3)
    # Compare with FFmpeg's own autorotation of the first frame.
    from diffbgm.video.mux import ffmpeg_exe

    raw = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
         "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    reference = np.frombuffer(raw, np.uint8).reshape(160, 96, 3).astype(int)
    assert np.abs(frames.rgb[0].astype(int) - reference).mean() < 6


def test_limits(clip: Path) -> None:
    assert reason_of(clip, ProbeLimits(max_bytes=1000)) == "too_large"
    assert reason_of(clip, ProbeLimits(max_duration_s=2.0)) == "too_long"
    assert reason_of(clip, ProbeLimits(min_duration_s=10.0)) == "too_short"


@pytest.mark.parametrize(
    "name",
    ["my holiday clip.mp4", "-rf leading dash.mp4", "it's \"quoted\".mp4", "vidéo ünïcode 视频.mp4",
     "http:not-a-url.mp4", "a;b&c$(x).mp4"],
)  # fmt: skip
def test_hostile_file_names(tmp_path: Path, name: str) -> None:
    shots = (SyntheticShot(0.8, (200, 50, 50)), SyntheticShot(0.8, (50, 50, 200)))
    path = write_video(tmp_path / "plain.mp4", shots).rename(tmp_path / name)
    info = probe_video(path)
    assert info.path == path
    assert info.duration_s == pytest.approx(1.6, abs=0.1)
    assert decode_frames(path, info).n_frames > 10
