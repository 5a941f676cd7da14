"""A run's learning curve: losses from log.csv and, with --metrics, music metrics of the EMA
snapshots the trainer kept (`--snapshot-every`), all against optimizer steps.

    python benchmarks/learning_curve.py runs/small docs/eval/learning_curve.png
    python benchmarks/learning_curve.py runs/sel05 docs/eval/learning_curve_sel05.png \\
        --metrics --songs 801-803 --bars 16 --json docs/eval/learning_curve_sel05.json

Steps are counted from the first training step of the model's whole history: a run started
with --init-from adds the train_step of the checkpoint it started from. Each snapshot is
evaluated with `trainer.evaluate.run_evaluation` on the same songs and seeds, so the points
differ only in the weights.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from diffbgm.generation import GenerationConfig
from diffbgm.metrics import current_metric_name
from trainer.evaluate import EvalOptions

METRICS = ("pche", "gps", "si_bar_short", "chord_tone_ratio", "onsets_per_bar")
CONTROLS = ("density_obedience", "register_obedience", "boundary_audibility")


def _current_key(key: str) -> str:
    """A saved row's key under the metric's current name ("real_si_short" too)."""
    prefix = "real_" if key.startswith("real_") else ""
    return prefix + current_metric_name(key.removeprefix("real_"))


def read_log(run: Path) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {"loss": [], "val_loss": [], "val_loss_ema": []}
    with (run / "log.csv").open() as handle:
        for row in csv.DictReader(handle):
            for key, points in series.items():
                if row.get(key):
                    points.append((int(row["step"]), float(row[key])))
    return series


def step_offset(run: Path) -> int:
    """Steps the run's starting weights had already been trained (0 for a cold start)."""
    from diffbgm.checkpoint import read_config
    from trainer.run_state import find_run_state, load_run_state

    folder = find_run_state(run)
    if folder is None:
        return 0
    init_from = load_run_state(folder).train_config.get("init_from")
    if not init_from:
        return 0
    _, extra = read_config(Path(init_from))
    return int(extra.get("train_step") or 0)


def snapshot_metrics(options: EvalOptions) -> dict[str, Any]:
    """Metrics of one snapshot, with the real songs' values for reference."""
    import torch

    from trainer.evaluate import run_evaluation

    torch.set_num_threads(1)
    report = run_evaluation(options).data
    gen, real = report["summary"]["generated"], report["summary"]["real"]
    row: dict[str, Any] = {"snapshot": options.model}
    for name in METRICS:
        row[name] = gen[name]["mean"]
        row[f"real_{name}"] = real[name]["mean"]
    for name in CONTROLS:
        row[name] = report["control"]["generated"].get(name)
        row[f"real_{name}"] = report["control"]["real"].get(name)
    return row


def evaluate_snapshots(run: Path, args: argparse.Namespace, offset: int) -> list[dict[str, Any]]:
    from trainer.__main__ import parse_song_range
    from trainer.workers import worker_pool

    songs = parse_song_range(args.songs)
    points: list[tuple[int, Path]] = [
        (offset + int(folder.name.split("_")[-1]), folder)
        for folder in sorted((run / "snapshots").glob("step_*"))
    ]
    for spec in args.checkpoint or []:
        path, _, step = spec.rpartition(":")
        points.append((int(step), Path(path)))
    points.sort()
    # the same generation settings for every point, so only the weights differ
    base = EvalOptions(
        model="",
        generation=GenerationConfig(
            sampler="dpm",
            steps=args.sampler_steps,
            guidance=args.guidance,
            onset_threshold=args.onset_threshold,
            sustain_threshold=args.sustain_threshold,
        ),
        data=args.data,
        songs=tuple(songs),
        bars=args.bars,
    )
    with worker_pool(args.workers) as pool:
        futures = [
            pool.submit(snapshot_metrics, replace(base, model=str(folder))) for _, folder in points
        ]
        rows = [future.result() for future in futures]
    for (step, _), row in zip(points, rows, strict=True):
        row["step"] = step
    return rows


