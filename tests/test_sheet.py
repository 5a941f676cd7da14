"""Sheet music: MusicXML -> notes equals the score's notes; key, metre, tempo, chords, marks."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi
import pytest
import soundfile

from diffbgm.music import sheet
from diffbgm.pipeline import ComposeOptions, Composer, Result

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "checkpoints" / "diffbgm-tiny"
EXAMPLE = REPO / "diffbgm" / "assets" / "examples" / "shapes.mp4"
POP909_SONGS = ("001", "017", "123", "456", "800")


def awkward_parts() -> list[sheet.SheetPart]:
    """What the layout must survive: overlapping notes of different lengths, chords, notes
    across bar lines, lengths no single note value writes (5, 7, 11 steps), a wide piano
    (two staves), drums, and a late start."""
    piano = np.array(
        [
            (0, 16, 48),  # a whole bar under ...
            (0, 4, 64),  # ... a chord of two
            (0, 4, 67),
            (4, 9, 65),  # 5 steps
            (9, 16, 72),  # 7 steps, against the held bass
            (14, 25, 43),  # 11 steps, across the bar line
            (16, 20, 60),
            (18, 19, 84),
            (30, 34, 59),
        ]
    )
    melody = np.array([(2, 5, 76), (5, 6, 77), (8, 20, 79), (20, 21, 81)])
    drums = np.array([(0, 1, 36), (4, 5, 42), (8, 9, 38), (8, 9, 42), (12, 13, 42)])
    return [
        sheet.SheetPart("melody", melody, program=73),
        sheet.SheetPart("piano", piano, program=0),
        sheet.SheetPart("drums", drums, is_drum=True),
    ]


def test_layout_round_trips_every_note(tmp_path: Path) -> None:
    header = sheet.SheetHeader(
        title="test",
        tempo_bpm=96.0,
        key_tonic_pc=2,
        key_minor=True,
        chords=[(0, "D:min"), (8, "Bb:maj7/D"), (16, "A:7"), (24, "N")],
        marks=[(0, "A"), (16, "B")],
    )
    parts = awkward_parts()
    path = sheet.write_musicxml(parts, header, tmp_path / "x.musicxml")
    back = sheet.read_musicxml_notes(path)
    assert set(back) == {"melody", "piano", "drums"}
    for part in parts:
        expected = np.asarray(sorted(map(tuple, part.notes.tolist())))
        assert np.array_equal(back[part.name], expected), part.name
        assert sheet.note_f1(part.notes, back[part.name]) == 1.0
    text = path.read_text()
    assert "<fifths>-1</fifths>" in text and "<mode>minor</mode>" in text  # D minor
    assert "<beats>4</beats>" in text and "<beat-type>4</beat-type>" in text
    assert 'tempo="96"' in text
    assert text.count("<harmony") == 3  # N is no chord symbol
    assert "<kind>major-seventh</kind>" in text and "<bass-step>D</bass-step>" in text
    assert text.count("<rehearsal") == 2
    assert text.count("<staves>2</staves>") == 1  # the wide piano, on two staves
    assert text.count("<key") == 2  # melody and piano: the drums have no key


def test_engraving_works_in_a_worker_thread(tmp_path: Path) -> None:
    """The web app engraves in Gradio's worker threads, where verovio once found no fonts."""
    from concurrent.futures import ThreadPoolExecutor

    header = sheet.SheetHeader(title="t", tempo_bpm=100.0, key_tonic_pc=0, key_minor=False)
    path = sheet.write_musicxml(awkward_parts(), header, tmp_path / "x.musicxml")
    with ThreadPoolExecutor(max_workers=1) as pool:
        svg = pool.submit(sheet.render_svg, path, tmp_path / "x.svg").result()
    text = svg.read_text()
    staves = text.count('class="staff"')  # melody, piano (two staves), drums: 4 a system
    assert staves >= 4 and staves % 4 == 0
    assert text.count('class="note') >= 20


