"""Quantile tables that turn raw music controls into the [0, 1] units the model uses.

For each control the table holds its 101 quantiles (0 %, 1 %, ..., 100 %) over POP909
training segments; raw -> quantile and back are piecewise-linear interpolations of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

import numpy as np

from diffbgm.errors import DiffBGMError

N_QUANTILES = 101
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "assets" / "pop909_calibration.json"


class CalibrationError(DiffBGMError):
    """The calibration file is missing, malformed or lacks a control."""


def quantile_levels() -> np.ndarray:
    return np.linspace(0.0, 1.0, N_QUANTILES)


@dataclass(frozen=True)
class Calibration:
    """Per-control quantile tables: tables[name] = (101,) raw values at quantiles 0..1."""

    tables: dict[str, np.ndarray]
    meta: dict[str, object] = field(default_factory=dict)

    @classmethod
    def fit(
        cls, samples: dict[str, np.ndarray], meta: dict[str, object] | None = None
    ) -> Calibration:
        """Quantile tables of each control's samples (NaNs ignored)."""
        tables = {}
        for name, values in samples.items():
            finite = np.asarray(values, dtype=np.float64)
            finite = finite[np.isfinite(finite)]
            if finite.size == 0:
                raise CalibrationError(f"no finite samples for control {name!r}")
            tables[name] = np.quantile(finite, quantile_levels())
        return cls(tables=tables, meta=dict(meta or {}))

    @classmethod
    def load(cls, path: str | Path | None = None) -> Calibration:
        """Read a calibration json (default: the one shipped in diffbgm/assets)."""
        file = Path(path) if path is not None else DEFAULT_PATH
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            tables = {k: np.asarray(v, dtype=np.float64) for k, v in data["quantiles"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CalibrationError(f"cannot read calibration file {file}: {exc}") from exc
        for name, table in tables.items():
            if table.shape != (N_QUANTILES,) or np.any(np.diff(table) < 0):
                raise CalibrationError(f"{file}: table {name!r} is not {N_QUANTILES} sorted values")
        return cls(tables=tables, meta=dict(data.get("meta", {})))

    def save(self, path: str | Path) -> None:
        data = {
            "meta": self.meta,
            "levels": "quantiles 0.00, 0.01, ..., 1.00 of each raw control over POP909 train segments",
            "quantiles": {k: [round(float(x), 6) for x in v] for k, v in self.tables.items()},
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=1), encoding="utf-8")

    def table(self, name: str) -> np.ndarray:
        if name not in self.tables:
            raise CalibrationError(
                f"no calibration for control {name!r}; have {sorted(self.tables)}"
            )
        return self.tables[name]

    @overload
    def to_quantile(self, name: str, raw: float) -> float: ...
    @overload
    def to_quantile(self, name: str, raw: np.ndarray) -> np.ndarray: ...
    def to_quantile(self, name: str, raw: float | np.ndarray) -> float | np.ndarray:
        """Raw value(s) -> quantile in [0, 1]. Runs of equal table values map to their middle."""
        table = self.table(name)
        values, first = np.unique(table, return_index=True)
        last = np.append(first[1:], len(table)) - 1
        middle = (first + last) / 2 / (N_QUANTILES - 1)
        if len(values) == 1:
            result = np.full(np.shape(raw), 0.5)
        else:
            result = np.interp(
                np.asarray(raw, dtype=np.float64), values, middle, left=0.0, right=1.0
            )
        return float(result) if np.ndim(raw) == 0 else result

    @overload
    def to_raw(self, name: str, quantile: float) -> float: ...
    @overload
    def to_raw(self, name: str, quantile: np.ndarray) -> np.ndarray: ...
    def to_raw(self, name: str, quantile: float | np.ndarray) -> float | np.ndarray:
        """Quantile(s) in [0, 1] -> raw value(s)."""
        q = np.clip(np.asarray(quantile, dtype=np.float64), 0.0, 1.0)
        result = np.interp(q, quantile_levels(), self.table(name))
        return float(result) if np.ndim(quantile) == 0 else result
