"""Files of the web app: one fresh folder per request, staged uploads, clean-up of old files.

Uploaded names are never used on disk as given (they may be hostile: `../../x`, `-i`, shell
characters, 300-character names): the upload is linked or copied into the request folder
under a cleaned name (letters, digits, `._-`, at most 60 characters, a known video extension
or `.bin`), so error messages still name a file the user recognises.

A request folder is marked in progress while its request runs (a marker file held under an
exclusive `flock`, which the kernel drops when the process dies however it dies), and it is
removed on every way a request can fail; a folder whose marker nobody holds belongs to a killed
run and is swept (`sweep_stale_work_dirs`), at start-up and periodically.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

try:  # POSIX; elsewhere in-progress folders are told apart by age alone
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None  # type: ignore[assignment]

from diffbgm.errors import DiffBGMError, VideoError
from diffbgm.result import Report

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ogv", ".wmv", ".flv"}
)
REQUEST_PREFIX = "req-"
INPUT_PREFIX = "input"
IN_PROGRESS_MARKER = ".in-progress"
# What a result name from a client may look like (the names new_request_dir makes).
RESULT_NAME_PATTERN = re.compile(r"^req-[0-9]{8}-[0-9]{6}-[0-9a-f]{12}$")
# An unmarked, unfinished request folder younger than this may still be starting up.
UNMARKED_GRACE_S = 600.0


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


class InFlight:
    """The request folders this process is working in, so a shutdown can remove them.

    Shared by all request threads, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folders: dict[Path, IO[bytes]] = {}
        self._closing = False  # set by remove_all: the app is shutting down

    def add(self, folder: Path) -> None:
        """Mark `folder` in progress: create its marker and hold an exclusive lock on it."""
        handle = (folder / IN_PROGRESS_MARKER).open("wb")
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with self._lock:
            self._folders[folder] = handle

    def finish(self, folder: Path, keep: bool) -> None:
        """End the request in `folder`: keep it (minus the marker) or remove it entirely.

        Once the app is shutting down nothing is kept: a compose that was running when SIGTERM
        came finishes in its worker thread while the interpreter waits for it, after
        `remove_all` ran, and would otherwise leave a result nobody asked for any more."""
        with self._lock:
            handle = self._folders.pop(folder, None)
            keep = keep and not self._closing
        if not keep:
            remove_request_dir(folder)
        else:
            (folder / IN_PROGRESS_MARKER).unlink(missing_ok=True)
        if handle is not None:
            handle.close()

    def remove_all(self) -> list[str]:
        """Remove every folder still in progress (the app is shutting down); their names."""
        with self._lock:
            self._closing = True
            folders = list(self._folders)
        for folder in folders:
            self.finish(folder, keep=False)
        return [folder.name for folder in folders]

    def __len__(self) -> int:
        with self._lock:
            return len(self._folders)


@contextmanager
def work_dir(outputs_dir: Path, in_flight: InFlight) -> Iterator[Path]:
    """A fresh request folder, marked in progress while the block runs.

    Kept (unmarked) when the block succeeds; removed when it raises anything at all
    (errors, KeyboardInterrupt, SystemExit, a cancelled request).
    """
    folder = new_request_dir(outputs_dir)
    try:
        in_flight.add(folder)
    except BaseException:
        remove_request_dir(folder)
        raise
    ok = False
    try:
        yield folder
        ok = True
    finally:
        in_flight.finish(folder, keep=ok)


def _held_by_a_live_process(marker: Path) -> bool:
    """True when some process (this one included) holds `marker`'s lock."""
    if fcntl is None:  # pragma: no cover - not on Linux
        return True
    try:
        with marker.open("rb") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False


def sweep_stale_work_dirs(
    outputs_dir: Path, now_s: float | None = None, grace_s: float = UNMARKED_GRACE_S
) -> list[str]:
    """Remove the request folders of killed runs; return their names.

    A folder is stale when its in-progress marker is held by nobody (the process that made it
    is gone), or when it has neither a marker nor a report.json and is older than `grace_s`
    (a run killed between making the folder and marking it, or one from an older version).
    Finished results (report.json, no marker) are left to the age-based clean-up.
    """
    if not outputs_dir.is_dir():
        return []
    now_s = time.time() if now_s is None else now_s
    removed = []
    for folder in outputs_dir.iterdir():
        if not folder.is_dir() or not folder.name.startswith(REQUEST_PREFIX):
            continue
        marker = folder / IN_PROGRESS_MARKER
        if marker.exists():
            stale = not _held_by_a_live_process(marker)
        else:
            unfinished = not (folder / "report.json").is_file()
            stale = unfinished and now_s - _mtime(folder) > grace_s
        if stale:
            remove_request_dir(folder)
            removed.append(folder.name)
    return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


