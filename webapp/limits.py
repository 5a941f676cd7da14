"""Limits that protect the app from its clients: the compose queue and admin-token guessing.

Both are shared by every request thread, so each keeps its state behind one lock. Neither
ever sleeps on behalf of a refused client: a refusal is immediate, with a message that says
how long to wait, so no server thread is held by someone being turned away.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from diffbgm.errors import DiffBGMError

Clock = Callable[[], float]


class BusyError(DiffBGMError):
    """The app is too busy (or this client has asked too often); try again later."""


@dataclass(frozen=True)
class Ticket:
    """One admitted compose: its place in line and whose it is."""

    number: int
    client: str


class ComposeGate:
    """The compose queue: a bounded line of composes, at most `per_client` of them from one
    client, of which `running` at a time hold the model.

    Composes used to wait in Gradio's one queue, where a crowd of them refused everything else
    ("Queue is full"). Here a compose is admitted at once or refused at once with a reason;
    an admitted one waits for its turn in arrival order.
    """

    def __init__(self, capacity: int, per_client: int, running: int = 1) -> None:
        self.capacity = capacity
        self.per_client = per_client
        self.running = running
        self._cond = threading.Condition()
        self._numbers = itertools.count()
        self._waiting: deque[Ticket] = deque()
        self._active: set[Ticket] = set()
        self._per_client: Counter[str] = Counter()

    def check_client(self, client: str) -> None:
        """BusyError when `client` already has `per_client` composes in line.

        Cheap, so a handler calls it before any work on the upload: a client flooding the
        app is turned away before it costs a probe.
        """
        with self._cond:
            self._check_client(client)

    def _check_client(self, client: str) -> None:
        if self._per_client[client] >= self.per_client:
            raise BusyError(
                f"You already have {self._per_client[client]} compose(s) waiting or running "
                f"(the limit is {self.per_client} per person); wait for them to finish."
            )

    def admit(self, client: str) -> Ticket:
        """A place in line for `client`, or BusyError when the line or the client is full."""
        with self._cond:
            self._check_client(client)
            if len(self._waiting) + len(self._active) >= self.capacity:
                raise BusyError(
                    f"The compose queue is full ({self.capacity} pieces waiting or being "
                    "composed); please try again in a few minutes."
                )
            ticket = Ticket(next(self._numbers), client)
            self._waiting.append(ticket)
            self._per_client[client] += 1
            return ticket

    def wait_turn(
        self,
        ticket: Ticket,
        on_wait: Callable[[int], None] | None = None,
        poll_s: float = 0.5,
    ) -> None:
        """Block until `ticket` is first in line and a running slot is free, then take it.

        `on_wait(ahead)` is called now and then while waiting (e.g. to update a progress bar).
        """
        while True:
            with self._cond:
                if self._waiting[0] == ticket and len(self._active) < self.running:
                    self._waiting.popleft()
                    self._active.add(ticket)
                    return
                ahead = sum(1 for t in self._waiting if t.number < ticket.number)
                ahead += len(self._active)
                self._cond.wait(poll_s)
            if on_wait is not None:
                on_wait(ahead)

    def release(self, ticket: Ticket) -> None:
        """Leave the line (finished, failed or given up); wake the next in line."""
        with self._cond:
            if ticket in self._active:
                self._active.discard(ticket)
            else:
                try:
                    self._waiting.remove(ticket)
                except ValueError:
                    return
            self._per_client[ticket.client] -= 1
            if self._per_client[ticket.client] <= 0:
                del self._per_client[ticket.client]
            self._cond.notify_all()

    @contextmanager
    def place(self, client: str) -> Iterator[Ticket]:
        """Admit `client` (or refuse), and release the place however the block ends."""
        ticket = self.admit(client)
        try:
            yield ticket
        finally:
            self.release(ticket)

    def __len__(self) -> int:
        with self._cond:
            return len(self._waiting) + len(self._active)


class AdminThrottle:
    """Slows down guessing of the admin token.

    Per client: `free_failures` wrong tokens are free; each one after that locks the client out
    for twice as long as the last (1 s, 2 s, 4 s ... up to `max_lockout_s`). For everyone
    together: more than `global_per_min` wrong tokens within a minute lock every client out
    until the minute has passed, so many addresses do not multiply the guessing rate. While
    locked out, even the right token is refused (else the lockout would tell a guess apart).
    A right token clears the client's record.
    """

    def __init__(
        self,
        free_failures: int = 3,
        max_lockout_s: float = 300.0,
        global_per_min: int = 30,
        clock: Clock = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.max_lockout_s = max_lockout_s
        self.global_per_min = global_per_min
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}
        self._recent: deque[float] = deque()

    def check(self, client: str) -> None:
        """BusyError when `client` (or everyone) must wait before trying a token again."""
        with self._lock:
            now = self._clock()
            while self._recent and now - self._recent[0] >= 60.0:
                self._recent.popleft()
            wait_s = self._locked_until.get(client, 0.0) - now
            if len(self._recent) >= self.global_per_min:
                wait_s = max(wait_s, 60.0 - (now - self._recent[0]))
        if wait_s > 0:
            raise BusyError(f"Too many wrong admin tokens; try again in {max(1, round(wait_s))} s.")

    def failed(self, client: str) -> None:
        """Record a wrong token from `client`."""
        with self._lock:
            now = self._clock()
            self._recent.append(now)
            count = self._failures.get(client, 0) + 1
            self._failures[client] = count
            if count > self.free_failures:
                lockout = min(2.0 ** (count - self.free_failures - 1), self.max_lockout_s)
                self._locked_until[client] = now + lockout
            self._forget_old(now)

    def succeeded(self, client: str) -> None:
        """The right token: the client starts afresh."""
        with self._lock:
            self._failures.pop(client, None)
            self._locked_until.pop(client, None)

    def _forget_old(self, now: float) -> None:
        """Past 10,000 clients, drop those not locked out now, so the table stays bounded."""
        if len(self._failures) < 10_000:
            return
        for client in list(self._failures):
            if self._locked_until.get(client, 0.0) <= now:
                self._failures.pop(client, None)
                self._locked_until.pop(client, None)
