"""Which torch device the composer's model runs on: `auto` (CUDA when torch sees a GPU, else
the CPU), `cpu`, or `cuda` / `cuda:N`.

Why a rule of its own: the library, the CLI (`--device`) and the app (`DIFFBGM_DEVICE`) must
agree, and asking for CUDA where there is none must say so plainly instead of failing deep in
torch. Sampling already follows the model's device (bf16 autocast on `device.type`, noise drawn
on the CPU generator and moved), so a seed gives the same noise on every device.

The same goes for the dtype: whether bf16 autocast pays depends on the hardware, so the rule
lives here too (`native_bf16`, `sampling_precision`); the trainer uses it as well.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from diffbgm.errors import DiffBGMError

DEVICE_ENV = "DIFFBGM_DEVICE"
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def device_setting(value: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """`value`, else $DIFFBGM_DEVICE, else `auto` (lower-case, stripped)."""
    env = os.environ if env is None else env
    raw = value if value is not None else env.get(DEVICE_ENV, "")
    return raw.strip().lower() or "auto"


def resolve_device(value: str | None = None, env: Mapping[str, str] | None = None) -> torch.device:
    """The torch device for a setting; DiffBGMError for an unknown name or CUDA without CUDA."""
    setting = device_setting(value, env)
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cpu":
        return torch.device("cpu")
    if setting == "cuda" or setting.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DiffBGMError(
                f"device {setting!r} was asked for, but torch sees no CUDA GPU "
                f"(torch {torch.__version__}); use --device auto or cpu"
            )
        device = torch.device(setting)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DiffBGMError(
                f"device {setting!r} does not exist: torch sees {torch.cuda.device_count()} GPU(s)"
            )
        return device
    raise DiffBGMError(f"unknown device {setting!r}: use one of {', '.join(DEVICE_CHOICES)}")


def native_bf16(device: torch.device) -> bool:
    """Does `device` compute bfloat16 in hardware?

    CUDA: as torch says. An x86 CPU: with AMX or AVX-512 BF16. Anywhere else bf16 autocast is
    emulated, and that is slow: on an AVX2-only AMD EPYC the compose stage of the 30 s clip took
    77.2 s under bf16 autocast against 3.1 s in float32 (one thread), where on an AMX Xeon bf16
    was 1.5x faster than float32 (docs/pipeline.md, "Compose stage: dtype and threads").
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    # torch.cpu's probes are private; a torch without them counts as no native bf16
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def sampling_precision(bf16_wanted: bool, device: torch.device) -> str:
    """The dtype sampling computes in on `device`, "bf16" or "fp32", when the generation config
    asks for bf16 or not (`bf16_wanted`): bf16 only where the hardware computes it natively."""
    return "bf16" if bf16_wanted and native_bf16(device) else "fp32"
