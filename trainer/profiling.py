"""Where a training step's time goes: a few steps under torch.profiler, written as a table.

A lent GPU is held for minutes, so the first of them should say whether the network, the
optimizer or the batches are the limit (session 38's H200 took 0.19 s for a step of 512
windows, far slower than its arithmetic allows). `trainer train --profile-steps N` profiles
N steps after a few warm-up ones and writes RUN/profile.txt; the run goes on as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

PROFILE_FILE = "profile.txt"
WARMUP_STEPS = 3  # the first steps pay for allocation and cuDNN's algorithm search
TABLE_ROWS = 30


class StepProfiler:
    """Profiles the optimizer steps [first + WARMUP_STEPS, first + WARMUP_STEPS + steps)."""

    def __init__(self, steps: int, first_step: int, device: torch.device, out: Path) -> None:
        self.start = first_step + WARMUP_STEPS
        self.stop = self.start + steps
        self.device = device
        self.out = out
        self._profiler: Any = None
        self._profiled = 0

    def before_step(self, step: int) -> None:
        """Call with the index of the step about to run."""
        if step == self.start and self.stop > self.start:
            activities = [ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(ProfilerActivity.CUDA)
            self._profiler = profile(activities=activities)
            self._profiler.__enter__()

    def after_step(self, step: int) -> None:
        """Call with the index of the step that has just run."""
        if self._profiler is None:
            return
        self._profiled += 1
        if step + 1 >= self.stop:
            self.close()

    def close(self) -> None:
        """Stop and write the table (also when the run ends before the last profiled step)."""
        if self._profiler is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        profiler, self._profiler = self._profiler, None
        profiler.__exit__(None, None, None)
        self.out.write_text(profile_table(profiler, self._profiled, self.device))
        print(f"profile of {self._profiled} steps written to {self.out}")


def profile_table(profiler: Any, steps: int, device: torch.device) -> str:
    """The ops that took the most time over the profiled steps, device time first on a GPU."""
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    averages = profiler.key_averages()
    header = f"{steps} training steps on {device}, sorted by {key}\n\n"
    return header + averages.table(sort_by=key, row_limit=TABLE_ROWS) + "\n"
