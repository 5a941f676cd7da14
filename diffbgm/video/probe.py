"""Check a video file before any work: container metadata only, plus one decoded frame.

Every way a file can be unusable ends in a `VideoProbeError` (a `VideoError`) whose message
names the file and says what is wrong in plain words; `reason` is a short machine-readable code.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from diffbgm.errors import VideoError
from diffbgm.video.types import VideoInfo

# FFmpeg demuxers that read single still images; a photo renamed .mp4 opens with one of these.
_IMAGE_FORMATS = ("image2", "_pipe", "gif", "webp", "apng")
_IMAGE_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"BM": "a BMP image",
}
# A frame rate whose average differs from the nominal one by more than this is variable.
_VFR_TOLERANCE = 0.05


@dataclass(frozen=True)
class ProbeLimits:
    """What the app accepts: file size in bytes and duration in seconds."""

    max_bytes: int = 2 * 1024**3
    max_duration_s: float = 20 * 60.0
    min_duration_s: float = 0.5


class VideoProbeError(VideoError):
    """A video that cannot be used; `reason` is one of: missing, not_a_file, empty, too_large,
    image, text, not_media, corrupt, audio_only, no_video, zero_size, no_duration, too_long,
    too_short."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def probe_video(path: Path | str, limits: ProbeLimits = ProbeLimits()) -> VideoInfo:
    """Read `path`'s container metadata and decode its first frame; raise VideoProbeError when the
    file cannot be used as a video within `limits`."""
    path = Path(path)
    size_bytes = _check_file(path, limits)
    name = path.name
    try:
        container = av.open(_ffmpeg_url(path), mode="r")
    except av.FFmpegError as exc:
        raise _unreadable_error(path, exc) from exc
    with container:
        format_name = container.format.name
        if any(tag in format_name for tag in _IMAGE_FORMATS):
            raise VideoProbeError("image", f"'{name}' is a still image, not a video.")
        if not container.streams.video:
            if container.streams.audio:
                raise VideoProbeError(
                    "audio_only", f"'{name}' holds only sound; it has no picture to score."
                )
            raise VideoProbeError("no_video", f"'{name}' has no video stream.")
        stream = container.streams.video[0]
        first_frame = _first_frame(container, stream, path)
        width = stream.codec_context.width or first_frame.width
        height = stream.codec_context.height or first_frame.height
        if width <= 0 or height <= 0:
            raise VideoProbeError(
                "zero_size", f"'{name}' has video frames of size {width}x{height}."
            )
        fps, variable_fps = _frame_rate(stream)
        duration_s = _stated_duration_s(container, stream)
        if duration_s is None:
            duration_s = _counted_duration_s(path, fps)
        elif duration_s > 1.0:
            _check_complete(container, stream, duration_s, path)
        _check_duration(duration_s, limits, name)
        return VideoInfo(
            path=path,
            container=format_name,
            duration_s=duration_s,
            width=width,
            height=height,
            fps=fps,
            variable_fps=variable_fps,
            rotation_deg=_rotation_deg(stream, first_frame),
            n_frames_estimate=int(stream.frames) or max(1, round(duration_s * fps)),
            has_audio=bool(container.streams.audio),
            size_bytes=size_bytes,
            video_codec=stream.codec_context.name,
        )


def _ffmpeg_url(path: Path) -> str:
    """An FFmpeg URL that reads `path` literally, whatever characters its name holds.

    The `file:` prefix stops FFmpeg from reading a name like `http:x.mp4` or `-i.mp4` as a
    protocol or option; the absolute path keeps leading dashes harmless.
    """
    return "file:" + str(path.resolve())


def _check_file(path: Path, limits: ProbeLimits) -> int:
    """The file's size in bytes, after checking it exists, is a file and is within limits."""
    if not path.exists():
        raise VideoProbeError("missing", f"Video file '{path.name}' does not exist.")
    if not path.is_file():
        raise VideoProbeError("not_a_file", f"'{path.name}' is not a file.")
    size = path.stat().st_size
    if size == 0:
        raise VideoProbeError("empty", f"'{path.name}' is empty (0 bytes).")
    if size > limits.max_bytes:
        raise VideoProbeError(
            "too_large",
            f"'{path.name}' is {size / 1e6:.0f} MB; the limit is {limits.max_bytes / 1e6:.0f} MB.",
        )
    return size


def _unreadable_error(path: Path, exc: Exception) -> VideoProbeError:
    """Explain why FFmpeg could not open `path`, from the first bytes of the file."""
    with path.open("rb") as handle:
        head = handle.read(512)
    for magic, kind in _IMAGE_MAGIC.items():
        if head.startswith(magic):
            return VideoProbeError("image", f"'{path.name}' is {kind}, not a video.")
    if _looks_like_text(head):
        return VideoProbeError("text", f"'{path.name}' is a text file, not a video.")
    if _looks_like_video_container(head):
        return VideoProbeError(
            "corrupt",
            f"'{path.name}' looks like a video but cannot be read: it is damaged or incomplete "
            f"(e.g. a cut-off upload). FFmpeg said: {_said(exc, path)}",
        )
    return VideoProbeError(
        "not_media",
        f"'{path.name}' is not a video file FFmpeg can read. FFmpeg said: {_said(exc, path)}",
    )


def _said(exc: Exception, path: Path) -> str:
    """FFmpeg's words for `exc` with the file named as the user knows it: FFmpeg quotes the
    URL it was given (`'file:/srv/.../input.mp4'`), a server path nobody should see."""
    text = str(getattr(exc, "strerror", None) or exc)
    for server_name in (_ffmpeg_url(path), str(path.resolve()), str(path)):
        text = text.replace(server_name, path.name)
    return text


