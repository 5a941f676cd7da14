"""The training loop: AdamW, warm-up + cosine LR, gradient clipping, EMA, bf16, DDP, resume.

Determinism: every random choice of a step is derived from (seed, step, shard), never from a
random stream carried across steps. A shard is one micro-batch of `micro_batch` windows; the
global batch of a step is `n_shards = world_size * accum` shards. Hence
  * `--resume` gives exactly the losses an uninterrupted run would (no RNG stream to restore);
  * N processes with per-rank batch b give the same step as 1 process with batch N*b and
    `--accum N` (same shards, same noise; only the order of floating-point sums differs).
"""

from __future__ import annotations

import copy
import math
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from diffbgm.checkpoint import distilled_steps
from diffbgm.controls import N_GLOBAL_FEATURES, N_KEY_FEATURES
from diffbgm.device import native_bf16
from diffbgm.errors import CheckpointError, DiffBGMError
from diffbgm.model.conditions import Conditions
from diffbgm.model.config import ModelConfig, preset
from trainer.adversarial import CRITIC_STATISTICS, AdversarialRealism
from trainer.batches import (
    ShardBatches,
    StepBatches,
    default_workers,
    derived_seed,
    load_batch,
    step_batches,
)
from trainer.dataset import PLAYING
from trainer.distributed import (
    DistInfo,
    any_rank,
    barrier,
    init_distributed,
    mean_over_ranks,
    shutdown,
)
from trainer.losses import (
    ConsistencyTerm,
    density_consistency,
    pitch_profile_consistency,
    polyphony_consistency,
    register_consistency,
    rhythm_consistency,
    spread_consistency,
    voicing_consistency,
)
from trainer.profiling import PROFILE_FILE, StepProfiler
from trainer.run_state import RunState, find_run_state, load_run_state, save_run_state
from trainer.runlog import RunLog
from trainer.sampled import SampledTexture
from trainer.sources import DataBundle, load_data

