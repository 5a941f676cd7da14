"""Best-of-n self-training: `trainer selfdata` writes the model's own music as a cache, and
`trainer train --conditional-student` fine-tunes a student's conditional output on it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from diffbgm.checkpoint import load_checkpoint
from diffbgm.errors import DiffBGMError
from diffbgm.model.diffusion import Diffusion
from trainer.dataset import load_cached_song, load_split
from trainer.export import export_run
from trainer.selfdata import SelfDataOptions, build_self_data, composed_song, cropped_song
from trainer.train import TrainConfig, run_training

SONGS = ["001", "002", "801"]


def song_arrays(bar_lengths: list[int], pitches: int = 4) -> dict[str, np.ndarray]:
    starts = np.concatenate([[0], np.cumsum(bar_lengths)[:-1]]).astype(np.int32)
    steps = int(sum(bar_lengths))
    rng = np.random.default_rng(0)
    onset = (rng.random((steps, pitches)) < 0.2).astype(np.uint8)
    return {
        "onset": onset,
        "sustain": onset.copy(),
        "velocity": (onset * 70).astype(np.uint8),
        "chord_pcs": np.zeros((steps, 12), np.uint8),
        "step_times_s": np.arange(steps, dtype=np.float64) * 0.125,
        "bar_starts": starts,
        "bar_segment": np.zeros(len(bar_lengths), np.int32),
        "bar_table": np.arange(len(bar_lengths) * 3, dtype=np.float32).reshape(-1, 3),
        "segment_labels": np.asarray(["A"]),
    }


def test_a_song_is_cut_at_its_first_bar_that_is_not_whole() -> None:
    arrays = song_arrays([16, 16, 16, 8, 16, 16])
    cropped = cropped_song(arrays, bars=5)
    assert cropped["bar_starts"].tolist() == [0, 16, 32]
    assert cropped["onset"].shape[0] == cropped["step_times_s"].shape[0] == 48
    assert cropped["bar_table"].shape == (3, 3) and cropped["segment_labels"].tolist() == ["A"]
    assert len(cropped_song(arrays, bars=2)["bar_starts"]) == 2
    regular = song_arrays([16] * 3)
    assert cropped_song(regular, bars=8)["onset"].shape[0] == 48
    assert cropped_song(song_arrays([8, 16]), bars=2)["onset"].shape[0] == 0


def test_composed_notes_replace_the_real_ones_and_nothing_else() -> None:
    arrays = song_arrays([16, 16])
    onset = np.zeros((32, 4), bool)
    onset[[0, 8], [1, 2]] = True
    sustain = np.zeros_like(onset)
    sustain[1:4, 1] = True  # held after its onset, and the onset step counted as sounding
    out = composed_song(arrays, onset, sustain)
    assert out["onset"].dtype == np.uint8 and out["onset"].sum() == 2
    assert out["sustain"][0, 1] == 1 and out["sustain"][1:4, 1].all()
    assert ((out["velocity"] > 0) <= onset).all()  # velocities only where a note starts
    assert out["bar_table"] is arrays["bar_table"]  # the controls stay those asked for
    with pytest.raises(DiffBGMError, match="do not cover"):
        composed_song(arrays, onset[:16], sustain[:16])


def tiny_config(cache: Path, run: Path, steps: int = 2, **changes: object) -> TrainConfig:
    config = TrainConfig(
        preset="tiny",
        data=str(cache),
        run=str(run),
        steps=steps,
        batch=4,
        warmup_steps=1,
        val_every=2,
        val_windows=4,
        ckpt_every=4,
        log_every=1,
        threads=1,
        progress=False,
    )
    return replace(config, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def student(pop909_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cache, student): a tiny teacher trained 8 steps, a student distilled from it 2 steps."""
    from trainer.cache import build_cache

    root = tmp_path_factory.mktemp("selfdata")
    cache = root / "pop909"
    build_cache(pop909_dir, cache, songs=SONGS, workers=1, calibration_path=None)
    base = tiny_config(cache, root / "teacher", steps=8)
    run_training(base)
    teacher = export_run(root / "teacher", root / "teacher_ckpt", dtype="fp32")
    distill = replace(
        base,
        run=str(root / "student"),
        steps=2,
        init_from=str(teacher),
        distill_from=str(teacher),
        model_overrides={"guidance_embedding": True},
    )
    run_training(distill)
    return cache, export_run(root / "student", root / "student_ckpt", dtype="fp32")


def test_selfdata_writes_a_cache_of_composed_notes_with_the_real_conditions(
    student: tuple[Path, Path], tmp_path: Path
) -> None:
    cache, model = student
    options = SelfDataOptions(
        model=str(model),
        out=str(tmp_path / "self"),
        data=str(cache),
        songs=(1, 2),
        bars=8,
        workers=1,
        overrides=(("steps", 2), ("sampler", "dpm"), ("candidates", 1)),
    )
    out = build_self_data(options)
    index = json.loads((out / "index.json").read_text())
    assert index["splits"] == {"train": ["001", "002"], "valid": ["801"]}
    assert index["composed"]["generation"]["steps"] == 2
    assert (out / "calibration.json").read_bytes() == (cache / "calibration.json").read_bytes()
    for song_id in ("001", "002"):
        own, real = (
            load_cached_song(out / "songs" / f"{song_id}.npz"),
            load_cached_song(cache / "songs" / f"{song_id}.npz"),
        )
        assert own.n_bars == 8 and own.n_steps == 128
        assert not np.array_equal(own.onset, real.onset[:128])  # the model's notes
        np.testing.assert_array_equal(own.chord_pcs, real.chord_pcs[:128])
        np.testing.assert_array_equal(own.bar_cumsum, real.bar_cumsum[:9])
        assert own.segment_labels == real.segment_labels
    # the valid split is the real songs', so validation losses compare with other runs
    valid = load_split(out, "valid")[0]
    np.testing.assert_array_equal(valid.onset, load_split(cache, "valid")[0].onset)
    with pytest.raises(DiffBGMError, match="validation songs"):
        build_self_data(replace(options, songs=(800, 801)))
    with pytest.raises(DiffBGMError, match="another folder"):
        build_self_data(replace(options, out=str(cache)))


def test_a_conditional_student_learns_its_conditional_output_and_keeps_its_embedding(
    student: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, model = student
    asked: list[float | None] = []
    original = Diffusion.training_terms

    def spy(self, model, x0, cond, generator=None, p_uncond=None):  # type: ignore[no-untyped-def]
        asked.append(p_uncond)
        return original(self, model, x0, cond, generator, p_uncond)

    monkeypatch.setattr(Diffusion, "training_terms", spy)
    config = tiny_config(
        cache,
        tmp_path / "finetune",
        init_from=str(model),
        conditional_student=True,
        model_overrides={"guidance_embedding": True},
    )
    run_training(config)
    assert asked and set(asked) == {0.0}  # never the unconditional output
    exported = load_checkpoint(export_run(tmp_path / "finetune", tmp_path / "out"))
    parent = load_checkpoint(model)
    assert exported.extra["distilled_from"] == parent.extra["distilled_from"]
    assert exported.guidance_range == parent.guidance_range == (1.0, 3.0)
    assert exported.extra["conditional_finetune_data"] == str(cache)
    assert (
        "fine-tuned with the plain denoising loss" in (tmp_path / "out" / "README.md").read_text()
    )
    with pytest.raises(ValueError, match="leave out --distill-from"):
        replace(config, distill_from=str(model))
    with pytest.raises(DiffBGMError, match="guidance_embedding=true"):
        run_training(replace(config, run=str(tmp_path / "plain"), model_overrides={}))
