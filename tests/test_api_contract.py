"""The Gradio API as a script sees it (`Client.view_api()`): the video is the only required
input of /compose, integers are integers, every output has a label (README's example)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from webapp.handlers import ComposerHolder, Handlers
from webapp.settings import AppSettings
from webapp.ui import build_app


def _endpoints(tmp_path: Path) -> dict[str, Any]:
    settings = AppSettings(data_dir=tmp_path)
    handlers = Handlers(settings, ComposerHolder(lambda: None), engine=None)
    return build_app(settings, handlers).get_api_info()["named_endpoints"]


def test_compose_needs_only_the_video_and_takes_integers_as_integers(tmp_path: Path) -> None:
    compose = _endpoints(tmp_path)["/compose"]
    params = {p["parameter_name"]: p for p in compose["parameters"]}
    assert list(params) == [
        "video", "mood", "tempo_bpm", "key", "density", "seed",
        "guidance", "steps", "variants", "audio", "recall", "arrangement", "candidates",
        "control_guidance", "chords", "sections", "sections_only", "form", "music_start",
        "music_end", "playing",
    ]  # fmt: skip
    required = [name for name, p in params.items() if not p["parameter_has_default"]]
    assert required == ["video"]
    for name in ("seed", "steps", "variants", "candidates"):
        assert params[name]["type"]["type"] == "integer", name
    assert params["variants"]["parameter_default"] == 1
    assert params["guidance"]["parameter_default"] is None
    assert params["arrangement"]["parameter_default"] == "solo-piano"
    assert params["candidates"]["parameter_default"] is None
    assert params["control_guidance"]["parameter_default"] is None
    assert params["control_guidance"]["type"]["type"] == "number"
    assert params["chords"]["parameter_default"] == params["sections"]["parameter_default"] == ""
    assert params["sections_only"]["parameter_default"] is False
    assert params["form"]["parameter_default"] == ""
    assert params["music_start"]["parameter_default"] == params["music_end"]["parameter_default"]
    assert params["music_end"]["parameter_default"] == ""
    assert params["playing"]["parameter_default"] == "even"


def test_every_output_of_compose_and_regenerate_is_labelled(tmp_path: Path) -> None:
    endpoints = _endpoints(tmp_path)
    for name in ("/compose", "/regenerate"):
        labels = [r["label"] for r in endpoints[name]["returns"]]
        assert labels[0] == "Summary" and labels[8] == "Result name"
        assert all(label and not label.startswith("value_") for label in labels), labels
