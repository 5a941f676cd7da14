"""Regression tests for the outside tester's findings (issue 16), one block per finding.

Handlers run with the stand-in composer of test_app_api (no model); media, mux and probe run
for real on small files made here.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pytest

from diffbgm.video.mux import mux_music
from diffbgm.video.probe import VideoProbeError, probe_video
from tests.app_server import ADMIN_TOKEN, write_test_video
from tests.test_app_api import FORM, StandInComposer, _handlers
from tests.video_fixtures import truncate, write_tiny_video
from webapp import media
from webapp.components import quiet
from webapp.handlers import Handlers, results_figure
from webapp.janitor import Janitor
from webapp.limits import AdminThrottle, BusyError, ComposeGate
from webapp.settings import ADMIN_TOKEN_MIN_LENGTH, AppSettings
from webapp.ui import COMPOSE_GROUP, STUDY_GROUP, build_app

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    return write_test_video(tmp_path / "my clip.mp4", seconds=2.0, cut_every_s=1.0)


@pytest.fixture()
def admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFBGM_ADMIN_TOKEN", ADMIN_TOKEN)


def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


# --- 1. uploads and served copies live in the data folder and are cleaned -----------------


def test_gradio_temp_folder_is_inside_the_data_folder(tmp_path: Path) -> None:
    settings = AppSettings.from_env({"DIFFBGM_DATA_DIR": str(tmp_path / "data")})
    temp = Path(settings.gradio_env()["GRADIO_TEMP_DIR"])
    assert temp.is_relative_to(settings.data_dir) and temp == settings.uploads_dir
    assert str(temp) not in settings.served_dirs  # the data folder itself is never served


def test_result_files_are_served_in_place_not_copied(tmp_path: Path, clip: Path) -> None:
    from gradio.processing_utils import move_files_to_cache

    handlers, _ = _handlers(tmp_path, StandInComposer())
    demo = build_app(handlers.settings, handlers)
    downloads = handlers.compose(str(clip), *FORM)[7]
    file_box = next(
        block
        for block in demo.blocks.values()
        if isinstance(block, gr.File) and block.label == "Downloads"
    )
    served = move_files_to_cache(file_box.postprocess(downloads), file_box, postprocess=True)
    assert [item["path"] for item in served] == downloads  # no copy in Gradio's folder


def test_upload_sweep_removes_old_uploads_and_keeps_recent_ones(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    (uploads / "abc").mkdir(parents=True)
    (uploads / "def").mkdir()
    old = uploads / "abc" / "never composed.mp4"
    new = uploads / "def" / "just uploaded.mp4"
    old.write_bytes(b"x" * 1000)
    new.write_bytes(b"y")
    _age(old, 3600)
    assert media.sweep_old_files(uploads, max_age_s=900) == 1
    assert not old.exists() and not old.parent.exists() and new.exists()


def test_janitor_removes_expired_results_uploads_and_exports(tmp_path: Path) -> None:
    settings = AppSettings(
        data_dir=tmp_path, output_max_age_h=1, upload_max_age_min=10, export_max_age_h=1
    )
    result = media.new_request_dir(settings.outputs_dir)
    (result / "report.json").write_text("{}")
    upload = settings.uploads_dir / "h" / "clip.mp4"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"v")
    export = media.write_export(settings.exports_dir, "pilot-1", "a,b\n")
    for path in (result, upload, export):
        _age(path, 2 * 3600)
    swept = Janitor(settings).sweep()
    assert (swept.results, swept.upload_files, swept.export_files) == (1, 1, 1)
    assert not result.exists() and not upload.exists() and not export.exists()


def test_janitor_sweeps_the_library_work_folders_of_dead_processes(tmp_path: Path) -> None:
    import subprocess
    import sys

    settings = AppSettings(data_dir=tmp_path)
    settings.outputs_dir.mkdir(parents=True, exist_ok=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = settings.outputs_dir / f".diffbgm-{dead}-abc"
    stale.mkdir()
    assert Janitor(settings).sweep().work_dirs >= 1
    assert not stale.exists()


def test_a_used_upload_is_kept_longer(tmp_path: Path, clip: Path) -> None:
    handlers, _ = _handlers(tmp_path, StandInComposer())
    _age(clip, 3600)
    handlers.compose(str(clip), *FORM)
    assert time.time() - clip.stat().st_mtime < 60  # touched: the sweep keeps it


# --- 2. composes have their own bounded queue with a per-client limit ----------------------


def test_compose_gate_limits_each_client_and_the_whole_queue() -> None:
    gate = ComposeGate(capacity=3, per_client=2)
    a1, a2 = gate.admit("a"), gate.admit("a")
    with pytest.raises(BusyError, match="already have 2 compose"):
        gate.admit("a")
    b1 = gate.admit("b")
    with pytest.raises(BusyError, match="queue is full"):
        gate.admit("c")
    gate.release(a1)
    gate.admit("c")
    for ticket in (a2, b1):
        gate.release(ticket)
    assert len(gate) == 1


def test_compose_gate_serves_in_arrival_order() -> None:
    gate = ComposeGate(capacity=10, per_client=10, running=1)
    tickets = [gate.admit(f"c{n}") for n in range(4)]
    order: list[int] = []

    def run(n: int) -> None:
        gate.wait_turn(tickets[n], poll_s=0.01)
        order.append(n)
        time.sleep(0.02)
        gate.release(tickets[n])

    threads = [threading.Thread(target=run, args=(n,)) for n in (3, 1, 2, 0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert order == [0, 1, 2, 3] and len(gate) == 0


class BlockingComposer(StandInComposer):
    """A stand-in that holds the model until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(
        self, video: Path, out_dir: Path, options: Any, progress: Any = None, info: Any = None
    ) -> None:
        self.started.set()
        assert self.release.wait(30)
        super().__call__(video, out_dir, options, progress)


