"""Frozen configurations of the denoiser and of the diffusion process, with named presets.

Units: `window_steps` is in 16th-note steps (64 = 4 bars of 4/4); pitches are MIDI numbers
counted from `pitch_low`; diffusion timesteps are integers in [0, num_train_steps).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from diffbgm.controls import DYNAMIC_CONTROLS, N_KEY_FEATURES, SEMANTIC_CONTROLS

BetaSchedule = Literal["scaled_linear", "cosine"]
Prediction = Literal["eps", "v"]
SelectorMode = Literal["rule", "learned", "none"]


@dataclass(frozen=True)
class DiffusionConfig:
    """The forward (noising) process and what the network predicts.

    Schedule: scaled-linear betas 0.00085-0.012 over 1000 steps, as in the Diff-BGM and
    Polyffusion code and the baseline of the design notes; the feature selector's threshold
    (a fraction of the training steps) keeps the meaning the paper gives it under that
    schedule. 'cosine' (Nichol & Dhariwal) is kept for experiments.

    Prediction: 'v' (Salimans & Ho 2022). This schedule ends at alpha_bar = 0.0047, and at
    such low signal an eps-prediction error is multiplied by sqrt((1-ab)/ab) ~ 15 in the
    implied x0, exactly in the early steps that settle harmony and form. Measured on the
    tiny preset memorising one 2-bar window (300 steps, identical settings): x0 error at
    t=999 0.45 (eps) vs 0.016 (v); sampled onset F1 0.13 / 0.90 (eps, two seeds) vs
    0.97 / 1.0 (v). 'eps' stays available.
    """

    num_train_steps: int = 1000
    beta_schedule: BetaSchedule = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    prediction: Prediction = "v"
    # Onsets are rarer and matter more than sustains; >1 weights the onset channel's error.
    onset_loss_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.num_train_steps < 2:
            raise ValueError(f"num_train_steps must be >= 2, got {self.num_train_steps}")
        if self.beta_schedule not in ("scaled_linear", "cosine"):
            raise ValueError(f"unknown beta_schedule {self.beta_schedule!r}")
        if self.prediction not in ("eps", "v"):
            raise ValueError(f"unknown prediction {self.prediction!r} (use 'eps' or 'v')")
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ValueError("need 0 < beta_start < beta_end < 1")
        if self.onset_loss_weight <= 0:
            raise ValueError("onset_loss_weight must be positive")


@dataclass(frozen=True)
class ModelConfig:
    """The denoiser: a UNet over (time, pitch) with segment-aware cross-attention.

    Feature selector ('rule'): at a denoising timestep t >= selector_threshold *
    num_train_steps (noisy, early in sampling) the music sees the semantic + global tokens;
    at t below it (nearly clean, late in sampling) the dynamic + global tokens. This is the
    paper's "semantic features early, dynamic features late" (the authors' code switches at
    t = 200 of 1000, i.e. a threshold of 0.2). 'learned' replaces the switch by a gate
    g(t) in (0, 1) that biases attention towards semantic (log g) or dynamic (log 1-g)
    tokens; 'none' shows every token at every step.
    """

    window_steps: int = 64
    n_pitches: int = 88
    pitch_low: int = 21
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4)
    attention_levels: tuple[int, ...] = (1, 2)  # levels (0 = finest) with cross-attention
    n_res_blocks: int = 1
    d_cond: int = 128
    n_heads: int = 4
    dynamic_dim: int = len(DYNAMIC_CONTROLS)
    semantic_dim: int = len(SEMANTIC_CONTROLS)
    # the global features read (diffbgm.controls.global_features): N_KEY_FEATURES the key
    # alone, then the way the piece is played, its tempo and its figuration (N_GLOBAL_FEATURES:
    # all four)
    global_dim: int = N_KEY_FEATURES
    max_segments: int = 8
    sac: bool = True  # False = every frame sees every real segment's tokens (the ablation)
    selector: SelectorMode = "rule"
    selector_threshold: float = 0.2
    p_uncond: float = 0.1
    dropout: float = 0.0
    # True: the network also takes the classifier-free guidance scale and predicts the guided
    # output in one pass (a guidance-distilled student, Meng et al. 2023; `trainer train
    # --distill-from`), so guided sampling costs one network item per step instead of two.
    guidance_embedding: bool = False
    # True: a learned embedding of each pitch row is added to the first feature map. The
    # convolutions are translation-invariant and the chord channel marks pitch classes in
    # every octave, so without it the network knows absolute pitch only from the zero padding
    # at the keyboard's ends, and the register control (mean pitch) has little to act on.
    pitch_embedding: bool = False
    # True: the network also takes the music a returning phrase repeats (`Conditions.recalled`:
    # the earlier occurrence's notes, bar for bar, where the piece says a step repeats one), so
    # repetition is learned from real songs instead of painted in at sampling only.
    recall_input: bool = False
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    def __post_init__(self) -> None:
        n_levels = len(self.channel_mults)
        if n_levels < 1:
            raise ValueError("channel_mults needs at least one level")
        if any(not 0 <= lvl < n_levels for lvl in self.attention_levels):
            raise ValueError(f"attention_levels {self.attention_levels} outside 0..{n_levels - 1}")
        if self.window_steps % self.time_factor:
            raise ValueError(
                f"window_steps={self.window_steps} must be a multiple of {self.time_factor} "
                f"(the UNet halves the time axis {n_levels - 1} times)"
            )
        if self.d_cond % self.n_heads:
            raise ValueError(f"d_cond={self.d_cond} must be divisible by n_heads={self.n_heads}")
        if self.selector not in ("rule", "learned", "none"):
            raise ValueError(f"unknown selector {self.selector!r}")
        if not 0.0 <= self.selector_threshold <= 1.0:
            raise ValueError("selector_threshold is a fraction of num_train_steps, in [0, 1]")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError("p_uncond must be in [0, 1)")
        if self.max_segments < 1:
            raise ValueError("max_segments must be >= 1")

    @property
    def time_factor(self) -> int:
        """How many 16th steps one frame of the coarsest UNet level covers."""
        return 2 ** (len(self.channel_mults) - 1)

    @property
    def selector_step(self) -> float:
        """The rule selector's switch, in diffusion timesteps: t >= it shows semantic tokens."""
        return self.selector_threshold * self.diffusion.num_train_steps

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys are an error so stale configs are noticed."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        values = dict(data)
        for key in ("channel_mults", "attention_levels"):
            if key in values:
                values[key] = tuple(int(v) for v in values[key])
        if isinstance(values.get("diffusion"), dict):
            diff_known = {f.name for f in fields(DiffusionConfig)}
            diff_unknown = set(values["diffusion"]) - diff_known
            if diff_unknown:
                raise ValueError(f"unknown diffusion config keys: {sorted(diff_unknown)}")
            values["diffusion"] = DiffusionConfig(**values["diffusion"])
        return cls(**values)


PRESET_NAMES: tuple[str, ...] = ("tiny", "small", "base")


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A named configuration; keyword overrides replace single fields.

    'tiny'  ~0.12 M params, 2-bar windows: for tests (trains and samples in seconds).
    'small' ~3.5 M params, 4-bar windows: trainable on a 2-core CPU in bf16.
    'base'  ~36 M params, 4-bar windows, like the paper's UNet: for GPUs.
    """
    if name == "tiny":
        config = ModelConfig(
            window_steps=32,
            base_channels=12,
            channel_mults=(1, 2),
            attention_levels=(1,),
            n_res_blocks=1,
            d_cond=32,
            n_heads=2,
        )
    elif name == "small":
        config = ModelConfig(
            window_steps=64,
            base_channels=32,
            channel_mults=(1, 2, 4),
            attention_levels=(1, 2),
            n_res_blocks=1,
            d_cond=128,
            n_heads=4,
        )
    elif name == "base":
        config = ModelConfig(
            window_steps=64,
            base_channels=64,
            channel_mults=(1, 2, 4, 4),
            attention_levels=(1, 2, 3),
            n_res_blocks=2,
            d_cond=512,
            n_heads=8,
        )
    else:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    return replace(config, **overrides) if overrides else config
