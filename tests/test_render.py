"""Rendering MIDI to WAV with FluidSynth: level, length, and the failures a user can meet."""

from __future__ import annotations

import shutil
import stat
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pretty_midi
import pyloudnorm
import pytest
import soundfile

from diffbgm.errors import RenderError
from diffbgm.music import render
from diffbgm.music.level import (
    LOUDNESS_TOLERANCE_LU as LOUDNESS_TOLERANCE,
)
from diffbgm.music.level import (
    BlockGain,
    LevelConfig,
    apply_limiter,
    level_gain,
    measure_lufs,
    true_peak,
)
from diffbgm.music.sources import ArrayAudio, RawAudio, stretches

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None, reason="the fluidsynth binary is not installed"
)


def short_piece(seconds: float = 3.0) -> pretty_midi.PrettyMIDI:
    """A piano playing one chord per half second for `seconds`."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=0)
    for i in range(int(seconds * 2)):
        for pitch in (48 + i % 5, 60 + i % 7, 64 + i % 3):
            piano.notes.append(pretty_midi.Note(70 + 5 * (i % 4), pitch, i * 0.5, i * 0.5 + 0.45))
    midi.instruments.append(piano)
    return midi


@needs_fluidsynth
def test_render_is_audible_long_enough_and_at_target_loudness(tmp_path: Path) -> None:
    midi_path = tmp_path / "piece.mid"
    midi = short_piece()
    midi.write(str(midi_path))
    result = render.render_wav(midi_path, tmp_path / "out" / "piece.wav", target_lufs=-16.0)

    audio, rate = soundfile.read(str(result.path), always_2d=True)
    assert soundfile.info(str(result.path)).subtype == "PCM_16"
    assert rate == 44100
    end = midi.get_end_time()
    assert end - 0.1 <= audio.shape[0] / rate <= end + LevelConfig().tail_s
    assert result.duration_s == pytest.approx(audio.shape[0] / rate)
    assert np.max(np.abs(audio)) > 0.1
    assert true_peak(audio) <= LevelConfig().ceiling
    measured = pyloudnorm.Meter(rate).integrated_loudness(audio)
    assert abs(measured - (-16.0)) < 1.0
    assert abs(result.lufs - (-16.0)) < 1.0


@needs_fluidsynth
def test_render_accepts_a_pretty_midi_object_and_another_target(tmp_path: Path) -> None:
    result = render.render_wav(short_piece(2.0), tmp_path / "quiet.wav", target_lufs=-23.0)
    audio, rate = soundfile.read(str(result.path), always_2d=True)
    assert abs(pyloudnorm.Meter(rate).integrated_loudness(audio) - (-23.0)) < 1.0


@needs_fluidsynth
def test_a_midi_without_notes_is_reported_as_silent(tmp_path: Path) -> None:
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    midi.instruments.append(pretty_midi.Instrument(program=0))
    with pytest.raises(RenderError, match="silence"):
        render.render_wav(midi, tmp_path / "silent.wav")


def test_missing_fluidsynth_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no fluidsynth on the PATH
    with pytest.raises(RenderError, match="install the 'fluidsynth' package"):
        render.render_wav(short_piece(1.0), tmp_path / "x.wav")


def test_failing_fluidsynth_reports_its_exit_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin" / "fluidsynth"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'synth exploded' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(fake.parent))
    with pytest.raises(RenderError, match=r"exit status 3.*synth exploded"):
        render.render_wav(short_piece(1.0), tmp_path / "x.wav")


def test_a_render_that_hangs_is_killed_at_its_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin" / "fluidsynth"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nexec {shutil.which('sleep')} 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(fake.parent))
    short_piece(1.0).write(str(tmp_path / "x.mid"))
    run = render.FluidSynthRun(tmp_path / "x.mid", tmp_path / "x.wav", Path("font.sf2"), 44100)
    started = time.perf_counter()
    with pytest.raises(RenderError, match="took longer than 0.3 s"):
        run.wait(timeout_s=0.3)
    assert time.perf_counter() - started < 10.0  # killed, not waited out
    assert run._process.poll() is not None


@needs_fluidsynth
def test_dynamic_sample_loading_renders_the_same_audio(tmp_path: Path) -> None:
    midi_path = tmp_path / "piece.mid"
    short_piece(2.0).write(str(midi_path))
    font = render.default_soundfont()
    plain, dynamic = tmp_path / "plain.wav", tmp_path / "dynamic.wav"
    assert render._fluidsynth(midi_path, plain, font, 44100, []).returncode == 0
    render.run_fluidsynth(midi_path, dynamic, font, 44100)
    # the samples, not the files: libsndfile stamps a float WAV's PEAK chunk with the time of
    # writing, so two renders a second apart differ in their headers (this test failed so)
    plain_audio, plain_rate = soundfile.read(plain, dtype="float32")
    dynamic_audio, dynamic_rate = soundfile.read(dynamic, dtype="float32")
    assert plain_rate == dynamic_rate and np.array_equal(plain_audio, dynamic_audio)


@needs_fluidsynth
def test_a_fluidsynth_without_dynamic_sample_loading_still_renders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older FluidSynth refuses a setting it does not know (exit status 255): the render is
    run again without it."""
    real = shutil.which("fluidsynth")
    fake = tmp_path / "bin" / "fluidsynth"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in *dynamic-sample-loading*)\n'
        "  echo \"Setting parameter 'synth.dynamic-sample-loading' not found\" >&2; exit 255;;\n"
        "esac\n"
        f'exec {real} "$@"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(fake.parent))
    result = render.render_wav(short_piece(1.0), tmp_path / "x.wav")
    audio, _ = soundfile.read(str(result.path), always_2d=True)
    assert np.max(np.abs(audio)) > 0.1


