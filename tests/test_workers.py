"""Worker processes of the trainer's pools die with the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from trainer import cache, evaluate, suite

REPO = Path(__file__).resolve().parents[1]

PARENT = textwrap.dedent(
    """
    import os, sys, time
    from trainer.workers import worker_pool

    if __name__ == "__main__":
        pool = worker_pool(2, sys.argv[1])
        busy = pool.submit(time.sleep, 120)  # one worker stays mid-task
        time.sleep(0.5)
        pool.submit(os.getpid).result()  # the other is done and waits for work
        pids = {p.pid for p in pool._processes.values()}
        print(" ".join(str(pid) for pid in sorted(pids)), flush=True)
        time.sleep(120)
    """
)


def _alive(pid: int) -> bool:
    # A child reparented to a PID 1 that does not reap stays a zombie: it counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_pool_workers_exit_when_their_parent_is_killed(tmp_path: Path, start_method: str) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen(
        [sys.executable, str(script), start_method], stdout=subprocess.PIPE, text=True, env=env
    )
    workers: list[int] = []
    try:
        assert parent.stdout is not None
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2, "the parent did not report its two workers"
        assert all(_alive(pid) for pid in workers)
        parent.send_signal(signal.SIGKILL)  # no clean-up in the parent at all
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in workers if _alive(pid)]
        assert not left, f"workers {left} outlived their killed parent"
    finally:
        parent.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_trainers_pools_are_made_by_worker_pool() -> None:
    # evaluate's generation and MusDr pools, the suite's and the cache's (a multiprocessing.Pool)
    for module in (evaluate, suite):
        source = Path(module.__file__ or "").read_text()
        assert "worker_pool(" in source and "ProcessPoolExecutor(" not in source
    assert "die_with_parent" in Path(cache.__file__ or "").read_text()
