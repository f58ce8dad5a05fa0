"""Training speed on the CPU: optimiser steps per second of each default-size network, per precision and layout.

One training step is what ``helpers.training`` does: forward (optionally under bfloat16 autocast),
the stage's default loss on float32 predictions, backward, Adam step. Configurations: float32 vs
bfloat16 autocast, default (NCHW) vs channels-last layout. Rounds are interleaved (every
configuration once per round) so all of them see the same machine load; the median over rounds
counts. Random inputs at a fixed batch and patch size (the input side; EDSR's target is 2x).

    python -m bench.bench_train [--batch 8] [--patch 64] [--rounds 1] [--steps 1] [--models dncnn,unet,edsr]

The defaults (one round of one timed step after a warm-up step) keep ``make bench`` within 5 minutes on
a 2-core CPU; raise ``--rounds`` for steadier figures. Writes outputs/bench/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from helpers.inference import cpu_has_native_bfloat16
from helpers.safe_writes import atomic_path
from helpers.losses import build_loss
from helpers.models import build_model
from helpers.recipes import STAGE_DEFAULTS

OUTPUT_PATH = Path("outputs/bench/train.json")
LAYOUTS = ("nchw", "channels_last")


def make_step(name: str, dtype: str, layout: str, batch: int, patch: int):
    """A closure running one training step of ``name`` in the given precision and memory layout."""
    torch.manual_seed(0)
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = build_model(name).to(memory_format=memory_format).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss = build_loss(STAGE_DEFAULTS[name].loss)
    scale = getattr(model, "scale", 1)
    inputs = torch.rand(batch, 3, patch, patch).to(memory_format=memory_format)
    targets = torch.rand(batch, 3, patch * scale, patch * scale)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            predictions = model(inputs)
        value = loss(predictions.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=1, help="timed steps per configuration and round")
    parser.add_argument("--models", default="dncnn,unet,edsr")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="also time bfloat16 autocast (default: only where the CPU has native bfloat16; elsewhere "
                             "it is emulated, 5-9x slower, and would take most of make bench's time)")
    args = parser.parse_args(argv)
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    with_bf16 = cpu_has_native_bfloat16() if args.bf16 is None else args.bf16
    dtypes = ("float32", "bfloat16") if with_bf16 else ("float32",)
    if not with_bf16:
        print("bfloat16 autocast not timed: this CPU has no native bfloat16 (--bf16 times it anyway)")
    configs = [(dtype, layout) for dtype in dtypes for layout in LAYOUTS]

    steps = {(name, dtype, layout): make_step(name, dtype, layout, args.batch, args.patch) for name in models for dtype, layout in configs}
    for step in steps.values():  # warm-up: allocator, oneDNN kernel selection
        step()
    timings: dict[tuple[str, str, str], list[float]] = {key: [] for key in steps}
    for _ in range(args.rounds):
        for key, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            timings[key].append(args.steps / (time.perf_counter() - start))

    rows = []
    for (name, dtype, layout), rates in timings.items():
        rate = statistics.median(rates)
        baseline = statistics.median(timings[name, "float32", "nchw"])
        rows.append({"model": name, "dtype": dtype, "layout": layout, "steps_per_s": rate,
                     "images_per_s": rate * args.batch, "speedup": rate / baseline})
    print(f"training steps/s on the CPU ({torch.get_num_threads()} threads), batch {args.batch}, patch {args.patch}, "
          f"median of {args.rounds} rounds x {args.steps} steps")
    print(f"{'model':6} {'dtype':9} {'layout':14} {'steps/s':>8} {'images/s':>9} {'speed-up':>9}")
    for row in rows:
        print(f"{row['model']:6} {row['dtype']:9} {row['layout']:14} {row['steps_per_s']:8.3f} {row['images_per_s']:9.2f} {row['speedup']:8.2f}x")
    report = {
        "machine": {"processor": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
        "settings": vars(args),
        "results": rows,
    }
    OUTPUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(OUTPUT_PATH) as temp:
        temp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {OUTPUT_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
