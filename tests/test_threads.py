"""The thread rule: free cores measured, not assumed; the CLI and the Composer take 'auto'."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from diffbgm.threads import busy_cores, free_cores, parse_threads


def test_free_cores_is_between_one_and_all() -> None:
    assert 1 <= free_cores(0.05) <= (os.cpu_count() or 1)


def test_a_busy_process_takes_a_core_away() -> None:
    cores = os.cpu_count() or 1
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = busy_cores(0.3)
        assert busy is not None and busy >= 0.7  # the spinner alone fills most of a core
        assert free_cores(0.3) <= max(1, cores - 1)
    finally:
        spinner.kill()
        spinner.wait()


def test_parse_threads() -> None:
    assert parse_threads("auto") == "auto" and parse_threads(" AUTO ") == "auto"
    assert parse_threads("2") == 2 and parse_threads("0") == 0
    with pytest.raises(ValueError):
        parse_threads("-1")


def test_composer_takes_auto_and_refuses_nonsense() -> None:
    from pathlib import Path

    from diffbgm.errors import DiffBGMError
    from diffbgm.pipeline import Composer

    tiny = Path(__file__).resolve().parents[1] / "checkpoints" / "diffbgm-tiny"
    assert Composer.from_pretrained(tiny).auto_threads
    assert not Composer.from_pretrained(tiny, threads=1).auto_threads
    with pytest.raises(DiffBGMError, match="auto"):
        Composer.from_pretrained(tiny, threads="many")
