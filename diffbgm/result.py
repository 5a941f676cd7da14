"""A composition's result folder: its typed Report, and how the folder comes to exist.

A result is built in a hidden work folder beside its destination and published by renaming
the complete folder into place, so a folder with a report.json is always whole (score,
audio, video, pictures). A work folder carries its process id; one whose process is gone
(a killed run) is swept away the next time a result is written beside it.

report.json is strict JSON (no NaN: undefined figures are null) with a `version`; reports
written before versions existed (version 1) still load, for regeneration and the web app.
It names the input video by its file name only — never a server path.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from diffbgm.errors import DiffBGMError
from diffbgm.generation.config import GenerationConfig
from diffbgm.options import ComposeOptions
from diffbgm.plan import MusicPlan
from diffbgm.video.types import VideoAnalysis, VideoInfo

REPORT_NAME = "report.json"
SOURCE_NAME = "source.json"  # where the input video was; kept out of the served report
REPORT_VERSION = 2
WORK_PREFIX = ".diffbgm-"
OUTPUT_NAMES = (
    "score.mid",
    "music.wav",
    "video.mp4",
    "pianoroll.png",
    REPORT_NAME,
    "roll.npz",
    "score.musicxml",
    "score.svg",
    "music.zip",
)
STEMS_FOLDER = "stems"


@dataclass(frozen=True)
class VariantFiles:
    """One generated soundtrack's files, relative to the result folder."""

    seed: int
    midi: str
    wav: str
    video: str
    pianoroll: str
    roll: str = "roll.npz"
    # stem name -> WAV ({} in reports before stems; a one-part score's only stem is the mix)
    stems: dict[str, str] = field(default_factory=dict)
    musicxml: str | None = None  # sheet music; None in reports before it
    sheet_svg: str | None = None  # its engraving
    bundle: str | None = None  # the zip of score, sheet, mix and stems


@dataclass(frozen=True)
class SoundReport:
    """How the audio was made: the soundfont's file name and the level it was brought to."""

    soundfont: str
    target_lufs: float
    true_peak_dbtp: float

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SoundReport:
        return cls(
            str(data["soundfont"]), float(data["target_lufs"]), float(data["true_peak_dbtp"])
        )


@dataclass(frozen=True)
class CompositionMetrics:
    """How the music met the video. cut_alignment: share of shot cuts within a beat of a
    segment boundary; None where the video has no cut (nothing to align)."""

    cut_alignment: float | None
    n_cuts: int
    n_segments: int


@dataclass(frozen=True)
class Report:
    """Everything report.json holds about one result."""

    video: str  # the input's file name
    model_id: str
    options: ComposeOptions
    generation: GenerationConfig
    seeds: list[int]
    video_info: VideoInfo
    analysis: VideoAnalysis
    plan: MusicPlan
    timings_s: dict[str, float]
    real_time_factor: float
    metrics: CompositionMetrics
    files: list[VariantFiles]
    regenerated_segment: int | None = None
    # the segments a regenerate composed again: the asked one, then those repeating it (empty
    # in reports before it was recorded, and for a compose)
    recomposed_segments: tuple[int, ...] = ()
    sound: SoundReport | None = None  # None in reports before it was recorded
    # "bf16" or "fp32": what sampling computed in on this machine ("" in older reports)
    precision: str = ""
    # "onnxruntime" or "torch": what was chosen to run the network ("" in older reports)
    runtime: str = ""
    version: int = REPORT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "video": self.video,
            "model_id": self.model_id,
            "options": self.options.to_dict(),
            "generation": self.generation.to_dict(),
            "seeds": list(self.seeds),
            "video_info": _without_path(self.video_info.to_dict()),
            "analysis": _analysis_dict(self.analysis),
            "plan": self.plan.to_dict(),
            "timings_s": dict(self.timings_s),
            "real_time_factor": self.real_time_factor,
            "metrics": {
                "cut_alignment": self.metrics.cut_alignment,
                "n_cuts": self.metrics.n_cuts,
                "n_segments": self.metrics.n_segments,
            },
            "files": [vars(files) for files in self.files],
            "regenerated_segment": self.regenerated_segment,
            "recomposed_segments": list(self.recomposed_segments),
            "sound": None if self.sound is None else vars(self.sound),
            "precision": self.precision,
            "runtime": self.runtime,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """From report.json of any version (1: before versions; 2: this one)."""
        version = int(data.get("version", 1))
        if version > REPORT_VERSION:
            raise DiffBGMError(f"report version {version} is newer than this Diff-BGM reads")
        metrics = data.get("metrics", {})
        alignment = metrics.get("cut_alignment")
        analysis = dict(data["analysis"])
        info = dict(data.get("video_info") or analysis["info"])
        info.setdefault("path", data.get("video", ""))
        analysis["info"] = {**analysis["info"], "path": info["path"]}
        return cls(
            video=str(data.get("video", "")),
            model_id=str(data.get("model_id", "")),
            options=ComposeOptions.from_dict(data.get("options", {})),
            generation=GenerationConfig.from_dict(data.get("generation", {})),
            seeds=[int(s) for s in data.get("seeds", [])],
            video_info=VideoInfo.from_dict(info),
            analysis=VideoAnalysis.from_dict(analysis),
            plan=MusicPlan.from_dict(data["plan"]),
            timings_s={str(k): float(v) for k, v in data.get("timings_s", {}).items()},
            real_time_factor=float(data.get("real_time_factor", 0.0)),
            metrics=CompositionMetrics(
                cut_alignment=None if alignment is None or _is_nan(alignment) else float(alignment),
                n_cuts=int(metrics.get("n_cuts", 0)),
                n_segments=int(metrics.get("n_segments", 0)),
            ),
            files=[
                _in_variant_folder(VariantFiles(**_variant_fields(f)), n, version)
                for n, f in enumerate(data.get("files", []))
            ],
            regenerated_segment=data.get("regenerated_segment"),
            recomposed_segments=tuple(int(i) for i in data.get("recomposed_segments") or ()),
            sound=SoundReport.from_dict(data["sound"]) if data.get("sound") else None,
            precision=str(data.get("precision", "")),
            runtime=str(data.get("runtime", "")),
            version=REPORT_VERSION,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _variant_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields(VariantFiles)}
    return {k: v for k, v in data.items() if k in known}


