"""Generation's room: one typed config, one code path, decode rules as steps, pinned music."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from diffbgm.controls import key_features
from diffbgm.device import sampling_precision
from diffbgm.errors import GenerationError
from diffbgm.generation import (
    DensityMatch,
    GenerationConfig,
    GrooveBias,
    KeyFilter,
    KnownMusic,
    add_generation_arguments,
    decode,
    decode_steps,
    generate_roll,
    generation_overrides,
)
from diffbgm.generation.decoding import (
    DecodeContext,
    DecodeState,
    pitches_outside_key_and_chord,
)
from diffbgm.model.config import ModelConfig
from diffbgm.music.calibration import Calibration

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "checkpoints" / "diffbgm-tiny"
PINNED = json.loads((REPO / "tests" / "data" / "pinned_scores.json").read_text())


# --- the config ------------------------------------------------------------------------------


def test_config_checks_every_knob_in_one_place() -> None:
    with pytest.raises(GenerationError, match="steps must be between 1 and 1000"):
        GenerationConfig(steps=0)
    with pytest.raises(GenerationError, match="sampler must be one of"):
        GenerationConfig().with_overrides(sampler="euler")
    with pytest.raises(GenerationError, match="unknown generation setting"):
        GenerationConfig().with_overrides(temperature=1.0)
    with pytest.raises(GenerationError, match="steps must be int"):
        GenerationConfig().with_overrides(steps=2.5)
    assert GenerationConfig().with_overrides(steps=None).steps == GenerationConfig().steps


def test_config_reads_old_names_and_json_numbers() -> None:
    old = {"recall_strength": 0.8, "steps": 25.0, "edge_bars": 1.0, "guidance": 2}
    config = GenerationConfig.from_dict(old)
    assert (config.recall, config.steps, config.edge_bars, config.guidance) == (0.8, 25, 1, 2.0)
    assert isinstance(config.steps, int) and isinstance(config.guidance, float)
    assert GenerationConfig.from_dict(config.to_dict()) == config


def _shipped_configs() -> dict[str, dict]:
    folders = sorted(p.parent for p in (REPO / "checkpoints").glob("*/config.json"))
    return {folder.name: json.loads((folder / "config.json").read_text()) for folder in folders}


def test_shipped_checkpoints_store_every_knob() -> None:
    configs = _shipped_configs()
    assert {"diffbgm-tiny", "diffbgm-small"} <= set(configs)
    for name, config in configs.items():
        assert set(config["extra"]["generation"]) == {f.name for f in fields(GenerationConfig)}, (
            name
        )


def test_a_shipped_distilled_model_names_a_shipped_teacher_with_its_settings() -> None:
    """e2e.py's baseline and the evaluation's comparisons run the teacher of a distilled model:
    it must ship beside it (a repo-relative path), be undistilled, and share its settings but
    the sampler's grid (steps, and whether it calls the network at t = 0) and the decode
    settings that go with it (the onset threshold; the groove, which gives back the GPS the
    fewer calls lost; the recall, which the student re-distilled on guided onsets alone chose
    with the groove in session 19; the sampler, its noise and the guidance, which session 31
    replaced by autoguidance with the student's own weak model, which the teacher lacks; where
    the critic's candidates branch, which needs that stochastic sampler, session 36; the key
    filter, chosen on the student's own music in session 63, and the inner recall, in session
    64; its near bars, session 65, are an option): the
    student was held to its own output when it was given fewer calls (sessions 14 and 16), and
    the teacher keeps the settings its own tables were made with."""
    own = {"steps", "onset_threshold", "final_call", "groove", "recall"}
    own |= {"sampler", "eta", "guidance", "autoguidance", "autoguidance_share", "branch_at"}
    own |= {"key_filter", "inner_recall", "inner_recall_near_bars"}
    configs = _shipped_configs()
    for name, config in configs.items():
        if not config["model"].get("guidance_embedding"):
            continue
        teacher = config["extra"].get("distilled_from")
        assert teacher and not Path(teacher).is_absolute(), name
        teacher_config = json.loads((REPO / teacher / "config.json").read_text())
        assert not teacher_config["model"].get("guidance_embedding"), teacher
        shared = {k: v for k, v in config["extra"]["generation"].items() if k not in own}
        taught = {k: v for k, v in teacher_config["extra"]["generation"].items() if k not in own}
        assert taught == shared, name
        # parsed, so that a field written out by a newer export at its default compares equal
        student_arch = replace(ModelConfig.from_dict(config["model"]), guidance_embedding=False)
        assert student_arch == ModelConfig.from_dict(teacher_config["model"]), name


def test_the_docs_model_card_is_the_shipped_one() -> None:
    shipped = (REPO / "checkpoints" / "diffbgm-small" / "README.md").read_text()
    assert (REPO / "docs" / "model_card.md").read_text() == shipped, (
        "docs/model_card.md and checkpoints/diffbgm-small/README.md differ: edit one, copy it"
    )


def _flags(parser: argparse.ArgumentParser, command: list[str]) -> argparse.Namespace:
    return parser.parse_args(command)


def test_cli_flags_are_built_from_the_config_and_default_to_the_model() -> None:
    """No knob default is written twice: every CLI leaves every knob to the model (None) and
    its help states GenerationConfig's default."""
    from diffbgm.__main__ import build_parser as diffbgm_parser
    from trainer.__main__ import build_parser as trainer_parser

    commands = [
        (diffbgm_parser(), ["generate", "clip.mp4", "--out", "o"]),
        (trainer_parser(), ["sample", "--model", "m", "--out", "o"]),
        (trainer_parser(), ["evaluate", "--model", "m"]),
        (trainer_parser(), ["suite", "--model", "m"]),
    ]
    for parser, command in commands:
        args = _flags(parser, command)
        assert generation_overrides(args) == {}, command
        for spec in fields(GenerationConfig):
            assert getattr(args, spec.name) is None, (command, spec.name)
    args = _flags(trainer_parser(), ["evaluate", "--model", "m", "--steps", "7", "--no-bf16"])
    assert generation_overrides(args) == {"steps": 7, "bf16": False}
    parser = argparse.ArgumentParser()
    add_generation_arguments(parser)
    help_text = parser.format_help()
    for spec in fields(GenerationConfig):
        flag = "--" + spec.name.replace("_", "-")
        assert flag in help_text
    assert f"without one {GenerationConfig().steps}" in help_text


