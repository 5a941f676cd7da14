"""Diff-BGM web app: `python app.py` locally, also the Hugging Face Space entry point.

Settings come from the environment (see webapp/settings.py): GRADIO_SERVER_NAME (default
127.0.0.1; Docker and Spaces set 0.0.0.0), GRADIO_SERVER_PORT (7860), DIFFBGM_MODEL,
DIFFBGM_DATA_DIR, DATABASE_URL, DIFFBGM_ADMIN_TOKEN, DIFFBGM_COMPOSE_CONCURRENCY,
DIFFBGM_MAX_UPLOAD_MB, DIFFBGM_OUTPUT_MAX_AGE_H. The ratings store is migrated at start-up;
the model loads in a background self-test compose of a synthetic 2 s clip, and
`GET /healthz` reports the model, FluidSynth, ffmpeg, the database and that self-test
(200 only when all are ok; webapp/health.py).
"""

from __future__ import annotations

import logging
import os

# Offline by default: no usage analytics calls home (Gradio reads this at import time).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from webapp.handlers import Handlers
from webapp.health import app_health
from webapp.settings import AppSettings
from webapp.ui import build_app, launch_options


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = AppSettings.from_env()
    log = logging.getLogger("diffbgm.webapp")
    log.info("data folder %s, model %s", settings.data_dir, settings.model_path)
    if not settings.admin_enabled:
        log.warning("DIFFBGM_ADMIN_TOKEN is not set: study admin actions are off")
    handlers = Handlers.create(settings)
    demo = build_app(settings, handlers)
    health = app_health(settings, handlers)
    # A tiny compose in the background: /healthz says "starting" until it has passed.
    health.self_test.start()
    demo.launch(**launch_options(settings, health))


if __name__ == "__main__":
    main()
