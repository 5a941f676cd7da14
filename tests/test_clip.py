"""CLIP shot semantics: a tiny randomly initialised transformers CLIP saved as a model folder
(no download) reading made-up frames through the setting, the Hugging Face cache path of `auto`,
the fallbacks to picture statistics, what report.json says, the torchvision guard, and the
open_clip backend (skipped where open_clip cannot be imported, e.g. without torchvision)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from diffbgm.conditioning import piece_conditions
from diffbgm.errors import VideoError
from diffbgm.music.roll import RollSpec
from diffbgm.plan import make_plan
from diffbgm.video.analyze import AnalysisOptions, analyze_video
from diffbgm.video.clip import (
    DEFAULT_CLIP_MODEL,
    OPEN_CLIP,
    SCENE_PROMPTS,
    TRANSFORMERS,
    ClipLoader,
    OpenClipEncoder,
    clip_backend,
    clip_setting,
    load_clip_encoder,
)
from diffbgm.video.torchvision_guard import hide_unusable_torchvision, torchvision_mismatch
from diffbgm.video.types import ShotFeatures, VideoAnalysis
from tests.clip_fixtures import TINY_PROJECTION, write_tiny_clip
from tests.scripts import load_script
from tests.video_fixtures import SyntheticShot, write_video

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = REPO / "checkpoints" / "diffbgm-tiny"
RED_SHAPES = (
    SyntheticShot(1.5, (210, 30, 30), 0.0, square_colour=(255, 220, 0)),
    SyntheticShot(1.5, (150, 10, 20), 120.0, square_colour=(255, 255, 255)),
)
BLUE_GRADIENTS = (
    SyntheticShot(1.5, (20, 40, 200), 0.0, square_colour=(120, 180, 255)),
    SyntheticShot(1.5, (10, 90, 160), 60.0, square_colour=(0, 0, 60)),
)
# open_clip's own classes, randomly initialised: a 2-layer ViT (width 64, 32 px, 8 px patches)
# and a 2-layer text tower.
TINY_OPEN_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"layers": 2, "width": 64, "head_width": 32, "patch_size": 8, "image_size": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def tiny_loader(tiny_folder: Path) -> ClipLoader:
    """The tiny model loaded the way a user's setting loads it: a local folder."""
    loader = ClipLoader(str(tiny_folder))
    assert loader.get() is not None, loader.failure
    return loader


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clip-videos")
    return {
        "red": write_video(folder / "red.mp4", RED_SHAPES),
        "blue": write_video(folder / "blue.mp4", BLUE_GRADIENTS),
    }


@pytest.fixture
def hf_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache of this test's own."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def offline(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty Hugging Face cache and a Hub that does not answer."""
    monkeypatch.setattr("diffbgm.video.clip.hub_reachable", lambda timeout_s=3.0: False)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "diffbgm.video.clip"]


def test_clip_setting_reads_values_and_the_environment(tmp_path: Path) -> None:
    assert clip_setting(None, {}) == "auto"
    assert clip_setting(None, {"DIFFBGM_CLIP": "OFF"}) == "off"
    assert clip_setting("auto", {"DIFFBGM_CLIP": "off"}) == "auto"  # the argument wins
    assert clip_setting("openai/clip-vit-large-patch14", {}) == "openai/clip-vit-large-patch14"
    assert clip_setting("hf-hub:timm/x", {}) == "hf-hub:timm/x"
    assert clip_setting(str(tmp_path), {}) == str(tmp_path)
    with pytest.raises(VideoError, match="not auto, off"):
        clip_setting("no-such-thing", {})


def test_the_backend_follows_what_the_setting_names(tmp_path: Path) -> None:
    assert clip_backend("auto") == TRANSFORMERS
    assert clip_backend("openai/clip-vit-base-patch32") == TRANSFORMERS
    assert clip_backend("hf-hub:timm/vit_base_patch32_clip_224.openai") == OPEN_CLIP
    assert clip_backend(str(tmp_path)) == TRANSFORMERS
    (tmp_path / "open_clip_config.json").write_text("{}")
    assert clip_backend(str(tmp_path)) == OPEN_CLIP


