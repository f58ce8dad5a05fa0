"""Fast inference for the cascade's networks: device choice, an optimised model copy, precision policy.

What pays was decided from ``python -m bench`` (table printed, JSON in outputs/bench/inference.json):
channels_last memory layout (oneDNN's fast convolution path on CPU, tensor cores on CUDA), batch
norm folded into the preceding convolution, ``torch.inference_mode`` (the caller's job), and lower
precision through autocast: float16 on CUDA, bfloat16 on CPUs with native bfloat16 instructions
(AVX512-BF16 or AMX). Autocast keeps the models' normalisation and skip additions in float32 and
runs only the convolutions in the low-precision type, which is why it holds PSNR where converting
the whole network would not.

Typical use (what ``helpers.pipeline`` does)::

    device = pick_device(args.device)
    model = prepare_for_inference(load_model(path), device)
    dtype = inference_dtype(device, fp32=args.fp32)
    with torch.inference_mode(), autocast_for(device, dtype):
        restored = model(prepare_input(images, device))
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import platform
import warnings
from typing import Any, ContextManager, Iterator

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = [
    "pick_device",
    "prepare_for_inference",
    "prepare_input",
    "fold_conv_batchnorm",
    "inference_dtype",
    "cpu_has_native_bfloat16",
    "autocast_for",
    "keep_freed_memory",
    "tf32_off",
    "cudnn_autotuning",
]

# mallopt(3) parameter numbers from glibc's <malloc.h>, glibc's default for M_MMAP_MAX, the largest C int.
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_GLIBC_DEFAULT_MMAP_MAX = 65536
_NEVER_TRIM = 2**31 - 1


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cpu', 'cuda', 'cuda:1' (or a torch.device) are taken as asked.

    Raises ValueError for an unknown name or for CUDA on a machine without it.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', received {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', received {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine (use 'cpu' or 'auto')")
    return device


def fold_conv_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every Conv2d directly followed by an eval-mode BatchNorm2d (inside a Sequential) into the conv.

    Works in place on ``model`` (call it on a copy); the BatchNorm becomes ``nn.Identity`` so indices
    in the Sequential are unchanged. Exact up to float rounding: y = gamma * (Wx - mean) / sqrt(var + eps) + beta.
    """
    for sequential in [module for module in model.modules() if isinstance(module, nn.Sequential)]:
        for index in range(len(sequential) - 1):
            conv, norm = sequential[index], sequential[index + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
                sequential[index] = fuse_conv_bn_eval(conv.eval(), norm.eval())
                sequential[index + 1] = nn.Identity()
    return model


class _CompiledOrEager(nn.Module):
    """torch.compile'd model that falls back to eager, with one warning, if compiling fails at first call.

    torch.compile is lazy, so failures (no C++ compiler, unsupported platform) surface only when the
    model first runs; this keeps ``compile=True`` safe everywhere. Attributes (``arch``, ``min_size``,
    ``scale``) are forwarded to the wrapped model.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._compiled: Any = torch.compile(model)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._compiled is not None:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as error:  # any compiler/backend failure: eager is always correct
                warnings.warn(f"torch.compile failed ({type(error).__name__}: {error}); running eagerly", stacklevel=2)
                self._compiled = None
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)


def prepare_for_inference(
    model: nn.Module,
    device: torch.device | str,
    *,
    channels_last: bool = True,
    fold_batchnorm: bool = True,
    compile: bool = False,
) -> nn.Module:
    """An eval-mode, gradient-free, optimised COPY of ``model`` on ``device``; the original is untouched.

    Args:
        channels_last: store 4-D weights as NHWC (oneDNN's and cuDNN's fast layout); outputs are
            identical up to float rounding.
        fold_batchnorm: fold Conv+BatchNorm pairs (DnCNN) into single convolutions.
        compile: wrap in torch.compile (falls back to eager with a warning where it fails).

    ``arch``, ``min_size`` and ``scale`` of the cascade's networks stay readable on the result. No process-wide
    setting changes (cuDNN's autotuner is the caller's, for the time it runs: ``cudnn_autotuning``).
    """
    prepared = copy.deepcopy(model).eval().requires_grad_(False)
    if fold_batchnorm:
        fold_conv_batchnorm(prepared)
    prepared = prepared.to(device)
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
    if compile:
        return _CompiledOrEager(prepared)
    return prepared


def prepare_input(images: torch.Tensor, device: torch.device | str, channels_last: bool = True) -> torch.Tensor:
    """Move a (N, C, H, W) batch to ``device`` in the layout the prepared models want, in one copy."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return images.to(device, non_blocking=True).contiguous(memory_format=memory_format)


def cpu_has_native_bfloat16() -> bool:
    """True when the CPU has bfloat16 arithmetic in hardware (AVX512-BF16 or AMX).

    Without it oneDNN emulates bfloat16 and is slower than float32. torch exposes this test only
    as the private ``torch.cpu._is_avx512_bf16_supported`` / ``_is_amx_tile_supported``, hence the guards.
    """
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(check()) for check in checks if check is not None)


