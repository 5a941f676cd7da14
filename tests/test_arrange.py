"""Arrangements: the melody split, the presets' named parts, drums on the bar grid, pedal with
the harmony, seeded humanisation, and the option / CLI plumbing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from diffbgm.arrange import ARRANGEMENTS, PRESETS, arrange
from diffbgm.arrange.notes import into_range
from diffbgm.arrange.parts import SplitConfig, melody_mask, note_f1, split_parts
from diffbgm.arrange.percussion import CRASH, FILL_TOMS, KICK
from diffbgm.arrange.performance import SUSTAIN
from diffbgm.errors import PlanError
from diffbgm.music.roll import PianoRoll, RollSpec, roll_to_midi, roll_to_notes
from diffbgm.options import ComposeOptions
from diffbgm.plan.records import MusicPlan, PlanChord, PlanKey, PlanSegment

REPO = Path(__file__).resolve().parents[1]
POP909 = REPO.parent / "shared" / "data" / "pop909"
SPEC = RollSpec()
DYNAMIC = {"density": 0.5, "velocity": 0.5, "register": 0.5, "polyphony": 0.5}
SEMANTIC = {
    "melodic": 1.0,
    "intro": 0.0,
    "outro": 0.0,
    "minor_share": 0.0,
    "harmonic_rhythm": 0.5,
    "position": 0.0,
}
CHORDS = ("C:maj", "A:min", "F:maj", "G:7", "C:maj", "E:min/5", "F:maj", "G:maj")


def _plan() -> MusicPlan:
    """8 bars at 120 BPM (2 s a bar), the first downbeat 0.3 s before the video starts, cuts
    at bar 4 and on beat 3 of bar 8 (a cut that only reached a beat line), one chord a bar."""
    segments = (
        PlanSegment(0, 0, 16, (0,), DYNAMIC, SEMANTIC),
        PlanSegment(1, 16, 14, (1,), DYNAMIC, SEMANTIC),
        PlanSegment(2, 30, 2, (2,), DYNAMIC, SEMANTIC),
    )
    chords = tuple(PlanChord(bar, 0, 4, label) for bar, label in enumerate(CHORDS))
    return MusicPlan(120.0, -0.3, 8, 15.5, segments, PlanKey(0, "major"), chords, (), 0)


def _song_roll(n_steps: int = 128, seed: int = 0) -> tuple[PianoRoll, np.ndarray]:
    """A melody of eighths in C4-G5 over held three-note chords in C2-C4, with melody rests
    every other bar half; returns the roll and the melody's (onset step, pitch index) rows."""
    rng = np.random.default_rng(seed)
    onset = np.zeros((n_steps, SPEC.n_pitches), dtype=bool)
    sustain = np.zeros_like(onset)
    melody = []
    pitch = 67
    for t in range(0, n_steps, 2):
        if (t // 8) % 4 == 3:  # the melody breathes: two beats of rest every 2 bars
            continue
        pitch = int(np.clip(pitch + rng.integers(-3, 4), 60, 79))
        onset[t, pitch - 21] = True
        sustain[t : t + 2, pitch - 21] = True
        melody.append((t, pitch - 21))
    for t in range(0, n_steps, 4):
        for chord_pitch in (36, 52, 55) if (t // 16) % 2 else (41, 53, 57):
            onset[t, chord_pitch - 21] = True
            sustain[t : t + 4, chord_pitch - 21] = True
    velocity = np.where(onset, 80, 0).astype(np.uint8)
    return PianoRoll(onset, sustain, velocity), np.asarray(melody)


# --- the melody split ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["skyline", "voice"])
def test_split_finds_a_melody_over_chords(method: str) -> None:
    roll, melody = _song_roll()
    notes = roll_to_notes(roll)
    mask = melody_mask(roll, notes, SPEC.pitch_low, SplitConfig(method=method))  # type: ignore[arg-type]
    _, _, f1 = note_f1(notes[mask], melody)
    assert f1 > 0.9, f1


def test_split_keeps_every_note_in_exactly_one_part() -> None:
    roll, _ = _song_roll()
    parts = split_parts(roll, SPEC.pitch_low)
    both = np.concatenate([parts.melody, parts.accompaniment])
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, roll_to_notes(roll).tolist()))


