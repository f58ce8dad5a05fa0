"""Run by test_train.py under ``torchrun --nproc_per_node=2`` on gloo (no ``test_`` prefix: pytest does not collect it).

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py buffers OUT
    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py slow-cache OUT
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import TensorDataset

from helpers.models import DnCNN
from helpers.training import distributed, fit, main_process_first

DEFAULT_GROUP_TIMEOUT_S = 2  # stands in for NCCL's 10 minutes
CACHE_BUILD_S = 5


def train_and_save_buffers(out: Path) -> None:
    """A short DnCNN run (each rank sees other batches); every rank saves its BatchNorm buffers afterwards."""
    torch.manual_seed(0)
    images = torch.rand(64, 3, 24, 24)
    clean = (images * 0.8 + 0.1).clamp(0, 1)
    data = TensorDataset(((clean + 0.1 * torch.randn_like(clean)).clamp(0, 1)), clean)
    model = DnCNN(depth=4, channels=8)
    fit(model, data, data, config={"loss": {"weights": {"mse": 1.0}}}, checkpoint_dir=out, epochs=1, batch_size=4,
        steps_per_epoch=6, lr=1e-2, device="cpu")
    torch.save(dict(model.named_buffers()), out / f"buffers_rank{os.environ['RANK']}.pt")  # fit has left the group


def build_cache_slowly(out: Path) -> None:
    """Rank 0 'builds a cache' for longer than the process group's timeout while rank 1 waits for it."""
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=DEFAULT_GROUP_TIMEOUT_S))
    with distributed("cpu") as (info, _):
        with main_process_first(info):
            if info.is_main:
                time.sleep(CACHE_BUILD_S)
        (out / f"done_rank{info.rank}").write_text("ok\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    mode, folder = sys.argv[1], Path(sys.argv[2])
    {"buffers": train_and_save_buffers, "slow-cache": build_cache_slowly}[mode](folder)
