"""Seconds of the pipeline's sheet-music step (outputs.write_sheet: MusicXML + verovio SVG) for
a composed video, and for the same sheet repeated to a long video's length.

    python benchmarks/sheet_stage.py                          # the 30 s clip, 10 minutes tiled
    python benchmarks/sheet_stage.py --video V --minutes 5 --checkpoint checkpoints/diffbgm-tiny
    PYTHONPATH=<old checkout> python benchmarks/sheet_stage.py   # the same for older code

The video is composed once (seed 1, the shipped defaults); the sheet step is timed as the
pipeline ran it (cold: the first sheet of the process, imports included) and again warm (best
of --repeat). Then the clip's parts, chords and marks are repeated end to end to --minutes of
music and written and engraved again (MusicXML and SVG timed apart), which is what a long
video's sheet costs without composing one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "videos" / "big_buck_bunny_0_30.webm"


def best_of(repeat: int, run: Any) -> float:
    best = float("inf")
    for _ in range(max(repeat, 1)):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=CLIP)
    parser.add_argument("--checkpoint", type=Path, default=REPO / "checkpoints" / "diffbgm-small")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.video.exists():
        print(f"video not found: {args.video}")
        return 1

    from diffbgm import outputs
    from diffbgm.music import sheet
    from diffbgm.pipeline import ComposeOptions, Composer

    seen: dict[str, Any] = {}
    write_sheet = outputs.write_sheet

    def timed(*call: Any, **kwargs: Any) -> tuple[Path, Path]:
        start = time.perf_counter()
        written = write_sheet(*call, **kwargs)
        seen["cold_s"] = time.perf_counter() - start
        seen["score"], seen["plan"] = call[0], call[1]
        seen["title"] = kwargs.get("title", call[3] if len(call) > 3 else "")
        return written

    outputs.write_sheet = timed  # type: ignore[assignment]
    composer = Composer.from_pretrained(args.checkpoint, threads=1)
    with tempfile.TemporaryDirectory(prefix="diffbgm-bench-sheet-stage-") as tmp:
        folder = Path(tmp)
        composer(args.video, folder / "result", ComposeOptions(seed=1))
        outputs.write_sheet = write_sheet  # type: ignore[assignment]
        score, plan, title = seen["score"], seen["plan"], seen["title"]
        warm_s = best_of(args.repeat, lambda: write_sheet(score, plan, folder, title))
        parts, header = sheet.sheet_from_midi(score, plan, title)
        notes = sum(len(p.notes) for p in parts)
        print(
            f"clip {args.video.name}: {plan.n_bars} bars, {len(parts)} parts, {notes} notes; "
            f"sheet step (MusicXML + SVG) cold {seen['cold_s']:.3f} s, warm {warm_s:.3f} s",
            flush=True,
        )
        copies = max(1, round(args.minutes * 60 / plan.duration_s))
        long_parts, long_header = tiled(parts, header, copies)
        path = folder / "long.musicxml"
        xml_s = best_of(1, lambda: sheet.write_musicxml(long_parts, long_header, path))
        svg_s = best_of(1, lambda: sheet.render_svg(path, folder / "long.svg"))
        print(
            f"{copies} copies ({copies * plan.duration_s / 60:.1f} min, {long_header.n_bars} bars, "
            f"{sum(len(p.notes) for p in long_parts)} notes): MusicXML {xml_s:.3f} s, "
            f"SVG {svg_s:.3f} s"
        )
    return 0


def tiled(parts: list[Any], header: Any, copies: int) -> tuple[list[Any], Any]:
    """The parts and header repeated `copies` times end to end (whole bars)."""
    from dataclasses import replace

    bar = header.bar_steps
    last = max(int(p.notes[:, 1].max()) for p in parts)
    n_bars = max(header.n_bars, -(-last // bar))
    period = n_bars * bar
    shift = np.array([1, 1, 0])
    long_parts = [
        replace(p, notes=np.concatenate([p.notes + k * period * shift for k in range(copies)]))
        for p in parts
    ]
    long_header = replace(
        header,
        chords=[(s + k * period, c) for k in range(copies) for s, c in header.chords],
        marks=[(s + k * period, m) for k in range(copies) for s, m in header.marks],
        n_bars=n_bars * copies,
    )
    return long_parts, long_header


if __name__ == "__main__":
    sys.exit(main())
