"""Result folders: the typed report (strict JSON, versions), atomic publishing, swept work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from diffbgm.errors import DiffBGMError
from diffbgm.result import (
    CompositionMetrics,
    Report,
    SoundReport,
    load_report,
    publish,
    sweep_stale_work,
    work_folder,
    write_report,
)
from tests.test_app_api import stand_in_report


def test_report_is_strict_json_with_null_for_undefined_figures(tmp_path: Path) -> None:
    one_shot = replace(
        stand_in_report(1), metrics=CompositionMetrics(cut_alignment=None, n_cuts=0, n_segments=2)
    )
    write_report(one_shot, tmp_path)
    text = (tmp_path / "report.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["metrics"]["cut_alignment"] is None and data["version"] == 2
    assert load_report(tmp_path) == one_shot


def test_report_names_no_server_path(tmp_path: Path) -> None:
    report = stand_in_report(0)
    info = replace(report.video_info, path=Path("/srv/app/outputs/req-1/input-clip.mp4"))
    report = replace(report, video_info=info, analysis=replace(report.analysis, info=info))
    write_report(report, tmp_path)
    text = (tmp_path / "report.json").read_text()
    assert "/srv/app" not in text and "input-clip.mp4" in text


def test_version_one_reports_still_load(tmp_path: Path) -> None:
    data = stand_in_report(3).to_dict()
    del data["version"], data["regenerated_segment"]
    data["metrics"]["cut_alignment"] = float("nan")
    data["options"] = {"seed": 3, "guidance": 2.5, "steps": None, "recall": 0.8}
    data["generation"] = {"steps": 25.0, "recall_strength": 0.8, "guidance": 2.5}
    data["video_path"] = "/somewhere/clip.mp4"
    data["files"].append({**data["files"][0], "seed": 4})  # a second variant, v1 style
    (tmp_path / "report.json").write_text(json.dumps(data))  # NaN, as version 1 wrote it
    report = load_report(tmp_path)
    assert report.metrics.cut_alignment is None
    assert report.options.generation == {"guidance": 2.5, "recall": 0.8}
    assert report.generation.recall == 0.8 and report.generation.steps == 25
    assert report.files[1].wav == "variant-2/music.wav"
    with pytest.raises(DiffBGMError, match="not a Diff-BGM report"):
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "report.json").write_text("{}")
        load_report(tmp_path / "bad")


def test_publish_replaces_a_result_whole_and_keeps_other_files(tmp_path: Path) -> None:
    out = tmp_path / "result"
    out.mkdir()
    (out / "input-clip.mp4").write_bytes(b"video")  # the web app stages its input here
    (out / "report.json").write_text("old")
    (out / "variant-2").mkdir()
    with work_folder(out) as work:
        (work / "report.json").write_text("new")
        (work / "score.mid").write_bytes(b"MThd")
        publish(work, out)
    assert (out / "report.json").read_text() == "new"
    assert (out / "input-clip.mp4").read_bytes() == b"video"
    assert not (out / "variant-2").exists()  # from the earlier result: gone with it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]


def test_a_failed_run_leaves_no_work_folder_and_no_result(tmp_path: Path) -> None:
    out = tmp_path / "result"
    with pytest.raises(RuntimeError), work_folder(out) as work:
        (work / "report.json").write_text("half")
        raise RuntimeError("stage failed")
    assert list(tmp_path.iterdir()) == []


def test_work_folders_of_killed_runs_are_swept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f".diffbgm-{dead.stdout.strip()}-abc"
    stale.mkdir()
    mine = tmp_path / f".diffbgm-{os.getpid()}-xyz"
    mine.mkdir()
    assert sweep_stale_work(tmp_path) == [stale]
    assert mine.exists() and not stale.exists()


def test_report_round_trips() -> None:
    report = stand_in_report(5)
    assert Report.from_dict(json.loads(report.to_json())) == report


def test_stems_sheet_zip_and_sound_round_trip_and_older_reports_lack_them() -> None:
    base = stand_in_report(2)
    files = replace(
        base.files[0],
        stems={"melody": "stems/melody.wav", "drums": "stems/drums.wav"},
        musicxml="score.musicxml",
        sheet_svg="score.svg",
        bundle="music.zip",
    )
    report = replace(base, files=[files], sound=SoundReport("FluidR3_GM.sf2", -14.0, -1.0))
    data = json.loads(report.to_json())
    assert data["sound"] == {
        "soundfont": "FluidR3_GM.sf2",
        "target_lufs": -14.0,
        "true_peak_dbtp": -1.0,
    }
    assert Report.from_dict(data) == report
    for key in ("stems", "musicxml", "sheet_svg", "bundle"):  # a report from before them
        del data["files"][0][key]
    del data["sound"]
    older = Report.from_dict(data)
    assert older.sound is None
    assert older.files[0].stems == {} and older.files[0].musicxml is None
    assert older.files[0].bundle is None and older.files[0].sheet_svg is None


def test_where_the_input_was_comes_from_source_json_or_a_version_one_report(
    tmp_path: Path,
) -> None:
    from diffbgm.result import read_source, write_source

    assert read_source(tmp_path) is None
    (tmp_path / "report.json").write_text(json.dumps({"video_path": "/old/clip.mp4"}))
    assert read_source(tmp_path) == Path("/old/clip.mp4")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    write_source(tmp_path, video)
    assert read_source(tmp_path) == video.resolve()