def test_a_file_that_is_no_soundfont_is_refused_before_fluidsynth(tmp_path: Path) -> None:
    """FluidSynth 2.3 exits 0 on an unreadable soundfont and renders with its own default
    font, so neither its exit status nor the output checks would notice."""
    fake_font = tmp_path / "not-a-font.sf2"
    fake_font.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt not a soundfont")
    with pytest.raises(RenderError, match="not a SoundFont 2 file"):
        render.render_wav(short_piece(1.0), tmp_path / "x.wav", soundfont=fake_font)
    render.check_soundfont(render.default_soundfont())  # the shipped TimGM6mb passes


def test_missing_soundfont_and_unreadable_midi_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="soundfont not found"):
        render.render_wav(short_piece(1.0), tmp_path / "x.wav", soundfont=tmp_path / "no.sf2")
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file")
    with pytest.raises(RenderError, match="cannot read MIDI file"):
        render.render_wav(bad, tmp_path / "x.wav")


def test_wrong_length_is_refused() -> None:
    audio = np.full((44100, 2), 0.1)
    with pytest.raises(RenderError, match="MIDI ends at 10.00 s"):
        render.check_rendered(ArrayAudio(audio), 44100, 10.0, tail_s=4.0, source="x.mid")
    render.check_rendered(ArrayAudio(audio), 44100, midi_end_s=0.5, tail_s=4.0, source="x.mid")


def test_true_peak_sees_the_peaks_between_samples() -> None:
    rate = 44100
    n = np.arange(rate)
    # a sine at a quarter of the rate, sampled 45 degrees off its crests: every sample is
    # at 0.707 while the wave between them reaches 1.0
    wave = np.sin(2 * np.pi * n / 4 + np.pi / 4)[:, None]
    assert np.max(np.abs(wave)) == pytest.approx(0.7071, abs=1e-3)
    assert true_peak(wave, oversample=4) == pytest.approx(1.0, abs=0.02)
    assert true_peak(wave, oversample=1) == pytest.approx(0.7071, abs=1e-3)


def test_fast_loudness_equals_pyloudnorm() -> None:
    rate = 44100
    rng = np.random.default_rng(0)
    t = np.arange(rate * 5) / rate
    audio = np.stack([np.sin(2 * np.pi * 440 * t), rng.normal(0, 0.1, t.size)], axis=1)
    audio *= np.where(t < 2.0, 0.05, 0.5)[:, None]  # a quiet start: both gates matter
    expected = pyloudnorm.Meter(rate).integrated_loudness(audio)
    assert measure_lufs(audio, rate) == pytest.approx(expected, abs=0.01)


