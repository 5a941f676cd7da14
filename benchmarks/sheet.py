"""Sheet music round trip on POP909: score -> MusicXML -> notes, note F1 and seconds per song.

    python benchmarks/sheet.py                       # songs 001 017 123 456 800
    python benchmarks/sheet.py --songs 002 003 --svg
    PYTHONPATH=<old checkout> python benchmarks/sheet.py   # the same for an older sheet.py

For each song (read with diffbgm.music.pop909.load_song): its MELODY, BRIDGE and PIANO tracks on
the song's beat grid are written as MusicXML (diffbgm.music.sheet), read back, and compared
note for note on (start step, end step, pitch); with --svg the engraving is timed too. The
write is timed as the best of --repeat runs, after music21 is imported (the reader needs it,
and music21 once wrote the file too), so that the figure is the writing alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
POP909 = REPO.parent / "shared" / "data" / "pop909"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", nargs="+", default=["001", "017", "123", "456", "800"])
    parser.add_argument("--svg", action="store_true", help="also time the verovio engraving")
    parser.add_argument("--repeat", type=int, default=3, help="time the write as best of N")
    args = parser.parse_args(argv)

    import music21  # noqa: F401  (imported before the clock starts)

    from diffbgm.music import sheet
    from diffbgm.music.pop909 import load_song

    if not (POP909 / args.songs[0]).is_dir():
        print(f"POP909 not found at {POP909}")
        return 1
    with tempfile.TemporaryDirectory(prefix="diffbgm-bench-sheet-") as tmp:
        for song_id in args.songs:
            parts, header = sheet.sheet_from_song(load_song(POP909 / song_id))
            path = Path(tmp) / f"{song_id}.musicxml"
            write_s = float("inf")
            for _ in range(max(args.repeat, 1)):
                start = time.perf_counter()
                sheet.write_musicxml(parts, header, path)
                write_s = min(write_s, time.perf_counter() - start)
            start = time.perf_counter()
            back = sheet.read_musicxml_notes(path)
            read_s = time.perf_counter() - start
            expected = np.concatenate([p.notes for p in parts])
            got = np.concatenate([back[p.name] for p in parts])
            line = (
                f"{song_id}: {len(expected)} notes in {len(parts)} parts, {header.n_bars} bars, "
                f"{len(header.chords)} chords, {len(header.marks)} marks; "
                f"F1 {sheet.note_f1(expected, got):.4f}; write {write_s:.3f} s, read {read_s:.1f} s"
            )
            if args.svg:
                start = time.perf_counter()
                sheet.render_svg(path, Path(tmp) / f"{song_id}.svg")
                line += f", svg {time.perf_counter() - start:.1f} s"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