def test_written_lengths_and_voices() -> None:
    assert sheet.written_lengths(5) == [4, 1]
    assert sheet.written_lengths(11) == [8, 3]
    assert sum(sheet.written_lengths(31)) == 31
    laid = sheet.voices(np.array([(0, 16, 48), (0, 4, 64), (0, 4, 67), (4, 8, 65)]))
    assert laid == [[(0, 16, (48,))], [(0, 4, (64, 67)), (4, 8, (65,))]]


def test_note_f1() -> None:
    a = np.array([(0, 4, 60), (4, 8, 62)])
    assert sheet.note_f1(a, a) == 1.0
    assert sheet.note_f1(a, a[:1]) == pytest.approx(2 / 3)
    assert sheet.note_f1(a, np.array([(0, 4, 61)])) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("song_id", POP909_SONGS)
def test_pop909_songs_round_trip(pop909_dir: Path, song_id: str, tmp_path: Path) -> None:
    from diffbgm.music.pop909 import load_song

    parts, header = sheet.sheet_from_song(load_song(pop909_dir / song_id))
    path = sheet.write_musicxml(parts, header, tmp_path / f"{song_id}.musicxml")
    back = sheet.read_musicxml_notes(path)
    expected = np.concatenate([p.notes for p in parts])
    got = np.concatenate([back[p.name] for p in parts])
    assert sheet.note_f1(expected, got) >= 0.99
    text = path.read_text()
    assert text.count("<rehearsal") == len(header.marks) > 0
    assert text.count("<harmony") == len(header.chords) > 0


@pytest.fixture(scope="module")
def tiny_composer() -> Composer:
    if not (TINY / "config.json").exists():
        pytest.skip(f"tiny checkpoint missing at {TINY}")
    return Composer.from_pretrained(TINY, threads=1)


GRIDS: dict[Path, pretty_midi.PrettyMIDI] = {}  # result folder -> its un-humanised score


def compose_keeping_grid(composer: Composer, out: Path, options: ComposeOptions) -> Result:
    """Compose, keeping the arrangement without humanisation that the sheet is written from
    (score.mid itself is humanised, so it is off the grid by a few milliseconds)."""
    from diffbgm import outputs

    write_midi = outputs.write_midi

    def keep(*args: Any, **kwargs: Any) -> outputs.Score:
        written = write_midi(*args, **kwargs)
        GRIDS[out] = written.grid
        return written

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(outputs, "write_midi", keep)
        return composer(EXAMPLE, out, options)


@pytest.fixture(scope="module")
def example_result(tiny_composer: Composer, tmp_path_factory: pytest.TempPathFactory) -> Result:
    out = tmp_path_factory.mktemp("example") / "result"
    return compose_keeping_grid(tiny_composer, out, ComposeOptions(seed=2, generation={"steps": 8}))


@pytest.fixture(scope="module")
def parts_result(tiny_composer: Composer, tmp_path_factory: pytest.TempPathFactory) -> Result:
    """The example arranged for several instruments (piano, strings pad, bass)."""
    out = tmp_path_factory.mktemp("parts") / "result"
    options = ComposeOptions(seed=2, generation={"steps": 8}, arrangement="piano-strings")
    return compose_keeping_grid(tiny_composer, out, options)


def grid_notes(
    score: pretty_midi.PrettyMIDI, offset_s: float, tempo_bpm: float
) -> tuple[np.ndarray, int]:
    """The score's notes that lie on the 16th grid, in steps, and how many do not (notes cut
    by the video's start or end)."""
    step_s = 60.0 / tempo_bpm / 4
    rows, off_grid = [], 0
    for instrument in score.instruments:
        for note in instrument.notes:
            start, end = (note.start - offset_s) / step_s, (note.end - offset_s) / step_s
            if abs(start - round(start)) < 1e-3 and abs(end - round(end)) < 1e-3:
                rows.append((round(start), round(end), note.pitch))
            else:
                off_grid += 1
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3), off_grid


