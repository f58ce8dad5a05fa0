"""Run by test_train.py under ``torchrun --nproc_per_node=2`` on gloo (no ``test_`` prefix: pytest does not collect it).

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py slow-cache OUT
"""

from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path

import torch.distributed as dist
from helpers.train import distributed, main_process_first

DEFAULT_GROUP_TIMEOUT_S = 2  # stands in for NCCL's 10 minutes
CACHE_BUILD_S = 5


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
    {"slow-cache": build_cache_slowly}[mode](folder)
