"""Training batches built ahead of the step that uses them, optionally in worker processes.

A step's batches depend only on (seed, step, shard) (see trainer/train.py), so workers may
build future steps in any order and the run still sees exactly the numbers the loop would
have built itself. On a GPU this is what keeps the device busy: a small model's step takes
milliseconds there, while one core of this CPU takes about 0.16 s to cut, transpose and
collate 256 windows.
"""

from __future__ import annotations

import logging
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


def step_batches(
    batches: StepBatches, first_step: int, last_step: int, workers: int
) -> Generator[ShardBatches, None, None]:
    """The batches of steps first_step .. last_step - 1, in order.

    workers > 0 builds them in that many processes, a few steps ahead. If the workers fail
    (a shared-memory area too small for the tensors, say) the rest are built here, so a run
    on a lent machine is slower rather than lost."""
    steps = range(first_step, last_step)
    if workers <= 0:
        yield from (batches[step] for step in steps)
        return
    loader = torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        sampler=steps,
        num_workers=workers,
        prefetch_factor=2,
        collate_fn=_as_built,
    )
    done = first_step
    try:
        for item in loader:
            yield item
            done += 1
    except RuntimeError as exc:  # a worker died; the steps it owed are built here
        LOG.warning(
            "batch workers failed (%s); building batches in the loop from step %d", exc, done
        )
        yield from (batches[step] for step in range(done, last_step))
