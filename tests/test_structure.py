"""The user's own structure: chord symbols, a progression's key, section starts, and how the
planner, the options, the command line and the app's form take them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from diffbgm.__main__ import main as cli_main
from diffbgm.errors import PlanError
from diffbgm.music.chord_symbols import harte_label, parse_progression
from diffbgm.music.chords import ChordError, note_pc, parse_chord
from diffbgm.music.harmony import ROOT_NAMES, load_chord_model
from diffbgm.options import ComposeOptions, parse_chords, parse_form, parse_sections
from diffbgm.plan import PlanKey, PlanOverrides, make_plan
from diffbgm.plan.grid import _merge_short
from diffbgm.plan.harmony import key_from_chords
from diffbgm.plan.recall import form_segments
from tests.scripts import load_script
from tests.test_plan import synthetic_analysis


@pytest.fixture(scope="module")
def chord_model():
    return load_chord_model()


# --- chord symbols ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "label"),
    [
        ("C", "C:maj"),
        ("Am", "A:min"),
        ("a-", "A:min"),
        ("F#m7", "F#:min7"),
        ("Bbmaj7", "Bb:maj7"),
        ("EbM7", "Eb:maj7"),
        ("CΔ7", "C:maj7"),
        ("G7", "G:7"),
        ("Dm7b5", "D:hdim7"),
        ("Bø", "B:hdim7"),
        ("C#dim7", "C#:dim7"),
        ("Caug", "C:aug"),
        ("G7sus4", "G:sus4(b7)"),
        ("Dsus2", "D:sus2"),
        ("Cadd9", "C:maj(9)"),
        ("C6/9", "C:maj6(9)"),
        ("Am(maj7)", "A:minmaj7"),
        ("C/E", "C:maj/E"),
        ("F♯m/C♯", "F#:min/C#"),
        ("A:min7", "A:min7"),
        ("N.C.", "N"),
    ],
)
def test_chord_symbols_become_harte_labels(symbol: str, label: str) -> None:
    assert harte_label(symbol) == label
    chord = parse_chord(label)
    if not chord.is_none and "/" not in symbol:
        assert chord.bass_pc == chord.root_pc


def test_the_sounding_notes_of_a_symbol_are_the_chords() -> None:
    assert parse_chord(harte_label("Dm7b5")).pitch_classes == {2, 5, 8, 0}
    assert parse_chord(harte_label("G7sus4")).pitch_classes == {7, 0, 2, 5}
    assert parse_chord(harte_label("C/E")).bass_pc == 4


@pytest.mark.parametrize("symbol", ["H7", "Cfoo", "C/X", "", "C:wrong", "7"])
def test_an_unreadable_symbol_is_named_with_examples(symbol: str) -> None:
    with pytest.raises(ChordError, match="chord|label"):
        harte_label(symbol)


@pytest.mark.parametrize(
    ("symbol", "label"),
    [
        ("E♭m7♭5", "Eb:hdim7"),
        ("C7♯9", "C:7(#9)"),
        ("C∆7", "C:maj7"),  # the increment sign some keyboards type for the triangle
        ("CMaj7", "C:maj7"),
        ("CMIN", "C:min"),
        ("C7#11", "C:7(#11)"),
        ("C7b5", "C:7(*5,b5)"),  # the flat fifth instead of the fifth
        ("am", "A:min"),
    ],
)
def test_other_spellings_of_the_same_chord(symbol: str, label: str) -> None:
    assert harte_label(symbol) == label
    assert parse_chord(harte_label("C7b5")).pitch_classes == {0, 4, 6, 10}


def test_a_bare_lower_case_root_is_refused_as_ambiguous() -> None:
    with pytest.raises(ChordError, match="write A for the major chord or Am for the minor"):
        harte_label("a")


def test_a_progression_reads_bars_and_repeat_signs() -> None:
    assert parse_progression("C G Am F") == ("C:maj", "G:maj", "A:min", "F:maj")
    assert parse_progression("| Dm7 | G7 | Cmaj7 | % |") == ("D:min7", "G:7", "C:maj7", "C:maj7")
    assert parse_progression("Am,F, C ,G") == ("A:min", "F:maj", "C:maj", "G:maj")
    with pytest.raises(ChordError, match="start with '%'"):
        parse_progression("% C")
    with pytest.raises(ChordError, match="bar 2: every bar needs a chord"):
        parse_progression("C N.C. G")
    with pytest.raises(ChordError, match="bar 3: cannot read the chord 'H7'"):
        parse_progression("C G H7")


# --- the key of a progression ------------------------------------------------------------------


def _transposed(labels: list[str], semitones: int) -> list[str]:
    out = []
    for label in labels:
        root, _, quality = label.partition(":")
        out.append(f"{ROOT_NAMES[(note_pc(root) + semitones) % 12]}:{quality}")
    return out


@pytest.mark.parametrize(
    ("progression", "key"),
    [
        ("C G Am F", "C major"),
        ("Am Dm E7 Am", "A minor"),
        ("Dm7 G7 Cmaj7 %", "C major"),  # ii-V-I ends on its tonic
        ("Am G F E", "A minor"),
        ("C F G7 C", "C major"),
        ("Dm Bm7b5 E7 Am", "A minor"),
    ],
)
def test_the_key_follows_the_chords_in_every_transposition(
    chord_model, progression: str, key: str
) -> None:
    labels = list(parse_progression(progression))
    expected = PlanKey.parse(key)
    for shift in range(12):
        found = key_from_chords(_transposed(labels, shift), chord_model)
        assert found == PlanKey((expected.tonic_pc + shift) % 12, expected.mode), shift


@pytest.mark.parametrize(
    ("progression", "key"),
    [
        ("Em9 A13 Dmaj9", "D major"),  # 9ths and 13ths read as their sevenths
        ("F#m9 B9 Emaj9 C#m9", "E major"),
        ("E5 A5 B5", "E major"),  # power chords: major or minor, whichever fits
    ],
)
def test_extended_and_power_chords_have_a_key(chord_model, progression: str, key: str) -> None:
    assert key_from_chords(parse_progression(progression), chord_model).name == key


def test_the_key_of_real_songs_is_found_from_their_first_chords(chord_model) -> None:
    """The benchmark's measure on songs the chord model never saw (801-859): from the first
    eight chord changes, most keys exact and nearly all on the right key signature."""
    bench = load_script("benchmarks/key_from_chords.py")
    if not bench.DATA.is_dir():
        pytest.skip(f"POP909 songs not found at {bench.DATA}")
    verdicts = []
    for number in range(801, 860):
        song = bench.DATA / f"{number:03d}"
        truth = bench.single_key(song)
        if truth is not None:
            labels = [label for label, _ in bench.song_progression(song)[:8]]
            verdicts.append(bench.verdict(key_from_chords(labels, chord_model), truth))
    assert len(verdicts) >= 40
    exact = verdicts.count("exact") / len(verdicts)
    signature = exact + verdicts.count("relative") / len(verdicts)
    assert exact >= 0.6 and signature >= 0.9  # measured: 0.67 and 0.94 (48 songs)


# --- options ---------------------------------------------------------------------------------


def test_section_times_are_read_in_seconds_and_minutes() -> None:
    assert parse_sections("12.5, 0:31; 1:02.5 3") == (3.0, 12.5, 31.0, 62.5)
    assert parse_sections("1:00:01") == (3601.0,)
    assert parse_sections(" ") is None and parse_sections(None) is None
    assert parse_sections("5, 5.0") == (5.0,)
    for bad, message in [
        ("abc", "cannot read the time 'abc'"),
        ("1:75", "run 0-59"),
        ("0", "after the video's start"),
        ("1::2", "cannot read the time"),
        ("nan", "number of seconds"),
        ("-1", "before it"),
        ("12,5", "write a decimal with a point \\(12.5\\)"),
        ("11.9,15.7", "a space after the comma"),
    ]:
        with pytest.raises(PlanError, match=message):
            parse_sections(bad)


def test_options_keep_chords_as_harte_labels_and_survive_the_report() -> None:
    options = ComposeOptions(chords=("Am", "F", "C", "G7"), sections=(22.0, 7.5))
    assert options.chords == ("A:min", "F:maj", "C:maj", "G:7")
    assert options.sections == (7.5, 22.0)
    assert ComposeOptions.from_dict(options.to_dict()) == options
    old = {k: v for k, v in options.to_dict().items() if k not in ("chords", "sections")}
    assert ComposeOptions.from_dict(old).chords is None  # a report from before
    assert parse_chords("| C | % | G |") == ("C:maj", "C:maj", "G:maj")
    with pytest.raises(PlanError, match="chord of bar 2"):
        ComposeOptions(chords=("C", "Q"))
    with pytest.raises(PlanError, match="sequence of symbols"):
        ComposeOptions(chords="C G Am F")  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="between 1 and"):
        ComposeOptions(chords=())
    with pytest.raises(PlanError, match="inside the video"):
        ComposeOptions(sections=(3.0, 12.0)).check_for_video(10.0)
    with pytest.raises(PlanError, match="sequence of seconds"):
        ComposeOptions(sections="12.5")  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="form labels are text"):
        ComposeOptions(sections=(3.0,), form=("A", None))  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="number of seconds"):
        PlanOverrides(added_segment_starts_s=("12",))  # type: ignore[arg-type]
    ComposeOptions(sections=(3.0,)).check_for_video(10.0)


# --- the planner ---------------------------------------------------------------------------


def test_added_sections_start_segments_besides_the_cuts(chord_model) -> None:
    analysis = synthetic_analysis([8.0, 16.0], 24.0)
    plan = make_plan(
        analysis, PlanOverrides(added_segment_starts_s=(12.0,)), chord_model=chord_model
    )
    boundaries = plan.segment_boundaries_s()
    for asked in (8.0, 12.0, 16.0):
        assert np.min(np.abs(boundaries - asked)) < 60.0 / plan.tempo_bpm / 2 + 1e-6, asked
    assert plan.provenance["segments"] == "shots, and the user's section starts"


def test_a_users_section_outlasts_a_cut_too_close_to_it(chord_model) -> None:
    """A marker one second before a cut: both cannot start segments (one would be shorter than
    a bar), and the cut gives way."""
    analysis = synthetic_analysis([8.0, 17.0], 24.0)
    overrides = PlanOverrides(tempo_bpm=120.0, added_segment_starts_s=(16.0,))
    boundaries = make_plan(analysis, overrides, chord_model=chord_model).segment_boundaries_s()
    assert np.min(np.abs(boundaries - 16.0)) < 1e-6
    assert np.min(np.abs(boundaries - 17.0)) > 0.9
    assert _merge_short([0, 8, 10, 24], 4, kept={8}) == [0, 8, 24]
    assert _merge_short([0, 8, 10, 24], 4) == [0, 10, 24]
    assert _merge_short([0, 8, 10, 24], 4, kept={8, 10}) == [0, 10, 24]  # both asked: as before


def test_a_start_that_falls_in_the_last_bar_is_reported_as_merged(chord_model) -> None:
    analysis = synthetic_analysis([8.0], 32.0)
    overrides = PlanOverrides(tempo_bpm=120.0, added_segment_starts_s=(16.0, 31.5))
    plan = make_plan(analysis, overrides, chord_model=chord_model)
    at_16, at_31 = plan.section_landings_s([16.0, 31.5])
    assert at_16 == pytest.approx(16.0, abs=0.5)
    assert at_31 is None  # not "at 16 s"
    # two starts a bar apart at most: one segment start, the nearer asked time has it
    close = make_plan(
        analysis,
        PlanOverrides(tempo_bpm=120.0, added_segment_starts_s=(20.6, 20.0)),
        chord_model=chord_model,
    )
    assert close.section_landings_s([20.6, 20.0]) == [None, pytest.approx(20.0)]


def test_sections_only_ignore_the_cuts(chord_model) -> None:
    analysis = synthetic_analysis([3.0, 6.5, 9.0, 14.0], 32.0)
    none = make_plan(
        analysis, PlanOverrides(tempo_bpm=120.0, segment_starts_s=()), chord_model=chord_model
    )
    # 16 bars of 2 s phrased on their own: four 4-bar phrases, no boundary at a cut
    assert np.allclose(none.segment_boundaries_s(), [0, 8, 16, 24, 32])
    assert none.provenance["segments"] == "user"
    with pytest.raises(PlanError, match="inside the video"):
        make_plan(analysis, PlanOverrides(added_segment_starts_s=(40.0,)), chord_model=chord_model)


def test_the_users_progression_starts_again_with_each_section(chord_model) -> None:
    analysis = synthetic_analysis([], 32.0)
    chords = ("C:maj", "G:maj", "A:min", "F:maj")
    overrides = PlanOverrides(
        tempo_bpm=120.0, chords=chords, segment_starts_s=(8.0, 14.0), section_form=("A", "B", "A")
    )
    plan = make_plan(analysis, overrides, chord_model=chord_model)
    assert plan.offset_s == 0.0  # 2 s bars: the sections start at bars 4 and 7
    labels = [chord.label.split(":")[0] for chord in plan.chords]
    assert labels[:11] == ["C", "G", "A", "F", "C", "G", "A", "C", "G", "A", "F"]
    assert [seg.recalls for seg in plan.segments if seg.start_beat >= 28] == [0, 0, 0]
    # without sections the progression loops from the first bar on
    plain = make_plan(analysis, PlanOverrides(chords=chords), chord_model=chord_model)
    assert [c.label for c in plain.chords[:8]] == [*chords, *chords]


def test_a_looped_return_takes_its_first_occurrences_chords_lap_by_lap(chord_model) -> None:
    """A two-bar A returning for four bars plays A twice, chords and all, though the user's
    progression is four bars long."""
    chords = ("C:maj", "G:maj", "A:min", "F:maj")
    overrides = PlanOverrides(
        tempo_bpm=120.0, chords=chords, segment_starts_s=(4.0, 8.0), section_form=("A", "B", "A")
    )
    plan = make_plan(synthetic_analysis([], 16.0), overrides, chord_model=chord_model)
    assert [(seg.start_beat, seg.recalls) for seg in plan.segments] == [
        (0, -1),
        (8, -1),
        (16, 0),
        (24, 0),
    ]
    labels = [chord.label.split(":")[0] for chord in plan.chords]
    assert labels[4:7] == ["C", "G", "C"]  # the last bar keeps the progression's cadence


def test_a_merged_start_does_not_restart_the_progression(chord_model) -> None:
    chords = ("C:maj", "G:maj", "A:min", "F:maj")
    overrides = PlanOverrides(tempo_bpm=120.0, chords=chords, added_segment_starts_s=(8.0, 8.6))
    plan = make_plan(synthetic_analysis([], 16.0), overrides, chord_model=chord_model)
    labels = [chord.label.split(":")[0] for chord in plan.chords]
    assert labels == ["C", "G", "A", "F", "C", "G", "A", "F"]


def test_a_forms_opening_section_must_be_heard(chord_model) -> None:
    overrides = PlanOverrides(
        tempo_bpm=120.0, added_segment_starts_s=(0.1,), section_form=("A", "B")
    )
    with pytest.raises(PlanError, match="between the music.s start and 0.1 s"):
        make_plan(synthetic_analysis([], 16.0), overrides, chord_model=chord_model)
    assert PlanOverrides(segment_starts_s=(np.float32(3.0),)).segment_starts_s  # numpy numbers


def test_the_key_comes_from_the_users_chords_unless_the_user_names_one(chord_model) -> None:
    analysis = synthetic_analysis([4.0, 8.0], 16.0, valence=0.9)  # a happy video: major
    chords = ("A:min", "D:min", "E:7", "A:min")
    plan = make_plan(analysis, PlanOverrides(chords=chords), chord_model=chord_model)
    assert plan.key_name == "A minor" and plan.provenance["key"] == "the user's chords"
    assert [c.label for c in plan.chords[:5]] == [*chords, "A:min"]
    named = make_plan(
        analysis, PlanOverrides(chords=chords, key="C major"), chord_model=chord_model
    )
    assert named.key_name == "C major" and named.provenance["key"] == "user"


# --- the form ------------------------------------------------------------------------------


def test_a_form_is_read_and_checked_against_the_sections() -> None:
    assert parse_form("A B A C") == parse_form("ABAC") == parse_form("a-b-a-c")
    assert parse_form("Intro, Verse, Verse") == ("INTRO", "VERSE", "VERSE")
    assert parse_form("") is None
    options = ComposeOptions(sections=(10.0, 20.0), form=("a", "b", "A"))
    assert options.form == ("A", "B", "A")
    assert ComposeOptions.from_dict(options.to_dict()) == options
    with pytest.raises(PlanError, match="give the section starts too"):
        ComposeOptions(form=("A", "B"))
    with pytest.raises(PlanError, match="3 labels for 2 sections"):
        ComposeOptions(sections=(10.0,), form=("A", "B", "A"))
    with pytest.raises(PlanError, match="letters or digits"):
        ComposeOptions(sections=(10.0,), form=("A", "B!"))


def test_a_returning_section_is_cut_as_its_first_occurrence_and_recalls_it_bar_for_bar() -> None:
    # A: beats 0-32 as two phrases (16 + 16); B: 32-48; A again, 40 beats, cut by shot cuts
    # at 52 and 70 and split at 64: it is cut as the first A was, looped, the cuts ignored
    edges = [0, 16, 32, 48, 52, 64, 70, 88]
    out, recalls = form_segments(edges, [32, 48], ("A", "B", "A"), min_beats=4)
    assert out == [0, 16, 32, 48, 64, 80, 88]
    assert recalls == [-1, -1, -1, 0, 1, 0]
    # a shorter return plays the start of the first occurrence; a too-short tail joins in
    out, recalls = form_segments([0, 16, 32, 40, 58], [32], ("A", "A"), min_beats=4)
    assert (out, recalls) == ([0, 16, 32, 48, 58], [-1, -1, 0, 1])
    out, recalls = form_segments([0, 16, 32, 50], [32], ("A", "A"), min_beats=4)
    assert (out, recalls) == ([0, 16, 32, 50], [-1, -1, 0])  # 16 + 2: the 2 joins
    # new labels keep their own segments and recall nothing
    assert form_segments(edges, [32, 48], ("A", "B", "C"), 4) == (edges, [-1] * 7)


def test_a_form_brings_back_the_music_and_chords_of_its_sections(chord_model) -> None:
    analysis = synthetic_analysis([5.0, 13.0, 21.0], 32.0)
    overrides = PlanOverrides(
        tempo_bpm=120.0,
        segment_starts_s=(8.0, 15.3, 24.9),  # no phase puts all three on 2 s bar lines
        section_form=("A", "B", "A", "B"),
    )
    plan = make_plan(analysis, overrides, chord_model=chord_model)
    starts = plan.segment_boundaries_s()[1:4]  # the last B loops B: a segment more
    assert np.abs(starts - [8.0, 15.3, 24.9]).max() <= 1.0  # within half a bar
    assert plan.section_landings_s([15.3])[0] == pytest.approx(starts[1])
    assert all(seg.start_beat % 4 == 0 for seg in plan.segments)  # each on a downbeat
    without_form = replace(overrides, section_form=None)
    beats = [seg.start_beat for seg in make_plan(analysis, without_form).segments]
    assert any(beat % 4 for beat in beats)  # as cuts go: on a beat line
    assert [seg.recalls for seg in plan.segments] == [-1, -1, 0, 1, 1]
    assert plan.provenance["recalls"] == "the user's form"
    labels = {chord.bar: chord.label for chord in plan.chords if chord.beat == 0}
    assert [labels.get(bar) for bar in range(8, 12)] == [labels.get(bar) for bar in range(0, 4)]
    with pytest.raises(PlanError, match="2 labels for 4 sections"):
        PlanOverrides(segment_starts_s=(8.3, 15.9, 24.2), section_form=("A", "B"))
    # sections that would share a bar: refused, naming them
    tight = PlanOverrides(tempo_bpm=120.0, segment_starts_s=(8.0, 8.9), section_form=("A",) * 3)
    with pytest.raises(PlanError, match="between 8 s and 8.9 s there is less than one"):
        make_plan(analysis, tight, chord_model=chord_model)


def test_a_return_with_cuts_inside_repeats_every_bar_of_its_first_occurrence(chord_model) -> None:
    """The first A is cut at 4 s; the return (from 16 s) has a cut at 26 s of its own. The
    return is cut as the first A was, so its bars follow the first A's one for one."""
    analysis = synthetic_analysis([4.0, 26.0], 32.0)
    overrides = PlanOverrides(
        tempo_bpm=120.0, added_segment_starts_s=(16.0,), section_form=("A", "A")
    )
    plan = make_plan(analysis, overrides, chord_model=chord_model)
    assert [(seg.start_beat, seg.recalls) for seg in plan.segments] == [
        (0, -1),
        (8, -1),
        (32, 0),
        (40, 1),
    ]
    labels = {chord.bar: chord.label for chord in plan.chords if chord.beat == 0}
    # every bar but the last (which keeps its cadence) repeats its bar of the first A
    assert [labels.get(bar) for bar in range(8, 15)] == [labels.get(bar) for bar in range(7)]


# --- the command line --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--chords", "C H7"], "cannot read the chord 'H7'"),
        (["--sections", "0:99"], "run 0-59"),
        (["--sections", "3", "--form", "A B C"], "3 labels for 2 sections"),
    ],
)
def test_the_command_line_refuses_bad_structure_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path, flags: list[str], message: str
) -> None:
    argv = ["generate", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "o"), *flags]
    try:
        code = cli_main(argv)  # refused by ComposeOptions: "error: ...", exit status 2
    except SystemExit as exit_info:  # refused by argparse while reading the flag
        code = int(str(exit_info.code))
    assert code == 2
    assert message in capsys.readouterr().err