def test_level_reaches_the_streaming_target_under_the_true_peak_ceiling() -> None:
    rate = 44100
    rng = np.random.default_rng(1)
    t = np.arange(rate * 4) / rate
    audio = rng.normal(0, 0.05, (t.size, 2)) * np.where(t % 1.0 < 0.05, 20.0, 1.0)[:, None]
    level = LevelConfig()
    assert (level.target_lufs, level.true_peak_dbtp) == (-14.0, -1.0)  # the streaming target
    decided = level_gain(audio, rate, level)
    scaled = audio * decided.gain.samples(0, audio.shape[0])[:, None]
    assert true_peak(scaled) <= level.ceiling
    assert decided.true_peak == pytest.approx(true_peak(scaled), rel=1e-6)
    assert decided.lufs == pytest.approx(
        pyloudnorm.Meter(rate).integrated_loudness(scaled), abs=0.01
    )
    # the relative gate takes in the quiet stretches as the bursts are limited: the loudness
    # jumps by 4 LU between two gains 1 dB apart, and the search still lands on the target
    assert abs(decided.lufs - level.target_lufs) < 0.1
    quieter = level_gain(audio, rate, LevelConfig(target_lufs=-23.0))
    assert quieter.lufs == pytest.approx(-23.0, abs=0.2)
    with pytest.raises(RenderError, match="outside"):
        LevelConfig(true_peak_dbtp=3.0)


