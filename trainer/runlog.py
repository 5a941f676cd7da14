"""The training log of a run: a CSV file (always) and TensorBoard (only if it is installed).

Only rank 0 of a distributed run writes a log; other ranks never construct one.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path
from typing import Any

LOG_COLUMNS: tuple[str, ...] = (
    "step",
    "loss",
    "val_loss",
    "val_loss_ema",
    "lr",
    "sec_per_step",
    # the adversarial term's critic and student (trainer/adversarial.py); empty without it
    "critic_loss",
    "critic_accuracy",
    "adversarial_loss",
    "adversarial_scale",
)


def _keep_rows_up_to(path: Path, last_step: int) -> None:
    """Drop rows logged after `last_step`: a run killed between checkpoints logged steps that
    the resumed run will do again, and the log must not show them twice."""
    with path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= last_step]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(LOG_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)


def read_log(path: Path) -> list[dict[str, float]]:
    """Rows of a run's log.csv as floats (NaN where a column was empty, e.g. no validation)."""
    with path.open(newline="") as handle:
        return [
            {key: float(value) if value != "" else math.nan for key, value in row.items()}
            for row in csv.DictReader(handle)
        ]


class RunLog:
    """Appends one row per logged step to RUN/log.csv and mirrors it to TensorBoard if present."""

    def __init__(self, run_dir: Path, resumed_step: int) -> None:
        self.path = run_dir / "log.csv"
        if self.path.exists() and resumed_step > 0:
            _keep_rows_up_to(self.path, resumed_step)
        else:
            with self.path.open("w", newline="") as handle:
                csv.DictWriter(handle, fieldnames=list(LOG_COLUMNS)).writeheader()
        self._tensorboard: Any = None
        if importlib.util.find_spec("torch.utils.tensorboard") and importlib.util.find_spec(
            "tensorboard"
        ):
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def write(self, step: int, values: dict[str, float | None]) -> None:
        """Log `values` (a subset of LOG_COLUMNS; missing or None -> empty cell) at `step`."""
        row: dict[str, Any] = {column: "" for column in LOG_COLUMNS}
        row["step"] = step
        for key, value in values.items():
            if key not in LOG_COLUMNS:
                raise KeyError(f"unknown log column {key!r}; known: {', '.join(LOG_COLUMNS)}")
            if value is not None:
                row[key] = f"{value:.6g}"
                if self._tensorboard is not None:
                    self._tensorboard.add_scalar(key, value, step)
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=list(LOG_COLUMNS)).writerow(row)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
