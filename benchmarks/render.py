"""The audio stage: today's renderer against the stems renderer, per stage, and the stems' residual.

    python benchmarks/render.py                 # 30 s of POP909 song 001, 3 repeats each
    python benchmarks/render.py --song 002 --seconds 60 --repeats 5 --baseline-ref main

Cases (median seconds of --repeats rounds, each round running every case once in turn, one
process, files in a temporary folder; a stage's median and the total's come from different
rounds, so they need not add up):
- today: `render_wav` + `trim_or_pad` as they were at --baseline-ref (read from git, so the
  comparison is with the code that shipped, not a re-creation): TimGM6mb, -16 LUFS, sample peak;
- solo piano, full GM / TimGM6mb: `render_stems` on the same one-instrument score;
- solo-piano preset (2 stems): the same notes as the preset writes them, melody and
  accompaniment as two piano parts (the app's default since the arrangements);
- parts: the song's MELODY, BRIDGE and PIANO tracks as three instruments (melody on a
  flute, bridge on strings, piano) plus a simple drum part, so four stems and their mix;
  the residual (mix - sum of stems, RMS relative to the mix) is printed in dB.
Without POP909 (../shared/data/pop909) a seeded random piece stands in and says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pretty_midi

REPO = Path(__file__).resolve().parents[1]
POP909 = REPO.parent / "shared" / "data" / "pop909"
# program and stem name of each POP909 track in the parts case
PARTS = {"MELODY": ("melody", 73), "BRIDGE": ("bridge", 48), "PIANO": ("piano", 0)}


def baseline_renderer(ref: str, folder: Path) -> ModuleType:
    """diffbgm/music/render.py as it was at git `ref`, loaded as a module of its own, with
    the loudness meter of the same ref where it had one (the meter's API changed with the
    block-resolution level)."""
    source = git_show(ref, "diffbgm/music/render.py")
    try:
        meter = git_show(ref, "diffbgm/music/loudness.py")
    except subprocess.CalledProcessError:
        meter = None
    if meter is not None:
        load_module("loudness_baseline", meter, folder)
        source = source.replace(
            "from diffbgm.music.loudness import", "from loudness_baseline import"
        )
    return load_module("render_baseline", source, folder)


def git_show(ref: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "show", f"{ref}:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def load_module(name: str, source: str, folder: Path) -> ModuleType:
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def song_parts(song: str, seconds: float) -> tuple[pretty_midi.PrettyMIDI, str]:
    """The first `seconds` of a POP909 song as named instruments, plus a drum part."""
    midi_path = POP909 / song / f"{song}.mid"
    pm = pretty_midi.PrettyMIDI(initial_tempo=100.0)
    if midi_path.exists():
        source = pretty_midi.PrettyMIDI(str(midi_path))
        start = min(n.start for inst in source.instruments for n in inst.notes)
        for inst in source.instruments:
            name, program = PARTS.get(inst.name.strip().upper(), (inst.name.lower(), 0))
            part = pretty_midi.Instrument(program=program, name=name)
            for n in inst.notes:
                end = min(n.end - start, seconds)
                # a note shorter than a MIDI tick is written note-off first and never ends
                if n.start - start < seconds and end - (n.start - start) > 0.02:
                    part.notes.append(pretty_midi.Note(n.velocity, n.pitch, n.start - start, end))
            pm.instruments.append(part)
        described = f"POP909 {song}, first {seconds:g} s"
    else:
        rng = np.random.default_rng(0)
        for name, program in (("melody", 73), ("piano", 0)):
            part = pretty_midi.Instrument(program=program, name=name)
            t = 0.0
            while t < seconds:
                step = 0.15 * int(rng.integers(1, 4))
                pitch = int(rng.integers(60, 84) if name == "melody" else rng.integers(40, 72))
                part.notes.append(pretty_midi.Note(80, pitch, t, min(t + 2 * step, seconds)))
                t += step
            pm.instruments.append(part)
        described = f"a seeded random piece of {seconds:g} s (POP909 not found at {POP909})"
    drums = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
    for beat in np.arange(0.0, seconds, 0.6):
        drums.notes.append(pretty_midi.Note(90, 36 if beat % 1.2 < 0.3 else 42, beat, beat + 0.1))
    pm.instruments.append(drums)
    return pm, described


def two_piano_parts(parts: pretty_midi.PrettyMIDI) -> pretty_midi.PrettyMIDI:
    """The shape of the solo-piano preset's score: melody and accompaniment as two piano
    parts (two stems, two FluidSynth runs), here the song's MELODY against the rest."""
    score = pretty_midi.PrettyMIDI(initial_tempo=100.0)
    pitched = [inst for inst in parts.instruments if not inst.is_drum]
    melody = pretty_midi.Instrument(program=0, name="melody")
    melody.notes = [n for inst in pitched if inst.name == "melody" for n in inst.notes]
    rest = pretty_midi.Instrument(program=0, name="accompaniment")
    rest.notes = [n for inst in pitched if inst.name != "melody" for n in inst.notes]
    score.instruments = [melody, rest]
    return score