def test_voice_split_is_monophonic() -> None:
    roll, _ = _song_roll(seed=3)
    melody = split_parts(roll, SPEC.pitch_low).melody
    assert len(np.unique(melody[:, 0])) == len(melody)  # one melody note per onset step


@pytest.mark.skipif(not (POP909 / "801").is_dir(), reason="POP909 not in ../shared/data")
def test_split_f1_on_a_real_validation_song() -> None:
    from diffbgm.music.pop909 import load_song

    song = load_song(POP909 / "801")
    notes = roll_to_notes(song.roll)
    truth = roll_to_notes(song.melody_roll)
    voice = melody_mask(song.roll, notes, SPEC.pitch_low)
    skyline = melody_mask(song.roll, notes, SPEC.pitch_low, SplitConfig(method="skyline"))
    voice_f1, skyline_f1 = note_f1(notes[voice], truth)[2], note_f1(notes[skyline], truth)[2]
    assert voice_f1 > 0.8 and voice_f1 > skyline_f1, (voice_f1, skyline_f1)


# --- presets and parts --------------------------------------------------------------------


@pytest.mark.parametrize("name", ARRANGEMENTS)
def test_every_preset_renders_its_named_parts_with_notes(name: str) -> None:
    roll, _ = _song_roll()
    plan = _plan()
    midi = arrange(roll, plan, SPEC, name, seed=3)
    preset = PRESETS[name]
    expected = [part for part, _ in preset.parts] + (["drums"] if preset.drums else [])
    assert [inst.name for inst in midi.instruments] == expected
    for inst in midi.instruments:
        assert inst.notes, inst.name
        assert all(0.0 <= n.start < n.end <= plan.duration_s for n in inst.notes)
        style = preset.style(inst.name)  # type: ignore[arg-type]
        if style is None:
            assert inst.is_drum
        else:
            assert inst.program == style.program and not inst.is_drum
            assert all(style.low <= n.pitch <= style.high for n in inst.notes), inst.name
    # written and read back: one track per part, the names kept
    path_names = [i.name for i in _round_trip(midi).instruments]
    assert sorted(path_names) == sorted(expected)


def _round_trip(midi: pretty_midi.PrettyMIDI) -> pretty_midi.PrettyMIDI:
    import io

    buffer = io.BytesIO()
    midi.write(buffer)
    buffer.seek(0)
    return pretty_midi.PrettyMIDI(buffer)


def _old_write_midi_notes(roll: PianoRoll, plan: MusicPlan) -> list[tuple[float, float, int, int]]:
    """The notes write_midi wrote before arrangements: one piano, shifted and cut."""
    notes = []
    for note in roll_to_midi(roll, plan.tempo_bpm, SPEC).instruments[0].notes:
        start = max(note.start + plan.offset_s, 0.0)
        end = min(note.end + plan.offset_s, plan.duration_s)
        if end - start > 0.02:
            notes.append((round(start, 9), round(end, 9), note.pitch, note.velocity))
    return sorted(notes)


def test_solo_piano_score_plays_exactly_the_notes_of_before() -> None:
    roll, _ = _song_roll(seed=5)
    plan = _plan()
    midi = arrange(roll, plan, SPEC, "solo-piano", seed=0, humanise=False)
    assert {inst.program for inst in midi.instruments} == {0}
    notes = sorted(
        (round(n.start, 9), round(n.end, 9), n.pitch, n.velocity)
        for inst in midi.instruments
        for n in inst.notes
    )
    assert notes == _old_write_midi_notes(roll, plan)


def test_a_silent_roll_leaves_only_the_parts_made_from_the_plan() -> None:
    empty = np.zeros((128, SPEC.n_pitches), dtype=bool)
    roll = PianoRoll(empty, empty, np.zeros(empty.shape, dtype=np.uint8))
    midi = arrange(roll, _plan(), SPEC, "electric-piano-drums", seed=0)
    assert [inst.name for inst in midi.instruments] == ["bass", "drums"]


