"""Web-app settings, read once from the environment at start-up (nothing here is mutable).

Environment variables (all optional):
- GRADIO_SERVER_NAME / GRADIO_SERVER_PORT: where to listen (default 127.0.0.1:7860; Docker and
  Spaces set 0.0.0.0).
- DIFFBGM_MODEL: checkpoint folder or Hub id (default: the shipped `checkpoints/diffbgm-small`).
- DIFFBGM_DATA_DIR: the app's data folder (default ./data); outputs go to `<data>/outputs`.
- DATABASE_URL: ratings store (default: a SQLite file in the data folder, see webapp.store).
- DIFFBGM_ADMIN_TOKEN: token for study administration, checked by webapp.studies; when unset
  or shorter than ADMIN_TOKEN_MIN_LENGTH characters, admin actions are off (the Results/Admin
  tab says so, and the start-up log says why).
- DIFFBGM_COMPOSE_CONCURRENCY: composes run at the same time (default 1: one model, one CPU).
- DIFFBGM_COMPOSE_QUEUE: composes waiting or running at once, all clients together (default 8);
  one more is refused with a clear message.
- DIFFBGM_COMPOSE_PER_CLIENT: composes one client (IP address) may have waiting or running
  (default 2).
- DIFFBGM_MAX_UPLOAD_MB: largest upload in megabytes (default 200).
- DIFFBGM_MAX_VIDEO_S: longest video in seconds (default 1200).
- DIFFBGM_OUTPUT_MAX_AGE_H: outputs older than this many hours are deleted (default 24).
- DIFFBGM_UPLOAD_MAX_AGE_MIN: files in Gradio's upload folder (uploads never composed, and any
  copy Gradio makes) older than this many minutes are deleted (default 15).
- DIFFBGM_EXPORT_MAX_AGE_H: CSV exports older than this many hours are deleted (default 1).
- DIFFBGM_SWEEP_INTERVAL_S: how often the clean-up runs, in seconds (default 60).
- DIFFBGM_STUDY_MAX_PARTICIPANTS: most participants one study link takes (default 500).
- DIFFBGM_QUEUE_SIZE: most light events (studies, admin) waiting for a worker (default 1024);
  composes never wait there (they have their own queue, see DIFFBGM_COMPOSE_QUEUE).
- DIFFBGM_CLIP: how shots are read: `auto` (default: CLIP ViT-B/32 from the Hugging Face cache,
  or downloaded once where the Hub answers; else picture statistics, with one log line), `off`,
  or a CLIP Hub id (org/name; hf-hub:org/name for open_clip) or folder (diffbgm.video.clip).
- DIFFBGM_DEVICE: where the model runs: `auto` (default: a CUDA GPU when torch sees one, else
  the CPU), `cpu`, `cuda`, `cuda:N`; bf16 where the device computes it natively, else fp32.
- DIFFBGM_SOUNDFONT: the soundfont the music is rendered with: `auto` (default: a full General
  MIDI soundfont when installed, FluidR3_GM of the fluid-soundfont-gm package; else TimGM6mb),
  `timgm6mb`, or a .sf2/.sf3 file (see diffbgm.music.render.find_soundfont).
The library's Composer reads DIFFBGM_CLIP, DIFFBGM_DEVICE and DIFFBGM_SOUNDFONT itself when not
given them, so the
values here are the ones it uses; they are checked at start-up.
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
ADMIN_TOKEN_ENV = "DIFFBGM_ADMIN_TOKEN"
# A shorter token can be guessed; below this length admin actions stay off.
ADMIN_TOKEN_MIN_LENGTH = 16


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


def admin_token_problem(token: str) -> str | None:
    """Why `token` cannot be the admin token (unset or too short), or None when it can.

    Checked at start-up (admin off, with this as the log line) and by every admin action.
    """
    if not token.strip():
        return f"{ADMIN_TOKEN_ENV} is not set: study admin actions are off"
    if len(token.strip()) < ADMIN_TOKEN_MIN_LENGTH:
        return (
            f"{ADMIN_TOKEN_ENV} is shorter than {ADMIN_TOKEN_MIN_LENGTH} characters: study admin "
            "actions are off; set it to a long random secret, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return None


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
    admin_problem: str | None = None
    compose_concurrency: int = 1
    compose_queue: int = 8
    compose_per_client: int = 2
    max_upload_mb: int = 200
    max_video_s: float = 1200.0
    output_max_age_h: float = 24.0
    upload_max_age_min: float = 15.0
    export_max_age_h: float = 1.0
    sweep_interval_s: float = 60.0
    study_max_participants: int = 500
    queue_size: int = 1024
    # Study and admin events running at once (light database work, one thread each).
    study_concurrency: int = 8
    # Admin token guesses: free failures per client, then a lockout doubling from 1 s up to
    # the maximum; and failures from all clients together per minute before everyone waits.
    admin_free_failures: int = 3
    admin_max_lockout_s: float = 300.0
    admin_global_failures_per_min: int = 30
    example_videos: tuple[Path, ...] = ()
    clip: str = "auto"
    device: str = "auto"

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
    def uploads_dir(self) -> Path:
        """Gradio's temporary folder (GRADIO_TEMP_DIR): uploads and any copy Gradio makes.

        Inside the data folder so it is cleaned with the rest (see webapp.janitor).
        """
        return self.data_dir / "uploads"

    @property
    def served_dirs(self) -> list[str]:
        """The only folders the app may serve files from (Gradio's `allowed_paths`)."""
        return [str(self.outputs_dir), str(self.studies_dir), str(self.exports_dir)]

    @property
    def max_threads(self) -> int:
        """Gradio's worker threads (also its slots for running events): every waiting compose
        holds one, so study events always find one free."""
        return self.compose_queue + self.compose_concurrency + 4 * self.study_concurrency

    def gradio_env(self) -> dict[str, str]:
        """Environment Gradio must see before it is imported: its temporary folder (uploads,
        copies) inside the data folder instead of the system temp folder, where nothing would
        ever remove it."""
        return {"GRADIO_TEMP_DIR": str(self.uploads_dir)}

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
        from diffbgm.device import DEVICE_CHOICES, device_setting
        from diffbgm.errors import DiffBGMError
        from diffbgm.video.clip import clip_setting

        try:
            clip = clip_setting(None, env)
        except DiffBGMError as exc:
            raise SettingsError(f"DIFFBGM_CLIP: {exc}") from exc
        device = device_setting(None, env)
        if device not in DEVICE_CHOICES and not device.startswith("cuda:"):
            raise SettingsError(f"DIFFBGM_DEVICE={device!r} is not one of {DEVICE_CHOICES}")
        data_dir = Path(env.get("DIFFBGM_DATA_DIR", "") or "data").resolve()
        examples = tuple(path for path in (SHIPPED_EXAMPLE, SHARED_EXAMPLE) if path.is_file())
        admin_problem = admin_token_problem(env.get(ADMIN_TOKEN_ENV, ""))
        return cls(
            host=env.get("GRADIO_SERVER_NAME", "") or "127.0.0.1",
            port=_int(env, "GRADIO_SERVER_PORT", 7860, low=1),
            model_path=env.get("DIFFBGM_MODEL", "") or str(DEFAULT_MODEL),
            data_dir=data_dir,
            database_url=env.get("DATABASE_URL", "").strip() or None,
            admin_enabled=admin_problem is None,
            admin_problem=admin_problem,
            compose_concurrency=_int(env, "DIFFBGM_COMPOSE_CONCURRENCY", 1, low=1),
            compose_queue=_int(env, "DIFFBGM_COMPOSE_QUEUE", 8, low=1),
            compose_per_client=_int(env, "DIFFBGM_COMPOSE_PER_CLIENT", 2, low=1),
            max_upload_mb=_int(env, "DIFFBGM_MAX_UPLOAD_MB", 200, low=1),
            max_video_s=_float(env, "DIFFBGM_MAX_VIDEO_S", 1200.0),
            output_max_age_h=_float(env, "DIFFBGM_OUTPUT_MAX_AGE_H", 24.0),
            upload_max_age_min=_float(env, "DIFFBGM_UPLOAD_MAX_AGE_MIN", 15.0),
            export_max_age_h=_float(env, "DIFFBGM_EXPORT_MAX_AGE_H", 1.0),
            sweep_interval_s=_float(env, "DIFFBGM_SWEEP_INTERVAL_S", 60.0),
            study_max_participants=_int(env, "DIFFBGM_STUDY_MAX_PARTICIPANTS", 500, low=1),
            queue_size=_int(env, "DIFFBGM_QUEUE_SIZE", 1024, low=1),
            example_videos=examples,
            clip=clip,
            device=device,
        )
