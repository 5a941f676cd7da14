"""What a Docker image, a Hugging Face Space or a fresh venv gets from this repository: headless
OpenCV only, runtime requirements that are really used, Gradio pinned to the Space's
`sdk_version`, licences, LFS rules for every binary file, and a shipped example clip."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "diffbgm" / "assets" / "examples" / "shapes.mp4"


def _requirement_names(path: Path) -> dict[str, str]:
    """Requirement name (normalised) -> its line, for the plain lines of a requirements file."""
    names: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name = re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0]
        names[re.sub(r"[-_.]+", "-", name).lower()] = line
    return names


@pytest.mark.parametrize("gui_distribution", ["opencv-python", "scenedetect"])
def test_no_gui_opencv_is_installed(gui_distribution: str) -> None:
    """`opencv-python` needs libGL (absent in slim images, on Spaces) and overwrites the
    headless `cv2/`; `scenedetect` is what pulls it in."""
    try:
        version = importlib.metadata.version(gui_distribution)
    except importlib.metadata.PackageNotFoundError:
        return
    pytest.fail(
        f"{gui_distribution} {version} is installed: it brings the GUI OpenCV. The project "
        "uses scenedetect-headless + opencv-python-headless; fix this environment with "
        "`bash scripts/headless_opencv.sh PYTHON` (`make setup` runs it)."
    )


def test_runtime_requirements_hold_what_runs_and_nothing_test_only() -> None:
    runtime = _requirement_names(REPO / "requirements.txt")
    dev = _requirement_names(REPO / "requirements-dev.txt")
    assert "opencv-python" not in runtime and "scenedetect" not in runtime
    assert {"opencv-python-headless", "scenedetect-headless"} <= set(runtime)
    for test_only in ("gradio-client", "scikit-video", "pytest", "playwright", "mido"):
        assert test_only not in runtime, f"{test_only} is not used at run time"
    assert {"gradio-client", "scikit-video"} <= set(dev)
    assert "-r requirements.txt" in (REPO / "requirements-dev.txt").read_text()


def test_gradio_pin_matches_the_space_sdk_version_and_the_installed_gradio() -> None:
    pin = _requirement_names(REPO / "requirements.txt")["gradio"]
    match = re.fullmatch(r"gradio==(6\.\d+\.\d+)", pin)
    assert match, f"gradio must be pinned exactly to a 6.x release, not {pin!r}"
    front_matter = (REPO / "README.md").read_text().split("---")[1]
    sdk = re.search(r"^sdk_version:\s*\"?([\d.]+)\"?\s*$", front_matter, re.MULTILINE)
    assert sdk and sdk.group(1) == match.group(1), "README sdk_version != requirements pin"
    assert importlib.metadata.version("gradio") == match.group(1)


def test_licence_and_third_party_notices() -> None:
    licence = (REPO / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "Diff-BGM contributors" in licence
    notices = (REPO / "THIRD_PARTY_NOTICES.md").read_text()
    for needle in ("POP909", "Shuqi Dai", "TimGM6mb", "all-MiniLM-L6-v2", "TransNetV2"):
        assert needle in notices
    assert "CC0" in notices and "Big Buck Bunny" in notices


def _tracked_files() -> list[str]:
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        [git, "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout
    return [name for name in listed.decode().split("\0") if name]


def _is_binary(path: Path) -> bool:
    head = path.read_bytes()[:8192]
    if b"\0" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 4  # a multi-byte character cut at the end is text
    return False


def test_every_tracked_binary_file_goes_through_lfs() -> None:
    """A Space push refuses plain binary blobs; `.gitattributes` must route each to LFS."""
    files = [name for name in _tracked_files() if (REPO / name).is_file()]
    binary = [name for name in files if _is_binary(REPO / name)]
    assert any(name.endswith(".safetensors") for name in binary)
    attrs = subprocess.run(
        ["git", "check-attr", "filter", "--", *binary],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    not_lfs = [line for line in attrs.splitlines() if not line.endswith(": filter: lfs")]
    assert not not_lfs, f"binary files without an LFS rule in .gitattributes: {not_lfs}"


def test_the_example_clip_is_shipped_small_and_valid() -> None:
    from diffbgm.video.probe import probe_video

    assert EXAMPLE.is_file() and EXAMPLE.stat().st_size < 1_000_000
    info = probe_video(EXAMPLE)
    assert 3.0 <= info.duration_s <= 10.0
    assert (info.width, info.height) == (640, 360)
    assert "CC0" in (EXAMPLE.parent / "README.md").read_text()


def test_the_app_offers_the_shipped_example_first() -> None:
    from webapp.settings import AppSettings

    settings = AppSettings.from_env({})
    assert settings.example_videos[0] == EXAMPLE
