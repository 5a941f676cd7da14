"""Which torch device the composer's model runs on: `auto` (CUDA when torch sees a GPU, else
the CPU), `cpu`, or `cuda` / `cuda:N`.

Why a rule of its own: the library, the CLI (`--device`) and the app (`DIFFBGM_DEVICE`) must
agree, and asking for CUDA where there is none must say so plainly instead of failing deep in
torch. Sampling already follows the model's device (bf16 autocast on `device.type`, noise drawn
on the CPU generator and moved), so a seed gives the same noise on every device.
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
