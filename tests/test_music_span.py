"""Music over part of a video: the options and their refusals, the plan made for the part
alone and placed in video time, the score cut to it, the duck only under it, and the whole
path through the CLI with a real video, FluidSynth and ffmpeg."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from diffbgm.arrange.score import to_video_time
from diffbgm.errors import PlanError
from diffbgm.music.harmony import load_chord_model
from diffbgm.options import ComposeOptions, parse_sections, parse_time
from diffbgm.plan import MusicPlan, PlanOverrides, make_plan
from diffbgm.plan.span import analysis_within
from tests.test_plan import synthetic_analysis

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "checkpoints" / "diffbgm-tiny"
CUTS = [4.0, 9.3, 15.1, 21.7, 26.0]
MOTION = [0.1, 0.3, 0.5, 0.2, 0.6, 0.1]


@pytest.fixture(scope="module")
def chord_model():
    return load_chord_model()


@pytest.fixture(scope="module")
def analysis():
    return synthetic_analysis(CUTS, 30.0, motion=MOTION)


# --- reading the times -------------------------------------------------------------------


def test_a_time_is_read_as_seconds_or_minutes_and_seconds() -> None:
    assert parse_time("0:04") == 4.0
    assert parse_time(" 12.5 ") == 12.5
    assert parse_time("1:02.5") == 62.5
    assert parse_time("12,5") == 12.5  # one time: a decimal comma cannot be two times
    assert parse_time("") is None and parse_time(None) is None and parse_time("  ") is None
    for bad, message in [
        ("-1", "before it"),
        ("abc", "cannot read the time"),
        ("1:75", "run 0-59"),
        ("9" * 40, "write seconds or m:ss"),
    ]:
        with pytest.raises(PlanError, match=message):
            parse_time(bad)


def test_a_decimal_comma_among_section_times_is_refused_not_guessed() -> None:
    with pytest.raises(PlanError, match=r"\(12\.5\)"):
        parse_sections("12,5")
    with pytest.raises(PlanError, match="space after the comma"):
        parse_sections("0:11,0:15")
    assert parse_sections("11.9, 15.7,  23") == (11.9, 15.7, 23.0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"music_start_s": -1.0}, "0 s or later"),
        ({"music_end_s": float("nan")}, "number of seconds, not nan"),
        ({"music_start_s": True}, "number of seconds"),
        ({"music_start_s": 5.0, "music_end_s": 6.0}, "at least 2 s"),
        ({"music_start_s": 9.0, "music_end_s": 3.0}, "would last 0 s"),
        ({"music_end_s": 1.0}, "at least 2 s"),
        ({"music_start_s": 10.0, "sections": (5.0,)}, "inside the music"),
        ({"music_end_s": 10.0, "sections": (12.0,)}, "inside the music"),
    ],
)
def test_a_bad_span_is_refused_before_any_work(values: dict, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        ComposeOptions(**values)


def test_a_span_past_the_video_is_refused_once_its_length_is_known() -> None:
    options = ComposeOptions(music_start_s=12.0)
    options.check_for_video(20.0)
    with pytest.raises(PlanError, match="cannot start at 25 s: the video lasts 20.00 s"):
        ComposeOptions(music_start_s=25.0).check_for_video(20.0)
    with pytest.raises(PlanError, match="cannot end at 21 s"):
        ComposeOptions(music_end_s=21.0).check_for_video(20.0)
    ComposeOptions(music_end_s=20.5).check_for_video(20.0)  # the end, typed rounded up
    with pytest.raises(PlanError, match="would last 1 s"):
        ComposeOptions(music_start_s=19.0).check_for_video(20.0)


def test_the_span_survives_the_report() -> None:
    options = ComposeOptions(music_start_s=4.0, music_end_s=28.5, sections=(12.0,))
    assert ComposeOptions.from_dict(options.to_dict()) == options
    assert ComposeOptions.from_dict({"seed": 1}).music_start_s is None  # older reports


# --- the plan ----------------------------------------------------------------------------


def test_the_analysis_within_a_span_keeps_the_shots_indices(analysis) -> None:
    inside = analysis_within(analysis, 5.0, 24.0)
    assert inside.info.duration_s == 19.0
    assert [s.index for s in inside.shots] == [1, 2, 3, 4]
    assert inside.shots[0].start_s == 0.0 and inside.shots[-1].end_s == 19.0
    assert np.allclose(inside.cut_times_s, [4.3, 10.1, 16.7])


def test_a_plan_for_part_of_the_video_covers_that_part_only(analysis, chord_model) -> None:
    plan = make_plan(
        analysis, PlanOverrides(music_start_s=5.0, music_end_s=24.0), chord_model=chord_model
    )
    start, end = plan.music_span_s
    bar = plan.bar_s
    assert not plan.covers_whole_video and plan.duration_s == 30.0
    assert start - 0.26 <= 5.0 <= start  # on the bar line just after the asked start
    assert plan.offset_s == pytest.approx(start)  # ... which is the first downbeat
    assert end == pytest.approx(24.0, abs=0.26)  # the last bar ends near the asked end
    assert plan.offset_s + plan.n_bars * bar == pytest.approx(end)
    bounds = plan.segment_bounds_s()
    assert bounds[0][0] == start and bounds[-1][1] == end
    # the cuts inside the span start segments; the shots outside take no part
    inner = [t for t in CUTS if start < t < end]
    starts = np.asarray([a for a, _ in bounds[1:]])
    assert all(np.abs(starts - t).min() <= 60.0 / plan.tempo_bpm for t in inner)
    assert len(plan.cut_residuals_s) == len(inner)
    shots = {i for seg in plan.segments for i in seg.shot_indices}
    assert shots <= {1, 2, 3, 4}
    assert plan.provenance["music_span"] == "user"
    assert MusicPlan.from_dict(json.loads(plan.to_json())) == plan


def test_the_music_of_a_part_follows_that_part(chord_model) -> None:
    """A still opening and a busy rest: music for the busy part alone is planned from it
    (its density), not from the whole video's average."""
    moving = synthetic_analysis([10.0], 20.0, motion=[0.02, 0.6])
    whole = make_plan(moving, chord_model=chord_model)
    part = make_plan(moving, PlanOverrides(music_start_s=10.0), chord_model=chord_model)
    assert part.music_span_s[0] == pytest.approx(10.0, abs=0.26)
    assert part.music_span_s[1] == 20.0  # the video's end: no snapping asked
    densities = [seg.dynamic["density"] for seg in part.segments]
    assert min(densities) > whole.segments[0].dynamic["density"]


