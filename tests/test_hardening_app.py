"""The outside tester's cases (issue 16) against the launched app (slow: about 4 minutes).

Runs benchmarks/hardening.py, which starts `python app.py` three times on 127.0.0.1 with the
tiny model; every case must PASS. Its figures go to test-artifacts/hardening.json.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.app_server import REPO, tiny_model_missing_reason

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        tiny_model_missing_reason() is not None, reason=str(tiny_model_missing_reason())
    ),
]


def test_the_testers_cases_all_pass() -> None:
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    figures = artifacts / "hardening.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "hardening.py"), "--json", str(figures)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    found = json.loads(figures.read_text())
    assert not [line for line in found["lines"] if line.startswith("FAIL")]
    # The acceptance figures.
    assert found["flood"]["composes_sent"] == 80 and found["flood"]["participants"] == 50
    assert found["flood"]["participant_refusals"] == 0 and found["flood"]["gradio_queue_full"] == 0
    assert found["flood"]["ratings_stored"] == found["flood"]["ratings_sent"] == 100
    assert found["burst"]["ratings_stored"] == found["burst"]["ratings_sent"] == 200
