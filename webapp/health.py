"""The app's health: `GET /healthz` answers 200 only when the app can really compose.

Why not a GET of `/`: the page loads even when every compose fails (a missing system library,
a broken checkpoint, no FluidSynth), so a health check on it stays green while users see
errors. Here each part a compose needs is checked (model loaded or loadable, FluidSynth,
ffmpeg, the ratings database and the data folder writable), and a tiny compose of a
synthetic two-second video runs once in a background thread at start-up; until it has passed
the app reports "starting" (503), after a failure "unhealthy" (503) with the reason.

The checks are plain callables returning a `Check`, so tests inject their own. `python -m
webapp.health [URL]` asks a running app and exits 0 only when it is healthy (the Docker
HEALTHCHECK).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from webapp.handlers import Handlers
    from webapp.settings import AppSettings

log = logging.getLogger("diffbgm.webapp.health")

Status = Literal["ok", "pending", "failed"]
HEALTH_PATH = "/healthz"
SELF_TEST_SECONDS = 2.0
_TOOL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Check:
    """One part's state: ok, pending (not decided yet) or failed, with a short reason."""

    status: Status
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, str]:
        return {"status": self.status, "detail": self.detail}


def ok(detail: str = "") -> Check:
    return Check("ok", detail)


def failed(detail: str) -> Check:
    return Check("failed", detail)


class SelfTest:
    """Runs `compose` once in a daemon thread; its outcome is the state (behind a lock).

    `compose` raises on failure and returns a short description on success.
    """

    def __init__(self, compose: Callable[[], str]) -> None:
        self._compose = compose
        self._lock = threading.Lock()
        self._state = Check("pending", "the start-up self-test has not finished")
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the self-test (once; later calls do nothing)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="self-test", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            detail = self._compose()
            state = ok(f"{detail} in {time.monotonic() - started:.1f} s")
            log.info("self-test compose passed: %s", state.detail)
        except Exception as exc:  # any failure is the answer, not a crash of the thread
            state = failed(f"{type(exc).__name__}: {exc}"[:500])
            log.error("self-test compose failed: %s", state.detail)
        with self._lock:
            self._state = state

    def state(self) -> Check:
        with self._lock:
            return self._state

    def wait(self, timeout_s: float) -> Check:
        """The state once the run has finished (or after `timeout_s`), for scripts and tests."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        return self.state()


class Health:
    """Named checks plus the self-test; `report()` is what `/healthz` answers."""

    def __init__(self, checks: Mapping[str, Callable[[], Check]], self_test: SelfTest) -> None:
        self.checks = dict(checks)
        self.self_test = self_test

    def report(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body): 200 only when every check and the self-test are ok."""
        results: dict[str, Check] = {}
        for name, check in self.checks.items():
            try:
                results[name] = check()
            except Exception as exc:  # a check that breaks is a failed check
                results[name] = failed(f"{type(exc).__name__}: {exc}")
        results["self_test"] = self.self_test.state()
        if all(result.ok for result in results.values()):
            overall, code = "ok", 200
        elif any(result.status == "failed" for result in results.values()):
            overall, code = "unhealthy", 503
        else:
            overall, code = "starting", 503
        body = {"status": overall, "checks": {k: v.as_dict() for k, v in results.items()}}
        return code, body

    def route(self) -> Any:
        """A Starlette route for `GET /healthz` (sync, so Starlette runs it in a thread)."""
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        def healthz(request: Request) -> JSONResponse:
            code, body = self.report()
            return JSONResponse(body, status_code=code, headers={"Cache-Control": "no-store"})

        return Route(HEALTH_PATH, healthz, methods=["GET"], name="healthz")


# --- the real checks ----------------------------------------------------------------------


def check_model(settings: AppSettings, is_loaded: Callable[[], bool]) -> Check:
    """Loaded, or a local checkpoint folder whose config and weights can be read."""
    if is_loaded():
        return ok("loaded")
    folder = Path(settings.model_path)
    if not folder.exists():
        # A Hub id: the self-test loads it (from the cache or the Hub) and reports failures.
        return Check("pending", f"{settings.model_path} is loaded by the self-test")
    from safetensors import safe_open

    from diffbgm.checkpoint import read_config

    read_config(folder)
    with safe_open(str(folder / "model.safetensors"), framework="numpy") as weights:
        count = len(list(weights.keys()))
    return ok(f"loadable: {folder.name} ({count} tensors)")