def test_sections_and_a_form_inside_the_span_count_in_video_time(analysis, chord_model) -> None:
    plan = make_plan(
        analysis,
        PlanOverrides(
            music_start_s=5.0,
            added_segment_starts_s=(12.0, 19.0),
            section_form=("A", "B", "A"),
        ),
        chord_model=chord_model,
    )
    landings = plan.section_landings_s([12.0, 19.0])
    assert all(at is not None and abs(at - t) <= plan.bar_s / 2 for t, at in zip(
        [12.0, 19.0], landings, strict=True
    ))  # fmt: skip
    assert any(seg.recalls >= 0 for seg in plan.segments)  # the third section repeats the first
    with pytest.raises(PlanError, match=r"inside the music \(5-24 s\): 26"):
        make_plan(
            analysis,
            PlanOverrides(music_start_s=5.0, music_end_s=24.0, added_segment_starts_s=(26.0,)),
            chord_model=chord_model,
        )


def test_a_start_just_before_a_bar_line_moves_onto_it_with_the_sections_in_place(
    chord_model,
) -> None:
    """Bar lines every 2 s (120 BPM; the cuts alone set the phase): music asked from 5.9 s
    starts on the line at 6 s, planned again from there, and a section asked at 10.24 s
    still goes to the bar line at 10 s (0.24 s away), as it would without the move."""
    from diffbgm.plan import PlanConfig

    cuts = synthetic_analysis([4.0, 8.0, 12.0, 16.0], 20.0)
    config = PlanConfig(start_weight=0.0, section_weight=0.0, span_edge_weight=0.0)
    plan = make_plan(
        cuts,
        PlanOverrides(tempo_bpm=120.0, music_start_s=5.9, added_segment_starts_s=(10.24,)),
        chord_model=chord_model,
        config=config,
    )
    assert plan.music_span_s == (pytest.approx(6.0), 20.0)
    assert plan.offset_s == pytest.approx(6.0)
    assert plan.section_landings_s([10.24]) == [pytest.approx(10.0)]


def test_an_end_typed_a_little_past_the_video_is_its_end(analysis, chord_model) -> None:
    ComposeOptions(music_end_s=30.4).check_for_video(30.0)
    plan = make_plan(analysis, PlanOverrides(music_end_s=30.4), chord_model=chord_model)
    assert plan.covers_whole_video
    start_only = make_plan(analysis, PlanOverrides(music_start_s=21.1), chord_model=chord_model)
    assert start_only.music_span_s[1] == 30.0  # exactly the video's end: no fade of our own


