"""The validation loop of training: loss, PSNR and SSIM of a model on a validation loader, and the input's PSNR."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..metrics import psnr, ssim
from .config import TrainConfig
from .distributed import DistributedInfo, all_reduce_sum

__all__ = ["PRIMARY", "validate", "amp_settings"]

PRIMARY = "final"  # the prediction / target measured, when a model or dataset gives a dict of them


def _as_target_size(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The input as a baseline prediction: bicubic-upscaled to the target size when they differ (EDSR)."""
    if inputs.shape[-2:] == targets.shape[-2:]:
        return inputs
    return nn.functional.interpolate(inputs, size=targets.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)


def primary(value: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The tensor metrics are measured on: the value itself, or its ``PRIMARY`` entry."""
    return value[PRIMARY] if isinstance(value, Mapping) else value


def each(value: Any, function: Any) -> Any:
    """``function`` applied to a tensor, or to every tensor of a dict (auxiliary outputs or targets)."""
    return {key: function(item) for key, item in value.items()} if isinstance(value, Mapping) else function(value)


def amp_settings(config: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype]:
    """(autocast enabled, dtype): float16 on CUDA by default, bfloat16 on the CPU only when asked."""
    enabled = device.type == "cuda" if config.amp is None else bool(config.amp)
    name = config.amp_dtype or ("float16" if device.type == "cuda" else "bfloat16")
    if name not in ("float16", "bfloat16"):
        raise ValueError(f"amp_dtype: expected 'float16' or 'bfloat16', received {name!r}")
    return enabled, getattr(torch, name)


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: DataLoader,
    loss: nn.Module,
    device: torch.device,
    autocast: tuple[bool, torch.dtype] = (False, torch.float32),
    channels_last: bool = False,
    info: DistributedInfo = DistributedInfo(),
) -> dict[str, float]:
    """Validation loss, PSNR and SSIM (predictions clamped to [0, 1]) and the input's PSNR, averaged per image.

    Per-image sums and the image count are all-reduced across ranks, so every rank gets the same
    averages over the whole validation set.
    """
    was_training = model.training
    model.eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    totals = torch.zeros(5, dtype=torch.float64, device=device)  # loss, psnr, ssim, input psnr, images
    for inputs, targets in loader:
        inputs = inputs.to(device, memory_format=memory_format)
        targets = each(targets, lambda tensor: tensor.to(device))
        with torch.autocast(device.type, dtype=autocast[1], enabled=autocast[0]):
            predictions = model(inputs)
        predictions = each(predictions, torch.Tensor.float)
        clamped, target = primary(predictions).clamp(0, 1), primary(targets)
        count = len(inputs)
        totals += torch.stack(
            [
                loss(predictions, targets).double() * count,
                psnr(clamped, target, reduction="none").double().sum(),
                ssim(clamped, target, reduction="none").double().sum(),
                psnr(_as_target_size(inputs.float(), target), target, reduction="none").double().sum(),
                torch.tensor(float(count), dtype=torch.float64, device=device),
            ]
        )
    model.train(was_training)
    totals = all_reduce_sum(totals, info)
    if totals[4] == 0:
        raise ValueError("the validation dataset is empty")
    loss_sum, psnr_sum, ssim_sum, input_psnr_sum, images = totals.tolist()
    return {"val_loss": loss_sum / images, "val_psnr": psnr_sum / images, "val_ssim": ssim_sum / images, "input_psnr": input_psnr_sum / images}

