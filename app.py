"""Diff-BGM web app: `python app.py` locally, also the Hugging Face Space entry point.

Settings come from the environment (see webapp/settings.py): GRADIO_SERVER_NAME (default
127.0.0.1; Docker and Spaces set 0.0.0.0), GRADIO_SERVER_PORT (7860), DIFFBGM_MODEL,
DIFFBGM_DATA_DIR, DATABASE_URL, DIFFBGM_ADMIN_TOKEN, DIFFBGM_COMPOSE_CONCURRENCY,
DIFFBGM_COMPOSE_QUEUE, DIFFBGM_COMPOSE_PER_CLIENT, DIFFBGM_MAX_UPLOAD_MB,
DIFFBGM_OUTPUT_MAX_AGE_H, DIFFBGM_UPLOAD_MAX_AGE_MIN, ... The ratings store is migrated at
start-up; the model loads in a background self-test compose of a synthetic 2 s clip, and
`GET /healthz` reports the model, FluidSynth, ffmpeg, the database and that self-test (200 only
when all are ok; webapp/health.py). Gradio's temporary folder is put inside the data folder
before Gradio is imported, and a clean-up thread keeps every folder within its retention time
(webapp/janitor.py).
"""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType

# Offline by default: no usage analytics calls home (Gradio reads this at import time).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from webapp.settings import AppSettings  # noqa: E402 - imports no Gradio


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (docker stop, systemd) ends the app like Ctrl-C, so the clean-up below runs."""
    raise KeyboardInterrupt


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = AppSettings.from_env()
    log = logging.getLogger("diffbgm.webapp")
    given = os.environ.get("GRADIO_TEMP_DIR")
    if given and given != str(settings.uploads_dir):
        log.info("GRADIO_TEMP_DIR=%s is replaced by %s", given, settings.uploads_dir)
    # Before Gradio is imported: some of its modules read the folder at import time.
    os.environ.update(settings.gradio_env())

    from webapp.handlers import Handlers
    from webapp.health import app_health
    from webapp.janitor import Janitor
    from webapp.ui import build_app, launch_options

    log.info("data folder %s, model %s", settings.data_dir, settings.model_path)
    if settings.admin_problem:
        log.warning("%s", settings.admin_problem)
    janitor = Janitor(settings)
    janitor.sweep_at_start()
    handlers = Handlers.create(settings)
    demo = build_app(settings, handlers)
    health = app_health(settings, handlers)
    # A tiny compose in the background: /healthz says "starting" until it has passed, and
    # the model is loaded (warm) before the first user's compose.
    health.self_test.start()
    janitor.start()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        demo.launch(**launch_options(settings, health))
    finally:
        janitor.stop()
        removed = handlers.in_flight.remove_all()
        if removed:
            log.info("removed the work folders of %d unfinished request(s)", len(removed))


if __name__ == "__main__":
    main()
