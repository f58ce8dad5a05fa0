"""Inference speed of the cascade at a 640x360 input (-> 1280x720): FLOPs, ms/frame, GFLOP/s, peak memory.

Measured in ONE run, interleaved round by round so that every configuration sees the same machine
load (the references are only meaningful that way):

* reference (1), the practical ceiling: one 64->64 3x3 convolution at 640x360 in float32, in the
  fastest memory layout torch offers here (NCHW and NHWC are both timed, the faster one counts);
* reference (2), the naive cascade: the same networks in float32, default layout, eager, under
  ``torch.no_grad`` (not ``inference_mode``), no batch-norm folding;
* the shipped ``helpers.pipeline.Restorer`` (if present), and with ``--full`` the levers of
  ``helpers.inference`` added one at a time from the naive path up to the Restorer's.

FLOPs are counted from the executed layers (``FlopCounterMode``) per stage. Each configuration's
output on a real degraded photo is compared with the naive output (max difference in 1/255 and
PSNR between the two) and with the ground truth (PSNR change). Peak memory: CPU peak RSS of a fresh
subprocess per measurement; CUDA ``max_memory_allocated``. Uses trained weights from weights/ when
all three files are there, else seeded random networks (speed is the same; the quality columns then
only show agreement, not restoration).

    python -m bench.bench_inference [--quick] [--full] [--repeats N] [--device auto|cpu|cuda]

``--full`` adds the intermediate levers (inference_mode, channels_last), the naive and default paths'
peak memory, and the tiling measurements: tiled versus whole 1280x720 input, and peak memory of a
3840x2160 input restored in tiles (slow on a CPU: minutes). Without it the run fits ``make bench``'s
5 minutes beside the other scripts. Writes outputs/bench/inference.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from functools import partial
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from helpers.degrade import add_gaussian_noise, downscale, motion_blur, resize_to_frame
from helpers.inference import autocast_for, inference_dtype, pick_device, prepare_for_inference, prepare_input
from helpers.io import float_image, image_to_tensor, uint8_image
from helpers.safe_writes import atomic_path
from helpers.metrics import psnr
from helpers.models import DnCNN, EDSR, UNet, UnsharpMask
from helpers.profiling import measure_in_subprocess, peak_memory_bytes, reset_peak_memory, synchronize

INPUT_HEIGHT, INPUT_WIDTH = 360, 640
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
OUTPUT_PATH = Path("outputs/bench/inference.json")
STAGE_NAMES = ("dncnn", "unet", "edsr", "unsharp")
RESTORER = "Restorer (helpers.pipeline)"
SINGLE_CONV = "reference (1): single conv"


@dataclass(frozen=True)
class Config:
    """One way of running the cascade; the ladder adds one lever per rung."""

    name: str
    inference_mode: bool = True
    channels_last: bool = True
    fold_batchnorm: bool = True
    low_precision: bool = False
    compile: bool = False


NAIVE = Config("naive: fp32, NCHW, eager, no_grad", inference_mode=False, channels_last=False, fold_batchnorm=False)
LADDER = (
    NAIVE,
    Config("+ inference_mode", channels_last=False, fold_batchnorm=False),
    Config("+ channels_last", fold_batchnorm=False),
    Config("+ fold batch norm (fp32 default)"),
    Config("+ low-precision autocast (default)", low_precision=True),
)


# ---- inputs and networks ---------------------------------------------------------------------------


def degraded_photo(height: int = INPUT_HEIGHT, width: int = INPUT_WIDTH, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(degraded input, ground truth at 2x): a real photo, 2x downscaled, camera-shake blurred, noise sigma 15."""
    import skimage.data

    rng = np.random.default_rng(seed)
    truth = resize_to_frame(float_image(skimage.data.astronaut()), long_side=2 * width, short_side=2 * height)
    degraded = add_gaussian_noise(motion_blur(downscale(truth, 2), rng), sigma=15.0, rng=rng)
    return image_to_tensor(uint8_image(degraded)).contiguous(), image_to_tensor(uint8_image(truth)).contiguous()


def build_networks(seed: int = 0) -> tuple[dict[str, nn.Module], str]:
    """The cascade's networks: trained ones from weights/ when all exist, else seeded random ones."""
    paths = {name: WEIGHTS_DIR / f"{name}.pt" for name in ("dncnn", "unet", "edsr")}
    if all(path.is_file() for path in paths.values()):
        from helpers.checkpoint import load_model

        return {name: load_model(path, expected_name=name) for name, path in paths.items()}, f"trained ({WEIGHTS_DIR})"
    torch.manual_seed(seed)
    return {"dncnn": DnCNN().eval(), "unet": UNet().eval(), "edsr": EDSR().eval()}, "random init (seeded)"


