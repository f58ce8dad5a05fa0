"""Measuring the networks: FLOPs counted from the layers, wall-clock timing, peak memory.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``: it counts matrix multiplications and
convolutions (2 FLOPs per multiply-add, biases and element-wise ops not counted), which is the
convention published model tables use (with one correction: see ``flop_counter``). Peak CPU memory is the process's peak resident set size,
so each CPU measurement runs in a fresh subprocess (``measure_in_subprocess``); on CUDA it is
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import contextlib
import copy
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
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

__all__ = [
    "count_flops",
    "flop_counter",
    "Timing",
    "time_call",
    "synchronize",
    "peak_rss_bytes",
    "reset_peak_memory",
    "peak_memory_bytes",
    "measure_in_subprocess",
    "GpuSpec",
    "COLAB_GPUS",
    "ASSUMED_EFFICIENCY",
    "TrainingEstimate",
    "estimate_training",
    "saved_activation_bytes",
]


def _convolution_backward_flops(grad_out_shape: list[int], x_shape: list[int], w_shape: list[int], bias: Any, stride: Any,
                                padding: Any, dilation: Any, transposed: bool, output_padding: Any, groups: int,
                                output_mask: list[bool], **kwargs: Any) -> int:
    """Each gradient a convolution's backward computes (input, weight) costs what its forward does.

    torch's own formula ignores ``groups`` for the weight gradient: it counts a 64-channel depthwise 3x3
    convolution's backward as 64 times its forward (torch 2.14), which made the gated UNet look 8x dearer to train.
    """
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def flop_counter() -> FlopCounterMode:
    """torch's FLOP counter, with grouped (depthwise) convolutions' backward counted correctly."""
    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _convolution_backward_flops})


def count_flops(model: nn.Module | Callable[..., Any], *inputs: Any) -> int:
    """Floating-point operations of one call ``model(*inputs)``, counted from the executed layers."""
    counter = flop_counter()
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


def saved_activation_bytes(function: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes autograd keeps for the backward pass while ``function`` runs (its activation memory), and its result.

    Counted with autograd's saved-tensor hooks, each storage once, trainable leaves (the parameters, which
    exist anyway) left out: a device-independent figure, where a CPU's peak RSS also holds allocator
    caches and libraries. What ``torch.utils.checkpoint`` regions save is dropped, so it is not counted.
    """
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if not (tensor.is_leaf and tensor.requires_grad):
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = function()
    return sum(storages.values()), result


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


# ----------------------------------------------------------------------------- training on a GPU, estimated


@dataclass(frozen=True)
class GpuSpec:
    """A GPU as the estimates see it: the memory Colab reports and the peak dense float16 tensor-core throughput."""

    memory_gib: float
    fp16_tflops: float


# The GPUs Colab offers (T4 on the free tier; L4, A100 and H100 paid). Peaks from NVIDIA's datasheets, dense (without
# the sparsity that doubles some quoted figures); the H100's is the SXM card's (a PCIe H100 has 756).
COLAB_GPUS = {
    "T4": GpuSpec(15.0, 65.0),
    "L4": GpuSpec(22.5, 121.0),
    "A100": GpuSpec(40.0, 312.0),
    "H100": GpuSpec(80.0, 989.0),
}
# Share of that peak a training step of these networks reaches with AMP: an assumed range, not a measurement. Their
# 32-128-channel convolutions, batch norm, ReLU and the losses' element-wise work keep real runs far below the
# datasheet: 5-15% of a T4's peak is 3-10 TFLOPS. The faster GPUs are harder to fill with such small layers, and
# data loading on the VM's few CPU cores caps them, so there the range is a lower bound on the time.
ASSUMED_EFFICIENCY = (0.05, 0.15)
# Allocator fragmentation, cuDNN workspaces and the CUDA context on top of tensors (an assumption too).
MEMORY_OVERHEAD = 1.25
CUDA_CONTEXT_BYTES = 0.5 * 2**30
ADAM_BYTES_PER_PARAMETER = 16  # float32 weights, gradients and Adam's two moments


def _duration(seconds: float) -> str:
    """'2.5 h', '12 min' or '40 s': the unit a reader compares at a glance."""
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


