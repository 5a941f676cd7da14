"""BGM909 mode: reading the authors' feature layout, aligning it to songs, training on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fixtures_bgm909 import make_bgm909_folder, write_song_features
from trainer.bgm909_features import (
    Bgm909Error,
    available_songs,
    beat_segments,
    load_video_features,
    read_shots,
    segment_means,
    stretch_rows,
    video_conditions,
)


def test_read_shots_parses_transnet_lines(tmp_path: Path) -> None:
    path = tmp_path / "001_scenes.txt"
    path.write_text("0 99\n100 249\n250 399\n")
    assert read_shots(path).tolist() == [[0, 99], [100, 249], [250, 399]]


@pytest.mark.parametrize("text", ["", "5 3\n", "0 10\n0 20\n", "a b\n"])
def test_read_shots_rejects_malformed_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad_scenes.txt"
    path.write_text(text)
    with pytest.raises(Bgm909Error, match="bad_scenes"):
        read_shots(path)


def test_stretch_rows_follows_the_authors_index_rule() -> None:
    features = np.arange(10, dtype=np.float32)[:, None]
    # beat i takes row int(i * 10 / 4) = 0, 2, 5, 7
    assert stretch_rows(features, 4)[:, 0].tolist() == [0, 2, 5, 7]
    assert stretch_rows(features, 20).shape == (20, 1)


def test_shots_become_beat_segments_and_short_shots_merge() -> None:
    # 100 frames over 10 beats: a shot at frame 30 -> beat 3; frames 70 and 72 -> beat 7 (merged)
    shots = np.array([[0, 29], [30, 69], [70, 71], [72, 99]])
    ids = beat_segments(shots, n_frames=100, n_beats=10)
    assert ids.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]


def test_segment_means_average_each_segment() -> None:
    per_beat = np.array([[1.0], [3.0], [10.0]])
    assert segment_means(per_beat, np.array([0, 0, 1]))[:, 0].tolist() == [2.0, 10.0]


def test_video_conditions_cover_every_step(tmp_path: Path) -> None:
    write_song_features(tmp_path, "001", n_frames=800, shot_starts=[0, 200, 600], seed=0)
    features = load_video_features(tmp_path, "001")
    cond = video_conditions(features, n_steps=4 * 40 + 2, steps_per_beat=4)
    assert cond.segment_ids.shape == (162,)
    assert np.all(np.diff(cond.segment_ids) >= 0)
    # shot starts at 1/4 and 3/4 of the video -> beats 10 and 31 of 41
    assert np.flatnonzero(np.diff(cond.segment_ids)).tolist() == [39, 123]
    assert cond.dynamic.shape == (3, 512) and cond.semantic.shape == (3, 768)


def test_available_songs_needs_all_three_files(tmp_path: Path) -> None:
    make_bgm909_folder(tmp_path, ["001", "002"])
    (tmp_path / "caption_feats" / "002.npy").unlink()
    assert available_songs(tmp_path) == ["001"]
    with pytest.raises(Bgm909Error, match="not a BGM909 feature folder"):
        available_songs(tmp_path / "nothing")


def test_wrong_feature_width_is_a_clear_error(tmp_path: Path) -> None:
    make_bgm909_folder(tmp_path, ["001"])
    torch.save(torch.zeros(10, 100), tmp_path / "new_raw_video_feats" / "001.pth")
    with pytest.raises(Bgm909Error, match=r"001\.pth.*512"):
        load_video_features(tmp_path, "001")


# ------------------------------------------------------------------------- with real music


@pytest.fixture(scope="module")
def bgm909_setup(pop909_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A POP909 cache of three real songs and synthetic BGM909 features for them."""
    from trainer.cache import build_cache

    root = tmp_path_factory.mktemp("bgm909")
    cache = root / "cache"
    build_cache(pop909_dir, cache, songs=["001", "002", "801"], workers=1, calibration_path=None)
    return cache, make_bgm909_folder(root / "features", ["001", "002", "801"])


def test_windows_carry_video_segments(bgm909_setup: tuple[Path, Path]) -> None:
    from trainer.bgm909 import Bgm909Windows

    cache, features = bgm909_setup
    windows = Bgm909Windows(cache, features, "train", window_bars=4, max_segments=8)
    assert {s.song_id for s in windows.songs} == {"001", "002"}
    item = windows[len(windows) // 2]
    assert item["roll"].shape == (2, 64, 88)
    assert set(np.unique(item["roll"])) <= {-1.0, 1.0}
    cond = item["cond"]
    assert cond.dynamic.shape == (8, 512) and cond.semantic.shape == (8, 768)
    # ~10 shots over a ~100-bar song: most 4-bar windows see one or two shots
    n_real = int(cond.segment_mask.sum())
    assert 1 <= n_real <= 3
    assert cond.segment_ids.max() == n_real - 1
    # a real slot holds that shot's mean caption feature, an empty one zeros
    assert np.abs(cond.semantic[0]).sum() > 0 and np.abs(cond.semantic[n_real:]).sum() == 0


def test_augmentation_is_reproducible_per_seed(bgm909_setup: tuple[Path, Path]) -> None:
    from trainer.bgm909 import Bgm909Windows

    cache, features = bgm909_setup
    windows = Bgm909Windows(cache, features, "train", 4, 8, augment=True, seed=1)
    first = windows[3]["roll"]
    assert np.array_equal(first, windows[3]["roll"])
    shifted = []
    for seed in range(8):
        windows.set_seed(seed)
        shifted.append(windows[3]["roll"])
    assert any(not np.array_equal(first, other) for other in shifted)


def test_tiny_model_trains_on_bgm909_features(
    bgm909_setup: tuple[Path, Path], tmp_path: Path
) -> None:
    from trainer.train import TrainConfig, run_training

    cache, features = bgm909_setup
    config = TrainConfig(
        preset="tiny",
        data=str(cache),
        run=str(tmp_path / "run"),
        bgm909=str(features),
        steps=6,
        batch=4,
        warmup_steps=2,
        val_every=6,
        val_windows=4,
        log_every=1,
        threads=1,
        progress=False,
    )
    result = run_training(config)
    assert result.step == 6 and np.isfinite(result.last_loss)
    saved = json.loads((tmp_path / "run" / "last" / "state.json").read_text())
    assert saved["model_config"]["dynamic_dim"] == 512
    assert saved["model_config"]["semantic_dim"] == 768
    assert saved["model_config"]["selector"] == "rule"  # captions early, visual late
