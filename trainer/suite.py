"""The evaluation suite of a checkpoint: the full model, its ablations and sampler steps.

One command runs every configuration on the same validation songs and seeds, so the rows
of the resulting table differ only in what each row switches:

    python -m trainer suite --model checkpoints/diffbgm-small --songs 801-806 --bars 32

Configurations run in parallel worker processes (one torch thread each: on 2 cores two
single-threaded workers beat one two-threaded one).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from diffbgm.generation.config import KnobValue
from diffbgm.metrics import metric_from
from trainer.evaluate import EvalOptions, run_evaluation
from trainer.workers import worker_pool

# The paper's SI is MusDr's (audio, 3-8 s); the per-bar symbolic SI is another number.
PAPER = {"pche": 2.840, "gps": 0.601, "si_musdr_short": 0.521}
COLUMNS = (
    "pche",
    "gps",
    "si_bar_short",
    "si_bar_mid",
    "si_musdr_short",
    "si_musdr_mid",
    "si_musdr_long",
    "chord_tone_ratio",
    "in_key_ratio",
    "onsets_per_bar",
    "polyphony",
)


@dataclass(frozen=True)
class SuiteRow:
    name: str
    options: EvalOptions


def _changed(base: EvalOptions, **knobs: KnobValue) -> EvalOptions:
    """The options with some generation knobs changed."""
    return replace(base, generation=base.generation.with_overrides(**knobs))


def default_rows(
    base: EvalOptions,
    steps_songs: tuple[int, ...],
    steps_bars: int,
    guidance_range: tuple[float, float] | None = None,
) -> list[SuiteRow]:
    """Full model, ablations, guidance scales; then sampler steps on a smaller song set.

    guidance_range: the scales a guidance-distilled model learned; others are left out."""
    gen = base.generation
    rows = [
        SuiteRow("full", base),
        SuiteRow("no SAC mask", replace(base, ablation="no-sac")),
        SuiteRow("no feature selector", replace(base, ablation="no-selector")),
        SuiteRow("no guidance (scale 1)", replace(base, ablation="no-guidance")),
    ]
    if gen.density_slack > 0:
        rows.append(SuiteRow("fixed onset threshold", _changed(base, density_slack=0.0)))
    else:
        rows.append(SuiteRow("density-matched decoding", _changed(base, density_slack=0.2)))
    if gen.edge_bars > 0 and gen.density_slack > 0:
        rows.append(SuiteRow("segment edges not matched alone", _changed(base, edge_bars=0)))
    if gen.groove > 0:
        rows.append(SuiteRow("no groove-consistent decoding", _changed(base, groove=0.0)))
    if gen.recall > 0:
        rows.append(SuiteRow("no phrase recall", _changed(base, recall=0.0)))
    rows += [
        SuiteRow(f"guidance {g:g}", _changed(base, guidance=g))
        for g in (1.5, 2.0, 3.0, 5.0)
        if g != gen.guidance
        and (guidance_range is None or guidance_range[0] <= g <= guidance_range[1])
    ]
    small = replace(base, songs=steps_songs, bars=steps_bars)
    rows += [SuiteRow(f"ddim {n} steps", _changed(small, steps=n)) for n in (10, 25, 50, 200, 1000)]
    rows += [
        SuiteRow(f"dpm {n} steps", _changed(small, steps=n, sampler="dpm")) for n in (10, 15, 25)
    ]
    return rows


def _run(row: SuiteRow) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    report = run_evaluation(row.options)
    return {"name": row.name, "options": row.options, "data": report.data}


def _cell(summary: dict[str, Any], key: str) -> str:
    entry: dict[str, Any] | None
    try:  # reports written before the per-bar SI was renamed use its old name
        entry = metric_from(summary, key)  # type: ignore[assignment]
    except KeyError:
        entry = None
    if not entry or entry.get("mean") is None or math.isnan(entry["mean"]):
        return "–"
    return f"{entry['mean']:.3f}"


def suite_table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per configuration, then the real songs of each song set."""
    head = "| configuration | songs × bars | " + " | ".join(COLUMNS)
    head += " | density Spearman | register Spearman | boundaries audible | audible where asked"
    head += " | realism (logistic, notes / with velocities) | seconds |\n"
    head += "|---" * (len(COLUMNS) + 8) + "|\n"
    lines = []
    reals: dict[str, dict[str, Any]] = {}
    for result in results:
        data, options = result["data"], result["options"]
        shape = f"{len(data['songs'])} × {options.bars}"
        generated = data["summary"]["generated"]
        control = data["control"]["generated"]
        cells = [_cell(generated, c) for c in COLUMNS]
        dens = control.get("density_obedience")
        reg = control.get("register_obedience")
        aud = control.get("boundary_audibility")
        asked = control.get("boundary_audibility_asked")
        lines.append(
            f"| {result['name']} | {shape} | "
            + " | ".join(cells)
            + f" | {_fmt(dens)} | {_fmt(reg)} | {_fmt(aud)} | {_fmt(asked)}"
            + f" | {_realism_cell(data.get('realism', {}))} | {data['seconds']:.0f} |"
        )
        reals.setdefault(
            shape,
            {
                "summary": data["summary"]["real"],
                "control": data["control"]["real"],
                "realism": data.get("realism", {}),
            },
        )
    for shape, real in reals.items():
        cells = [_cell(real["summary"], c) for c in COLUMNS]
        lines.append(
            f"| real POP909 (same songs) | {shape} | "
            + " | ".join(cells)
            + f" | {_fmt(real['control'].get('density_obedience'))} | "
            f"{_fmt(real['control'].get('register_obedience'))} | "
            f"{_fmt(real['control'].get('boundary_audibility'))} | "
            f"{_fmt(real['control'].get('boundary_audibility_asked'))} | "
            f"{_realism_cell(real.get('realism', {}), 'real vs real (floor)')} | – |"
        )
    paper = [f"{PAPER[c]:.3f}" if c in PAPER else "–" for c in COLUMNS]
    lines.append(
        "| Diff-BGM paper (BGM909) | – | " + " | ".join(paper) + " | – | – | – | – | – | – |"
    )
    return head + "\n".join(lines) + "\n"


def _realism_cell(realism: dict[str, Any], comparison: str = "generated vs real") -> str:
    """Logistic accuracy on notes alone / with velocities ('–' where not measured)."""
    cells = []
    for variant in ("notes only", "with velocities"):
        result = realism.get(variant, {}).get(comparison, {}).get("logistic")
        cells.append(_fmt(result["accuracy"]) if result else "–")
    return " / ".join(cells)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.3f}"


def run_suite(rows: list[SuiteRow], workers: int = 2, out_json: Path | None = None) -> str:
    with worker_pool(workers) as pool:
        results = list(pool.map(_run, rows))
    if out_json is not None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        serialisable = [
            {
                "name": r["name"],
                "summary": r["data"]["summary"],
                "control": r["data"]["control"],
                "realism": r["data"].get("realism", {}),
                "options": r["data"]["options"],
                "seconds": r["data"]["seconds"],
            }
            for r in results
        ]
        out_json.write_text(json.dumps(serialisable, indent=1, default=str))
    return suite_table(results)
