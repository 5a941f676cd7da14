"""The diffusion process: noise schedule, training loss and samplers (DDIM, DPM-Solver++ 2M,
UniPC: the same 2M predictor followed by the UniC corrector of Zhao et al. 2023).

Timesteps t are integers in [0, num_train_steps); t = 0 is the least noisy. The schedule is
computed in float64 and kept in float32; the denoiser may run under bf16 autocast but its
output is cast back to float32 before any schedule arithmetic.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from diffbgm.model.conditions import Conditions
from diffbgm.model.config import DiffusionConfig
from diffbgm.model.unet import DeepFeatures

ProgressFn = Callable[[int, int], None]


def make_alphas_cumprod(config: DiffusionConfig) -> torch.Tensor:
    """(num_train_steps,) float64 cumulative signal fraction alpha_bar_t, decreasing in t."""
    n = config.num_train_steps
    if config.beta_schedule == "scaled_linear":
        betas = torch.linspace(
            math.sqrt(config.beta_start), math.sqrt(config.beta_end), n, dtype=torch.float64
        ).square()
        return torch.cumprod(1.0 - betas, dim=0)
    # cosine (Nichol & Dhariwal 2021), betas capped so the last step is not pure noise / NaN
    s = 0.008
    grid = torch.arange(n + 1, dtype=torch.float64) / n
    f = torch.cos((grid + s) / (1 + s) * math.pi / 2).square()
    betas = (1.0 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1.0 - betas, dim=0)


# One generator for the whole batch, or one per batch item (each item's noise then does not
# depend on which other items share the call).
Generators = torch.Generator | Sequence[torch.Generator] | None


def _noise(shape: tuple[int, ...], generator: Generators, device: torch.device) -> torch.Tensor:
    """Standard normal noise drawn from `generator` (on its own device), moved to `device`;
    with a sequence of generators, item b of the batch (dim 0) is drawn from generator b."""
    if isinstance(generator, Sequence):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        return torch.stack([_noise(shape[1:], item, device) for item in generator])
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=gen_device).to(device)


def _takes_guidance(model: nn.Module) -> bool:
    """Whether the network was distilled to take the guidance scale (one pass per step)."""
    return bool(getattr(getattr(model, "config", None), "guidance_embedding", False))


def channel_guidance(w: torch.Tensor, sustain_share: float) -> torch.Tensor:
    """Scales w (B,) -> the weights (B, 2, 1, 1) of the guidance update (conditional minus
    unconditional) added to the conditional output: w - 1 on the onset channel,
    sustain_share (w - 1) on the sustain channel."""
    onset = w - 1.0
    return torch.stack([onset, sustain_share * onset], dim=1)[:, :, None, None]


def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, 1) on like's device, float32."""
    return values.to(device=like.device, dtype=torch.float32).reshape(-1, *[1] * (like.dim() - 1))


Until = int | torch.Tensor  # a painting acts while t >= until (per step: (B, 1, W, 1))


def _painting(
    name: str,
    values: torch.Tensor | None,
    mask: torch.Tensor | None,
    until: Until,
    shape: tuple[int, ...],
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, Until] | None:
    """`name` and `name_mask` as (float32 values, bool mask of x's shape, until), or None."""
    if (values is None) != (mask is None):
        raise ValueError(f"painting needs both `{name}` and `{name}_mask`")
    if values is None or mask is None:
        return None
    return (
        values.to(device=device, dtype=torch.float32),
        mask.to(device).bool().expand(shape),
        until if isinstance(until, int) else until.to(device),
    )


def _active(painted: torch.Tensor, until: Until, t: int) -> torch.Tensor | None:
    """Where a painting acts at timestep t (None: nowhere); `until` per step or one value.
    None where no step is painted, so that no noise is drawn for it: a painting that acts
    nowhere leaves the generator where it was, as a scalar `until` always did."""
    if isinstance(until, int):
        return painted if t >= until else None
    active = painted & (t >= until)
    return active if bool(active.any()) else None