def stages_for(config: Config, networks: dict[str, nn.Module], device: torch.device) -> list[tuple[str, nn.Module]]:
    """The four stages prepared as ``config`` says (the naive rungs use plain eval-mode copies)."""
    prepared = [
        (name, prepare_for_inference(model, device, channels_last=config.channels_last,
                                     fold_batchnorm=config.fold_batchnorm, compile=config.compile))
        for name, model in networks.items()
    ]
    return prepared + [("unsharp", UnsharpMask().to(device))]


def run_cascade(
    stages: list[tuple[str, nn.Module]],
    images: torch.Tensor,
    config: Config,
    device: torch.device,
    stage_seconds: dict[str, list[float]] | None = None,
    stage_flops: dict[str, int] | None = None,
) -> torch.Tensor:
    """The cascade as ``config`` runs it, clamping to [0, 1] between stages; optionally times/counts each stage."""
    dtype = inference_dtype(device) if config.low_precision else None
    grad_mode = torch.inference_mode() if config.inference_mode else torch.no_grad()
    images = prepare_input(images, device, channels_last=config.channels_last)
    with grad_mode, autocast_for(device, dtype):
        for name, model in stages:
            counter = FlopCounterMode(display=False) if stage_flops is not None else contextlib.nullcontext()
            start = time.perf_counter()
            with counter:
                images = model(images).clamp_(0, 1)
            synchronize(device)
            if stage_seconds is not None:
                stage_seconds.setdefault(name, []).append(time.perf_counter() - start)
            if stage_flops is not None:
                stage_flops[name] = int(counter.get_total_flops())
    return images.float()


# ---- references ------------------------------------------------------------------------------------


def single_conv_runs(device: torch.device, runs: int) -> dict[str, list[float]]:
    """Seconds per call of one 64->64 3x3 conv at 640x360: float32 NCHW and NHWC, and NHWC in low precision."""
    def conv(dtype: torch.dtype, memory_format: torch.memory_format) -> nn.Module:
        return nn.Conv2d(64, 64, 3, padding=1).to(device, dtype).eval().to(memory_format=memory_format)

    features = torch.rand(1, 64, INPUT_HEIGHT, INPUT_WIDTH, device=device)
    nhwc = torch.channels_last
    variants = {
        "fp32 NCHW": (conv(torch.float32, torch.contiguous_format), features),
        "fp32 NHWC": (conv(torch.float32, nhwc), features.contiguous(memory_format=nhwc)),
    }
    low = inference_dtype(device)
    if low is not None:
        variants[f"{str(low).removeprefix('torch.')} NHWC"] = (conv(low, nhwc), features.to(low).contiguous(memory_format=nhwc))
    seconds: dict[str, list[float]] = {}
    with torch.inference_mode():
        for name, (module, inputs) in variants.items():
            module(inputs)  # warm-up: oneDNN/cuDNN primitive creation
            synchronize(device)
            for _ in range(runs):
                start = time.perf_counter()
                module(inputs)
                synchronize(device)
                seconds.setdefault(name, []).append(time.perf_counter() - start)
    return seconds


# ---- memory (one fresh process per measurement) ----------------------------------------------------


def memory_probe(config: dict[str, Any], height: int, width: int, device: str, tile: int = 0, restorer: bool = False) -> dict[str, Any]:
    """Subprocess body: one frame of height x width through the cascade (via the Restorer if ``restorer`` or ``tile``)."""
    device_ = pick_device(device)
    networks, _ = build_networks()
    images = torch.rand(1, 3, height, width)
    reset_peak_memory(device_)
    start = time.perf_counter()
    if tile or restorer:
        from helpers.pipeline import Restorer

        Restorer(networks, device=device_, tile=tile).restore_tensor(images)
    else:
        config_ = Config(**config)
        run_cascade(stages_for(config_, networks, device_), images, config_, device_)
    return {"seconds": time.perf_counter() - start, "peak_bytes": peak_memory_bytes(device_)}


def peak_memory(config: Config, height: int, width: int, device: torch.device, tile: int = 0, restorer: bool = False) -> dict[str, Any]:
    """Peak memory (bytes) of one frame: its own process on CPU (peak RSS), in-process on CUDA."""
    if device.type == "cuda":
        return memory_probe(asdict(config), height, width, str(device), tile, restorer)
    return measure_in_subprocess(
        "bench.bench_inference:memory_probe", config=asdict(config), height=height, width=width, device=str(device),
        tile=tile, restorer=restorer,
    )


