"""The diffusion process: schedule, condition dropout, memorisation, samplers, in-painting."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from torch import nn

from diffbgm.model.conditions import Conditions, two_segment_conditions
from diffbgm.model.config import DiffusionConfig, ModelConfig, preset
from diffbgm.model.diffusion import (
    Diffusion,
    SamplerSettings,
    channel_guidance,
    make_alphas_cumprod,
)
from diffbgm.model.unet import Denoiser

# C - F - G - C, one chord per half bar: a bass note held 8 steps, two upper chord tones
# struck twice (on the chord's first and fifth 16th) and held 3 steps.
CHORDS = ((0, 4, 7), (5, 9, 12), (7, 11, 14), (0, 4, 7))


def chord_pattern(config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0 (1, 2, T, P) in {-1, 1}, chord mask (1, 1, T, P)) for CHORDS over the window."""
    steps, pitches = config.window_steps, config.n_pitches
    span = steps // len(CHORDS)
    onset = np.zeros((steps, pitches), dtype=bool)
    sustain = np.zeros((steps, pitches), dtype=bool)
    chord = np.zeros((steps, pitches), dtype=np.float32)
    for i, tones in enumerate(CHORDS):
        start = i * span
        for pc in tones:
            chord[start : start + span, [p for p in range(pitches) if (p - pc) % 12 == 0]] = 1
        onset[start, tones[0]] = True
        sustain[start : start + span, tones[0]] = True
        for hit in (start, start + span // 2):
            for tone in tones[1:]:
                onset[hit, tone + 5] = True
                sustain[hit : hit + 3, tone + 5] = True
    x0 = torch.from_numpy(np.stack([onset, sustain]).astype(np.float32) * 2 - 1)[None]
    return x0, torch.from_numpy(chord)[None, None]


def single_segment_conditions(config: ModelConfig, chord: torch.Tensor, batch: int) -> Conditions:
    slots = config.max_segments
    mask = torch.zeros(batch, slots, dtype=torch.bool)
    mask[:, 0] = True
    return Conditions(
        chord=chord.expand(batch, -1, -1, -1),
        segment_ids=torch.zeros(batch, config.window_steps, dtype=torch.long),
        segment_mask=mask,
        dynamic=torch.full((batch, slots, config.dynamic_dim), 0.5),
        semantic=torch.full((batch, slots, config.semantic_dim), 0.5),
        global_=torch.zeros(batch, config.global_dim),
    )


def onset_f1(sample: torch.Tensor, x0: torch.Tensor) -> float:
    predicted, target = sample[0] > 0, x0[0] > 0
    hits = int((predicted & target).sum())
    return 2 * hits / max(int(predicted.sum()) + int(target.sum()), 1)


@dataclass
class Memorised:
    model: Denoiser
    diffusion: Diffusion
    x0: torch.Tensor  # (1, 2, T, P)
    cond: Conditions  # batch 1
    final_loss: float


def memorise(config: ModelConfig, train_steps: int, batch: int = 4) -> Memorised:
    torch.manual_seed(0)
    model = Denoiser(config)
    diffusion = Diffusion(config.diffusion)
    x0, chord = chord_pattern(config)
    cond = single_segment_conditions(config, chord, batch)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(train_steps):
        loss = diffusion.training_loss(model, x0.expand(batch, -1, -1, -1), cond, generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return Memorised(
        model.eval(), diffusion, x0, cond.index(slice(0, 1)), float(np.mean(losses[-20:]))
    )


@pytest.fixture(scope="module")
def memorised() -> Memorised:
    # Two octaves from C3 keep this fast; the full 88-key version is the slow test below.
    # One thread: on a shared 2-core machine two threads contend and run slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return memorise(preset("tiny", n_pitches=24, pitch_low=48), train_steps=300)
    finally:
        torch.set_num_threads(threads)


def test_schedules_decrease_from_one_to_nearly_zero() -> None:
    for schedule in ("scaled_linear", "cosine"):
        ab = make_alphas_cumprod(DiffusionConfig(beta_schedule=schedule))
        assert ab.shape == (1000,)
        assert (ab[1:] < ab[:-1]).all()
        assert 0.99 < float(ab[0]) < 1.0 and float(ab[-1]) < 0.01
    diffusion = Diffusion(DiffusionConfig())
    assert diffusion.timesteps(50)[0] == 999 and diffusion.timesteps(50)[-1] == 0
    assert len(diffusion.timesteps(50)) == 50
    assert diffusion.timesteps(1000) == list(range(999, -1, -1))
    with pytest.raises(ValueError):
        diffusion.timesteps(1001)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_parametrisation_recovers_x0_and_eps(prediction: str) -> None:
    diffusion = Diffusion(DiffusionConfig(prediction=prediction))  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 2, 8, 5, generator=gen)
    noise = torch.randn(3, 2, 8, 5, generator=gen)
    for t in (0, 500, 999):
        t_batch = torch.full((3,), t)
        x_t = diffusion.q_sample(x0, t_batch, noise)
        target = diffusion.target(x0, noise, t_batch)
        x0_hat, eps_hat = diffusion.split_prediction(target, x_t, diffusion.alphas_cumprod[t])
        assert torch.allclose(x0_hat, x0, atol=2e-3) and torch.allclose(eps_hat, noise, atol=1e-4)


class FlatModel(nn.Module):
    """Outputs a learnable constant; records the drop masks it was given."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.bias = nn.Parameter(torch.zeros(()))
        self.calls: list[tuple[int, torch.Tensor]] = []

    def forward(self, x_t, t, cond, drop=None):  # type: ignore[no-untyped-def]
        self.calls.append((x_t.shape[0], drop))
        return torch.zeros_like(x_t) + self.bias


def test_condition_dropout_rate_matches_p_uncond() -> None:
    config = preset("tiny", p_uncond=0.1)
    model = FlatModel(config)
    diffusion = Diffusion(config.diffusion)
    x0 = torch.zeros(16, 2, 4, 3)
    cond = single_segment_conditions(config, torch.zeros(1, 1, 4, 3), 16)
    gen = torch.Generator().manual_seed(0)
    drops, ts = [], []
    for _ in range(200):
        terms = diffusion.training_terms(model, x0, cond, gen)
        drops.append(terms.drop)
        ts.append(terms.t)
        assert torch.equal(model.calls[-1][1], terms.drop)  # the model saw exactly that mask
    rate = float(torch.cat(drops).float().mean())
    assert abs(rate - 0.1) < 0.02  # 3200 draws: standard error 0.005
    all_t = torch.cat(ts)
    assert int(all_t.min()) < 10 and int(all_t.max()) > 990


def test_loss_runs_under_bf16_autocast_and_weights_onsets() -> None:
    config = preset("tiny", n_pitches=24, pitch_low=48)
    model = Denoiser(config)
    x0, chord = chord_pattern(config)
    cond = single_segment_conditions(config, chord, 2)
    diffusion = Diffusion(config.diffusion)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = diffusion.training_loss(model, x0.expand(2, -1, -1, -1), cond)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    weighted = Diffusion(DiffusionConfig(onset_loss_weight=3.0))
    flat = FlatModel(config)
    with torch.no_grad():
        flat.bias.fill_(1.0)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    plain = diffusion.training_loss(flat, x0.expand(2, -1, -1, -1), cond, gen())
    assert not torch.isclose(
        plain, weighted.training_loss(flat, x0.expand(2, -1, -1, -1), cond, gen())
    )


def test_tiny_model_memorises_one_window(memorised: Memorised) -> None:
    assert memorised.final_loss < 0.1
    for seed in (1, 2):
        sample = memorised.diffusion.sample(
            memorised.model,
            memorised.cond,
            torch.Generator().manual_seed(seed),
            SamplerSettings(steps=50),
        )
        assert onset_f1(sample[0], memorised.x0[0]) >= 0.9


def test_dpm_solver_samples_the_memorised_window(memorised: Memorised) -> None:
    sample = memorised.diffusion.sample(
        memorised.model,
        memorised.cond,
        torch.Generator().manual_seed(1),
        SamplerSettings(steps=20, sampler="dpm"),
    )
    assert onset_f1(sample[0], memorised.x0[0]) >= 0.9


def test_unipc_samples_the_memorised_window(memorised: Memorised) -> None:
    sample = memorised.diffusion.sample(
        memorised.model,
        memorised.cond,
        torch.Generator().manual_seed(1),
        SamplerSettings(steps=12, sampler="unipc"),
    )
    assert onset_f1(sample[0], memorised.x0[0]) >= 0.9


class GaussianDenoiser(nn.Module):
    """The exact v-prediction for data ~ N(0, spread^2): its sampling ODE has a closed form."""

    def __init__(self, diffusion: Diffusion, spread: float) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))  # the sampler reads the device from it
        self.alphas_cumprod = diffusion.alphas_cumprod
        self.variance = spread**2

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: Conditions, drop: torch.Tensor
    ) -> torch.Tensor:
        ab = self.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        x0 = ab.sqrt() * self.variance * x / (ab * self.variance + 1 - ab)
        eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        return ab.sqrt() * eps - (1 - ab).sqrt() * x0


def gaussian_ode_end(diffusion: Diffusion, x_start: torch.Tensor, spread: float) -> torch.Tensor:
    """What an exact solver returns from x_start at the noisiest step: the trajectory keeps
    x_t / std(x_t) fixed, and the last step outputs the x0 predicted at t = 0."""
    var = spread**2
    ab = diffusion.alphas_cumprod.double()
    std = (ab * var + 1 - ab).sqrt()
    x_end = x_start.double() * std[0] / std[-1]
    return (ab[0].sqrt() * var * x_end / (ab[0] * var + 1 - ab[0])).float()


def test_unipc_is_closer_to_the_exact_ode_solution_than_dpm_solver() -> None:
    config = preset("tiny", n_pitches=8, pitch_low=60)
    diffusion = Diffusion(config.diffusion)
    model = GaussianDenoiser(diffusion, spread=0.5)
    cond = single_segment_conditions(config, torch.zeros(1, 1, config.window_steps, 8), 1)
    start = torch.randn(1, 2, config.window_steps, 8, generator=torch.Generator().manual_seed(0))
    exact = gaussian_ode_end(diffusion, start, spread=0.5)
    for steps in (8, 10, 15):
        error = {}
        for sampler in ("ddim", "dpm", "unipc"):
            settings = SamplerSettings(steps=steps, guidance=1.0, sampler=sampler, clip_x0=False)
            sample = diffusion.sample(model, cond, torch.Generator().manual_seed(0), settings)
            error[sampler] = float((sample - exact).abs().mean())
        assert error["unipc"] < error["dpm"] < error["ddim"], (steps, error)


def test_one_corrected_step_lands_nearer_the_trajectory() -> None:
    """Along the exact Gaussian trajectory, UniC's step s0 -> t (with x0 at s1, s0 and t)
    lands far nearer the true x_t than the second-order predictor's step."""
    from diffbgm.model.diffusion import _CorrectorState, unic_correct

    diffusion = Diffusion(DiffusionConfig())
    var = 0.25
    ab = diffusion.alphas_cumprod.double()

    def point(t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (ab[t] * var + 1 - ab[t]).sqrt().reshape(1)  # the trajectory through c = 1
        return x, (ab[t].sqrt() * var * x / (ab[t] * var + 1 - ab[t])), ab[t]

    def lam(a: torch.Tensor) -> float:
        return float(0.5 * torch.log(a / (1 - a)))

    errors = {"predictor": [], "corrector": []}
    for gap in (80, 40):
        s1, s0, t = 500 + gap, 500, 500 - gap
        _, x0_s1, ab_s1 = point(s1)
        x_s0, x0_s0, ab_s0 = point(s0)
        x_t, x0_t, ab_t = point(t)
        predicted, _ = Diffusion._dpm_step(x_s0, x0_s0, ab_s0, ab_t, x0_s1, lam(ab_s1))
        state = _CorrectorState(x_s0, ab_s0, x0_s0, x0_s1, lam(ab_s1))
        corrected = unic_correct(state, ab_t, x0_t)
        errors["predictor"].append(float((predicted - x_t).abs()))
        errors["corrector"].append(float((corrected - x_t).abs()))
    # measured: predictor 5.5e-4 / 6.7e-5, corrector ~2e-8 (round-off) at both step sizes
    for predictor, corrector in zip(errors["predictor"], errors["corrector"], strict=True):
        assert corrector < predictor / 100, errors


def test_deep_reuse_runs_the_quietest_steps_on_kept_deep_features(memorised: Memorised) -> None:
    m = memorised
    reused: list[bool] = []

    def record(_module, _args, kwargs, _out):  # type: ignore[no-untyped-def]
        deep = kwargs.get("deep")
        reused.append(bool(deep is not None and deep.reuse))

    hook = m.model.register_forward_hook(record, with_kwargs=True)
    try:
        settings = SamplerSettings(steps=12, sampler="unipc", guidance=1.0, deep_reuse=2)
        sample = m.diffusion.sample(m.model, m.cond, torch.Generator().manual_seed(1), settings)
    finally:
        hook.remove()
    assert reused == [False] * 9 + [True, False, True]  # the third-last and the last
    assert onset_f1(sample[0], m.x0[0]) >= 0.9  # still the memorised window
    plain = m.diffusion.sample(
        m.model,
        m.cond,
        torch.Generator().manual_seed(1),
        SamplerSettings(steps=12, sampler="unipc", guidance=1.0),
    )
    assert not torch.equal(sample, plain)  # the reused steps did run on kept features


def test_without_the_final_call_the_roll_is_the_last_noisy_steps_x0(memorised: Memorised) -> None:
    m = memorised
    calls: list[int] = []
    hook = m.model.register_forward_hook(lambda _m, args, _out: calls.append(int(args[1][0])))
    try:
        settings = SamplerSettings(steps=9, sampler="unipc", guidance=1.0, final_call=False)
        sample = m.diffusion.sample(m.model, m.cond, torch.Generator().manual_seed(1), settings)
    finally:
        hook.remove()
    assert m.diffusion.sampling_timesteps(9) == [999, 874, 749, 624, 500, 375, 250, 125, 0]
    assert calls == [999, 874, 749, 624, 500, 375, 250, 125]  # no call at t = 0
    assert onset_f1(sample[0], m.x0[0]) >= 0.9  # still the memorised window
    plain = m.diffusion.sample(
        m.model,
        m.cond,
        torch.Generator().manual_seed(1),
        SamplerSettings(steps=9, sampler="unipc", guidance=1.0),
    )
    assert not torch.equal(sample, plain)
    # the x0 predicted at t = 125, clipped: x0 lies in [-1, 1] and the t = 0 call only nudges it
    assert sample.abs().max() <= 1.0
    assert float((sample - plain).abs().mean()) < 0.05
    assert m.diffusion.sampling_timesteps(1, final_call=False) == [0]  # nothing left to drop


@pytest.mark.parametrize(
    ("sampler", "eta"), [("unipc", 0.0), ("dpm", 0.0), ("ddim", 0.0), ("dpm", 1.0), ("ddim", 1.0)]
)
def test_calls_the_paintings_overwrite_are_skipped_bit_for_bit(
    memorised: Memorised, sampler: str, eta: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With fresh noise too: a skipped step still draws its noise, so every later draw is the
    same."""
    m = memorised
    known_mask = torch.zeros_like(m.x0)
    known_mask[:, :, :16] = 1  # the overlap with the window before
    recalled = torch.roll(m.x0, 3, dims=-1)  # an earlier phrase's music, guiding the rest

    def sample() -> tuple[torch.Tensor, list[int]]:
        calls: list[int] = []
        hook = m.model.register_forward_hook(lambda _m, args, _o: calls.append(int(args[1][0])))
        try:
            x = m.diffusion.sample(
                m.model, m.cond, torch.Generator().manual_seed(1),
                SamplerSettings(steps=9, sampler=sampler, guidance=1.0, eta=eta),
                known=m.x0, known_mask=known_mask, guide=recalled,
                guide_mask=1 - known_mask, guide_until=200,
            )  # fmt: skip
        finally:
            hook.remove()
        return x, calls

    skipping, calls = sample()
    # painted all over after t = 874 ... 250; the call at 375 feeds the first free step
    assert calls == [375, 250, 125, 0]
    monkeypatch.setattr(Diffusion, "_unused_calls", classmethod(lambda *_args: set()))
    every, all_calls = sample()
    assert all_calls == [999, 874, 749, 624, 500, 375, 250, 125, 0]
    assert torch.equal(skipping, every)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_a_per_step_until_paints_as_one_value_does(memorised: Memorised, eta: float) -> None:
    """The recall guide's until per step (inner recall): the same until everywhere samples bit
    for bit as the one value; until beyond every timestep paints nothing and draws no noise
    for it, so the sample is the unguided one; a step painted to the end is the guide."""
    m = memorised
    steps = m.x0.shape[2]
    quarter, half = steps // 4, steps // 2
    guide_mask = torch.zeros_like(m.x0)
    guide_mask[:, :, quarter:] = 1
    recalled = torch.roll(m.x0, 3, dims=-1)

    def sample(until: int | torch.Tensor | None) -> torch.Tensor:
        return m.diffusion.sample(
            m.model, m.cond, torch.Generator().manual_seed(1),
            SamplerSettings(steps=9, sampler="dpm", guidance=1.0, eta=eta),
            guide=None if until is None else recalled,
            guide_mask=None if until is None else guide_mask,
            guide_until=0 if until is None else until,
        )  # fmt: skip

    def per_step(values: list[int]) -> torch.Tensor:
        until = torch.tensor(values, dtype=torch.long).repeat_interleave(steps // len(values))
        return until.view(1, 1, steps, 1).expand(m.x0.shape[0], 1, steps, 1)

    assert torch.equal(sample(300), sample(per_step([300])))
    never = m.diffusion.num_train_steps
    assert torch.equal(sample(None), sample(per_step([never])))
    mixed = sample(per_step([never, -1]))  # the first half never painted, the second to the end
    assert torch.equal(mixed[:, :, half:], recalled[:, :, half:])
    assert not torch.equal(mixed[:, :, quarter:half], recalled[:, :, quarter:half])
    assert not torch.equal(mixed, sample(per_step([300, -1])))


def test_sampling_is_deterministic_and_in_range(memorised: Memorised) -> None:
    m = memorised
    ten = SamplerSettings(steps=10)
    first = m.diffusion.sample(m.model, m.cond, torch.Generator().manual_seed(7), ten)
    again = m.diffusion.sample(m.model, m.cond, torch.Generator().manual_seed(7), ten)
    other = m.diffusion.sample(m.model, m.cond, torch.Generator().manual_seed(8), ten)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.abs().max() <= 1.0


def test_guidance_runs_one_batched_forward_per_step(memorised: Memorised) -> None:
    m = memorised
    batches: list[int] = []
    hook = m.model.register_forward_hook(lambda _mod, args, _out: batches.append(args[0].shape[0]))
    done: list[tuple[int, int]] = []
    try:
        m.diffusion.sample(
            m.model,
            m.cond,
            None,
            SamplerSettings(steps=6, guidance=3.0),
            progress=lambda i, n: done.append((i, n)),
        )
        assert batches == [2] * 6
        batches.clear()
        m.diffusion.sample(m.model, m.cond, None, SamplerSettings(steps=6, guidance=1.0))
        assert batches == [1] * 6
    finally:
        hook.remove()
    assert done == [(i, 6) for i in range(1, 7)]


def test_in_painting_keeps_the_known_region_exactly(memorised: Memorised) -> None:
    m = memorised
    steps = m.x0.shape[2]
    known = -torch.ones_like(m.x0)  # silence, which the model would never produce here
    keep = torch.zeros(1, 1, steps, 1)
    keep[:, :, : steps // 2] = 1
    for sampler in ("ddim", "dpm", "unipc"):
        sample = m.diffusion.sample(
            m.model,
            m.cond,
            torch.Generator().manual_seed(3),
            SamplerSettings(steps=20, sampler=sampler),
            known=known,
            known_mask=keep,
        )
        assert torch.equal(sample[:, :, : steps // 2], known[:, :, : steps // 2])
        # the free half is still the memorised music
        second = sample[0, 0, steps // 2 :] > 0
        target = m.x0[0, 0, steps // 2 :] > 0
        assert (second & target).sum() >= 0.8 * target.sum()


def test_ancestral_sampling_with_all_train_steps_runs() -> None:
    config = preset(
        "tiny", n_pitches=8, pitch_low=60, diffusion=DiffusionConfig(num_train_steps=40)
    )
    model = Denoiser(config).eval()
    cond = single_segment_conditions(config, torch.zeros(1, 1, config.window_steps, 8), 1)
    diffusion = Diffusion(config.diffusion)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = diffusion.sample(model, cond, gen(), SamplerSettings(steps=40, eta=1.0))
    b = diffusion.sample(model, cond, gen(), SamplerSettings(steps=40, eta=1.0))
    assert torch.equal(a, b) and a.shape == (1, 2, config.window_steps, 8)


@pytest.mark.slow
def test_tiny_model_memorises_a_full_88_key_window() -> None:
    # 88 keys need more steps than two octaves: 400 steps gave F1 0.14, 1000 give 1.0 (~2 min)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = memorise(preset("tiny"), train_steps=1000)
    finally:
        torch.set_num_threads(threads)
    for seed in (1, 2):
        sample = m.diffusion.sample(
            m.model, m.cond, torch.Generator().manual_seed(seed), SamplerSettings(steps=50)
        )
        assert onset_f1(sample[0], m.x0[0]) >= 0.9


def distillation_student(teacher: Denoiser) -> Denoiser:
    """A student that takes the guidance scale, started from the teacher's weights."""
    student = Denoiser(replace(teacher.config, guidance_embedding=True))
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("guidance_mlp.") for name in missing)
    return student


def test_guidance_distillation_learns_the_guided_output_in_one_pass(
    memorised: Memorised,
) -> None:
    """The student starts as the teacher's conditional pass (its guidance layer is zero), then
    learns the teacher's guided output at the scale it is given, and samples with one network
    item per step where the teacher needs two."""
    m = memorised
    torch.manual_seed(0)
    student = distillation_student(m.model)
    batch = 8
    x0 = m.x0.expand(batch, -1, -1, -1)
    cond = Conditions(
        **{k: v if v is None else v.expand(batch, *v.shape[1:]) for k, v in vars(m.cond).items()}
    )
    gen = torch.Generator().manual_seed(3)
    t = torch.randint(0, 1000, (batch,), generator=gen)
    x_t = m.diffusion.q_sample(x0, t, torch.randn(x0.shape, generator=gen))
    scale = torch.full((batch,), 3.0)
    no_drop = torch.zeros(batch, dtype=torch.bool)
    with torch.no_grad():
        conditional = m.model(x_t, t, cond, no_drop)
        unconditional = m.model(x_t, t, cond, ~no_drop)
        guided = unconditional + 3.0 * (conditional - unconditional)
        assert torch.allclose(student(x_t, t, cond, no_drop, scale), conditional, atol=1e-5)
    before = float((conditional - guided).square().mean())

    optimiser = torch.optim.AdamW(student.parameters(), lr=2e-3)
    train_gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(200):
        loss = m.diffusion.distillation_terms(
            student, m.model, x0, cond, (1.0, 4.0), train_gen
        ).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    student.eval()
    print(f"distillation loss {np.mean(losses[:10]):.4f} -> {np.mean(losses[-10:]):.4f}")
    with torch.no_grad():
        after = float((student(x_t, t, cond, no_drop, scale) - guided).square().mean())
        at_one = float(
            (student(x_t, t, cond, no_drop, torch.ones(batch)) - conditional).square().mean()
        )
    print(f"error at scale 3: {before:.4f} -> {after:.4f}; at scale 1: {at_one:.4f}")
    assert after < 0.4 * before
    assert at_one < before  # scale 1 stays the conditional prediction

    batches: list[int] = []
    hook = student.register_forward_hook(lambda _mod, args, _out: batches.append(args[0].shape[0]))
    try:
        sample = m.diffusion.sample(
            student,
            m.cond,
            torch.Generator().manual_seed(0),
            SamplerSettings(steps=10, guidance=3.0, sampler="dpm"),
        )
    finally:
        hook.remove()
    assert batches == [1] * 10
    assert onset_f1(sample, m.x0) >= 0.9


class ExactStudent(nn.Module):
    """A 'student' that outputs the teacher's conditional output plus channel weights
    times its guidance update: the target a sustain share asks for, computed apart."""

    def __init__(self, teacher: nn.Module, sustain_share: float) -> None:
        super().__init__()
        self.teacher, self.sustain_share = teacher, sustain_share
        self.anchor = nn.Parameter(torch.zeros(()))  # something for backward to reach

    def forward(self, x_t, t, cond, drop, guidance):  # type: ignore[no-untyped-def]
        conditional = self.teacher(x_t, t, cond, torch.zeros_like(drop))
        unconditional = self.teacher(x_t, t, cond, torch.ones_like(drop))
        update = conditional - unconditional
        onset_scale = guidance.reshape(-1, 1, 1) - 1.0
        out = conditional.clone()
        out[:, 0] += onset_scale * update[:, 0]
        out[:, 1] += self.sustain_share * onset_scale * update[:, 1]
        return out + 0.0 * self.anchor


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_distillation_target_guides_the_sustain_channel_by_its_share(
    memorised: Memorised, share: float
) -> None:
    """With sustain_share s the target is the teacher's onsets guided at w and its sustain
    at 1 + s (w - 1): a student that outputs exactly that has no loss, one made for
    another share has some; shares outside [0, 1] are refused."""
    m = memorised
    batch = 4
    x0 = m.x0.expand(batch, -1, -1, -1)
    cond = Conditions(
        **{k: v if v is None else v.expand(batch, *v.shape[1:]) for k, v in vars(m.cond).items()}
    )

    def loss(student_share: float) -> float:
        with torch.no_grad():
            return m.diffusion.distillation_terms(
                ExactStudent(m.model, student_share),
                m.model,
                x0,
                cond,
                (2.0, 3.0),
                torch.Generator().manual_seed(1),
                sustain_share=share,
            ).loss.item()

    # share 1 is the plain guided target: w - 1 on both channels, i.e. u + w (c - u)
    assert torch.equal(
        channel_guidance(torch.tensor([3.0]), 1.0).flatten(), torch.tensor([2.0, 2.0])
    )
    assert loss(share) < 1e-10
    assert loss(1.0 - share if share != 0.5 else 0.0) > 1e-6
    with pytest.raises(ValueError, match="sustain_share"):
        m.diffusion.distillation_terms(m.model, m.model, x0, cond, (1.0, 3.0), sustain_share=1.5)


class FixedX0(nn.Module):
    """A 'network' whose x0 estimate is always `x0` (v-prediction), whatever it is given."""

    def __init__(self, diffusion: Diffusion, x0: torch.Tensor) -> None:
        super().__init__()
        self.diffusion, self.x0 = diffusion, x0
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x_t, t, cond, drop=None, guidance=None):  # type: ignore[no-untyped-def]
        self.calls.append(tuple(int(v) for v in t))
        ab = self.diffusion.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        return (ab.sqrt() * x_t - self.x0) / (1 - ab).sqrt()  # v = (a x_t - x0) / s


@pytest.mark.parametrize("substeps", [1, 2, 4])
def test_step_distillation_targets_agree_with_ddim_where_the_path_is_exact(substeps: int) -> None:
    """With a teacher whose x0 estimate never changes, its DPM-Solver++ path and one DDIM step
    both solve the sampling ODE exactly: a student equal to the teacher has zero loss on every
    grid step, however many substeps the teacher takes (the target's algebra is right), and
    the teacher is called `substeps` times per item on the grid between t and the next time."""
    config = preset("tiny")
    diffusion = Diffusion(config.diffusion)
    gen = torch.Generator().manual_seed(0)
    shape = (6, 2, config.window_steps, config.n_pitches)
    x0 = torch.rand(shape, generator=gen) * 1.6 - 0.8  # inside [-1, 1]: no clipping
    teacher = FixedX0(diffusion, x0)
    cond = two_segment_conditions(config, shape[0])
    terms = diffusion.step_distillation_terms(
        teacher, teacher, x0, cond, (1.0, 3.0), 5, substeps, torch.Generator().manual_seed(1)
    )
    assert float(terms.loss) < 1e-9
    grid = diffusion.timesteps(5)
    assert set(terms.t.tolist()) <= set(grid)
    assert len(teacher.calls) == substeps + 1  # the path's calls, then the student's
    first = teacher.calls[0]
    assert first == tuple(terms.t.tolist())
    for item, t in enumerate(terms.t.tolist()):
        following = grid[grid.index(t) + 1] if t != 0 else 0
        times = [call[item] for call in teacher.calls[:substeps]]
        assert times[0] == t and all(
            a >= b >= following for a, b in zip(times, times[1:], strict=False)
        )
    # another teacher (another x0) does give a loss
    other = FixedX0(diffusion, -x0)
    assert (
        float(
            diffusion.step_distillation_terms(
                teacher, other, x0, cond, (1.0, 3.0), 5, substeps, torch.Generator().manual_seed(1)
            ).loss
        )
        > 0.01
    )


def test_step_distillation_teaches_few_ddim_steps(memorised: Memorised) -> None:
    """A student started from the teacher learns to take its 4 DDIM steps as the teacher's
    16 DPM-Solver++ steps (four per student step): the loss falls, and the student's 4-step
    samples still recall the memorised pattern."""
    m = memorised
    torch.manual_seed(0)
    student = distillation_student(m.model)
    batch = 8
    x0 = m.x0.expand(batch, -1, -1, -1)
    cond = Conditions(
        **{k: v if v is None else v.expand(batch, *v.shape[1:]) for k, v in vars(m.cond).items()}
    )
    optimiser = torch.optim.AdamW(student.parameters(), lr=1e-3)
    train_gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        loss = m.diffusion.step_distillation_terms(
            student, m.model, x0, cond, (1.0, 1.0), 4, 4, train_gen
        ).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    student.eval()
    before, after = np.mean(losses[:10]), np.mean(losses[-10:])
    print(f"step distillation loss {before:.4f} -> {after:.4f}")
    assert after < 0.5 * before
    sample = m.diffusion.sample(
        student,
        m.cond,
        torch.Generator().manual_seed(0),
        SamplerSettings(steps=4, guidance=1.0, sampler="ddim"),
    )
    assert onset_f1(sample, m.x0) >= 0.9


def test_stochastic_samplers_draw_the_data_distribution() -> None:
    """On Gaussian data (std 0.5) with its exact denoiser, the SDE form of DPM-Solver++ (eta 1)
    draws samples of the data's spread: a fresh-noise share off by a little would shrink or
    widen it (measured: std 0.491 at 50 steps; ancestral DDIM at the same steps 0.451, it
    needs more). Fresh noise comes from the generator, so a seed repeats the draw."""
    config = preset("tiny", n_pitches=8, pitch_low=60)
    diffusion = Diffusion(config.diffusion)
    model = GaussianDenoiser(diffusion, spread=0.5)
    batch = 16
    cond = single_segment_conditions(config, torch.zeros(batch, 1, config.window_steps, 8), batch)

    def draw(sampler: str, eta: float, seed: int = 0) -> torch.Tensor:
        settings = SamplerSettings(steps=50, guidance=1.0, sampler=sampler, eta=eta, clip_x0=False)
        return diffusion.sample(model, cond, torch.Generator().manual_seed(seed), settings)

    sde, ancestral = draw("dpm", 1.0), draw("ddim", 1.0)
    assert abs(float(sde.std()) - 0.5) < 0.015
    assert abs(float(sde.std()) - 0.5) < abs(float(ancestral.std()) - 0.5)
    assert abs(float(sde.mean())) < 0.02
    assert torch.equal(sde, draw("dpm", 1.0))
    assert not torch.equal(sde, draw("dpm", 1.0, seed=1))
    assert not torch.equal(sde, draw("dpm", 0.0))
    with pytest.raises(ValueError, match="UniPC"):
        SamplerSettings(sampler="unipc", eta=1.0)


def test_sample_with_grad_draws_the_same_sample_and_keeps_the_graph() -> None:
    """`sample_with_grad` is `sample` bit for bit (the clip's straight-through gradient adds
    exactly zero), keeps the graph of every call or, with last_calls, of the last ones only."""
    config = preset("tiny", n_pitches=24, pitch_low=48)
    torch.manual_seed(0)
    model = Denoiser(config)
    _, chord = chord_pattern(config)
    cond = single_segment_conditions(config, chord, 2)
    diffusion = Diffusion(config.diffusion)
    settings = SamplerSettings(steps=6, sampler="dpm", eta=1.0, guidance=1.0, final_call=False)
    drawn = diffusion.sample(model, cond, torch.Generator().manual_seed(3), settings)
    kept = diffusion.sample_with_grad(model, cond, torch.Generator().manual_seed(3), settings)
    assert torch.equal(drawn, kept) and kept.requires_grad
    kept.sum().backward()
    every_call = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert every_call and any(float(g.abs().max()) > 0 for g in every_call)
    model.zero_grad(set_to_none=True)
    last = diffusion.sample_with_grad(model, cond, torch.Generator().manual_seed(3), settings, 1)
    assert torch.equal(drawn, last)
    last.sum().backward()
    last_call = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert any(not torch.allclose(a, b) for a, b in zip(every_call, last_call, strict=True))