def sweep_old_files(root: Path, max_age_s: float, now_s: float | None = None) -> int:
    """Delete files under `root` not modified for `max_age_s` seconds, then the folders left
    empty; return how many files went. For Gradio's upload folder: an upload nobody composed
    (or a copy Gradio made) must not stay on the server."""
    if not root.is_dir():
        return 0
    now_s = time.time() if now_s is None else now_s
    removed = 0
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        here = Path(dirpath)
        for name in filenames:
            path = here / name
            if now_s - _mtime(path) > max_age_s:
                with suppress(FileNotFoundError, PermissionError):
                    path.unlink()
                    removed += 1
        if here != root:
            with suppress(OSError):
                here.rmdir()  # only succeeds when empty
    return removed


def touch(path: str | Path | None) -> None:
    """Mark an upload as just used, so the upload sweep keeps it for a while longer."""
    if path:
        with suppress(OSError):
            os.utime(path)


def check_result_name(name: Any) -> str:
    """`name` if it looks like a result name this app makes, else a clear DiffBGMError.

    Result names come from clients; checking their shape first keeps a 5,000-character or
    NUL-byte name away from the file system (which would fail with a bare OSError).
    """
    if not isinstance(name, str) or not name.strip():
        raise DiffBGMError("Compose a piece first; then one of its segments can be redone.")
    text = name.strip()
    if not RESULT_NAME_PATTERN.match(text):
        shown = text if len(text) <= 60 and text.isprintable() else text[:40].encode().hex()
        raise DiffBGMError(f"{shown!r} is not a result of this app.")
    return text


def safe_upload_name(name: str) -> str:
    """A harmless file name for an upload, e.g. '../../-rm x;.MP4' -> 'input-rm_x_.mp4'."""
    path = Path(name.replace("\\", "/")).name
    suffix = Path(path).suffix.lower()
    suffix = suffix if suffix in VIDEO_EXTENSIONS else ".bin"
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(path).stem).strip("_-")[:50]
    return f"{INPUT_PREFIX}{'-' + stem if stem else ''}{suffix}"


def check_upload(upload: str | Path | None, max_bytes: int) -> Path:
    """The uploaded file, after checking it is there, not empty and within `max_bytes`.

    Raises VideoError (with a message for people) otherwise.
    """
    if upload is None or not isinstance(upload, str | Path) or str(upload).strip() == "":
        raise VideoError("Please upload a video first (or pick the example).")
    source = Path(upload)
    if not source.is_file():
        raise VideoError(
            f"The uploaded file {source.name!r} is not on the server (it did not arrive, or it "
            "was removed: uploads are kept only a few minutes); please upload it again."
        )
    size = source.stat().st_size
    if size == 0:
        raise VideoError(f"The uploaded file {source.name!r} is empty (0 bytes).")
    if size > max_bytes:
        raise VideoError(
            f"The uploaded file {source.name!r} is {size / 1e6:.0f} MB; the limit is "
            f"{max_bytes / 1e6:.0f} MB."
        )
    return source


def stage_upload(upload: str | Path | None, request_dir: Path, max_bytes: int) -> Path:
    """Put the uploaded file into `request_dir` under a neutral name (see `check_upload`)."""
    source = check_upload(upload, max_bytes)
    return link_or_copy(source, request_dir / safe_upload_name(source.name))


def resolve_result_dir(outputs_dir: Path, name: str) -> Path:
    """The result folder `name` names, only if it is a well-formed result name, lies inside
    `outputs_dir` and holds a report.json; otherwise a DiffBGMError (this guards every path
    that comes from a client)."""
    root = outputs_dir.resolve()
    folder = (root / check_result_name(name)).resolve()
    if folder.parent != root:
        raise DiffBGMError(f"{name!r} is not a result of this app.")
    if not (folder / "report.json").is_file() or (folder / IN_PROGRESS_MARKER).exists():
        raise DiffBGMError(
            f"The result {folder.name!r} is gone (outputs are deleted after a while); compose again."
        )
    return folder


def list_result_dirs(outputs_dir: Path) -> list[str]:
    """Names of the finished result folders, newest first."""
    if not outputs_dir.is_dir():
        return []
    folders = [
        p
        for p in outputs_dir.iterdir()
        if p.is_dir() and (p / "report.json").is_file() and not (p / IN_PROGRESS_MARKER).exists()
    ]
    return [p.name for p in sorted(folders, key=_mtime, reverse=True)]


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
        marker = folder / IN_PROGRESS_MARKER
        if marker.exists() and _held_by_a_live_process(marker):
            continue  # a long compose still working in it
        if now_s - _mtime(folder) > max_age_s:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def link_or_copy(source: Path, target: Path) -> Path:
    """`target` as a hard link to `source` (no extra space, same file system), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


def write_export(exports_dir: Path, slug: str, text: str) -> Path:
    """Write a study's CSV export to a fresh, unguessable folder and remove the study's earlier
    exports, so "Show results" pressed again and again leaves one file, not one per press.

    The folder name stays secret (a participant knows the study's slug, and must not be able
    to fetch the results by guessing the path).
    """
    name = f"{slug}.csv"
    if exports_dir.is_dir():
        for old in exports_dir.glob(f"*/{name}"):
            shutil.rmtree(old.parent, ignore_errors=True)
    export = exports_dir / uuid.uuid4().hex / name
    export.parent.mkdir(parents=True, exist_ok=True)
    export.write_text(text, encoding="utf-8")
    return export


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