# ---- the run ---------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return float(np.median(values))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements of one run; returns the JSON-able result."""
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed frame size: let cuDNN pick the fastest algorithms
    load_before = os.getloadavg()
    networks, weights = build_networks()
    degraded, truth = degraded_photo()
    # the low-precision rung only where the default path has one (CUDA, CPUs with native bfloat16)
    ladder = [config for config in LADDER if not config.low_precision or inference_dtype(device) is not None]
    if not args.full:  # the naive reference and the Restorer (the default path); the levers between them with --full
        ladder = [config for config in ladder if config is NAIVE or config.low_precision]
    configs = ladder + ([Config("+ torch.compile", low_precision=True, compile=True)] if args.compile else [])
    stages = {config.name: stages_for(config, networks, device) for config in configs}
    runners: dict[str, Callable[[dict[str, list[float]], dict[str, int] | None], torch.Tensor]] = {
        config.name: partial(run_cascade, stages[config.name], degraded.to(device), config, device) for config in configs
    }
    restorer = None
    with contextlib.suppress(ImportError):
        from helpers.pipeline import Restorer

        restorer = Restorer(networks, device=device)
        runners[RESTORER] = lambda per_stage, count: restorer.restore_tensor(degraded.to(device))
    rounds = args.warmup + args.repeats
    stage_seconds: dict[str, dict[str, list[float]]] = {name: {} for name in runners}
    total_seconds: dict[str, list[float]] = {name: [] for name in runners}
    conv_seconds: dict[str, list[float]] = {}
    outputs: dict[str, torch.Tensor] = {}
    flops: dict[str, int] = {}
    order = [*runners, SINGLE_CONV]
    for round_index in range(rounds):
        timed = round_index >= args.warmup
        shift = round_index % len(order)  # rotate the order so no configuration always runs after the same one
        for name in order[shift:] + order[:shift]:
            if name == SINGLE_CONV:
                for variant, seconds in single_conv_runs(device, runs=5).items():
                    conv_seconds.setdefault(variant, []).extend(seconds if timed else [])
                continue
            count = flops if round_index == 0 and name == ladder[-1].name else None
            start = time.perf_counter()
            output = runners[name](stage_seconds[name] if timed else {}, count)
            synchronize(device)
            if timed:
                total_seconds[name].append(time.perf_counter() - start)
            outputs[name] = output
        print(f"  round {round_index + 1}/{rounds} done", flush=True)
    total_flops = sum(flops.values())
    ceiling_seconds = min(median(seconds) for name, seconds in conv_seconds.items() if name.startswith("fp32"))
    conv_flops = 2 * 64 * 64 * 9 * INPUT_HEIGHT * INPUT_WIDTH
    ceiling = conv_flops / ceiling_seconds
    naive_seconds = median(total_seconds[NAIVE.name])
    reference_output = outputs[NAIVE.name]
    truth = truth.to(device)
    baseline_psnr = float(psnr(reference_output, truth))
    rows = []
    for name, seconds in total_seconds.items():
        output = outputs[name]
        rows.append({
            "config": name,
            "ms_per_frame": 1e3 * median(seconds),
            "runs_ms": [1e3 * value for value in seconds],
            "gflops_per_s": total_flops / median(seconds) / 1e9,
            "fraction_of_ceiling": total_flops / median(seconds) / ceiling,
            "speedup_over_naive": naive_seconds / median(seconds),
            "max_abs_diff_vs_naive_255": 255 * float((output - reference_output).abs().max()),
            "psnr_vs_naive_db": float(psnr(output, reference_output)),
            "psnr_change_vs_truth_db": float(psnr(output, truth)) - baseline_psnr,
            "stage_ms": {stage: 1e3 * median(values) for stage, values in stage_seconds.get(name, {}).items()},
        })
    result: dict[str, Any] = {
        "input": f"{INPUT_WIDTH}x{INPUT_HEIGHT} -> {2 * INPUT_WIDTH}x{2 * INPUT_HEIGHT}",
        "device": str(device),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "weights": weights,
        "warmup_rounds": args.warmup,
        "timed_rounds": args.repeats,
        "flops": {**flops, "cascade": total_flops},
        "single_conv_ms": {name: 1e3 * median(seconds) for name, seconds in conv_seconds.items()},
        "ceiling_gflops_per_s": ceiling / 1e9,
        "naive_ms_per_frame": 1e3 * naive_seconds,
        "baseline_psnr_vs_truth_db": baseline_psnr,
        "rows": rows,
    }
    if not args.quick:
        result["memory"] = {"Restorer 640x360": peak_memory(ladder[-1], INPUT_HEIGHT, INPUT_WIDTH, device, restorer=True)}
    if args.full:
        result["memory"]["naive 640x360"] = peak_memory(NAIVE, INPUT_HEIGHT, INPUT_WIDTH, device)
        result["memory"]["default 640x360"] = peak_memory(ladder[-1], INPUT_HEIGHT, INPUT_WIDTH, device)
    if args.full and restorer is not None:
        result["tiling"] = tiling_cost(networks, device, args.tile)
        result["memory"]["Restorer 3840x2160, tile %d" % args.tile] = peak_memory(ladder[-1], 2160, 3840, device, tile=args.tile)
    result["load_average_before"] = list(load_before)
    result["load_average_after"] = list(os.getloadavg())
    return result


def tiling_cost(networks: dict[str, nn.Module], device: torch.device, tile: int) -> dict[str, Any]:
    """Restorer on a 1280x720 input, whole versus ``tile``-pixel tiles (interleaved, 1 warm-up + 2 runs each)."""
    from helpers.pipeline import Restorer

    frame = torch.rand(1, 3, 720, 1280, device=device)
    restorers = {"whole": Restorer(networks, device=device), f"tile {tile}": Restorer(networks, device=device, tile=tile)}
    seconds: dict[str, list[float]] = {name: [] for name in restorers}
    for round_index in range(3):
        for name, restorer in restorers.items():
            start = time.perf_counter()
            restorer.restore_tensor(frame)
            synchronize(device)
            if round_index:
                seconds[name].append(time.perf_counter() - start)
    whole, tiled = (median(values) for values in seconds.values())
    return {"input": "1280x720", "ms": {name: 1e3 * median(values) for name, values in seconds.items()}, "overhead": tiled / whole - 1}


def print_table(result: dict[str, Any]) -> None:
    """The human-readable summary."""
    print(f"\nInference, {result['input']} on {result['device']} ({result['cpu_capability']}, {result['threads']} threads, "
          f"torch {result['torch']}), weights: {result['weights']}")
    print(f"median of {result['timed_rounds']} interleaved runs after {result['warmup_rounds']} warm-up; "
          f"load average before {result['load_average_before'][0]:.2f}, after {result['load_average_after'][0]:.2f}")
    print("\nFLOPs per frame (counted): " + ", ".join(f"{name} {value / 1e9:.2f} G" for name, value in result["flops"].items()))
    print("Reference (1), one 64->64 3x3 conv at 640x360: " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in result["single_conv_ms"].items())
          + f"; ceiling (fastest fp32) {result['ceiling_gflops_per_s']:.1f} GFLOP/s")
    print(f"Reference (2), naive cascade: {result['naive_ms_per_frame']:.0f} ms/frame\n")
    header = f"{'configuration':40s} {'ms/frame':>9s} {'GFLOP/s':>8s} {'%ceil':>6s} {'x naive':>7s} {'maxdiff/255':>11s} {'dPSNR dB':>9s}  per stage ms"
    print(header)
    print("-" * len(header))
    for row in result["rows"]:
        stages = " ".join(f"{stage}:{ms:.0f}" for stage, ms in row["stage_ms"].items())
        print(f"{row['config']:40s} {row['ms_per_frame']:9.0f} {row['gflops_per_s']:8.1f} {100 * row['fraction_of_ceiling']:5.0f}% "
              f"{row['speedup_over_naive']:6.2f}x {row['max_abs_diff_vs_naive_255']:11.3f} {row['psnr_change_vs_truth_db']:+9.4f}  {stages}")
    for name, memory in result.get("memory", {}).items():
        print(f"peak memory, {name}: {memory['peak_bytes'] / 2**30:.2f} GiB ({memory['seconds']:.1f} s)")
    if "tiling" in result:
        tiling = result["tiling"]
        print(f"tiling at {tiling['input']}: " + ", ".join(f"{name} {ms:.0f} ms" for name, ms in tiling["ms"].items())
              + f" -> overhead {100 * tiling['overhead']:+.1f}%")


def save_json(result: dict[str, Any], path: Path) -> None:
    """Write a benchmark's result as JSON, atomically, and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        Path(temp).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_inference", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1",
                        help="no memory subprocess (also BENCH_QUICK=1)")
    parser.add_argument("--full", action="store_true", help="also the intermediate levers, naive/default memory, tiling "
                        "cost at 1280x720 and 3840x2160 tiled memory")
    parser.add_argument("--repeats", type=int, default=1, help="timed rounds (default 1; bench_peers times the "
                        "default path over 2 rounds beside its peers)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--tile", type=int, default=512, help="tile size for --full")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile rung")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=OUTPUT_PATH)
    args = parser.parse_args(argv)
    result = measure(args)
    print_table(result)
    save_json(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
