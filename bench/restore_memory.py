"""Peak host memory (RSS) of ``python -m helpers restore`` on 2K, 4K and 8K photos: the README's memory table.

Each size is restored in its own process (``python -m helpers restore in.png -o out.png``, CPU) and its peak
resident set size read with ``os.wait4``. Inputs above 1280x720 are tiled automatically (512-pixel tiles), so
device memory stays bounded; what grows with the size is the host's copies of the image: the decoded input,
the float32 input tensor, the float32 result at twice the size and the encoded output.

By default the networks are minimal random ones (DnCNN 3x4, UNet 4x1, EDSR 1x4), because the shipped
weights cost about 4.3 MFLOP per input pixel (141 TFLOP for an 8K photo) on a CPU; their per-tile memory is
measured separately with ``--weights weights --sizes tiny,tiled``. Not part of ``make bench`` (no
``bench_`` prefix): it takes minutes and a lot of memory.

    python -m bench.restore_memory [--sizes tiny,2k,4k,8k] [--weights DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data

# (width, height); "tiled" is the smallest automatically tiled size (six 512-pixel tiles): per-tile memory alone
SIZES = {"tiny": (64, 64), "tiled": (1296, 720), "2k": (2048, 1080), "4k": (3840, 2160), "8k": (7680, 4320)}


def small_weights(folder: Path) -> Path:
    """Random-initialised minimal cascade networks saved as a weights folder: the image buffers, not the networks."""
    import torch

    from helpers.checkpoint import export_weights
    from helpers.models import EDSR, DnCNN, UNet

    torch.manual_seed(0)
    for name, network in {"dncnn": DnCNN(depth=3, channels=4), "unet": UNet(base_channels=4, depth=1),
                          "edsr": EDSR(num_blocks=1, channels=4)}.items():
        export_weights(network, folder / f"{name}.pt")
    return folder


def photo(width: int, height: int) -> np.ndarray:
    """A natural photo (scikit-image's astronaut) resized to width x height, BGR for OpenCV."""
    return cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (width, height), interpolation=cv2.INTER_CUBIC)


def peak_rss(command: list[str]) -> tuple[float, float]:
    """Run ``command``; return (peak RSS in GiB, seconds). Linux reports ru_maxrss in KiB."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read()[-2000:]}")
    return usage.ru_maxrss / 2**20, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.restore_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,2k,4k,8k", help=f"comma-separated subset of {', '.join(SIZES)}")
    parser.add_argument("--weights", default=None, help="weights folder (default: small random networks)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="restore_memory.") as temp:
        folder = Path(temp)
        weights = Path(args.weights) if args.weights else small_weights(folder / "weights")
        print(f"weights: {args.weights or 'minimal random networks'}; CPU, float32, automatic 512-pixel tiles")
        print("| input | pixels | output | peak RSS | RSS per input pixel | time |\n| --- | ---: | --- | ---: | ---: | ---: |")
        for name in args.sizes.split(","):
            width, height = SIZES[name]
            source = folder / f"{name}.png"
            cv2.imwrite(str(source), photo(width, height))
            command = [sys.executable, "-m", "helpers", "restore", str(source), "-o", str(folder / f"{name}_out.png"),
                       "--weights", str(weights), "--device", "cpu", "--fp32", "--overwrite"]
            rss, seconds = peak_rss(command)
            print(f"| {width}x{height} | {width * height / 1e6:.1f} MP | {2 * width}x{2 * height} | {rss:.2f} GiB | "
                  f"{rss * 2**30 / (width * height):.0f} B | {seconds:.0f} s |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
