"""CLIP through open_clip: the setting, a tiny randomly initialised open_clip model (no download)
reading made-up frames, the fallback to picture statistics, and what report.json says."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest

from diffbgm.conditioning import piece_conditions
from diffbgm.errors import VideoError
from diffbgm.music.roll import RollSpec
from diffbgm.plan import make_plan
from diffbgm.video.analyze import AnalysisOptions, analyze_video
from diffbgm.video.clip import (
    SCENE_PROMPTS,
    ClipLoader,
    OpenClipEncoder,
    clip_setting,
    load_open_clip,
)
from diffbgm.video.types import ShotFeatures, VideoAnalysis
from tests.video_fixtures import SyntheticShot, write_video

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = REPO / "checkpoints" / "diffbgm-tiny"
# A 2-layer ViT (width 64, 32 px images, 8 px patches) and a 2-layer text tower: open_clip's own
# classes, randomly initialised here.
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"layers": 2, "width": 64, "head_width": 32, "patch_size": 8, "image_size": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
RED_SHAPES = (
    SyntheticShot(1.5, (210, 30, 30), 0.0, square_colour=(255, 220, 0)),
    SyntheticShot(1.5, (150, 10, 20), 120.0, square_colour=(255, 255, 255)),
)
BLUE_GRADIENTS = (
    SyntheticShot(1.5, (20, 40, 200), 0.0, square_colour=(120, 180, 255)),
    SyntheticShot(1.5, (10, 90, 160), 60.0, square_colour=(0, 0, 60)),
)


def _open_clip():  # -> module
    try:
        import open_clip
    except Exception as exc:  # e.g. a torchvision built for another torch cannot import
        pytest.skip(f"open_clip cannot be imported here: {type(exc).__name__}: {exc}")
    return open_clip


@pytest.fixture(scope="module")
def tiny_clip() -> OpenClipEncoder:
    _open_clip()
    return OpenClipEncoder.from_config(TINY_CLIP, seed=0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clip-videos")
    return {
        "red": write_video(folder / "red.mp4", RED_SHAPES),
        "blue": write_video(folder / "blue.mp4", BLUE_GRADIENTS),
    }


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty Hugging Face cache and a Hub that does not answer."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr("diffbgm.video.clip.hub_reachable", lambda timeout_s=3.0: False)


def test_clip_setting_reads_values_and_the_environment(tmp_path: Path) -> None:
    assert clip_setting(None, {}) == "auto"
    assert clip_setting(None, {"DIFFBGM_CLIP": "OFF"}) == "off"
    assert clip_setting("auto", {"DIFFBGM_CLIP": "off"}) == "auto"  # the argument wins
    assert clip_setting("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", {}) == (
        "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    )
    assert clip_setting("hf-hub:timm/x", {}) == "hf-hub:timm/x"
    assert clip_setting(str(tmp_path), {}) == str(tmp_path)
    with pytest.raises(VideoError, match="not auto, off"):
        clip_setting("no-such-thing", {})


def test_tiny_clip_reads_shots_and_records_its_time(tiny_clip: OpenClipEncoder) -> None:
    red = np.zeros((90, 160, 3), np.uint8)
    red[:] = (200, 20, 20)
    red[20:60, 30:90] = (255, 220, 0)
    blue = np.zeros((90, 160, 3), np.uint8)
    blue[..., 2] = np.linspace(60, 255, 160, dtype=np.uint8)[None, :]
    readings = tiny_clip.read_shots([red, blue, red])
    assert len(readings) == 3
    for reading in readings:
        assert reading.embedding.shape == (32,)
        assert abs(float(np.linalg.norm(reading.embedding)) - 1.0) < 1e-4
        assert -1 <= reading.mood.valence <= 1 and 0 <= reading.mood.arousal <= 1
        assert len(reading.scenes) == 2 and set(reading.scenes) <= set(SCENE_PROMPTS)
    assert np.allclose(readings[0].embedding, readings[2].embedding)
    assert float(readings[0].embedding @ readings[1].embedding) < 0.999
    assert tiny_clip.seconds_per_shot is not None and tiny_clip.seconds_per_shot > 0
    print(f"tiny open_clip: {1000 * tiny_clip.seconds_per_shot:.2f} ms per shot")


def test_different_videos_get_different_semantic_inputs(
    tiny_clip: OpenClipEncoder, videos: dict[str, Path]
) -> None:
    loader = ClipLoader.of(tiny_clip)
    options = AnalysisOptions(clip=loader.setting)
    red = analyze_video(videos["red"], options, clip_loader=loader)
    blue = analyze_video(videos["blue"], options, clip_loader=loader)
    for analysis in (red, blue):
        assert analysis.semantics == "clip:random:0"
        assert all(f.semantic is not None and f.scenes for f in analysis.features)
        assert analysis.timings_s["semantics_per_shot"] > 0
    cosine = float(red.features[0].semantic @ blue.features[0].semantic)  # type: ignore[operator]
    assert cosine < 0.999
    # The zero-shot moods reach the plan (tempo, key mode, per-segment controls) and so the
    # model's condition tokens: with CLIP they differ from those of the same video read from
    # picture statistics. (Embeddings reach the plan through recall: returning scenes.)
    plain = analyze_video(videos["red"], AnalysisOptions())
    assert plain.semantics == "statistics"
    assert [f.valence for f in red.features] != [f.valence for f in plain.features]
    spec = RollSpec(pitch_low=21, n_pitches=88)
    with_clip = piece_conditions(make_plan(red, seed=0), spec)
    without = piece_conditions(make_plan(plain, seed=0), spec)
    assert not np.array_equal(with_clip.dynamic, without.dynamic)


def test_clip_loads_from_an_open_clip_folder(tmp_path: Path, tiny_clip: OpenClipEncoder) -> None:
    from safetensors.torch import save_file

    folder = tmp_path / "tiny-open-clip"
    folder.mkdir()
    config = {"model_cfg": TINY_CLIP, "preprocess_cfg": {"size": 32}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(VideoError, match="none of"):
        load_open_clip(str(folder))  # config without weights: refused, not random weights
    state = {k: v.contiguous() for k, v in tiny_clip.model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    loaded = load_open_clip(clip_setting(str(folder)))
    image = np.full((48, 64, 3), 128, np.uint8)
    assert np.allclose(loaded.embed_images([image]), tiny_clip.embed_images([image]), atol=1e-5)


def test_auto_offline_falls_back_with_one_log_line(
    offline: None, videos: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    loader = ClipLoader("auto")
    with caplog.at_level(logging.WARNING, logger="diffbgm.video.clip"):
        started = time.perf_counter()
        first = analyze_video(videos["red"], AnalysisOptions(clip="auto"), clip_loader=loader)
        second = analyze_video(videos["red"], AnalysisOptions(clip="auto"), clip_loader=loader)
        elapsed = time.perf_counter() - started
    lines = [r for r in caplog.records if r.name == "diffbgm.video.clip"]
    assert len(lines) == 1 and "picture statistics" in lines[0].getMessage()
    assert loader.failure is not None
    plain = analyze_video(videos["red"], AnalysisOptions())
    for analysis in (first, second):
        assert analysis.semantics == "statistics"
        assert [f.to_dict() for f in analysis.features] == [f.to_dict() for f in plain.features]
    assert elapsed < 30  # no Hub retries


def test_off_never_tries(monkeypatch: pytest.MonkeyPatch, videos: dict[str, Path]) -> None:
    def refuse(setting: str) -> None:
        raise AssertionError("CLIP off must not load anything")

    monkeypatch.setattr("diffbgm.video.clip.load_open_clip", refuse)
    loader = ClipLoader("off")
    assert loader.get() is None
    analysis = analyze_video(videos["red"], AnalysisOptions(clip="off"), clip_loader=loader)
    assert analysis.semantics == "statistics" and "semantics" not in analysis.timings_s


def test_old_reports_load_without_the_new_fields(videos: dict[str, Path]) -> None:
    data = analyze_video(videos["blue"], AnalysisOptions()).to_dict()
    assert data["semantics"] == "statistics" and data["features"][0]["scenes"] == []
    del data["semantics"]
    for row in data["features"]:
        del row["scenes"]
    old = VideoAnalysis.from_dict(data)
    assert old.semantics == "statistics"
    assert all(isinstance(f, ShotFeatures) and f.scenes == () for f in old.features)


@pytest.fixture(scope="module")
def tiny_composer():  # -> Composer
    from diffbgm.pipeline import Composer

    return Composer.from_pretrained(TINY_MODEL, clip="auto", device="cpu")


def test_report_json_says_statistics_when_auto_is_offline(
    offline: None, tiny_composer, videos: dict[str, Path], tmp_path: Path
) -> None:
    from diffbgm.pipeline import ComposeOptions
    from diffbgm.video.clip import ClipLoader

    tiny_composer.clip = ClipLoader("auto")  # a fresh loader: it tries (offline) on this compose
    result = tiny_composer(videos["red"], tmp_path / "auto-offline", ComposeOptions(seed=0))
    report = json.loads((result.out_dir / "report.json").read_text())
    assert report["analysis"]["semantics"] == "statistics"
    assert tiny_composer.clip.failure is not None


def test_report_json_names_the_clip_model_that_read_the_shots(
    tiny_composer, tiny_clip: OpenClipEncoder, videos: dict[str, Path], tmp_path: Path
) -> None:
    from diffbgm.pipeline import ComposeOptions

    tiny_composer.clip = ClipLoader.of(tiny_clip)
    result = tiny_composer(videos["red"], tmp_path / "clip", ComposeOptions(seed=0))
    report = json.loads((result.out_dir / "report.json").read_text())
    assert report["analysis"]["semantics"] == "clip:random:0"
    assert all(row["scenes"] for row in report["analysis"]["features"])
    assert result.report.analysis.features[0].scenes  # the typed Report the web app reads
    assert report["analysis"]["timings_s"]["semantics_per_shot"] > 0


def test_mood_text_encoder_leaves_the_process_online(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffbgm.video.semantics import MoodTextEncoder

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    MoodTextEncoder().mood("a calm quiet morning")
    assert "HF_HUB_OFFLINE" not in os.environ


def test_fetch_script_fails_with_one_clear_line_offline(
    offline: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fetch_clip", REPO / "scripts" / "fetch_clip.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(script, "hub_reachable", lambda timeout_s=3.0: False)
    assert script.main([]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ")
    assert script.main(["not a model"]) == 1