@dataclass(frozen=True)
class TrainingEstimate:
    """One training step's counted work and memory, and what they mean for a run of ``epochs`` on ``COLAB_GPUS``."""

    flops_per_step: float
    activation_bytes: float
    parameter_bytes: float
    steps_per_epoch: int
    epochs: int = 1

    @property
    def memory_bytes(self) -> float:
        return (self.activation_bytes + self.parameter_bytes) * MEMORY_OVERHEAD + CUDA_CONTEXT_BYTES

    def epoch_seconds(self, gpu: GpuSpec, efficiency: float) -> float:
        """Seconds per epoch on ``gpu`` reaching ``efficiency`` (a share) of its float16 peak."""
        return self.steps_per_epoch * self.flops_per_step / (gpu.fp16_tflops * 1e12 * efficiency)

    def summary(self) -> str:
        """Memory, time per epoch and for the whole run on each Colab GPU, one line each, with the assumptions named."""
        low, high = ASSUMED_EFFICIENCY
        lines = [f"estimated from counted FLOPs ({self.flops_per_step / 1e12:.2f} TFLOP per step) and saved activations "
                 f"({self.activation_bytes / 2**30:.2f} GiB per step), assuming {low:.0%}-{high:.0%} of each GPU's "
                 f"float16 peak (an assumption: compare the trainer's measured s/step) and {MEMORY_OVERHEAD - 1:.0%} memory overhead:"]
        for name, gpu in COLAB_GPUS.items():
            fits = "fits" if self.memory_bytes < gpu.memory_gib * 2**30 else "DOES NOT FIT"
            fast, slow = self.epoch_seconds(gpu, high), self.epoch_seconds(gpu, low)
            lines.append(f"  {name} ({gpu.memory_gib:g} GiB): {self.memory_bytes / 2**30:.1f} GiB ({fits}), "
                         f"{_duration(fast)}-{_duration(slow)} per epoch of {self.steps_per_epoch} steps, "
                         f"{_duration(fast * self.epochs)}-{_duration(slow * self.epochs)} for {self.epochs} epochs")
        return "\n".join(lines)


def _saved_activation_bytes(step: Callable[[], torch.Tensor]) -> tuple[float, float]:
    """(bytes of the tensors autograd saves for backward, FLOPs of forward and backward) of one ``step``."""
    counter = flop_counter()
    with counter:
        saved, loss = saved_activation_bytes(step)
        loss.backward()
    return float(saved), float(counter.get_total_flops())


def estimate_training(
    model: nn.Module,
    loss: nn.Module,
    patch: int,
    batch_size: int,
    steps_per_epoch: int,
    epochs: int = 1,
    scale: int = 1,
    probe: int = 64,
) -> TrainingEstimate:
    """Count one training step of ``model`` on ``batch_size`` RGB ``patch`` x ``patch`` inputs (targets ``scale`` x larger),
    for a run of ``epochs`` epochs of ``steps_per_epoch`` steps.

    A single ``min(patch, probe)``-pixel patch is run forward and backward on the CPU under bfloat16
    autocast (2-byte activations, as float16 AMP keeps them on a GPU); FLOPs and saved activations
    grow with the pixel count and the batch, so they are scaled up from it. Parameters count 16
    bytes each (weights, gradients, Adam's moments; the loss's frozen networks 4). ``model`` itself is
    not touched (a copy runs), so its batch-norm statistics and the random state stay as they were.
    """
    side = min(patch, probe)
    generator = torch.Generator().manual_seed(0)  # the global RNG (and the model: a copy is run) stay untouched
    inputs = torch.rand(1, 3, side, side, generator=generator)
    targets = torch.rand(1, 3, side * scale, side * scale, generator=generator)
    model = copy.deepcopy(model).cpu().train()

    def step() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return loss(model(inputs).float(), targets)

    activation_bytes, flops = _saved_activation_bytes(step)
    growth = batch_size * (patch / side) ** 2
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in loss.parameters())
    return TrainingEstimate(flops * growth, activation_bytes * growth, trained * ADAM_BYTES_PER_PARAMETER + frozen * 4.0,
                            steps_per_epoch, epochs)
