"""Input validation shared by models, metrics and losses: one clear ValueError per problem."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import torch

# Values may overshoot [0, 1] by float rounding (e.g. after a resize); anything beyond this is a caller bug.
RANGE_TOLERANCE = 1e-3

_range_checked_upstream = contextvars.ContextVar("range_checked_upstream", default=False)


@contextlib.contextmanager
def range_checked_upstream() -> Iterator[None]:
    """Leave the value-range check out of ``check_image_batch`` inside this block (shapes and types are still checked).

    For loops that checked each batch once at the edge, in host memory: on a GPU the range check
    reads two numbers back from the device, a synchronisation per network and loss term per step.
    """
    token = _range_checked_upstream.set(True)
    try:
        yield
    finally:
        _range_checked_upstream.reset(token)


def check_image_batch(
    images: torch.Tensor, name: str = "input", min_size: int = 1, check_range: bool = True, tolerance: float = RANGE_TOLERANCE
) -> None:
    """Raise ValueError unless ``images`` is a float (N, 3, H, W) tensor in [0, 1] (give or take ``tolerance``)
    with H, W >= min_size."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, received {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name}: expected shape (N, 3, H, W), received shape {tuple(images.shape)}")
    if images.shape[1] != 3:
        raise ValueError(f"{name}: expected 3 (RGB) channels, received {images.shape[1]} channels")
    if not images.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor in [0, 1], received dtype {images.dtype}")
    height, width = images.shape[-2:]
    if min(height, width) < min_size:
        raise ValueError(f"{name}: expected height and width >= {min_size}, received {height}x{width}")
    if check_range and images.numel() and not _range_checked_upstream.get():
        low, high = torch.aminmax(images.detach())
        if bool((low < -tolerance) | (high > 1 + tolerance)):  # one read from the device, not two
            raise ValueError(f"{name}: expected values in [0, 1], received values in [{float(low):.4g}, {float(high):.4g}]")


def check_same_shape(prediction: torch.Tensor, target: torch.Tensor) -> None:
    """Raise ValueError when prediction and target shapes differ."""
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction and target must have the same shape: expected {tuple(target.shape)} (target), "
            f"received {tuple(prediction.shape)} (prediction)"
        )
