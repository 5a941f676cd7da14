"""Worker processes that die with the process that started them.

A `ProcessPoolExecutor` worker waits on a queue whose write end it holds itself, so when its
parent is killed (Ctrl-C in another terminal, `kill`, a CI time-out) it never sees the end of
that queue: it finishes the task in hand and then idles for ever, holding a loaded model
(about 380 MB for `trainer evaluate`) and, until then, a core. Each worker here watches its
parent and exits as soon as the parent is gone.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

PARENT_POLL_S = 0.5


def _exit_when_orphaned(parent_pid: int, poll_s: float) -> None:
    # A dead parent's children are handed to init (or a subreaper): the parent id changes.
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os._exit(1)  # no clean-up: whatever the task was writing belongs to a dead run


def die_with_parent(parent_pid: int, poll_s: float = PARENT_POLL_S) -> None:
    """Pool initializer: start a daemon thread that ends this worker once `parent_pid` is gone.

    A thread rather than Linux's PR_SET_PDEATHSIG, so it works on macOS too, and it fires
    whichever thread of the parent made the pool.
    """
    if os.getppid() != parent_pid:  # the parent died while this worker was starting
        os._exit(1)
    watcher = threading.Thread(
        target=_exit_when_orphaned, args=(parent_pid, poll_s), name="parent-watch", daemon=True
    )
    watcher.start()


def worker_pool(workers: int, start_method: str = "spawn") -> ProcessPoolExecutor:
    """A process pool whose workers exit when this process dies.

    spawn by default: a fork would copy torch's thread pools half-initialised.
    """
    context = multiprocessing.get_context(start_method)
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )
