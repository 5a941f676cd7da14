"""Files of the web app: one fresh folder per request, staged uploads, clean-up of old outputs.

Uploaded names are never used on disk as given (they may be hostile: `../../x`, `-i`, shell
characters, 300-character names): the upload is linked or copied into the request folder
under a cleaned name (letters, digits, `._-`, at most 60 characters, a known video extension
or `.bin`), so error messages still name a file the user recognises.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from diffbgm.errors import DiffBGMError, VideoError
from diffbgm.result import Report

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ogv", ".wmv", ".flv"}
)
REQUEST_PREFIX = "req-"
INPUT_PREFIX = "input"


def new_request_dir(outputs_dir: Path) -> Path:
    """Create and return a fresh, unguessable folder for one request's files."""
    outputs_dir.mkdir(parents=True, exist_ok=True)
    folder = (
        outputs_dir / f"{REQUEST_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}"
    )
    folder.mkdir()
    return folder


def remove_request_dir(folder: Path) -> None:
    """Delete a request folder after a failed request, so nothing half-written stays behind."""
    shutil.rmtree(folder, ignore_errors=True)


def safe_upload_name(name: str) -> str:
    """A harmless file name for an upload, e.g. '../../-rm x;.MP4' -> 'input-rm_x_.mp4'."""
    path = Path(name.replace("\\", "/")).name
    suffix = Path(path).suffix.lower()
    suffix = suffix if suffix in VIDEO_EXTENSIONS else ".bin"
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(path).stem).strip("_-")[:50]
    return f"{INPUT_PREFIX}{'-' + stem if stem else ''}{suffix}"


def stage_upload(upload: str | Path | None, request_dir: Path, max_bytes: int) -> Path:
    """Put the uploaded file into `request_dir` under a neutral name; check presence and size.

    Raises VideoError (with a message for people) when nothing was uploaded, the file is
    empty or larger than `max_bytes`.
    """
    if upload is None or str(upload).strip() == "":
        raise VideoError("Please upload a video first (or pick the example).")
    source = Path(upload)
    if not source.is_file():
        raise VideoError(
            f"The uploaded file {source.name!r} did not arrive; please upload it again."
        )
    size = source.stat().st_size
    if size == 0:
        raise VideoError(f"The uploaded file {source.name!r} is empty (0 bytes).")
    if size > max_bytes:
        raise VideoError(
            f"The uploaded file {source.name!r} is {size / 1e6:.0f} MB; the limit is "
            f"{max_bytes / 1e6:.0f} MB."
        )
    target = request_dir / safe_upload_name(source.name)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


def resolve_result_dir(outputs_dir: Path, name_or_path: str | Path) -> Path:
    """The result folder `name_or_path` names, only if it lies inside `outputs_dir` and holds a
    report.json; otherwise a DiffBGMError (this guards every path that comes from a client)."""
    root = outputs_dir.resolve()
    candidate = Path(name_or_path)
    folder = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if folder.parent != root:
        raise DiffBGMError(f"{str(name_or_path)!r} is not a result of this app.")
    if not (folder / "report.json").is_file():
        raise DiffBGMError(
            f"The result {folder.name!r} is gone (outputs are deleted after a while); compose again."
        )
    return folder


def list_result_dirs(outputs_dir: Path) -> list[str]:
    """Names of the finished result folders, newest first."""
    if not outputs_dir.is_dir():
        return []
    folders = [p for p in outputs_dir.iterdir() if p.is_dir() and (p / "report.json").is_file()]
    return [p.name for p in sorted(folders, key=lambda p: p.stat().st_mtime, reverse=True)]


def cleanup_old_outputs(
    outputs_dir: Path,
    max_age_s: float,
    now_s: float | None = None,
    keep: frozenset[str] = frozenset(),
) -> list[str]:
    """Delete request folders not modified for `max_age_s` seconds; return their names.

    Folders named in `keep` (e.g. used by an open listening study) are left alone.
    """
    if not outputs_dir.is_dir():
        return []
    now_s = time.time() if now_s is None else now_s
    removed = []
    for folder in outputs_dir.iterdir():
        # ".diffbgm-" folders are the composer's work folders left by a killed process.
        ours = folder.name.startswith((REQUEST_PREFIX, ".diffbgm-"))
        if not folder.is_dir() or not ours or folder.name in keep:
            continue
        if now_s - folder.stat().st_mtime > max_age_s:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def source_video(folder: Path) -> Path:
    """The video a result was composed for: its staged `input*` file, else where the result
    says it was (diffbgm.result.read_source)."""
    from diffbgm.result import read_source

    staged = sorted(p for p in folder.glob(f"{INPUT_PREFIX}*") if p.is_file())
    if staged:
        return staged[0]
    recorded = read_source(folder)
    if recorded is not None and recorded.is_file():
        return recorded
    raise DiffBGMError(f"the video of result {folder.name!r} is gone; compose it again")


def file_fingerprint(path: Path) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class StudyMedia:
    """Copies of one result's files for a study, as paths relative to the data folder.

    `music` (WAV) is the stimulus; `video_with_music` (MP4) lies next to it and shows the
    same music under the picture; `video` is the original clip.
    """

    video: str
    music: str
    video_with_music: str


STUDY_MUSIC_NAME = "music.wav"
STUDY_VIDEO_WITH_MUSIC_NAME = "video.mp4"


def copy_for_study(folder: Path, report: Report, data_dir: Path, target: Path) -> StudyMedia:
    """Copy the first variant's WAV and MP4 and the source video of `folder` into `target`
    (inside `data_dir`), so a study outlives the clean-up of old outputs."""
    files = report.files[0]
    target.mkdir(parents=True, exist_ok=True)
    video = source_video(folder)
    video_copy = (
        target
        / f"original{video.suffix.lower() if video.suffix.lower() in VIDEO_EXTENSIONS else '.mp4'}"
    )
    shutil.copyfile(video, video_copy)
    music = target / STUDY_MUSIC_NAME
    shutil.copyfile(folder / files.wav, music)
    with_music = target / STUDY_VIDEO_WITH_MUSIC_NAME
    shutil.copyfile(folder / files.video, with_music)
    root = data_dir.resolve()
    return StudyMedia(
        video=video_copy.resolve().relative_to(root).as_posix(),
        music=music.resolve().relative_to(root).as_posix(),
        video_with_music=with_music.resolve().relative_to(root).as_posix(),
    )
