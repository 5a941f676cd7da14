"""Launch the real web app (`python app.py`) on 127.0.0.1 and a free port, for API, browser and
load tests; stop it afterwards. Also writes small synthetic videos for uploads.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = REPO / "checkpoints" / "diffbgm-tiny"
ADMIN_TOKEN = "test-admin-token-0123456789"
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class RunningApp:
    url: str
    data_dir: Path
    log_path: Path
    admin_token: str
    pid: int = 0


def tiny_model_missing_reason() -> str | None:
    """Why the real-app tests cannot run here, or None when they can."""
    if not (TINY_MODEL / "config.json").is_file():
        return f"the tiny test checkpoint is not at {TINY_MODEL} (config.json missing)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the app did not answer on {url} in {START_TIMEOUT_S} s")


@contextmanager
def running_app(data_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[RunningApp]:
    """Start `app.py` in a subprocess with its data in `data_dir`; yield once it serves."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "app.log"
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "DIFFBGM_DATA_DIR": str(data_dir),
        "DIFFBGM_MODEL": str(TINY_MODEL),
        "DIFFBGM_ADMIN_TOKEN": ADMIN_TOKEN,
        "DIFFBGM_MAX_UPLOAD_MB": "50",
        **(extra_env or {}),
    }
    env.pop("DATABASE_URL", None)
    url = f"http://127.0.0.1:{port}/"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "app.py")],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_until_up(url, process, log_path)
            yield RunningApp(url, data_dir, log_path, env["DIFFBGM_ADMIN_TOKEN"], process.pid)
        finally:
            if process.poll() is None:  # a test may have killed it on purpose
                process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def write_test_video(path: Path, seconds: float = 4.0, cut_every_s: float = 2.0) -> Path:
    """A small H.264 MP4 (160x120, 12 fps) of flat colours that change every `cut_every_s`
    seconds, with a moving square, so the shot detector finds real cuts."""
    from diffbgm.video.synthetic import write_shots_video

    return write_shots_video(path, seconds=seconds, cut_every_s=cut_every_s)