def solo_piano(parts: pretty_midi.PrettyMIDI) -> pretty_midi.PrettyMIDI:
    """Every pitched note of `parts` on one piano: today's single-part score."""
    solo = pretty_midi.PrettyMIDI(initial_tempo=100.0)
    piano = pretty_midi.Instrument(program=0, name="piano")
    piano.notes = [n for inst in parts.instruments if not inst.is_drum for n in inst.notes]
    solo.instruments.append(piano)
    return solo


def interleaved_medians(
    cases: list[tuple[str, Callable[[], dict[str, float]]]], repeats: int
) -> dict[str, dict[str, float]]:
    """Median of each case's stage seconds over `repeats` rounds; every round runs every case
    once, in turn, so a busy moment of a shared machine falls on all cases alike."""
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, _ in cases}
    for _ in range(repeats):
        for label, fn in cases:
            start = time.perf_counter()
            stages = fn()
            stages["total"] = time.perf_counter() - start
            runs[label].append(stages)
    return {
        label: {k: round(statistics.median(r[k] for r in rs), 3) for k in rs[0]}
        for label, rs in runs.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--song", default="001")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-ref", default="35d7eab", help="git ref of today's renderer")
    args = parser.parse_args(argv)

    from diffbgm.music import render

    parts, described = song_parts(args.song, args.seconds)
    solo = solo_piano(parts)
    full_font = render.find_soundfont("auto")
    small_font = render.default_soundfont()
    print(f"score: {described}; full soundfont: {full_font}")
    with tempfile.TemporaryDirectory(prefix="diffbgm-bench-render-") as tmp:
        folder = Path(tmp)
        old = baseline_renderer(args.baseline_ref, folder)
        solo_path = folder / "solo.mid"
        solo.write(str(solo_path))

        def today() -> dict[str, float]:
            start = time.perf_counter()
            old.render_wav(solo_path, folder / "today.wav")
            rendered = time.perf_counter() - start
            old.trim_or_pad(folder / "today.wav", args.seconds)
            return {"render_wav": rendered}

        def stems_case(midi: pretty_midi.PrettyMIDI, font: Path, name: str) -> dict[str, float]:
            result = render.render_stems(
                midi, folder / f"{name}.wav", folder / name, font, duration_s=args.seconds
            )
            return dict(result.timings_s)

        cases: list[tuple[str, Callable[[], dict[str, float]]]] = [
            (f"today ({args.baseline_ref}: TimGM6mb, -16 LUFS)", today),
            ("solo piano, full GM", lambda: stems_case(solo, full_font, "solo_full")),
            ("solo piano, TimGM6mb", lambda: stems_case(solo, small_font, "solo_small")),
            (
                "solo-piano preset (2 stems), full GM",
                lambda: stems_case(two_piano_parts(parts), full_font, "solo_two"),
            ),
            (
                f"{len(parts.instruments)} parts, full GM",
                lambda: stems_case(parts, full_font, "parts"),
            ),
        ]
        results = interleaved_medians(cases, args.repeats)
        for label, stages in results.items():
            shown = "  ".join(f"{k} {v:.2f} s" for k, v in stages.items())
            print(f"{label:38s} {shown}")
        stems = sorted((folder / "parts").glob("*.wav"))
        residual = render.stem_residual_db(folder / "parts.wav", stems)
        today_s = results[cases[0][0]]["total"]
        solo_s = results[cases[1][0]]["total"]
        print(f"solo piano full GM / today: {solo_s / today_s:.2f}x (target: at most 2x)")
        preset_s = results[cases[3][0]]["total"]
        print(f"solo-piano preset (2 stems) full GM / today: {preset_s / today_s:.2f}x")
        print(f"stems {', '.join(p.stem for p in stems)}: residual {residual:.1f} dB re the mix")
    return 0


if __name__ == "__main__":
    sys.exit(main())
