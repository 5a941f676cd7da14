"""How many CPU threads sampling should use now: the cores no other process is busy with.

Measured on this 2-core machine (docs/pipeline.md, benchmarks/compose_dtype.py): on an idle
machine two threads compose 1.8x faster than one; with another busy process, two threads were
4x slower than one (they fight over the last core). So the count is measured, not assumed: the
share of the machine's CPU time (/proc/stat) that other processes used while this one analysed
the video (`CoreSample`: this process's own threads and children are taken out, so the sample
costs no waiting), leaves the free cores. While the compose's own background job (the picture
encode) still runs, sampling leaves it one of them (`SamplingThreads`). A changed thread count
does not change the music (the pinned scores are the same with 1 and 2 threads).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

AUTO = "auto"
SAMPLE_S = 0.2
# Below this many seconds a sample is too coarse (/proc/stat counts in 10 ms ticks): it is
# lengthened by waiting.
MIN_SAMPLE_S = 0.1


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs since boot, or None where /proc/stat is missing."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _process_ticks(pid: int | str) -> int:
    """Clock ticks process `pid` used, with its waited-for children's (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime


def _children(pid: int | str) -> list[str]:
    """Live child processes of `pid` (every thread's), where the kernel lists them."""
    found: list[str] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as listed:
                found.extend(listed.read().split())
        except OSError:
            continue
    return found


def own_ticks(children: Iterable[int] = ()) -> int | None:
    """Clock ticks used by this process, its children and their children, live or reaped
    (None where /proc is missing). A child's time moves into our `cutime` when it is reaped,
    so the sum stays continuous. `children`: pids of ours to count even where the kernel does
    not list children (/proc/PID/task/TID/children needs CONFIG_PROC_CHILDREN)."""
    if not os.path.exists("/proc/self/stat"):
        return None
    total, pending, seen = _process_ticks("self"), _children("self"), set()
    pending.extend(str(pid) for pid in children)
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _process_ticks(pid)
        pending.extend(_children(pid))
    return total


@dataclass
class CoreSample:
    """The other processes' CPU use from `start()` to `free_cores()`, taken while this process
    works: its own time (threads and child processes) is subtracted from the machine's busy
    time, so the sample spans the analysis of a video instead of a wait before it."""

    started_s: float
    machine: tuple[int, int] | None
    own: int | None

    @classmethod
    def start(cls) -> CoreSample:
        return cls(time.monotonic(), _machine_ticks(), own_ticks())

    def busy_cores(self, children: Iterable[int] = ()) -> float | None:
        """Cores' worth of CPU time other processes used since start (None if unknown);
        `children`: processes we started since, counted as ours (see own_ticks)."""
        wait = MIN_SAMPLE_S - (time.monotonic() - self.started_s)
        if wait > 0:
            time.sleep(wait)
        machine, own = _machine_ticks(), own_ticks(children)
        if self.machine is None or machine is None or self.own is None or own is None:
            return None
        elapsed = machine[1] - self.machine[1]
        if elapsed <= 0:
            return None
        others = max(0, machine[0] - self.machine[0] - (own - self.own))
        return others / elapsed * (os.cpu_count() or 1)

    def free_cores(self, children: Iterable[int] = ()) -> int:
        """Cores nothing else used since start, at least 1 (all of them if unknown)."""
        cores = os.cpu_count() or 1
        busy = self.busy_cores(children)
        if busy is None:
            return cores
        return max(1, min(cores, round(cores - busy)))


def busy_cores(sample_s: float = SAMPLE_S) -> float | None:
    """Cores' worth of CPU time other processes used over the next `sample_s` seconds."""
    sample = CoreSample.start()
    time.sleep(sample_s)
    return sample.busy_cores()


def free_cores(sample_s: float = SAMPLE_S) -> int:
    """Cores nothing else is using now, at least 1 (all of them where it cannot be measured)."""
    sample = CoreSample.start()
    time.sleep(sample_s)
    return sample.free_cores()


class SamplingThreads:
    """Torch threads for sampling beside a background job of our own (the picture encode):
    one of the free cores is left to the job while it runs, all of them once it has ended,
    which is checked between network calls (`on_progress`, the sampler's progress callback).

    On 2 cores, composing the 30 s VP8 clip with one thread while the encode had the other
    core took 4.6-4.9 s against 5.6-5.8 s with two threads that starved the encode until the
    mux (warm composes, 2026-12-01; docs/pipeline.md): each job wastes less on threads that
    cannot run at once.
    """

    def __init__(self, free: int, job_running: Callable[[], bool] | None = None) -> None:
        self.free = max(1, free)
        self._job_running = job_running
        self._sharing = False

    def start(self) -> None:
        """Set the count for the first network call."""
        import torch

        self._sharing = self.free > 1 and self._job_running is not None and self._job_running()
        torch.set_num_threads(self.free - 1 if self._sharing else self.free)

    def on_progress(self, done: int, total: int) -> None:
        """Give the job's core back to sampling once the job has ended."""
        if self._sharing and self._job_running is not None and not self._job_running():
            self.finish()

    def finish(self) -> None:
        """All free cores again (the next compose's analysis starts with them)."""
        import torch

        self._sharing = False
        torch.set_num_threads(self.free)


def parse_threads(text: str) -> int | str:
    """A --threads value: 'auto' or a whole number (0 = torch's own default)."""
    if text.strip().lower() == AUTO:
        return AUTO
    value = int(text)
    if value < 0:
        raise ValueError("threads must be 'auto', 0 (torch's default) or more")
    return value