class FakeRequest:
    def __init__(self, host: str) -> None:
        self.client = type("Client", (), {"host": host})()


def test_a_client_with_composes_waiting_is_refused_at_once_others_are_not(
    tmp_path: Path, clip: Path
) -> None:
    composer = BlockingComposer()
    handlers, _ = _handlers(tmp_path, composer)
    flood = FakeRequest("10.0.0.1")
    outcomes: list[Any] = []

    def compose(request: FakeRequest) -> None:
        try:
            outcomes.append(handlers.compose(str(clip), *FORM, request=request))
        except gr.Error as exc:
            outcomes.append(exc)

    running = [threading.Thread(target=compose, args=(flood,)) for _ in range(2)]
    for thread in running:
        thread.start()
    assert composer.started.wait(10)
    deadline = time.monotonic() + 20  # the second may still be probing its upload (busy CPU)
    while len(handlers.gate) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(handlers.gate) == 2
    start = time.monotonic()
    with pytest.raises(gr.Error, match="already have 2 compose"):
        handlers.compose(str(clip), *FORM, request=flood)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    with pytest.raises(gr.Error, match="already have 2 compose"):  # refused before probing
        handlers.compose(str(text), *FORM, request=flood)
    # A bad file from someone else is refused in a moment although the model is busy.
    with pytest.raises(gr.Error, match="'notes.mp4' is a text file"):
        handlers.compose(str(text), *FORM, request=FakeRequest("10.0.0.2"))
    assert time.monotonic() - start < 5
    composer.release.set()
    for thread in running:
        thread.join(timeout=30)
    assert [type(o) for o in outcomes] == [tuple, tuple] and len(handlers.gate) == 0


