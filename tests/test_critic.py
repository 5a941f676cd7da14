"""The window critic: the forest it stores, its choice, and the sampler drawing candidates."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from diffbgm.checkpoint import load_checkpoint
from diffbgm.errors import CheckpointError, DiffBGMError, GenerationError
from diffbgm.generation.critic import (
    CRITIC_NAME,
    AskedRegister,
    WindowCritic,
    forest_from_sklearn,
)
from diffbgm.generation.windows import sample_piece
from diffbgm.model.config import preset
from diffbgm.model.diffusion import Diffusion, SamplerSettings
from diffbgm.model.unet import Denoiser
from diffbgm.realism import RealismConfig, feature_names, window_features
from tests.test_sampling import make_piece

REPO = Path(__file__).resolve().parents[1]
WIDTH = len(feature_names(False))


def _fitted_forest(seed: int = 0):  # type: ignore[no-untyped-def]
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, WIDTH))
    y = (x[:, 3] + 0.5 * x[:, 40] + rng.normal(scale=0.5, size=300) > 0).astype(int)
    return RandomForestClassifier(n_estimators=12, min_samples_leaf=3, random_state=0).fit(x, y)


def test_the_stored_forest_predicts_as_scikit_learn_does(tmp_path: Path) -> None:
    fitted = _fitted_forest()
    x = np.random.default_rng(1).normal(size=(50, WIDTH))
    critic = WindowCritic(forest_from_sklearn(fitted), RealismConfig(), {"trained_on": "noise"})
    np.testing.assert_allclose(critic.forest.predict(x), fitted.predict_proba(x)[:, 1], atol=1e-6)
    critic.save(tmp_path / CRITIC_NAME)
    again = WindowCritic.load(tmp_path / CRITIC_NAME)
    np.testing.assert_allclose(again.forest.predict(x), fitted.predict_proba(x)[:, 1], atol=1e-6)
    assert again.info == {"trained_on": "noise"}


def test_a_file_that_is_not_a_critic_is_refused(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(3, np.float32)}, str(tmp_path / "x.safetensors"), {"format": "other"})
    with pytest.raises(ValueError, match="not a diffbgm critic"):
        WindowCritic.load(tmp_path / "x.safetensors")


def _notes_critic() -> WindowCritic:
    """A forest that learned 'one onset per step is real, chords are generated'."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    rows, labels = [], []
    for label, size in ((0, 1), (1, 4)):
        for _ in range(40):
            onset = np.zeros((64, 88), bool)
            for step in range(0, 64, 4):
                onset[step, rng.choice(88, size, replace=False)] = True
            rows.append(window_features(onset, onset, None, RealismConfig()))
            labels.append(label)
    fitted = RandomForestClassifier(n_estimators=10, random_state=0).fit(rows, labels)
    return WindowCritic(forest_from_sklearn(fitted), RealismConfig(), {})


def test_the_critic_keeps_the_candidate_that_looks_real() -> None:
    critic = _notes_critic()
    candidates = -np.ones((3, 2, 64, 88), np.float32)
    candidates[0, :, ::4, 10:14] = 1.0  # chords of four
    candidates[1, :, ::4, 30] = 1.0  # single notes: what this critic calls real
    candidates[2, :, ::4, 50:54] = 1.0
    assert critic.choose(candidates, 0.0, 0.0) == 1
    assert critic.choose(candidates[:1], 0.0, 0.0) == 0  # one candidate: nothing to rate


def test_the_asked_register_steers_the_choice_between_real_looking_candidates() -> None:
    critic = _notes_critic()
    candidates = -np.ones((3, 2, 64, 88), np.float32)
    candidates[0, :, ::4, 10:14] = 1.0  # chords: generated-looking, but in the asked register
    candidates[1, :, ::4, 30] = 1.0  # single notes at MIDI 51
    candidates[2, :, ::4, 70] = 1.0  # single notes at MIDI 91
    segments = np.repeat([0, 1], 32)
    high = AskedRegister(segments, np.full(64, 91.0), weight=1.0)
    assert high.distance(candidates[2, 0] > 0, 21) == 0.0
    assert high.distance(candidates[1, 0] > 0, 21) == pytest.approx(40 / 12)
    assert critic.choose(candidates, 0.0, 0.0) == 1  # a tie of the forest: the first
    assert critic.choose(candidates, 0.0, 0.0, high) == 2
    assert critic.choose(candidates, 0.0, 0.0, AskedRegister(segments, high.pitch, 0.0)) == 1
    # segments are judged apart: a segment asking 51, the other 91
    split = AskedRegister(segments, np.repeat([51.0, 91.0], 32), weight=1.0)
    assert split.distance(candidates[1, 0] > 0, 21) == pytest.approx(0.5 * 40 / 12)
    assert split.distance(np.zeros((64, 88), bool), 21) == 0.0  # no notes: no distance


