"""`/healthz`: 200 only when the app can really compose (webapp/health.py).

Part 1 checks the rules with injected checks; part 2 launches the real app (tiny model) and
asks it over HTTP, healthy and with a broken checkpoint.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.app_server import running_app, tiny_model_missing_reason
from webapp.health import Check, Health, SelfTest, failed, ok, probe

# --- part 1: the rules, with injected checks ------------------------------------------------


def _done_self_test(outcome: Exception | None) -> SelfTest:
    def compose() -> str:
        if outcome is not None:
            raise outcome
        return "composed"

    test = SelfTest(compose)
    test.start()
    test.wait(5)
    return test


def test_all_ok_is_200_and_the_self_test_says_what_it_did() -> None:
    health = Health({"model": lambda: ok("loaded"), "ffmpeg": ok}, _done_self_test(None))
    code, body = health.report()
    assert code == 200 and body["status"] == "ok"
    assert set(body["checks"]) == {"model", "ffmpeg", "self_test"}
    assert body["checks"]["self_test"]["detail"].startswith("composed in ")


def test_a_failed_check_or_self_test_is_503_with_the_reason() -> None:
    health = Health({"fluidsynth": lambda: failed("not on PATH")}, _done_self_test(None))
    code, body = health.report()
    assert code == 503 and body["status"] == "unhealthy"
    assert body["checks"]["fluidsynth"] == {"status": "failed", "detail": "not on PATH"}

    broken = Health({"model": ok}, _done_self_test(RuntimeError("no notes")))
    code, body = broken.report()
    assert code == 503 and body["checks"]["self_test"]["detail"] == "RuntimeError: no notes"


def test_a_check_that_raises_counts_as_failed() -> None:
    def boom() -> Check:
        raise OSError("disk gone")

    code, body = Health({"database": boom}, _done_self_test(None)).report()
    assert code == 503 and body["checks"]["database"]["detail"] == "OSError: disk gone"


def test_starting_until_the_self_test_has_finished_and_it_runs_once() -> None:
    release = threading.Event()
    calls: list[int] = []

    def slow_compose() -> str:
        calls.append(1)
        release.wait(5)
        return "composed"

    test = SelfTest(slow_compose)
    health = Health({"model": ok}, test)
    assert health.report()[1]["status"] == "starting"  # not started yet: pending
    test.start()
    test.start()
    code, body = health.report()
    assert code == 503 and body["status"] == "starting"
    release.set()
    assert test.wait(5).ok and health.report()[0] == 200 and calls == [1]


def test_the_route_answers_json_with_the_status_code() -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    health = Health({"model": ok}, _done_self_test(None))
    client = TestClient(Starlette(routes=[health.route()]))
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"
    assert response.headers["cache-control"] == "no-store"


def test_the_probe_reports_unreachable_apps() -> None:
    code, body = probe("http://127.0.0.1:9/healthz", timeout_s=1)
    assert code == 0 and body["status"] == "unreachable"


# --- part 2: the real app ----------------------------------------------------------------------

real_app = pytest.mark.skipif(
    tiny_model_missing_reason() is not None, reason=str(tiny_model_missing_reason())
)


def _settled_health(url: str, timeout_s: float = 180.0) -> tuple[int, dict[str, Any]]:
    """Poll /healthz until the self-test has finished (the status is no longer 'starting')."""
    deadline = time.monotonic() + timeout_s
    code, body = probe(url + "healthz")
    while body.get("status") == "starting" and time.monotonic() < deadline:
        time.sleep(1.0)
        code, body = probe(url + "healthz")
    return code, body


@real_app
def test_the_real_app_is_healthy_after_its_self_test(tmp_path: Path) -> None:
    with running_app(tmp_path / "data") as app:
        code, body = _settled_health(app.url)
        assert code == 200, json.dumps(body)
        checks = body["checks"]
        assert {"model", "fluidsynth", "ffmpeg", "database", "data_dir", "self_test"} <= set(checks)
        assert checks["model"]["detail"] == "loaded"
        assert "composed 2 s of synthetic video" in checks["self_test"]["detail"]
        assert not list((tmp_path / "data").glob(".self-test-*"))  # cleaned up


@real_app
def test_the_real_app_is_unhealthy_when_composing_is_broken(tmp_path: Path) -> None:
    """A broken checkpoint: the page still loads, /healthz says 503 and why."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    (broken / "model.safetensors").write_bytes(b"\0" * 64)
    with running_app(tmp_path / "data", {"DIFFBGM_MODEL": str(broken)}) as app:
        code, body = _settled_health(app.url)
        assert code == 503 and body["status"] == "unhealthy", json.dumps(body)
        assert body["checks"]["model"]["status"] == "failed"
        assert body["checks"]["self_test"]["status"] == "failed"
        assert body["checks"]["fluidsynth"]["status"] == "ok"