def test_tiny_clip_from_a_folder_reads_shots_and_records_its_time(
    tiny_loader: ClipLoader, tiny_folder: Path
) -> None:
    encoder = tiny_loader.get()
    assert encoder is not None and encoder.name == f"transformers:{tiny_folder}"
    red = np.zeros((90, 160, 3), np.uint8)
    red[:] = (200, 20, 20)
    red[20:60, 30:90] = (255, 220, 0)
    blue = np.zeros((90, 160, 3), np.uint8)
    blue[..., 2] = np.linspace(60, 255, 160, dtype=np.uint8)[None, :]
    readings = encoder.read_shots([red, blue, red])
    assert len(readings) == 3
    for reading in readings:
        assert reading.embedding.shape == (TINY_PROJECTION,)
        assert reading.embedding.dtype == np.float32
        assert abs(float(np.linalg.norm(reading.embedding)) - 1.0) < 1e-4
        assert -1 <= reading.mood.valence <= 1 and 0 <= reading.mood.arousal <= 1
        assert len(reading.scenes) == 2 and set(reading.scenes) <= set(SCENE_PROMPTS)
    assert np.allclose(readings[0].embedding, readings[2].embedding, atol=1e-5)
    assert float(readings[0].embedding @ readings[1].embedding) < 0.999
    # The prompts are real, distinct texts to the model (no unknown-token soup).
    anchors, scenes = encoder.prompt_embeddings()
    assert anchors.shape[1] == scenes.shape[1] == TINY_PROJECTION
    assert len({tuple(np.round(row, 5)) for row in scenes}) == len(SCENE_PROMPTS)
    assert encoder.seconds_per_shot is not None and encoder.seconds_per_shot > 0
    print(f"tiny transformers CLIP: {1000 * encoder.seconds_per_shot:.2f} ms per shot")


def test_folder_preprocessing_values_are_read_as_data(tmp_path: Path, tiny_folder: Path) -> None:
    import shutil

    folder = tmp_path / "with-preprocessor"
    shutil.copytree(tiny_folder, folder)
    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"crop_size": {"height": 32, "width": 32}, "image_mean": mean, "image_std": std})
    )
    encoder = load_clip_encoder(clip_setting(str(folder)))
    assert encoder.image_size == 32
    assert np.allclose(encoder.mean, mean) and np.allclose(encoder.std, std)


def test_different_videos_get_different_semantic_inputs(
    tiny_loader: ClipLoader, tiny_folder: Path, videos: dict[str, Path]
) -> None:
    options = AnalysisOptions(clip=str(tiny_folder))
    red = analyze_video(videos["red"], options, clip_loader=tiny_loader)
    blue = analyze_video(videos["blue"], options, clip_loader=tiny_loader)
    for analysis in (red, blue):
        assert analysis.semantics == f"clip:transformers:{tiny_folder}"
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


def test_a_long_take_is_read_in_parts(
    tiny_loader: ClipLoader, tiny_folder: Path, tmp_path: Path
) -> None:
    """A 32 s take is read at its middle frame (the shot's row) and once for each of its four
    8 s parts; each stretch blends in the reading of the part it lies in."""
    from diffbgm.video.analyze import take_parts
    from diffbgm.video.synthetic import write_one_take_video

    take = write_one_take_video(tmp_path / "take.mp4", (12.0, 12.0), part_s=16.0)
    read = analyze_video(take, AnalysisOptions(clip=str(tiny_folder)), clip_loader=tiny_loader)
    plain = analyze_video(take, AnalysisOptions())
    (shot,) = read.shots
    assert len(take_parts(shot)) == 4 and read.features[0].semantic is not None
    # the visual half of each stretch's mood is the same with and without CLIP, so the
    # difference is (half) the semantic mood of its part: one value per part, and not one
    # value for the whole take
    weight = AnalysisOptions().semantic_weight
    semantic = [
        round((r.features.valence - (1 - weight) * p.features.valence) / weight, 6)
        for r, p in zip(read.stretches, plain.stretches, strict=True)
    ]
    by_part = [
        {v for v, s in zip(semantic, read.stretches, strict=True)
         if part.start_s <= (s.start_s + s.end_s) / 2 < part.end_s}
        for part in take_parts(shot)
    ]  # fmt: skip
    assert all(len(values) == 1 for values in by_part)
    assert len(set().union(*by_part)) > 1
    # and it is that part's own reading, in order: CLIP's mood of the part's middle frame
    from diffbgm.video.decode import decode_frames

    frames = decode_frames(take)
    middles = [
        frames.rgb[int(np.argmin(np.abs(frames.times_s - (part.start_s + part.end_s) / 2)))]
        for part in take_parts(shot)
    ]
    reader = tiny_loader.get()
    assert reader is not None
    expected = [round(r.mood.valence, 6) for r in reader.read_shots(middles)]
    assert [values.pop() for values in by_part] == pytest.approx(expected, abs=1e-5)
    # a shot shorter than two parts is read once
    assert take_parts(replace(shot, end_s=shot.start_s + 10.0)) == []


