"""Plot a run's learning curve (training loss, validation loss of raw and EMA weights).

python benchmarks/learning_curve.py runs/small docs/learning_curve.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_log(run: Path) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {"loss": [], "val_loss": [], "val_loss_ema": []}
    with (run / "log.csv").open() as handle:
        for row in csv.DictReader(handle):
            for key, points in series.items():
                if row.get(key):
                    points.append((int(row["step"]), float(row[key])))
    return series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_log(args.run)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, style in (("loss", "-"), ("val_loss", "o-"), ("val_loss_ema", "s-")):
        if series[key]:
            steps, values = zip(*series[key], strict=True)
            ax.plot(steps, values, style, label=key, markersize=3, linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step (batch 24 windows of 4 bars)")
    ax.set_ylabel("v-prediction MSE")
    ax.set_title(f"learning curve: {args.run}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out)
    for key, points in series.items():
        if points:
            print(
                f"{key}: first {points[0]}, last {points[-1]}, min {min(p[1] for p in points):.5f}"
            )


if __name__ == "__main__":
    main()
