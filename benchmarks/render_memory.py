"""The audio stage of a long video, today's renderer against a git ref's: peak memory, time,
loudness, true peak, and how far the written audio moved.

    python benchmarks/render_memory.py                      # 10 minutes, against ada8f31
    python benchmarks/render_memory.py --minutes 20 --baseline-ref main

The score is the solo-piano preset's shape (melody and accompaniment, two piano parts: two
FluidSynth runs, two stems) of the first 30 s of POP909 song 001, repeated to --minutes. Each
renderer runs `render_stems` once in a fresh process (so one's memory does not hide the
other's); its peak RSS is read from the kernel (ru_maxrss) and reported as what the render
added to the process after its imports. The difference of the two mixes is its RMS relative
to the mix's, in dB, read a few seconds at a time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile
from render import REPO, baseline_renderer, song_parts, two_piano_parts

DEFAULT_REF = "ada8f31"  # the last renderer that held the mix and per-sample arrays


def long_score(minutes: float, song: str = "001") -> pretty_midi.PrettyMIDI:
    """The song's first 30 s as two piano parts, repeated to `minutes`."""
    piece, _ = song_parts(song, 30.0)
    block = two_piano_parts(piece)
    score = pretty_midi.PrettyMIDI(initial_tempo=100.0)
    for part in block.instruments:
        longer = pretty_midi.Instrument(program=part.program, name=part.name)
        for repeat in range(int(np.ceil(minutes * 2))):
            shift = 30.0 * repeat
            for n in part.notes:
                if n.start + shift < minutes * 60:
                    longer.notes.append(
                        pretty_midi.Note(n.velocity, n.pitch, n.start + shift, n.end + shift)
                    )
        score.instruments.append(longer)
    return score


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(which: str, midi: Path, out: Path, seconds: float) -> None:
    """Render once with `which` ("today" or a git ref) and print the figures as JSON."""
    if which == "today":
        from diffbgm.music import render
    else:
        render = baseline_renderer(which, out)  # type: ignore[assignment]
    before = max_rss_mb()
    start = time.perf_counter()
    result = render.render_stems(midi, out / "music.wav", out / "stems", duration_s=seconds)
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "timings": result.timings_s,
                "rss_before_mb": before,
                "rss_peak_mb": max_rss_mb(),
                "lufs": result.mix.lufs,
                "true_peak": result.mix.peak,
            }
        )
    )


def difference_db(a: Path, b: Path) -> float:
    """RMS of (a - b) relative to the RMS of a, in dB, streamed."""
    error = energy = 0.0
    with soundfile.SoundFile(str(a)) as first, soundfile.SoundFile(str(b)) as second:
        while True:
            x = first.read(1 << 18, dtype="float64", always_2d=True)
            y = second.read(1 << 18, dtype="float64", always_2d=True)
            if x.size == 0:
                break
            error += float(np.sum((x - y) ** 2))
            energy += float(np.sum(x**2))
    return 10 * np.log10(max(error, 1e-30) / max(energy, 1e-30))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--baseline-ref", default=DEFAULT_REF)
    parser.add_argument("--child", nargs=4, metavar=("WHICH", "MIDI", "OUT", "SECONDS"))
    args = parser.parse_args(argv)
    if args.child:
        which, midi, out, seconds = args.child
        child(which, Path(midi), Path(out), float(seconds))
        return 0
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="diffbgm-bench-render-memory-") as tmp:
        folder = Path(tmp)
        midi = folder / "long.mid"
        long_score(args.minutes).write(str(midi))
        figures = {}
        for which in (args.baseline_ref, "today"):
            out = folder / which.replace("/", "_")
            out.mkdir()
            run = subprocess.run(
                [sys.executable, __file__, "--child", which, str(midi), str(out), str(seconds)],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
            )
            figures[which] = json.loads(run.stdout.strip().splitlines()[-1])
        baseline_mix = folder / args.baseline_ref.replace("/", "_") / "music.wav"
        moved = difference_db(folder / "today" / "music.wav", baseline_mix)
    print(f"{args.minutes:g} minutes, two piano parts (POP909 001's first 30 s, repeated)")
    print(
        "| renderer | seconds (synth / level / write) | peak RSS MB | added by the render MB "
        "| LUFS | true peak |"
    )
    print("|---|---|---|---|---|---|")
    for which, f in figures.items():
        stages = " / ".join(f"{f['timings'][k]:.2f}" for k in ("synth", "level", "write"))
        added = f["rss_peak_mb"] - f["rss_before_mb"]
        print(
            f"| {which} | {f['seconds']:.2f} ({stages}) | {f['rss_peak_mb']:.0f} | {added:.0f} "
            f"| {f['lufs']:.2f} | {f['true_peak']:.4f} |"
        )
    old, new = figures[args.baseline_ref], figures["today"]
    added_old = old["rss_peak_mb"] - old["rss_before_mb"]
    added_new = new["rss_peak_mb"] - new["rss_before_mb"]
    print(f"memory added, today / {args.baseline_ref}: {added_new / added_old:.3f}x")
    print(f"seconds, today / {args.baseline_ref}: {new['seconds'] / old['seconds']:.2f}x")
    print(f"the mix moved by {moved:.1f} dB (RMS of the difference re the mix)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