def _looks_like_text(head: bytes) -> bool:
    # A multi-byte character cut at the 512-byte boundary is still text, hence the retries.
    for cut in range(4):
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return bool(text) and all(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return False


def _looks_like_video_container(head: bytes) -> bool:
    return (
        head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide")  # MP4 / MOV
        or head.startswith(b"\x1a\x45\xdf\xa3")  # Matroska / WebM
        or (head.startswith(b"RIFF") and head[8:11] == b"AVI")
        or head.startswith(b"OggS")
        or head.startswith(b"FLV")
        or head.startswith(b"\x00\x00\x01\xba")  # MPEG program stream
        or head.startswith(b"G")  # MPEG transport stream sync byte
    )


def _first_frame(
    container: av.container.InputContainer, stream: av.VideoStream, path: Path
) -> av.VideoFrame:
    """Decode the first frame, turning decoder failures into a 'corrupt' error."""
    name = path.name
    try:
        for frame in container.decode(stream):
            return frame
    except av.FFmpegError as exc:
        raise VideoProbeError(
            "corrupt",
            f"'{name}' is damaged: its first frame cannot be decoded ({_said(exc, path)}).",
        ) from exc
    raise VideoProbeError("corrupt", f"'{name}' has a video stream without any decodable frame.")


def _frame_rate(stream: av.VideoStream) -> tuple[float, bool]:
    """(average frames per second, variable?) from stream metadata alone.

    Variable frame rate shows as an average rate that differs from the nominal (guessed) rate.
    """
    average: Fraction | None = stream.average_rate
    nominal: Fraction | None = stream.guessed_rate or stream.base_rate
    rate = average or nominal
    if not rate or rate <= 0:
        raise VideoProbeError("no_duration", "The video does not state a frame rate.")
    variable = bool(
        average and nominal and abs(float(average) / float(nominal) - 1) > _VFR_TOLERANCE
    )
    return float(rate), variable


def _stated_duration_s(
    container: av.container.InputContainer, stream: av.VideoStream
) -> float | None:
    """Duration in seconds as the container (or else the stream) states it; None if unstated."""
    if container.duration and container.duration > 0:
        return float(container.duration) / av.time_base
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _counted_duration_s(path: Path, fps: float) -> float:
    """Duration in seconds of a raw elementary stream (no container, so nothing is stated),
    counted from its packets without decoding them."""
    try:
        with av.open(_ffmpeg_url(path)) as container:
            stream = container.streams.video[0]
            n_packets = sum(1 for packet in container.demux(stream) if packet.size > 0)
    except (av.FFmpegError, OSError) as exc:
        raise VideoProbeError(
            "no_duration",
            f"'{path.name}' does not say how long it is and cannot be measured "
            f"({_said(exc, path)}).",
        ) from exc
    if n_packets == 0:
        raise VideoProbeError("no_duration", f"'{path.name}' does not say how long it is.")
    return n_packets / fps


def _check_duration(duration_s: float, limits: ProbeLimits, name: str) -> None:
    if duration_s > limits.max_duration_s:
        raise VideoProbeError(
            "too_long",
            f"'{name}' lasts {duration_s / 60:.1f} min; the limit is "
            f"{limits.max_duration_s / 60:.1f} min.",
        )
    if duration_s < limits.min_duration_s:
        raise VideoProbeError(
            "too_short",
            f"'{name}' lasts {duration_s:.2f} s; at least {limits.min_duration_s:.1f} s is needed.",
        )


def _check_complete(
    container: av.container.InputContainer, stream: av.VideoStream, duration_s: float, path: Path
) -> None:
    """Seek near the end and read (not decode) the remaining packets: in a cut-off file they
    stop well before the stated duration, or cannot be read at all."""
    name = path.name
    target_s = max(0.0, duration_s - 1.0)
    last_end_s = 0.0
    try:
        container.seek(int(target_s * av.time_base), backward=True)
        for packet in container.demux(stream):
            if packet.pts is None or not packet.size or packet.time_base is None:
                continue
            end = (packet.pts + (packet.duration or 0)) * packet.time_base
            last_end_s = max(last_end_s, float(end))
    except (av.FFmpegError, OSError) as exc:
        raise VideoProbeError(
            "corrupt",
            f"'{name}' is damaged or incomplete near {target_s:.1f} s ({_said(exc, path)}).",
        ) from exc
    start_s = (
        float(stream.start_time * stream.time_base)
        if stream.start_time and stream.time_base
        else 0.0
    )
    # Streams may end a little before the container (audio tails), hence the slack.
    if last_end_s - start_s < duration_s - max(1.0, 0.05 * duration_s):
        raise VideoProbeError(
            "corrupt",
            f"'{name}' is incomplete: it claims {duration_s:.1f} s but its pictures stop at "
            f"{last_end_s - start_s:.1f} s (a cut-off upload?).",
        )


def _rotation_deg(stream: av.VideoStream, first_frame: av.VideoFrame) -> int:
    """Counter-clockwise display rotation (0/90/180/270) from the display matrix, else from the
    legacy clockwise `rotate` tag that older phones wrote."""
    rotation = first_frame.rotation
    if not rotation:
        tag = stream.metadata.get("rotate")
        rotation = -int(float(tag)) if tag else 0
    return int(round(rotation / 90.0)) * 90 % 360