def test_analysis_options_alone_load_the_folder(tiny_folder: Path, videos: dict[str, Path]) -> None:
    analysis = analyze_video(videos["blue"], AnalysisOptions(clip=str(tiny_folder)))
    assert analysis.semantics == f"clip:transformers:{tiny_folder}"


def _cache_snapshot(cache: Path, repo: str, source: Path) -> Path:
    """Lay `source`'s files out as huggingface_hub's cache holds a downloaded `repo`."""
    import shutil

    entry = cache / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    shutil.copytree(source, entry / "snapshots" / commit)
    return entry / "snapshots" / commit


def test_auto_reads_the_default_model_from_the_cache_without_the_hub(
    hf_cache: Path,
    tiny_folder: Path,
    videos: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def no_hub(timeout_s: float = 3.0) -> bool:
        raise AssertionError("a cached model must load without asking the Hub")

    monkeypatch.setattr("diffbgm.video.clip.hub_reachable", no_hub)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    _cache_snapshot(hf_cache, DEFAULT_CLIP_MODEL, tiny_folder)
    loader = ClipLoader("auto")
    with caplog.at_level(logging.WARNING, logger="diffbgm.video.clip"):
        analysis = analyze_video(videos["red"], AnalysisOptions(clip="auto"), clip_loader=loader)
    assert loader.failure is None and _warnings(caplog) == []
    assert analysis.semantics == f"clip:transformers:{DEFAULT_CLIP_MODEL}"
    assert all(f.semantic is not None and f.scenes for f in analysis.features)
    assert "HF_HUB_OFFLINE" not in os.environ


def assert_same_features(got: list, want: list) -> None:  # type: ignore[type-arg]
    """Equal shot features, numbers up to float summation order (the flow's threads may add
    in another order between two analyses of one file: seen in CI 4e-13 apart, and on a
    loaded 2-core machine motion_change 3e-9 apart, relative)."""
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        a_dict, b_dict = a.to_dict(), b.to_dict()
        assert a_dict.keys() == b_dict.keys()
        for key, value in a_dict.items():
            if isinstance(value, float):
                assert value == pytest.approx(b_dict[key], rel=1e-6, abs=1e-12), key
            else:
                assert value == b_dict[key], key


@pytest.mark.parametrize("damage", ["no weights", "weights of another model", "no tokenizer"])
def test_a_bad_folder_falls_back_with_one_log_line(
    damage: str,
    tmp_path: Path,
    tiny_folder: Path,
    videos: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "damaged"
    shutil.copytree(tiny_folder, folder)
    if damage == "no weights":
        (folder / "model.safetensors").unlink()
    elif damage == "weights of another model":
        state = load_file(str(folder / "model.safetensors"))
        kept = {k: v for k, v in state.items() if not k.startswith("text_model.encoder")}
        save_file(kept, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (folder / name).unlink()
    loader = ClipLoader(str(folder))
    with caplog.at_level(logging.WARNING, logger="diffbgm.video.clip"):
        first = analyze_video(videos["red"], AnalysisOptions(clip=str(folder)), clip_loader=loader)
        second = analyze_video(videos["red"], AnalysisOptions(clip=str(folder)), clip_loader=loader)
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "picture statistics" in warnings[0], warnings
    assert loader.failure is not None
    plain = analyze_video(videos["red"], AnalysisOptions())
    for analysis in (first, second):
        assert analysis.semantics == "statistics"
        assert_same_features(analysis.features, plain.features)


def test_auto_offline_falls_back_with_one_log_line(
    offline: None, videos: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    loader = ClipLoader("auto")
    with caplog.at_level(logging.WARNING, logger="diffbgm.video.clip"):
        started = time.perf_counter()
        first = analyze_video(videos["red"], AnalysisOptions(clip="auto"), clip_loader=loader)
        second = analyze_video(videos["red"], AnalysisOptions(clip="auto"), clip_loader=loader)
        elapsed = time.perf_counter() - started
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "picture statistics" in warnings[0]
    assert DEFAULT_CLIP_MODEL in warnings[0] and "cannot be reached" in warnings[0]
    plain = analyze_video(videos["red"], AnalysisOptions())
    for analysis in (first, second):
        assert analysis.semantics == "statistics"
        assert_same_features(analysis.features, plain.features)
    assert elapsed < 30  # no Hub retries


def test_off_never_tries(monkeypatch: pytest.MonkeyPatch, videos: dict[str, Path]) -> None:
    def refuse(setting: str) -> None:
        raise AssertionError("CLIP off must not load anything")

    monkeypatch.setattr("diffbgm.video.clip.load_clip_encoder", refuse)
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

    tiny_composer.clip = ClipLoader("auto")  # a fresh loader: it tries (offline) on this compose
    result = tiny_composer(videos["red"], tmp_path / "auto-offline", ComposeOptions(seed=0))
    report = json.loads((result.out_dir / "report.json").read_text())
    assert report["analysis"]["semantics"] == "statistics"
    assert tiny_composer.clip.failure is not None


def test_report_json_names_the_clip_model_that_read_the_shots(
    tiny_composer, tiny_folder: Path, videos: dict[str, Path], tmp_path: Path
) -> None:
    from diffbgm.pipeline import ComposeOptions

    tiny_composer.clip = ClipLoader(str(tiny_folder))
    result = tiny_composer(videos["red"], tmp_path / "clip", ComposeOptions(seed=0))
    report = json.loads((result.out_dir / "report.json").read_text())
    assert report["analysis"]["semantics"] == f"clip:transformers:{tiny_folder}"
    assert all(row["scenes"] for row in report["analysis"]["features"])
    assert all(len(row["semantic"]) == TINY_PROJECTION for row in report["analysis"]["features"])
    assert result.report.analysis.features[0].scenes  # the typed Report the web app reads
    assert report["analysis"]["timings_s"]["semantics_per_shot"] > 0


def test_mood_text_encoder_leaves_the_process_online(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffbgm.video.semantics import MoodTextEncoder

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    MoodTextEncoder().mood("a calm quiet morning")
    assert "HF_HUB_OFFLINE" not in os.environ


def _fetch_script():  # -> module
    return load_script("scripts/fetch_clip.py")


def test_fetch_script_fails_with_one_clear_line_offline(
    offline: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _fetch_script()
    monkeypatch.setattr(script, "hub_reachable", lambda timeout_s=3.0: False)
    assert script.main([]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and DEFAULT_CLIP_MODEL in error[0]
    assert script.main(["not a model"]) == 1


def test_fetch_script_checks_a_cached_model(
    hf_cache: Path,
    tiny_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The download itself needs the Hub; here the "downloaded" files are already in the cache
    # and huggingface_hub is asked for them with local_files_only, so the script's load check
    # and its report run as after a real fetch.
    from huggingface_hub import hf_hub_download

    _cache_snapshot(hf_cache, DEFAULT_CLIP_MODEL, tiny_folder)
    script = _fetch_script()
    monkeypatch.setattr(script, "hub_reachable", lambda timeout_s=3.0: True)
    monkeypatch.setattr(
        "huggingface_hub.hf_hub_download",
        lambda *a, **k: hf_hub_download(*a, **{**k, "local_files_only": True}),
    )
    assert script.main([]) == 0
    out = capsys.readouterr().out
    assert DEFAULT_CLIP_MODEL in out and "transformers" in out


# --- torchvision: never imported when it cannot load ------------------------------------------


def test_torchvision_mismatch_rules() -> None:
    cuda_wheel = ("0.28.0+cu130", ["numpy", "torch (==2.13.0)", "scipy ; extra == 'scipy'"])
    assert "CUDA build" in (torchvision_mismatch(*cuda_wheel, "2.13.0+cpu", None) or "")
    assert torchvision_mismatch(*cuda_wheel, "2.13.0+cu130", "13.0") is None
    assert torchvision_mismatch("0.28.0+cpu", ["torch==2.13.0"], "2.13.0+cpu", None) is None
    other_release = torchvision_mismatch("0.27.0", ["torch==2.12.0"], "2.13.0+cpu", None)
    assert other_release is not None and "needs torch==2.12.0" in other_release
    assert "ROCm" in (torchvision_mismatch("0.28.0+rocm6.4", [], "2.13.0+cpu", None) or "")


BROKEN_TORCHVISION = """\
import pathlib
pathlib.Path(__file__).with_name("IMPORTED").write_text("yes")
raise RuntimeError("operator torchvision::nms does not exist")
"""

CHILD = """\
import sys, numpy as np
from diffbgm.video.clip import ClipLoader
loader = ClipLoader(sys.argv[1])
encoder = loader.get()
assert encoder is not None, loader.failure
reading = encoder.read_shots([np.zeros((40, 60, 3), np.uint8)])[0]
assert reading.scenes and sys.modules.get("torchvision", "absent") is None
print("read", reading.scenes[0])
"""


def _install_broken_torchvision(site: Path, torch_version: str) -> Path:
    """A torchvision package like PyPI's CUDA wheel next to the CPU torch: it is installed
    (metadata and files) and its import fails; the IMPORTED file says whether anyone tried."""
    package = site / "torchvision"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(BROKEN_TORCHVISION)
    (package / "version.py").write_text("__version__ = '0.28.0+cu130'\ncuda = '13.0'\n")
    info = site / "torchvision-0.28.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: torchvision\nVersion: 0.28.0\n"
        f"Requires-Dist: torch (=={torch_version})\n"
    )
    return package / "IMPORTED"


def _broken_torchvision_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    import torch

    if torch.version.cuda is not None:
        pytest.skip("the broken torchvision stands in for a CUDA build next to a CPU torch")
    site = tmp_path / "site"
    imported = _install_broken_torchvision(site, torch.__version__.split("+")[0])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return env, imported


def test_a_broken_torchvision_does_not_break_transformers_clip(
    tmp_path: Path, tiny_folder: Path
) -> None:
    env, imported = _broken_torchvision_env(tmp_path)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tiny_folder)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.startswith("read ") and not imported.exists()
    assert "torchvision is installed but cannot load" in child.stderr


@pytest.mark.slow
def test_the_broken_torchvision_stand_in_breaks_bare_transformers(tmp_path: Path) -> None:
    """The premise of the test above: without the guard, the stand-in breaks transformers as
    the real CUDA wheel does (slow: another interpreter importing torch and transformers)."""
    env, imported = _broken_torchvision_env(tmp_path)
    bare = subprocess.run(
        [sys.executable, "-c", "from transformers import CLIPModel"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert bare.returncode != 0 and imported.exists()


# --- open_clip (needs a torchvision that fits torch) -------------------------------------------


def _open_clip():  # -> module
    # As the app does: an unusable torchvision is hidden first, so a failed open_clip import
    # cannot leave half a torchvision behind for the transformers tests.
    hide_unusable_torchvision()
    try:
        import open_clip
    except Exception as exc:  # e.g. no torchvision, or one built for another torch
        pytest.skip(f"open_clip cannot be imported here: {type(exc).__name__}: {exc}")
    return open_clip


@pytest.fixture(scope="module")
def tiny_open_clip() -> OpenClipEncoder:
    _open_clip()
    return OpenClipEncoder.from_config(TINY_OPEN_CLIP, seed=0)


def test_tiny_open_clip_reads_shots(tiny_open_clip: OpenClipEncoder) -> None:
    image = np.zeros((90, 160, 3), np.uint8)
    image[20:60, 30:90] = (255, 220, 0)
    readings = tiny_open_clip.read_shots([image, np.full_like(image, 90)])
    assert [r.embedding.shape for r in readings] == [(32,), (32,)]
    assert all(len(r.scenes) == 2 for r in readings)
    assert tiny_open_clip.name == "open_clip:random:0"
    assert tiny_open_clip.seconds_per_shot is not None and tiny_open_clip.seconds_per_shot > 0
    print(f"tiny open_clip: {1000 * tiny_open_clip.seconds_per_shot:.2f} ms per shot")


def test_open_clip_loads_from_an_open_clip_folder(
    tmp_path: Path, tiny_open_clip: OpenClipEncoder
) -> None:
    from safetensors.torch import save_file

    folder = tmp_path / "tiny-open-clip"
    folder.mkdir()
    config = {"model_cfg": TINY_OPEN_CLIP, "preprocess_cfg": {"size": 32}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(VideoError, match="none of"):
        load_clip_encoder(str(folder))  # config without weights: refused, not random weights
    state = {k: v.contiguous() for k, v in tiny_open_clip.model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    loaded = load_clip_encoder(clip_setting(str(folder)))
    assert loaded.name == f"open_clip:{folder}"
    image = np.full((48, 64, 3), 128, np.uint8)
    expected = tiny_open_clip.embed_images([image])
    assert np.allclose(loaded.embed_images([image]), expected, atol=1e-5)
