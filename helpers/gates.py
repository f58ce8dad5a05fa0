"""The noise and deblur gates: how much of DnCNN's and of the UNet's correction each frame gets, from 0 to all of it.

A network trained to remove noise or blur still changes frames that have none, and there it costs quality:
the gates keep a stage's correction only as far as a frame asks for it. Each gate measures one number per
frame and weighs the correction by a ramp (``ramp_weights``): none below the ramp's start, all of it above
its top, linear between. The Restorer (``helpers.pipeline``) applies them, ``helpers.calibrate`` measures a
UNet's deblur ramp with them, and training validation runs the gated cascade.

Noise gate: the frame's noise level is estimated (``helpers.metrics.noise_sigma``) and DnCNN's correction
weighted by ``DENOISE_RAMP`` (0-255 scale). A blind DnCNN smooths a clean photo (-1.6 dB on clean McMaster with
the demo weights) and helps little below sigma 5 (-1.7 dB at sigma 3, +0.7 dB at 5, +4.2 dB at 10), and real
640x360 camera frames read about 0.6/255, so on them the stage is skipped, which also saves its time.

Deblur gate: the UNet's correction is measured against the frame's own detail, mean |UNet(x) - x| over the
mean gradient magnitude of x (``deblur_measure``), and weighted by a ramp (``deblur_weights``). How much a
network sharpens sharp frames is its own, so the ramp comes with the UNet's weights file (``deblur_ramp``,
read by ``helpers.checkpoint.load_weights``; ``DEBLUR_RAMP`` when it records none), measured for it on sharp
photos by ``helpers.calibrate``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .metrics import noise_sigma, spatial_gradient

__all__ = ["DENOISE_RAMP", "DEBLUR_RAMP", "ramp_weights", "denoise_weights", "deblur_maps", "deblur_ratio", "deblur_measure",
           "deblur_weights", "checked_ramp"]

# Estimated noise sigma (0-255 scale) where DnCNN's correction starts to be applied, and where all of it is.
DENOISE_RAMP = (4.0, 6.0)
# The UNet's correction against the frame's detail (``deblur_weights``) where it starts to be kept, and where all
# of it is, for a UNet whose weights file records none (``deblur_ramp``, see ``helpers.checkpoint.LoadedWeights``).
# How much a network sharpens sharp frames is its own: the bundled files record the ramp measured for them on
# training photos.
DEBLUR_RAMP = (0.05, 0.10)


def ramp_weights(values: torch.Tensor, ramp: tuple[float, float]) -> torch.Tensor:
    """0 where ``values`` are below ``ramp[0]``, 1 above ``ramp[1]``, linear between: how both gates weigh a stage."""
    low, high = ramp
    return ((values - low) / (high - low)).clamp(0, 1)


def denoise_weights(
    images: torch.Tensor, ramp: tuple[float, float] = DENOISE_RAMP, device: torch.device | str | None = None
) -> torch.Tensor:
    """Share of DnCNN's correction each frame gets: 0 below ``ramp[0]``, 1 above ``ramp[1]`` estimated sigma; (N,).

    The noise is estimated on ``device`` (default: the images').
    """
    return ramp_weights(noise_sigma(images, device) * 255, ramp)


def deblur_measure(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """How much of a correction each frame asks for: the correction's mean size over the mean gradient magnitude
    (normalised Sobel) of the grey input; (N,).

    A blurred frame asks for a correction of the order of the edges it still has, a sharp one for little, and a
    network trained to deblur still sharpens sharp frames (the cost on clean photos).
    """
    correction, detail = deblur_maps(before, after)
    return deblur_ratio(correction.flatten(1).mean(dim=1), detail.flatten(1).mean(dim=1))


def deblur_maps(before: torch.Tensor, after: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two per-pixel maps ``deblur_measure`` compares, (N, H, W) each: the correction's size (mean over the
    channels) and the grey input's gradient magnitude. A tiled run sums them over each tile's core."""
    detail = spatial_gradient(before.mean(dim=1, keepdim=True)).abs().sum(dim=2)[:, 0]
    return (after - before).abs().mean(dim=1), detail


def deblur_ratio(correction: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
    """``deblur_measure`` from the means of ``deblur_maps`` per frame: the correction over the detail; (N,)."""
    return correction / detail.clamp_min(1e-6)


def deblur_weights(
    before: torch.Tensor, after: torch.Tensor, ramp: tuple[float, float] = DEBLUR_RAMP
) -> torch.Tensor:
    """Share of the UNet's correction each frame keeps: 0 below ``ramp[0]`` of ``deblur_measure``, 1 above ``ramp[1]``; (N,)."""
    return ramp_weights(deblur_measure(before, after), ramp)


def checked_ramp(ramp: Sequence[float], name: str) -> tuple[float, float]:
    """``ramp`` as (low, high) floats with 0 <= low < high, or a ValueError naming it."""
    try:
        low, high = (float(value) for value in ramp)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (low, high), received {ramp!r}") from None
    if not 0 <= low < high < math.inf:
        raise ValueError(f"{name}: expected 0 <= low < high, received ({low}, {high})")
    return low, high