def test_composes_and_study_events_are_in_separate_groups(tmp_path: Path) -> None:
    handlers, _ = _handlers(tmp_path, StandInComposer())
    demo = build_app(handlers.settings, handlers)
    by_name = {fn.api_name: fn for fn in demo.fns.values()}
    for name in ("compose", "regenerate"):
        # Gradio hands every compose to the gate at once; the gate queues or refuses it.
        assert by_name[name].concurrency_id == COMPOSE_GROUP
        assert by_name[name].concurrency_limit is None
    for name in ("join_study", "next_item", "rate"):
        assert by_name[name].concurrency_id == STUDY_GROUP
    assert demo._queue.max_size is not None and demo._queue.max_size >= 1000
    settings = handlers.settings
    assert settings.max_threads > settings.compose_queue + settings.study_concurrency


# --- 3. tiny and odd-size videos compose ------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (2, 2)])
def test_tiny_and_odd_size_videos_get_music_laid_under_them(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    import soundfile

    video = write_tiny_video(tmp_path / f"tiny{size[0]}x{size[1]}.mp4", *size, seconds=1.0)
    assert (probe_video(video).width, probe_video(video).height) == size
    music = tmp_path / "music.wav"
    tone = 0.2 * np.sin(np.linspace(0, 440 * 2 * np.pi, 22050)).astype(np.float32)
    soundfile.write(music, tone, 22050)
    out = mux_music(video, music, tmp_path / "video.mp4", duration_s=1.0, audio="replace")
    info = probe_video(out)
    assert info.width >= 2 and info.height >= 2
    assert info.width % 2 == 0 and info.height % 2 == 0
    assert info.width - size[0] <= 1 and info.height - size[1] <= 1  # padded, not scaled


# --- 4. titles are plain text in plots too ------------------------------------------------


@pytest.mark.parametrize("title", ["Cost $x^$ study", "$\\frac{a}{b}$ and $5", "100% <b>"])
def test_a_title_with_dollars_plots(
    tmp_path: Path, clip: Path, admin_env: None, title: str
) -> None:
    handlers, _ = _handlers(tmp_path, StandInComposer())
    names = [handlers.compose(str(clip), *FORM)[8] for _ in range(2)]
    _, code = handlers.create_study(ADMIN_TOKEN, title, "likert", names, "a, b")
    summary, table, figure, csv_path = handlers.study_results(ADMIN_TOKEN, code)
    figure.canvas.draw()  # mathtext would fail here
    assert figure.axes[0].get_title().startswith(title)
    assert Path(csv_path).is_file() and table["data"]


def test_results_figure_does_not_parse_math() -> None:
    from webapp.stats import mean_interval
    from webapp.studies import ConditionScores, StudyResults

    scales = {s: mean_interval([3.0, 4.0]) for s in ("musicality", "fit", "overall")}
    found = StudyResults(
        "s", "$x^$", "likert", 0.95, 1, likert=(ConditionScores("full", 2, scales),)
    )
    figure = results_figure(found)
    figure.canvas.draw()


# --- 6. regenerated results are self-contained ----------------------------------------------


class RecordingComposer(StandInComposer):
    def __init__(self) -> None:
        super().__init__()
        self.regenerate_calls: list[dict[str, Any]] = []

    def regenerate(self, source: Path, segment_index: int, seed: int, **kwargs: Any) -> None:
        self.regenerate_calls.append({"source": source, **kwargs})
        super().regenerate(source, segment_index, seed, **kwargs)


def test_a_regenerated_result_outlives_its_original(
    tmp_path: Path, clip: Path, admin_env: None
) -> None:
    composer = RecordingComposer()
    handlers, _ = _handlers(tmp_path, composer)
    original = handlers.compose(str(clip), *FORM)[8]
    again = handlers.regenerate(original, 2, 7, 0)[8]
    video = Path(composer.regenerate_calls[-1]["video"])
    assert video.parent == handlers.settings.outputs_dir / again and video.is_file()
    shutil.rmtree(handlers.settings.outputs_dir / original)  # the clean-up took the original
    third = handlers.regenerate(again, 1, 8, 0)[8]
    assert (handlers.settings.outputs_dir / third / video.name).is_file()
    message, _ = handlers.create_study(ADMIN_TOKEN, "Later", "likert", [again, third], "a, b")
    assert "1 item(s)" in message  # same video bytes: one item


# --- 7. work folders never outlive their request ------------------------------------------


def test_work_folder_is_removed_when_the_request_is_interrupted(tmp_path: Path, clip: Path) -> None:
    handlers, _ = _handlers(tmp_path, StandInComposer(fail_with=KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        handlers.compose(str(clip), *FORM)
    assert list(handlers.settings.outputs_dir.iterdir()) == []
    assert len(handlers.in_flight) == 0 and len(handlers.gate) == 0


def test_a_compose_that_ends_after_shutdown_began_leaves_no_result(tmp_path: Path) -> None:
    """SIGTERM: remove_all runs while a worker thread is still composing; when that compose
    then publishes its result and its block ends well, the folder still goes."""
    in_flight = media.InFlight()
    with media.work_dir(tmp_path, in_flight) as folder:
        assert in_flight.remove_all() == [folder.name]
        folder.mkdir(exist_ok=True)  # the library publishes the finished result here
        (folder / "report.json").write_text("{}")
    assert not folder.exists() and len(in_flight) == 0


def test_work_folders_of_a_killed_process_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    script = (
        "import sys, time; from pathlib import Path; from webapp import media\n"
        "folder = media.new_request_dir(Path(sys.argv[1])); work = media.InFlight()\n"
        "work.add(folder)\n"
        "(folder / 'input-clip.mp4').write_bytes(b'x'); print(folder.name, flush=True)\n"
        "time.sleep(60)\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script, str(outputs)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert worker.stdout is not None
    killed = worker.stdout.readline().strip()
    in_flight = media.InFlight()
    live = media.new_request_dir(outputs)
    in_flight.add(live)
    finished = media.new_request_dir(outputs)
    (finished / "report.json").write_text("{}")
    assert media.sweep_stale_work_dirs(outputs) == []  # the worker is alive
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert media.sweep_stale_work_dirs(outputs) == [killed]
    assert live.exists() and finished.exists()
    assert in_flight.remove_all() == [live.name] and not live.exists()  # shutdown


def test_start_up_sweep_removes_unmarked_unfinished_folders(tmp_path: Path) -> None:
    settings = AppSettings(data_dir=tmp_path)
    leftover = media.new_request_dir(settings.outputs_dir)
    (leftover / "input-clip.mp4").write_bytes(b"x")
    _age(leftover, 600)
    assert Janitor(settings).sweep_at_start().work_dirs == 1 and not leftover.exists()


# --- 8. messages name the user's file, never a server path ----------------------------------


def test_probe_messages_carry_no_server_path(tmp_path: Path) -> None:
    broken = truncate(write_test_video(tmp_path / "full.mp4"), tmp_path / "truncated.mp4", 0.3)
    with pytest.raises(VideoProbeError) as caught:
        probe_video(broken)
    message = str(caught.value)
    assert "'truncated.mp4'" in message and str(tmp_path) not in message
    assert "file:" not in message


def test_compose_messages_name_the_upload_not_the_staged_copy(tmp_path: Path) -> None:
    handlers, _ = _handlers(tmp_path, StandInComposer())
    broken = truncate(write_test_video(tmp_path / "full.mp4"), tmp_path / "holiday.mp4", 0.3)
    with pytest.raises(gr.Error) as caught:
        handlers.compose(str(broken), *FORM)
    message = caught.value.message
    assert "'holiday.mp4'" in message and "input-" not in message
    assert str(tmp_path) not in message and "outputs" not in message


# --- 9. study titles are plain text on every page ----------------------------------------


def test_html_in_a_title_is_shown_as_text(tmp_path: Path, clip: Path, admin_env: None) -> None:
    handlers, _ = _handlers(tmp_path, StandInComposer())
    names = [handlers.compose(str(clip), *FORM)[8] for _ in range(2)]
    title = "<img src=x onerror=alert(1)> study"
    created, code = handlers.create_study(ADMIN_TOKEN, title, "likert", names, "a, b")
    summary = handlers.study_results(ADMIN_TOKEN, code)[0]
    handlers.close_study(ADMIN_TOKEN, code)
    with pytest.raises(gr.Error) as caught:  # the participant's toast names the title
        handlers.join_study(code)
    for shown in (created, summary, caught.value.message):
        assert "<img" not in shown and "&lt;img" in shown


# --- 10. admin token: slowed guessing and a minimum length ----------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_admin_throttle_locks_a_guesser_out_for_longer_and_longer() -> None:
    clock = Clock()
    throttle = AdminThrottle(free_failures=3, max_lockout_s=300, global_per_min=100, clock=clock)
    for _ in range(3):
        throttle.check("x")
        throttle.failed("x")
    throttle.check("x")  # three are free
    throttle.failed("x")
    with pytest.raises(BusyError, match="try again in 1 s"):
        throttle.check("x")
    throttle.check("y")  # another client is not affected
    clock.now += 1.5
    throttle.check("x")
    throttle.failed("x")
    with pytest.raises(BusyError, match="try again in 2 s"):
        throttle.check("x")
    for _ in range(20):
        clock.now += 400
        throttle.failed("x")
    with pytest.raises(BusyError, match="try again in 300 s"):
        throttle.check("x")


def test_admin_throttle_slows_everyone_after_many_failures() -> None:
    clock = Clock()
    throttle = AdminThrottle(free_failures=3, global_per_min=5, clock=clock)
    for n in range(5):
        throttle.failed(f"client-{n}")
    with pytest.raises(BusyError):
        throttle.check("someone-new")
    clock.now += 61
    throttle.check("someone-new")


def test_wrong_admin_tokens_are_slowed_down_through_the_handlers(
    tmp_path: Path, admin_env: None
) -> None:
    handlers, _ = _handlers(tmp_path, StandInComposer())
    guesser = FakeRequest("10.9.9.9")
    messages = []
    for n in range(10):
        with pytest.raises(gr.Error) as caught:
            handlers.study_results(f"guess-{n}", "pilot-000000", guesser)
        messages.append(caught.value.message)
    assert sum("admin token is wrong" in m for m in messages) == 4
    assert all("Too many wrong admin tokens" in m for m in messages[4:])
    with pytest.raises(gr.Error, match="Too many"):  # even the right token, while locked out
        handlers.study_results(ADMIN_TOKEN, "pilot-000000", guesser)
    with pytest.raises(gr.Error, match="no study"):  # another client is unaffected
        handlers.study_results(ADMIN_TOKEN, "pilot-000000", FakeRequest("10.1.1.1"))


def test_a_short_admin_token_turns_admin_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from webapp.studies import AdminAccessError, check_admin

    short = "x" * (ADMIN_TOKEN_MIN_LENGTH - 1)
    settings = AppSettings.from_env({"DIFFBGM_ADMIN_TOKEN": short})
    assert not settings.admin_enabled and settings.admin_problem is not None
    assert str(ADMIN_TOKEN_MIN_LENGTH) in settings.admin_problem
    monkeypatch.setenv("DIFFBGM_ADMIN_TOKEN", short)
    with pytest.raises(AdminAccessError, match="disabled.*shorter"):
        check_admin(short)
    assert AppSettings.from_env({"DIFFBGM_ADMIN_TOKEN": ADMIN_TOKEN}).admin_enabled


# --- 12. malformed requests: a clear message and one log line -----------------------------


@pytest.mark.parametrize(
    ("name", "segment", "density", "expected"),
    [
        ("r" * 5000, 1, 0, "not a result of this app"),
        ("req-\x00/../../etc", 1, 0, "not a result of this app"),
        (None, 1, 0, "Compose a piece first"),
        ("VALID", None, 0, "segment must be a whole number"),
        ("VALID", 1.5, 0, "segment must be a whole number"),
        ("VALID", 1, "lots", "density"),
    ],
)
def test_malformed_regenerate_requests_get_a_message_and_one_log_line(
    tmp_path: Path,
    clip: Path,
    caplog: pytest.LogCaptureFixture,
    name: Any,
    segment: Any,
    density: Any,
    expected: str,
) -> None:
    handlers, _ = _handlers(tmp_path, StandInComposer())
    if name == "VALID":
        name = handlers.compose(str(clip), *FORM)[8]
    caplog.clear()
    with (
        caplog.at_level(logging.INFO, logger="diffbgm.webapp"),
        pytest.raises(gr.Error, match=expected) as caught,
    ):
        handlers.regenerate(name, segment, 1, density)
    assert "reference" not in caught.value.message  # not the generic error
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is None
    assert len(caplog.records[0].getMessage()) < 400


@pytest.mark.parametrize(
    ("chords", "sections", "form", "expected"),
    [
        ("C " * 20_000, "", "", "chords text is longer"),
        ("C\x00G", "", "", "cannot read the chord"),
        ("<script>alert(1)</script>", "", "", "cannot read the chord"),
        ("", "1e400", "", "number of seconds"),
        ("", "1" + ", 2" * 70, "", "at most 64 section starts"),
        ("", "5", "A 🎵", "letters or digits"),
        ("", "", "A B", "give the section starts too"),
    ],
)
def test_hostile_chords_sections_and_forms_get_a_message_and_one_log_line(
    tmp_path: Path,
    clip: Path,
    caplog: pytest.LogCaptureFixture,
    chords: str,
    sections: str,
    form: str,
    expected: str,
) -> None:
    composer = StandInComposer()
    handlers, _ = _handlers(tmp_path, composer)
    extra = (None, "solo-piano", None, None, chords, sections, False, form)
    with (
        caplog.at_level(logging.INFO, logger="diffbgm.webapp"),
        pytest.raises(gr.Error, match=expected) as caught,
    ):
        handlers.compose(str(clip), *FORM, *extra)
    assert "reference" not in caught.value.message and "<script>" not in caught.value.message
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is None
    assert len(caplog.records[0].getMessage()) < 400
    assert not composer.calls  # refused before any work


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("1e400", "", "number of seconds, not inf"),
        ("", "nan", "number of seconds, not nan"),
        ("", "9" * 40, "write seconds or m:ss"),
        ("<b>1</b>", "", "cannot read the time"),
        ("0\x00:01", "", "cannot read the time"),
        ("-0:01", "", "before it"),
        ("99:99", "", "run 0-59"),
    ],
)
def test_hostile_music_times_get_a_message_and_one_log_line(
    tmp_path: Path,
    clip: Path,
    caplog: pytest.LogCaptureFixture,
    start: str,
    end: str,
    expected: str,
) -> None:
    composer = StandInComposer()
    handlers, _ = _handlers(tmp_path, composer)
    extra = (None, "solo-piano", None, None, "", "", False, "", start, end)
    with (
        caplog.at_level(logging.INFO, logger="diffbgm.webapp"),
        pytest.raises(gr.Error, match=expected) as caught,
    ):
        handlers.compose(str(clip), *FORM, *extra)
    assert "<b>" not in caught.value.message
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is None
    assert not composer.calls  # refused before any work


def test_out_of_choice_and_missing_values_are_refused_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rating = quiet(gr.Radio([(str(n), n) for n in range(1, 6)], label="Overall"))
    density = quiet(gr.Slider(0, 1, label="Density"))
    token = quiet(gr.Textbox(label="participant"), text_only=True)
    with caplog.at_level(logging.INFO, logger="diffbgm.webapp"):
        cases = [(rating, 7), (density, None), (rating, "<b>x</b>" * 200), (token, [1, 2])]
        for component, value in cases:
            with pytest.raises(gr.Error) as caught:
                component.preprocess(value)
            assert caught.value.print_exception is False  # Gradio prints no traceback
            assert "<b>" not in caught.value.message
    assert len(caplog.records) == 4 and all(r.exc_info is None for r in caplog.records)
    assert rating.preprocess(4) == 4 and token.preprocess("abc") == "abc"
    assert not list(REPO.rglob("webapp/*.pyi"))  # no stub files written into the package


def test_no_event_lets_gradio_print_a_traceback_for_a_malformed_value(tmp_path: Path) -> None:
    handlers, _ = _handlers(tmp_path, StandInComposer())
    demo = build_app(handlers.settings, handlers)
    updated = {id(block) for fn in demo.fns.values() for block in fn.outputs}
    for fn in demo.fns.values():
        if not fn.preprocess:
            continue  # the handler gets raw values and checks them itself
        for block in fn.inputs:
            # A component an event updates is rebuilt from its class (losing the wrapper).
            assert id(block) not in updated, (fn.api_name, block.label)
            assert hasattr(block.preprocess, "__wrapped__"), (fn.api_name, block.label)
    raw = {fn.api_name for fn in demo.fns.values() if not fn.preprocess}
    assert {"rate", "join_study", "next_item", "regenerate", "create_study"} <= raw


def test_an_out_of_range_rating_is_one_log_line(
    tmp_path: Path, clip: Path, admin_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    handlers, _ = _handlers(tmp_path, StandInComposer())
    names = [handlers.compose(str(clip), *FORM)[8] for _ in range(2)]
    _, code = handlers.create_study(ADMIN_TOKEN, "Pilot", "likert", names, "a, b")
    token, _, key, *_ = handlers.join_study(code)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="diffbgm.webapp"):
        for bad in (7, 2.5, None, "five"):
            with pytest.raises(gr.Error):
                handlers.rate(token, key, bad, 3, 3, None)
        with pytest.raises(gr.Error, match="not a study code"):
            handlers.join_study("x" * 5000)
    assert len(caplog.records) == 5 and all(r.exc_info is None for r in caplog.records)


# --- 13. join limit, exports, CSV time zone ------------------------------------------------


def _small_study(handlers: Handlers, clip: Path) -> str:
    names = [handlers.compose(str(clip), *FORM)[8] for _ in range(2)]
    return handlers.create_study(ADMIN_TOKEN, "Pilot", "likert", names, "a, b")[1]


def test_a_study_link_takes_a_limited_number_of_participants(
    tmp_path: Path, clip: Path, admin_env: None
) -> None:
    from dataclasses import replace

    handlers, _ = _handlers(tmp_path, StandInComposer())
    handlers.settings = replace(handlers.settings, study_max_participants=2)
    code = _small_study(handlers, clip)
    handlers.join_study(code)
    handlers.join_study(code)
    with pytest.raises(gr.Error, match="all the participants it takes"):
        handlers.join_study(code)


def test_exports_are_replaced_and_carry_utc_timestamps(
    tmp_path: Path, clip: Path, admin_env: None
) -> None:
    handlers, _ = _handlers(tmp_path, StandInComposer())
    code = _small_study(handlers, clip)
    token, _, key, *_ = handlers.join_study(code)
    handlers.rate(token, key, 4, 4, 4, None)
    first = Path(handlers.study_results(ADMIN_TOKEN, code)[3])
    second = Path(handlers.study_results(ADMIN_TOKEN, code)[3])
    exports = list(handlers.settings.exports_dir.rglob("*.csv"))
    assert exports == [second] and not first.exists()
    rows = list(csv.DictReader(io.StringIO(second.read_text())))
    assert rows and all(row["created_at"].endswith("Z") for row in rows)
    assert "+" not in rows[0]["created_at"] and "T" in rows[0]["created_at"]