def test_compose_options_refuse_bad_knobs_before_any_work() -> None:
    from diffbgm.errors import PlanError
    from diffbgm.options import ComposeOptions

    with pytest.raises(GenerationError, match="guidance"):
        ComposeOptions(generation={"guidance": 99.0})
    with pytest.raises(PlanError, match="tempo"):
        ComposeOptions(tempo_bpm=500.0)
    old = ComposeOptions.from_dict({"seed": 2, "guidance": 2.5, "recall": 0.3, "steps": None})
    assert old.generation == {"guidance": 2.5, "recall": 0.3} and old.seed == 2


# --- decode rules ------------------------------------------------------------------------------


def _piece(n_bars: int = 4, densities: tuple[float, ...] = (0.2, 0.9)):  # type: ignore[no-untyped-def]
    from diffbgm.model.conditions import PieceConditions

    steps = n_bars * 16
    ids = np.repeat(np.arange(len(densities)), steps // len(densities))
    dynamic = np.full((len(densities), 4), 0.5, dtype=np.float32)
    dynamic[:, 0] = densities
    return PieceConditions(
        chord_pcs=np.zeros((steps, 12), dtype=np.float32),
        segment_ids=ids.astype(np.int64),
        dynamic=dynamic,
        semantic=np.zeros((len(densities), 6), dtype=np.float32),
        global_=np.zeros(14, dtype=np.float32),
    )


def test_decode_steps_follow_the_config_in_a_fixed_order() -> None:
    assert decode_steps(GenerationConfig()) == []
    steps = decode_steps(GenerationConfig(groove=0.1, density_slack=0.5, edge_bars=1))
    assert steps == [GrooveBias(0.1), DensityMatch(0.5, 1)]
    steps = decode_steps(GenerationConfig(key_filter=True, groove=0.1), pitch_low=24)
    assert steps == [KeyFilter(24), GrooveBias(0.1)]


def _keyed_piece(tonic_pc: int, minor: bool, chord: tuple[int, ...]):  # type: ignore[no-untyped-def]
    """Four bars in the key, one chord (pitch classes) throughout."""
    piece = _piece()
    chord_pcs = np.zeros_like(piece.chord_pcs)
    chord_pcs[:, list(chord)] = 1.0
    global_ = np.zeros_like(piece.global_)
    global_[:14] = key_features(tonic_pc, minor)
    return replace(piece, chord_pcs=chord_pcs, global_=global_)


def test_pitches_outside_the_key_and_the_chord() -> None:
    # C major over an E major chord (E G# B): G# is the chord's, F# and C# are neither's
    outside = pitches_outside_key_and_chord(_keyed_piece(0, False, (4, 8, 11)), 88, 21)
    assert outside is not None and outside.shape == (64, 88)
    midi = 21 + np.flatnonzero(outside[0])
    assert sorted({int(p) % 12 for p in midi}) == [1, 3, 6, 10]
    # A minor keeps its leading tone (G#) with any chord
    minor = pitches_outside_key_and_chord(_keyed_piece(9, True, (9, 0, 4)), 88, 21)
    assert minor is not None
    assert sorted({int(p) % 12 for p in 21 + np.flatnonzero(minor[0])}) == [1, 3, 6, 10]
    # no key in the conditions (all-zero key features): nothing is judged
    assert pitches_outside_key_and_chord(_piece(), 88, 21) is None


def test_key_filter_drops_notes_outside_key_and_chord_and_keeps_the_rest() -> None:
    piece = _keyed_piece(0, False, (0, 4, 7))  # C major, a C chord
    x = np.full((2, piece.n_steps, 88), -1.0, dtype=np.float32)
    for step, midi in [(0, 60), (0, 64), (4, 62), (8, 66), (12, 61)]:  # C E D F# C#
        x[0, step, midi - 21] = 1.0
        x[1, step : step + 4, midi - 21] = 1.0
    plain = decode(x, piece, GenerationConfig(), Calibration.load())
    filtered = decode(x, piece, GenerationConfig(key_filter=True), Calibration.load())
    assert sorted(21 + p for _, _, p in plain.notes()) == [60, 61, 62, 64, 66]
    assert sorted(21 + p for _, _, p in filtered.notes()) == [60, 62, 64]
    # the kept notes are the same notes, held as long
    kept = {n for n in plain.notes() if 21 + n[2] in (60, 62, 64)}
    assert set(filtered.notes()) == kept
    # no threshold the other rules can reach brings them back
    loose = GenerationConfig(key_filter=True, density_slack=2.0, groove=2.0, onset_threshold=-1.0)
    assert not {61, 66} & {
        21 + p for _, _, p in decode(x, piece, loose, Calibration.load()).notes()
    }
    # without a key in the conditions the filter leaves the music alone
    keyless = replace(piece, global_=np.zeros_like(piece.global_))
    same = decode(x, keyless, GenerationConfig(key_filter=True), Calibration.load())
    assert same.notes() == plain.notes()


def test_the_outside_key_benchmark_counts_the_notes_the_filter_drops() -> None:
    from tests.scripts import load_script

    bench = load_script("benchmarks/outside_key.py")
    piece = _keyed_piece(0, False, (0, 4, 7))  # C major, a C chord
    onset = np.zeros((piece.n_steps, 88), dtype=bool)
    onset[0, [60 - 21, 64 - 21, 66 - 21]] = True  # C E F#
    onset[8, [62 - 21, 61 - 21]] = True  # D C#
    outside = bench.outside_notes(onset, piece, 21)
    assert sorted(21 + p for p in np.flatnonzero(outside.any(axis=0))) == [61, 66]
    keyless = replace(piece, global_=np.zeros_like(piece.global_))
    assert not bench.outside_notes(onset, keyless, 21).any()


def test_a_new_rule_is_one_class_passed_to_decode() -> None:
    """A rule sees the state and the piece and returns a new state: here, one that silences
    the first bar, run after the config's own rules."""

    class SilentFirstBar:
        def __call__(self, state: DecodeState, context: DecodeContext) -> DecodeState:
            values = state.values.copy()
            values[0, :16] = -1.0
            return DecodeState(values, state.thresholds)

    rng = np.random.default_rng(0)
    piece = _piece()
    x = rng.uniform(-1, 1, size=(2, piece.n_steps, 88)).astype(np.float32)
    config = GenerationConfig(density_slack=0.5)
    plain = decode(x, piece, config, Calibration.load())
    ruled = decode(
        x, piece, config, Calibration.load(), steps=[*decode_steps(config), SilentFirstBar()]
    )
    assert plain.onset[:16].any() and not ruled.onset[:16].any()
    assert np.array_equal(plain.onset[16:], ruled.onset[16:])


def test_density_match_moves_each_segment_toward_its_request() -> None:
    rng = np.random.default_rng(1)
    piece = _piece(8)
    x = np.full((2, piece.n_steps, 88), -1.0, dtype=np.float32)
    candidates = rng.random((piece.n_steps, 88)) < 30 / (16 * 88)  # ~30 candidates a bar
    x[0][candidates] = rng.uniform(0.0, 1.0, size=int(candidates.sum()))
    fixed = decode(x, piece, GenerationConfig(onset_threshold=0.5), Calibration.load())
    matched = decode(
        x, piece, GenerationConfig(onset_threshold=0.5, density_slack=0.5), Calibration.load()
    )
    half = piece.n_steps // 2
    # the sparse segment got sparser, the busy one busier, each toward its request
    assert matched.onset[:half].sum() < fixed.onset[:half].sum()
    assert matched.onset[half:].sum() > fixed.onset[half:].sum()


# --- generate_roll -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    from diffbgm.checkpoint import load_checkpoint

    return load_checkpoint(str(TINY))


@pytest.mark.parametrize("double_time", [False, True])
def test_generate_roll_is_seeded_and_keeps_known_music_bit_for_bit(tiny, double_time) -> None:  # type: ignore[no-untyped-def]
    """Also for a piece composed in double time (diffbgm/generation/double_time.py): the kept
    music is stretched to the composed grid, and re-imposed on the piece's own."""
    from diffbgm.controls import global_features

    piece = _piece(4, (0.5, 0.5))
    config = tiny.generation.with_overrides(steps=3)
    if double_time:
        figured = global_features(0, False, tempo_bpm=60.0, figuration=0.4)
        piece = replace(piece, global_=np.asarray(figured, dtype=np.float32))
        config = config.with_overrides(double_time_from=0.25)
    seen: list[tuple[int, int]] = []
    first = generate_roll(tiny, piece, config, seed=4, progress=lambda d, t: seen.append((d, t)))
    again = generate_roll(tiny, piece, config, seed=4)
    assert np.array_equal(first.onset, again.onset) and seen and seen[-1][0] <= seen[-1][1]
    keep = np.ones(piece.n_steps, dtype=bool)
    keep[16:32] = False
    known = KnownMusic.from_notes(first.onset, first.sustain, keep)
    redone = generate_roll(tiny, piece, config, seed=9, known=known)
    assert np.array_equal(redone.onset[keep], first.onset[keep])
    assert np.array_equal(redone.sustain[keep], first.sustain[keep])


def test_the_thread_count_and_its_change_mid_piece_leave_the_music_alone(tiny) -> None:  # type: ignore[no-untyped-def]
    """threads="auto" picks the count from the machine's load and gives the encoder's core
    back between two network calls (diffbgm.threads.SamplingThreads): neither may change a
    note."""
    import torch

    from diffbgm.threads import SamplingThreads

    piece = _piece(8, (0.3, 0.8))
    config = tiny.generation.with_overrides(steps=4)
    before = torch.get_num_threads()
    try:
        rolls = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            rolls.append(generate_roll(tiny, piece, config, seed=2))
        calls = [0]

        def encoding() -> bool:
            calls[0] += 1
            return calls[0] < 5  # the job ends a few steps into the piece

        switching = SamplingThreads(2, encoding)
        switching.start()
        rolls.append(generate_roll(tiny, piece, config, seed=2, progress=switching.on_progress))
        assert torch.get_num_threads() == 2 and calls[0] >= 5
    finally:
        torch.set_num_threads(before)
    for roll in rolls[1:]:
        assert np.array_equal(roll.onset, rolls[0].onset)
        assert np.array_equal(roll.sustain, rolls[0].sustain)


def test_a_distilled_model_refuses_scales_it_never_learned(tiny) -> None:  # type: ignore[no-untyped-def]
    from diffbgm.checkpoint import LoadedModel
    from diffbgm.model.unet import Denoiser

    config = replace(tiny.config, guidance_embedding=True)
    student = LoadedModel(
        Denoiser(config).eval(), config, {"distill_scales": [1.0, 3.0], "distilled_from": "t"}
    )
    assert student.guidance_range == (1.0, 3.0) and tiny.guidance_range is None
    piece = _piece(4, (0.5, 0.5))
    with pytest.raises(GenerationError, match="outside the scales .*1 to 3.*teacher \\(t\\)"):
        generate_roll(student, piece, GenerationConfig(guidance=5.0, steps=2), seed=0)
    roll = generate_roll(student, piece, GenerationConfig(guidance=3.0, steps=2), seed=0)
    assert roll.notes.onset.shape == roll.raw[0].shape


# --- behaviour pinned before the move -------------------------------------------------------


def _score_hashes(model: str, seeds: list[str], bbb_video: Path, tmp_path: Path) -> dict[str, str]:
    """sha256 of score.mid per seed, written with the plan's tempo from 0 as the pins were
    (before score.mid's lead-in measure, session 52): the file's tempo map is tested apart
    (tests/test_arrange.py), and pins recorded on other machines' numerics stay checkable."""
    from unittest import mock

    from diffbgm.pipeline import ComposeOptions, Composer

    composer = Composer.from_pretrained(REPO / "checkpoints" / model)
    hashes = {}
    for seed in seeds:
        with mock.patch("diffbgm.arrange.score.bar_aligned_timing", lambda midi, plan: None):
            out = tmp_path / f"{model}-{seed}"
            result = composer(bbb_video, out, ComposeOptions(seed=int(seed)))
        hashes[seed] = hashlib.sha256(result.midi_path.read_bytes()).hexdigest()
    return hashes


def _numerics() -> str:
    """The arithmetic a compose runs in on this machine, e.g. "bf16-AVX512" or "fp32-AVX2":
    the sampler's precision (bf16 only where native) and the CPU's vector unit, whose kernels
    round differently; "-AMX" where bf16 runs on AMX tiles (an Intel Xeon's bf16 kernels wrote
    other notes than an AMD EPYC's AVX-512 BF16 ones, session 47). The pinned scores are kept
    per numerics."""
    precision = sampling_precision(True, torch.device("cpu"))
    numerics = f"{precision}-{torch.backends.cpu.get_cpu_capability()}"
    amx = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    return f"{numerics}-AMX" if precision == "bf16" and amx else numerics


def _pinned(model: str) -> dict[str, str]:
    table = PINNED["scores"].get(_numerics(), {})
    if model not in table:
        pytest.skip(
            f"no pinned scores of {model} for this machine's numerics ({_numerics()}; pinned: "
            f"{', '.join(PINNED['scores'])}); record them as tests/data/pinned_scores.json says"
        )
    return dict(table[model])


def test_example_score_is_byte_identical_to_the_pinned_one(bbb_video: Path, tmp_path: Path) -> None:
    pinned = _pinned("diffbgm-tiny")
    assert _score_hashes("diffbgm-tiny", ["0"], bbb_video, tmp_path) == {"0": pinned["0"]}


def test_a_generated_roll_says_where_its_music_was_recalled_from(tiny) -> None:  # type: ignore[no-untyped-def]
    from diffbgm.generation.generate import recalled_steps
    from diffbgm.generation.recall import recall_map

    piece = replace(_piece(4, (0.5, 0.5)), recalls=np.array([-1, 0]))
    roll = generate_roll(tiny, piece, GenerationConfig(steps=2, recall=0.5), seed=0)
    assert roll.recalled is not None
    source, semitones = roll.recalled
    expected_source, expected_shift = recall_map(piece)
    np.testing.assert_array_equal(source, expected_source)
    np.testing.assert_array_equal(semitones, expected_shift)
    assert (source[32:] == np.arange(32)).all() and (source[:32] == -1).all()
    # recall off: nothing was recalled, so no note echoes another's velocity
    off = recalled_steps(tiny, piece, GenerationConfig(recall=0.0), Calibration.load())
    assert (off[0] == -1).all()


def test_inner_recall_follows_the_near_bar_where_the_far_one_is_out_of_reach(tiny) -> None:  # type: ignore[no-untyped-def]
    # tiny windows: 2 bars, one bar of overlap, so after the first window each writes one bar
    piece = _piece(8, (0.5,))
    config = GenerationConfig(
        steps=2, inner_recall=0.5, inner_recall_bars=3, inner_recall_near_bars=1
    )
    roll = generate_roll(tiny, piece, config, seed=0)
    assert roll.recalled is not None
    source = roll.recalled[0].reshape(8, 16)
    steps = np.arange(8 * 16).reshape(8, 16)
    # bar 1's bar before is written by its own window; bar 2 is too early for the bar three
    # before and follows the bar before; bars 3 on follow the bar three before
    assert (source[:2] == -1).all()
    np.testing.assert_array_equal(source[2], steps[1])
    np.testing.assert_array_equal(source[3:], steps[3:] - 48)
    far = generate_roll(tiny, piece, replace(config, inner_recall_near_bars=0), seed=0)
    assert far.recalled is not None
    assert (far.recalled[0].reshape(8, 16)[:3] == -1).all()
    # the sampler follows that map: at full strength bars 3 and 6 copy bar 0, the rest bar 1
    copied = generate_roll(tiny, piece, replace(config, inner_recall=1.0), seed=0).raw
    bars = [copied[:, bar * 16 : (bar + 1) * 16] for bar in range(8)]
    for bar in (3, 6):
        np.testing.assert_array_equal(bars[bar], bars[0])
    for bar in (2, 4, 5, 7):
        np.testing.assert_array_equal(bars[bar], bars[1])
    assert not np.array_equal(bars[0], bars[1])


def test_a_roll_names_only_the_recalls_its_layout_let_the_sampler_follow(tiny) -> None:  # type: ignore[no-untyped-def]
    from diffbgm.generation.generate import recalled_steps

    # two-pass windows of two bars: an even window writes both its bars at once, so its
    # second bar cannot follow its first as the left-to-right plan foresees (bars 3, 5, 7;
    # bar 1 follows nothing: the first window writes bars 0 and 1 in either layout);
    # the roll names what was followed
    piece = _piece(8, (0.5,))
    config = GenerationConfig(steps=2, inner_recall=1.0, inner_recall_bars=1, window_batch=4)
    roll = generate_roll(tiny, piece, config, seed=0)
    assert roll.recalled is not None
    followed = roll.recalled[0]
    planned = recalled_steps(tiny, piece, config, Calibration.load())[0]
    steered = followed >= 0
    assert steered.any() and (followed[steered] == planned[steered]).all()
    bars = np.arange(piece.n_steps) // 16
    np.testing.assert_array_equal(steered, np.isin(bars, (2, 4, 6)))
    assert (planned[np.isin(bars, (3, 5, 7))] >= 0).all()
    # at full strength every step the roll names copies its source
    np.testing.assert_array_equal(roll.raw[:, steered], roll.raw[:, followed[steered]])
    # regenerating: the kept music recalls what the plan says, the redone part what it followed
    keep = np.zeros(piece.n_steps, dtype=bool)
    keep[: 5 * 16] = True
    again = generate_roll(
        tiny,
        piece,
        replace(config, window_batch=1),
        seed=1,
        known=KnownMusic.from_notes(roll.onset, roll.sustain, keep),
    )
    assert again.recalled is not None
    left_to_right = recalled_steps(tiny, piece, replace(config, window_batch=1), Calibration.load())
    np.testing.assert_array_equal(again.recalled[0][keep], left_to_right[0][keep])
    np.testing.assert_array_equal(again.recalled[0][~keep], left_to_right[0][~keep])


@pytest.mark.parametrize("native", [False, True])
def test_sampling_autocasts_to_bf16_only_where_native(
    tiny, native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from diffbgm.generation import generate as generate_module

    seen: list[torch.dtype] = []
    forward = tiny.model.forward

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return forward(*args, **kwargs)

    monkeypatch.setattr(tiny.model, "forward", spy)
    monkeypatch.setattr(
        generate_module,
        "sampling_precision",
        lambda wanted, _d: "bf16" if wanted and native else "fp32",
    )
    torch_only = GenerationConfig(steps=2, bf16=True, onnx_runtime=False)  # spy on torch's forward
    generate_roll(tiny, _piece(4, (0.5, 0.5)), torch_only, seed=0)
    assert seen and set(seen) == ({torch.bfloat16} if native else {None})


@pytest.mark.slow
@pytest.mark.parametrize("model", ["diffbgm-tiny", "diffbgm-small", "diffbgm-small-teacher"])
def test_example_scores_of_three_seeds_are_byte_identical(
    model: str, bbb_video: Path, tmp_path: Path
) -> None:
    pinned = _pinned(model)
    assert _score_hashes(model, sorted(pinned), bbb_video, tmp_path) == pinned


# --- the house's import rules -------------------------------------------------------------------

# module prefix -> prefixes it must never import (directly or through what it imports)
FORBIDDEN = {
    "diffbgm.model": ["diffbgm.metrics", "diffbgm.video", "diffbgm.plan", "diffbgm.generation",
                      "diffbgm.pipeline", "trainer", "webapp", "gradio", "sqlalchemy"],
    "diffbgm.plan": ["diffbgm.model", "diffbgm.generation", "diffbgm.metrics", "diffbgm.video",
                     "diffbgm.pipeline", "torch", "trainer", "webapp"],
    "diffbgm.generation": ["diffbgm.video", "diffbgm.plan", "diffbgm.pipeline", "diffbgm.metrics",
                           "trainer", "webapp", "gradio", "sqlalchemy"],
    "diffbgm.music": ["diffbgm.model", "diffbgm.generation", "diffbgm.plan", "diffbgm.pipeline",
                      "diffbgm.video", "trainer", "webapp"],
    "diffbgm.arrange": ["diffbgm.model", "diffbgm.generation", "diffbgm.pipeline", "diffbgm.video",
                        "torch", "trainer", "webapp", "gradio", "sqlalchemy"],
    "diffbgm.pipeline": ["trainer", "webapp", "gradio", "sqlalchemy", "alembic"],
}  # fmt: skip


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_go_one_way(package: str) -> None:
    """Import every module of the package in a fresh interpreter and list what got loaded."""
    root = REPO / package.replace(".", "/")
    modules = (
        [package]
        if root.with_suffix(".py").is_file()
        else [package]
        + [f"{package}.{p.stem}" for p in sorted(root.glob("*.py")) if p.stem != "__init__"]
    )
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    loaded = json.loads(out.stdout)
    bad = [
        name
        for name in loaded
        for prefix in FORBIDDEN[package]
        if name == prefix or name.startswith(prefix + ".")
    ]
    assert not bad, f"{package} pulls in {sorted(set(bad))}"


def test_readme_what_is_where_names_every_part_of_the_library() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## What is where", 1)[1].split("```")[1]
    library = REPO / "diffbgm"
    parts = [p.name + "/" for p in library.iterdir() if p.is_dir() and not p.name.startswith("_")]
    parts += [p.name for p in library.glob("*.py") if not p.name.startswith("__")]
    missing = [part for part in parts if part not in block]
    assert not missing, f"README's 'What is where' does not name {missing}"
    for doc in ("architecture.md", "pipeline.md", "model.md"):
        assert (REPO / "docs" / doc).is_file()


def test_a_compact_setting_changes_sampler_steps_and_knobs() -> None:
    base = GenerationConfig()
    changed = base.with_setting("unipc:12:guidance_share=0.5:channels_last=true:window_batch=4")
    assert (changed.sampler, changed.steps, changed.guidance_share) == ("unipc", 12, 0.5)
    assert changed.channels_last is True and changed.window_batch == 4
    assert base.with_setting("dpm:15") == base.with_overrides(sampler="dpm", steps=15)
    with pytest.raises(GenerationError, match="unknown generation setting"):
        base.with_setting("dpm:15:no_such_knob=1")
    with pytest.raises(GenerationError, match="sampler must be one of"):
        base.with_setting("euler:15")


def test_sampler_settings_carry_the_configs_sampler_knobs() -> None:
    from diffbgm.model.diffusion import SamplerSettings

    config = GenerationConfig().with_setting("unipc:9:guidance_share=0.75:final_call=false")
    settings = config.sampler_settings(num_train_steps=1000)
    assert settings == SamplerSettings(
        steps=9, guidance=config.guidance, sampler="unipc", guidance_until=250, final_call=False
    )
    assert GenerationConfig().sampler_settings(1000).guidance_until == 0  # guided throughout
    assert GenerationConfig().sampler_settings(1000).guidance_from is None
    ceiling = config.with_overrides(guidance_ceiling=0.8).sampler_settings(1000)
    assert ceiling.guidance_from == 800
    assert [t for t in (999, 874, 799, 250, 249) if ceiling.guides_at(t)] == [799, 250]
    with pytest.raises(GenerationError, match="leaves no step guided"):
        config.with_overrides(guidance_ceiling=0.25)  # guided from 250: an empty interval
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        SamplerSettings(sampler="euler")
