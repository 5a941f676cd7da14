"""Web-app settings, read once from the environment at start-up (nothing here is mutable).

Environment variables (all optional):
- GRADIO_SERVER_NAME / GRADIO_SERVER_PORT: where to listen (default 127.0.0.1:7860; Docker and
  Spaces set 0.0.0.0).
- DIFFBGM_MODEL: checkpoint folder or Hub id (default: the shipped `checkpoints/diffbgm-small`).
- DIFFBGM_DATA_DIR: the app's data folder (default ./data); outputs go to `<data>/outputs`.
- DATABASE_URL: ratings store (default: a SQLite file in the data folder, see webapp.store).
- DIFFBGM_ADMIN_TOKEN: token for study administration, checked by webapp.studies; when unset,
  admin actions are off (the Results/Admin tab says so).
- DIFFBGM_COMPOSE_CONCURRENCY: composes run at the same time (default 1: one model, one CPU).
- DIFFBGM_MAX_UPLOAD_MB: largest upload in megabytes (default 200).
- DIFFBGM_MAX_VIDEO_S: longest video in seconds (default 1200).
- DIFFBGM_OUTPUT_MAX_AGE_H: outputs older than this many hours are deleted (default 24).
- DIFFBGM_QUEUE_SIZE: most events waiting in the queue (default 64).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "checkpoints" / "diffbgm-small"
# Shipped with the package (CC0, made by scripts/make_example_video.py), so every install has
# an example; the Big Buck Bunny excerpt of our shared data folder is added where it exists.
SHIPPED_EXAMPLE = REPO_ROOT / "diffbgm" / "assets" / "examples" / "shapes.mp4"
SHARED_EXAMPLE = REPO_ROOT.parent / "shared" / "data" / "videos" / "big_buck_bunny_0_30.webm"
EXAMPLE_LABELS = {
    SHIPPED_EXAMPLE.name: "four drawn shots, 7 s (CC0)",
    SHARED_EXAMPLE.name: "Big Buck Bunny, first 30 s (CC BY 3.0, Blender Foundation)",
}


class SettingsError(ValueError):
    """An environment variable holds a value the app cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, low: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from exc
    if value < low:
        raise SettingsError(f"{name}={value} must be at least {low}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a number") from exc
    if value <= 0:
        raise SettingsError(f"{name}={value} must be positive")
    return value


@dataclass(frozen=True)
class AppSettings:
    """Everything the app needs to know about where it runs. Sizes in MB, ages in hours."""

    host: str = "127.0.0.1"
    port: int = 7860
    model_path: str = str(DEFAULT_MODEL)
    data_dir: Path = Path("data")
    database_url: str | None = None
    admin_enabled: bool = False
    compose_concurrency: int = 1
    max_upload_mb: int = 200
    max_video_s: float = 1200.0
    output_max_age_h: float = 24.0
    queue_size: int = 64
    example_videos: tuple[Path, ...] = ()

    @property
    def outputs_dir(self) -> Path:
        """Where every request gets its own folder; the only folder the app serves files from."""
        return self.data_dir / "outputs"

    @property
    def studies_dir(self) -> Path:
        """Copies of the media of listening studies (outputs get cleaned up, these stay)."""
        return self.data_dir / "studies"

    @property
    def exports_dir(self) -> Path:
        """CSV exports of study results."""
        return self.data_dir / "exports"

    @property
    def served_dirs(self) -> list[str]:
        """The only folders the app may serve files from (Gradio's `allowed_paths`)."""
        return [str(self.outputs_dir), str(self.studies_dir), str(self.exports_dir)]

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def probe_limits(self) -> Any:
        """The upload limits as the library's video probe takes them."""
        from diffbgm.video.probe import ProbeLimits

        return ProbeLimits(max_bytes=self.max_upload_bytes, max_duration_s=self.max_video_s)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AppSettings:
        """Read the settings from `env` (default: os.environ); clear error for a bad value."""
        env = os.environ if env is None else env
        data_dir = Path(env.get("DIFFBGM_DATA_DIR", "") or "data").resolve()
        examples = tuple(path for path in (SHIPPED_EXAMPLE, SHARED_EXAMPLE) if path.is_file())
        return cls(
            host=env.get("GRADIO_SERVER_NAME", "") or "127.0.0.1",
            port=_int(env, "GRADIO_SERVER_PORT", 7860, low=1),
            model_path=env.get("DIFFBGM_MODEL", "") or str(DEFAULT_MODEL),
            data_dir=data_dir,
            database_url=env.get("DATABASE_URL", "").strip() or None,
            admin_enabled=bool(env.get("DIFFBGM_ADMIN_TOKEN", "").strip()),
            compose_concurrency=_int(env, "DIFFBGM_COMPOSE_CONCURRENCY", 1, low=1),
            max_upload_mb=_int(env, "DIFFBGM_MAX_UPLOAD_MB", 200, low=1),
            max_video_s=_float(env, "DIFFBGM_MAX_VIDEO_S", 1200.0),
            output_max_age_h=_float(env, "DIFFBGM_OUTPUT_MAX_AGE_H", 24.0),
            queue_size=_int(env, "DIFFBGM_QUEUE_SIZE", 64, low=1),
            example_videos=examples,
        )
