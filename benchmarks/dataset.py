"""Training-window loading speed: milliseconds per item of Pop909Windows (with augmentation),
and windows a second of whole training steps built by the loop or by worker processes.

    python benchmarks/dataset.py [--data data_cache/pop909] [--items 2000]
        [--batch 256] [--steps 16] [--workers 0,2]

Reads the POP909 cache built by `python -m trainer cache`; prints the mean time per item
and per collated batch of 16, so a slow data path shows up before a training run does; then
the training's own batches (trainer.batches.step_batches, as `trainer train --data-workers
N` builds them) for each worker count.
"""

from __future__ import annotations

import argparse
import time

from diffbgm.music.roll import RollSpec
from trainer.batches import StepBatches, step_batches
from trainer.dataset import Pop909Windows, collate_windows
from trainer.sources import load_data
from trainer.train import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256, help="windows per training step")
    parser.add_argument("--steps", type=int, default=16, help="training steps to build")
    parser.add_argument("--workers", default="0,2", help="worker counts to compare")
    args = parser.parse_args()
    spec = RollSpec()
    data = Pop909Windows(args.data, "train", spec)
    data[0]  # first access opens the cache
    started = time.perf_counter()
    items = [data[i % len(data)] for i in range(args.items)]
    per_item = (time.perf_counter() - started) / args.items
    started = time.perf_counter()
    batches = [collate_windows(items[i : i + 16], spec) for i in range(0, len(items) - 15, 16)]
    per_batch = (time.perf_counter() - started) / max(len(batches), 1)
    print(f"{len(data)} training windows; {per_item * 1000:.2f} ms per item, "
          f"{per_batch * 1000:.2f} ms per collated batch of 16")  # fmt: skip
    bundle = load_data(TrainConfig(data=args.data))
    steps = StepBatches(bundle, seed=0, micro_batch=args.batch, accum=1, rank=0, world=1)
    for workers in (int(n) for n in args.workers.split(",")):
        started = time.perf_counter()
        built = sum(1 for _ in step_batches(steps, 0, args.steps, workers))
        seconds = time.perf_counter() - started
        print(f"workers {workers}: {built} steps of {args.batch} windows in {seconds:.2f} s, "
              f"{built * args.batch / seconds:.0f} windows/s")  # fmt: skip


if __name__ == "__main__":
    main()
