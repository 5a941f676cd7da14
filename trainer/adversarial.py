"""An adversarial realism term: a small critic learns real windows from sampled ones while the
student learns to write windows the critic takes for real.

Sessions 43-47 asked the network for one statistic of the music at a time (a rhythm profile,
a voicing profile, the means of fifteen window features of what the sampler writes) and found
that matching the means is not matching the music: what the realism test still sees is how
the aspects go together (docs/evaluation.md, "What gives the music away, aspect by aspect").
A learned critic judges the whole window at once. Each training step:

1. samples the first N windows of the batch from their real conditions with the checkpoint's
   own sampler (trainer/sampled.py's `SampledTexture.sample`: its steps, stochastic solver and
   autoguidance; the graph of the last K network calls kept, DRaFT-K);
2. cuts them at the decode's thresholds, straight through: the critic sees notes, 0 or 1, as
   in the music, and the gradient is the soft cut's (sigmoid of width 0.1), so only cells a
   small change would flip pass it;
3. puts them (detached) and the batch's real windows into two pools of recent windows and
   takes a few critic steps on windows drawn from the pools (the logistic loss of a
   classifier, as in a GAN's discriminator): one step samples too few windows for a critic
   to learn from, and the student changes little from one step to the next;
4. adds the non-saturating generator loss, softplus(-critic(sampled)), to the student's loss,
   scaled so that its gradient at the network's output layer has the norm of the other
   terms' times the term's weight (`balance`).

The critic (`RollCritic`) is a four-layer convolutional net over the onset and sounding rolls
and a pitch coordinate (so it sees the register), pooled by mean and max, beside a small net
over the fifteen texture statistics of trainer/sampled.py; its layers are spectrally
normalised, which keeps its gradient bounded while the student chases it. For the
first `warmup` steps of a run only the critic learns, from the whole batch sampled without a
graph, so that the student's first gradients come from a critic that already tells the two
apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from diffbgm.model.conditions import Conditions
from trainer.run_state import flatten_optimizer_state, unflatten_optimizer_state
from trainer.sampled import (
    MIN_ONSETS,
    REALISM_FEATURES,
    TEXTURE_FEATURES,
    SampledTexture,
    realism_features,
    texture_features,
)

Statistics = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

# The statistics the critic reads beside its convolutions: the fifteen of the sampled texture
# term, or those and the rest of the realism test's note features (48 in all).
CRITIC_STATISTICS: dict[str, tuple[tuple[str, ...], Statistics]] = {
    "texture": (TEXTURE_FEATURES, texture_features),
    "realism": (REALISM_FEATURES, realism_features),
}


class RollCritic(nn.Module):
    """(B, T, P) onset and sounding rolls (0/1, or straight-through values) -> (B,) logits,
    high for windows the critic takes for real.

    Two views of a window: convolutions over the rolls and a pitch coordinate (so they see the
    register), pooled by mean and max; and the fifteen texture statistics of the sampled
    texture term (`trainer.sampled.texture_features`: notes per onset, polyphony and its
    spread, bass, top voice and its moves, octaves, ...), which the convolutions learn slowly
    from a few hundred windows (measured: a forest on these fifteen tells the shipped
    student's windows from real at 0.69, the convolutions alone at 0.56-0.64). With
    `statistics="realism"` the net reads those and the rest of the realism test's note
    features (`trainer.sampled.realism_features`: onset positions in the bar, interval
    classes, the spread of chord sizes, ...; 48, on which a forest reaches 0.73 on the same
    windows). The statistics are standardised by the real windows the critic sees first
    (`calibrate`)."""

    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    calibrated: torch.Tensor

    def __init__(self, width: int = 32, statistics: str = "texture") -> None:
        super().__init__()
        if statistics not in CRITIC_STATISTICS:
            raise ValueError(
                f"unknown critic statistics {statistics!r} ({sorted(CRITIC_STATISTICS)})"
            )
        names, self.features = CRITIC_STATISTICS[statistics]
        n_features = len(names)

        def conv(
            c_in: int, c_out: int, kernel: tuple[int, int], stride: int, pad: tuple[int, int]
        ) -> nn.Module:
            return spectral_norm(nn.Conv2d(c_in, c_out, kernel, stride, pad))

        # a first layer an octave wide sees chords and doublings; the strided ones, bars
        self.body = nn.Sequential(
            conv(3, width, (3, 13), 1, (1, 6)),
            nn.LeakyReLU(0.2),
            conv(width, 2 * width, (4, 4), 2, (1, 1)),
            nn.LeakyReLU(0.2),
            conv(2 * width, 4 * width, (4, 4), 2, (1, 1)),
            nn.LeakyReLU(0.2),
            conv(4 * width, 4 * width, (4, 4), 2, (1, 1)),
            nn.LeakyReLU(0.2),
        )
        self.statistics = nn.Sequential(
            spectral_norm(nn.Linear(n_features, 4 * width)),
            nn.LeakyReLU(0.2),
            spectral_norm(nn.Linear(4 * width, 4 * width)),
            nn.LeakyReLU(0.2),
        )
        self.head = spectral_norm(nn.Linear(12 * width, 1))
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def calibrate(self, onset: torch.Tensor, sounding: torch.Tensor) -> None:
        """Standardise the statistics by these (real) windows' mean and spread, once."""
        if bool(self.calibrated) or onset.shape[0] < 2:
            return
        features, _ = self.features(onset, sounding)
        self.feature_mean.copy_(features.mean(dim=0))
        self.feature_std.copy_(features.std(dim=0).clamp_min(1e-3))
        self.calibrated.fill_(True)

    def forward(self, onset: torch.Tensor, sounding: torch.Tensor) -> torch.Tensor:
        batch, _, pitches = onset.shape
        height = torch.linspace(-1.0, 1.0, pitches, device=onset.device, dtype=onset.dtype)
        height = height.expand_as(onset)
        x = torch.stack([onset, sounding, height], dim=1)  # (B, 3, T, P)
        h = self.body(x)  # (B, 4w, T/8, P/8)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # (B, 8w)
        # sounding passed as the held notes: the statistics count onset or held as sounding
        features, _ = self.features(onset, sounding)  # (B, K)
        standard = (features - self.feature_mean) / self.feature_std
        both = torch.cat([pooled, self.statistics(standard)], dim=1)  # (B, 12w)
        return self.head(both).squeeze(-1)


def straight_through_notes(
    roll: torch.Tensor, onset_threshold: float, sustain_threshold: float, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2, T, P) sampled rolls -> (B, T, P) onset and sounding notes: the decode's cut in
    the forward pass (0 or 1), the gradient of the cut softened by a sigmoid of width
    `temperature` in the backward pass. Sounding = onset or held, as the realism test counts."""

    def cut(values: torch.Tensor, threshold: float) -> torch.Tensor:
        soft = torch.sigmoid((values.float() - threshold) / temperature)
        hard = (values.float() > threshold).float()
        return hard + (soft - soft.detach())  # exactly 0 or 1 forward

    onset = cut(roll[:, 0], onset_threshold)
    held = cut(roll[:, 1], sustain_threshold)
    return onset, onset + held - onset * held


def real_notes(roll: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2, T, P) training rolls in {-1, 1} -> (B, T, P) onset and sounding notes."""
    onset = (roll[:, 0] > 0).float()
    held = (roll[:, 1] > 0).float()
    return onset, torch.maximum(onset, held)


@dataclass
class AdversarialStats:
    """Running sums of the critic's loss, its accuracy on the windows it judged and the
    student's adversarial loss since the last `pop`."""

    critic_loss: float = 0.0
    critic_accuracy: float = 0.0  # on each step's new windows, before it learns from them
    accuracy_steps: int = 0
    critic_steps: int = 0
    student_loss: float = 0.0
    scale: float = 0.0  # the balancing scale (AdversarialRealism.balance)
    student_steps: int = 0  # none during the warm-up

    def pop(self) -> dict[str, float | None]:
        values: dict[str, float | None] = {}
        if self.critic_steps:
            values["critic_loss"] = self.critic_loss / self.critic_steps
        if self.accuracy_steps:
            values["critic_accuracy"] = self.critic_accuracy / self.accuracy_steps
        if self.student_steps:
            values["adversarial_loss"] = self.student_loss / self.student_steps
            values["adversarial_scale"] = self.scale / self.student_steps
        self.critic_loss = self.critic_accuracy = self.student_loss = self.scale = 0.0
        self.critic_steps = self.accuracy_steps = self.student_steps = 0
        return values


class WindowPool:
    """The last `capacity` windows of one side (onset and sounding notes, stored as bytes):
    the critic learns from many more windows than one step samples (a replay buffer; the
    student moves little between steps, so recent windows stand for its music)."""

    def __init__(self, capacity: int, steps: int, pitches: int) -> None:
        self.notes = torch.zeros(capacity, 2, steps, pitches, dtype=torch.uint8)
        self.size = 0
        self.next = 0

    def add(self, onset: torch.Tensor, sounding: torch.Tensor) -> None:
        for window in torch.stack([onset, sounding], dim=1).detach().to("cpu", torch.uint8):
            self.notes[self.next] = window
            self.next = (self.next + 1) % len(self.notes)
            self.size = min(self.size + 1, len(self.notes))

    def draw(
        self, count: int, generator: torch.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(count, T, P) onset and sounding notes of windows drawn with replacement."""
        picks = torch.randint(0, self.size, (count,), generator=generator)
        notes = self.notes[picks].to(device, torch.float32)
        return notes[:, 0], notes[:, 1]


@dataclass
class AdversarialRealism:
    """The term; `loss(model, roll, cond, generator, step)` also trains the critic."""

    sampler: SampledTexture
    critic: RollCritic
    optimizer: torch.optim.Optimizer
    warmup: int
    fakes: WindowPool
    reals: WindowPool
    critic_steps: int = 4
    critic_batch: int = 32
    stats: AdversarialStats = field(default_factory=AdversarialStats)

    @classmethod
    def build(
        cls,
        sampler: SampledTexture,
        lr: float,
        warmup: int,
        statistics: str,
        seed: int,
        device: torch.device,
        window_shape: tuple[int, int],
        pool: int = 256,
    ) -> AdversarialRealism:
        """A fresh critic (its own seed: the global RNG's draws stay those of a run without
        the term), its Adam optimizer (betas 0.5, 0.9, as GAN critics are usually run) and
        empty pools of `pool` windows of (steps, pitches) `window_shape` a side."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            critic = RollCritic(statistics=statistics).to(device)
        optimizer = torch.optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.9))
        return cls(
            sampler=sampler,
            critic=critic,
            optimizer=optimizer,
            warmup=warmup,
            fakes=WindowPool(pool, *window_shape),
            reals=WindowPool(pool, *window_shape),
        )

    def notes(self, sampled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return straight_through_notes(
            sampled,
            self.sampler.onset_threshold,
            self.sampler.sustain_threshold,
            self.sampler.temperature,
        )

    def critic_update(
        self, sampled: torch.Tensor, roll: torch.Tensor, generator: torch.Generator
    ) -> None:
        """The new sampled windows (detached) and the batch's real ones go into the pools
        (windows with too few notes left out, as the realism test leaves them out); the
        critic's accuracy on them is logged before it learns from them (windows it has not
        seen), then it takes `critic_steps` steps on windows drawn from the pools."""
        onset, sounding = self.notes(sampled.detach())
        real_onset, real_sounding = real_notes(roll)
        fake_kept = onset.sum(dim=(1, 2)) >= MIN_ONSETS
        real_kept = real_onset.sum(dim=(1, 2)) >= MIN_ONSETS
        self.critic.calibrate(real_onset[real_kept], real_sounding[real_kept])
        self.critic.eval()
        with torch.no_grad(), torch.autocast(device_type=roll.device.type, enabled=False):
            if bool(fake_kept.any()) and bool(real_kept.any()):
                fake_right = self.critic(onset[fake_kept], sounding[fake_kept]) < 0
                real_right = self.critic(real_onset[real_kept], real_sounding[real_kept]) > 0
                accuracy = (fake_right.float().mean() + real_right.float().mean()) / 2
                self.stats.critic_accuracy += float(accuracy)
                self.stats.accuracy_steps += 1
        self.fakes.add(onset[fake_kept], sounding[fake_kept])
        self.reals.add(real_onset[real_kept], real_sounding[real_kept])
        if min(self.fakes.size, self.reals.size) == 0:
            return
        self.critic.train().requires_grad_(True)
        draws = torch.Generator().manual_seed(
            int(torch.randint(0, 2**62, (1,), generator=generator))
        )
        for _ in range(self.critic_steps):
            fake = self.fakes.draw(self.critic_batch, draws, roll.device)
            real = self.reals.draw(self.critic_batch, draws, roll.device)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=roll.device.type, enabled=False):
                loss = (
                    F.softplus(self.critic(*fake)).mean() + F.softplus(-self.critic(*real)).mean()
                )
            loss.backward()
            self.optimizer.step()
            self.stats.critic_loss += float(loss.detach())
            self.stats.critic_steps += 1

    def loss(
        self,
        model: nn.Module,
        roll: torch.Tensor,
        cond: Conditions,
        generator: torch.Generator,
        step: int,
    ) -> torch.Tensor:
        """Scalar: the student's adversarial loss on its sampled windows. During the warm-up
        only the critic learns: the whole batch is sampled for it, with no graph, and 0 is
        returned."""
        learning = step >= self.warmup
        with torch.set_grad_enabled(learning):
            windows = None if learning else roll.shape[0]
            sampled = self.sampler.sample(model, cond, generator, windows)
        self.critic_update(sampled, roll, generator)
        if not learning:
            return roll.new_zeros((), dtype=torch.float32)
        onset, sounding = self.notes(sampled)
        kept = onset.detach().sum(dim=(1, 2)) >= MIN_ONSETS
        if not bool(kept.any()):
            return sampled.sum() * 0.0
        self.critic.eval().requires_grad_(False)  # the student's gradient flows through it
        with torch.autocast(device_type=roll.device.type, enabled=False):
            loss = F.softplus(-self.critic(onset[kept], sounding[kept])).mean()
        self.stats.student_loss += float(loss.detach())
        self.stats.student_steps += 1
        return loss

    def balance(self, base: torch.Tensor, adversarial: torch.Tensor, layer: torch.Tensor) -> float:
        """The scale that gives the adversarial loss's gradient at `layer` (the network's
        output weights) the norm of the base loss's gradient there (the adaptive weight of
        Esser et al. 2021, VQGAN): the term's weight then says how strongly the critic steers
        against the distillation, whatever the critic's loss happens to be (bounded to 1e4)."""
        (base_grad,) = torch.autograd.grad(base, layer, retain_graph=True)
        (adversarial_grad,) = torch.autograd.grad(adversarial, layer, retain_graph=True)
        scale = float(base_grad.norm() / adversarial_grad.norm().clamp_min(1e-8))
        scale = min(scale, 1e4)
        self.stats.scale += scale
        return scale

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
        """(tensors, plain data) to keep in the run's checkpoint: the critic, its optimizer
        and both pools, so a resumed run continues exactly."""
        opt_tensors, opt_plain = flatten_optimizer_state(self.optimizer.state_dict())
        tensors = {f"critic.{k}": v.detach().cpu() for k, v in self.critic.state_dict().items()}
        tensors.update({f"critic_optimizer.{k}": v for k, v in opt_tensors.items()})
        plain: dict[str, object] = {"critic_optimizer": opt_plain}
        for name, pool in (("fakes", self.fakes), ("reals", self.reals)):
            tensors[f"pool.{name}"] = pool.notes
            plain[f"pool_{name}"] = [pool.size, pool.next]
        return tensors, plain

    def restore(self, tensors: dict[str, torch.Tensor], plain: dict[str, object]) -> None:
        """Inverse of `state`."""
        weights = {k[len("critic.") :]: v for k, v in tensors.items() if k.startswith("critic.")}
        self.critic.load_state_dict(weights)
        prefix = "critic_optimizer."
        opt = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        saved = plain["critic_optimizer"]
        assert isinstance(saved, dict)
        self.optimizer.load_state_dict(unflatten_optimizer_state(opt, saved))
        for name, pool in (("fakes", self.fakes), ("reals", self.reals)):
            pool.notes = tensors[f"pool.{name}"].clone()
            kept = plain[f"pool_{name}"]
            assert isinstance(kept, list)
            pool.size, pool.next = int(kept[0]), int(kept[1])
