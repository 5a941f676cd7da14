"""Shared fixtures: where the read-only shared data lives, skipping with a reason when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Composers default to CLIP `auto`, which downloads ~600 MB where the Hub answers: tests read shots
# from picture statistics unless a test asks for CLIP itself (tests/test_clip.py).
os.environ.setdefault("DIFFBGM_CLIP", "off")
# The ONNX graphs sampling exports (diffbgm.model.onnx_runtime) go to pytest's own cache folder,
# not the user's ~/.cache; kept between runs, so a run exports the shipped model at most once.
os.environ.setdefault("DIFFBGM_ONNX_CACHE", str(REPO / ".pytest_cache" / "diffbgm-onnx"))


def shared_data_dir() -> Path:
    return Path(os.environ.get("DIFFBGM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def pop909_dir() -> Path:
    path = shared_data_dir() / "pop909"
    if not (path / "001" / "001.mid").exists():
        pytest.skip(f"POP909 not found at {path} (set DIFFBGM_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def two_song_cache(pop909_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A POP909 cache of one training song (001) and one validation song (801)."""
    from trainer.cache import build_cache

    out = tmp_path_factory.mktemp("two_song_cache") / "pop909"
    build_cache(pop909_dir, out, songs=["001", "801"], workers=1, calibration_path=None)
    return out


@pytest.fixture(scope="session")
def bbb_video() -> Path:
    path = shared_data_dir() / "videos" / "big_buck_bunny_0_30.webm"
    if not path.exists():
        pytest.skip(f"the 30 s test clip is not at {path} (set DIFFBGM_SHARED_DATA)")
    return path
