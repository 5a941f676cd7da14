"""generate_roll: conditions in, notes out — the one way every caller generates music.

The Composer (app and CLI), `trainer sample|evaluate|suite` and the benchmarks all call it, so
a knob or a rule changes everywhere at once: sample the piece window by window (recall guide
and in-painting included), then decode it with the rules the GenerationConfig switches on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from diffbgm.controls import DYNAMIC_CONTROLS
from diffbgm.device import sampling_precision
from diffbgm.errors import GenerationError
from diffbgm.generation.config import GenerationConfig
from diffbgm.generation.critic import AskedRegister
from diffbgm.generation.decoding import DecodedRoll, DecodeStep, decode
from diffbgm.generation.double_time import (
    asks_for_figures,
    doubled_conditions,
    doubled_known,
    halved_notes,
    halved_raw,
    halved_recall,
)
from diffbgm.generation.recall import RecallGuide
from diffbgm.generation.requests import requested_onsets_per_bar
from diffbgm.generation.windows import CandidateChooser, sample_piece, written_by
from diffbgm.model.autoguidance import Autoguided
from diffbgm.model.conditions import PieceConditions
from diffbgm.model.control_guidance import ControlGuided
from diffbgm.model.diffusion import Diffusion
from diffbgm.model.onnx_runtime import onnx_denoiser, sampling_runtime
from diffbgm.model.unet import Denoiser
from diffbgm.music.calibration import Calibration

if TYPE_CHECKING:
    from diffbgm.checkpoint import LoadedModel

LOG = logging.getLogger(__name__)
StepProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class KnownMusic:
    """Music to keep while the rest is generated (regenerating one segment).

    roll (2, T, P) in [-1, 1] (onset, sustain); mask (T,), (T, P) or (2, T, P), 1 = keep."""

    roll: np.ndarray
    mask: np.ndarray

    @classmethod
    def from_notes(
        cls, onset: np.ndarray, sustain: np.ndarray, keep_steps: np.ndarray
    ) -> KnownMusic:
        """Keep the decoded notes (T, P) bool at the steps where keep_steps (T,) is set."""
        roll = np.stack([onset, sustain]).astype(np.float32) * 2.0 - 1.0  # (2, T, P)
        mask = np.broadcast_to(keep_steps[None, :, None], roll.shape).astype(np.float32)
        return cls(roll, mask)


@dataclass(frozen=True)
class GeneratedRoll:
    """A generated piece: the sampled values and the notes decoded from them."""

    raw: np.ndarray  # (2, T, P) float32 in [-1, 1], as the sampler left it
    notes: DecodedRoll  # (T, P) bool onset and sustain
    # where each step's music was recalled from: (T,) source step or -1, (T,) semitones
    # (the velocities play a recalled phrase as the phrase it repeats)
    recalled: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def onset(self) -> np.ndarray:
        return self.notes.onset

    @property
    def sustain(self) -> np.ndarray:
        return self.notes.sustain


def check_settings_for_model(model: LoadedModel, config: GenerationConfig) -> None:
    """Raise GenerationError for settings these weights cannot honour: a guidance scale
    outside the scales a guidance-distilled network learned, a step-distilled network
    asked for another sampler or step count than the one it learned, or a knob that needs a
    companion the checkpoint does not ship (a weak model, a critic, a figured network)."""
    steps = model.distilled_steps
    if steps and (config.sampler != "ddim" or config.steps != steps):
        raise GenerationError(
            f"this step-distilled model samples with DDIM in exactly {steps} steps (asked: "
            f"{config.sampler} {config.steps}); use those, or its teacher "
            f"({model.extra.get('distilled_from', 'the undistilled model')}) for others"
        )
    if config.figured_network_from > 0 and model.figured is None:
        raise GenerationError(
            f"figured_network_from {config.figured_network_from:g} needs a figured network, "
            f"and this checkpoint has none (a figured/ folder beside its weights; "
            'docs/evaluation.md, "A network of the figured songs"); use figured_network_from 0'
        )
    if config.candidates > 1 and model.critic is None:
        raise GenerationError(
            f"candidates {config.candidates} needs a window critic to choose among them, and "
            "this checkpoint has none (critic.safetensors beside its weights; `python -m "
            "trainer critic` trains one); use candidates 1"
        )
    if config.candidates > 1 and config.branch_at > 0 and config.eta == 0:
        raise GenerationError(
            f"branch_at {config.branch_at:g} lets a window's candidates differ only by the "
            "fresh noise of a stochastic sampler, and eta is 0: they would all be the same; "
            "use eta > 0 or branch_at 0"
        )
    if config.autoguidance != 1.0 and model.weak is None:
        raise GenerationError(
            f"autoguidance {config.autoguidance:g} needs a weak model, and this checkpoint "
            "has none (a weak/ folder beside its weights); use autoguidance 1"
        )
    if config.control_guidance != 1.0 and model.config.dynamic_dim != len(DYNAMIC_CONTROLS):
        raise GenerationError(
            f"control guidance needs the {len(DYNAMIC_CONTROLS)} dynamic controls "
            f"({', '.join(DYNAMIC_CONTROLS)}); this model takes {model.config.dynamic_dim}; "
            "use control_guidance 1"
        )
    scales = model.guidance_range
    if scales is not None and not scales[0] <= config.guidance <= scales[1]:
        raise GenerationError(
            f"guidance {config.guidance:g} is outside the scales this guidance-distilled model "
            f"learned ({scales[0]:g} to {scales[1]:g}); use a scale in that range, or its "
            f"teacher ({model.extra.get('distilled_from', 'the undistilled model')}) for others"
        )


def sampling_network(model: LoadedModel, config: GenerationConfig, precision: str) -> nn.Module:
    """The denoiser as sampling runs it: ONNX Runtime where `sampling_runtime` picks it and the
    graph can be exported, else the torch module (a failed export is logged, not raised: the
    torch network makes the same music); with autoguidance, wrapped with the weak model; with
    control guidance, wrapped with its typical-segment pass (outermost)."""
    device = next(model.model.parameters()).device
    runtime = sampling_runtime(config.onnx_runtime, precision, device)
    num_train_steps = model.config.diffusion.num_train_steps
    if config.autoguidance == 1.0 or model.weak is None:
        network = _runtime_network(model.model, runtime)
    else:
        # two networks in turn: ONNX Runtime's pools must not spin between calls (onnx_runtime)
        strong = _runtime_network(model.model, runtime, spinning=False)
        weak = model.weak.model.to(device)
        from_t = round((1.0 - config.autoguidance_share) * num_train_steps)
        weak_network = _runtime_network(weak, runtime, spinning=False)
        network = Autoguided(strong, weak_network, config.autoguidance, from_t)
    if config.control_guidance == 1.0:
        return network
    columns = [DYNAMIC_CONTROLS.index(name) for name in config.guided_controls]
    below_t = round(config.control_guidance_share * num_train_steps)
    return ControlGuided(network, config.control_guidance, below_t, columns)


def _chooser(
    model: LoadedModel,
    config: GenerationConfig,
    conditions: PieceConditions,
    calibration: Calibration,
) -> CandidateChooser | None:
    """The window critic's choice among a window's candidates, decoded with the plain
    thresholds (the decode rules need the whole piece), or None for one candidate. Where the
    conditions carry the register control, the choice also keeps near the asked register."""
    critic = model.critic
    if config.candidates == 1 or critic is None:
        return None
    asked_pitch = None
    if conditions.dynamic.shape[1] == len(DYNAMIC_CONTROLS) and config.critic_register > 0:
        column = DYNAMIC_CONTROLS.index("register")
        asked = conditions.dynamic[conditions.segment_ids, column].astype(np.float64)
        asked_pitch = np.asarray(calibration.to_raw("register", asked))  # (T,) MIDI pitch

    def choose(candidates: np.ndarray, start: int) -> int:
        register = None
        if asked_pitch is not None:
            span = slice(start, start + candidates.shape[2])
            register = AskedRegister(
                conditions.segment_ids[span], asked_pitch[span], config.critic_register
            )
        return critic.choose(candidates, config.onset_threshold, config.sustain_threshold, register)

    return choose


def _runtime_network(denoiser: Denoiser, runtime: str, spinning: bool = True) -> nn.Module:
    if runtime == "torch":
        return denoiser
    try:
        return onnx_denoiser(denoiser, spinning=spinning)
    except Exception as exc:  # noqa: BLE001 - an exporter or cache failure must not stop a compose
        LOG.warning("ONNX Runtime unavailable for this model (%s); sampling with torch", exc)
        return denoiser


def composing_network(
    model: LoadedModel, conditions: PieceConditions, config: GenerationConfig
) -> LoadedModel:
    """The checkpoint's figured network for a piece that asks for at least
    `figured_network_from` of its onsets on the odd 16ths, else its own network."""
    if model.figured is None or not asks_for_figures(conditions, config.figured_network_from):
        return model
    # the figured network samples with the parent's settings; it has no figured network itself
    check_settings_for_model(model.figured, replace(config, figured_network_from=0.0))
    return model.figured


def generate_roll(
    model: LoadedModel,
    conditions: PieceConditions,
    config: GenerationConfig,
    seed: int,
    known: KnownMusic | None = None,
    progress: StepProgress | None = None,
    *,
    calibration: Calibration | None = None,
    decode_rules: list[DecodeStep] | None = None,
) -> GeneratedRoll:
    """Sample and decode a whole piece.

    seed fixes the music (same model, conditions, config and seed: the same notes).
    known keeps part of an existing piece bit for bit and in-paints the rest around it.
    progress(done, total) counts denoising steps over every window sampled.
    calibration turns density controls into onsets per bar (default: the shipped POP909 one);
    decode_rules replaces the rules the config switches on (benchmarks of rule variants).
    """
    check_settings_for_model(model, config)
    calibration = calibration or Calibration.load()
    model = composing_network(model, conditions, config)
    doubled = asks_for_figures(conditions, config.double_time_from)
    composed, kept = conditions, known
    if doubled:
        composed = doubled_conditions(conditions, calibration)
        kept = None if known is None else KnownMusic(*doubled_known(known.roll, known.mask))
    raw, notes, recalled = _compose(
        model, composed, config, seed, kept, progress, calibration, decode_rules
    )
    if doubled:
        raw, notes, recalled = halved_raw(raw), halved_notes(notes), halved_recall(*recalled)
    if known is not None:
        # Decoding looks at neighbours (a sustain needs its onset), so re-decoding could move
        # notes at the edges of the kept music: keep the kept part bit for bit.
        keep = np.broadcast_to(np.asarray(known.mask, dtype=bool), known.roll.shape)
        notes = DecodedRoll(
            onset=np.where(keep[0], known.roll[0] > 0, notes.onset),
            sustain=np.where(keep[1], known.roll[1] > 0, notes.sustain),
        )
        # kept music was not sampled now: it recalls what the plan says it does
        kept_steps = keep.all(axis=(0, 2))
        planned = recalled_steps(model, conditions, config, calibration)
        recalled = (
            np.where(kept_steps, planned[0], recalled[0]),
            np.where(kept_steps, planned[1], recalled[1]),
        )
    return GeneratedRoll(raw=raw, notes=notes, recalled=recalled)


def recalled_steps(
    model: LoadedModel,
    conditions: PieceConditions,
    config: GenerationConfig,
    calibration: Calibration,
) -> tuple[np.ndarray, np.ndarray]:
    """Where each step of the piece composed with `config` is planned to recall its music
    from: (T,) source step or -1 and (T,) semitones, the map the sampler's recall guide is
    built from (all -1 where recall is off). What a composed piece did follow is its
    `GeneratedRoll.recalled`: in the default left-to-right layout the same map; in others a
    step whose source was not yet final when its window was sampled is left out."""
    model = composing_network(model, conditions, config)
    guide = _recall_guide(
        model, conditions, config, calibration, model.config.diffusion.num_train_steps
    )
    return guide.source, guide.semitones


def _recall_guide(
    model: LoadedModel,
    conditions: PieceConditions,
    config: GenerationConfig,
    calibration: Calibration,
    num_train_steps: int,
) -> RecallGuide:
    # edge bars: a returning phrase asked for another density plays it at its changing edges
    requested = requested_onsets_per_bar(conditions, calibration) if config.edge_bars > 0 else None
    return RecallGuide.build(
        conditions,
        config.recall,
        num_train_steps,
        requested,
        keep_map=model.config.recall_input,
        inner_strength=config.inner_recall,
        inner_bars=config.inner_recall_bars,
        inner_near_bars=config.inner_recall_near_bars,
        written_by=written_by(conditions.n_steps, model.config.window_steps, config.overlap_steps),
    )


def _compose(
    model: LoadedModel,
    conditions: PieceConditions,
    config: GenerationConfig,
    seed: int,
    known: KnownMusic | None,
    progress: StepProgress | None,
    calibration: Calibration,
    decode_rules: list[DecodeStep] | None,
) -> tuple[np.ndarray, DecodedRoll, tuple[np.ndarray, np.ndarray]]:
    """Sample the piece window by window and decode it: (raw (2, T, P), notes, and what the
    recall guide steered: (T,) source step or -1, (T,) semitones)."""
    diffusion = Diffusion(model.config.diffusion)
    guide = _recall_guide(model, conditions, config, calibration, diffusion.num_train_steps)
    generator = torch.Generator().manual_seed(seed)
    followed = np.full(conditions.n_steps, -1, dtype=np.int64)
    device = next(model.model.parameters()).device
    # the convolutions' weights in the layout asked for (in place; cheap, idempotent): oneDNN's
    # channels-last kernels were 10-15 % faster per call on this CPU (docs/pipeline.md)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    model.model.to(memory_format=layout)  # type: ignore[call-overload]
    # bf16 pays where the hardware has it (AMX: 1.5x) and costs 25-39x where it is emulated
    # (AVX2), so it is used only where native; the schedule math inside stays in fp32.
    precision = sampling_precision(config.bf16, device)
    network = sampling_network(model, config, precision)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        raw = sample_piece(
            network,
            diffusion,
            conditions,
            model.config,
            generator,
            config.sampler_settings(diffusion.num_train_steps),
            overlap_steps=config.overlap_steps,
            known_roll=None if known is None else known.roll,
            known_mask=None if known is None else known.mask,
            progress=progress,
            guide=guide,
            window_batch=config.window_batch,
            max_window_steps=config.max_window_steps,
            candidates=config.candidates,
            choose=_chooser(model, config, conditions, calibration),
            branch_at=config.branch_at,
            followed=followed,
        )
    notes = decode(raw, conditions, config, calibration, decode_rules, model.config.pitch_low)
    return raw, notes, (followed, np.where(followed >= 0, guide.semitones, 0))
