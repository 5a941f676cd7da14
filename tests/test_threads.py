"""The thread rule: free cores measured, not assumed; the CLI and the Composer take 'auto'."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from diffbgm import threads as threads_module
from diffbgm.threads import (
    CoreSample,
    SamplingThreads,
    busy_cores,
    free_cores,
    own_ticks,
    parse_threads,
)


def test_free_cores_is_between_one_and_all() -> None:
    assert 1 <= free_cores(0.05) <= (os.cpu_count() or 1)


def _spinner(detached: bool) -> int:
    """pid of a process that keeps a core busy: our child, or (detached) one that is not ours,
    as another program on the machine would be (its shell parent exits at once)."""
    spin = f"{sys.executable} -c 'while True: pass'"
    if not detached:
        return subprocess.Popen(["sh", "-c", f"exec {spin}"]).pid
    out = subprocess.run(["sh", "-c", f"{spin} >/dev/null 2>&1 & echo $!"], capture_output=True)
    return int(out.stdout)


def _stop(pid: int, child: bool) -> None:
    os.kill(pid, signal.SIGKILL)
    if child:
        os.waitpid(pid, 0)


def test_a_busy_process_takes_a_core_away() -> None:
    cores = os.cpu_count() or 1
    spinner = _spinner(detached=True)
    try:
        time.sleep(0.3)
        busy = busy_cores(0.3)
        assert busy is not None and busy >= 0.7  # the spinner alone fills most of a core
        assert free_cores(0.3) <= max(1, cores - 1)
    finally:
        _stop(spinner, child=False)


def _ticks(pids: list[int | str]) -> int:
    return sum(threads_module._process_ticks(pid) for pid in pids)


def _cores(ticks: int, seconds: float) -> float:
    return ticks / os.sysconf("SC_CLK_TCK") / seconds


def test_our_own_work_is_not_counted_as_load() -> None:
    """The sample runs while the compose works (its threads, its encoder child): that time is
    ours, so it must not take cores away from the compose. Judged against the machine's whole
    busy time over the same sample, so other jobs on a shared machine move both alike."""
    spinner = _spinner(detached=False)
    try:
        time.sleep(0.2)
        ours: list[int | str] = ["self", spinner]
        before, started = _ticks(ours), time.monotonic()
        sample = CoreSample.start()
        while time.monotonic() < started + 0.6:  # this process busy too
            pass
        busy = sample.busy_cores()
        machine = threads_module._machine_ticks()
        used = _cores(_ticks(ours) - before, time.monotonic() - started)
        assert own_ticks() is not None and busy is not None
        assert machine is not None and sample.machine is not None
        everyone = (machine[0] - sample.machine[0]) / (machine[1] - sample.machine[1])
        everyone *= os.cpu_count() or 1
        assert used >= 0.5  # our two busy processes ran
        assert everyone - busy >= 0.7 * used  # and nearly all of their time was taken out
    finally:
        _stop(spinner, child=True)


def test_a_named_child_counts_as_ours_where_the_kernel_lists_no_children(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Judged by what the spinner itself used over the sample, so other jobs on a shared
    machine (which add to both readings) cannot fail it."""
    monkeypatch.setattr(threads_module, "_children", lambda pid: [])  # no CONFIG_PROC_CHILDREN
    spinner = _spinner(detached=False)
    try:
        time.sleep(0.2)
        before, started = _ticks([spinner]), time.monotonic()
        sample = CoreSample.start()
        time.sleep(0.6)
        unnamed = sample.busy_cores()
        named = sample.busy_cores([spinner])
        used = _cores(_ticks([spinner]) - before, time.monotonic() - started)
        assert unnamed is not None and named is not None
        assert used >= 0.3  # the spinner ran
        assert unnamed - named >= 0.7 * used  # counted as others' unnamed, as ours named
    finally:
        _stop(spinner, child=True)


def test_sampling_leaves_the_encoder_a_core_until_it_ends() -> None:
    import torch

    before = torch.get_num_threads()
    running = [True]
    try:
        threads = SamplingThreads(2, lambda: running[0])
        threads.start()
        assert torch.get_num_threads() == 1
        threads.on_progress(1, 10)
        assert torch.get_num_threads() == 1
        running[0] = False
        threads.on_progress(2, 10)
        assert torch.get_num_threads() == 2
        SamplingThreads(1, lambda: True).start()  # one free core: nothing to leave
        assert torch.get_num_threads() == 1
        SamplingThreads(2, None).start()  # no job (the video is copied)
        assert torch.get_num_threads() == 2
        threads = SamplingThreads(2, lambda: True)
        threads.start()
        threads.finish()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_parse_threads() -> None:
    assert parse_threads("auto") == "auto" and parse_threads(" AUTO ") == "auto"
    assert parse_threads("2") == 2 and parse_threads("0") == 0
    with pytest.raises(ValueError):
        parse_threads("-1")


def test_composer_takes_auto_and_refuses_nonsense() -> None:
    from pathlib import Path

    from diffbgm.errors import DiffBGMError
    from diffbgm.pipeline import Composer

    tiny = Path(__file__).resolve().parents[1] / "checkpoints" / "diffbgm-tiny"
    assert Composer.from_pretrained(tiny).auto_threads
    assert not Composer.from_pretrained(tiny, threads=1).auto_threads
    with pytest.raises(DiffBGMError, match="auto"):
        Composer.from_pretrained(tiny, threads="many")