def test_into_range_moves_by_octaves_and_drops_doublings() -> None:
    notes = np.array([[0, 4, 40, 80], [0, 4, 52, 80], [4, 8, 100, 70]])
    moved = into_range(notes, 48, 72)
    assert moved[:, 2].tolist() == [52, 64]  # 40 -> 52 doubles the other 52: dropped


def test_a_one_voice_part_ends_each_note_where_the_next_begins() -> None:
    roll, _ = _song_roll(seed=1)
    midi = arrange(roll, _plan(), SPEC, "cinematic-strings", seed=0, humanise=False)
    violin = next(inst for inst in midi.instruments if inst.name == "melody")
    notes = sorted(violin.notes, key=lambda n: n.start)
    assert all(a.end <= b.start + 1e-9 for a, b in zip(notes, notes[1:], strict=False))


# --- drums, pedal, humanisation -----------------------------------------------------------


def _grid_times(inst: pretty_midi.Instrument, plan: MusicPlan) -> np.ndarray:
    """Note starts from the grid origin, of the notes not cut at the video's start."""
    return np.array([n.start for n in inst.notes if n.start > 0]) - plan.offset_s


def test_drums_sit_on_the_bar_grid_and_fill_into_every_cut() -> None:
    roll, _ = _song_roll()
    plan = _plan()
    midi = arrange(roll, plan, SPEC, "electric-piano-drums", seed=1, humanise=False)
    drums = next(inst for inst in midi.instruments if inst.is_drum)
    step_s = plan.beat_s / SPEC.steps_per_beat
    times = _grid_times(drums, plan)
    assert np.allclose(times / step_s, np.round(times / step_s), atol=1e-6)
    pitches = np.array([n.pitch for n in drums.notes if n.start > 0])
    cuts = [seg.start_beat * plan.beat_s for seg in plan.segments[1:]]  # grid seconds
    fill_s = PRESETS["electric-piano-drums"].drums.fill_beats * plan.beat_s  # type: ignore[union-attr]
    for cut in cuts:
        at_cut = pitches[np.isclose(times, cut)]
        assert CRASH in at_cut and KICK in at_cut
        in_fill = pitches[(times >= cut - fill_s - 1e-6) & (times < cut - 1e-6)]
        assert set(in_fill) & set(FILL_TOMS)
    toms = np.isin(pitches, FILL_TOMS)
    assert all(any(cut - fill_s - 1e-6 <= t < cut for cut in cuts) for t in times[toms])
    crashes = times[pitches == CRASH]
    assert np.allclose(sorted(crashes), cuts)
    # the groove keeps time between fills: a kick on beat 1 of a bar without a cut
    assert any(np.isclose(t, 2 * plan.bar_s) for t in times[pitches == KICK])


def test_pedal_goes_down_after_each_chord_and_up_before_the_next() -> None:
    roll, _ = _song_roll()
    plan = _plan()
    midi = arrange(roll, plan, SPEC, "solo-piano", seed=2)
    for inst in midi.instruments:
        pedal = [
            (c.time - plan.offset_s, c.value) for c in inst.control_changes if c.number == SUSTAIN
        ]
        downs = [t for t, v in pedal if v >= 64]
        ups = [t for t, v in pedal if v < 64]
        for bar in range(1, plan.n_bars):  # every chord change inside the video
            change = bar * plan.bar_s
            assert any(0 < d - change <= 0.1 for d in downs), (inst.name, change)
            assert any(0 < change - u <= 0.1 for u in ups), (inst.name, change)
        values = [v for _, v in sorted(pedal)]
        assert all(a != b for a, b in zip(values, values[1:], strict=False))  # alternates


def _performance(seed: int) -> list[tuple[float, float, int, int]]:
    roll, _ = _song_roll()
    midi = arrange(roll, _plan(), SPEC, "piano-strings", seed=seed)
    return [(n.start, n.end, n.pitch, n.velocity) for i in midi.instruments for n in i.notes]


