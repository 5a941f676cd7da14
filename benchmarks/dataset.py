"""Training-window loading speed: milliseconds per item of Pop909Windows (with augmentation).

    python benchmarks/dataset.py [--data data_cache/pop909] [--items 2000]

Reads the POP909 cache built by `python -m trainer cache`; prints the mean time per item
and per collated batch of 16, so a slow data path shows up before a training run does.
"""

from __future__ import annotations

import argparse
import time

from diffbgm.music.roll import RollSpec
from trainer.dataset import Pop909Windows, collate_windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data_cache/pop909")
    parser.add_argument("--items", type=int, default=2000)
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


if __name__ == "__main__":
    main()
