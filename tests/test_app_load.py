"""Load on the running app (slow): 8 composes at once with the tiny model, then many
participants rating at once, all over HTTP through gradio_client against 127.0.0.1.

The figures are printed and written to test-artifacts/app-load.json (docs/webapp.md quotes
them).
"""

from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.app_server import REPO, running_app, tiny_model_missing_reason, write_test_video

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        tiny_model_missing_reason() is not None, reason=str(tiny_model_missing_reason())
    ),
]
N_COMPOSES = 8
N_PARTICIPANTS = 40


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def test_concurrent_composes_and_ratings(tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    video = write_test_video(tmp_path / "clip.mp4", seconds=6.0)
    figures: dict[str, Any] = {}
    # every client here is 127.0.0.1: allow it all the composes (the default is 2 per client)
    limits = {
        "DIFFBGM_COMPOSE_PER_CLIENT": str(N_COMPOSES),
        "DIFFBGM_COMPOSE_QUEUE": str(N_COMPOSES),
    }
    with running_app(tmp_path / "data", extra_env=limits) as app:

        def compose(seed: int) -> tuple[Any, float]:
            client = Client(app.url, verbose=False)
            return _timed(
                lambda: client.predict(
                    handle_file(str(video)),
                    "calm",
                    0,
                    "auto",
                    0,
                    seed,
                    None,
                    None,
                    1,
                    "duck",
                    api_name="/compose",
                )
            )

        (outcomes, wall) = _timed(
            lambda: list(ThreadPoolExecutor(N_COMPOSES).map(compose, range(N_COMPOSES)))
        )
        latencies = sorted(seconds for _, seconds in outcomes)
        names = [result[8] for result, _ in outcomes]
        assert len(set(names)) == N_COMPOSES
        assert all((app.data_dir / "outputs" / n / "report.json").is_file() for n in names)
        figures["composes"] = {
            "n": N_COMPOSES,
            "video_s": 6.0,
            "wall_s": round(wall, 2),
            "latency_min_s": round(latencies[0], 2),
            "latency_median_s": round(statistics.median(latencies), 2),
            "latency_max_s": round(latencies[-1], 2),
        }

        admin = Client(app.url, verbose=False)
        conditions = ", ".join(f"c{n % 2}" for n in range(2))
        _, code = admin.predict(
            app.admin_token, "Load", "likert", names[:2], conditions, api_name="/create_study"
        )

        def participate(n: int) -> float:
            client = Client(app.url, verbose=False)
            start = time.perf_counter()
            token, _, key, *_ = client.predict(code, api_name="/join_study")
            while key:
                key = client.predict(token, key, 1 + n % 5, 3, 4, None, api_name="/rate")[1]
            return time.perf_counter() - start

        (durations, wall) = _timed(
            lambda: list(ThreadPoolExecutor(16).map(participate, range(N_PARTICIPANTS)))
        )
        _, table, _, _ = admin.predict(app.admin_token, code, api_name="/study_results")
        counts = [row[table["headers"].index("n")] for row in table["data"]]
        assert sum(counts) == 2 * N_PARTICIPANTS  # every rating stored exactly once
        figures["ratings"] = {
            "participants": N_PARTICIPANTS,
            "client_threads": 16,
            "ratings": 2 * N_PARTICIPANTS,
            "wall_s": round(wall, 2),
            "per_participant_median_s": round(statistics.median(durations), 2),
        }
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "app-load.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
