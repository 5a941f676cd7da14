"""Replay the outside tester's cases (issue 16) against the real app on 127.0.0.1.

    python benchmarks/hardening.py                 # one PASS/FAIL line per case; exit 1 on a FAIL
    python benchmarks/hardening.py --json out.json # the same, plus the figures as JSON

The app runs as `python app.py` (tests/app_server.py) with the tiny checkpoint, three times:
A with the default limits except a compose queue one local client can fill (all clients here
share 127.0.0.1), B with results that expire after seconds, C restarted on B's data folder
after B was killed with SIGKILL mid-compose, with a too-short admin token, and stopped with
SIGTERM mid-compose. About four minutes on the 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

from tests.app_server import RunningApp, running_app, write_test_video  # noqa: E402
from tests.video_fixtures import write_tiny_video  # noqa: E402

N_FLOOD = 80
N_PARTICIPANTS = 50
N_BURST = 200
MAX_PARTICIPANTS = 260  # per study link, in app A: 50 + 200 fit, the join-limit case fills it
N_GUESSES = 300
GUESS_WINDOW_S = 60.0
GRADIO_QUEUE_FULL = "Queue is full"


@dataclass
class Report:
    """Outcomes in order, printed as they come."""

    lines: list[str] = field(default_factory=list)
    failed: int = 0
    figures: dict[str, Any] = field(default_factory=dict)

    def check(self, case: str, ok: bool, detail: str) -> bool:
        line = f"{'PASS' if ok else 'FAIL'} {case}: {detail}"
        print(line, flush=True)
        self.lines.append(line)
        self.failed += not ok
        return ok

    def crashed(self, case: str, exc: BaseException) -> None:
        self.check(case, False, f"the case itself failed: {type(exc).__name__}: {exc}"[:500])


@contextmanager
def case(report: Report, name: str) -> Iterator[None]:
    """Run one case; an exception inside it is that case's FAIL, and the script goes on."""
    try:
        yield
    except Exception as exc:
        report.crashed(name, exc)


def client(app: RunningApp, **kwargs: Any) -> Any:
    from gradio_client import Client

    return Client(app.url, verbose=False, analytics_enabled=False, **kwargs)


def compose_args(video: Path, seed: int = 0) -> list[Any]:
    from gradio_client import handle_file

    # No mood text: the hardening cases do not need the text model.
    return [handle_file(str(video)), "", 0, "auto", 0, seed, None, 4, 1, "duck"]


CANCELLED = "CancelledError"  # error_text of a client-side future cancelled under load


def job_errors(jobs: list[Any]) -> tuple[list[str], int]:
    """(the errors the server answered with, how many futures the client itself cancelled):
    under a burst gradio_client may cancel a future whose request the server still served,
    so a cancellation is counted apart, never as a refusal nor as a success."""
    outcomes = [error_text(lambda j=job: j.result(timeout=300)) for job in jobs]
    errors = [e for e in outcomes if e and e != CANCELLED]
    return errors, sum(e == CANCELLED for e in outcomes)


def error_text(call: Callable[[], Any]) -> str | None:
    """None when `call` succeeds, else the error message it raised (its type where the message
    is empty, as a client's timeout may be: never mistaken for a success)."""
    try:
        call()
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


