"""Patches per second on two CPU cores: FrameCache versus decoding PNGs for every sample.

Same data (the embedded sample set's 16 frames of 1280x720), same stage dataset, patch size,
DataLoader and batch size both ways; only ``cache_dir`` differs. Prints both rates and their
ratio and writes them to outputs/bench/cache.json.

    python -m bench.bench_cache [--stage unet] [--patch-size 128] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from helpers.data import GoproPairs, build_dataset, build_sample_set
from helpers.safe_writes import atomic_path


def patches_per_second(dataset, batch_size: int, workers: int, min_patches: int) -> float:
    """Patches per second over at least ``min_patches`` (whole epochs, after one warm-up batch)."""
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    next(iter(loader))  # start-up (worker processes, first page faults) is not throughput
    count, epoch, start = 0, 0, time.perf_counter()
    while count < min_patches:
        dataset.set_epoch(epoch)
        for inputs, _ in loader:
            count += inputs.shape[0]
        epoch += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="unet", choices=["dncnn", "unet", "edsr"])
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/cache.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)

    root = build_sample_set()
    pairs = list(GoproPairs(root, "train")) + list(GoproPairs(root, "test"))
    options = {"patch_size": args.patch_size, "augment": True, "seed": 0}
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        cached = build_dataset(args.stage, pairs, cache_dir=cache_dir, samples_per_frame=64, **options)
        build_seconds = time.perf_counter() - start
        cached_rate = patches_per_second(cached, args.batch_size, args.workers, min_patches=4096)
    decoded = build_dataset(args.stage, pairs, samples_per_frame=4, **options)
    decoded_rate = patches_per_second(decoded, args.batch_size, args.workers, min_patches=128)

    result = {
        "stage": args.stage,
        "frames": len(pairs),
        "frame_size": "1280x720 PNG",
        "patch_size": args.patch_size,
        "batch_size": args.batch_size,
        "num_workers": args.workers,
        "torch_threads": torch.get_num_threads(),
        "cache_build_seconds": round(build_seconds, 2),
        "cached_patches_per_second": round(cached_rate, 1),
        "decoded_patches_per_second": round(decoded_rate, 1),
        "ratio": round(cached_rate / decoded_rate, 1),
        "machine": platform.platform(),
    }
    print(f"{args.stage}, {args.patch_size} px patches, {args.workers} workers, {len(pairs)} frames of 1280x720:")
    print(f"  decoding PNGs per sample: {decoded_rate:8.1f} patches/s")
    print(f"  FrameCache (memmap):      {cached_rate:8.1f} patches/s  (built once in {build_seconds:.1f} s)")
    print(f"  ratio: {result['ratio']}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as temp:
        temp.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
