"""Muxing: an H.264 video kept whole is copied, not re-encoded; everything else is encoded."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diffbgm.errors import RenderError
from diffbgm.video.mux import (
    VideoTrackJob,
    encode_sound_track,
    ffmpeg_exe,
    join_tracks,
    mux_music,
    video_can_be_copied,
)
from diffbgm.video.probe import probe_video
from tests.app_server import write_test_video


def _sound(path: Path) -> np.ndarray:
    """Every decoded sample of the first audio stream, (channels, samples)."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray() for f in container.decode(container.streams.audio[0])]
    return np.concatenate(frames, axis=1)


def _packets(path: Path) -> list[bytes]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [bytes(p) for p in container.demux(stream) if p.size]


@pytest.fixture()
def clip_and_music(tmp_path: Path) -> tuple[Path, Path]:
    clip = write_test_video(tmp_path / "clip.mp4", seconds=3.0, cut_every_s=1.0)
    music = tmp_path / "music.wav"
    sf.write(music, 0.1 * np.sin(np.linspace(0, 3000, 3 * 22050)), 22050)
    return clip, music


def test_copy_rule() -> None:
    from tests.test_app_api import stand_in_report

    info = stand_in_report(0).video_info  # 64x48 H.264, 8 s, 25 fps
    assert video_can_be_copied(info, 8.0)
    assert not video_can_be_copied(info, 6.0)  # cut inside the video: re-encode
    assert not video_can_be_copied(replace(info, video_codec="vp8"), 8.0)
    assert not video_can_be_copied(replace(info, width=63), 8.0)  # odd: padded
    assert not video_can_be_copied(None, 8.0)


def test_only_an_odd_or_unknown_size_is_padded_when_encoded() -> None:
    from diffbgm.video.mux import _video_codec_args
    from tests.test_app_api import stand_in_report

    info = replace(stand_in_report(0).video_info, video_codec="vp8")  # 64x48
    assert "-vf" not in _video_codec_args(False, info)
    assert "-vf" in _video_codec_args(False, replace(info, height=47))
    assert "-vf" in _video_codec_args(False, None)
    assert _video_codec_args(True, replace(info, video_codec="hevc"))[:2] == ["-c:v", "copy"]


def test_an_h264_clip_is_copied_packet_for_packet(
    clip_and_music: tuple[Path, Path], tmp_path: Path
) -> None:
    clip, music = clip_and_music
    info = probe_video(clip)
    copied = mux_music(
        clip, music, tmp_path / "copied.mp4", info.duration_s, has_original_audio=False, info=info
    )
    encoded = mux_music(
        clip, music, tmp_path / "encoded.mp4", info.duration_s, has_original_audio=False
    )
    assert _packets(copied) == _packets(clip)
    assert _packets(encoded) != _packets(clip)
    out = probe_video(copied)
    assert out.has_audio and out.duration_s == pytest.approx(info.duration_s, abs=0.1)


# --- the video track encoded in the background (issue 20) -----------------------------------


@pytest.fixture()
def vp8_clip(tmp_path: Path) -> Path:
    from tests.video_fixtures import write_video

    return write_video(tmp_path / "clip.webm", codec="libvpx")


def test_a_copyable_stream_needs_no_background_job(
    clip_and_music: tuple[Path, Path], tmp_path: Path
) -> None:
    clip, _ = clip_and_music
    info = probe_video(clip)
    assert VideoTrackJob.start(clip, info, info.duration_s, tmp_path) is None


def test_the_track_is_encoded_idle_and_copied_into_the_mp4(vp8_clip: Path, tmp_path: Path) -> None:
    info = probe_video(vp8_clip)
    music = tmp_path / "music.wav"
    sf.write(music, 0.1 * np.sin(np.linspace(0, 3000, int(info.duration_s * 22050))), 22050)
    job = VideoTrackJob.start(vp8_clip, info, info.duration_s, tmp_path)
    assert job is not None
    # idle class from the start (the analysis and the sampler keep their cores)
    assert os.sched_getscheduler(job.pid) == os.SCHED_IDLE
    track = job.result()
    assert probe_video(track).video_codec == "h264" and not probe_video(track).has_audio
    settings = track.read_bytes()  # x264 writes its options into the stream (an SEI)
    assert b"rc=cqp" in settings and b" qp=23" in settings  # one constant quantiser
    out = mux_music(
        vp8_clip,
        music,
        tmp_path / "video.mp4",
        info.duration_s,
        has_original_audio=False,
        info=info,
        video_track=track,
    )
    assert _packets(out) == _packets(track)  # copied, not encoded a second time
    muxed = probe_video(out)
    assert muxed.has_audio and muxed.video_codec == "h264"
    assert muxed.duration_s == pytest.approx(info.duration_s, abs=0.1)
    job.cancel()
    assert not track.exists() and not job.log_path.exists()


def test_cancel_stops_a_running_encoder(vp8_clip: Path, tmp_path: Path) -> None:
    info = probe_video(vp8_clip)
    job = VideoTrackJob.start(vp8_clip, info, info.duration_s, tmp_path)
    assert job is not None
    job.cancel()
    with pytest.raises(ChildProcessError):  # reaped: no zombie left behind
        os.waitpid(job.pid, os.WNOHANG)
    assert not job.out_path.exists()


def test_a_failing_encode_names_the_reason(vp8_clip: Path, tmp_path: Path) -> None:
    info = probe_video(vp8_clip)
    broken = tmp_path / "broken.webm"
    broken.write_bytes(b"not a video at all" * 100)
    job = VideoTrackJob.start(broken, replace(info, path=broken), info.duration_s, tmp_path)
    assert job is not None
    with pytest.raises(RenderError, match="could not encode the picture of 'broken.webm'"):
        job.result()
    assert not job.out_path.exists()


def test_the_sound_encoded_apart_and_joined_equals_the_one_step_mux(tmp_path: Path) -> None:
    """The pipeline encodes the sound as soon as the mix is written, while the picture is still
    encoded, and then only copies both streams: the MP4 must hold the same sound, the
    original ducked under the music, and the track's picture packet for packet."""
    from tests.video_fixtures import write_video

    clip = write_video(tmp_path / "clip.mkv", codec="libvpx", with_audio=True)
    info = probe_video(clip)
    music = tmp_path / "music.wav"
    sf.write(music, 0.1 * np.sin(np.linspace(0, 3000, int(info.duration_s * 22050))), 22050)
    job = VideoTrackJob.start(clip, info, info.duration_s, tmp_path)
    assert job is not None and info.has_audio
    sound = encode_sound_track(clip, music, tmp_path / "sound.m4a", info.duration_s)
    assert _sound(sound).shape[1] > 0  # sound alone: no picture in it
    track = job.result()
    joined = join_tracks(track, sound, tmp_path / "joined.mp4", info.duration_s)
    one_step = mux_music(
        clip, music, tmp_path / "one.mp4", info.duration_s, info=info, video_track=track
    )
    assert np.array_equal(_sound(joined), _sound(one_step))
    assert _packets(joined) == _packets(track)
    import av

    for mp4 in (joined, one_step):  # the picture first, as players and the app expect
        with av.open(str(mp4)) as container:
            assert [stream.type for stream in container.streams] == ["video", "audio"]
    assert not list(tmp_path.glob("*.partial*"))
    job.cancel()


def test_a_failed_join_names_the_step_and_leaves_nothing(
    clip_and_music: tuple[Path, Path], tmp_path: Path
) -> None:
    clip, music = clip_and_music
    not_sound = tmp_path / "sound.m4a"
    not_sound.write_bytes(b"no sound here" * 50)
    with pytest.raises(RenderError, match="could not join the picture and the sound"):
        join_tracks(clip, not_sound, tmp_path / "video.mp4", 3.0)
    assert not (tmp_path / "video.mp4").exists() and not list(tmp_path.glob("*.partial*"))
    with pytest.raises(RenderError, match="unknown audio mode"):
        encode_sound_track(clip, music, tmp_path / "s.m4a", 3.0, audio="loud")  # type: ignore[arg-type]


def _amplitude(sound: np.ndarray, rate: int, frequency: float, start: float, end: float) -> float:
    """Amplitude of one sine frequency in a stretch of a mono signal (its projection)."""
    piece = sound[int(start * rate) : int(end * rate)]
    phase = 2 * np.pi * frequency * np.arange(piece.size) / rate
    return float(2 * np.hypot((piece * np.sin(phase)).mean(), (piece * np.cos(phase)).mean()))


@pytest.mark.parametrize("voice_level", [0.2, 0.02])
def test_dialogue_lowers_the_music_only_while_the_video_speaks(
    voice_level: float, tmp_path: Path
) -> None:
    """A 440 Hz "voice" sounding from 1 to 2 s and from 3 to 4 s over room noise (-66 dBFS),
    under a steady 1 kHz "music": with "dialogue" the music dips by 8 dB or more while the
    voice sounds, for a loud recording (-17 dBFS) and a quiet one (-37 dBFS: the threshold
    follows the recording's loudness), and is itself again between words and half a second
    after; the voice is as loud as with "keep"."""
    import av

    from diffbgm.video.mux import dialogue_threshold_dbfs, sound_loudness_lufs
    from tests.video_fixtures import SyntheticShot, write_video

    rate = 44100
    t = np.arange(6 * rate) / rate
    speaking = ((t >= 1) & (t < 2)) | ((t >= 3) & (t < 4))
    noise = 0.0005 * np.random.default_rng(0).standard_normal(t.size)
    voice = voice_level * np.sin(2 * np.pi * 440 * t) * speaking + noise
    sf.write(tmp_path / "voice.wav", voice, rate)
    picture = write_video(tmp_path / "v.mp4", shots=[SyntheticShot(6.0, (90, 90, 90))])
    talk = tmp_path / "talk.mp4"
    subprocess.run(
        [
            ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(picture),
            "-i", str(tmp_path / "voice.wav"), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
            "-c:a", "aac", "-b:a", "192k", str(talk),
        ],
        check=True,
    )  # fmt: skip
    loudness = sound_loudness_lufs(talk)
    # a mid tone's loudness is its RMS in dB - 0.691; the gated 400 ms blocks across the
    # voice's edges take about a dB off (measured -1.1)
    expected = 20 * np.log10(voice_level / np.sqrt(2)) - 0.691
    assert loudness == pytest.approx(expected - 1.0, abs=0.5)
    assert dialogue_threshold_dbfs(loudness) == pytest.approx(loudness - 10.0)
    music = tmp_path / "music.wav"
    sf.write(music, np.stack([0.1 * np.sin(2 * np.pi * 1000 * t)] * 2, axis=1), rate)
    heard = {}
    for mode in ("keep", "dialogue"):
        track = encode_sound_track(talk, music, tmp_path / f"{mode}.m4a", 6.0, audio=mode)
        with av.open(str(track)) as container:
            stream = container.streams.audio[0]
            frames = [frame.to_ndarray() for frame in container.decode(stream)]
            heard[mode] = (np.concatenate(frames, axis=1)[0], stream.rate)
    sound, out_rate = heard["dialogue"]
    quiet = [(0.3, 0.9), (2.5, 2.9), (4.6, 5.5)]  # the voice silent (2.5: 0.5 s after it)
    spoken = [(1.3, 1.9), (3.3, 3.9)]
    music_alone = [_amplitude(sound, out_rate, 1000, a, b) for a, b in quiet]
    music_under = [_amplitude(sound, out_rate, 1000, a, b) for a, b in spoken]
    assert min(music_alone) > 0.09  # the room noise alone does not lower it
    assert 20 * np.log10(max(music_under) / min(music_alone)) < -8.0
    kept, kept_rate = heard["keep"]
    for a, b in spoken:
        voice_heard = _amplitude(sound, out_rate, 440, a, b)
        assert voice_heard == pytest.approx(_amplitude(kept, kept_rate, 440, a, b), rel=0.05)
        assert _amplitude(kept, kept_rate, 1000, a, b) > 0.09  # "keep" leaves the music alone


def test_the_dialogue_threshold_has_bounds_and_a_default() -> None:
    from diffbgm.video.mux import dialogue_threshold_dbfs, sound_loudness_lufs

    assert dialogue_threshold_dbfs(None) == -30.0
    assert dialogue_threshold_dbfs(-5.0) == -20.0 and dialogue_threshold_dbfs(-65.0) == -50.0
    assert sound_loudness_lufs(Path("/nonexistent/video.mp4")) is None


@pytest.mark.parametrize("mode", ["keep", "dialogue"])
def test_a_sound_that_starts_after_the_picture_keeps_its_place(mode: str, tmp_path: Path) -> None:
    """The video's sound starts 0.5 s after its picture (a burst 1 s into the sound, so 1.5 s
    into the video): the mix pads the gap instead of pulling the sound to the start, and lasts
    as long as the video."""
    import av

    from tests.video_fixtures import SyntheticShot, write_video

    rate = 44100
    t = np.arange(3 * rate) / rate
    burst = (t >= 1.0) & (t < 1.1)
    sf.write(tmp_path / "sound.wav", 0.3 * np.sin(2 * np.pi * 440 * t) * burst, rate)
    picture = write_video(tmp_path / "v.mp4", shots=[SyntheticShot(4.0, (90, 90, 90))])
    late = tmp_path / "late.mp4"
    subprocess.run(
        [
            ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(picture), "-itsoffset", "0.5",
            "-i", str(tmp_path / "sound.wav"), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
            "-c:a", "aac", str(late),
        ],
        check=True,
    )  # fmt: skip
    music = tmp_path / "music.wav"
    sf.write(music, np.zeros((4 * rate, 2)), rate)
    track = encode_sound_track(late, music, tmp_path / "mix.m4a", 4.0, audio=mode)
    with av.open(str(track)) as container:
        stream = container.streams.audio[0]
        sound = np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=1)[0]
        out_rate = stream.rate
    heard = np.argmax(np.abs(sound) > 0.05) / out_rate
    assert heard == pytest.approx(1.5, abs=0.02)
    assert sound.size / out_rate == pytest.approx(4.0, abs=0.05)