def server_path(value: Any) -> Path | None:
    """The server-side path inside a file value that gradio_client did not download."""
    if isinstance(value, dict):
        if isinstance(value.get("path"), str):
            return Path(value["path"])
        for item in value.values():
            if (found := server_path(item)) is not None:
                return found
    if isinstance(value, list | tuple):
        for item in value:
            if (found := server_path(item)) is not None:
                return found
    return None


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def wait_for(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()


def ratings_stored(admin: Any, app: RunningApp, code: str) -> int:
    _, table, _, _ = admin.predict(app.admin_token, code, api_name="/study_results")
    column = table["headers"].index("n")
    return int(sum(row[column] for row in table["data"]))


# --- app A ---------------------------------------------------------------------------------


def uploads_are_swept(report: Report, app: RunningApp, clip: Path) -> None:
    """Uploads without a compose land in the data folder and are gone within seconds."""
    import httpx

    files = [("files", (f"big-{n}.mp4", b"\0" * 1_000_000, "video/mp4")) for n in range(5)]
    response = httpx.post(f"{app.url}gradio_api/upload", files=files, timeout=30)
    response.raise_for_status()
    paths = [Path(p) for p in response.json()]
    inside = all(p.is_relative_to(app.data_dir / "uploads") and p.is_file() for p in paths)
    gone = wait_for(lambda: not any(p.exists() for p in paths), timeout_s=40)
    report.check(
        "uploads-without-compose",
        inside and gone,
        f"{len(paths)} x 1 MB uploaded into data/uploads ({inside}); removed by the sweep: {gone}",
    )


def served_in_place(report: Report, app: RunningApp, clip: Path) -> list[str]:
    """Results are served from their folder: Gradio keeps no copy of them."""
    raw = client(app, download_files=False)
    names = []
    for seed in (1, 2):
        outputs = raw.predict(*compose_args(clip, seed), api_name="/compose")
        names.append(outputs[8])
    video = server_path(outputs[6])
    outputs_dir = app.data_dir / "outputs"
    in_place = video is not None and video.is_relative_to(outputs_dir)
    copies = [
        p
        for p in files_under(app.data_dir / "uploads")
        if video is not None and p.name == video.name
    ]
    report.check(
        "served-in-place",
        in_place and not copies,
        f"video served from {video.relative_to(app.data_dir) if in_place and video else video}; "
        f"copies in Gradio's folder: {len(copies)}",
    )
    return names


def tiny_videos(report: Report, app: RunningApp, folder: Path) -> None:
    import av

    raw = client(app, download_files=False)
    sizes = []
    for width, height in ((1, 1), (3, 5), (2, 2)):
        video = write_tiny_video(folder / f"tiny-{width}x{height}.mp4", width, height, 2.0)
        start = time.perf_counter()
        problem = None
        try:
            outputs = raw.predict(*compose_args(video), api_name="/compose")
            path = server_path(outputs[6])
            assert path is not None
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                sizes.append(f"{width}x{height}->{stream.width}x{stream.height}")
                ok = stream.width % 2 == 0 and stream.height % 2 == 0 and stream.width >= 2
                problem = None if ok else "odd output size"
        except Exception as exc:
            problem = str(exc)[:200]
            sizes.append(f"{width}x{height}: {problem}")
        report.check(
            f"video-{width}x{height}",
            problem is None,
            f"composed in {time.perf_counter() - start:.1f} s ({sizes[-1]})",
        )


def dollar_title(report: Report, app: RunningApp, names: list[str]) -> str:
    admin = client(app)
    title = "Cost $x^$ of $5 music"
    _, code = admin.predict(
        app.admin_token, title, "likert", names, "a, b", api_name="/create_study"
    )
    summary, table, plot, csv_path = admin.predict(app.admin_token, code, api_name="/study_results")
    ok = bool(table["data"]) and plot is not None and Path(csv_path).is_file()
    report.check(
        "title-with-dollars", ok, f"results table {len(table['data'])} rows, plot and CSV shown"
    )
    return code


def html_title(report: Report, app: RunningApp, names: list[str]) -> None:
    admin = client(app)
    title = "<img src=x onerror=alert(1)> study"
    created, code = admin.predict(
        app.admin_token, title, "likert", names, "a, b", api_name="/create_study"
    )
    summary = admin.predict(app.admin_token, code, api_name="/study_results")[0]
    admin.predict(app.admin_token, code, api_name="/close_study")
    toast = error_text(lambda: client(app).predict(code, api_name="/join_study")) or ""
    shown = [created, summary, toast]
    ok = all("<img" not in text and "&lt;img" in text for text in shown)
    report.check("title-with-html", ok, f"participant's toast: {toast[:90]!r}")


def exports_and_timezone(report: Report, app: RunningApp, code: str) -> None:
    import csv
    import io

    participant = client(app)
    token, _, key, *_ = participant.predict(code, api_name="/join_study")
    participant.predict(token, key, 4, 4, 4, None, api_name="/rate")
    admin = client(app)
    for _ in range(5):
        csv_path = admin.predict(app.admin_token, code, api_name="/study_results")[3]
    exports = [p for p in files_under(app.data_dir / "exports") if p.name == f"{code}.csv"]
    report.check(
        "exports-reused",
        len(exports) == 1,
        f"5 x Show results -> {len(exports)} CSV file(s) for the study on the server",
    )
    rows = list(csv.DictReader(io.StringIO(Path(csv_path).read_text())))
    stamps = [row["created_at"] for row in rows]
    report.check(
        "csv-timezone",
        bool(stamps) and all(s.endswith("Z") and "T" in s for s in stamps),
        f"created_at {stamps[0] if stamps else '(none)'}",
    )


def participate(app: RunningApp, code: str, n: int) -> tuple[int, str | None]:
    """Join and rate every item with a client of its own; (ratings sent, first error or None).

    A client is not shared between participants: with 16 clients for 50 participants in 16
    threads, two participants sometimes ran on one client at once, and one of them ended
    after its first rating without an error (98 of 100 ratings, 2 of 3 runs on 2026-12-03)."""
    sent = 0
    try:
        c = client(app)
        token, _, key, *_ = c.predict(code, api_name="/join_study")
        while key:
            key = c.predict(token, key, 1 + n % 5, 3, 4, None, api_name="/rate")[1]
            sent += 1
    except Exception as exc:
        return sent, str(exc)[:200]
    return sent, None


def flood_and_participants(
    report: Report, app: RunningApp, clip: Path, names: list[str], folder: Path
) -> str:
    """80 composes from one client while 50 participants join and rate."""
    admin = client(app)
    _, code = admin.predict(
        app.admin_token, "Flood", "likert", names, "a, b", api_name="/create_study"
    )
    flooder = client(app, max_workers=N_FLOOD)
    short = write_test_video(folder / "flood.mp4", seconds=2.0, cut_every_s=1.0)
    jobs = [flooder.submit(*compose_args(short, n), api_name="/compose") for n in range(N_FLOOD)]
    time.sleep(3.0)  # let the flood reach the server and fill the compose queue

    # A bad file is refused at once, although every compose slot is taken.
    text = folder / "notes.mp4"
    text.write_text("this is a text file renamed to .mp4\n" * 30)
    start = time.perf_counter()
    refusal = error_text(lambda: client(app).predict(*compose_args(text), api_name="/compose"))
    refused_s = time.perf_counter() - start
    report.check(
        "probe-before-model",
        refusal is not None and "text file" in refusal and refused_s < 5,
        f"text file refused in {refused_s:.2f} s with the compose queue full: {refusal!r}"[:200],
    )

    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda n: participate(app, code, n), range(N_PARTICIPANTS)))
    participants_s = time.perf_counter() - start
    errors = [error for _, error in outcomes if error]
    sent = sum(count for count, _ in outcomes)

    flood_errors: list[str] = []
    flood_ok = 0
    for job in jobs:
        try:
            job.result(timeout=600)
            flood_ok += 1
        except Exception as exc:
            flood_errors.append(str(exc))
    stored = ratings_stored(admin, app, code)
    clear = [e for e in flood_errors if "compose queue is full" in e or "already have" in e]
    report.figures["flood"] = {
        "composes_sent": N_FLOOD,
        "composes_accepted": flood_ok,
        "composes_refused_clearly": len(clear),
        "gradio_queue_full": sum(GRADIO_QUEUE_FULL in e for e in flood_errors + errors),
        "participants": N_PARTICIPANTS,
        "participant_refusals": len(errors),
        "ratings_sent": sent,
        "ratings_stored": stored,
        "participants_wall_s": round(participants_s, 1),
    }
    report.check(
        "queue-flood",
        not errors and stored == sent == 2 * N_PARTICIPANTS and len(clear) == len(flood_errors),
        f"{N_FLOOD} composes from one client ({flood_ok} composed, {len(clear)} refused with "
        f"a clear message); {N_PARTICIPANTS} participants joined and rated: {sent} sent, "
        f"{stored} stored, {len(errors)} refused ({participants_s:.1f} s)"
        + (f"; first error {errors[0]!r}" if errors else ""),
    )
    return code


