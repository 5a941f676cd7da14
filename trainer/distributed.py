"""Process-group set-up for `torchrun`; a plain single process when not launched by it.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; gloo is used on the CPU, NCCL on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def pick_device(requested: str, local_rank: int) -> torch.device:
    """'auto' -> this rank's GPU when CUDA is present, else the CPU; otherwise `requested`."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return torch.device(requested)


def init_distributed(requested_device: str) -> DistInfo:
    """Join the process group torchrun created (if any) and choose this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def mean_over_ranks(value: float, info: DistInfo) -> float:
    """The mean of a per-rank scalar over all ranks (the value itself when not distributed)."""
    if not info.is_distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / info.world_size


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank if `flag` is true on any rank (so all ranks stop together)."""
    if not info.is_distributed:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.is_distributed:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.is_distributed and dist.is_initialized():
        dist.destroy_process_group()
