"""benchmarks/since_rev.py: composes with whichever diffbgm it is pointed at, and reports the
median of the warm runs."""

from __future__ import annotations

from pathlib import Path

from tests.scripts import load_script

REPO = Path(__file__).resolve().parents[1]
SINCE = load_script("benchmarks/since_rev.py")


def test_the_median_leaves_the_cold_run_out() -> None:
    side = {"wall_s": [9.0, 3.0, 5.0, 4.0], "cpu_s": [12.0, 6.0, 8.0, 7.0]}
    assert SINCE.median_warm(side) == (4.0, 7.0, [3.0, 5.0, 4.0])
    assert SINCE.median_warm({"wall_s": [2.0], "cpu_s": [3.0]}) == (2.0, 3.0, [2.0])


def test_a_side_composes_with_the_code_it_is_given(tmp_path: Path) -> None:
    from tests.video_fixtures import write_video

    video = write_video(tmp_path / "clip.mp4")
    side = SINCE.compose_runs(video, 2, str(REPO / "checkpoints" / "diffbgm-tiny"))
    assert len(side["wall_s"]) == len(side["cpu_s"]) == 2
    assert all(w > 0 for w in side["wall_s"]) and all(c > 0 for c in side["cpu_s"])
