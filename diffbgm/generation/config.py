"""GenerationConfig: every knob of sampling and decoding, in one typed, validated place.

A knob's default, its valid range, its help text and so its command-line flag are written once,
here: `python -m diffbgm generate` and `python -m trainer sample|evaluate|suite` build their
flags from these fields (`add_generation_arguments`), a checkpoint stores the values chosen
for its weights in config.json (`extra.generation`), and the Composer, the trainer and the
benchmarks all generate through `generate_roll(model, conditions, config, seed)`.

Precedence: the dataclass defaults < the checkpoint's stored values < a caller's overrides.
The defaults are the plain sampler with every decode rule off, which is what a checkpoint that
stores nothing (an old one, a fresh training run) has always been sampled with.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Literal, TypeVar, cast

from diffbgm.controls import DYNAMIC_CONTROLS
from diffbgm.errors import GenerationError

if TYPE_CHECKING:
    from diffbgm.model.diffusion import SamplerSettings

Sampler = Literal["ddim", "dpm", "unipc"]
SAMPLERS: tuple[str, ...] = ("ddim", "dpm", "unipc")
KnobValue = int | float | str | bool
T = TypeVar("T")

# Names older reports and checkpoints used for a knob.
_LEGACY_NAMES = {"recall_strength": "recall"}


def _knob(
    default: T,
    help: str,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> T:
    """A dataclass field with what the CLI and the validation need to know about it."""
    meta = {"help": help, "low": low, "high": high, "choices": choices}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class GenerationConfig:
    """How a piano roll is sampled and decoded. Frozen: change it with `with_overrides`."""

    sampler: Sampler = _knob(
        cast(Sampler, "ddim"), "DDIM, DPM-Solver++ (2M) or UniPC (2M + corrector)", choices=SAMPLERS
    )
    steps: int = _knob(25, "denoising steps", 1, 1000)
    eta: float = _knob(
        0.0,
        "fresh noise added per step by ddim (1 = ancestral DDPM) and dpm (1 = its SDE form); "
        "0 = deterministic. Stochastic sampling needs more steps and is slower, but its music "
        "is harder to tell from real (docs/evaluation.md); unipc takes only 0",
        0.0,
        1.0,
    )
    noise_share: float = _knob(
        1.0,
        "0..1: with eta > 0, fresh noise is added only on this share of the schedule, from "
        "the quietest step (1 = every step); the noisier steps solve the ODE (fresh noise "
        "there thins the music: docs/evaluation.md)",
        0.0,
        1.0,
    )
    guidance: float = _knob(3.0, "classifier-free guidance scale (1 = none)", 0.0, 20.0)
    guidance_share: float = _knob(
        1.0,
        "0..1: guidance is applied for this share of the noise schedule, from the noisiest "
        "step; the quieter steps run the conditional pass alone (half the network work; "
        "a guidance-distilled model costs one pass either way)",
        0.0,
        1.0,
    )
    guidance_ceiling: float = _knob(
        1.0,
        "0..1: guidance stops above this share of the noise schedule, so the noisiest steps "
        "run the conditional pass alone (1 = guidance up to the noisiest step); guidance "
        "there makes the first estimates commit to more notes (docs/evaluation.md)",
        0.0,
        1.0,
    )
    autoguidance: float = _knob(
        1.0,
        "autoguidance weight w (Karras et al. 2024): each prediction is pushed away from the "
        "checkpoint's weak model (its weak/ folder) by (w - 1)(D - D_weak); 1 = off. Unlike "
        "guidance it does not ask for more of the condition, so the chords stay less safe "
        "(docs/evaluation.md)",
        1.0,
        10.0,
    )
    autoguidance_share: float = _knob(
        1.0,
        "0..1: autoguidance applies for this share of the noise schedule, from the noisiest "
        "step; the quieter steps run the model alone (no weak-model call there)",
        0.0,
        1.0,
    )
    control_guidance: float = _knob(
        1.0,
        "control guidance weight w: at the quiet steps each prediction is pushed away from "
        "the same network asked for a typical segment (the controls named by "
        "control_guidance_controls at the POP909 median) by (w - 1)(D - D_typical), so the "
        "music follows those controls more closely; 1 = off (one more pass a guided step)",
        1.0,
        10.0,
    )
    control_guidance_share: float = _knob(
        0.5,
        "0..1: control guidance applies for this share of the noise schedule, from the "
        "quietest step, where the dynamic controls steer",
        0.0,
        1.0,
    )
    control_guidance_controls: str = _knob(
        "register",
        "the dynamic controls control guidance follows more closely, comma-separated "
        "(density, velocity, register, polyphony)",
    )
    onset_threshold: float = _knob(
        0.0, "onset channel value in [-1, 1] above which a note starts", -1.0, 1.0
    )
    sustain_threshold: float = _knob(
        0.0, "sustain channel value in [-1, 1] above which a note keeps sounding", -1.0, 1.0
    )
    overlap_steps: int = _knob(
        16,
        "16th steps each window in-paints from the previous one (one bar keeps joins coherent)",
        0,
        1024,
    )
    density_slack: float = _knob(
        0.0,
        "> 0: per segment, move the onset threshold (within ± this) toward the segment's "
        "requested density (density-matched decoding); 0 = one fixed threshold",
        0.0,
        2.0,
    )
    recall: float = _knob(
        0.0,
        "0..1: a returning scene or repeated phrase is guided by the music of its first "
        "occurrence for this share of the noise schedule (0 = fresh music, 1 = copy)",
        0.0,
        1.0,
    )
    inner_recall: float = _knob(
        0.0,
        "0..1: inside a phrase, a bar follows the bar inner_recall_bars before it (where "
        "their chords agree) for this share of the noise schedule, as a repeated phrase "
        "follows its first occurrence (0 = off)",
        0.0,
        1.0,
    )
    inner_recall_bars: int = _knob(
        4,
        "the distance in bars of inner_recall's repeats",
        1,
        16,
    )
    inner_recall_near_bars: int = _knob(
        0,
        "> 0: with inner_recall, a bar that cannot follow the bar inner_recall_bars before it "
        "(too early in its phrase, or their chords disagree) follows the bar this many bars "
        "before it, where an earlier window wrote that bar (a guide follows final music only) "
        "and their chords agree; 0 = off",
        0,
        16,
    )
    key_filter: bool = _knob(
        False,
        "write no note that is neither in the piece's key (major, or natural minor with its "
        "leading tone) nor in the chord sounding with it: the network writes such notes 2.7x "
        'as often as POP909 (docs/evaluation.md, "Notes outside the key and the chord"); '
        "a piece whose conditions carry no key is left as it is",
    )
    groove: float = _knob(
        0.0,
        "> 0: nudge onset values toward the rhythm pattern most bars of the segment use "
        "(groove-consistent decoding, in onset-channel units, e.g. 0.1)",
        0.0,
        2.0,
    )
    edge_bars: int = _knob(
        0,
        "> 0: where neighbouring segments ask for densities >= 25 %% apart, the N bars on either "
        "side of the boundary are density-matched on their own and a returning phrase asked "
        "for another density does not recall them, so the change is heard at the boundary",
        0,
        8,
    )
    double_time_from: float = _knob(
        0.0,
        "> 0: a piece that asks for at least this share of its onsets on the odd 16ths (its "
        "figuration: a song's own, a plan's the share typical of its tempo) is composed in "
        "double time, every beat written as two, so that its 16th-note figures are the "
        "network's 8ths (twice the sampling work), then put back on its own grid "
        '(docs/evaluation.md, "Double time"); 0 = off',
        0.0,
        1.0,
    )
    figured_network_from: float = _knob(
        0.0,
        "> 0: a piece that asks for at least this share of its onsets on the odd 16ths (its "
        "figuration: a song's own, a plan's the share typical of its tempo) is composed by "
        "the checkpoint's figured network (its figured/ folder: a network of POP909's songs in "
        '16th-note figures; docs/evaluation.md, "A network of the figured songs"); 0 = off',
        0.0,
        1.0,
    )
    deep_reuse: int = _knob(
        0,
        "this many of the quietest steps (the last, the third-last, ...) reuse the deep "
        "features of the network call before them and run only its outermost level "
        "(DeepCache; a reused call costs a quarter of a full one; within 2 %% on the "
        "evaluation's metrics up to 3, but the music is easier to tell from real: "
        "docs/evaluation.md)",
        0,
        1000,
    )
    final_call: bool = _knob(
        True,
        "call the network once more at t = 0 on the finished roll (the grid's last point); "
        "off: the roll is the x0 predicted at the last noisy step, one call fewer a window",
    )
    max_window_steps: int = _knob(
        0,
        "> the model's window: windows may grow up to this many 16th steps (fewer overlaps "
        "to sample, and a CPU does more work per second on a longer window), each ending "
        "before a phrase that recalls music of its own and holding no more segments than "
        "the model has slots for; faster, but less structured music (docs/evaluation.md); "
        "0 = the model's window",
        0,
        4096,
    )
    window_batch: int = _knob(
        1,
        "1 = windows left to right, one per network call; > 1 = two passes (every other "
        "window, then those between, in-painting both sides), up to this many per call",
        1,
        256,
    )
    candidates: int = _knob(
        1,
        "> 1: sample each window this many times (one batch) and keep the candidate the "
        "checkpoint's window critic rates most like real music (critic.safetensors; "
        "costs about that many times the network's work)",
        1,
        16,
    )
    critic_register: float = _knob(
        1.0,
        "with candidates > 1: the critic's choice also weighs how far each candidate's mean "
        "pitch lies from the register its segments ask for (this weight per octave, added to "
        "the critic's P(generated)); 0 = realism alone, which follows the register less",
        0.0,
        100.0,
    )
    branch_at: float = _knob(
        0.0,
        "with candidates > 1: the share of the sampler's calls a window's candidates share "
        "(made once) before they branch, each going on with its own fresh noise (needs "
        "eta > 0 after the branch); 0 = separate candidates from the first call",
        0.0,
        0.95,
    )
    channels_last: bool = _knob(
        False,
        "channels-last convolutions while sampling (oneDNN: ~11 %% faster here; the notes may "
        "then differ with the torch thread count)",
    )
    bf16: bool = _knob(
        True,
        "bfloat16 autocast while sampling where the hardware computes bf16 natively (CUDA, "
        "x86 with AMX or AVX-512 BF16); elsewhere float32, which is many times faster there "
        "(the schedule stays fp32)",
    )
    onnx_runtime: bool = _knob(
        True,
        "run the network with ONNX Runtime where sampling is float32 on a CPU (1.4-1.5x "
        "faster per call than torch on an AVX2 CPU; exported once per weights and cached in "
        "$DIFFBGM_ONNX_CACHE or ~/.cache/diffbgm/onnx); torch elsewhere",
    )

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            _check(spec.name, value, spec.metadata, type(spec.default))
        if self.eta > 0 and self.sampler == "unipc":
            raise GenerationError(
                f"eta {self.eta:g} needs a stochastic sampler: use sampler ddim or dpm (UniPC's "
                "corrector is deterministic)"
            )
        unknown_controls = set(self.guided_controls) - set(DYNAMIC_CONTROLS)
        if unknown_controls or not self.guided_controls:
            raise GenerationError(
                f"control_guidance_controls {self.control_guidance_controls!r} must name "
                f"dynamic controls, comma-separated: {', '.join(DYNAMIC_CONTROLS)}"
            )
        if self.control_guidance != 1.0 and self.deep_reuse > 0:
            raise GenerationError(
                f"control_guidance {self.control_guidance:g} does not combine with deep_reuse "
                f"{self.deep_reuse} (the reused features belong to one pass); use one of them"
            )
        if self.guidance_ceiling < 1.0 and self.guidance_ceiling <= 1.0 - self.guidance_share:
            raise GenerationError(
                f"guidance_ceiling {self.guidance_ceiling:g} leaves no step guided with "
                f"guidance_share {self.guidance_share:g} (guidance applies between "
                f"{1.0 - self.guidance_share:g} and the ceiling of the noise schedule); use "
                "guidance 1 for none"
            )

    @property
    def guided_controls(self) -> list[str]:
        """The dynamic controls control guidance follows more closely, in the order named."""
        return [name.strip() for name in self.control_guidance_controls.split(",") if name.strip()]

    # --- building -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> GenerationConfig:
        """From stored JSON (a checkpoint's `extra.generation`, a report's `generation`).
        Missing knobs keep their defaults; old names are read; unknown names are an error."""
        return cls().with_overrides(**{_LEGACY_NAMES.get(k, k): v for k, v in data.items()})

    def with_overrides(self, **overrides: object) -> GenerationConfig:
        """A copy with some knobs changed; None means "keep". Validated like the constructor."""
        known = {spec.name: spec for spec in fields(self)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise GenerationError(
                f"unknown generation setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        changes = {
            name: _coerce(name, value, type(known[name].default))
            for name, value in overrides.items()
            if value is not None
        }
        return replace(self, **changes)  # type: ignore[arg-type]

    def with_setting(self, setting: str) -> GenerationConfig:
        """A copy changed by a compact setting 'sampler:steps[:knob=value...]', as benchmarks
        name them (e.g. 'unipc:12', 'dpm:15:guidance_share=0.5')."""
        sampler, steps, *knobs = setting.split(":")
        changes: dict[str, object] = {"sampler": sampler, "steps": int(steps)}
        for knob in knobs:
            name, _, text = knob.partition("=")
            current = getattr(self, name, text)  # an unknown name fails in with_overrides
            if isinstance(current, bool):
                changes[name] = text.lower() in ("1", "true")
            elif isinstance(current, int | float):
                changes[name] = type(current)(text)
            else:
                changes[name] = text
        return self.with_overrides(**changes)

    def to_dict(self) -> dict[str, KnobValue]:
        return asdict(self)

    def sampler_settings(self, num_train_steps: int) -> SamplerSettings:
        """The knobs the sampler reads, for a schedule of num_train_steps timesteps (the
        guidance share and ceiling become the timesteps guidance applies between)."""
        from diffbgm.model.diffusion import SamplerSettings  # torch: only when sampling

        return SamplerSettings(
            steps=self.steps,
            guidance=self.guidance,
            sampler=self.sampler,
            eta=self.eta,
            noise_below=None
            if self.noise_share >= 1.0
            else round(self.noise_share * num_train_steps),
            guidance_until=round((1.0 - self.guidance_share) * num_train_steps),
            guidance_from=None
            if self.guidance_ceiling >= 1.0
            else round(self.guidance_ceiling * num_train_steps),
            deep_reuse=self.deep_reuse,
            final_call=self.final_call,
        )


def _coerce(name: str, value: object, kind: type) -> KnobValue:
    """JSON and CLI values to the knob's type (2.0 -> 2 for an int knob, 1 -> True for bool)."""
    if kind is bool:
        if isinstance(value, bool | int) and value in (0, 1):
            return bool(value)
    elif kind is int:
        if isinstance(value, int | float) and not isinstance(value, bool) and value == int(value):
            return int(value)
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, str):
        return value
    raise GenerationError(f"{name} must be {kind.__name__}, got {value!r}")