STOP_FILE = "STOP"
# Validation noise is drawn from this seed (plus the chunk index) so val losses are comparable.
VALIDATION_SEED = 20240601
# The consistency terms of trainer/losses.py by name: TrainConfig has a `{name}_weight` and a
# `{name}_min_t` for each, and `trainer train` a --{name}-weight and a --{name}-min-t.
CONSISTENCY_TERMS: dict[str, ConsistencyTerm] = {
    "register": register_consistency,
    "density": density_consistency,
    "polyphony": polyphony_consistency,
    "rhythm": rhythm_consistency,
    "voicing": voicing_consistency,
    "spread": spread_consistency,
    "pitch_profile": pitch_profile_consistency,
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Steps count optimizer updates."""

    preset: str = "small"
    data: str = "data_cache/pop909"  # POP909 cache folder (from `python -m trainer cache`)
    run: str = "runs/small"  # run folder: log.csv, last/ (checkpoint), README of the run
    bgm909: str | None = None  # BGM909 feature folder: train on video features instead
    # "even" / "wide": train on the POP909 songs played that way only (trainer.dataset.
    # is_played; docs/evaluation.md, "Two ways of playing"); validation keeps every song
    playing: str = "all"
    # > 0: train on the POP909 songs with at least this share of their onsets on the odd 16ths
    # only (their figuration; docs/evaluation.md, "A teacher of the figured songs")
    figured_from: float = 0.0
    # < 1: the songs with less figuration than this only (the plain songs: the other half)
    figured_below: float = 1.0
    model_overrides: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields
    steps: int = 20_000
    batch: int = 32  # windows per rank per step (global batch = batch * world size)
    accum: int = 1  # micro-batches per rank per step (gradient accumulation)
    lr: float = 3e-4
    warmup_steps: int = 500
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at the last step
    weight_decay: float = 0.01
    # parameter name prefix -> learning-rate multiplier: an input added to a trained network
    # (a zero column of the global projection) learns at the network's fine-tuning rate far
    # too slowly to be used (docs/training.md, "The way of playing as an input")
    lr_scales: dict[str, float] = field(default_factory=dict)
    grad_clip: float = 1.0  # max global L2 norm of the gradient; 0 disables clipping
    ema_decay: float = 0.999
    # bfloat16 autocast; None: where the hardware computes it natively (diffbgm.device)
    bf16: bool | None = None
    val_every: int = 500
    val_windows: int = 64  # fixed validation windows (same ones every time)
    ckpt_every: int = 200
    log_every: int = 10
    seed: int = 0
    threads: int = 0  # torch intra-op threads per process; 0 = torch's default
    device: str = "auto"  # auto | cpu | cuda
    augment: bool = True  # random transposition of training windows
    progress: bool = True  # tqdm bar on rank 0
    stop_after: int | None = None  # stop (with a checkpoint) after this many steps of this call
    # stop (with a checkpoint) before this call's wall-clock time passes this budget: a lent
    # GPU's minutes end with weights to copy back, not a killed run
    max_minutes: float | None = None
    # processes building batches ahead of the loop (0: the loop builds them; None: a few on a
    # GPU, none on a CPU, where they would take the training's cores; batches.default_workers)
    data_workers: int | None = None
    init_from: str | None = None  # start from these checkpoint weights (fresh optimizer)
    snapshot_every: int = 0  # >0: every N steps also keep the EMA weights (bf16) for curves
    # Guidance distillation: a teacher checkpoint whose guided output (scale drawn uniformly
    # from [distill_min_scale, distill_max_scale]) the model learns in one pass; the model
    # needs guidance_embedding=true and usually starts from the teacher (--init-from).
    distill_from: str | None = None
    distill_min_scale: float = 1.0
    distill_max_scale: float = 3.0
    # < 1: the sustain channel of the target guided at 1 + share (w - 1), the onsets at w
    distill_sustain_share: float = 1.0
    # Step distillation (distill_steps > 0): the teacher is guidance-distilled already, and one
    # DDIM step of the model on a distill_steps grid learns distill_substeps of the teacher's.
    distill_steps: int = 0
    distill_substeps: int = 4
    # a guidance-distilled student fine-tuned with the plain denoising loss of its conditional
    # output (scale 1, never dropped): e.g. on its own chosen music (`trainer selfdata`)
    conditional_student: bool = False
    # > 0: add this times the register-consistency term to the denoising loss (trainer/losses.py)
    register_weight: float = 0.0
    # the term judges only items drawn at diffusion step t >= this: the sampler's last calls
    # (below it) then keep what painting a repeated phrase gave them (docs/training.md)
    register_min_t: int = 0
    # > 0: add this times the density-consistency term (onsets per step of each segment, the
    # prediction against the real notes), judged at diffusion steps >= density_min_t
    density_weight: float = 0.0
    density_min_t: int = 0
    # > 0: add this times the polyphony-consistency term (notes sounding per step of each
    # segment, struck or held, the prediction against the real notes), at steps >= min_t
    polyphony_weight: float = 0.0
    polyphony_min_t: int = 0
    # > 0: add this times the rhythm-consistency term (the share of onsets at each 16th of the
    # bar, the prediction against the real notes), judged at diffusion steps >= rhythm_min_t
    rhythm_weight: float = 0.0
    rhythm_min_t: int = 0
    # > 0: add this times the voicing-consistency term (the interval classes between notes
    # sounding together) and the spread-consistency term (each segment's spread of onset
    # pitch), each judged at diffusion steps >= its min_t
    voicing_weight: float = 0.0
    voicing_min_t: int = 0
    spread_weight: float = 0.0
    spread_min_t: int = 0
    # > 0: add this times the pitch-profile term (share of onsets in each half-octave band,
    # the estimate counted as probabilities), judged at diffusion steps >= pitch_profile_min_t
    pitch_profile_weight: float = 0.0
    pitch_profile_min_t: int = 0
    # > 0: add this times the sampled-texture term (trainer/sampled.py): the first
    # texture_windows windows of a step sampled with the sampler and weak model of the
    # checkpoint texture_sampler_from (default: init_from), their texture against the real
    # windows'; training steps only (validation stays the other losses)
    texture_weight: float = 0.0
    texture_windows: int = 8
    texture_sampler_from: str | None = None
    texture_calls: int = 1  # the graph of the sampler's last this many calls (0: all of them)
    texture_density_cut: bool = False  # cut each sampled window to its real onset count
    # > 0: add the adversarial realism term (trainer/adversarial.py), its gradient at the
    # output layer this times the other terms': a critic learns the batch's real windows from
    # the first texture_windows windows sampled as the checkpoint texture_sampler_from samples
    # (the graph of the last texture_calls calls), and the student learns to write windows
    # the critic takes for real; for the first adversarial_warmup steps only the critic learns
    adversarial_weight: float = 0.0
    adversarial_lr: float = 2e-4
    adversarial_warmup: int = 50
    adversarial_statistics: str = "texture"  # or "realism" (trainer/adversarial.py)
    # > 0: profile this many steps (after a few warm-up ones) into RUN/profile.txt
    profile_steps: int = 0

    def __post_init__(self) -> None:
        if self.batch < 1 or self.accum < 1 or self.batch % self.accum:
            raise ValueError(
                f"--batch ({self.batch}) must be a positive multiple of --accum ({self.accum})"
            )
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown LR schedule {self.schedule!r} (cosine or constant)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must be in [0, 1)")
        if min(self.steps, self.val_every, self.ckpt_every, self.log_every) < 1:
            raise ValueError("steps, val_every, ckpt_every and log_every must be >= 1")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError("--max-minutes must be > 0")
        if self.data_workers is not None and self.data_workers < 0:
            raise ValueError("--data-workers must be >= 0")
        if self.profile_steps < 0:
            raise ValueError("--profile-steps must be >= 0")
        if self.snapshot_every < 0:
            raise ValueError("snapshot_every must be >= 0 (0 = no snapshots)")
        if not 1.0 <= self.distill_min_scale <= self.distill_max_scale:
            raise ValueError("need 1 <= distill_min_scale <= distill_max_scale")
        if not 0.0 <= self.distill_sustain_share <= 1.0:
            raise ValueError("--distill-sustain-share must be in [0, 1]")
        if self.distill_sustain_share < 1.0 and (self.distill_steps or not self.distill_from):
            raise ValueError(
                "--distill-sustain-share shapes the guidance-distillation target: it needs "
                "--distill-from and no --distill-steps"
            )
        if self.distill_steps < 0 or self.distill_substeps < 1:
            raise ValueError("distill_steps must be >= 0 and distill_substeps >= 1")
        if self.distill_steps and not self.distill_from:
            raise ValueError("--distill-steps needs --distill-from TEACHER")
        if self.conditional_student and self.distill_from:
            raise ValueError(
                "--conditional-student trains on the data's notes, not on a teacher: "
                "leave out --distill-from"
            )
        for name in CONSISTENCY_TERMS:
            if getattr(self, f"{name}_weight") < 0 or getattr(self, f"{name}_min_t") < 0:
                flag = name.replace("_", "-")
                raise ValueError(f"--{flag}-weight and --{flag}-min-t must be >= 0")
        if self.texture_weight < 0 or self.texture_windows < 2 or self.texture_calls < 0:
            raise ValueError(
                "--texture-weight must be >= 0, --texture-windows >= 2, --texture-calls >= 0"
            )
        if self.adversarial_weight < 0 or self.adversarial_lr <= 0 or self.adversarial_warmup < 0:
            raise ValueError(
                "--adversarial-weight must be >= 0, --adversarial-lr > 0 and "
                "--adversarial-warmup >= 0"
            )
        if self.playing not in PLAYING:
            raise ValueError(f"--playing must be one of {', '.join(PLAYING)}")
        if self.playing != "all" and self.bgm909:
            raise ValueError("--playing chooses POP909 songs: leave it out with --bgm909")
        if not 0.0 <= self.figured_from < 1.0:
            raise ValueError("--figured-from must be in [0, 1)")
        if self.figured_from > 0 and self.bgm909:
            raise ValueError("--figured-from chooses POP909 songs: leave it out with --bgm909")
        if not 0.0 < self.figured_below <= 1.0:
            raise ValueError("--figured-below must be in (0, 1]")
        if self.figured_below <= self.figured_from:
            raise ValueError("--figured-below must be above --figured-from: no song would be left")
        if self.figured_below < 1 and self.bgm909:
            raise ValueError("--figured-below chooses POP909 songs: leave it out with --bgm909")
        if self.adversarial_statistics not in CRITIC_STATISTICS:
            raise ValueError(
                f"--adversarial-statistics must be one of {', '.join(CRITIC_STATISTICS)}"
            )
        for sampled_term in ("texture", "adversarial"):  # both sample as a checkpoint does
            if getattr(self, f"{sampled_term}_weight") <= 0:
                continue
            if not (self.texture_sampler_from or self.init_from):
                raise ValueError(
                    f"--{sampled_term}-weight samples with a checkpoint's sampler and weak "
                    "model: give --texture-sampler-from CHECKPOINT (or --init-from one)"
                )
            if self.distill_steps:
                raise ValueError(
                    f"--{sampled_term}-weight adds to the denoising or distillation loss"
                )
        if self.distill_steps and any(weight for weight, _, _ in self.consistency_terms()):
            flags = ", ".join(f"--{name.replace('_', '-')}-weight" for name in CONSISTENCY_TERMS)
            raise ValueError(
                f"the consistency terms ({flags}) add to the denoising or guidance-distillation "
                "loss; step distillation has neither"
            )

    def consistency_terms(self) -> list[tuple[float, int, ConsistencyTerm]]:
        """(weight, min_t, term) of every consistency term, weighted 0 or not."""
        return [
            (getattr(self, f"{name}_weight"), getattr(self, f"{name}_min_t"), term)
            for name, term in CONSISTENCY_TERMS.items()
        ]

    @property
    def micro_batch(self) -> int:
        return self.batch // self.accum

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int  # optimizer steps done when the run stopped
    stopped_early: bool  # a stop file or a signal ended it before config.steps
    last_loss: float


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warm-up, then cosine/constant."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    span = max(config.steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay ramped up over the first steps so early averages are not stuck at the init."""
    return min(decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def update_ema(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * weights; buffers are copied as they are."""
    for ema_param, param in zip(ema_model.parameters(), model.parameters(), strict=True):
        ema_param.lerp_(param.detach(), 1.0 - decay)
    for ema_buf, buf in zip(ema_model.buffers(), model.buffers(), strict=True):
        ema_buf.copy_(buf)


def tune_backend(device: torch.device) -> None:
    """On a GPU let cuDNN time its convolution algorithms once per input shape and keep the
    fastest: a run's shapes are fixed (the batch, the window), so the search pays once. Its
    choice may differ from run to run, which costs bit-exact reruns only, not resumption."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def autocast_for(device: torch.device, bf16: bool | None) -> AbstractContextManager[Any]:
    """bf16 autocast when asked for, or (None) where `device` computes bf16 natively: an
    emulated bf16 step costs many times a float32 one."""
    if not (native_bf16(device) if bf16 is None else bf16):
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def build_model_config(config: TrainConfig, data: DataBundle) -> ModelConfig:
    """The preset, then the data's needs (e.g. BGM909 feature sizes), then the user's overrides."""
    overrides = {**data.model_overrides, **config.model_overrides}
    return preset(config.preset, **overrides)


class _StopRequest:
    """Set by SIGTERM/SIGINT so the loop checkpoints at the end of the current step."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True


def _install_stop_handlers(stop: _StopRequest) -> Callable[[], None]:
    """Route SIGTERM/SIGINT to `stop`; returns a function that restores the old handlers.

    Python allows signal handlers only in the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    return restore


def parameter_groups(model: nn.Module, lr_scales: dict[str, float]) -> list[dict[str, Any]]:
    """AdamW parameter groups: the parameters named with a prefix of `lr_scales` learn at the
    learning rate times its scale (the first prefix that fits), every other one at the rate."""
    named = list(model.named_parameters())
    unused = [p for p in lr_scales if not any(name.startswith(p) for name, _ in named)]
    if unused:
        raise DiffBGMError(f"--lr-scale: no model parameter's name starts with {', '.join(unused)}")
    groups: dict[float, list[nn.Parameter]] = {}
    for name, parameter in named:
        scale = next((s for p, s in lr_scales.items() if name.startswith(p)), 1.0)
        groups.setdefault(scale, []).append(parameter)
    return [{"params": params, "lr_scale": scale} for scale, params in groups.items()]


GLOBAL_WEIGHT = "tokens.global_proj.weight"  # the projection of the global features


def with_zero_global_columns(
    weights: dict[str, torch.Tensor], global_dim: int
) -> dict[str, torch.Tensor]:
    """Weights of a model reading fewer global features, widened to `global_dim` with zero
    weights on the new features, so the widened model predicts as the old one did."""
    grown = dict(weights)
    old = weights[GLOBAL_WEIGHT]  # (d_cond, old global_dim)
    grown[GLOBAL_WEIGHT] = torch.cat(
        [old, old.new_zeros(old.shape[0], global_dim - old.shape[1])], dim=1
    )
    return grown


class Trainer:
    """One training run on this rank. Use `run_training(config)` rather than this directly."""

    def __init__(self, config: TrainConfig, info: DistInfo, data: DataBundle) -> None:
        from diffbgm.model.diffusion import Diffusion
        from diffbgm.model.unet import Denoiser

        self.config = config
        self.info = info
        self.data = data
        self.run_dir = Path(config.run)
        self.model_config = build_model_config(config, data)
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.model = Denoiser(self.model_config).to(info.device)
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False)
        self.diffusion = Diffusion(self.model_config.diffusion)
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.model, config.lr_scales),
            lr=config.lr,
            weight_decay=config.weight_decay,
        )
        wants_embedding = bool(config.distill_from) or config.conditional_student
        if self.model_config.guidance_embedding != wants_embedding:
            if not wants_embedding:
                problem = (
                    "a guidance embedding is learned by distillation: add --distill-from TEACHER"
                )
            elif config.conditional_student:
                problem = "--conditional-student fine-tunes a guidance-distilled student"
            else:
                problem = "--distill-from needs a student that takes the guidance scale"
            fix = ": add --set guidance_embedding=true" if wants_embedding else ""
            raise DiffBGMError(problem + fix)
        self.teacher = self._load_teacher() if config.distill_from else None
        self.texture = self._sampled_texture() if config.texture_weight > 0 else None
        self.adversary = self._adversary() if config.adversarial_weight > 0 else None
        if self.adversary is not None and info.is_distributed:
            raise DiffBGMError(
                "--adversarial-weight trains one critic per process: run it without torchrun"
            )
        self.step = 0
        self.best_val: float | None = None
        self.wrapped: nn.Module = self.model
        if info.is_distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.wrapped = DistributedDataParallel(
                self.model,
                device_ids=[info.device.index] if info.device.type == "cuda" else None,
                # Condition dropout and the selector can leave some token projections unused.
                find_unused_parameters=True,
            )

    def _load_teacher(self) -> nn.Module:
        from trainer.models import load_for_inference

        assert self.config.distill_from is not None
        loaded = load_for_inference(self.config.distill_from, self.info.device)
        teacher, teacher_config = loaded.model, loaded.config
        if self.config.distill_steps:
            # one pass per teacher step, and a teacher whose outputs are estimates, not jumps
            if not teacher_config.guidance_embedding:
                raise DiffBGMError(
                    f"{self.config.distill_from} is not guidance-distilled: step distillation "
                    "starts from a guidance-distilled model"
                )
            if distilled_steps(loaded.extra):
                raise DiffBGMError(f"{self.config.distill_from} is already step-distilled")
        elif teacher_config.guidance_embedding:
            raise DiffBGMError(f"{self.config.distill_from} is already guidance-distilled")
        if teacher_config.diffusion != self.model_config.diffusion:
            # the student is trained on the teacher's noise levels and targets
            raise DiffBGMError(
                f"{self.config.distill_from} uses another diffusion schedule or prediction "
                f"({teacher_config.diffusion}) than the student ({self.model_config.diffusion})"
            )
        return teacher.eval().requires_grad_(False)

    def _sampled_texture(self) -> SampledTexture:
        from diffbgm.checkpoint import load_checkpoint

        source = self.config.texture_sampler_from or self.config.init_from
        assert source is not None
        return SampledTexture.from_checkpoint(
            load_checkpoint(source, self.info.device),
            self.config.texture_windows,
            self.config.texture_calls or None,
            self.config.texture_density_cut,
        )

    def _adversary(self) -> AdversarialRealism:
        # the texture term, when on, already loaded the checkpoint it samples as
        sampler = self.texture or self._sampled_texture()
        return AdversarialRealism.build(
            sampler,
            self.config.adversarial_lr,
            self.config.adversarial_warmup,
            self.config.adversarial_statistics,
            self.config.seed + 1,
            self.info.device,
            (self.model_config.window_steps, self.model_config.n_pitches),
        )

    def loss(
        self, model: nn.Module, roll: torch.Tensor, cond: Conditions, generator: torch.Generator
    ) -> torch.Tensor:
        """The denoising loss, or with a teacher the guidance-distillation loss; either with
        the consistency terms (trainer/losses.py) whose weights are > 0."""
        scales = (self.config.distill_min_scale, self.config.distill_max_scale)
        if self.teacher is None:
            # p_uncond is passed because the DDP wrapper hides model.config; a student is only
            # ever asked for conditional outputs (no scale given: scale 1)
            p_uncond = 0.0 if self.config.conditional_student else self.model_config.p_uncond
            terms = self.diffusion.training_terms(model, roll, cond, generator, p_uncond)
        elif self.config.distill_steps:
            return self.diffusion.step_distillation_terms(
                model,
                self.teacher,
                roll,
                cond,
                scales,
                self.config.distill_steps,
                self.config.distill_substeps,
                generator,
            ).loss
        else:
            # A student guided at w is still asked for the real notes' register: the term
            # does not depend on how faithfully the teacher follows it.
            terms = self.diffusion.distillation_terms(
                model,
                self.teacher,
                roll,
                cond,
                scales,
                generator,
                self.config.distill_sustain_share,
            )
        loss = terms.loss
        if terms.x0_pred is not None:
            for weight, min_t, consistency in self.config.consistency_terms():
                if weight > 0:
                    judged = ~terms.drop & (terms.t >= min_t)  # (B,)
                    loss = loss + weight * consistency(terms.x0_pred, roll, cond, judged)
        if self.texture is not None and torch.is_grad_enabled():
            # a whole sampling run per step: training only, validation keeps the other terms
            loss = loss + self.config.texture_weight * self.texture.loss(
                model, roll, cond, generator
            )
        if self.adversary is not None and torch.is_grad_enabled():
            adversarial = self.adversary.loss(model, roll, cond, generator, self.step)
            if adversarial.requires_grad:  # not during the critic's warm-up
                output_layer = self.model.output.weight  # one process: model is self.model
                scale = self.adversary.balance(loss, adversarial, output_layer)
                loss = loss + self.config.adversarial_weight * scale * adversarial
        return loss

    # ---- checkpoints -------------------------------------------------------------------

    def initialise_from(self, checkpoint: str) -> None:
        """Warm start: model and EMA weights from a checkpoint folder (or Hub id); the
        optimizer and the step count start afresh.

        The config must match except for the feature selector (mode and threshold), which
        only changes the attention masks and, for 'learned', adds a gate that starts fresh:
        that is how a trained model is moved to another selector without training from zero.
        Likewise a guidance embedding may be added (it starts at zero: a distillation student),
        and so may the recall input (it starts at zero: the model predicts as before) and
        global features after the ones it reads (global_dim grown up to N_GLOBAL_FEATURES: the
        way of playing, the tempo; their weights start at zero, so the model predicts as
        before).
        """
        from diffbgm.checkpoint import load_checkpoint

        loaded = load_checkpoint(checkpoint)
        free: dict[str, Any] = {
            "selector": "none",
            "selector_threshold": 0.0,
            "guidance_embedding": False,
            "pitch_embedding": False,
            "recall_input": False,
        }
        grows_global = (
            N_KEY_FEATURES
            <= loaded.config.global_dim
            < self.model_config.global_dim
            <= N_GLOBAL_FEATURES
        )
        if grows_global:
            free["global_dim"] = self.model_config.global_dim
        if replace(loaded.config, **free) != replace(self.model_config, **free):
            raise CheckpointError(
                f"{checkpoint} has a different model config than --preset/--set ask for "
                "(only the feature selector, the guidance embedding, the pitch embedding and the "
                "recall input may differ in a warm start, and global features be added)"
            )
        weights = loaded.model.state_dict()
        if grows_global:
            weights = with_zero_global_columns(weights, self.model_config.global_dim)
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        fresh = ("gate.", "guidance_mlp.", "pitch_embedding", "recall_input.")
        if unexpected or any(not name.startswith(fresh) for name in missing):
            raise CheckpointError(
                f"{checkpoint}: weights do not fit the model (missing {missing}, "
                f"unexpected {unexpected})"
            )
        self.ema_model.load_state_dict(self.model.state_dict())

    def restore(self, state: RunState) -> None:
        saved = ModelConfig.from_dict(state.model_config)
        if saved != self.model_config:
            raise CheckpointError(
                f"{self.run_dir / 'last'} was trained with a different model config "
                f"(preset/overrides); resume with the same --preset and --set options"
            )
        # whether the run distils is fixed by guidance_embedding (compared above); the
        # scales its loss draws from must not change either
        keys = (
            "distill_min_scale",
            "distill_max_scale",
            "distill_steps",
            "distill_substeps",
            "distill_sustain_share",
        )
        # runs from before step distillation and the sustain share
        defaults = {"distill_steps": 0, "distill_substeps": 4, "distill_sustain_share": 1.0}
        before = tuple(state.train_config.get(key, defaults.get(key)) for key in keys)
        if self.config.distill_from and before != tuple(getattr(self.config, k) for k in keys):
            raise CheckpointError(
                f"{self.run_dir / 'last'} was trained with another loss (scales, steps, "
                f"substeps and sustain share {before}); resume with the same --distill-scales, "
                f"--distill-steps, --distill-substeps and --distill-sustain-share"
            )
        scales_before = state.train_config.get("lr_scales", {})
        if scales_before != self.config.lr_scales:
            raise CheckpointError(
                f"{self.run_dir / 'last'} was trained with learning-rate scales "
                f"{scales_before or 'none'}; resume with the same --lr-scale options"
            )
        self.model.load_state_dict(state.model)
        self.ema_model.load_state_dict(state.ema)
        self.optimizer.load_state_dict(state.optimizer)
        self.step = state.step
        if self.adversary is not None:
            if not state.aux:
                raise CheckpointError(
                    f"{self.run_dir / 'last'} holds no adversarial critic: it was trained "
                    "without --adversarial-weight"
                )
            saved_statistics = state.train_config.get("adversarial_statistics", "texture")
            if saved_statistics != self.config.adversarial_statistics:
                raise CheckpointError(
                    f"{self.run_dir / 'last'} holds a critic of the {saved_statistics} "
                    f"statistics: resume with --adversarial-statistics {saved_statistics}"
                )
            self.adversary.restore(state.aux, state.extra)
        best = state.extra.get("best_val")
        self.best_val = None if best is None else float(best)

    def save(self) -> None:
        if not self.info.is_main:
            return
        extra: dict[str, Any] = {"best_val": self.best_val, "world_size": self.info.world_size}
        aux: dict[str, torch.Tensor] = {}
        if self.adversary is not None:
            aux, plain = self.adversary.state()
            extra.update(plain)
        save_run_state(
            self.run_dir,
            RunState(
                step=self.step,
                train_config=self.config.to_dict(),
                model_config=self.model_config.to_dict(),
                model=self.model.state_dict(),
                ema=self.ema_model.state_dict(),
                optimizer=self.optimizer.state_dict(),
                extra=extra,
                aux=aux,
            ),
        )

    def save_snapshot(self) -> Path | None:
        """RUN/snapshots/step_NNNNNN: the EMA weights as a loadable checkpoint (bf16, ~7 MB
        for small), kept so metrics can be measured against training steps afterwards."""
        if not self.info.is_main:
            return None
        from diffbgm.checkpoint import save_checkpoint

        folder = self.run_dir / "snapshots" / f"step_{self.step:06d}"
        extra = {"train_step": self.step, "weights": "ema", "best_val_loss_ema": self.best_val}
        return save_checkpoint(
            folder, self.ema_model, self.model_config, extra=extra, dtype=torch.bfloat16
        )

    # ---- one step ----------------------------------------------------------------------

    def step_batches(self) -> StepBatches:
        """What builds this rank's micro-batches of any step (see trainer/batches.py)."""
        cfg = self.config
        return StepBatches(
            self.data, cfg.seed, cfg.micro_batch, cfg.accum, self.info.rank, self.info.world_size
        )

    def train_step(self, batches: ShardBatches | None = None) -> float:
        """One optimizer step on `batches` (this rank's micro-batches of this step; built here
        when None); returns the mean loss over the global batch."""
        cfg = self.config
        self.model.train()
        lr = lr_at(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # runs saved before: no scale
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        if batches is None:
            batches = self.step_batches()[self.step]
        for micro, (shard, (roll, cond)) in enumerate(batches):
            seed = derived_seed(cfg.seed, self.step, shard)
            roll, cond = roll.to(self.info.device), cond.to(self.info.device)
            torch.manual_seed(seed)  # anything in the model that draws from the global RNG
            generator = torch.Generator(device=self.info.device).manual_seed(seed)
            last_micro = micro == cfg.accum - 1
            sync = (
                nullcontext()
                if last_micro or not self.info.is_distributed
                else self.wrapped.no_sync()  # type: ignore[operator]
            )
            with sync:
                with autocast_for(self.info.device, cfg.bf16):
                    loss = self.loss(self.wrapped, roll, cond, generator)
                (loss.float() / cfg.accum).backward()
            loss_sum += float(loss.detach().float())
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        update_ema(self.ema_model, self.model, ema_decay_at(self.step, cfg.ema_decay))
        self.step += 1
        return mean_over_ranks(loss_sum / cfg.accum, self.info)

    # ---- validation --------------------------------------------------------------------

    def validation_indices(self) -> np.ndarray:
        """The fixed validation windows: evenly spread over the valid split."""
        n_valid = len(self.data.valid)
        count = min(self.config.val_windows, n_valid)
        return np.unique(np.linspace(0, n_valid - 1, count).round().astype(np.int64))

    @torch.no_grad()
    def validation_loss(
        self, model: nn.Module, change: Callable[[Conditions], Conditions] | None = None
    ) -> float | None:
        """Mean loss of `model` on the fixed validation windows with fixed noise (None: no data).
        `change`: the windows' conditions changed so, to measure what an input is worth."""
        if len(self.data.valid) == 0:
            return None
        model.eval()
        indices = self.validation_indices()
        total, count = 0.0, 0
        for chunk, start in enumerate(range(0, len(indices), self.config.micro_batch)):
            chunk_indices = indices[start : start + self.config.micro_batch]
            roll, cond = load_batch(self.data, "valid", chunk_indices)
            if change is not None:
                cond = change(cond)
            roll, cond = roll.to(self.info.device), cond.to(self.info.device)
            seed = derived_seed(VALIDATION_SEED, chunk)
            torch.manual_seed(seed)
            generator = torch.Generator(device=self.info.device).manual_seed(seed)
            with autocast_for(self.info.device, self.config.bf16):
                loss = self.loss(model, roll, cond, generator)
            total += float(loss.float()) * len(chunk_indices)
            count += len(chunk_indices)
        return total / count


class WallClockBudget:
    """Whether another step and the checkpoint after it still fit into `minutes` of wall-clock
    time counted from `started` (time.monotonic()); None: no budget.

    The next step is assumed to take as long as the slowest of the last few, a validation as
    long as the slowest so far, the checkpoint too (a first guess of 5 s before any). The
    clock starts when the training function does: the interpreter's start and `import torch`
    (a few seconds) are outside it."""

    def __init__(self, minutes: float | None, started: float, recent: int = 20) -> None:
        self.deadline = None if minutes is None else started + 60.0 * minutes
        self.step_seconds: deque[float] = deque(maxlen=recent)
        self.save_seconds = 5.0
        self.saved_once = False
        self.validation_seconds = 0.0

    def stepped(self, seconds: float) -> None:
        self.step_seconds.append(seconds)

    def saved(self, seconds: float) -> None:
        self.save_seconds = seconds if not self.saved_once else max(self.save_seconds, seconds)
        self.saved_once = True

    def validated(self, seconds: float) -> None:
        self.validation_seconds = max(self.validation_seconds, seconds)

    def would_pass(
        self, now: float | None = None, next_validates: bool = False, saving_now: bool = False
    ) -> bool:
        """saving_now: a checkpoint is due before the next step anyway (it is counted too)."""
        if self.deadline is None:
            return False
        needed = max(self.step_seconds, default=0.0) + self.save_seconds * (1 + saving_now)
        if next_validates:
            needed += self.validation_seconds
        return (time.monotonic() if now is None else now) + needed > self.deadline


def _stop_file_present(run_dir: Path) -> bool:
    return (run_dir / STOP_FILE).exists()


def _prepare_run_dir(config: TrainConfig, resume: bool, info: DistInfo) -> RunState | None:
    run_dir = Path(config.run)
    found = find_run_state(run_dir)
    if found is not None and not resume:
        raise DiffBGMError(
            f"{run_dir} already holds a checkpoint (step "
            f"{load_run_state(found).step}); pass --resume to continue it or choose another --run"
        )
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    barrier(info)
    return load_run_state(found) if found is not None and resume else None


def run_training(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train (or continue training) the run described by `config`; returns where it stopped."""
    info = init_distributed(config.device)
    try:
        return _train(config, resume, info)
    finally:
        shutdown(info)


def _train(config: TrainConfig, resume: bool, info: DistInfo) -> TrainResult:
    started = time.monotonic()  # the budget counts loading the data and the model too
    tune_backend(info.device)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    run_dir = Path(config.run)
    state = _prepare_run_dir(config, resume, info)
    data = load_data(config)
    trainer = Trainer(config, info, data)
    if state is not None:
        trainer.restore(state)
    elif config.init_from:
        trainer.initialise_from(config.init_from)
    log = RunLog(run_dir, trainer.step) if info.is_main else None
    stop = _StopRequest()
    restore_handlers = _install_stop_handlers(stop)
    bar = tqdm(
        total=config.steps,
        initial=trainer.step,
        disable=not (info.is_main and config.progress),
        desc=f"train {run_dir.name}",
        file=sys.stderr,
    )
    losses: list[float] = []
    last_loss = math.nan
    stopped_early = False
    first_step = trainer.step
    step_seconds = 0.0  # training time since the last log row (validation excluded)
    budget = WallClockBudget(config.max_minutes, started)
    workers = default_workers(info.device) if config.data_workers is None else config.data_workers
    batches = step_batches(trainer.step_batches(), trainer.step, config.steps, workers)
    profiler = StepProfiler(
        config.profile_steps if info.is_main else 0,
        trainer.step,
        info.device,
        run_dir / PROFILE_FILE,
    )
    try:
        while trainer.step < config.steps:
            profiler.before_step(trainer.step)
            tick = time.perf_counter()
            loss = trainer.train_step(next(batches))
            took = time.perf_counter() - tick
            profiler.after_step(trainer.step - 1)
            step_seconds += took
            budget.stepped(took)
            losses.append(loss)
            last_loss = loss
            step = trainer.step
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr_at(step - 1, config):.2e}")
            validate = step % config.val_every == 0 or step == config.steps
            values: dict[str, float | None] = {}
            if validate and info.is_main:
                tick = time.perf_counter()
                values["val_loss"] = trainer.validation_loss(trainer.model)
                values["val_loss_ema"] = trainer.validation_loss(trainer.ema_model)
                budget.validated(time.perf_counter() - tick)
                val_ema = values["val_loss_ema"]
                if val_ema is not None and (trainer.best_val is None or val_ema < trainer.best_val):
                    trainer.best_val = val_ema
            if (step % config.log_every == 0 or validate) and log is not None:
                if trainer.adversary is not None:
                    values.update(trainer.adversary.stats.pop())
                values.update(
                    loss=float(np.mean(losses)),
                    lr=lr_at(step - 1, config),
                    sec_per_step=step_seconds / len(losses),
                )
                log.write(step, values)
                losses, step_seconds = [], 0.0
            wants_stop = stop.requested or (info.is_main and _stop_file_present(run_dir))
            if config.stop_after is not None and step - first_step >= config.stop_after:
                wants_stop = True
            next_validates = (step + 1) % config.val_every == 0 or step + 1 == config.steps
            saving_now = step % config.ckpt_every == 0 or bool(
                config.snapshot_every and step % config.snapshot_every == 0
            )
            if step < config.steps and budget.would_pass(
                next_validates=next_validates, saving_now=saving_now
            ):
                wants_stop = True
                if info.is_main:
                    print("the --max-minutes budget ends before another step and a checkpoint")
            stopped_early = any_rank(wants_stop, info) and step < config.steps
            if step % config.ckpt_every == 0 or step == config.steps or stopped_early:
                tick = time.perf_counter()
                trainer.save()
                budget.saved(time.perf_counter() - tick)
            if config.snapshot_every and step % config.snapshot_every == 0:
                trainer.save_snapshot()
            if stopped_early:
                if info.is_main:
                    (run_dir / STOP_FILE).unlink(missing_ok=True)
                    print(f"stopped at step {step}; checkpoint in {run_dir / 'last'}")
                break
    finally:
        profiler.close()
        batches.close()  # the workers, if any, end here
        bar.close()
        restore_handlers()
        if log is not None:
            log.close()
    barrier(info)
    return TrainResult(
        run_dir=run_dir, step=trainer.step, stopped_early=stopped_early, last_loss=last_loss
    )