@dataclass(frozen=True)
class SamplerSettings:
    """The sampler's knobs: one object for every window of a piece, so a knob is added in one
    place instead of threaded through each layer (`Diffusion.sample`, `sample_piece`).

    steps: denoising steps, evenly spaced from the noisiest timestep to t = 0 (`timesteps`).
    guidance: classifier-free guidance scale (1 = the conditional pass alone).
    sampler: 'ddim' (eta = 0: deterministic given the generator; eta = 1 with steps = N is
        ancestral DDPM), 'dpm' (DPM-Solver++ 2M, deterministic) or 'unipc' (the same
        predictor, then each new point corrected with the network output computed there,
        which costs no extra network call).
    eta: how much fresh noise a step adds: DDIM (0: none, 1: as DDPM) and DPM-Solver++ (0: the
        ODE solver, 1: its SDE form); UniPC's corrector assumes none, so it refuses eta > 0.
    noise_below: if set, eta applies only at the steps from timesteps t < this (fresh noise at
        the quiet end of the schedule only); the noisier steps solve the ODE.
    clip_x0: clip each predicted x0 to [-1, 1] and recompute eps from it.
    guidance_until: guidance applies while the timestep is >= this; the steps below run the
        conditional pass alone (guidance matters most for the coarse shape, decided early).
    guidance_from: if set, guidance applies only while the timestep is < this too (a guidance
        interval, Kynkaanniemi et al. 2024): at the noisiest steps guided estimates commit to
        more notes than the conditional pass would.
    deep_reuse: this many of the quietest steps (the last, the third-last, ...) reuse the
        deep features the network computed at the step before them (`DeepFeatures`) and run
        only its outermost level.
    final_call: False skips the network call at t = 0 (`sampling_timesteps`).
    """

    steps: int = 50
    guidance: float = 3.0
    sampler: str = "ddim"
    eta: float = 0.0
    noise_below: int | None = None
    clip_x0: bool = True
    guidance_until: int = 0
    guidance_from: int | None = None
    deep_reuse: int = 0
    final_call: bool = True

    def eta_at(self, t: int) -> float:
        """The fresh-noise share of the step from timestep t."""
        return self.eta if self.noise_below is None or t < self.noise_below else 0.0

    def guides_at(self, t: int) -> bool:
        """Whether timestep t is guided (between guidance_until and guidance_from)."""
        return t >= self.guidance_until and (self.guidance_from is None or t < self.guidance_from)

    def __post_init__(self) -> None:
        if self.sampler not in ("ddim", "dpm", "unipc"):
            raise ValueError(f"unknown sampler {self.sampler!r} (use 'ddim', 'dpm' or 'unipc')")
        if self.eta > 0 and self.sampler == "unipc":
            raise ValueError("UniPC is deterministic: use eta 0, or ddim / dpm for eta > 0")


@dataclass(frozen=True)
class Branching:
    """Rows of a batch that share their first calls (candidates branching late).

    The batch holds groups of `copies` rows with the same conditions (a window's candidates,
    each with its own generator). The first `at` network calls are made for the first row of
    each group only; before call `at` its sample is copied to the group's other rows, and from
    there each row goes on with its own noise (a stochastic sampler's fresh noise is what
    makes them differ). The first row is then the sample it would have been alone.
    """

    at: int
    copies: int


@dataclass(frozen=True)
class LossTerms:
    """One training loss with what was drawn for it (tests check the drop rate through it)."""

    loss: torch.Tensor  # scalar
    t: torch.Tensor  # (B,) long: the timesteps drawn
    drop: torch.Tensor  # (B,) bool: items trained as unconditional (classifier-free null)
    x0_pred: torch.Tensor | None = None  # (B, 2, T, P) float: the network's estimate of x0


