"""The speed figures in the README belong to the shipped defaults.

`docs/speed.json` is written by `python benchmarks/e2e.py --record docs/speed.json` with the
generation settings and thread rule it measured. When a default changes (sampler, steps,
dtype, guidance, any decode rule, the thread rule) without a new measurement, this fails:
re-run the benchmark on an idle machine and update the README row from the new record.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from diffbgm.generation import GenerationConfig
from diffbgm.pipeline import Composer

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "docs" / "speed.json"
SHIPPED = REPO / "checkpoints" / "diffbgm-small" / "config.json"


def _record() -> dict:
    return json.loads(RECORD.read_text())


def test_speed_record_matches_the_shipped_generation_settings() -> None:
    shipped = json.loads(SHIPPED.read_text())["extra"]["generation"]
    measured = _record()["defaults"]["generation"]
    assert GenerationConfig.from_dict(measured) == GenerationConfig.from_dict(shipped), (
        "the shipped generation settings changed since the speed figures were measured: "
        "re-run `python benchmarks/e2e.py --record docs/speed.json` and update the README"
    )


def test_speed_record_matches_the_thread_rule() -> None:
    default = inspect.signature(Composer.from_pretrained).parameters["threads"].default
    assert _record()["defaults"]["threads"] == default, (
        "Composer's default thread rule changed since the speed figures were measured"
    )


def test_readme_shows_the_recorded_figures() -> None:
    record = _record()
    readme = (REPO / "README.md").read_text()
    short = f"{record['short']['wall_s']:.1f} s"
    assert record["date"] in readme and short in readme, (
        f"README does not show the recorded speed ({short} on {record['date']})"
    )
    if record.get("long"):
        long_rtf = f"{record['long']['real_time_factor']:.3f}"
        assert long_rtf in readme, f"README does not show the 10-minute figure ({long_rtf})"