def test_humanisation_is_seeded_small_and_keeps_every_note_in_its_beat() -> None:
    plan = _plan()
    roll, _ = _song_roll()
    grid = arrange(roll, plan, SPEC, "piano-strings", seed=7, humanise=False)
    played = arrange(roll, plan, SPEC, "piano-strings", seed=7)
    assert _performance(7) == _performance(7)
    assert _performance(7) != _performance(8)
    moved = 0
    for exact, human in zip(grid.instruments, played.instruments, strict=True):
        assert len(exact.notes) == len(human.notes)
        for a, b in zip(exact.notes, human.notes, strict=True):
            assert a.pitch == b.pitch
            assert abs(a.velocity - b.velocity) <= 8
            if a.start == 0.0:  # cut at the video's start: no earlier beat to keep
                continue
            assert abs(a.start - b.start) <= 0.015 + 1e-9
            beat_a = np.floor((a.start - plan.offset_s) / plan.beat_s + 1e-6)
            beat_b = np.floor((b.start - plan.offset_s) / plan.beat_s + 1e-6)
            assert beat_a == beat_b
            moved += a.start != b.start
    assert moved > 0


# --- options and CLI ----------------------------------------------------------------------


def test_options_check_the_arrangement_and_old_reports_load() -> None:
    with pytest.raises(PlanError, match="unknown arrangement"):
        ComposeOptions(arrangement="kazoo")
    options = ComposeOptions(arrangement="music-box-cello")
    assert ComposeOptions.from_dict(options.to_dict()) == options
    old = {k: v for k, v in ComposeOptions().to_dict().items() if k != "arrangement"}
    assert ComposeOptions.from_dict(old).arrangement == "solo-piano"


def test_cli_takes_an_arrangement_and_refuses_unknown_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from diffbgm.__main__ import build_parser

    parser = build_parser()
    args = parser.parse_args(
        ["generate", "v.mp4", "--out", "o", "--arrangement", "cinematic-strings"]
    )
    assert args.arrangement == "cinematic-strings"
    assert parser.parse_args(["generate", "v.mp4", "--out", "o"]).arrangement == "solo-piano"
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "v.mp4", "--out", "o", "--arrangement", "kazoo"])
    assert "invalid choice" in capsys.readouterr().err


def test_web_form_passes_the_arrangement() -> None:
    from webapp.handlers import compose_options

    options = compose_options("", 0, "auto", 0, 0, None, None, 1, "duck", None, "piano-strings")
    assert options.arrangement == "piano-strings"
    assert compose_options("", 0, "auto", 0, 0, None, None, 1, "duck").arrangement == "solo-piano"
    with pytest.raises(PlanError):
        compose_options("", 0, "auto", 0, 0, None, None, 1, "duck", None, "kazoo")


@pytest.mark.parametrize("name", ARRANGEMENTS)
def test_every_preset_renders_audible_stems_of_the_video_length_that_sum_to_the_mix(
    name: str, tmp_path: Path
) -> None:
    """FluidSynth renders every part of every preset (the full GM soundfont when installed):
    each stem audible, as long as the video, and the stems sum to the mix."""
    import soundfile

    from diffbgm.music.render import render_stems, stem_residual_db

    plan = _plan()
    roll, _ = _song_roll()
    score = arrange(roll, plan, SPEC, name, seed=0)
    result = render_stems(score, tmp_path / "music.wav", tmp_path / "stems", duration_s=15.5)
    assert list(result.stems) == [i.name for i in score.instruments if i.notes]
    mix, rate = soundfile.read(str(result.mix.path), always_2d=True)
    assert mix.shape[0] == round(15.5 * rate)
    for part, path in result.stems.items():
        stem, _ = soundfile.read(str(path), always_2d=True)
        assert stem.shape == mix.shape, part
        assert np.sqrt(np.mean(stem**2)) > 1e-3, f"{name}: {part} is silent"
    if len(result.stems) > 1:
        assert stem_residual_db(result.mix.path, list(result.stems.values())) <= -50.0


# first downbeats (in bars of 2 s): pickups before the video's start, a start at 0, music
# over part of the video starting bars in; 2 ms and 20 ms slivers before a downbeat, after
# silent bars (joined to the last of them) or with none (left: the lines miss by that much)
OFFSETS_BARS = [-0.73, -0.02, 0.0, 0.4, 2.0, 2.31, 2.001, 2.01, -0.999, 0.99]


