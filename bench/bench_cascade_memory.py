"""Memory of one cascade fine-tuning step (``helpers.cascade``), with and without per-stage gradient checkpointing.

One step is what ``train cascade`` does: forward through DnCNN -> UNet -> EDSR -> unsharp mask, the cascade
loss with its auxiliary terms, backward, Adam step; default-size networks, random weights (memory does not
depend on them), float32. Each configuration runs in a fresh subprocess, which reports its peak resident
set size (Linux VmHWM) and its resident size before the step, and the activation bytes autograd kept
(``helpers.profiling.saved_activation_bytes``: device-independent).

The CUDA float16 estimate: activation bytes kept under 16-bit autocast (bfloat16 on this CPU: two bytes a
value like float16), counted on forward passes at two small sizes and extrapolated linearly in the pixel
count (a 16-bit training step on a CPU without fast 16-bit kernels takes many minutes); plus the fp32
weights, gradients and Adam moments and the 16-bit weight copies autocast makes, and, with checkpointing,
the largest single stage, which the backward pass recomputes at once. The CUDA context and cuDNN
workspaces come on top.

    python -m bench.bench_cascade_memory [--high 128] [--batch 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from helpers.cascade import Cascade, build_cascade_loss
from helpers.models import build_model
from helpers.pipeline import NETWORK_STAGES
from helpers.profiling import measure_in_subprocess, saved_activation_bytes

MB = 2**20
CUDA_BYTES = 16 * 2**30


def _resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _inputs(batch: int, high: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    low = high // 2
    targets = {"final": torch.rand(batch, 3, high, high), "blurry_lr": torch.rand(batch, 3, low, low), "sharp_lr": torch.rand(batch, 3, low, low)}
    return torch.rand(batch, 3, low, low), targets


def _loss_of(cascade: Cascade, inputs: torch.Tensor, targets: dict[str, torch.Tensor], autocast: bool) -> torch.Tensor:
    """The trainer's forward: the cascade (under bfloat16 autocast when asked), the loss on float32 outputs."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        outputs = cascade(inputs)
    return build_cascade_loss()({key: value.float() for key, value in outputs.items()}, targets)


def measure(checkpointing: bool, batch: int, high: int) -> dict:
    """One float32 training step in this process: activation bytes kept, resident size before it (peak RSS is added)."""
    torch.manual_seed(0)
    cascade = Cascade({stage: build_model(stage) for stage in NETWORK_STAGES}, checkpointing=checkpointing)
    optimizer = torch.optim.Adam(cascade.parameters(), lr=1e-5)
    inputs, targets = _inputs(batch, high)
    before = _resident_bytes()
    saved, value = saved_activation_bytes(lambda: _loss_of(cascade, inputs, targets, autocast=False))
    value.backward()
    optimizer.step()
    return {"saved_bytes": saved, "rss_before_step": before, "parameters": sum(p.numel() for p in cascade.parameters())}


def saved_16bit(batch: int, high: int) -> dict[str, int]:
    """Activation bytes under 16-bit autocast, forward only: the cascade with and without checkpointing, each stage."""
    torch.manual_seed(0)
    networks = {stage: build_model(stage).to(memory_format=torch.channels_last) for stage in NETWORK_STAGES}
    inputs, targets = _inputs(batch, high)
    kept = {}
    for checkpointing in (False, True):
        cascade = Cascade(networks, checkpointing=checkpointing)
        key = f"cascade, checkpointing {'on' if checkpointing else 'off'}"
        kept[key], _ = saved_activation_bytes(lambda: _loss_of(cascade, inputs, targets, autocast=True))
    for stage, network in networks.items():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            kept[stage], _ = saved_activation_bytes(lambda: network(inputs))
    return kept


def extrapolated_16bit(batch: int, high: int, small: tuple[int, int] = (80, 128)) -> dict[str, float]:
    """``saved_16bit`` at ``high`` from two smaller sizes: bytes = constant (weight copies) + per-pixel part."""
    first, second = (saved_16bit(batch, size) for size in small)
    slope = {key: (second[key] - first[key]) / (small[1] ** 2 - small[0] ** 2) for key in first}
    return {key: first[key] + slope[key] * (high**2 - small[0] ** 2) for key in first}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--high", type=int, default=128, help="high-resolution patch side (the input is half)")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"cascade training step, {args.high}x{args.high} high-res patches, batch {args.batch}, CPU", flush=True)
    print("| checkpointing | activations kept (MB) | peak RSS (MB) | RSS before the step (MB) |")
    print("|---|---:|---:|---:|")
    results = {}
    for checkpointing in (False, True):
        result = measure_in_subprocess(
            "bench.bench_cascade_memory:measure", checkpointing=checkpointing, batch=args.batch, high=args.high
        )
        results[checkpointing] = result
        print(f"| {'on' if checkpointing else 'off'} | {result['saved_bytes'] / MB:.0f} | "
              f"{result['peak_rss_bytes'] / MB:.0f} | {result['rss_before_step'] / MB:.0f} |", flush=True)

    parameters = results[False]["parameters"]
    fixed = 16 * parameters + 2 * parameters  # fp32 weights, gradients, two Adam moments; 16-bit autocast copies
    kept = extrapolated_16bit(args.batch, args.high)
    print("\n16-bit autocast, activations kept (MB): " + ", ".join(f"{key} {value / MB:.0f}" for key, value in kept.items()))
    largest_stage = max(kept[stage] for stage in NETWORK_STAGES)
    print(f"\nCUDA float16 estimate ({args.batch} image(s) of {args.high}x{args.high}; weights, gradients, Adam and "
          f"16-bit copies {fixed / MB:.0f} MB; CUDA context and cuDNN workspace not included):")
    for checkpointing in (False, True):
        per_batch = kept[f"cascade, checkpointing {'on' if checkpointing else 'off'}"] + (largest_stage if checkpointing else 0)
        fits = int((0.9 * CUDA_BYTES - fixed) // (per_batch / args.batch))
        print(f"  checkpointing {'on ' if checkpointing else 'off'}: {(fixed + per_batch) / MB:.0f} MB; "
              f"a 16 GB GPU (90% usable) fits a batch of about {fits}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
