"""Calibrate the deblur gate for a UNet on sharp photos: where its correction should start to be kept.

The Restorer keeps the UNet's correction in proportion to ``helpers.gates.deblur_measure`` (the
correction's size over the frame's detail), through a ramp (low, high). How much a network sharpens
frames that are already sharp is its own, so each UNet needs its own ramp. This measures it: every
photo (its centre square, up to 500 px, area-downscaled 2x like a 640x360 frame from a larger sensor)
goes through the UNet sharp, with a synthetic camera-shake trajectory and, given kernels, with a real
kernel. For each ramp (low, 2 x low) of a geometric grid it scores how much of the correction the sharp
versions keep on average, and the mean PSNR gain of the gated output over the input on the blurred ones.
The chosen ramp is the lowest at which the sharp photos keep at most ``SHARP_SHARE`` (1%) of the correction:
sharp frames are left alone, and as much of the deblurring as that allows is kept for mildly blurred ones.
``python -m helpers calibrate-deblur`` writes it into the UNet's weights file (``deblur_ramp``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, load_weights, save_checkpoint
from .degrade import downscale, kernel_blur, motion_blur
from .gates import checked_ramp, deblur_measure, ramp_weights
from .inference import pick_device
from .io import float_image, image_to_tensor, read_image, uint8_image
from .metrics import psnr

SHARP_SHARE = 0.01  # the most of the correction the sharp photos may keep, on average
RAMP_LOWS = tuple(float(low) for low in 0.01 * 2 ** (np.arange(13) / 2))  # 0.01 ... 0.64, steps of sqrt(2)
CROP = 500
MIN_SIDE = 64  # smaller photos are skipped: a 32x32 frame says little about how a UNet treats frames
BLUR_EXTENT = 0.025  # synthetic trajectories span up to 2.5% of the crop's side, as the data's GOPRO-style blur


@dataclass(frozen=True)
class Calibration:
    """The chosen ramp and, per ramp tried, the blurred photos' mean gain (dB) and the sharp photos' mean share."""

    ramp: tuple[float, float]
    always_gain: float  # mean gain with all of the correction kept
    table: list[dict]
    photos: int  # photos measured (unreadable and tiny ones are skipped)


def _photo_views(image: np.ndarray, index: int, kernels: Sequence[np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """The photo's centre square, sharp and blurred, each 2x area-downscaled to 8 bits."""
    height, width = image.shape[:2]
    side = min(height, width, CROP) // 2 * 2
    top, left = (height - side) // 2, (width - side) // 2
    sharp = float_image(image[top : top + side, left : left + side])
    views = {"sharp": sharp, "synthetic": motion_blur(sharp, np.random.default_rng([seed, index]), max_shift=BLUR_EXTENT * side)}
    if kernels:
        views["kernel"] = kernel_blur(sharp, kernels[index % len(kernels)])
    return {name: uint8_image(downscale(view, 2)) for name, view in views.items()}


def calibrate_deblur_ramp(
    unet: nn.Module, photos: Sequence[Path], kernels: Sequence[np.ndarray] = (), seed: int = 0, device: str = "auto"
) -> Calibration:
    """Measure ``unet`` on ``photos`` (sharp, and blurred) and choose its deblur gate's ramp (module docstring)."""
    if not photos:
        raise ValueError("calibrate_deblur_ramp: no photos given")
    target_device = pick_device(device)
    unet = unet.to(target_device).eval()
    gains: dict[str, list[torch.Tensor]] = {}  # view -> per photo, PSNR gain at each ramp low (and "always" last)
    shares: list[torch.Tensor] = []
    skipped: list[str] = []
    for index, path in enumerate(tqdm(photos, desc="calibrating", unit="photo")):
        try:
            image = read_image(path)
        except (OSError, ValueError) as error:  # a bad photo is skipped and counted, as training sources do
            skipped.append(str(error).splitlines()[0])
            continue
        if min(image.shape[:2]) < MIN_SIDE:
            skipped.append(f"{path}: smaller than {MIN_SIDE}x{MIN_SIDE} pixels")
            continue
        views = _photo_views(image, index, kernels, seed)
        target = image_to_tensor(views["sharp"]).to(target_device)
        for name, view in views.items():
            before = image_to_tensor(view).to(target_device)
            with torch.inference_mode():
                after = unet(before).clamp(0, 1)
            measure = deblur_measure(before, after)
            levels = [ramp_weights(measure, (low, 2 * low)) for low in RAMP_LOWS]
            if name == "sharp":
                shares.append(torch.cat(levels).cpu())
                continue
            outputs = [torch.lerp(before, after, level.view(-1, 1, 1, 1)) for level in levels] + [after]
            gains.setdefault(name, []).append(torch.stack([psnr(output, target) for output in outputs]).cpu() - psnr(before, target).cpu())
    if skipped:
        warnings.warn(f"calibration skipped {len(skipped)} of {len(photos)} photos (first: {skipped[0]})", stacklevel=2)
    if not shares:
        raise ValueError(f"calibrate_deblur_ramp: none of the {len(photos)} photos could be used (first: {skipped[0]})")
    per_view = {name: torch.stack(values).mean(dim=0) for name, values in gains.items()}
    blurred = torch.stack(list(per_view.values())).mean(dim=0)
    sharp_share = torch.stack(shares)
    table = []
    for position, low in enumerate(RAMP_LOWS):
        row = {"ramp": f"({low:.3f}, {2 * low:.3f})", "blurred gain (dB)": f"{float(blurred[position]):+.3f}"}
        row.update({f"{name} gain (dB)": f"{float(values[position]):+.3f}" for name, values in per_view.items()})
        row["sharp photos: mean share"] = f"{float(sharp_share[:, position].mean()):.3f}"
        row["sharp photos touched"] = f"{int((sharp_share[:, position] > 0).sum())} of {len(shares)}"
        table.append(row)
    sharp_means = sharp_share.mean(dim=0)
    # The lowest ramp that leaves sharp photos alone; none does (the UNet sharpens them past every ramp): the top.
    chosen = next((position for position in range(len(RAMP_LOWS)) if float(sharp_means[position]) <= SHARP_SHARE),
                  len(RAMP_LOWS) - 1)
    low = RAMP_LOWS[chosen]
    return Calibration((low, 2 * low), float(blurred[-1]), table, len(shares))


def recorded_or_calibrated_ramp(unet_weights: str | Path, photos: Sequence[Path], **options) -> tuple[float, float]:
    """The deblur ramp ``unet_weights`` records, else one measured for it on ``photos`` (``calibrate_deblur_ramp``
    with ``options``): a UNet fresh from training has none yet, and the fallback was measured for another network.
    The file is read once, for the ramp and the network."""
    unet = load_weights(unet_weights, expected_name="unet")
    return unet.deblur_ramp or calibrate_deblur_ramp(unet.model, photos, **options).ramp


def record_deblur_ramp(unet_weights: str | Path, ramp: tuple[float, float], output: str | Path) -> Path:
    """Write ``unet_weights`` to ``output`` (atomically; may be the same file) with ``deblur_ramp`` set to ``ramp``."""
    state = load_checkpoint(unet_weights)
    if state["arch"].get("name") != "unet":
        raise ValueError(f"{unet_weights}: holds a {state['arch'].get('name')!r} network, not a UNet")
    state.pop("format", None)
    return save_checkpoint(output, {**state, "deblur_ramp": checked_ramp(ramp, f"{unet_weights}: ramp")})