def _check(name: str, value: object, meta: Mapping[str, object], kind: type) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise GenerationError(f"{name} must be {kind.__name__}, got {value!r}")
    choices = meta.get("choices")
    if isinstance(choices, tuple) and value not in choices:
        raise GenerationError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    low, high = meta.get("low"), meta.get("high")
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    bounded = isinstance(low, int | float) and isinstance(high, int | float)
    if numeric and bounded and not low <= value <= high:  # type: ignore[operator]
        raise GenerationError(f"{name} must be between {low:g} and {high:g}, got {value}")


# --- command line -------------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_generation_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """One flag per GenerationConfig field. Every flag defaults to None: "the model's value"
    (its checkpoint's stored setting, else the default shown in the help)."""
    for spec in fields(GenerationConfig):
        meta = spec.metadata
        kind = type(spec.default)
        help_text = f"{meta['help']} (default: the model's; without one {spec.default})"
        if kind is bool:
            parser.add_argument(
                _flag(spec.name),
                dest=spec.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
            continue
        parser.add_argument(
            _flag(spec.name),
            dest=spec.name,
            type=kind,
            default=None,
            choices=meta["choices"],
            help=help_text,
        )


def generation_overrides(args: argparse.Namespace) -> dict[str, KnobValue]:
    """The knobs given on the command line (those not None) as overrides."""
    given = {spec.name: getattr(args, spec.name, None) for spec in fields(GenerationConfig)}
    return {name: value for name, value in given.items() if value is not None}