def test_without_a_span_the_plan_is_the_whole_video(analysis, chord_model) -> None:
    plan = make_plan(analysis, chord_model=chord_model)
    assert plan.covers_whole_video and plan.music_span_s == (0.0, 30.0)
    data = plan.to_dict()
    assert data["music_start_s"] == 0.0 and data["music_end_s"] == 30.0
    del data["music_start_s"], data["music_end_s"]  # a plan written before spans existed
    assert MusicPlan.from_dict(data) == plan


def test_a_plan_whose_grid_misses_its_music_is_refused(analysis, chord_model) -> None:
    plan = make_plan(
        analysis, PlanOverrides(music_start_s=5.0, music_end_s=24.0), chord_model=chord_model
    )
    data = plan.to_dict()
    with pytest.raises(PlanError, match="offset"):
        MusicPlan.from_dict({**data, "offset_s": 0.0})  # a grid starting bars before the music
    with pytest.raises(PlanError, match="within the video"):
        MusicPlan.from_dict({**data, "music_end_s": 31.0})


# --- the score, the duck ------------------------------------------------------------------


def test_the_score_is_cut_to_the_span(analysis, chord_model) -> None:
    plan = make_plan(
        analysis, PlanOverrides(music_start_s=5.0, music_end_s=24.0), chord_model=chord_model
    )
    start, end = plan.music_span_s
    piano = pretty_midi.Instrument(0)
    grid_end = plan.n_bars * plan.bar_s
    piano.notes = [  # grid time: a pickup before the music, one across its end, one inside
        pretty_midi.Note(80, 60, -0.5, 0.5),
        pretty_midi.Note(80, 62, 2.0, 3.0),
        pretty_midi.Note(80, 64, grid_end - 0.3, grid_end + 1.0),
    ]
    piano.control_changes = [
        pretty_midi.ControlChange(64, 127, -0.2),
        pretty_midi.ControlChange(64, 127, grid_end + 0.5),
    ]
    to_video_time(piano, plan)
    spans = [(n.start, n.end) for n in piano.notes]
    assert spans[0] == (start, pytest.approx(start + 0.5))
    assert spans[1] == (pytest.approx(start + 2.0), pytest.approx(start + 3.0))
    assert spans[2][1] == pytest.approx(end)
    assert [(c.time, c.value) for c in piano.control_changes] == [(start, 127), (end, 0)]


def test_an_end_that_cuts_the_last_bar_fades_the_music_out(analysis, chord_model) -> None:
    from diffbgm.arrange.score import END_FADE_S, fade_a_cut_ending

    plan = make_plan(
        analysis, PlanOverrides(music_start_s=5.0, music_end_s=24.0), chord_model=chord_model
    )
    grid_end = plan.offset_s + plan.n_bars * plan.bar_s
    assert plan.music_span_s[1] == pytest.approx(grid_end)  # on its bar line: no fade

    def volume_events(plan: MusicPlan) -> list[tuple[float, int]]:
        piano = pretty_midi.Instrument(0)
        piano.notes = [pretty_midi.Note(80, 60, plan.music_span_s[0], plan.music_span_s[1])]
        piano.control_changes = [pretty_midi.ControlChange(7, 90, plan.music_span_s[0])]
        fade_a_cut_ending(piano, plan)
        return [(c.time, c.value) for c in piano.control_changes if c.number == 7]

    assert volume_events(plan) == [(plan.music_span_s[0], 90)]
    cut = MusicPlan.from_dict({**plan.to_dict(), "music_end_s": grid_end - 0.6})
    events = volume_events(cut)
    times, values = zip(*events[1:], strict=True)
    assert times[-1] == pytest.approx(grid_end - 0.6) and values[-1] == 0
    assert times[0] > grid_end - 0.6 - END_FADE_S
    assert list(values) == sorted(values, reverse=True) and values[0] < 90
    whole = make_plan(analysis, chord_model=chord_model)  # the render fades the video's end
    assert volume_events(whole) == [(0.0, 90)]


def _levels(path: Path, windows: list[tuple[float, float]]) -> list[float]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray() for f in container.decode(stream)]
        rate = stream.rate
    sound = np.concatenate(frames, axis=1)[0]
    return [float(np.sqrt(np.mean(sound[int(a * rate) : int(b * rate)] ** 2))) for a, b in windows]