def inference_dtype(device: torch.device | str, fp32: bool = False) -> torch.dtype | None:
    """The autocast type for inference on ``device``, or None for plain float32.

    CUDA: float16 (tensor cores; the networks' activations stay far below its 65504 limit).
    CPU: bfloat16 when the CPU computes it natively (on a 2-core AVX512-BF16 EPYC: 1.9x over the
    optimised float32 cascade; with the demo weights PSNR moves <= 0.023 dB; see bench), else float32.
    ``fp32=True`` always gives None.
    """
    device = torch.device(device)
    if fp32:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bfloat16():
        return torch.bfloat16
    return None


def autocast_for(device: torch.device | str, dtype: torch.dtype | None) -> ContextManager[Any]:
    """``torch.autocast`` for ``device`` in ``dtype``, or true float32 (``tf32_off``) when ``dtype`` is None."""
    if dtype is None:
        return tf32_off()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def keep_freed_memory(enabled: bool = True) -> bool:
    """Let glibc's malloc keep freed large blocks for reuse instead of handing them back to the OS.

    Why: glibc serves every block above 32 MB with its own mmap and unmaps it on free. A 64-channel
    float32 activation at 640x360 is 59 MB, so each layer's output was faulted in afresh, page by
    page, zeroed by the kernel: 1.4 million page faults and about a quarter of the CPU time per
    frame (measured with ``python -m bench.bench_peers``). With mmap off for ordinary blocks and
    trimming off, the next layer and the next frame reuse the freed blocks. Threads started from now
    on share the main heap (a thread's own arena would still mmap blocks above 64 MB). The price:
    the process keeps its peak heap until it exits (reused by later allocations, not returned to the OS).

    Process-wide. ``enabled=False`` gives large blocks back to mmap (glibc's default; what the heap
    holds already stays): the bench's "before". Returns False, changing nothing, where the C library
    is not glibc (macOS, Windows, musl).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    settings = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: _NEVER_TRIM, _M_ARENA_MAX: 1} if enabled else {_M_MMAP_MAX: _GLIBC_DEFAULT_MMAP_MAX}
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings.items())


def _precision_settings() -> tuple[Any, ...]:
    """torch >= 2.9's per-operation float32 precision settings (cuDNN convolutions, cuBLAS matrix products), or ()."""
    if not hasattr(torch.backends.cudnn, "conv"):  # torch < 2.9: only the legacy allow_tf32 flags
        return ()
    return torch.backends.cudnn.conv, torch.backends.cuda.matmul


@contextlib.contextmanager
def tf32_off() -> Iterator[None]:
    """CUDA convolutions and matrix products in full float32 inside the block (the settings are restored after).

    On Ampere and newer GPUs (Colab's L4, A100) cuDNN rounds float32 convolution inputs to TF32
    (10-bit mantissa) by default: ``fp32=True`` and the float32 redo of an overflowing tile must not.
    torch >= 2.9 has a new API for it (``fp32_precision = "ieee"``), used where it exists: once anything in the
    process has set it, reading the legacy ``allow_tf32`` flags raises ("mix of the legacy and new APIs").
    """
    settings = _precision_settings()
    if settings:
        saved = [setting.fp32_precision for setting in settings]
        for setting in settings:
            setting.fp32_precision = "ieee"
        try:
            yield
        finally:
            for setting, value in zip(settings, saved):
                setting.fp32_precision = value
        return
    legacy = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = legacy


@contextlib.contextmanager
def cudnn_autotuning(device: torch.device | str) -> Iterator[None]:
    """cuDNN's autotuner on inside the block when ``device`` is CUDA (the process-wide flag is restored after).

    Fixed frame sizes: cuDNN times its kernels for each new shape once and keeps the fastest. Scoped to the
    block, so that it does not outlive the restoring: a deterministic training run that validates the cascade
    after every epoch would otherwise autotune from its second epoch on, and a resumed run at another point.
    Left off inside ``torch.use_deterministic_algorithms`` (``helpers.training``), whose runs need fixed kernels.
    """
    if torch.device(device).type != "cuda" or torch.are_deterministic_algorithms_enabled():
        yield
        return
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved
