"""Lay the music under the video with ffmpeg (the static binary that imageio-ffmpeg ships)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Literal

import soundfile

from diffbgm.errors import RenderError
from diffbgm.video.types import VideoInfo

AudioMode = Literal["keep", "duck", "replace", "dialogue"]
AUDIO_MODES: tuple[str, ...] = ("keep", "duck", "replace", "dialogue")

# Under "duck" the original sound stays audible but far below the music (-14 dB).
DUCKED_ORIGINAL_GAIN = 0.2
# Under "dialogue" the video's sound stays as it is and keys a compressor on the music (what
# editors call auto-ducking): above a threshold of the video's sound (RMS) the music is turned
# down by 7/8 of the excess, within 15 ms, and comes back over 350 ms, so that it does not
# pump between words. The threshold follows the recording: 10 dB below its integrated
# loudness (speech at -18 LUFS: -28 dBFS, and about 9 dB off the music while it is spoken),
# within -50..-20 dBFS; -30 dBFS where the loudness cannot be measured.
DIALOGUE_BELOW_LOUDNESS_DB = 10.0
DIALOGUE_THRESHOLD_DBFS = (-50.0, -20.0)
DIALOGUE_DEFAULT_THRESHOLD_DBFS = -30.0


def dialogue_compressor(threshold_dbfs: float) -> str:
    """The sidechaincompress filter of "dialogue" at a threshold (dBFS RMS of the key)."""
    linear = 10.0 ** (threshold_dbfs / 20.0)
    return (
        f"sidechaincompress=threshold={linear:.6f}:ratio=8:attack=15:release=350:knee=2.8"
        ":detection=rms"
    )


def dialogue_threshold_dbfs(loudness_lufs: float | None) -> float:
    """Where "dialogue" starts lowering the music, from the video's sound's loudness."""
    if loudness_lufs is None:
        return DIALOGUE_DEFAULT_THRESHOLD_DBFS
    low, high = DIALOGUE_THRESHOLD_DBFS
    return min(max(loudness_lufs - DIALOGUE_BELOW_LOUDNESS_DB, low), high)


def sound_loudness_lufs(video_path: Path, timeout_s: float = 300.0) -> float | None:
    """Integrated loudness (ITU-R BS.1770, ffmpeg's ebur128) of a file's first sound stream;
    None where ffmpeg cannot measure it (no sound above the gate, an unreadable stream)."""
    command = [
        ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(video_path), "-map", "0:a:0",
        "-af", "ebur128=framelog=quiet", "-f", "null", "-",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.findall(r"^\s*I:\s*(-?[\d.]+|-inf)\s*LUFS", done.stderr, flags=re.MULTILINE)
    if done.returncode != 0 or not found or found[-1] == "-inf":
        return None
    value = float(found[-1])
    return value if value > -70.0 else None


# With music over part of the video, the duck's ramp into and out of it.
DUCK_RAMP_S = 0.5
# H.264 in yuv420p needs even frame sizes of at least 2x2. Padding (never cropping) an odd
# side by one black line gets there from any size, 1x1 included: a crop to even sizes
# would turn a 1-pixel side into 0 and fail only at the very end of a composition.
EVEN_SIZE_FILTER = "pad=width=ceil(iw/2)*2:height=ceil(ih/2)*2:x=0:y=0:color=black"


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped by imageio-ffmpeg (no system package needed)."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise RenderError("imageio-ffmpeg is not installed: pip install imageio-ffmpeg") from exc
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _ffmpeg_quiet() -> list[str]:
    """ffmpeg, overwriting its output, never reading stdin, printing errors only."""
    return [ffmpeg_exe(), "-y", "-nostdin", "-hide_banner", "-loglevel", "error"]


def _sound_args(
    mode: AudioMode,
    has_original_audio: bool,
    duration_s: float,
    rate: int | None = None,
    music_span_s: tuple[float, float] | None = None,
    dialogue_threshold: float = DIALOGUE_DEFAULT_THRESHOLD_DBFS,
) -> list[str]:
    """ffmpeg arguments that choose or mix the sound (input 0 = the video, 1 = the music) and
    map it as the output's audio stream. rate: the music's sample rate, which the video's own
    sound is brought to before the mix (None: left to ffmpeg). music_span_s: where the music
    plays when it is not the whole video; "duck" then lowers the video's sound only there.
    "dialogue" keeps the video's sound and lowers the music while that sound is above
    `dialogue_threshold` (dBFS RMS)."""
    if mode == "replace" or not has_original_audio:
        return ["-map", "1:a:0"]
    # first_pts=0: a sound that starts after the picture is padded with silence from 0, so it
    # keeps its place (asetpts after the mix would otherwise pull it to the start)
    resample = "aresample=first_pts=0," if rate is None else f"aresample={rate}:first_pts=0,"
    trim = f"apad,atrim=0:{duration_s:.3f}"
    if mode == "dialogue":  # the video's sound as it is; the music keyed down under it
        original = f"[0:a:0]{resample}{trim},asplit=2[orig][key];"
        music = f"[1:a:0]{trim}[dry];[dry][key]{dialogue_compressor(dialogue_threshold)}[music];"
    else:
        original = f"[0:a:0]{resample}{_original_gain(mode, music_span_s)},{trim}[orig];"
        music = f"[1:a:0]{trim}[music];"
    # the mix starts at time 0: amix takes its timestamps from the video's own sound, which
    # may start a few ms late (3 ms in the example clip), and the music belongs to the first
    # frame
    graph = (
        original
        + music
        + "[orig][music]amix=inputs=2:duration=first:normalize=0,alimiter=limit=0.95,"
        "asetpts=N/SR/TB[mix]"
    )
    return ["-filter_complex", graph, "-map", "[mix]"]


def _original_gain(mode: AudioMode, music_span_s: tuple[float, float] | None) -> str:
    """The volume filter of the video's own sound: kept, or ducked under the music. With the
    music over part of the video the duck ramps down DUCK_RAMP_S before the music starts and
    back up over as long after it ends (a gain of 1 - depth x the ramps' product)."""
    if mode == "keep":
        return "volume=1.0"
    if music_span_s is None:
        return f"volume={DUCKED_ORIGINAL_GAIN}"
    start, end = music_span_s
    ramp = DUCK_RAMP_S
    depth = 1.0 - DUCKED_ORIGINAL_GAIN
    # quoted: the expression's commas would otherwise separate filters
    return (
        f"volume='1-{depth:g}*clip((t-{start - ramp:.3f})/{ramp:g},0,1)"
        f"*clip(({end + ramp:.3f}-t)/{ramp:g},0,1)':eval=frame"
    )


def _ffmpeg_reason(stderr: str, *paths: Path) -> str:
    """The most telling line of ffmpeg's error output, with file paths cut to their names.

    ffmpeg's last line is often a consequence ("Nothing was written into output file"); the
    first error line usually names the cause, so both are kept when they differ.
    """
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    if not lines:
        return "ffmpeg gave no reason"
    picked = list(dict.fromkeys([lines[0], lines[-1]]))
    text = " / ".join(picked)
    for path in paths:
        text = text.replace(str(path.resolve()), path.name).replace(str(path), path.name)
    return text[:400]


# ffmpeg's own AAC encoder with its "fast" coder: on the music of a 10-minute compose it took
# 4.7 CPU s against the default "twoloop" coder's 8.8 s, at the same signal-to-noise ratio
# (29.9 dB both, 192 kb/s; docs/video.md, "Muxing").
AAC_ARGS = ["-c:a", "aac", "-aac_coder", "fast", "-b:a", "192k"]

# Codecs an MP4 carries as they are (the tag makes HEVC play on Apple players too).
COPYABLE_CODECS = {"h264": [], "hevc": ["-tag:v", "hvc1"]}


def video_can_be_copied(info: VideoInfo | None, duration_s: float) -> bool:
    """Can the video stream go into the MP4 untouched? Yes for H.264/HEVC of even size whose
    whole length is kept: re-encoding then only costs time (3.6 s of the 30 s clip's 23 s)
    and quality. A cut inside the video (music shorter than the video) re-encodes, because a
    copied stream can only end on a packet boundary; so does an odd size (padding)."""
    if info is None or info.video_codec not in COPYABLE_CODECS:
        return False
    whole = duration_s >= info.duration_s - 1.0 / max(info.fps, 1.0)
    return _even_size(info) and whole


# A re-encode keeps the upload's picture at one constant quantiser. CRF spends x264's
# look-ahead (a half-size copy of every frame, costed) on spreading bits by complexity; for a
# copy of an already compressed upload a constant QP 23 stays as close to it (PSNR against the
# upload within 0.9 dB of CRF 23's on six of eight videos, 2.6-3.1 dB lower on two flat ones
# where both are above 46 dB) for 0-22 % less CPU (the 30 s clip: 3.91 -> 3.05 CPU s), at
# -52 % to +21 % of CRF 23's size (docs/video.md, "Muxing").
PICTURE_ARGS = ("-c:v", "libx264", "-preset", "ultrafast", "-qp", "23", "-pix_fmt", "yuv420p")


def _video_codec_args(copy: bool, info: VideoInfo | None) -> list[str]:
    if copy and info is not None:
        return ["-c:v", "copy", *COPYABLE_CODECS[info.video_codec]]
    encode = [*PICTURE_ARGS]
    if info is not None and _even_size(info):
        return encode  # the padding filter would still copy every frame: 6 % of the encode
    return [*encode, "-vf", EVEN_SIZE_FILTER]


def _even_size(info: VideoInfo) -> bool:
    return info.width % 2 == 0 and info.height % 2 == 0 and min(info.width, info.height) >= 2


def mux_music(
    video_path: Path,
    music_wav: Path,
    out_path: Path,
    duration_s: float,
    audio: AudioMode = "duck",
    has_original_audio: bool = True,
    timeout_s: float = 600.0,
    info: VideoInfo | None = None,
    video_track: Path | None = None,
    music_span_s: tuple[float, float] | None = None,
) -> Path:
    """Write `out_path` (MP4, H.264/HEVC + AAC): the video with the music under it.

    With the video's probe (`info`), an H.264/HEVC stream kept whole is copied as it is
    (`video_can_be_copied`); anything else is re-encoded to H.264 (inputs may be VP8, AV1,
    ...; MP4 players want H.264), padded to even sizes. `video_track`: that H.264 stream made
    already (`VideoTrackJob`, while the music was composed); it is copied. Both streams end at
    `duration_s`. Written to a temporary name first, so a failure never leaves a half-written MP4.
    music_span_s: where the music plays, when not over the whole video (see `_sound_args`).
    """
    _check_audio_mode(audio)
    if video_track is not None:
        video_args = ["-i", str(video_track)]  # input 2
        picture, codec_args = "2:v:0", ["-c:v", "copy"]
    else:
        copy = video_can_be_copied(info, duration_s)
        video_args = []
        picture = "0:v:0"
        codec_args = _video_codec_args(copy, info)
    arguments = [
        *["-i", str(video_path), "-i", str(music_wav), *video_args, "-map", picture],
        *_mix_args(video_path, music_wav, duration_s, audio, has_original_audio, music_span_s),
        *["-t", f"{duration_s:.3f}", *codec_args, *AAC_ARGS],
        *["-movflags", "+faststart"],
    ]
    return _write_with_ffmpeg(
        arguments,
        out_path,
        timeout_s,
        f"lay the music under '{video_path.name}'",
        video_path,
        music_wav,
    )


def encode_sound_track(
    video_path: Path,
    music_wav: Path,
    out_path: Path,
    duration_s: float,
    audio: AudioMode = "duck",
    has_original_audio: bool = True,
    timeout_s: float = 600.0,
    music_span_s: tuple[float, float] | None = None,
) -> Path:
    """Write `out_path` (.m4a): the MP4's sound alone, as `mux_music` would encode it (AAC;
    the music, with the video's own sound under it as `audio` says, ducked only within
    `music_span_s` when given).

    It needs no picture, so it is made as soon as the mix is written, while a background
    picture encode may still run; `join_tracks` then only copies both streams."""
    _check_audio_mode(audio)
    arguments = [
        *["-i", str(video_path), "-i", str(music_wav)],
        *_mix_args(video_path, music_wav, duration_s, audio, has_original_audio, music_span_s),
        *["-t", f"{duration_s:.3f}", *AAC_ARGS],
    ]
    task = f"encode the sound for '{video_path.name}'"
    return _write_with_ffmpeg(arguments, out_path, timeout_s, task, video_path, music_wav)


def join_tracks(
    picture: Path,
    sound_track: Path,
    out_path: Path,
    duration_s: float,
    timeout_s: float = 600.0,
    info: VideoInfo | None = None,
) -> Path:
    """Write `out_path` (MP4): the first video stream of `picture` (a `VideoTrackJob`'s track,
    or the upload itself when `video_can_be_copied`; `info` then names its codec) and the
    sound of `sound_track`, both copied as they are, ending at `duration_s`."""
    tag = COPYABLE_CODECS.get(info.video_codec, []) if info is not None else []
    arguments = [
        *["-i", str(picture), "-i", str(sound_track), "-map", "0:v:0", "-map", "1:a:0"],
        *["-t", f"{duration_s:.3f}", "-c", "copy", *tag, "-movflags", "+faststart"],
    ]
    return _write_with_ffmpeg(
        arguments, out_path, timeout_s, "join the picture and the sound", picture, sound_track
    )


def _mix_args(
    video_path: Path,
    music_wav: Path,
    duration_s: float,
    audio: AudioMode,
    has_original_audio: bool,
    music_span_s: tuple[float, float] | None,
) -> list[str]:
    """`_sound_args` for these files: the music's rate read from its WAV, and for "dialogue"
    the threshold measured from the video's sound (only then: it costs a pass over it)."""
    threshold = DIALOGUE_DEFAULT_THRESHOLD_DBFS
    if audio == "dialogue" and has_original_audio:
        threshold = dialogue_threshold_dbfs(sound_loudness_lufs(video_path))
    rate = _rate_of(music_wav)
    return _sound_args(audio, has_original_audio, duration_s, rate, music_span_s, threshold)


def _rate_of(music_wav: Path) -> int | None:
    """The music's sample rate (None when soundfile cannot read it: ffmpeg then decides and
    reports what is wrong with the file)."""
    try:
        return int(soundfile.info(str(music_wav)).samplerate)
    except (RuntimeError, OSError):  # soundfile's LibsndfileError is a RuntimeError
        return None


def _check_audio_mode(audio: str) -> None:
    if audio not in AUDIO_MODES:
        raise RenderError(f"unknown audio mode {audio!r}; choose one of {', '.join(AUDIO_MODES)}")


def _write_with_ffmpeg(
    arguments: list[str], out_path: Path, timeout_s: float, task: str, *inputs: Path
) -> Path:
    """Run ffmpeg with `arguments` and a temporary output name next to `out_path`, renamed
    only on success, so a failure never leaves a half-written file; RenderError ("ffmpeg
    could not {task}: reason") otherwise."""
    tmp = out_path.with_name(out_path.stem + ".partial" + out_path.suffix)
    cmd = [*_ffmpeg_quiet(), *arguments, str(tmp)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        tmp.unlink(missing_ok=True)
        raise RenderError(f"ffmpeg took longer than {timeout_s:.0f} s to {task}") from exc
    if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        raise RenderError(f"ffmpeg could not {task}: {_ffmpeg_reason(proc.stderr, *inputs, tmp)}")
    tmp.replace(out_path)
    return out_path


class VideoTrackJob:
    """The MP4's H.264 video stream, encoded in the background while the music is composed.

    Re-encoding (VP8, AV1, odd sizes, ...) costs as much as a third of a compose and does not
    depend on the music, so it starts before the analysis. It runs as an idle-class process
    (SCHED_IDLE where the OS has it): it takes only the CPU time the analysis, the sampler and
    the renderers leave free, and so never slows them down. `result()` puts it back to normal
    priority (nothing else is left to wait for then) and returns the track for `mux_music`.
    A stream that can be copied as it is needs no job: `start` returns None for it.
    """

    def __init__(self, pid: int, out_path: Path, log_path: Path, video_name: str) -> None:
        self.pid, self.out_path, self.log_path = pid, out_path, log_path
        self.video_name = video_name
        self._status: int | None = None

    @classmethod
    def start(
        cls, video_path: Path, info: VideoInfo, duration_s: float, folder: Path
    ) -> VideoTrackJob | None:
        """Start encoding `video_path`'s picture (no sound) to folder/.video-track.mp4."""
        if video_can_be_copied(info, duration_s):
            return None
        out_path = folder / ".video-track.mp4"
        log_path = folder / ".video-track.log"
        cmd = [
            *_ffmpeg_quiet(),
            "-i",
            str(video_path),
            "-map",
            "0:v:0",
            "-an",
            "-t",
            f"{duration_s:.3f}",
            *_video_codec_args(False, info),
            str(out_path),
        ]
        write = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, str(log_path), write, 0o600),
        ]
        try:
            pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=actions)
        except OSError as exc:
            raise RenderError(f"could not start ffmpeg for {video_path.name}: {exc}") from exc
        # glibc's posix_spawn refuses SCHED_IDLE (EINVAL), so the class is set right after
        # the exec, before ffmpeg has opened its input and started its worker threads.
        _set_policy(pid, getattr(os, "SCHED_IDLE", None))
        return cls(pid, out_path, log_path, video_path.name)

    def _poll(self) -> int | None:
        if self._status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self._status = os.waitstatus_to_exitcode(status)
        return self._status

    def running(self) -> bool:
        """Is the encoder still at work?"""
        return self._poll() is None

    def result(self, timeout_s: float = 600.0) -> Path:
        """Wait for the track (at normal priority now) -> its path; RenderError on failure."""
        _set_policy(self.pid, getattr(os, "SCHED_OTHER", None))  # nothing left to wait for
        deadline = time.monotonic() + timeout_s
        while self._poll() is None:
            if time.monotonic() > deadline:
                self.cancel()
                raise RenderError(
                    f"ffmpeg took longer than {timeout_s:.0f} s encoding {self.video_name}"
                )
            time.sleep(0.01)
        if self._status != 0 or not self.out_path.exists() or self.out_path.stat().st_size == 0:
            reason = _ffmpeg_reason(self.log_path.read_text(errors="replace"), self.out_path)
            self.cancel()
            raise RenderError(
                f"ffmpeg could not encode the picture of '{self.video_name}': {reason}"
            )
        return self.out_path

    def cancel(self) -> None:
        """Stop the encoder (if still running) and remove its files."""
        if self._poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self._status = -signal.SIGKILL
        self.out_path.unlink(missing_ok=True)
        self.log_path.unlink(missing_ok=True)


def _set_policy(pid: int, policy: int | None) -> None:
    """Every thread of process `pid` to scheduling class `policy` (Linux; best effort: an
    encoder left in another class still finishes, only sooner or later)."""
    tasks = Path(f"/proc/{pid}/task")
    if policy is None or not tasks.is_dir():
        return
    for task in tasks.iterdir():
        with contextlib.suppress(OSError, ValueError):
            os.sched_setscheduler(int(task.name), policy, os.sched_param(0))
