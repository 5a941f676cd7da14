"""Generation: one typed config, one code path (`generate_roll`), decode rules as steps.

config.py    GenerationConfig: every sampling/decoding knob, its range and CLI flag
generate.py  generate_roll(model, conditions, config, seed, known, progress); recalled_steps
windows.py   long pieces: window-by-window sampling with overlap in-painting
recall.py    phrase recall: the recall map and the guide the sampler follows
critic.py    the window critic: which of a window's sampled candidates looks most real
decoding.py  sampled values -> notes: decode rules (one class each) and the threshold cut
requests.py  what segments ask for in notes (onsets per bar), shared by recall and decode
"""

from typing import TYPE_CHECKING, Any

from diffbgm.generation.config import (
    GenerationConfig,
    add_generation_arguments,
    generation_overrides,
)

if TYPE_CHECKING:
    from diffbgm.generation.decoding import (
        DecodedRoll,
        DecodeStep,
        DensityMatch,
        GrooveBias,
        KeyFilter,
        decode,
        decode_roll,
        decode_steps,
    )
    from diffbgm.generation.generate import (
        GeneratedRoll,
        KnownMusic,
        check_settings_for_model,
        generate_roll,
        recalled_steps,
    )

# The config is light (command lines read it for --help); the rest imports torch, on first use.
_LAZY = {
    "DecodedRoll": "decoding",
    "DecodeStep": "decoding",
    "DensityMatch": "decoding",
    "GrooveBias": "decoding",
    "KeyFilter": "decoding",
    "decode": "decoding",
    "decode_roll": "decoding",
    "decode_steps": "decoding",
    "GeneratedRoll": "generate",
    "KnownMusic": "generate",
    "generate_roll": "generate",
    "check_settings_for_model": "generate",
    "recalled_steps": "generate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"diffbgm.generation.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'diffbgm.generation' has no attribute {name!r}")


__all__ = [
    "DecodeStep",
    "DecodedRoll",
    "DensityMatch",
    "GeneratedRoll",
    "GenerationConfig",
    "GrooveBias",
    "KeyFilter",
    "KnownMusic",
    "add_generation_arguments",
    "check_settings_for_model",
    "decode",
    "decode_roll",
    "decode_steps",
    "generate_roll",
    "generation_overrides",
    "recalled_steps",
]
