"""Our cascade against its CPU peers, ONNX Runtime and OpenVINO, on the same weights in one interleaved run.

A 640x360 frame (a degraded photo) restored to 1280x720. The peers run the cascade exported once
to ONNX from the same networks (DnCNN -> UNet -> EDSR -> unsharp mask, clamped between stages, as
the Restorer runs them), at a fixed 1x3x360x640 shape. Every path uses torch's thread count
(``torch.get_num_threads()``). Rows, each timed once per round, in an order that rotates every round:

* ours: ``helpers.pipeline.Restorer`` as shipped (its default precision), and with ``fp32=True``
  where the default is not float32 already;
* OpenVINO with its own defaults (latency hint; its precision is printed), and in float32 where
  its default is not float32;
* ONNX Runtime, float32, all graph optimisations.

Per row: median seconds per frame, speed relative to our default path (> 1: faster than ours),
PSNR and largest difference (in 1/255) against our float32 output, minor page faults and CPU
seconds (user + system, all threads) per frame. The peers are optional (``requirements-bench.txt``):
a missing one is reported and skipped.

    python -m bench.bench_peers [--rounds N] [--warmup N] [--quick] [--size 640x360]

Writes outputs/bench/peers.json.

No "before keep_freed_memory" row: once a process's heap holds the freed blocks, turning mmap back on
does not bring the page faults back (glibc serves new blocks from the heap first), so an in-process
"before" measured nothing. Measured at the change, in a fresh process: 1.41 million minor page faults
and 21 CPU seconds per frame before, about none and 14 s after.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from bench.bench_inference import build_networks, degraded_photo, save_json
from helpers.inference import inference_dtype
from helpers.metrics import psnr
from helpers.models import UnsharpMask
from helpers.pipeline import Restorer

OUTPUT_PATH = Path("outputs/bench/peers.json")
OURS = "ours: Restorer default"
OURS_FP32 = "ours: Restorer --fp32"


class ExportedCascade(nn.Module):
    """The cascade as one module for export: each network, clamped to [0, 1], then the unsharp mask."""

    def __init__(self, networks: dict[str, nn.Module]) -> None:
        super().__init__()
        self.stages = nn.ModuleList([networks["dncnn"], networks["unet"], networks["edsr"], UnsharpMask()])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            images = stage(images).clamp(0, 1)
        return images


def export_onnx(networks: dict[str, nn.Module], shape: tuple[int, ...], path: Path) -> float:
    """Trace the cascade at a fixed ``shape`` into an ONNX file; returns the seconds it took.

    A fixed shape: the UNet's reflect padding and crop depend on the size, and a trace records them as constants.
    """
    start = time.perf_counter()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about the input checks, which export as constants
        torch.onnx.export(ExportedCascade(networks).eval(), (torch.rand(shape),), str(path), dynamo=False,
                          input_names=["images"], output_names=["restored"])
    return time.perf_counter() - start


def openvino_runners(path: Path, threads: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """OpenVINO CPU with its defaults (latency hint), plus float32 where its default precision is not."""
    import openvino

    core = openvino.Core()
    runners = {}
    default = core.compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads})
    precision = str(default.get_property("INFERENCE_PRECISION_HINT")).removeprefix("<Type: '").removesuffix("'>")
    runners[f"OpenVINO {openvino.__version__.split('-')[0]}, its defaults ({precision})"] = lambda images: default(images)[0]
    if precision not in ("f32", "float32"):
        fp32 = core.compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                                                     "INFERENCE_PRECISION_HINT": "f32"})
        runners["OpenVINO f32"] = lambda images: fp32(images)[0]
    return runners


def onnxruntime_runner(path: Path, threads: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """ONNX Runtime's CPU provider in float32 with every graph optimisation."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return {f"ONNX Runtime {onnxruntime.__version__} f32": lambda images: session.run(None, {"images": images})[0]}