def test_level_reaches_the_target_on_sharp_attacks_that_need_heavy_limiting() -> None:
    """Plucks that decay in 7 ms, four a second: -14 LUFS under -1 dBTP needs about 36 dB of
    limiting. Each dB of gain then adds a fraction of a dB of loudness, and the limiter cuts
    the attacks where the energy is: the old loop ("add what is missing", an unweighted mean
    gain per hop) ended at -15.6 LUFS."""
    rate = 44100
    n = np.arange(rate // 4)
    pluck = np.exp(-n / 300) * np.sin(2 * np.pi * 440 * n / rate)
    audio = np.tile(np.stack([pluck, pluck], axis=1), (24, 1)) * 0.5
    decided = level_gain(audio, rate, LevelConfig())
    scaled = audio * decided.gain.samples(0, audio.shape[0])[:, None]
    measured = pyloudnorm.Meter(rate).integrated_loudness(scaled)
    assert measured == pytest.approx(decided.lufs, abs=0.01)
    assert abs(measured + 14.0) < LOUDNESS_TOLERANCE
    assert true_peak(scaled) <= LevelConfig().ceiling


def test_limiter_keeps_peaks_under_the_ceiling_and_leaves_quiet_audio_alone() -> None:
    rate = 44100
    t = np.arange(rate) / rate
    loud = np.sin(2 * np.pi * 220 * t) * np.where(t > 0.5, 2.0, 0.5)
    gain = np.ones(rate, dtype=np.float32)
    apply_limiter(gain, np.abs(loud).astype(np.float32), rate, ceiling=0.891, lookahead_s=0.005)
    assert np.max(np.abs(loud * gain)) <= 0.891 + 1e-6
    assert np.all(gain[: rate // 4] == 1.0)  # far from the loud part
    assert np.all(np.abs(np.diff(gain)) < 0.01)  # it ramps, it does not jump
    quiet = np.ones(rate, dtype=np.float32)
    apply_limiter(quiet, 0.1 * np.abs(loud).astype(np.float32), rate, 0.891, 0.005)
    assert np.all(quiet == 1.0)


def test_block_gain_interpolates_between_block_centres_the_same_in_any_stretch() -> None:
    gain = BlockGain(np.array([1.0, 0.5, 0.5, 1.0], dtype=np.float32), block=4, frames=16)
    whole = gain.samples(0, 16)
    assert whole[:2].tolist() == [1.0, 1.0]  # flat before the first centre (1.5)
    assert whole[3] == pytest.approx(0.8125)  # 3/8 of the way from 1.0 (at 1.5) to 0.5 (5.5)
    assert whole[14:].tolist() == [1.0, 1.0]  # flat after the last centre (13.5)
    parts = np.concatenate([gain.samples(a, b) for a, b in ((0, 3), (3, 11), (11, 16))])
    assert np.array_equal(parts, whole)
    assert np.array_equal(gain.scaled(2.0).samples(0, 16), 2 * whole)
    # the same as NumPy's linear interpolation between the centres, at any length
    values = np.random.default_rng(0).random(100).astype(np.float32)
    longer = BlockGain(values, block=32, frames=3190)
    centres = (np.arange(100) + 0.5) * 32 - 0.5
    expected = np.interp(np.arange(3190), centres, values)
    assert np.allclose(longer.samples(0, 3190), expected, atol=1e-6)
    assert np.allclose(longer.samples(1601, 1700), expected[1601:1700], atol=1e-6)


def test_the_block_limiter_holds_the_ceiling_at_every_sample() -> None:
    """Bursts 20 times louder than the rest, one sample wide and wider: the block peaks and
    the 3-block dilation keep every interpolated sample gain under what that sample needs."""
    rate = 44100
    rng = np.random.default_rng(3)
    audio = rng.normal(0, 0.05, (rate * 3, 2)).astype(np.float32)
    for start, width in ((1000, 1), (30001, 7), (60000, 300), (90017, 33)):
        audio[start : start + width] *= 20.0
    level = LevelConfig()
    decided = level_gain(audio, rate, level)
    scaled = audio * decided.gain.samples(0, audio.shape[0])[:, None]
    assert np.max(np.abs(scaled)) <= level.ceiling
    assert true_peak(scaled) <= level.ceiling
    assert decided.true_peak == pytest.approx(true_peak(scaled), rel=1e-6)
    # on target without the last safety scale (which a limiter that let peaks through, e.g.
    # without the 3-block widening, would need, costing loudness)
    assert decided.lufs == pytest.approx(level.target_lufs, abs=0.1)


def test_the_level_is_the_same_across_chunk_boundaries() -> None:
    """A low tone loud across the first chunk boundary (sample 262144): the true peak of the
    scaled audio is measured right there, where a stretch is cut for each chunk (a cut end
    rings, up to 1 dB on a 40 Hz tone, and must not be taken for a peak)."""
    rate = 44100
    n = np.arange(300_000)
    loud = np.where(np.abs(n - 262_144) < 4_000, 1.0, 0.2)
    audio = (np.sin(2 * np.pi * 40 * n / rate) * loud)[:, None].repeat(2, axis=1)
    level = LevelConfig()
    decided = level_gain(audio.astype(np.float32), rate, level)
    scaled = audio * decided.gain.samples(0, n.size)[:, None]
    assert decided.true_peak == pytest.approx(true_peak(scaled), rel=1e-5)
    assert true_peak(scaled) <= level.ceiling
    assert decided.lufs == pytest.approx(level.target_lufs, abs=0.1)


def test_trim_or_pad_makes_exact_lengths(tmp_path: Path) -> None:
    rate = 8000
    wav = tmp_path / "a.wav"
    soundfile.write(str(wav), np.full((rate * 2, 2), 0.5), rate, subtype="PCM_16")
    longer = render.trim_or_pad(wav, 3.25, tmp_path / "long.wav")
    padded, _ = soundfile.read(str(longer), always_2d=True)
    assert padded.shape == (int(3.25 * rate), 2)
    assert np.all(padded[2 * rate :] == 0)
    shorter = render.trim_or_pad(wav, 1.5)  # in place
    trimmed, _ = soundfile.read(str(shorter), always_2d=True)
    assert shorter == wav and trimmed.shape == (int(1.5 * rate), 2)
    assert trimmed[0, 0] == pytest.approx(0.5, abs=1e-4)
    assert abs(trimmed[-1, 0]) < 1e-3  # faded out, no click
    with pytest.raises(RenderError, match="not found"):
        render.trim_or_pad(tmp_path / "missing.wav", 1.0)


def test_soundfont_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(render.SOUNDFONT_ENV, raising=False)
    installed = [f for f in render.FULL_GM_SOUNDFONTS if f.is_file()]
    expected = installed[0] if installed else render.default_soundfont()
    assert render.find_soundfont() == expected  # auto: a full GM font when installed
    assert render.find_soundfont("timgm6mb") == render.default_soundfont()
    monkeypatch.setattr(render, "FULL_GM_SOUNDFONTS", (tmp_path / "absent.sf2",))
    assert render.find_soundfont("auto") == render.default_soundfont()  # the fallback
    chosen = tmp_path / "mine.sf2"
    shutil.copy(render.default_soundfont(), chosen)
    monkeypatch.setenv(render.SOUNDFONT_ENV, str(chosen))
    assert render.find_soundfont() == chosen
    monkeypatch.setenv(render.SOUNDFONT_ENV, str(tmp_path / "typo.sf2"))
    with pytest.raises(RenderError, match="soundfont not found"):
        render.find_soundfont()


def parts_piece(seconds: float = 4.0) -> pretty_midi.PrettyMIDI:
    """Three named parts and drums, as the arranger writes them (names are the stems)."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for name, program, pitches in (
        ("melody", 73, (72, 76, 79)),
        ("pad", 48, (60, 64)),
        ("bass", 32, (36,)),
    ):
        part = pretty_midi.Instrument(program=program, name=name)
        for i in range(int(seconds * 2)):
            for pitch in pitches:
                part.notes.append(pretty_midi.Note(90, pitch + i % 3, i * 0.5, i * 0.5 + 0.5))
        midi.instruments.append(part)
    drums = pretty_midi.Instrument(program=0, is_drum=True, name="Drums")
    drums.notes = [
        pretty_midi.Note(100, 36 + 6 * (i % 2), i * 0.5, i * 0.5 + 0.1)
        for i in range(int(seconds * 2))
    ]
    midi.instruments.append(drums)
    midi.instruments.append(pretty_midi.Instrument(program=0, name="empty"))  # no notes: no stem
    return midi


@needs_fluidsynth
def test_stems_sum_to_the_mix_at_the_video_length(tmp_path: Path) -> None:
    seen: list[tuple[Path, bool, bool]] = []  # on_mix: the mix, is it whole, any stem yet?
    result = render.render_stems(
        parts_piece(),
        tmp_path / "music.wav",
        tmp_path / "stems",
        duration_s=3.5,
        on_mix=lambda mix: seen.append(
            (mix, soundfile.info(str(mix)).duration == 3.5, (tmp_path / "stems").exists())
        ),
    )
    assert seen == [(tmp_path / "music.wav", True, False)]  # called once, before the stems
    assert list(result.stems) == ["melody", "pad", "bass", "drums"]
    mix, rate = soundfile.read(str(result.mix.path), always_2d=True)
    assert mix.shape[0] == int(3.5 * rate)
    for name, path in result.stems.items():
        assert path == tmp_path / "stems" / f"{name}.wav"
        stem, _ = soundfile.read(str(path), always_2d=True)
        assert stem.shape == mix.shape
        assert np.max(np.abs(stem)) > 0.01, name  # every part audible
    residual = render.stem_residual_db(result.mix.path, list(result.stems.values()))
    assert residual <= -50.0
    assert abs(pyloudnorm.Meter(rate).integrated_loudness(mix) - (-14.0)) < 0.5
    assert true_peak(mix) <= LevelConfig().ceiling
    assert result.soundfont == render.find_soundfont()
    assert set(result.timings_s) == {"synth", "level", "write"}


@needs_fluidsynth
def test_one_part_is_its_own_stem_and_silence_is_refused(tmp_path: Path) -> None:
    result = render.render_stems(short_piece(2.0), tmp_path / "music.wav", tmp_path / "stems")
    assert result.stems == {"part-1": tmp_path / "music.wav"}  # an unnamed piano
    assert not (tmp_path / "stems").exists()  # no second copy of the mix
    silent = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    silent.instruments.append(pretty_midi.Instrument(program=0, name="piano"))
    with pytest.raises(RenderError, match="silence"):
        render.render_stems(silent, tmp_path / "x.wav", tmp_path / "stems")


def test_stem_names_are_file_safe_and_unique() -> None:
    taken: set[str] = set()
    names = [render.stem_name(n, i, taken) for i, n in enumerate(["Melody", "melody", "", "a/b c"])]
    assert names == ["melody", "melody-2", "part-3", "a-b-c"]


def test_cli_sound_flags_are_checked_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from diffbgm.__main__ import main

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 10)
    out = str(tmp_path / "out")
    assert main(["generate", str(video), "--out", out, "--loudness", "3"]) == 2
    assert "loudness target 3.0 LUFS is outside" in capsys.readouterr().err
    assert (
        main(["generate", str(video), "--out", out, "--soundfont", str(tmp_path / "no.sf2")]) == 2
    )
    assert "soundfont not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_parts_peak_bounds_every_levelled_stem_sample() -> None:
    """level_gain reports the stems' peak once levelled from its block peaks, without reading
    them again; the bound holds at every sample (the gain is interpolated between blocks),
    and a hard-limited stem sits just under the ceiling."""
    rate = 8000
    t = np.arange(rate * 3) / rate
    tone = np.sin(2 * np.pi * 440 * t)[:, None] * (1 + 3 * (t % 1 < 0.1))[:, None]
    stems = [0.9 * tone, -0.8 * tone]  # the mix is 0.1 * tone: levelled, each stem would clip
    level = LevelConfig(target_lufs=-10.0)
    decided = level_gain(stems[0] + stems[1], rate, level, [ArrayAudio(s) for s in stems])
    gain = decided.gain.samples(0, tone.shape[0])[:, None]
    loudest = max(float(np.abs(stem * gain).max()) for stem in stems)
    assert loudest <= decided.parts_peak <= level.ceiling
    assert decided.parts_peak < loudest * 1.05
    assert level_gain(stems[0] + stems[1], rate, level).parts_peak == 0.0


def test_the_level_keeps_stems_under_the_ceiling_and_the_mix_on_target() -> None:
    """A low tone in one stem, mostly cancelled by the other, under noise: levelled on the mix
    alone, a stem would clip and the headroom check then lowered everything by 4.6 dB, to
    -18.6 LUFS. With the stems' peaks in the limiter the mix is on target and no stem needs
    lowering."""
    rate = 44100
    t = np.arange(rate * 6) / rate
    tone = (np.sin(2 * np.pi * 110 * t) * (t % 2 < 1))[:, None]
    noise = np.random.default_rng(0).normal(0, 0.02, (t.size, 2))
    stems = [noise + 0.3 * tone, -0.25 * tone]
    mix = stems[0] + stems[1]
    level = LevelConfig()
    sources = [ArrayAudio(stem) for stem in stems]
    alone = level_gain(mix, rate, level).gain.samples(0, mix.shape[0])[:, None]
    assert max(float(np.abs(stem * alone).max()) for stem in stems) > level.ceiling / 0.6
    decided = level_gain(mix, rate, level, sources)
    gain = decided.gain.samples(0, mix.shape[0])[:, None]
    assert max(float(np.abs(stem * gain).max()) for stem in stems) <= decided.parts_peak
    assert decided.parts_peak <= level.ceiling
    measured = pyloudnorm.Meter(rate).integrated_loudness(mix * gain)
    assert abs(measured - level.target_lufs) < LOUDNESS_TOLERANCE
    assert true_peak(mix * gain) <= level.ceiling


def traced_peak_mb(work: Callable[[], object]) -> float:
    """Largest memory NumPy and Python held at once while `work` ran (tracemalloc)."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_the_level_reads_the_audio_without_holding_it(tmp_path: Path) -> None:
    """Three minutes more audio (63 MB as float32 on disk) add little to what setting its
    level holds: a few values per 32-sample block, about 12 MB, give or take the 6 MB by which
    the peak moves with how the threads' chunks overlap (the old gain and peak envelope, one
    float32 each per sample, added 63 MB, besides the audio held in memory)."""
    rate = 44100
    peaks = []
    for seconds in (60, 240):
        mix = RawAudio.silent(tmp_path / f"{seconds}.f32", seconds * rate, 2)
        for start, stop in stretches(mix.frames, rate * 5):
            mix.add(start, 0.1 * np.sin(np.arange(start, stop) / 7.0)[:, None].astype(np.float32))
        peaks.append(traced_peak_mb(lambda mix=mix: level_gain(mix, rate, LevelConfig())))
    assert peaks[1] - peaks[0] < 25.0, peaks


@needs_fluidsynth
def test_rendering_stems_does_not_hold_the_mix(tmp_path: Path) -> None:
    """Two parts padded to 60 s and to 240 s: the three minutes more of mix, stems and gain
    stay on disk (5-7 MB more measured; holding the mix, a stem and the per-sample gain and
    envelope, as before, added 190 MB)."""
    peaks = []
    for seconds in (60.0, 240.0):
        folder = tmp_path / str(seconds)
        peaks.append(
            traced_peak_mb(
                lambda folder=folder, seconds=seconds: render.render_stems(
                    parts_piece(2.0), folder / "music.wav", folder / "stems", duration_s=seconds
                )
            )
        )
        assert soundfile.info(str(folder / "music.wav")).duration == seconds
    assert peaks[1] - peaks[0] < 30.0, peaks


@needs_fluidsynth
def test_renders_keep_their_scratch_beside_the_output_not_in_tmpdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where $TMPDIR is a tmpfs its files are memory: FluidSynth's renders and the mix go to
    a folder beside the output instead, removed afterwards."""
    made: list[Path] = []
    mkdtemp = tempfile.mkdtemp

    def recorded(*args: object, **kwargs: object) -> str:
        made.append(Path(mkdtemp(*args, **kwargs)))  # type: ignore[arg-type]
        return str(made[-1])

    monkeypatch.setattr(tempfile, "mkdtemp", recorded)
    folder = tmp_path / "out"
    stems = render.render_stems(parts_piece(2.0), folder / "music.wav", folder / "stems")
    assert len(stems.stems) == 4 and stems.mix.path.is_file()
    single = render.render_wav(parts_piece(1.0), folder / "solo.wav")
    assert single.path.is_file()
    assert len(made) == 2 and all(path.parent == folder for path in made)
    assert sorted(path.name for path in folder.iterdir()) == ["music.wav", "solo.wav", "stems"]
