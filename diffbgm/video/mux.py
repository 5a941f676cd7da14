"""Lay the music under the video with ffmpeg (the static binary that imageio-ffmpeg ships)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Literal

from diffbgm.errors import RenderError
from diffbgm.video.types import VideoInfo

AudioMode = Literal["keep", "duck", "replace"]
AUDIO_MODES: tuple[str, ...] = ("keep", "duck", "replace")

# Under "duck" the original sound stays audible but far below the music (-14 dB).
DUCKED_ORIGINAL_GAIN = 0.2
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


def _audio_filter(mode: AudioMode, has_original_audio: bool, duration_s: float) -> list[str]:
    """ffmpeg arguments that choose or mix the audio streams (input 0 = video, 1 = music)."""
    if mode == "replace" or not has_original_audio:
        return ["-map", "0:v:0", "-map", "1:a:0"]
    original_gain = 1.0 if mode == "keep" else DUCKED_ORIGINAL_GAIN
    graph = (
        f"[0:a:0]volume={original_gain},apad,atrim=0:{duration_s:.3f}[orig];"
        f"[1:a:0]apad,atrim=0:{duration_s:.3f}[music];"
        "[orig][music]amix=inputs=2:duration=first:normalize=0,alimiter=limit=0.95[mix]"
    )
    return ["-filter_complex", graph, "-map", "0:v:0", "-map", "[mix]"]


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


# Codecs an MP4 carries as they are (the tag makes HEVC play on Apple players too).
COPYABLE_CODECS = {"h264": [], "hevc": ["-tag:v", "hvc1"]}


def video_can_be_copied(info: VideoInfo | None, duration_s: float) -> bool:
    """Can the video stream go into the MP4 untouched? Yes for H.264/HEVC of even size whose
    whole length is kept: re-encoding then only costs time (3.6 s of the 30 s clip's 23 s)
    and quality. A cut inside the video (music shorter than the video) re-encodes, because a
    copied stream can only end on a packet boundary; so does an odd size (padding)."""
    if info is None or info.video_codec not in COPYABLE_CODECS:
        return False
    even = info.width % 2 == 0 and info.height % 2 == 0 and min(info.width, info.height) >= 2
    whole = duration_s >= info.duration_s - 1.0 / max(info.fps, 1.0)
    return even and whole


def _video_codec_args(copy: bool, codec: str) -> list[str]:
    if copy:
        return ["-c:v", "copy", *COPYABLE_CODECS[codec]]
    return [
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "23",
        "-pix_fmt",
        "yuv420p",
        "-vf",
        EVEN_SIZE_FILTER,
    ]


def mux_music(
    video_path: Path,
    music_wav: Path,
    out_path: Path,
    duration_s: float,
    audio: AudioMode = "duck",
    has_original_audio: bool = True,
    timeout_s: float = 600.0,
    info: VideoInfo | None = None,
) -> Path:
    """Write `out_path` (MP4, H.264/HEVC + AAC): the video with the music under it.

    With the video's probe (`info`), an H.264/HEVC stream kept whole is copied as it is
    (`video_can_be_copied`); anything else is re-encoded to H.264 (inputs may be VP8, AV1,
    ...; MP4 players want H.264), padded to even sizes. Both streams end at `duration_s`.
    Written to a temporary name first, so a failure never leaves a half-written MP4.
    """
    if audio not in AUDIO_MODES:
        raise RenderError(f"unknown audio mode {audio!r}; choose one of {', '.join(AUDIO_MODES)}")
    copy = video_can_be_copied(info, duration_s)
    tmp = out_path.with_name(out_path.stem + ".partial.mp4")
    cmd = [
        ffmpeg_exe(),
        "-y",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        str(video_path),
        "-i",
        str(music_wav),
        *_audio_filter(audio, has_original_audio, duration_s),
        "-t",
        f"{duration_s:.3f}",
        *_video_codec_args(copy, info.video_codec if info is not None else ""),
        "-c:a",
        "aac",
        "-b:a",
        "192k",
        "-movflags",
        "+faststart",
        str(tmp),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        tmp.unlink(missing_ok=True)
        raise RenderError(
            f"ffmpeg took longer than {timeout_s:.0f} s muxing {video_path.name}"
        ) from exc
    if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        raise RenderError(
            f"ffmpeg could not lay the music under '{video_path.name}': "
            f"{_ffmpeg_reason(proc.stderr, video_path, music_wav, tmp)}"
        )
    tmp.replace(out_path)
    return out_path