def plot(
    out: Path,
    series: dict[str, list[tuple[int, float]]],
    offset: int,
    rows: list[dict[str, Any]],
    title: str,
    parents: list[tuple[dict[str, list[tuple[int, float]]], int]] | None = None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if rows else 1
    fig, axes = plt.subplots(panels, 1, figsize=(7, 3.2 * panels), dpi=100, sharex=True)
    axes = list(axes) if panels > 1 else [axes]
    for key, style in (("loss", "-"), ("val_loss", "o-"), ("val_loss_ema", "s-")):
        if series[key]:
            steps, values = zip(*series[key], strict=True)
            axes[0].plot([s + offset for s in steps], values, style, label=key, markersize=3, lw=1)
    for n, (parent, shift) in enumerate(parents or []):
        for key, style in (("loss", ":"), ("val_loss_ema", "s:")):
            if parent[key]:
                steps, values = zip(*parent[key], strict=True)
                shifted = [s + shift for s in steps]
                axes[0].plot(
                    shifted, values, style, label=f"{key} (run {n + 1})", markersize=3, lw=1
                )
    if offset:
        axes[0].axvline(offset, color="grey", lw=0.6)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("v-prediction MSE")
    axes[0].set_title(title)
    if rows:
        snapshot_steps = [row["step"] for row in rows]
        for name in ("pche", "gps", "si_bar_short", "chord_tone_ratio"):
            rel = [_relative(row[name], row[f"real_{name}"]) for row in rows]
            axes[1].plot(snapshot_steps, rel, "o-", label=name, markersize=3, lw=1)
        axes[1].axhline(0.0, color="k", lw=0.6)
        axes[1].set_ylabel("generated / real − 1 (%)")
        for name in CONTROLS:
            axes[2].plot(
                snapshot_steps, [row[name] for row in rows], "o-", label=name, markersize=3, lw=1
            )
        axes[2].set_ylabel("control obedience")
        axes[2].set_ylim(-1.0, 1.0)
    axes[-1].set_xlabel("optimizer step (batch 24 windows of 4 bars)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)


def _relative(value: float | None, real: float | None) -> float:
    if value is None or real is None or not real or math.isnan(value):
        return math.nan
    return 100.0 * (value / real - 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--metrics", action="store_true", help="evaluate RUN/snapshots/*")
    parser.add_argument(
        "--checkpoint",
        action="append",
        metavar="PATH:STEP",
        help="also evaluate this checkpoint as the point at STEP (e.g. the one the run began at)",
    )
    parser.add_argument(
        "--parent",
        action="append",
        metavar="RUN[:OFFSET]",
        help="an earlier run of the model's history (its losses, shifted by OFFSET steps)",
    )
    parser.add_argument(
        "--offset", type=int, default=None, help="steps before RUN (default: from --init-from)"
    )
    parser.add_argument(
        "--rows",
        type=Path,
        action="append",
        help="metric rows saved by an earlier --json (absolute steps), drawn with the new ones",
    )
    parser.add_argument("--songs", default="801-803", help="validation songs, e.g. 801-803")
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--sampler-steps", type=int, default=20, help="DPM-Solver++ steps")
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--onset-threshold", type=float, default=0.5)
    parser.add_argument("--sustain-threshold", type=float, default=0.4)
    parser.add_argument("--data", default="data_cache/pop909", help="POP909 cache folder")
    parser.add_argument("--workers", type=int, default=2, help="one-thread worker processes")
    parser.add_argument("--json", type=Path, default=None, help="write the metric rows here")
    args = parser.parse_args()

    offset = step_offset(args.run) if args.offset is None else args.offset
    series = read_log(args.run)
    rows = evaluate_snapshots(args.run, args, offset) if args.metrics else []
    # rows saved before the per-bar SI was renamed say "si_short": read them under the new name
    saved = [
        {_current_key(key): value for key, value in row.items()}
        for path in args.rows or []
        for row in json.loads(path.read_text())["rows"]
    ]
    parents = []
    for spec in args.parent or []:
        run, _, shift = spec.partition(":")
        parents.append((read_log(Path(run)), int(shift or 0)))
    title = f"learning curve: {args.run} (from step {offset})"
    plot(args.out, series, offset, sorted(saved + rows, key=lambda r: r["step"]), title, parents)
    for key, points in series.items():
        if points:
            print(
                f"{key}: first {points[0]}, last {points[-1]}, min {min(p[1] for p in points):.5f}"
            )
    if rows:
        print("step  " + "  ".join(f"{m:>10}" for m in METRICS + CONTROLS))
        for row in rows:
            cells = "  ".join(f"{_num(row[m]):>10}" for m in METRICS + CONTROLS)
            print(f"{row['step']:>5} {cells}")
        real = rows[-1]
        print("real  " + "  ".join(f"{_num(real[f'real_{m}']):>10}" for m in METRICS + CONTROLS))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"offset": offset, "rows": rows}, indent=1))


def _num(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"


if __name__ == "__main__":
    main()
