"""The plan stays light and one-way (docs: DESIGN.md, Layout): importing it loads neither the
model (nor torch), the metrics nor the video package; what it reads from a video analysis is
described by Protocols that the video records fit."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from diffbgm.plan import AnalysisLike, ShotFeaturesLike, ShotLike, VideoInfoLike
from diffbgm.video.types import Shot, ShotFeatures, VideoAnalysis, VideoInfo

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = (
    "diffbgm.model",
    "diffbgm.metrics",
    "diffbgm.video",
    "diffbgm.generation",
    "diffbgm.pipeline",
    "torch",
)


def test_importing_the_plan_loads_no_model_metrics_video_or_torch() -> None:
    # a fresh interpreter: this one has long imported everything
    code = (
        "import json, sys\n"
        "import diffbgm.plan\n"
        "print(json.dumps([diffbgm.plan.__file__, sorted(sys.modules)]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    path, modules = json.loads(proc.stdout)
    assert Path(path).resolve().is_relative_to(REPO / "diffbgm" / "plan")
    loaded = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert loaded == []


def _analysis() -> VideoAnalysis:
    info = VideoInfo(Path("v.mp4"), "mp4", 4.0, 320, 240, 25.0, False, 0, 100, False, 1, "h264")
    features = ShotFeatures(0, 0.1, 0.0, 0.5, 0.0, 0.5, 0.0, 0.5, np.zeros(4), 0.2, 0.4)
    return VideoAnalysis(info, [Shot(0, 0.0, 4.0)], [features])


@pytest.mark.parametrize(
    "protocol, part",
    [
        (AnalysisLike, lambda a: a),
        (VideoInfoLike, lambda a: a.info),
        (ShotLike, lambda a: a.shots[0]),
        (ShotFeaturesLike, lambda a: a.features[0]),
    ],
)
def test_the_video_records_have_what_the_planner_reads(
    protocol: type, part: Callable[[AnalysisLike], object]
) -> None:
    # mypy checks the fit where a VideoAnalysis is passed to the planner (and here); this
    # keeps the Protocols and the video records in step at run time too
    analysis: AnalysisLike = _analysis()
    record = part(analysis)
    members = [name for name in vars(protocol) if not name.startswith("_")]
    assert members
    assert [name for name in members if not hasattr(record, name)] == []