def test_candidates_are_drawn_and_the_chosen_one_is_kept() -> None:
    torch.manual_seed(0)
    config = preset("tiny", n_pitches=16, pitch_low=60)
    model = Denoiser(config).eval()
    diffusion = Diffusion(config.diffusion)
    piece = make_piece(96, 3)  # windows at 0, 16, 32, 48, 64
    settings = SamplerSettings(steps=3)

    def sample(candidates: int, pick: int | None) -> tuple[np.ndarray, list[np.ndarray]]:
        seen: list[np.ndarray] = []

        def choose(drawn: np.ndarray, start: int) -> int:
            assert start == 16 * len(seen)  # the window's first step
            seen.append(drawn.copy())
            return pick if pick is not None else 0

        roll = sample_piece(
            model, diffusion, piece, config, torch.Generator().manual_seed(7), settings,
            candidates=candidates, choose=choose if pick is not None else None,
        )  # fmt: skip
        return roll, seen

    single, _ = sample(1, None)
    first, seen = sample(3, 0)
    assert len(seen) == 5 and all(d.shape == (3, 2, 32, 16) for d in seen)
    # the first candidate draws the noise a single candidate draws: the same music
    np.testing.assert_allclose(first, single, atol=1e-4)
    assert not np.allclose(seen[0][1], seen[0][0])  # the others are other draws
    last, seen = sample(3, 2)
    assert not np.allclose(last, single)
    np.testing.assert_array_equal(last[:, :32], seen[0][2])  # the kept candidate is the roll
    # the next window in-paints its first steps from the kept candidate
    np.testing.assert_array_equal(
        seen[1][:, :, :16], np.broadcast_to(last[:, 16:32], (3, 2, 16, 16))
    )
    with pytest.raises(ValueError, match="needs a chooser"):
        sample_piece(model, diffusion, piece, config, None, settings, candidates=2)


