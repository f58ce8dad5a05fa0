"""Several processes, one run: the process group ``torchrun`` describes, rank 0 first, sums across ranks."""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..inference import pick_device

__all__ = ["DistributedInfo", "distributed", "main_process_first", "all_reduce_sum", "unwrap"]

# How long the other ranks wait for rank 0 to build the data cache (GOPRO's frames: minutes to an hour on Colab).
CACHE_BUILD_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class DistributedInfo:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@contextlib.contextmanager
def distributed(device_request: str | torch.device = "auto") -> Iterator[tuple[DistributedInfo, torch.device]]:
    """Join the process group ``torchrun`` describes (WORLD_SIZE > 1): nccl on CUDA, gloo on the CPU.

    Yields (info, device); each process uses GPU LOCAL_RANK. Nested use reuses the group, and only
    the outermost call that created it destroys it.
    """
    device = pick_device(device_request)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not dist.is_initialized():
        yield DistributedInfo(), device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield DistributedInfo(dist.get_rank(), dist.get_world_size()), device
    finally:
        if created:
            dist.destroy_process_group()


@contextlib.contextmanager
def main_process_first(info: DistributedInfo) -> Iterator[None]:
    """Rank 0 runs the block (e.g. building a data cache) before the other ranks do.

    The others wait on a gloo group of their own with ``CACHE_BUILD_TIMEOUT``: the default group's
    timeout (NCCL: 10 minutes) is shorter than decoding a dataset into the cache can take.
    """
    if not info.enabled:
        yield
        return
    group = dist.new_group(backend="gloo", timeout=CACHE_BUILD_TIMEOUT)
    try:
        if not info.is_main:
            dist.barrier(group=group)
        yield
        if info.is_main:
            dist.barrier(group=group)
    finally:
        dist.destroy_process_group(group)


def all_reduce_sum(values: torch.Tensor, info: DistributedInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values



def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model