def usage() -> np.ndarray:
    """(wall seconds, CPU seconds of all threads, minor page faults) so far."""
    self = resource.getrusage(resource.RUSAGE_SELF)
    return np.array([time.perf_counter(), self.ru_utime + self.ru_stime, self.ru_minflt])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build every row, run them interleaved, return the JSON-able result."""
    load_before = os.getloadavg()
    threads = torch.get_num_threads()
    networks, weights = build_networks()
    degraded, truth = degraded_photo(args.height, args.width)
    images = degraded.numpy()
    ours = Restorer(networks, device="cpu")
    runners: dict[str, Callable[[], torch.Tensor]] = {OURS: lambda: ours.restore_tensor(degraded)}
    if ours.dtype is not None:
        ours_fp32 = Restorer(networks, device="cpu", fp32=True)
        runners[OURS_FP32] = lambda: ours_fp32.restore_tensor(degraded)
    notes, export_seconds = [], None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cascade.onnx"
        export_seconds = export_onnx(networks, tuple(degraded.shape), path)
        for name, build in (("openvino", openvino_runners), ("onnxruntime", onnxruntime_runner)):
            try:
                peers = build(path, threads)
            except ImportError:
                notes.append(f"{name} not installed: pip install -r requirements-bench.txt")
                continue
            for label, peer in peers.items():
                runners[label] = lambda peer=peer: torch.from_numpy(np.asarray(peer(images)))
        rows = run_interleaved(runners, args.warmup, args.rounds)
    reference = rows[OURS_FP32 if OURS_FP32 in rows else OURS]["output"]
    ours_seconds = rows[OURS]["seconds"]
    table = []
    for name, row in rows.items():
        output = row.pop("output").float()
        table.append({
            "path": name,
            "s_per_frame": row["seconds"],
            "speed_vs_ours": ours_seconds / row["seconds"],
            "psnr_vs_our_fp32_db": float(psnr(output, reference)),
            "max_diff_vs_our_fp32_255": 255 * float((output - reference).abs().max()),
            "psnr_vs_truth_db": float(psnr(output, truth)),
            **{key: value for key, value in row.items() if key != "seconds"},
        })
    return {
        "input": f"{degraded.shape[-1]}x{degraded.shape[-2]} -> {truth.shape[-1]}x{truth.shape[-2]}",
        "weights": weights,
        "threads": threads,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "our_default_dtype": str(inference_dtype("cpu")),
        "platform": platform.platform(),
        "warmup_rounds": args.warmup,
        "timed_rounds": args.rounds,
        "onnx_export_s": export_seconds,
        "notes": notes,
        "rows": table,
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
    }


def run_interleaved(runners: dict[str, Callable[[], torch.Tensor]], warmup: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Every runner once per round, the order rotated each round; medians of the timed rounds and the last output."""
    names = list(runners)
    samples: dict[str, list[np.ndarray]] = {name: [] for name in names}
    outputs: dict[str, torch.Tensor] = {}
    for round_index in range(warmup + rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            before = usage()
            with torch.inference_mode():
                outputs[name] = runners[name]()
            if round_index >= warmup:
                samples[name].append(usage() - before)
        print(f"  round {round_index + 1}/{warmup + rounds} done", flush=True)
    rows = {}
    for name in names:
        seconds, cpu_seconds, faults = np.median(np.stack(samples[name]), axis=0)
        rows[name] = {"seconds": float(seconds), "runs_s": [float(sample[0]) for sample in samples[name]],
                      "cpu_s": float(cpu_seconds), "page_faults": int(faults), "output": outputs[name]}
    return rows


def print_table(result: dict[str, Any]) -> None:
    """The peer table."""
    print(f"\nPeers, {result['input']}, {result['threads']} threads, torch {result['torch']} ({result['cpu_capability']}, "
          f"our default: {result['our_default_dtype']}), weights: {result['weights']}")
    print(f"median of {result['timed_rounds']} interleaved rounds after {result['warmup_rounds']} warm-up; load average "
          f"before {result['load_average_before'][0]:.2f}, after {result['load_average_after'][0]:.2f}; "
          f"ONNX export {result['onnx_export_s']:.1f} s")
    header = f"{'path':48s} {'s/frame':>8s} {'vs ours':>8s} {'PSNR vs our fp32':>17s} {'maxdiff/255':>11s} {'faults':>9s} {'CPU s':>6s}"
    print(header)
    print("-" * len(header))
    for row in result["rows"]:
        psnr_text = "identical" if np.isinf(row["psnr_vs_our_fp32_db"]) else f"{row['psnr_vs_our_fp32_db']:.2f} dB"
        print(f"{row['path']:48s} {row['s_per_frame']:8.2f} {row['speed_vs_ours']:7.2f}x {psnr_text:>17s} "
              f"{row['max_diff_vs_our_fp32_255']:11.2f} {row['page_faults']:9d} {row['cpu_s']:6.2f}")
    for note in result["notes"]:
        print(f"note: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_peers", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1",
                        help="1 warm-up + 1 timed round (also BENCH_QUICK=1)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 2, --quick 1)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--size", default="640x360", help="input WIDTHxHEIGHT (default 640x360)")
    parser.add_argument("--out", type=Path, default=OUTPUT_PATH)
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.width, args.height = (int(side) for side in args.size.lower().split("x"))
    result = measure(args)
    print_table(result)
    save_json(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