def _run_version(program: str, flag: str) -> Check:
    process = subprocess.run(
        [program, flag], capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S, check=False
    )
    first = (process.stdout or process.stderr).strip().splitlines()
    if process.returncode != 0:
        return failed(f"{program} {flag} exited with {process.returncode}")
    return ok(first[0][:120] if first else program)


def check_fluidsynth() -> Check:
    from diffbgm.errors import RenderError
    from diffbgm.music.render import fluidsynth_binary

    try:
        program = fluidsynth_binary()
    except RenderError as exc:
        return failed(str(exc))
    return _run_version(program, "--version")


def passing_once(check: Callable[[], Check]) -> Callable[[], Check]:
    """`check`, run until it passes once and then answered from memory: an installed program
    stays installed, and a health route polled every 30 s need not start it each time."""
    passed: list[Check] = []

    def run() -> Check:
        if passed:
            return passed[0]
        result = check()
        if result.ok:
            passed.append(result)
        return result

    return run


def check_ffmpeg() -> Check:
    from diffbgm.video.mux import ffmpeg_exe

    return _run_version(ffmpeg_exe(), "-version")


def check_database(engine: Any) -> Check:
    """A real write in a transaction that is rolled back (SQLite takes its write lock)."""
    from sqlalchemy import text

    with engine.connect() as connection, connection.begin() as transaction:
        connection.execute(text("UPDATE alembic_version SET version_num = version_num"))
        transaction.rollback()
    return ok(f"{engine.dialect.name} writable")


def check_data_dir(settings: AppSettings) -> Check:
    settings.outputs_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=settings.outputs_dir, prefix=".health-") as probe:
        probe.write(b"ok")
        probe.flush()
    return ok(str(settings.data_dir))


def write_self_test_video(path: Path, seconds: float = SELF_TEST_SECONDS) -> Path:
    """A tiny H.264 clip of two flat-colour shots with a moving square."""
    from diffbgm.video.synthetic import write_shots_video

    return write_shots_video(path, seconds=seconds, cut_every_s=seconds / 2)


def self_test_compose(handlers: Handlers) -> str:
    """Compose the synthetic clip with the app's own model holder; check the files exist.

    It runs with a mood text, so besides the model it warms the mood encoder and FluidSynth:
    the first user's compose then costs what every later one does."""
    from diffbgm.options import ComposeOptions

    settings = handlers.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.data_dir, prefix=".self-test-") as tmp:
        video = write_self_test_video(Path(tmp) / "input.mp4")
        out = Path(tmp) / "result"
        options = ComposeOptions(seed=0, audio="replace", mood="calm and warm")
        handlers.composers.run(lambda composer: composer(video, out, options))
        wanted = ("report.json", ".mid", ".wav", ".mp4")
        names = [p.name for p in out.rglob("*") if p.is_file()]
        missing = [w for w in wanted if not any(n.endswith(w) for n in names)]
        if missing:
            raise RuntimeError(f"the compose wrote no {', '.join(missing)}")
        return f"composed {SELF_TEST_SECONDS:g} s of synthetic video ({len(names)} files)"


def app_health(settings: AppSettings, handlers: Handlers) -> Health:
    """The real checks of a running app (the self-test is not started here)."""
    return Health(
        {
            "model": lambda: check_model(settings, lambda: handlers.composers.loaded),
            "fluidsynth": passing_once(check_fluidsynth),
            "ffmpeg": passing_once(check_ffmpeg),
            "database": lambda: check_database(handlers.engine),
            "data_dir": lambda: check_data_dir(settings),
        },
        SelfTest(lambda: self_test_compose(handlers)),
    )


# --- the probe the Docker HEALTHCHECK runs --------------------------------------------------


def probe(url: str, timeout_s: float = 8.0) -> tuple[int, dict[str, Any]]:
    """GET `url` and return (status, JSON body); (0, reason) when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return int(exc.code), json.loads(exc.read() or b"{}")
        except ValueError:
            return int(exc.code), {}
    except (OSError, ValueError) as exc:
        return 0, {"status": "unreachable", "detail": str(exc)}


def main(argv: list[str] | None = None) -> int:
    """`python -m webapp.health [URL]`: print the app's health; exit 0 only when healthy."""
    args = sys.argv[1:] if argv is None else argv
    port = os.environ.get("GRADIO_SERVER_PORT", "7860")
    url = args[0] if args else f"http://127.0.0.1:{port}{HEALTH_PATH}"
    code, body = probe(url)
    print(json.dumps(body, indent=None))
    return 0 if code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
