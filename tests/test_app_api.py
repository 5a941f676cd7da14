"""The web app's API.

Part 1 drives the handlers directly with a stand-in composer that writes the same files a
real one does (fast; checks views, errors, clean-up and the study flow over a real SQLite
store). Part 2 launches the real app with the real tiny model and drives it through
`gradio_client`, as a script would.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pytest

from diffbgm.errors import VideoError
from diffbgm.generation.config import GenerationConfig
from diffbgm.options import ComposeOptions
from diffbgm.plan import MusicPlan
from diffbgm.result import CompositionMetrics, Report, VariantFiles, write_report
from diffbgm.video.types import Shot, ShotFeatures, VideoAnalysis, VideoInfo
from tests.app_server import ADMIN_TOKEN, running_app, tiny_model_missing_reason, write_test_video
from webapp import media
from webapp.handlers import (
    STEM_SLOTS,
    ComposerHolder,
    Handlers,
    regenerated_line,
    segment_table,
    structure_line,
    summary_markdown,
)
from webapp.settings import AppSettings, SettingsError
from webapp.ui import build_app, study_code_from_url

# --- part 1: handlers with a stand-in composer ---------------------------------------------


def _plan_dict(n_segments: int) -> dict[str, Any]:
    """A valid two-bar-per-segment plan at 120 BPM (2 s per bar)."""
    dynamic = {"density": 0.5, "velocity": 0.5, "register": 0.5, "polyphony": 0.5}
    semantic = {
        "melodic": 1.0,
        "intro": 0.0,
        "outro": 0.0,
        "minor_share": 0.0,
        "harmonic_rhythm": 0.5,
        "position": 0.0,
    }
    return {
        "tempo_bpm": 120.0,
        "offset_s": 0.0,
        "n_bars": 2 * n_segments,
        "duration_s": 4.0 * n_segments,
        "key": {"tonic_pc": 2, "mode": "minor", "name": "D minor"},
        "segments": [
            {
                "index": i,
                "start_beat": 8 * i,
                "n_beats": 8,
                "shot_indices": [i],
                "dynamic": dynamic,
                "semantic": semantic,
            }
            for i in range(n_segments)
        ],
        "chords": [{"bar": 0, "beat": 0, "n_beats": 4, "label": "D:min"}],
    }


def stand_in_report(seed: int) -> Report:
    """A real Report (the typed record a Composer writes) for a made-up 8 s, two-shot video."""
    info = VideoInfo(
        path=Path("clip.mp4"),
        container="mov,mp4",
        duration_s=8.0,
        width=64,
        height=48,
        fps=25.0,
        variable_fps=False,
        rotation_deg=0,
        n_frames_estimate=200,
        has_audio=False,
        size_bytes=1000,
        video_codec="h264",
    )
    shots = [Shot(0, 0.0, 4.0), Shot(1, 4.0, 8.0)]
    return Report(
        video="clip.mp4",
        model_id="stand-in",
        options=ComposeOptions(seed=seed),
        generation=GenerationConfig(),
        seeds=[seed],
        video_info=info,
        analysis=VideoAnalysis(info=info, shots=shots, features=[]),
        plan=MusicPlan.from_dict(_plan_dict(2)),
        timings_s={"total": 0.1},
        real_time_factor=0.0125,
        metrics=CompositionMetrics(cut_alignment=1.0, n_cuts=1, n_segments=2),
        files=[VariantFiles(seed, "score.mid", "music.wav", "video.mp4", "pianoroll.png")],
    )


class StandInComposer:
    """Writes the files and report.json a real Composer writes, without a model."""

    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.fail_with = fail_with
        self.calls: list[tuple[Path, Path, Any]] = []

    def __call__(
        self, video: Path, out_dir: Path, options: Any, progress: Any = None, info: Any = None
    ) -> None:
        self.calls.append((Path(video), Path(out_dir), options))
        if self.fail_with is not None:
            raise self.fail_with
        self._write(out_dir, seed=options.seed)
        if progress is not None:
            progress(1, 1, "done")

    def regenerate(self, source: Path, segment_index: int, seed: int, **kwargs: Any) -> None:
        if not 0 <= segment_index < 2:
            raise VideoError(f"segment {segment_index + 1} does not exist (1-2)")
        self._write(Path(kwargs["out_dir"]), seed=seed)

    @staticmethod
    def _write(out_dir: Path, seed: int) -> None:
        import soundfile

        (out_dir / "thumbnails").mkdir(parents=True, exist_ok=True)
        for i in range(2):
            (out_dir / "thumbnails" / f"shot_{i:03d}.jpg").write_bytes(b"\xff\xd8\xff\xd9")
        (out_dir / "score.mid").write_bytes(b"MThd")
        soundfile.write(out_dir / "music.wav", np.zeros(8000, dtype=np.float32), 8000)
        (out_dir / "video.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
        (out_dir / "pianoroll.png").write_bytes(b"\x89PNG")
        write_report(stand_in_report(seed), out_dir)


def _handlers(tmp_path: Path, composer: StandInComposer) -> tuple[Handlers, list[int]]:
    from webapp.store import make_engine, migrate

    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = AppSettings(data_dir=tmp_path / "data", admin_enabled=True)
    engine = make_engine(f"sqlite:///{tmp_path / 'ratings.db'}")
    migrate(engine)
    loads: list[int] = []

    def load() -> StandInComposer:
        loads.append(1)
        return composer

    return Handlers(settings, ComposerHolder(load), engine), loads


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    return write_test_video(tmp_path / "my clip (1).mp4", seconds=2.0, cut_every_s=1.0)


FORM = ("calm", 0, "auto", 0, 3, None, None, 1, "duck")


def test_compose_shows_files_of_a_fresh_folder_and_loads_the_model_once(
    tmp_path: Path, clip: Path
) -> None:
    composer = StandInComposer()
    handlers, loads = _handlers(tmp_path, composer)
    assert not handlers.composers.loaded  # nothing loaded before the first compose
    first = handlers.compose(str(clip), *FORM)
    second = handlers.compose(str(clip), *FORM)
    assert loads == [1]
    summary, gallery, shots, segments, roll, audio, video, downloads, name, segment, *rest = first
    sheet_view, *stem_players = rest
    assert sheet_view == ""  # the stand-in writes no sheet: older results show none
    assert len(stem_players) == STEM_SLOTS
    assert all(update["visible"] is False for update in stem_players)  # one part: no stems
    assert name != second[8]
    folder = handlers.settings.outputs_dir / name
    assert (folder / "input-my_clip_1.mp4").is_file()  # staged under a harmless name
    assert "D minor" in summary and "120.0 BPM" in summary
    assert [caption for _, caption in gallery] == ["Shot 1 · 0.00-4.00 s", "Shot 2 · 4.00-8.00 s"]
    assert shots["data"][1][:3] == [2, 4.0, 8.0]
    assert segments["data"][1][:4] == [2, 4.0, 8.0, 2.0]
    assert {Path(p).name for p in downloads} == {
        "score.mid",
        "music.wav",
        "video.mp4",
        "report.json",
    }
    assert all(Path(p).is_file() for p in [roll, audio, video, *downloads])
    assert segment["maximum"] == 2
    assert "recall" not in composer.calls[-1][2].generation  # empty field: the model's default
    handlers.compose(str(clip), *FORM, 0.3)
    assert composer.calls[-1][2].generation["recall"] == 0.3


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"hello, this is text and not a video\n" * 20, "text")],
)
def test_bad_upload_is_refused_clearly_and_leaves_no_folder(
    tmp_path: Path, content: bytes, message: str
) -> None:
    composer = StandInComposer()
    handlers, loads = _handlers(tmp_path, composer)
    upload = tmp_path / "notes.mp4"
    upload.write_bytes(content)
    with pytest.raises(gr.Error, match=f"'notes.mp4'.*{message}"):
        handlers.compose(str(upload), *FORM)
    assert loads == [] and composer.calls == []  # refused before the model is even loaded
    assert media.list_result_dirs(handlers.settings.outputs_dir) == []
    outputs = handlers.settings.outputs_dir
    assert not outputs.exists() or list(outputs.iterdir()) == []


def test_library_errors_pass_through_and_unexpected_ones_are_generic(
    tmp_path: Path, clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    handlers, _ = _handlers(tmp_path, StandInComposer(fail_with=VideoError("the video is odd")))
    with pytest.raises(gr.Error, match="the video is odd"):
        handlers.compose(str(clip), *FORM)
    broken, _ = _handlers(tmp_path / "b", StandInComposer(fail_with=KeyError("internal detail")))
    with pytest.raises(gr.Error) as info:
        broken.compose(str(clip), *FORM)
    assert "internal detail" not in str(info.value) and "reference" in str(info.value)
    assert "internal detail" in caplog.text  # the traceback is in the log, not in the page
    with pytest.raises(gr.Error, match="tempo"):
        handlers.compose(str(clip), "calm", 999, "auto", 0, 0, None, None, 1, "duck")
    with pytest.raises(gr.Error, match="recall must be between 0 and 1"):
        handlers.compose(str(clip), "calm", 0, "auto", 0, 0, None, None, 1, "duck", 1.5)
    with pytest.raises(gr.Error, match="upload a video"):
        handlers.compose(None, *FORM)


def test_the_users_chords_and_sections_reach_the_composer_and_the_summary(
    tmp_path: Path, clip: Path
) -> None:
    composer = StandInComposer()
    handlers, _ = _handlers(tmp_path, composer)
    extra = (None, "solo-piano", None, None)  # recall, arrangement, candidates, control guidance
    handlers.compose(str(clip), *FORM, *extra, "| Am | F | C | G7 |", "0:01.5", True, "a b")
    options = composer.calls[-1][2]
    assert options.chords == ("A:min", "F:maj", "C:maj", "G:7")
    assert options.sections == (1.5,) and options.sections_only and options.form == ("A", "B")
    with pytest.raises(gr.Error, match="3 labels for 2 sections"):
        handlers.compose(str(clip), *FORM, *extra, "", "1.5", False, "ABA")
    handlers.compose(str(clip), *FORM, *extra, "", " ", False)
    assert composer.calls[-1][2].chords is None and composer.calls[-1][2].sections is None
    with pytest.raises(
        gr.Error, match="cannot read the chord &#x27;H7&#x27;|cannot read the chord 'H7'"
    ):
        handlers.compose(str(clip), *FORM, *extra, "C H7", "", False)
    with pytest.raises(gr.Error, match="cannot read the time"):
        handlers.compose(str(clip), *FORM, *extra, "", "soon", False)
    # the way of playing, the last input (an older client that leaves it out gets "even")
    handlers.compose(str(clip), *FORM, *extra, "", "", False, "", "", "", "wide")
    assert composer.calls[-1][2].playing == "wide"
    handlers.compose(str(clip), *FORM, *extra, "", "", False)
    assert composer.calls[-1][2].playing == "even"
    with pytest.raises(
        gr.Error, match="unknown way of playing 'loud'|unknown way of playing &#x27;loud"
    ):
        handlers.compose(str(clip), *FORM, *extra, "", "", False, "", "", "", "loud")
    calls = len(composer.calls)
    with pytest.raises(gr.Error, match=r"inside the video \(0, 2.00\) s: 3"):
        handlers.compose(str(clip), *FORM, *extra, "", "1, 3", False)  # the clip lasts 2 s
    assert len(composer.calls) == calls  # refused before the compose queue
    # the summary says what the user fixed and where the asked sections landed (the stand-in's
    # plan: segments start at 0 and 4 s)
    report = stand_in_report(0)
    report = replace(
        report,
        options=ComposeOptions(
            chords=("Am", "F"), sections=(3.5,), sections_only=True, form=("A", "B")
        ),
    )
    line = structure_line(report)
    assert line == (
        "your chords (2 bars, repeated to fill; key from them); "
        "your sections instead of the shot cuts: 3.5 s at 4.00 s; form A B"
    )
    assert structure_line(stand_in_report(0)) is None
    # a regenerate names the segments it composed again: the one asked and its repeats
    plain = stand_in_report(0)
    repeating = list(plain.plan.segments)
    repeating[1] = replace(repeating[1], recalls=0)
    regenerated = replace(
        plain,
        plan=replace(plain.plan, segments=tuple(repeating)),
        regenerated_segment=0,
        generation=GenerationConfig(recall=0.5),
    )
    assert regenerated_line(regenerated, 0) == (
        "segment 1 composed again with the segment repeating it (2)"
    )
    assert "segment 1 composed again with" in summary_markdown(regenerated)
    columns, rows = segment_table(regenerated)
    assert [row[columns.index("repeats")] for row in rows] == ["", "1"]
    no_recall = replace(regenerated, generation=GenerationConfig(recall=0.0))
    assert regenerated_line(no_recall, 0) == "segment 1 composed again"
    # what the report records rules (a model with the recall input follows at recall 0 too)
    recorded = replace(no_recall, recomposed_segments=(0, 1))
    assert regenerated_line(recorded, 0) == (
        "segment 1 composed again with the segment repeating it (2)"
    )


def test_the_music_span_reaches_the_composer_and_the_summary(tmp_path: Path, clip: Path) -> None:
    composer = StandInComposer()
    handlers, _ = _handlers(tmp_path, composer)
    extra = (None, "solo-piano", None, None, "", "", False, "")  # ... through the form
    handlers.compose(str(clip), *FORM, *extra, "0:00.0", "2,00")  # the clip lasts 2 s
    options = composer.calls[-1][2]
    assert (options.music_start_s, options.music_end_s) == (0.0, 2.0)
    handlers.compose(str(clip), *FORM, *extra, " ", "")
    assert (composer.calls[-1][2].music_start_s, composer.calls[-1][2].music_end_s) == (None, None)
    handlers.compose(str(clip), *FORM[:-1], "dialogue")  # the music dips under the video's sound
    assert composer.calls[-1][2].audio == "dialogue"
    calls = len(composer.calls)
    for start, end, message in [
        ("0:01", "", "would last 1 s"),  # 1 s of a 2 s clip
        ("", "5", "cannot end at 5 s: the video lasts 2.00 s"),
        ("later", "", "cannot read the time"),
        ("1.5", "1", "would last 0 s"),
    ]:
        with pytest.raises(gr.Error, match=message):
            handlers.compose(str(clip), *FORM, *extra, start, end)
    assert len(composer.calls) == calls  # each refused before the compose queue
    # the summary says where the music plays (the stand-in's 8 s video, music 2-6 s)
    report = stand_in_report(0)
    plan = MusicPlan.from_dict(
        {**_plan_dict(2), "duration_s": 8.0, "offset_s": 2.0, "n_bars": 2, "music_start_s": 2.0}
        | {"music_end_s": 6.0, "segments": _plan_dict(1)["segments"]}
    )
    spanned = replace(report, plan=plan, options=ComposeOptions(music_start_s=2.0, music_end_s=6.0))
    assert structure_line(spanned) == "music from 0:02.00 to 0:06.00 only"  # a silent video
    with_sound = replace(spanned, video_info=replace(report.video_info, has_audio=True))
    assert structure_line(with_sound) == (
        "music from 0:02.00 to 0:06.00 only, the video's sound lowered under it"
    )
    speech = replace(with_sound, options=replace(with_sound.options, audio="dialogue"))
    assert structure_line(speech) == (
        "music from 0:02.00 to 0:06.00 only, dipping under the video's sound"
    )
    assert segment_table(spanned)[1][0][1:3] == [2.0, 6.0]  # the segment in video time


def test_regenerate_writes_a_new_folder_and_refuses_foreign_paths(
    tmp_path: Path, clip: Path
) -> None:
    handlers, _ = _handlers(tmp_path, StandInComposer())
    name = handlers.compose(str(clip), *FORM)[8]
    again = handlers.regenerate(name, 2, 7, 0.3)
    assert again[8] != name and "seeds [7]" in again[0]
    for hostile in ("../../etc", "/etc", "req-does-not-exist", ""):
        with pytest.raises(gr.Error):
            handlers.regenerate(hostile, 1, 1, 0)
    with pytest.raises(gr.Error, match="segment 3 does not exist"):
        handlers.regenerate(name, 3, 1, 0)


def test_hostile_upload_names_are_neutralised() -> None:
    assert media.safe_upload_name("../../-rf x;.MP4") == "input-rf_x.mp4"
    assert media.safe_upload_name("$(reboot).sh") == "input-reboot.bin"
    assert media.safe_upload_name("x" * 400 + ".webm") == "input-" + "x" * 50 + ".webm"
    assert media.safe_upload_name("....") == "input.bin"


def test_old_outputs_are_cleaned_up(tmp_path: Path) -> None:
    old = media.new_request_dir(tmp_path)
    new = media.new_request_dir(tmp_path)
    stamp = time.time() - 7200
    os.utime(old, (stamp, stamp))
    assert media.cleanup_old_outputs(tmp_path, max_age_s=3600) == [old.name]
    assert new.exists() and not old.exists()


def test_settings_from_env_and_bad_values() -> None:
    settings = AppSettings.from_env({"DIFFBGM_MAX_UPLOAD_MB": "5", "GRADIO_SERVER_NAME": "0.0.0.0"})
    assert settings.max_upload_bytes == 5 * 1024 * 1024 and settings.host == "0.0.0.0"
    assert not settings.admin_enabled and settings.compose_concurrency == 1
    with pytest.raises(SettingsError, match="DIFFBGM_MAX_UPLOAD_MB"):
        AppSettings.from_env({"DIFFBGM_MAX_UPLOAD_MB": "lots"})


def test_segment_table_numbers_segments_from_one() -> None:
    columns, rows = segment_table(stand_in_report(0))
    assert columns[:6] == ["segment", "start (s)", "end (s)", "bars", "shots", "repeats"]
    assert [row[0] for row in rows] == [1, 2]


def test_study_flow_through_the_handlers(
    tmp_path: Path, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIFFBGM_ADMIN_TOKEN", ADMIN_TOKEN)
    handlers, _ = _handlers(tmp_path, StandInComposer())
    names = [handlers.compose(str(clip), *FORM)[8] for _ in range(2)]
    with pytest.raises(gr.Error, match="admin token is wrong"):
        handlers.create_study("nope", "Pilot", "likert", names, "full, plain")
    # Result folder names are only listed to an admin (they would expose other uploads).
    with pytest.raises(gr.Error, match="admin token is wrong"):
        handlers.result_choices("nope")
    assert set(names) <= set(handlers.result_choices(ADMIN_TOKEN)["choices"])
    with pytest.raises(gr.Error, match="one condition name per chosen result"):
        handlers.create_study(ADMIN_TOKEN, "Pilot", "likert", names, "full")
    message, code = handlers.create_study(ADMIN_TOKEN, "Pilot", "likert", names, "full, plain")
    assert "1 item(s)" in message and code.startswith("pilot-")
    # The study keeps its own copies: cleaning the outputs does not break it.
    shutil.rmtree(handlers.settings.outputs_dir)

    token, status, key, video_a, audio_a, *_ = handlers.join_study(code.upper())
    assert "Item 1 of 2" in status and key.startswith("rate:")
    assert Path(video_a).name == "video.mp4" and Path(audio_a).name == "music.wav"
    with pytest.raises(gr.Error, match="all three ratings"):
        handlers.rate(token, key, 5, None, 5, None)
    after_first = handlers.rate(token, key, 5, 5, 5, None)
    assert "Item 2 of 2" in after_first[0]
    handlers.rate(token, key, 1, 1, 1, None)  # re-rating the first track replaces the answer
    done = handlers.rate(token, after_first[1], 3, 3, 3, None)
    assert "thank you" in done[0]

    summary, table, figure, csv_path = handlers.study_results(ADMIN_TOKEN, code)
    assert "1 participant" in summary and figure is not None
    overall = {row[0]: row[table["headers"].index("overall_mean")] for row in table["data"]}
    assert sorted(overall.values()) == [1.0, 3.0]
    assert Path(csv_path).read_text().count("\n") == 3  # header + two ratings
    with pytest.raises(gr.Error, match="admin token is wrong"):
        handlers.study_results("", code)
    assert "closed" in handlers.close_study(ADMIN_TOKEN, code)
    with pytest.raises(gr.Error, match="closed"):
        handlers.join_study(code)


def test_study_code_is_read_from_the_page_address() -> None:
    class FakeRequest:
        query_params = {"study": "Pilot-3F9A2C"}

    assert study_code_from_url(FakeRequest()) == "pilot-3f9a2c"  # type: ignore[arg-type]


def test_the_app_builds_with_named_endpoints(tmp_path: Path) -> None:
    handlers, _ = _handlers(tmp_path, StandInComposer())
    demo = build_app(handlers.settings, handlers)
    names = {dep.api_name for dep in demo.fns.values()}
    assert {"compose", "regenerate", "join_study", "next_item", "rate"} <= names
    assert {"create_study", "study_results", "close_study"} <= names


# --- part 2: the real app with the real tiny model, through gradio_client -------------------

real_app = pytest.mark.skipif(
    tiny_model_missing_reason() is not None, reason=str(tiny_model_missing_reason())
)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    reason = tiny_model_missing_reason()
    if reason:
        pytest.skip(reason)
    with running_app(tmp_path_factory.mktemp("app-data")) as running:
        yield running


def _compose_args(video: Path, seed: int) -> dict[str, Any]:
    from gradio_client import handle_file

    return {
        "video": handle_file(str(video)),
        "mood": "calm",
        "tempo_bpm": 0,
        "key": "auto",
        "density": 0,
        "seed": seed,
        "guidance": None,
        "steps": 4,
        "variants": 1,
        "audio": "duck",
        "api_name": "/compose",
    }


@real_app
def test_api_bad_upload_then_compose_works(app: Any, tmp_path: Path) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app.url, verbose=False)
    fake = tmp_path / "holiday.mp4"
    fake.write_text("this is a text file renamed to .mp4\n" * 10)
    with pytest.raises(AppError, match="'holiday.mp4' is a text file"):
        client.predict(**_compose_args(fake, 0))
    video = write_test_video(tmp_path / "clip.mp4", seconds=4.0)
    summary, gallery, _, _, roll, audio, mp4, downloads, name, _, sheet_view, *stems = (
        client.predict(**_compose_args(video, 0))
    )
    assert "BPM" in summary and name.startswith("req-")
    assert gallery and Path(roll).is_file() and Path(audio).is_file()
    assert Path(mp4).is_file()
    assert {Path(p).suffix for p in downloads} >= {".mid", ".wav", ".mp4", ".json", ".zip"}
    assert "<svg" in sheet_view and len(stems) == STEM_SLOTS
    assert (app.data_dir / "outputs" / name / "report.json").is_file()


@real_app
def test_api_compose_with_the_users_chords_and_sections(app: Any, tmp_path: Path) -> None:
    import json

    from gradio_client import Client

    client = Client(app.url, verbose=False)
    video = write_test_video(tmp_path / "clip.mp4", seconds=4.0)
    args = _compose_args(video, 0) | {"chords": "Dm7 G7 Cmaj7 %", "sections": "0:01.5"}
    summary, *_, name, _, _ = client.predict(**args)[:11]
    assert "your chords (4 bars" in summary and "your sections besides the shot cuts" in summary
    # a form over sections that only the user sets: the second section takes up the first's
    # music (a 6 s clip, sections starting on downbeats at 120 BPM)
    formed = _compose_args(write_test_video(tmp_path / "six.mp4", seconds=6.0), 0) | {
        "tempo_bpm": 120,
        "sections": "2, 4",
        "sections_only": True,
        "form": "A A B",
    }
    summary_formed, *_, formed_name, _, _ = client.predict(**formed)[:11]
    assert "form A A B" in summary_formed
    segments = json.loads((app.data_dir / "outputs" / formed_name / "report.json").read_text())[
        "plan"
    ]["segments"]
    assert [segment["recalls"] for segment in segments] == [-1, 0, -1]
    # the sheet's rehearsal marks are the form's labels, where the sections start
    from xml.etree import ElementTree

    score = ElementTree.parse(app.data_dir / "outputs" / formed_name / "score.musicxml")
    assert [mark.text for mark in score.getroot().iter("rehearsal")] == ["A", "A", "B"]
    report = json.loads((app.data_dir / "outputs" / name / "report.json").read_text())
    assert report["options"]["chords"] == ["D:min7", "G:7", "C:maj7", "C:maj7"]
    assert report["options"]["sections"] == [1.5]
    plan = report["plan"]
    assert plan["key"]["name"] == "C major" and plan["provenance"]["key"] == "the user's chords"
    # the progression, started again at the section's first full bar
    labels = {chord["label"] for chord in plan["chords"]}
    assert plan["chords"][0]["label"] == "D:min7" and labels <= {"D:min7", "G:7", "C:maj7"}


@real_app
def test_api_compose_for_part_of_the_video(app: Any, tmp_path: Path) -> None:
    import json

    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app.url, verbose=False)
    video = write_test_video(tmp_path / "clip.mp4", seconds=6.0)
    args = _compose_args(video, 0) | {"tempo_bpm": 120, "music_start": "1", "music_end": "0:05"}
    summary, *_, name, _, _ = client.predict(**args)[:11]
    assert "music from 0:01.00 to 0:05.00 only" in summary
    report = json.loads((app.data_dir / "outputs" / name / "report.json").read_text())
    assert report["plan"]["music_start_s"] == 1.0 and report["plan"]["music_end_s"] == 5.0
    with pytest.raises(AppError, match="cannot start at 7 s"):
        client.predict(**(args | {"music_start": "7", "music_end": ""}))


@real_app
def test_api_study_flow(app: Any, tmp_path: Path) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app.url, verbose=False)
    video = write_test_video(tmp_path / "clip.mp4", seconds=4.0)
    names = [client.predict(**_compose_args(video, seed))[8] for seed in (1, 2)]
    with pytest.raises(AppError, match="admin token is wrong"):
        client.predict("", "Pilot", "likert", names, "a, b", api_name="/create_study")
    message, code = client.predict(
        app.admin_token, "Pilot", "likert", names, "a, b", api_name="/create_study"
    )
    assert "1 item(s)" in message
    token, status, key, *_ = client.predict(code, api_name="/join_study")
    assert "Item 1 of 2" in status
    second = client.predict(token, key, 5, 5, 5, None, api_name="/rate")
    client.predict(token, key, 2, 2, 2, None, api_name="/rate")  # re-rate: replaces
    client.predict(token, second[1], 4, 4, 4, None, api_name="/rate")
    summary, table, _, csv_file = client.predict(app.admin_token, code, api_name="/study_results")
    means = sorted(row[table["headers"].index("overall_mean")] for row in table["data"])
    assert means == [2.0, 4.0] and Path(csv_file).read_text().count("\n") == 3
    with pytest.raises(AppError, match="admin token is wrong"):
        client.predict("wrong", code, api_name="/study_results")


def _feature_row(index: int) -> dict[str, Any]:
    names = ("motion", "motion_change", "brightness", "brightness_change", "saturation")
    more = ("colour_temperature", "visual_rhythm", "valence", "arousal")
    return {"shot_index": index, **dict.fromkeys(names + more, 0.5)}


def test_shot_table_shows_clip_scene_words_and_a_dash_without_them() -> None:
    from dataclasses import replace

    from webapp.handlers import SHOT_COLUMNS, shot_rows

    report = stand_in_report(0)
    assert [row[-1] for row in shot_rows(report)] == ["–", "–"]
    features = [
        ShotFeatures.from_dict({**_feature_row(i), "scenes": ["a beach", "the sea"]})
        for i in range(2)
    ]
    read = replace(report, analysis=replace(report.analysis, features=features, semantics="clip:x"))
    assert shot_rows(read)[0][-1] == "a beach, the sea"
    assert SHOT_COLUMNS[-1] == "scene (CLIP)"