def test_the_videos_sound_is_ducked_only_under_the_music(tmp_path: Path) -> None:
    from diffbgm.video.mux import encode_sound_track
    from tests.video_fixtures import SyntheticShot, write_video

    clip = write_video(
        tmp_path / "tone.mp4", shots=[SyntheticShot(6.0, (90, 90, 90))], with_audio=True
    )
    silence = tmp_path / "music.wav"
    sf.write(silence, np.zeros(6 * 22050), 22050)
    windows = [(0.5, 1.2), (2.7, 3.3), (4.9, 5.5)]
    whole = _levels(encode_sound_track(clip, silence, tmp_path / "a.m4a", 6.0), windows)
    part = _levels(
        encode_sound_track(clip, silence, tmp_path / "b.m4a", 6.0, music_span_s=(2.0, 4.0)),
        windows,
    )
    tone = 0.1 / np.sqrt(2)
    assert whole == pytest.approx([0.2 * tone] * 3, rel=0.15)  # ducked throughout
    assert part == pytest.approx([tone, 0.2 * tone, tone], rel=0.15)  # only under the music
    # an MPEG-TS starts its clock at 1.4 s: ffmpeg counts the duck's time from the file's start
    from diffbgm.video.mux import ffmpeg_exe

    ts = tmp_path / "tone.ts"
    remux = [ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(clip), "-c:v", "copy", str(ts)]
    subprocess.run(remux, check=True)
    late_clock = encode_sound_track(ts, silence, tmp_path / "c.m4a", 6.0, music_span_s=(2.0, 4.0))
    assert _levels(late_clock, windows) == pytest.approx([tone, 0.2 * tone, tone], rel=0.15)


# --- the whole path -----------------------------------------------------------------------


def test_the_cli_composes_music_for_part_of_a_video(tmp_path: Path) -> None:
    if not (TINY / "config.json").exists():
        pytest.skip(f"tiny checkpoint missing at {TINY}")
    from tests.video_fixtures import SyntheticShot, write_video

    shots = [
        SyntheticShot(3.0, (200, 40, 40), 0.0),
        SyntheticShot(3.0, (30, 60, 190), 160.0),
        SyntheticShot(3.0, (40, 170, 60), 60.0),
    ]
    clip = write_video(tmp_path / "clip.mp4", shots=shots, with_audio=True)
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable, "-m", "diffbgm", "generate", str(clip), "--out", str(out),
            "--model", str(TINY), "--steps", "4", "--music-start", "0:02",
            "--music-end", "7,5", "--audio", "duck", "-q",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "music from" in proc.stdout
    folder = out  # one video: its result is the folder itself
    report = json.loads((folder / "report.json").read_text())
    assert report["options"]["music_start_s"] == 2.0
    assert report["options"]["music_end_s"] == 7.5
    plan = MusicPlan.from_dict(report["plan"])
    start, end = plan.music_span_s
    assert 2.0 <= start <= 2.26 and abs(end - 7.5) <= 0.26
    midi = pretty_midi.PrettyMIDI(str(folder / "score.mid"))
    notes = [n for i in midi.instruments for n in i.notes]
    tick = 60.0 / plan.tempo_bpm / midi.resolution  # the MIDI file's rounding of times
    assert notes and min(n.start for n in notes) >= start - tick
    assert max(n.end for n in notes) <= end + tick
    audio, rate = sf.read(str(folder / "music.wav"))
    assert len(audio) / rate == pytest.approx(9.0, abs=0.3)  # in video time, the whole video
    assert np.abs(audio[: int(1.9 * rate)]).max() < 1e-3  # silent before the music
    assert np.sqrt(np.mean(audio[int(start * rate) : int(end * rate)] ** 2)) > 1e-3
    # the video's own tone as loud before and after the music as a tone never ducked, the
    # music between (ffmpeg spreads the mono tone over the two channels at -3 dB each)
    before, under, after = _levels(folder / "video.mp4", [(0.3, 1.4), (3.0, 6.0), (8.1, 8.8)])
    assert before == pytest.approx(after, rel=0.1)
    assert before == pytest.approx(0.1 / 2, rel=0.15)
    assert under > before
    # regenerating a segment keeps the span
    again = subprocess.run(
        [
            sys.executable, "-m", "diffbgm", "regenerate", str(folder), "--segment", "1",
            "--seed", "5", "--out", str(tmp_path / "regen"), "--model", str(TINY), "-q",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    regenerated = json.loads((tmp_path / "regen" / "report.json").read_text())
    assert MusicPlan.from_dict(regenerated["plan"]).music_span_s == (start, end)


def test_the_cli_refuses_a_bad_time_before_loading_the_model(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "diffbgm", "generate", "x.mp4", "--out", str(tmp_path),
         "--music-start", "1:75"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--music-start" in proc.stderr and "run 0-59" in proc.stderr
