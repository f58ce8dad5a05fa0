"""Reproducible runs: seeds, the per-epoch data order, RNG states saved in checkpoints, deterministic kernels.

A resumed run sees the same batches (``EpochSampler`` depends on (seed, epoch) only) and the same
random streams (``rng_state`` / ``set_rng_state``) as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["seed_everything", "deterministic_algorithms", "epoch_seed", "EpochSampler", "rng_state", "set_rng_state"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Inside the block, torch's deterministic kernels and no cuDNN autotuning (both restored after); a no-op if not enabled.

    The CPU is reproducible without it. The networks' CUDA kernels without a deterministic version are avoided
    (the SSIM loss filters its valid region only, without padding; the cascade computes EDSR's bicubic skip's
    gradient as matrix products, ``helpers.cascade``), or add zeros only (the UNet's reflection padding of training
    patches that are multiples of its 2**depth). ``warn_only``: any other such kernel warns instead of stopping a run
    (``python -m bench.gpu_check`` compares resumed UNet and cascade runs with uninterrupted ones on a GPU).
    """
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]



def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for (seed, epoch), well mixed so neighbouring epochs are unrelated."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


class EpochSampler(Sampler[int]):
    """Seeded shuffle per epoch, split across ranks, of any length (whole permutations are chained).

    Hand-written because DistributedSampler cannot draw more samples than the dataset holds, which
    a fixed ``steps_per_epoch`` on a small set needs. The order depends only on (seed, epoch), so
    a resumed run sees the same batches.
    """

    def __init__(self, dataset_size: int, samples_per_rank: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if dataset_size < 1:
            raise ValueError("the training dataset is empty")
        self.dataset_size, self.samples_per_rank = dataset_size, samples_per_rank
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_rank

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        total = self.samples_per_rank * self.world_size
        permutations = [torch.randperm(self.dataset_size, generator=generator) for _ in range(-(-total // self.dataset_size))]
        return iter(torch.cat(permutations)[:total][self.rank :: self.world_size].tolist())


# ----------------------------------------------------------------------------- checkpoint state


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states in weights_only-loadable types."""
    version, python_state, gauss = random.getstate()
    bit_generator, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": {"version": version, "state": list(python_state), "gauss": gauss},
        "numpy": {
            "bit_generator": bit_generator,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state(
        (numpy["bit_generator"], numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"], numpy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])

