"""How many CPU threads sampling should use now: the cores no other process is busy with.

Measured on this 2-core machine (docs/pipeline.md, benchmarks/compose_dtype.py): on an idle
machine two threads compose 1.8x faster than one; with another busy process, two threads were
4x slower than one (they fight over the last core). So the count is measured before each
compose, not assumed: the share of the machine's CPU time other processes used over a short
sample (/proc/stat), taken while this process waits, leaves the free cores. A changed thread
count does not change the music (the pinned scores are the same with 1 and 2 threads).
"""

from __future__ import annotations

import os
import time

AUTO = "auto"
SAMPLE_S = 0.2


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, or None where /proc/stat is missing."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def busy_cores(sample_s: float = SAMPLE_S) -> float | None:
    """Cores' worth of CPU time the machine used over `sample_s` seconds (None if unknown)."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(sample_s)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return None
    share = (second[0] - first[0]) / (second[1] - first[1])
    return share * (os.cpu_count() or 1)


def free_cores(sample_s: float = SAMPLE_S) -> int:
    """Cores nothing else is using now, at least 1 (all of them where it cannot be measured)."""
    cores = os.cpu_count() or 1
    busy = busy_cores(sample_s)
    if busy is None:
        return cores
    return max(1, min(cores, round(cores - busy)))


def parse_threads(text: str) -> int | str:
    """A --threads value: 'auto' or a whole number (0 = torch's own default)."""
    if text.strip().lower() == AUTO:
        return AUTO
    value = int(text)
    if value < 0:
        raise ValueError("threads must be 'auto', 0 (torch's default) or more")
    return value