def rating_burst(report: Report, app: RunningApp, code: str) -> None:
    """200 ratings sent at the same moment are all stored."""
    admin = client(app)
    before = ratings_stored(admin, app, code)
    joiners = [client(app) for _ in range(16)]

    def join(n: int) -> tuple[str, str]:
        token, _, key, *_ = joiners[n % 16].predict(code, api_name="/join_study")
        return token, key

    with ThreadPoolExecutor(16) as pool:
        pending = list(pool.map(join, range(N_BURST)))
    raters = [client(app, max_workers=50) for _ in range(4)]
    gate = threading.Barrier(4)
    jobs: list[Any] = []
    lock = threading.Lock()

    def fire(k: int) -> None:
        gate.wait()
        mine = [
            raters[k].submit(token, key, 5, 4, 3, None, api_name="/rate")
            for token, key in pending[k::4]
        ]
        with lock:
            jobs.extend(mine)

    start = time.perf_counter()
    threads = [threading.Thread(target=fire, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors, cancelled = job_errors(jobs)
    burst_s = time.perf_counter() - start
    stored = ratings_stored(admin, app, code) - before
    report.figures["burst"] = {
        "ratings_sent": N_BURST,
        "ratings_stored": stored,
        "refused": len(errors),
        "client_cancelled": cancelled,
        "wall_s": round(burst_s, 1),
    }
    report.check(
        "rating-burst",
        stored == N_BURST and not errors,
        f"{N_BURST} simultaneous ratings: {stored} stored, {len(errors)} refused "
        f"({burst_s:.1f} s)" + (f"; first error {errors[0]!r}" if errors else ""),
    )


def join_limit(report: Report, app: RunningApp, code: str) -> None:
    c = client(app)
    refusal = None
    for _ in range(MAX_PARTICIPANTS + 5):
        refusal = error_text(lambda: c.predict(code, api_name="/join_study"))
        if refusal:
            break
    admin = client(app)
    summary = admin.predict(app.admin_token, code, api_name="/study_results")[0]
    total = int(summary.split("·")[1].split("participant")[0])
    report.check(
        "join-limit",
        total == MAX_PARTICIPANTS and refusal is not None and "participants it takes" in refusal,
        f"{total} participants of {MAX_PARTICIPANTS} allowed; next join: {refusal!r}"[:200],
    )


def malformed_requests(report: Report, app: RunningApp, result: str, code: str) -> None:
    c = client(app)
    token, _, key, *_ = c.predict(code, api_name="/join_study")
    requests: list[tuple[str, Callable[[], Any]]] = [
        ("5000-char name", lambda: c.predict("r" * 5000, 1, 1, 0, api_name="/regenerate")),
        ("NUL name", lambda: c.predict("req-\x00/../x", 1, 1, 0, api_name="/regenerate")),
        ("segment=None", lambda: c.predict(result, None, 1, 0, api_name="/regenerate")),
        ("density=None", lambda: c.predict(result, 1, 1, None, api_name="/regenerate")),
        ("rating 7", lambda: c.predict(token, key, 7, 3, 3, None, api_name="/rate")),
        ("rating 'x'", lambda: c.predict(token, key, "x", 3, 3, None, api_name="/rate")),
        ("code x5000", lambda: c.predict("x" * 5000, api_name="/join_study")),
    ]
    before = len(app.log_path.read_text(errors="replace"))
    messages = [(name, error_text(call) or "") for name, call in requests]
    time.sleep(0.5)
    added = app.log_path.read_text(errors="replace")[before:]
    grown = added.count("\n")
    # density=None means "keep the segment's density" (like 0); every other one is refused.
    generic = [
        name
        for name, message in messages
        if "went wrong" in message or (not message and name != "density=None")
    ]
    report.check(
        "malformed-requests",
        not generic and grown <= len(requests) and "Traceback" not in added,
        f"{len(requests)} malformed requests: {len(requests) - len(generic)} answered clearly "
        f"(density=None: {messages[3][1] or 'composed, as density 0 = keep'}), "
        f"log +{grown} lines, tracebacks: {added.count('Traceback')}; "
        f"e.g. {messages[2][1]!r}, {messages[4][1]!r}"[:300],
    )


def admin_brute_force(report: Report, app: RunningApp, code: str) -> None:
    clients = [client(app) for _ in range(8)]
    outcomes: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + GUESS_WINDOW_S
    participant_s: list[float] = []

    def guess(n: int) -> None:
        if time.monotonic() > deadline:
            return
        message = error_text(
            lambda: clients[n % 8].predict(f"guess-{n:04d}", code, api_name="/study_results")
        )
        with lock:
            outcomes.append(message or "ACCEPTED")

    def participant() -> None:
        time.sleep(2.0)
        start = time.perf_counter()
        c = client(app)
        c.predict(code, api_name="/join_study")
        participant_s.append(time.perf_counter() - start)

    start = time.perf_counter()
    side = threading.Thread(target=participant)
    side.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(guess, range(N_GUESSES)))
    side.join()
    elapsed = time.perf_counter() - start
    checked = sum("admin token is wrong" in m for m in outcomes)
    slowed = sum("Too many wrong admin tokens" in m for m in outcomes)
    right_refused = error_text(
        lambda: client(app).predict(app.admin_token, code, api_name="/study_results")
    )
    report.figures["brute_force"] = {
        "guesses": len(outcomes),
        "checked": checked,
        "refused_without_checking": slowed,
        "accepted": outcomes.count("ACCEPTED"),
        # anything else (a client's timeout under this load, say): counted, not a success
        "other": [
            m[:120]
            for m in outcomes
            if "admin token is wrong" not in m
            and "Too many wrong admin tokens" not in m
            and m != "ACCEPTED"
        ][:3],
        "seconds": round(elapsed, 1),
    }
    report.check(
        "admin-brute-force",
        checked <= 40
        and outcomes.count("ACCEPTED") == 0
        and bool(participant_s)
        and participant_s[0] < 10
        and right_refused is not None
        and "Too many" in right_refused,
        f"{len(outcomes)} wrong tokens in {elapsed:.0f} s: {checked} checked, {slowed} refused "
        f"unchecked (lockout); a participant joined meanwhile in "
        f"{participant_s[0] if participant_s else float('nan'):.1f} s; "
        f"right token during the lockout: {right_refused!r}"[:300],
    )


def run_app_a(report: Report, work: Path) -> None:
    clip = write_test_video(work / "clip.mp4", seconds=4.0)
    env = {
        "DIFFBGM_UPLOAD_MAX_AGE_MIN": "0.1",  # 6 s, so the sweep is seen at work
        "DIFFBGM_SWEEP_INTERVAL_S": "1",
        "DIFFBGM_COMPOSE_QUEUE": "8",
        "DIFFBGM_COMPOSE_PER_CLIENT": "8",  # every client here is 127.0.0.1
        "DIFFBGM_STUDY_MAX_PARTICIPANTS": str(MAX_PARTICIPANTS),
    }
    with running_app(work / "data-a", env) as app:
        with case(report, "uploads-without-compose"):
            uploads_are_swept(report, app, clip)
        names: list[str] = []
        with case(report, "served-in-place"):
            names = served_in_place(report, app, clip)
        with case(report, "tiny-videos"):
            tiny_videos(report, app, work)
        if len(names) < 2:
            report.check("studies", False, "no results to build studies from")
            return
        code = ""
        with case(report, "title-with-dollars"):
            code = dollar_title(report, app, names)
        with case(report, "title-with-html"):
            html_title(report, app, names)
        with case(report, "exports-and-csv-timezone"):
            exports_and_timezone(report, app, code)
        flood_code = ""
        with case(report, "queue-flood"):
            flood_code = flood_and_participants(report, app, clip, names, work)
        with case(report, "rating-burst"):
            rating_burst(report, app, flood_code)
        with case(report, "join-limit"):
            join_limit(report, app, flood_code)
        with case(report, "malformed-requests"):
            malformed_requests(report, app, names[0], code)
        with case(report, "admin-brute-force"):
            admin_brute_force(report, app, code)
        log_text = app.log_path.read_text(errors="replace")
        report.check(
            "app-log",
            "Traceback" not in log_text,
            f"after every case above: {log_text.count(chr(10))} lines, "
            f"{log_text.count('Traceback')} tracebacks",
        )


# --- apps B and C ----------------------------------------------------------------------------


def expired_result_is_gone(report: Report, app: RunningApp, clip: Path) -> None:
    raw = client(app, download_files=False)
    outputs = raw.predict(*compose_args(clip), api_name="/compose")
    video = server_path(outputs[6])
    assert video is not None
    url = f"{app.url}gradio_api/file={video}"
    before = http_status(url)
    removed = wait_for(lambda: not video.parent.exists(), timeout_s=60)
    after = http_status(url)
    copies = [p for p in files_under(app.data_dir) if p.name == video.name]
    report.check(
        "expired-result-not-downloadable",
        before == 200 and removed and after in (403, 404) and not copies,
        f"video HTTP {before} while kept, folder removed by age: {removed}, then HTTP {after}; "
        f"copies left on the server: {len(copies)}",
    )


def per_client_limit(report: Report, app: RunningApp, clip: Path) -> None:
    c = client(app)
    jobs = [c.submit(*compose_args(clip, n), api_name="/compose") for n in range(5)]
    errors, _ = job_errors(jobs)
    limited = [e for e in errors if "already have 2 compose" in e]
    report.check(
        "per-client-limit",
        len(limited) == 3 and len(errors) == 3,
        f"5 composes at once from one client: {5 - len(errors)} composed, {len(limited)} "
        f"refused: {limited[0] if limited else errors[:1]!r}"[:250],
    )


def killed_run(report: Report, app: RunningApp, clip: Path) -> Path | None:
    """Start a compose, SIGKILL the app while it works; return the folder left behind."""
    outputs = app.data_dir / "outputs"
    known = set(outputs.iterdir()) if outputs.is_dir() else set()
    c = client(app)
    c.submit(*compose_args(clip, 99), api_name="/compose")
    in_progress: list[Path] = []

    def started() -> bool:
        in_progress[:] = [
            p
            for p in (outputs.iterdir() if outputs.is_dir() else [])
            if p not in known and (p / ".in-progress").exists()
        ]
        return bool(in_progress)

    if not wait_for(started, timeout_s=60, poll_s=0.05):
        report.check("killed-run-folders", False, "no compose started")
        return None
    # The client's stream thread prints the dropped connection's traceback: not ours to show.
    with contextlib.redirect_stderr(io.StringIO()):
        os.kill(app.pid, signal.SIGKILL)
        time.sleep(2.0)
    return in_progress[0] if in_progress[0].exists() else None


def terminated_run(report: Report, app: RunningApp, clip: Path) -> None:
    """SIGTERM (docker stop) while a compose works: the app removes its work folder on exit."""
    outputs = app.data_dir / "outputs"
    # long enough that the compose is still running when SIGTERM comes (the tiny model
    # composes a 20 s clip in about a second with two threads)
    longer = write_test_video(clip.parent / "longer.mp4", seconds=180.0)
    client(app).submit(*compose_args(longer, 98), api_name="/compose")

    def working() -> list[Path]:
        folders = outputs.iterdir() if outputs.is_dir() else []
        return [p for p in folders if (p / ".in-progress").exists()]

    if not wait_for(lambda: bool(working()), timeout_s=60, poll_s=0.05):
        report.check("terminated-run-folders", False, "no compose started")
        return
    folder = working()[0]
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        os.kill(app.pid, signal.SIGTERM)
        exited = wait_for(lambda: not Path(f"/proc/{app.pid}").exists() or _zombie(app.pid), 60)
    report.check(
        "terminated-run-folders",
        exited and not folder.exists(),
        f"SIGTERM mid-compose: exited in {time.perf_counter() - start:.1f} s; work folder "
        f"{folder.name} removed: {not folder.exists()}",
    )


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (OSError, IndexError):
        return True


def run_apps_b_and_c(report: Report, work: Path) -> None:
    clip = write_test_video(work / "clip-b.mp4", seconds=4.0)
    data = work / "data-b"
    env = {"DIFFBGM_OUTPUT_MAX_AGE_H": "0.002", "DIFFBGM_SWEEP_INTERVAL_S": "1"}  # 7.2 s
    left: Path | None = None
    with running_app(data, env) as app:
        with case(report, "expired-result-not-downloadable"):
            expired_result_is_gone(report, app, clip)
        with case(report, "per-client-limit"):
            per_client_limit(report, app, clip)
        with case(report, "killed-run-folders"):
            left = killed_run(report, app, clip)
    short = {"DIFFBGM_ADMIN_TOKEN": "short-token"}
    with running_app(data, short) as app:
        if left is not None:
            report.check(
                "killed-run-folders",
                not left.exists(),
                f"SIGKILL mid-compose left {left.name} with its staged input; "
                f"removed at restart: {not left.exists()}",
            )
        with case(report, "short-admin-token"):
            refusal = error_text(
                lambda: client(app).predict("short-token", "s-1", api_name="/study_results")
            )
            logged = "shorter than 16 characters" in app.log_path.read_text(errors="replace")
            report.check(
                "short-admin-token",
                logged and refusal is not None and "disabled" in refusal,
                f"start-up log says so: {logged}; the short token gets: {refusal!r}"[:250],
            )
        with case(report, "terminated-run-folders"):
            terminated_run(report, app, clip)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the lines and figures here")
    args = parser.parse_args(argv)
    report = Report()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="diffbgm-hardening-") as tmp:
        run_app_a(report, Path(tmp))
        run_apps_b_and_c(report, Path(tmp))
    elapsed = time.perf_counter() - start
    passed = len(report.lines) - report.failed
    print(f"{passed}/{len(report.lines)} cases passed in {elapsed:.0f} s", flush=True)
    if report.figures:
        print(json.dumps(report.figures, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"lines": report.lines, **report.figures}, indent=2))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
