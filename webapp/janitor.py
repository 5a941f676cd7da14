"""The app's clean-up: what is kept, and for how long, enforced in one place.

- result folders (`outputs/req-*`): `output_max_age_h` after they were written;
- work folders of killed runs (a `req-*` folder still marked in progress by a dead process):
  at start-up and on every sweep;
- Gradio's upload folder (`uploads/`: uploads nobody composed, and any copy Gradio makes of
  a file it serves): `upload_max_age_min` after the last use;
- CSV exports (`exports/`): `export_max_age_h`, and each new export of a study replaces the
  previous one;
- study media (`studies/`) and the ratings database stay until a person deletes them.

A daemon thread sweeps every `sweep_interval_s` (composes do not sweep: no scan of the outputs
folder on the compose path).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from diffbgm.result import sweep_stale_work
from webapp import media
from webapp.settings import AppSettings

log = logging.getLogger("diffbgm.webapp")

# At start-up an unmarked, unfinished request folder this old is a leftover, not a compose
# another process on the same data folder is just starting.
START_GRACE_S = 60.0


@dataclass(frozen=True)
class Swept:
    """What one sweep removed."""

    results: int
    work_dirs: int
    upload_files: int
    export_files: int

    @property
    def total(self) -> int:
        return self.results + self.work_dirs + self.upload_files + self.export_files


class Janitor:
    """Runs `sweep` now and then in a daemon thread (start/stop), or once on demand."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self, grace_s: float = media.UNMARKED_GRACE_S) -> Swept:
        """Remove everything past its time (see the module docstring); log what went."""
        s = self.settings
        swept = Swept(
            results=len(media.cleanup_old_outputs(s.outputs_dir, s.output_max_age_h * 3600)),
            work_dirs=len(media.sweep_stale_work_dirs(s.outputs_dir, grace_s=grace_s))
            # the library's own work folders (.diffbgm-<pid>-…) of processes that are gone
            + len(sweep_stale_work(s.outputs_dir)),
            upload_files=media.sweep_old_files(s.uploads_dir, s.upload_max_age_min * 60),
            export_files=media.sweep_old_files(s.exports_dir, s.export_max_age_h * 3600),
        )
        if swept.total:
            log.info(
                "clean-up removed %d result(s), %d work folder(s) of killed runs, "
                "%d upload file(s), %d export file(s)",
                swept.results,
                swept.work_dirs,
                swept.upload_files,
                swept.export_files,
            )
        return swept

    def sweep_at_start(self) -> Swept:
        """The first sweep, before the app serves: work folders of killed runs go at once."""
        return self.sweep(grace_s=START_GRACE_S)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.sweep_interval_s):
            try:
                self.sweep()
            except Exception:  # keep sweeping next time; a clean-up bug must not stop the app
                log.exception("clean-up failed")

    def start(self) -> None:
        """Sweep every `sweep_interval_s` seconds until `stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="janitor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