def test_example_video_sheet_equals_its_score(example_result: Result) -> None:
    variant = example_result.variants[0]
    plan = example_result.report.plan
    assert variant.musicxml_path is not None and variant.musicxml_path.exists()
    expected, off_grid = grid_notes(GRIDS[example_result.out_dir], plan.offset_s, plan.tempo_bpm)
    assert off_grid <= 0.05 * len(expected)
    got = np.concatenate(list(sheet.read_musicxml_notes(variant.musicxml_path).values()))
    # the rounded notes of the few off-grid ones are in the sheet but not in `expected`
    assert sheet.note_f1(expected, got) >= 0.99 - off_grid / max(len(got), 1)
    grid_only = {tuple(r) for r in expected.tolist()}
    kept = np.array([r for r in got.tolist() if tuple(r) in grid_only]).reshape(-1, 3)
    assert sheet.note_f1(expected, kept) >= 0.99
    text = variant.musicxml_path.read_text()
    assert text.count("<rehearsal") == len(plan.segments)
    assert "<harmony" in text and "<sound tempo=" in text
    assert variant.sheet_svg_path is not None
    assert variant.sheet_svg_path.read_text().lstrip().startswith(("<svg", "<?xml"))


def test_example_video_stems_bundle_and_report(example_result: Result) -> None:
    variant = example_result.variants[0]
    report = example_result.report
    assert report.sound is not None
    assert report.sound.soundfont.endswith((".sf2", ".sf3"))
    assert (report.sound.target_lufs, report.sound.true_peak_dbtp) == (-14.0, -1.0)
    # solo piano: melody and accompaniment are separate stems on the same piano
    assert list(variant.stems) == ["melody", "accompaniment"]
    audio, rate = soundfile.read(str(variant.wav_path))
    assert audio.shape[0] == pytest.approx(report.plan.duration_s * rate, abs=1)
    assert variant.bundle_path is not None
    with zipfile.ZipFile(variant.bundle_path) as bundle:
        assert sorted(bundle.namelist()) == [
            "music.wav",
            "score.mid",
            "score.musicxml",
            "stems/accompaniment.wav",
            "stems/melody.wav",
        ]


def test_a_multi_part_score_gives_stems_that_sum_to_the_mix(parts_result: Result) -> None:
    from diffbgm.music.render import stem_residual_db
    from webapp.handlers import STEM_SLOTS, result_view, stem_updates

    variant = parts_result.variants[0]
    score = GRIDS[parts_result.out_dir]
    names = [inst.name for inst in score.instruments]
    assert names == [i.name for i in pretty_midi.PrettyMIDI(str(variant.midi_path)).instruments]
    assert len(names) >= 2
    assert list(variant.stems) == names
    mix, rate = soundfile.read(str(variant.wav_path), always_2d=True)
    for name, path in variant.stems.items():
        assert path == parts_result.out_dir / "stems" / f"{name}.wav"
        stem, _ = soundfile.read(str(path), always_2d=True)
        assert stem.shape == mix.shape and np.max(np.abs(stem)) > 0.01, name
    assert stem_residual_db(variant.wav_path, list(variant.stems.values())) <= -50.0
    assert variant.bundle_path is not None
    with zipfile.ZipFile(variant.bundle_path) as bundle:
        assert {f"stems/{name}.wav" for name in names} <= set(bundle.namelist())
    # the sheet has the same parts, note for note
    plan = parts_result.report.plan
    assert variant.musicxml_path is not None
    back = sheet.read_musicxml_notes(variant.musicxml_path)
    assert sorted(back) == sorted(names)
    for part in sheet.parts_from_midi(score, plan.offset_s, plan.tempo_bpm):
        assert sheet.note_f1(part.notes, back[part.name]) >= 0.99, part.name
    # the web app: one named, visible player per stem, the other slots hidden
    view = result_view(parts_result.out_dir)
    assert [name for name, _ in view.stems] == names
    updates = stem_updates(view.stems)
    assert len(updates) == STEM_SLOTS
    assert [u["visible"] for u in updates] == [True] * len(names) + [False] * (
        STEM_SLOTS - len(names)
    )
    assert updates[0]["label"] == f"Stem: {names[0]}"
    assert view.downloads[0] == str(variant.bundle_path)
    assert "<svg" in view.sheet_html
    assert f"rendered with {parts_result.report.sound.soundfont} at -14 LUFS" in view.summary