def _in_variant_folder(files: VariantFiles, index: int, version: int) -> VariantFiles:
    """Version 1 named a variant's files relative to its own folder (variant-2/, ...)."""
    if version >= 2 or index == 0:
        return files
    prefix = f"variant-{index + 1}/"
    return VariantFiles(
        files.seed,
        prefix + files.midi,
        prefix + files.wav,
        prefix + files.video,
        prefix + files.pianoroll,
        prefix + files.roll,
    )


def _without_path(info: dict[str, Any]) -> dict[str, Any]:
    info["path"] = Path(str(info["path"])).name
    return info


def _analysis_dict(analysis: VideoAnalysis) -> dict[str, Any]:
    """The analysis with the input named by file name and thumbnails relative to the folder."""
    data = analysis.to_dict()
    data["info"] = _without_path(data["info"])
    if data.get("thumbnails") is not None:
        data["thumbnails"] = [f"thumbnails/{Path(p).name}" for p in data["thumbnails"]]
    return data


def load_report(path: str | Path) -> Report:
    """Read a result's report.json (a folder or the file); a clear error when it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DiffBGMError(f"cannot read report {path.name}: {exc}") from exc
    if not isinstance(data, dict) or "plan" not in data:
        raise DiffBGMError(f"{path.name} is not a Diff-BGM report.json (no plan in it)")
    try:
        return Report.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise DiffBGMError(f"{path.name} is not a readable Diff-BGM report: {exc}") from exc


def write_report(report: Report, folder: Path) -> Path:
    path = folder / REPORT_NAME
    path.write_text(report.to_json())
    return path


def write_source(folder: Path, video: Path) -> None:
    """Where the input video was, for regeneration (not part of the served report)."""
    (folder / SOURCE_NAME).write_text(json.dumps({"video_path": str(video.resolve())}))


def read_source(folder: Path) -> Path | None:
    """The input video recorded for a result: source.json, or (version 1) report.json's
    `video_path`; None when neither says."""
    for name, key in ((SOURCE_NAME, "video_path"), (REPORT_NAME, "video_path")):
        try:
            recorded = json.loads((folder / name).read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(recorded, str) and recorded:
            return Path(recorded)
    return None


# --- the folder's life: work, publish, sweep ------------------------------------------------


@contextmanager
def work_folder(out_dir: Path) -> Iterator[Path]:
    """A hidden folder beside out_dir (same file system, so publishing is a rename), removed
    on every way out of the block; stale ones of dead processes are swept first."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_work(out_dir.parent)
    work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=out_dir.parent))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_work(parent: Path) -> list[Path]:
    """Remove work folders in `parent` whose process has ended (killed runs); returns them."""
    removed = []
    for folder in parent.glob(f"{WORK_PREFIX}*"):
        pid_text = folder.name[len(WORK_PREFIX) :].split("-", 1)[0]
        if not folder.is_dir() or not pid_text.isdigit():
            continue
        if int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def check_output_folder(video: Path, out_dir: Path) -> None:
    """Refuse an output folder that is a file, that holds folders of its own (a result
    replaces the folder; loose files in it are kept), or where the result would replace the
    input."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DiffBGMError(f"the output folder {out_dir.name} is a file")
    if out_dir.is_dir() and _foreign_folders(out_dir):
        raise DiffBGMError(
            f"the output folder {out_dir.name} holds folders of its own: choose a new or empty "
            "folder (or an earlier result, which is replaced)"
        )
    same_folder = video.exists() and video.resolve().parent == out_dir.resolve()
    if same_folder and video.name in OUTPUT_NAMES:
        raise DiffBGMError(
            f"{video.name} would be overwritten by the result: choose another output folder"
        )


def _result_item(name: str) -> bool:
    """Is this name one a result writes (so publishing replaces it)?"""
    return (
        name in OUTPUT_NAMES
        or name in (SOURCE_NAME, "thumbnails", STEMS_FOLDER)
        or name.startswith("variant-")
    )


def _foreign_folders(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir() and not _result_item(p.name)]


def publish(work: Path, out_dir: Path) -> None:
    """Put the complete folder `work` at out_dir in one rename.

    Files in out_dir that are not part of a result (the web app's staged input, say) are
    hard-linked into the new folder first, so they stay. An earlier folder is renamed aside
    and removed after: readers see the old result or the new one, never a mix."""
    aside = None
    if out_dir.exists():
        for item in out_dir.iterdir():
            if item.is_file() and not _result_item(item.name) and not (work / item.name).exists():
                os.link(item, work / item.name)
        aside = Path(
            tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-old-", dir=out_dir.parent)
        )
        aside.rmdir()
        out_dir.rename(aside)
    try:
        work.rename(out_dir)
    except OSError:
        if aside is not None:
            aside.rename(out_dir)  # put the earlier folder back
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


__all__ = [
    "OUTPUT_NAMES",
    "REPORT_NAME",
    "REPORT_VERSION",
    "CompositionMetrics",
    "Report",
    "SoundReport",
    "VariantFiles",
    "check_output_folder",
    "load_report",
    "publish",
    "read_source",
    "sweep_stale_work",
    "work_folder",
    "write_report",
    "write_source",
]