class _CountingCalls(torch.nn.Module):
    """The network as it is, noting the batch of every call."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.batches: list[int] = []

    def forward(self, x_t: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        self.batches.append(x_t.shape[0])
        return self.network(x_t, *args, **kwargs)  # type: ignore[no-any-return]


def test_candidates_that_branch_late_share_their_first_calls() -> None:
    torch.manual_seed(0)
    config = preset("tiny", n_pitches=16, pitch_low=60)
    model = _CountingCalls(Denoiser(config).eval())
    diffusion = Diffusion(config.diffusion)
    piece = make_piece(48, 2)  # windows at 0 and 16
    settings = SamplerSettings(steps=4, sampler="dpm", eta=1.0, guidance=1.0)
    seen: list[np.ndarray] = []

    def choose(drawn: np.ndarray, start: int) -> int:
        seen.append(drawn.copy())
        return 0

    single = sample_piece(
        model, diffusion, piece, config, torch.Generator().manual_seed(7), settings
    )  # fmt: skip
    model.batches.clear()
    branched = sample_piece(
        model, diffusion, piece, config, torch.Generator().manual_seed(7), settings,
        candidates=3, choose=choose, branch_at=0.5,
    )  # fmt: skip
    # half of the calls made once for the three candidates of a window, then three rows
    assert model.batches == [1, 1, 3, 3] * 2
    # the first candidate is the single sample; the others went their own way from there
    np.testing.assert_allclose(branched, single, atol=1e-4)
    assert all(not np.allclose(drawn[k], drawn[0]) for drawn in seen for k in (1, 2))
    # a deterministic sampler after the branch would give three copies of one candidate
    with pytest.raises(ValueError, match="no fresh noise"):
        sample_piece(
            model, diffusion, piece, config, torch.Generator().manual_seed(7),
            SamplerSettings(steps=4, sampler="dpm", guidance=1.0),
            candidates=3, choose=choose, branch_at=0.5,
        )  # fmt: skip


def test_a_checkpoint_loads_its_critic_and_candidates_need_one(tmp_path: Path) -> None:
    from diffbgm.generation import generate_roll

    folder = tmp_path / "model"
    shutil.copytree(REPO / "checkpoints" / "diffbgm-tiny", folder)
    (folder / CRITIC_NAME).unlink(missing_ok=True)
    loaded = load_checkpoint(folder)
    assert loaded.critic is None
    piece = make_piece(32, 1)
    asked = loaded.generation.with_overrides(candidates=2, steps=2)
    with pytest.raises(GenerationError, match="window critic"):
        generate_roll(loaded, piece, asked, 0)
    _notes_critic().save(folder / CRITIC_NAME)
    loaded = load_checkpoint(folder)
    assert loaded.critic is not None
    assert generate_roll(loaded, piece, asked, 0).onset.shape == (32, loaded.config.n_pitches)
    # candidates branching late differ by a stochastic sampler's noise only
    branching = asked.with_overrides(branch_at=0.5, eta=1.0, sampler="dpm", steps=4)
    assert generate_roll(loaded, piece, branching, 0).onset.shape == (32, loaded.config.n_pitches)
    with pytest.raises(GenerationError, match="eta is 0"):
        generate_roll(loaded, piece, branching.with_overrides(eta=0.0), 0)
    (folder / CRITIC_NAME).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(folder)


def test_the_critic_is_never_trained_on_validation_songs(tmp_path: Path) -> None:
    from trainer.critic import CriticOptions, collect_windows

    options = CriticOptions(model="checkpoints/diffbgm-tiny", songs=(799, 800, 801))
    with pytest.raises(DiffBGMError, match="validation songs"):
        collect_windows(options)


def test_composed_features_are_reused_only_for_the_same_networks_and_settings(
    pop909_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A critic learns one model's giveaways: the features kept from a run are read again for
    the same model, and composed again once its weights or its generation settings change."""
    from safetensors.torch import load_file, save_file

    from trainer.cache import build_cache
    from trainer.critic import CriticOptions, collect_windows

    cache = tmp_path / "pop909"
    build_cache(pop909_dir, cache, songs=["001"], workers=1, calibration_path=None)
    model = tmp_path / "model"
    shutil.copytree(REPO / "checkpoints" / "diffbgm-tiny", model)
    options = CriticOptions(
        model=str(model), data=str(cache), songs=(1,), bars=8, workers=1,
        features=str(tmp_path / "features.npz"),
    )  # fmt: skip
    first = collect_windows(options)
    assert len(first["generated"]) > 0
    capsys.readouterr()
    again = collect_windows(options)
    assert "features from" in capsys.readouterr().out
    assert np.array_equal(again["generated"], first["generated"])
    # the same folder with other weights: composed again, not read from the file
    weights = load_file(model / "model.safetensors")
    save_file({name: value + 0.01 for name, value in weights.items()}, model / "model.safetensors")
    collect_windows(options)
    assert "composing again" in capsys.readouterr().out
    collect_windows(options)
    assert "features from" in capsys.readouterr().out
    # another seed (the same weights as the file's): composed again
    collect_windows(CriticOptions(**{**options.__dict__, "seed": 1}))
    assert "composing again" in capsys.readouterr().out


def test_the_app_form_asks_for_candidates_within_the_knobs_limits() -> None:
    from webapp.handlers import compose_options

    form = ("", 0, "auto", 0, 0, None, None, 1, "duck", None, "solo-piano")
    assert compose_options(*form, 4).generation == {"candidates": 4}
    assert "candidates" not in compose_options(*form, None).generation  # the model's default
    with pytest.raises(GenerationError, match="candidates"):
        compose_options(*form, 40)


def test_the_shipped_model_carries_a_critic_trained_on_training_songs_only() -> None:
    critic = WindowCritic.load(REPO / "checkpoints" / "diffbgm-small" / CRITIC_NAME)
    assert critic.info["trained_on"].startswith("songs 601-800")
    assert (
        critic.features.pitch_low
        == load_checkpoint(REPO / "checkpoints" / "diffbgm-small").config.pitch_low
    )