class Diffusion:
    """Gaussian diffusion over piano rolls in [-1, 1] with a configurable schedule."""

    def __init__(self, config: DiffusionConfig) -> None:
        self.config = config
        ab = make_alphas_cumprod(config)
        self.alphas_cumprod = ab.float()  # (N,)
        self.sqrt_ab = ab.sqrt().float()
        self.sqrt_one_minus_ab = (1.0 - ab).sqrt().float()

    @property
    def num_train_steps(self) -> int:
        return self.config.num_train_steps

    # ---- forward process and parametrisation -------------------------------------------

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise; x0, noise (B, ...), t (B,) long."""
        a = _broadcast(self.sqrt_ab[t.cpu()], x0)
        s = _broadcast(self.sqrt_one_minus_ab[t.cpu()], x0)
        return a * x0 + s * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network learns to output: eps, or v = sqrt(ab) eps - sqrt(1-ab) x0."""
        if self.config.prediction == "eps":
            return noise
        a = _broadcast(self.sqrt_ab[t.cpu()], x0)
        s = _broadcast(self.sqrt_one_minus_ab[t.cpu()], x0)
        return a * noise - s * x0

    def split_prediction(
        self, pred: torch.Tensor, x_t: torch.Tensor, ab: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Network output at signal fraction ab (a scalar, or one per item broadcast to x_t)
        -> (x0, eps)."""
        a, s = ab.sqrt(), (1.0 - ab).sqrt()
        if self.config.prediction == "eps":
            return (x_t - s * pred) / a, pred
        return a * x_t - s * pred, s * x_t + a * pred

    # ---- training ------------------------------------------------------------------------

    def weighted_mse(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error over (B, 2, T, P), the onset channel weighted by
        config.onset_loss_weight against the sustain channel (weights normalised to mean 1)."""
        weights = torch.tensor([self.config.onset_loss_weight, 1.0], device=pred.device)
        weights = (weights / weights.mean())[None, :, None, None]
        return ((pred - target).square() * weights).mean()

    def training_terms(
        self,
        model: nn.Module,
        x0: torch.Tensor,
        cond: Conditions,
        generator: torch.Generator | None = None,
        p_uncond: float | None = None,
    ) -> LossTerms:
        """Loss with t ~ U{0..N-1} and drop ~ Bernoulli(p_uncond) per item.

        p_uncond defaults to model.config.p_uncond. The loss is the MSE over every element,
        the onset channel weighted by config.onset_loss_weight (weights normalised to mean 1).
        """
        batch = x0.shape[0]
        device = x0.device
        gen_device = generator.device if generator is not None else torch.device("cpu")
        if p_uncond is None:
            p_uncond = float(getattr(model, "config").p_uncond)  # noqa: B009
        t = torch.randint(0, self.num_train_steps, (batch,), generator=generator, device=gen_device)
        drop = torch.rand(batch, generator=generator, device=gen_device) < p_uncond
        noise = _noise(tuple(x0.shape), generator, device)
        t, drop = t.to(device), drop.to(device)
        x_t = self.q_sample(x0, t, noise)
        pred = model(x_t, t, cond, drop).float()  # (B, 2, T, P)
        loss = self.weighted_mse(pred, self.target(x0.float(), noise, t))
        return LossTerms(loss=loss, t=t, drop=drop, x0_pred=self.predicted_x0(pred, x_t, t))

    def predicted_x0(self, pred: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Network outputs (B, ...) at timesteps t (B,) -> their estimates of x0 (B, ...)."""
        return self.split_prediction(pred, x_t, _broadcast(self.alphas_cumprod[t.cpu()], x_t))[0]

    def training_loss(
        self,
        model: nn.Module,
        x0: torch.Tensor,
        cond: Conditions,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Scalar training loss for a batch x0 (B, 2, T, P) in [-1, 1]."""
        return self.training_terms(model, x0, cond, generator).loss

    def distillation_terms(
        self,
        student: nn.Module,
        teacher: nn.Module,
        x0: torch.Tensor,
        cond: Conditions,
        scales: tuple[float, float],
        generator: torch.Generator | None = None,
        sustain_share: float = 1.0,
    ) -> LossTerms:
        """Guidance distillation (Meng et al. 2023, stage one): at x_t ~ q(x_t | x0), the
        student, given a scale w ~ U[scales], learns the teacher's guided output at w.

        sustain_share < 1 guides the sustain channel less than the onsets: at scale
        1 + sustain_share (w - 1) (0: the conditional sustain). Guidance on the sustain
        channel is what thickens the chords, on the onsets what gives the groove
        (docs/evaluation.md, "Where the extra notes come from"). The loss weights the channels
        as `training_terms` does; drop is all False (the student is only ever asked for
        guided outputs; w = 1 is the conditional one).
        """
        if not 0.0 <= sustain_share <= 1.0:
            raise ValueError(f"sustain_share must be in [0, 1], got {sustain_share}")
        batch = x0.shape[0]
        device = x0.device
        gen_device = generator.device if generator is not None else torch.device("cpu")
        t = torch.randint(0, self.num_train_steps, (batch,), generator=generator, device=gen_device)
        low, high = scales
        w = low + (high - low) * torch.rand(batch, generator=generator, device=gen_device)
        noise = _noise(tuple(x0.shape), generator, device)
        t, w = t.to(device), w.to(device)
        x_t = self.q_sample(x0, t, noise)
        with torch.no_grad():
            both = teacher(
                torch.cat([x_t, x_t]),
                torch.cat([t, t]),
                cond.cat(cond),
                torch.arange(2 * batch, device=device) >= batch,
            ).float()
            conditional, unconditional = both.chunk(2)
            target = conditional + channel_guidance(w, sustain_share) * (
                conditional - unconditional
            )
        no_drop = torch.zeros(batch, dtype=torch.bool, device=device)
        pred = student(x_t, t, cond, no_drop, w).float()
        return LossTerms(
            loss=self.weighted_mse(pred, target),
            t=t,
            drop=no_drop,
            x0_pred=self.predicted_x0(pred, x_t, t),
        )

    def step_distillation_terms(
        self,
        student: nn.Module,
        teacher: nn.Module,
        x0: torch.Tensor,
        cond: Conditions,
        scales: tuple[float, float],
        steps: int,
        substeps: int,
        generator: torch.Generator | None = None,
    ) -> LossTerms:
        """Step distillation (progressive distillation, Salimans & Ho 2022, in one hop).

        On the grid of a `steps`-step DDIM sampler, one deterministic DDIM step of the
        student from a grid time t to the next one learns to land where `substeps`
        DPM-Solver++(2M) steps of the teacher land; at the grid's last time (t = 0) it learns
        the teacher's own output (so the last call stays what it was: the x0 there is almost
        the input, and its error would weigh 1 + SNR = 1,176 times). Both are guidance-distilled
        networks given the same scale w ~ U[scales]; x_t ~ q(x_t | x0) at a grid time drawn
        uniformly; x0 is clipped to [-1, 1] as the samplers do. The target is turned into the
        x0 that one DDIM step would need and compared in the network's own parametrisation
        (for v: weight 1 + SNR in x0 space, the weighting Salimans & Ho recommend), channels
        weighted as `training_terms`.
        """
        batch, device = x0.shape[0], x0.device
        gen_device = generator.device if generator is not None else torch.device("cpu")
        grid = torch.tensor([*self.timesteps(steps), -1])
        index = torch.randint(0, len(grid) - 1, (batch,), generator=generator, device=gen_device)
        t, t_next = grid[index.cpu()].to(device), grid[index.cpu() + 1].to(device)
        low, high = scales
        w = (low + (high - low) * torch.rand(batch, generator=generator, device=gen_device)).to(
            device
        )
        noise = _noise(tuple(x0.shape), generator, device)
        x_t = self.q_sample(x0, t, noise)
        no_drop = torch.zeros(batch, dtype=torch.bool, device=device)
        final = _broadcast(t_next < 0, x0) > 0
        with torch.no_grad():
            x_end, output_at_t = self._teacher_path(
                teacher, x_t, t, t_next.clamp(min=0), cond, w, substeps
            )
            ab_t = _broadcast(self.alphas_cumprod[t.cpu()], x0)
            ab_end = _broadcast(self.alphas_cumprod[t_next.clamp(min=0).cpu()], x0)
            a_t, s_t = ab_t.sqrt(), (1 - ab_t).sqrt()
            a_end, s_end = ab_end.sqrt(), (1 - ab_end).sqrt()
            # x_end = a_end x0 + (s_end / s_t)(x_t - a_t x0) solved for x0
            jump_x0 = (x_end - (s_end / s_t) * x_t) / (a_end - s_end * a_t / s_t).clamp(min=1e-6)
            jump = (
                (x_t - a_t * jump_x0) / s_t
                if self.config.prediction == "eps"
                else (a_t * x_t - jump_x0) / s_t
            )
            target = torch.where(final, output_at_t, jump)
        pred = student(x_t, t, cond, no_drop, w).float()
        return LossTerms(loss=self.weighted_mse(pred, target), t=t, drop=no_drop)

    def _teacher_path(
        self,
        teacher: nn.Module,
        x_t: torch.Tensor,
        t: torch.Tensor,
        t_end: torch.Tensor,
        cond: Conditions,
        w: torch.Tensor,
        substeps: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's DPM-Solver++(2M) path from t to t_end (per item, `substeps` equal
        steps, second order after the first) -> (x at t_end, the teacher's output at t)."""
        ab = self.alphas_cumprod.to(x_t.device)
        no_drop = torch.zeros(x_t.shape[0], dtype=torch.bool, device=x_t.device)
        span = (t - t_end).double()
        x, first_output = x_t, None
        previous: tuple[torch.Tensor, torch.Tensor] | None = None  # (x0, lambda) one step back
        for j in range(substeps):
            s = t - (span * j / substeps).round().long()
            s_next = t - (span * (j + 1) / substeps).round().long()
            ab_s, ab_n = _broadcast(ab[s], x), _broadcast(ab[s_next], x)
            pred = teacher(x, s, cond, no_drop, w).float()
            first_output = pred if first_output is None else first_output
            x0, _ = self.split_prediction(pred, x, ab_s)
            x0 = x0.clamp(-1.0, 1.0)
            lam = 0.5 * torch.log(ab_s / (1 - ab_s))
            lam_n = 0.5 * torch.log(ab_n / (1 - ab_n))
            h = lam_n - lam
            data = x0
            if previous is not None:
                # items whose path has zero length (t = t_end) keep h = 0 and do not move
                r = (lam - previous[1]) / torch.where(h == 0, torch.ones_like(h), h)
                r = torch.where(h == 0, torch.ones_like(r), r)
                data = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous[0]
            x = ((1 - ab_n) / (1 - ab_s)).sqrt() * x - ab_n.sqrt() * torch.expm1(-h) * data
            previous = (x0, lam)
        assert first_output is not None
        return x, first_output

    # ---- sampling ------------------------------------------------------------------------

    def timesteps(self, steps: int) -> list[int]:
        """`steps` timesteps from N-1 down to 0, evenly spaced (all of them when steps = N)."""
        if not 1 <= steps <= self.num_train_steps:
            raise ValueError(f"steps must be in 1..{self.num_train_steps}, got {steps}")
        grid = np.linspace(0, self.num_train_steps - 1, steps).round().astype(int)
        return sorted({int(v) for v in grid}, reverse=True)

    def sampling_timesteps(self, steps: int, final_call: bool = True) -> list[int]:
        """The timesteps a sampler of `steps` calls the network at: `timesteps(steps)`, without
        its last point t = 0 when final_call is off. The roll is then the x0 predicted at the
        last noisy timestep (the ODE's end point, as DPM-Solver and UniPC end in diffusers),
        one network call fewer; on it the call at t = 0 only nudges the roll by
        sqrt(1 - alpha_bar_0) (about 3 %) of the network output and corrects the step before."""
        ts = self.timesteps(steps)
        if not final_call and len(ts) > 1 and ts[-1] == 0:
            return ts[:-1]
        return ts

    def guided_prediction(
        self,
        model: nn.Module,
        x_t: torch.Tensor,
        t: int,
        cond: Conditions,
        guidance: float,
        deep: DeepFeatures | None = None,
    ) -> torch.Tensor:
        """Classifier-free guided network output at timestep t, float32 (B, 2, T, P).

        The conditional and the unconditional pass share ONE batched forward (2B items).
        guidance = 1 runs the conditional pass alone, and so does a guidance-distilled
        network (`guidance_embedding`), which is given the scale instead. `deep` (the
        Denoiser's `DeepFeatures`) is handed to the network as it is.
        """
        batch = x_t.shape[0]
        device = x_t.device
        distilled = _takes_guidance(model)  # read before the wrapping hides the config
        if deep is not None:
            model = functools.partial(model, deep=deep)  # type: ignore[assignment]
        if distilled:
            # a guidance-distilled network: one pass stands for both
            t_batch = torch.full((batch,), t, dtype=torch.long, device=device)
            no_drop = torch.zeros(batch, dtype=torch.bool, device=device)
            scales = torch.full((batch,), float(guidance), device=device)
            return model(x_t, t_batch, cond, no_drop, scales).float()
        if guidance == 1.0:
            t_batch = torch.full((batch,), t, dtype=torch.long, device=device)
            no_drop = torch.zeros(batch, dtype=torch.bool, device=device)
            return model(x_t, t_batch, cond, no_drop).float()
        t_batch = torch.full((2 * batch,), t, dtype=torch.long, device=device)
        drop = torch.arange(2 * batch, device=device) >= batch
        out = model(torch.cat([x_t, x_t]), t_batch, cond.cat(cond), drop).float()
        conditional, unconditional = out.chunk(2)
        return unconditional + guidance * (conditional - unconditional)

    def sample_with_grad(
        self,
        model: nn.Module,
        cond: Conditions,
        generator: Generators,
        settings: SamplerSettings = SamplerSettings(),
        last_calls: int | None = None,
    ) -> torch.Tensor:
        """`sample` with the autograd graph kept, for training on what the sampler writes
        (trainer/sampled.py). The forward pass is `sample`'s bit for bit; the clip of each x0
        estimate passes gradients straight through, since the sampler's estimates end near
        +-1 and a true clip would cut the gradient of every cell the sampler has settled.
        last_calls = K keeps the graph of the last K network calls only (DRaFT-K, Clark et
        al. 2024): the gradient through the whole chain is orders of magnitude larger and
        mostly noise, and the calls before run without a graph (cheaper)."""
        return self._sample(
            model, cond, generator, settings, straight_through=True, graph_calls=last_calls
        )

    @torch.no_grad()
    def sample(
        self,
        model: nn.Module,
        cond: Conditions,
        generator: Generators,
        settings: SamplerSettings = SamplerSettings(),
        *,
        known: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        progress: ProgressFn | None = None,
        guide: torch.Tensor | None = None,
        guide_mask: torch.Tensor | None = None,
        guide_until: Until = 0,
        branch: Branching | None = None,
    ) -> torch.Tensor:
        """Draw x0 (B, 2, T, P) in [-1, 1] for the batch of conditions, with the sampler,
        steps and guidance of `settings` (`SamplerSettings`); with `branch`, groups of rows
        share their first calls (`Branching`).

        In-painting: where known_mask (broadcastable to x, 1 = keep) is set, x is replaced
        after every step by known noised to the next timestep, and by `known` itself at the end.
        Guiding (SDEdit-like, used to recall earlier music): where guide_mask is set, x is
        replaced the same way by `guide`, but only while the timestep is >= guide_until; the
        steps below are free, so the coarse shape follows the guide and the details follow
        the conditions.
        A call whose result the paintings overwrite is not made (`_unused_calls`: most of a
        recalled window's noisy steps); the sample is the same bit for bit (a stochastic
        step's fresh noise is drawn all the same, so later draws do not shift).
        """
        return self._sample(
            model,
            cond,
            generator,
            settings,
            known=known,
            known_mask=known_mask,
            progress=progress,
            guide=guide,
            guide_mask=guide_mask,
            guide_until=guide_until,
            branch=branch,
        )

    def _sample(
        self,
        model: nn.Module,
        cond: Conditions,
        generator: Generators,
        settings: SamplerSettings,
        *,
        known: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        progress: ProgressFn | None = None,
        guide: torch.Tensor | None = None,
        guide_mask: torch.Tensor | None = None,
        guide_until: Until = 0,
        branch: Branching | None = None,
        straight_through: bool = False,
        graph_calls: int | None = None,
    ) -> torch.Tensor:
        """The sampling loop of `sample` and `sample_with_grad` (graph_calls: the graph of
        only the last that many calls is kept; None: all)."""
        device = next(model.parameters()).device
        batch, _, steps_t, pitches = cond.chord.shape
        shape = (batch, 2, steps_t, pitches)
        cond = cond.to(device)
        # (values, where, painted while t >= this); in-painting last, so the known part wins
        paints = [
            painting
            for painting in (
                _painting("guide", guide, guide_mask, guide_until, shape, device),
                _painting("known", known, known_mask, -1, shape, device),
            )
            if painting is not None
        ]
        ts = self.sampling_timesteps(settings.steps, settings.final_call)
        # each reused step follows a computed one
        reused = set(range(len(ts) - 1, 0, -2)[: settings.deep_reuse])
        deep = DeepFeatures() if reused else None
        whole = (cond, paints, generator, shape)
        if branch is not None and branch.copies > 1 and branch.at > 0:
            _check_branching(branch, batch, ts, settings)
            firsts = list(range(0, batch, branch.copies))
            cond, paints, generator = _keep_rows(firsts, cond, paints, generator)
            shape = (len(firsts), *shape[1:])
        else:
            branch = None
        x = self._paint_all(_noise(shape, generator, device), paints, ts[0], generator)
        unused = self._unused_calls(paints, ts, x, reused)
        previous_x0: torch.Tensor | None = None
        previous_lambda = 0.0
        # UniC needs the last step's start: (x, its ab, x0 there), the x0 before that and the
        # predictor's order
        corrector: _CorrectorState | None = None
        for i, t in enumerate(ts):
            if branch is not None and i == branch.at:  # each row of a group goes its own way
                copies = [r for r in range(x.shape[0]) for _ in range(branch.copies)]
                x = x[copies]
                previous_x0 = None if previous_x0 is None else previous_x0[copies]
                corrector = None if corrector is None else corrector.rows(copies)
                if deep is not None and deep.value is not None:
                    deep.value = deep.value[copies]
                cond, paints, generator, shape = whole
                branch = None
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            ab = self.alphas_cumprod[t].to(device)
            ab_prev = self.alphas_cumprod[t_prev].to(device) if t_prev >= 0 else torch.ones(())
            ab_prev = ab_prev.to(device)
            if i in unused:  # every painting overwrites what this call would decide
                if t_prev >= 0 and settings.eta_at(t) > 0:
                    # the step's fresh noise is drawn all the same, so the noise of every
                    # later step (and painting) is what it would have been
                    _noise(shape, generator, device)
                x = self._paint_all(x, paints, t_prev, generator)
                previous_x0, corrector = None, None  # (previous_lambda: read only with them)
                if progress is not None:
                    progress(i + 1, len(ts))
                continue
            scale = settings.guidance if settings.guides_at(t) else 1.0
            if deep is not None:
                deep.reuse = i in reused
            with_graph = graph_calls is None or i >= len(ts) - graph_calls
            if not with_graph:
                x = x.detach()
            with torch.set_grad_enabled(torch.is_grad_enabled() and with_graph):
                pred = self.guided_prediction(model, x, t, cond, scale, deep)
            x0, eps = self.split_prediction(pred, x, ab)
            if settings.clip_x0:
                clipped = x0.clamp(-1.0, 1.0)
                # (x0 - x0.detach()) is exactly 0: the value is the clip, the gradient x0's
                x0 = clipped + (x0 - x0.detach()) if straight_through else clipped
                eps = (x - ab.sqrt() * x0) / (1.0 - ab).sqrt()
            if corrector is not None and t_prev >= 0:
                # the painted parts stay as painted: they are given, not solved for
                x = torch.where(
                    self._painted_where(paints, t, x), x, unic_correct(corrector, ab, x0)
                )
            if t_prev < 0:
                x = x0
            elif settings.sampler == "ddim":
                x = self._ddim_step(x0, eps, ab, ab_prev, settings.eta_at(t), generator)
            else:
                # first order into t = 0 (the grid's last point, where x0 is taken as it is)
                use_second_order = previous_x0 is not None and t_prev > 0
                if settings.sampler == "unipc":
                    earlier = previous_x0 if use_second_order else None
                    corrector = _CorrectorState(x, ab, x0, earlier, previous_lambda)
                x, previous_lambda = self._dpm_step(
                    x,
                    x0,
                    ab,
                    ab_prev,
                    previous_x0 if use_second_order else None,
                    previous_lambda,
                    settings.eta_at(t),
                    generator,
                )
                previous_x0 = x0
            x = self._paint_all(x, paints, t_prev, generator)
            if progress is not None:
                progress(i + 1, len(ts))
        return x

    def _ddim_step(
        self,
        x0: torch.Tensor,
        eps: torch.Tensor,
        ab: torch.Tensor,
        ab_prev: torch.Tensor,
        eta: float,
        generator: Generators,
    ) -> torch.Tensor:
        """x_t -> x_{t_prev} (Song et al. 2021, eq. 12); eta scales the fresh noise."""
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).clamp(min=0).sqrt()
        direction = (1 - ab_prev - sigma.square()).clamp(min=0).sqrt() * eps
        x = ab_prev.sqrt() * x0 + direction
        if eta > 0:
            x = x + sigma * _noise(tuple(x0.shape), generator, x0.device)
        return x

    @staticmethod
    def _dpm_step(
        x: torch.Tensor,
        x0: torch.Tensor,
        ab: torch.Tensor,
        ab_prev: torch.Tensor,
        previous_x0: torch.Tensor | None,
        previous_lambda: float,
        eta: float = 0.0,
        generator: Generators = None,
    ) -> tuple[torch.Tensor, float]:
        """One DPM-Solver++(2M) step (Lu et al. 2022, data prediction) from t to t_prev;
        eta > 0: its SDE form (the same paper's SDE-DPM-Solver++, 1 = the reverse SDE), which
        keeps a share 1 - e^(-2 eta h) of the step as fresh noise.

        Returns the new x and lambda_t (log alpha/sigma at t) for the next step's history.
        First order when there is no usable history (first step, and the final steps, where
        the second-order extrapolation is least stable with few steps).
        """
        sigma = (1 - ab).sqrt()
        alpha_prev, sigma_prev = ab_prev.sqrt(), (1 - ab_prev).sqrt()
        lam, lam_prev = _half_log_snr(ab), _half_log_snr(ab_prev)
        h = lam_prev - lam
        data = x0
        if previous_x0 is not None:
            r = (lam - previous_lambda) / h
            data = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous_x0
        kept = math.exp(-eta * h)  # 1 for the ODE: x carries all of its noise forward
        x_next = (sigma_prev / sigma) * kept * x - alpha_prev * math.expm1(-(1 + eta) * h) * data
        if eta > 0:
            fresh = math.sqrt(-math.expm1(-2 * eta * h))
            x_next = x_next + sigma_prev * fresh * _noise(tuple(x0.shape), generator, x0.device)
        return x_next, lam

    @classmethod
    def _unused_calls(
        cls,
        paints: list[tuple[torch.Tensor, torch.Tensor, Until]],
        ts: list[int],
        x: torch.Tensor,
        reused: set[int],
    ) -> set[int]:
        """The steps whose network call cannot change the sample: those after which the
        paintings overwrite all of x (a window wholly kept or recalled, at the steps where the
        recall still paints) and after whose next step they do too. Such a call's x0 reaches
        only the next step (its second-order predictor and its corrector), whose own result
        is overwritten as well, so skipping it leaves the sample bit for bit as it was. A call
        whose deep features the next step reuses is kept."""
        covered = [bool(cls._painted_where(paints, t, x).all()) for t in [*ts[1:], -1]]
        return {
            i for i in range(len(ts) - 1) if covered[i] and covered[i + 1] and i + 1 not in reused
        }

    @staticmethod
    def _painted_where(
        paints: list[tuple[torch.Tensor, torch.Tensor, Until]], t: int, x: torch.Tensor
    ) -> torch.Tensor:
        """Bool mask of x's shape: where a painting active at timestep t set x."""
        where = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
        for _, painted, until in paints:
            active = _active(painted, until, t)
            if active is not None:
                where = where | active
        return where

    def _paint_all(
        self,
        x: torch.Tensor,
        paints: list[tuple[torch.Tensor, torch.Tensor, Until]],
        t: int,
        generator: Generators,
    ) -> torch.Tensor:
        """Apply every painting still active at timestep t (t < 0: the end), in order."""
        for values, where, until in paints:
            active = _active(where, until, t)
            if active is not None:
                x = self._paint(x, values, active, t, generator)
        return x

    def _paint(
        self,
        x: torch.Tensor,
        known: torch.Tensor,
        keep: torch.Tensor,
        t: int,
        generator: Generators,
    ) -> torch.Tensor:
        """Replace the kept region by `known` noised to timestep t (t < 0: `known` itself)."""
        if t < 0:
            return torch.where(keep, known, x)
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long)
        noised = self.q_sample(known, t_batch, _noise(tuple(x.shape), generator, x.device))
        return torch.where(keep, noised, x)


@dataclass(frozen=True)
class _CorrectorState:
    """What UniC needs of the step that led to the current point."""

    x: torch.Tensor  # the sample the step started from (at timestep s0)
    ab: torch.Tensor  # alpha_bar at s0
    x0: torch.Tensor  # the (clipped) x0 predicted at s0
    earlier_x0: torch.Tensor | None  # the x0 one step before s0 if the predictor used it
    earlier_lambda: float  # its log-SNR lambda

    def rows(self, rows: list[int]) -> _CorrectorState:
        """The same state for some rows of the batch."""
        earlier = None if self.earlier_x0 is None else self.earlier_x0[rows]
        return _CorrectorState(self.x[rows], self.ab, self.x0[rows], earlier, self.earlier_lambda)


def _check_branching(
    branch: Branching, batch: int, ts: list[int], settings: SamplerSettings
) -> None:
    """ValueError where the groups do not fit the batch or the rows could not differ."""
    if batch % branch.copies:
        raise ValueError(f"a batch of {batch} is not made of groups of {branch.copies}")
    # a step adds fresh noise only where eta > 0 and another step follows
    if not any(settings.eta_at(t) > 0 for t in ts[branch.at : len(ts) - 1]):
        raise ValueError(
            "candidates that branch where the sampler adds no fresh noise would all be the "
            "same: branch earlier, or sample with eta > 0"
        )


def _keep_rows(
    rows: list[int],
    cond: Conditions,
    paints: list[tuple[torch.Tensor, torch.Tensor, Until]],
    generator: Generators,
) -> tuple[Conditions, list[tuple[torch.Tensor, torch.Tensor, Until]], Generators]:
    """The conditions, paintings and (per-row) generators of the kept rows."""
    index = torch.tensor(rows, dtype=torch.long)
    kept_paints = [
        (values[index], where[index], until if isinstance(until, int) else until[index])
        for values, where, until in paints
    ]
    if isinstance(generator, Sequence):
        generator = [generator[r] for r in rows]
    return cond.index(index), kept_paints, generator


def _half_log_snr(ab: torch.Tensor) -> float:
    """lambda = log(alpha / sigma) for alpha_bar ab."""
    return float(torch.log(ab.sqrt() / (1 - ab).sqrt()))


def unic_correct(state: _CorrectorState, ab: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The UniC-bh2 corrector (Zhao et al. 2023, data prediction) of the step s0 -> t.

    x0 is the network's x0 at the predicted point t. The step is redone as a multistep update
    that also uses x0 at t (and, after a second-order predictor, the x0 before s0): the same
    network calls as DPM-Solver++ 2M, one order more accurate.
    """
    lam_s0, lam_t = _half_log_snr(state.ab), _half_log_snr(ab)
    h = lam_t - lam_s0
    hh = -h  # data prediction integrates in -lambda
    h_phi_1 = math.expm1(hh)
    b_h = h_phi_1  # the "bh2" choice of B(h)
    alpha_t, sigma_t = ab.sqrt(), (1 - ab).sqrt()
    sigma_s0 = (1 - state.ab).sqrt()
    base = (sigma_t / sigma_s0) * state.x - alpha_t * h_phi_1 * state.x0
    change_t = x0 - state.x0
    if state.earlier_x0 is None:
        return base - alpha_t * b_h * 0.5 * change_t
    rk = (state.earlier_lambda - lam_s0) / h
    change_earlier = (state.earlier_x0 - state.x0) / rk
    # rho solves [[1, 1], [rk, 1]] rho = b (the order conditions of the two differences)
    phi_k = h_phi_1 / hh - 1
    b1 = phi_k / b_h
    b2 = (phi_k / hh - 0.5) * 2 / b_h
    rho_earlier = (b1 - b2) / (1 - rk)
    rho_t = b1 - rho_earlier
    return base - alpha_t * b_h * (rho_earlier * change_earlier + rho_t * change_t)
