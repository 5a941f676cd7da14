"""Arrangement: the generated roll as named parts for chosen instruments, played like a person.

- `parts`: melody / accompaniment split of the merged roll (measured on POP909).
- `presets`: the named arrangements (General MIDI programs, registers, mixer settings).
- `derived`: pad and bass parts built from the plan's chords.
- `percussion`: drums on the plan's bar grid, filling into every cut.
- `performance`: sustain pedal with the harmony, seeded humanisation, mixer changes.
- `score`: `arrange(roll, plan, spec, preset, seed, humanise)` -> PrettyMIDI in video time.
"""

from diffbgm.arrange.presets import ARRANGEMENTS, DEFAULT_ARRANGEMENT, PRESETS, get_preset
from diffbgm.arrange.score import arrange

__all__ = ["ARRANGEMENTS", "DEFAULT_ARRANGEMENT", "PRESETS", "arrange", "get_preset"]