@pytest.mark.parametrize("offset_bars", OFFSETS_BARS)
def test_the_midi_files_bar_lines_are_the_musics(offset_bars: float, tmp_path: Path) -> None:
    """Whatever the first downbeat, score.mid's bar lines fall on the plan's bars, its notes
    keep their times, and no lead-in plays faster than twice the music's tempo (FluidSynth
    applies a tempo change late, and DAWs cap the tempo)."""
    from dataclasses import replace

    from diffbgm.arrange.timing import bar_aligned_timing, first_downbeat_s

    bar = 2.0  # 120 BPM
    start = max(0.0, offset_bars * bar)
    end = offset_bars * bar + 16.0  # the plan's 8 bars
    plan = replace(
        _plan(), offset_s=offset_bars * bar, duration_s=end, music_start_s=start, music_end_s=end
    )
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    bar_aligned_timing(midi, plan)
    piano = pretty_midi.Instrument(0)
    times = [start + 0.013, first_downbeat_s(plan), plan.offset_s + 7.5 * bar]
    piano.notes = [pretty_midi.Note(80, 60, t, t + 0.2) for t in times]
    midi.instruments.append(piano)
    midi.write(str(tmp_path / "score.mid"))
    back = pretty_midi.PrettyMIDI(str(tmp_path / "score.mid"))
    music_bars = plan.bar_times_s()
    music_bars = music_bars[music_bars >= first_downbeat_s(plan) - 1e-9]
    downbeats = back.get_downbeats()
    sliver = first_downbeat_s(plan) if first_downbeat_s(plan) < bar / 32 else 0.0
    downbeats = downbeats[downbeats >= music_bars[0] - 1e-3 - sliver]
    assert len(downbeats) >= 5
    assert np.allclose(downbeats[:5], music_bars[:5], atol=1e-3 + sliver)
    tempi = back.get_tempo_changes()[1]
    assert tempi[-1] == pytest.approx(120.0, rel=1e-4)
    assert tempi.min() >= 60.0 and tempi.max() <= 240.0 + 1e-6
    tick = 60.0 / 120.0 / back.resolution * 2  # the lead-in's ticks may be up to twice as long
    starts = sorted(n.start for n in back.instruments[0].notes)
    assert np.allclose(starts, sorted(times), atol=tick)
    # `python -m diffbgm.metrics` counts bars from the music's first downbeat, not the lead-in
    from diffbgm.metrics_cli import midi_file_roll
    from diffbgm.music.roll import RollSpec

    roll, _ = midi_file_roll(tmp_path / "score.mid", RollSpec())
    assert roll.onset[0, 60 - RollSpec().pitch_low]


@pytest.mark.parametrize("offset_bars", [2.001, 0.4])
def test_fluidsynth_plays_a_lead_in_score_on_time(offset_bars: float, tmp_path: Path) -> None:
    """The rendered onset of a note after the lead-in is where the note is (FluidSynth applies
    a tempo change at its next callback, so a lead-in at many times the music's tempo played
    the piece early; the tempo bound above keeps it out)."""
    from dataclasses import replace

    import soundfile as sf

    from diffbgm.arrange.timing import bar_aligned_timing
    from diffbgm.music.render import find_soundfont, run_fluidsynth

    bar = 2.0
    start = offset_bars * bar
    plan = replace(
        _plan(), offset_s=start, duration_s=start + 16.0, music_start_s=start,
        music_end_s=start + 16.0,
    )  # fmt: skip
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    bar_aligned_timing(midi, plan)
    piano = pretty_midi.Instrument(0)
    onset = start + 0.6
    piano.notes = [pretty_midi.Note(110, 72, onset, onset + 0.5)]
    midi.instruments.append(piano)
    midi.write(str(tmp_path / "one.mid"))
    run_fluidsynth(tmp_path / "one.mid", tmp_path / "one.wav", find_soundfont(), 44100)
    audio, rate = sf.read(str(tmp_path / "one.wav"))
    level = np.abs(audio).max(axis=1) if audio.ndim > 1 else np.abs(audio)
    heard = np.argmax(level > 0.05 * level.max()) / rate
    assert heard == pytest.approx(onset, abs=0.01)
