"""Training batches built ahead of the step that uses them, optionally in worker processes.

A step's batches depend only on (seed, step, shard) (see trainer/train.py), so workers may
build future steps in any order and the run still sees exactly the numbers the loop would
have built itself. On a GPU this is what keeps the device busy: a small model's step takes
milliseconds there, while one core of this CPU takes about 0.16 s to cut, transpose and
collate 256 windows.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Generator
from typing import Literal

import numpy as np
import torch

from diffbgm.model.conditions import Conditions
from trainer.sources import DataBundle

LOG = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, Conditions]  # roll (B, 2, T, P), conditions of B windows
ShardBatches = list[tuple[int, Batch]]  # (shard id, its batch) of one step, in shard order


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from integers, stable across processes and Python runs."""
    return int(np.random.SeedSequence([abs(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def global_batch_indices(step: int, global_batch: int, n_items: int, seed: int) -> np.ndarray:
    """Dataset indices of step `step`'s global batch: epochs of seeded permutations, in order."""
    first = step * global_batch
    positions = np.arange(first, first + global_batch)
    epochs = positions // n_items
    out = np.empty(global_batch, dtype=np.int64)
    for epoch in np.unique(epochs):
        perm = np.random.default_rng([seed, int(epoch)]).permutation(n_items)
        chosen = epochs == epoch
        out[chosen] = perm[positions[chosen] % n_items]
    return out


def load_batch(data: DataBundle, split: Literal["train", "valid"], indices: np.ndarray) -> Batch:
    source = data.train if split == "train" else data.valid
    return data.collate([source[int(i)] for i in indices])


class StepBatches(torch.utils.data.Dataset[ShardBatches]):
    """Item `step`: this rank's micro-batches of that optimizer step, augmentation seeded
    by (seed, step, shard) exactly as the loop seeds them."""

    def __init__(
        self, data: DataBundle, seed: int, micro_batch: int, accum: int, rank: int, world: int
    ) -> None:
        self.data = data
        self.seed = seed
        self.micro_batch = micro_batch
        self.accum = accum
        self.rank = rank
        self.world = world

    def __len__(self) -> int:  # any step may be asked for: the sampler says which
        return 2**62

    def shards(self, step: int) -> list[tuple[int, np.ndarray]]:
        """(shard id, dataset indices) of this rank's micro-batches at `step`."""
        n_shards = self.world * self.accum
        indices = global_batch_indices(
            step, n_shards * self.micro_batch, len(self.data.train), self.seed
        )
        shards = []
        for micro in range(self.accum):
            shard = self.rank * self.accum + micro
            shards.append(
                (shard, indices[shard * self.micro_batch : (shard + 1) * self.micro_batch])
            )
        return shards

    def __getitem__(self, step: int) -> ShardBatches:
        batches = []
        for shard, indices in self.shards(step):
            self.data.reseed(derived_seed(self.seed, step, shard))
            batches.append((shard, load_batch(self.data, "train", indices)))
        return batches


def _as_built(item: ShardBatches) -> ShardBatches:
    return item  # the DataLoader's default conversion would not know Conditions


def batch_bytes(item: ShardBatches) -> int:
    """Bytes of the tensors of one step's batches (what a worker hands over in shared memory)."""
    total = 0
    for _, (roll, cond) in item:
        total += roll.element_size() * roll.nelement()
        for value in cond._values().values():
            if value is not None:
                total += value.element_size() * value.nelement()
    return total


def shared_memory_free(path: str = "/dev/shm") -> int | None:
    """Free bytes of the shared-memory area the workers' tensors travel through (None: none
    found, e.g. not Linux)."""
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


# a DataLoader worker keeps up to this many steps' batches in flight
PREFETCH_STEPS = 2
# no batch from the workers for this long counts as a failure (the loop builds on): a dead
# worker is noticed only then, and so is a hand-over lost to a full shared-memory area
WORKER_TIMEOUT_S = 30.0


def default_workers(device: torch.device) -> int:
    """Workers when none are asked for: on a GPU min(8, cores - 1), shared by the processes of
    this machine (torchrun's LOCAL_WORLD_SIZE); on a CPU none, where they would take the
    training's cores."""
    if device.type != "cuda":
        return 0
    ranks_here = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    return min(8, max((os.cpu_count() or 1) - 1, 0) // ranks_here)


def affordable_workers(wanted: int, one_step_bytes: int, free_bytes: int | None) -> int:
    """At most `wanted` workers whose batches in flight fill at most half of the shared memory
    that is free: a Docker default of 64 MB holds no 256-window batch (about 17 MB) per
    worker, and a full area makes a worker's hand-over fail without a word."""
    if free_bytes is None or one_step_bytes <= 0:
        return wanted
    return max(0, min(wanted, free_bytes // 2 // (PREFETCH_STEPS * one_step_bytes)))


def step_batches(
    batches: StepBatches,
    first_step: int,
    last_step: int,
    workers: int,
    timeout_s: float = WORKER_TIMEOUT_S,
) -> Generator[ShardBatches, None, None]:
    """The batches of steps first_step .. last_step - 1, in order.

    workers > 0 builds them in up to that many processes, a few steps ahead, as many as the
    free shared memory holds. If the workers fail (one dies, or nothing comes for timeout_s),
    the rest are built here, so a run on a lent machine is slower rather than lost."""
    if first_step >= last_step:
        return
    first = batches[first_step]  # built here: its size says how many workers fit
    yield first
    done = first_step + 1
    workers = affordable_workers(workers, batch_bytes(first), shared_memory_free())
    if workers > 0 and done < last_step:
        try:
            for item in _from_workers(batches, done, last_step, workers, timeout_s):
                yield item
                done += 1
        except (RuntimeError, OSError) as exc:  # a worker died, hung or could not start
            LOG.warning("batch workers failed (%s); the loop builds from step %d on", exc, done)
    yield from (batches[step] for step in range(done, last_step))


def _from_workers(
    batches: StepBatches, first_step: int, last_step: int, workers: int, timeout_s: float
) -> Generator[ShardBatches, None, None]:
    loader = torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        sampler=range(first_step, last_step),
        num_workers=workers,
        prefetch_factor=PREFETCH_STEPS,
        collate_fn=_as_built,
        timeout=timeout_s,
        # the data bundle holds lambdas: fork, whatever a later Python's default start method
        multiprocessing_context="fork",
    )
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGCHLD) if main_thread else None
    iterator = iter(loader)
    if main_thread:
        # torch's SIGCHLD handler raises wherever the main thread is when a worker dies (in
        # the middle of a checkpoint, say); without it the loader reports the death in next()
        signal.signal(signal.SIGCHLD, previous if previous is not None else signal.SIG_DFL)
    try:
        yield from iterator
    finally:
        # the workers and their shared memory end here, not whenever the iterator is collected
        # (an exception's traceback keeps it alive)
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
