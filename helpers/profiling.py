"""Measuring the networks: FLOPs counted from the layers, wall-clock timing, peak memory.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``: it counts matrix multiplications and
convolutions (2 FLOPs per multiply-add, biases and element-wise ops not counted), which is the
convention published model tables use. Peak CPU memory is the process's peak resident set size,
so each CPU measurement runs in a fresh subprocess (``measure_in_subprocess``); on CUDA it is
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "count_flops",
    "Timing",
    "time_call",
    "synchronize",
    "peak_rss_bytes",
    "reset_peak_memory",
    "peak_memory_bytes",
    "measure_in_subprocess",
]


def count_flops(model: nn.Module | Callable[..., Any], *inputs: Any) -> int:
    """Floating-point operations of one call ``model(*inputs)``, counted from the executed layers."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(*inputs)
    return int(counter.get_total_flops())


def synchronize(device: torch.device | str) -> None:
    """Wait for queued CUDA work so that wall-clock times are real; no-op on CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Wall-clock seconds of repeated runs; ``median`` is the number to report (robust to a busy machine)."""

    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """(max - min) / median: how noisy the runs were."""
        return (max(self.seconds) - min(self.seconds)) / self.median


def time_call(
    function: Callable[[], Any], device: torch.device | str = "cpu", repeats: int = 5, warmup: int = 1
) -> Timing:
    """Run ``function`` ``warmup`` times untimed (allocator, oneDNN/cuDNN plans), then time ``repeats`` runs."""
    if repeats < 1:
        raise ValueError(f"repeats: expected >= 1, received {repeats}")
    for _ in range(warmup):
        function()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return Timing(seconds)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes.

    Linux: ``VmHWM`` from /proc/self/status, because ``ru_maxrss`` survives fork+exec and would report
    the parent's size in a freshly started subprocess. Elsewhere ``ru_maxrss`` (macOS bytes, BSD KiB).
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_peak_memory(device: torch.device | str) -> None:
    """Start a new CUDA peak-memory window (CPU peak RSS cannot be reset: use a subprocess)."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device | str) -> int:
    """Peak memory for ``device``: CUDA memory allocated by tensors, or the process's peak RSS on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return peak_rss_bytes()


def measure_in_subprocess(target: str, timeout: float | None = None, **kwargs: Any) -> dict[str, Any]:
    """Call ``target`` ('package.module:function') with JSON-able ``kwargs`` in a fresh Python process.

    The function must return a JSON-able dict; ``peak_rss_bytes`` of that process is added, so the
    peak belongs to this one measurement alone (the parent's models and buffers do not count).
    """
    command = [sys.executable, "-m", "helpers.profiling", target, json.dumps(kwargs)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"measurement {target} failed in its subprocess: {last_line}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _run_target(target: str, kwargs_json: str) -> None:
    """Subprocess side of ``measure_in_subprocess``: run, then print the result and the peak RSS as JSON."""
    module_name, function_name = target.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    result = dict(function(**json.loads(kwargs_json)))
    result["peak_rss_bytes"] = peak_rss_bytes()
    print(json.dumps(result))


if __name__ == "__main__":
    _run_target(*sys.argv[1:3])
