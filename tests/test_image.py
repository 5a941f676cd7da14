"""The Docker image really builds, composes the example and reports broken composing as
unhealthy (scripts/check_image.sh). Slow (a first build takes ≈ 10 min; cached ≈ 2 min plus
layer clean-up) and needs root and buildah: `make test-slow` on a machine that has them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_image_builds_composes_and_turns_unhealthy_when_broken() -> None:
    if os.geteuid() != 0 or shutil.which("buildah") is None or shutil.which("podman") is None:
        pytest.skip(
            "needs root, buildah and podman (apt-get install -y buildah podman debootstrap)"
        )
    process = subprocess.run(
        ["bash", str(REPO / "scripts" / "check_image.sh")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3500,
        check=False,
    )
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-4000:]
    assert "compose round trip" in output and "file: music.wav" in output
    assert "healthcheck: exit 0 (healthy)" in output
    assert "healthcheck: exit 1 (unhealthy) -- as it should be" in output
