"""Data for the whole cascade: full-frame evaluation pairs, and end-to-end training items with intermediate targets."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch

from ..cache import HIGH_RES_SCALE
from .frames import BLURRY_VIEW, PairedFrameDataset
from .pairs import Pair
from .patches import PhotoDegradations
from .photos import BLUR_MARGIN, PhotoPatches, _centre


class PipelineDataset(PairedFrameDataset):
    """The whole cascade: blurry 1280x720 downscaled to 640x360 -> sharp 1280x720, full frames, no augmentation."""

    input_view = BLURRY_VIEW
    target_view = ("sharp", HIGH_RES_SCALE)

    def __init__(self, pairs: Sequence[Pair], cache_dir: str | os.PathLike | None = None) -> None:
        super().__init__(pairs, patch_size=None, augment=False, seed=0, cache_dir=cache_dir)


def cascade_targets(sharp: torch.Tensor, blurry_low: torch.Tensor, sharp_low: torch.Tensor) -> dict[str, torch.Tensor]:
    """The targets of end-to-end cascade training (``helpers.cascade``): the sharp high-res patch ("final"),
    the noise-free blurry low-res patch (the DnCNN's target) and the sharp low-res patch (the UNet's)."""
    return {"final": sharp, "blurry_lr": blurry_low, "sharp_lr": sharp_low}


class CascadeDataset(PairedFrameDataset):
    """The whole cascade for end-to-end training, on paired frames: (noisy blurry 640x360 patch, ``cascade_targets``).

    The blurry patch (the blurry 1280x720 frame downscaled, as for the UNet) gets ``DenoiseDataset``'s noise
    (``sigma`` fixed or a range, none for ``clean_fraction`` of the items), rounded to 8 bits; the sharp
    low-res target is the 2x area average of the sharp high-res patch, as the frame cache makes 640x360
    frames. ``patch_size`` is the low-res side. ``PhotoCascadeDataset`` makes the same items from photos.
    """

    input_view = BLURRY_VIEW
    target_view = ("sharp", HIGH_RES_SCALE)

    def __init__(
        self,
        pairs: Sequence[Pair],
        patch_size: int | None = 64,
        sigma: float | tuple[float, float] = (0.0, 55.0),
        augment: bool = True,
        seed: int = 0,
        samples_per_frame: int = 1,
        cache_dir: str | os.PathLike | None = None,
        clean_fraction: float = 0.0,
        colour_augment: float = 0.0,
    ) -> None:
        super().__init__(pairs, patch_size, augment, seed, samples_per_frame, cache_dir, colour_augment)
        self.sigma, self.clean_fraction = sigma, clean_fraction
        self.degradations = PhotoDegradations(sigma=sigma, clean_fraction=clean_fraction)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        blurry, sharp = super().__getitem__(index)
        rng = np.random.default_rng([self.seed, self.epoch, index, 2])  # apart from the patch/augment stream
        noisy = self.degradations.noise(blurry.numpy(), rng)
        sharp_low = torch.nn.functional.avg_pool2d(sharp[None], HIGH_RES_SCALE)[0]
        return torch.from_numpy(noisy), cascade_targets(sharp, blurry, sharp_low)


class PhotoCascadeDataset(PhotoPatches):
    """The whole cascade, degraded in its order: blur at high resolution, downscale 2x, noise, 8-bit.

    Items are (input, sharp high-res target), or with ``intermediates`` (input, ``cascade_targets``): also
    the noise-free blurry low-res patch (the denoiser's target) and the sharp low-res patch (the
    deblurrer's target), both downscaled with the same kernel as the input. ``build_photo_dataset("cascade")``
    is this dataset with intermediates, for end-to-end training.
    """

    margin = HIGH_RES_SCALE * BLUR_MARGIN

    def __init__(self, *args: Any, intermediates: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.intermediates = intermediates

    def _sharp_side(self) -> int:
        return self.patch_size * HIGH_RES_SCALE

    def _degrade(self, sharp: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        keep = self.degradations.sharp_fraction and rng.random() < self.degradations.sharp_fraction
        blurry = sharp if keep else self.degradations.blur(sharp, rng, scale=HIGH_RES_SCALE)
        sharp, blurry = _centre(sharp, self.margin), _centre(blurry, self.margin)
        kernel_rng_state = rng.bit_generator.state
        blurry_low = self.degradations.downscale(blurry, rng)
        rng.bit_generator.state = kernel_rng_state  # the same kernel for the sharp low-res target
        sharp_low = self.degradations.downscale(sharp, rng)
        noisy = self.degradations.noise(blurry_low, rng)
        return (noisy, sharp, blurry_low, sharp_low) if self.intermediates else (noisy, sharp)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...] | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        items = super().__getitem__(index)
        return (items[0], cascade_targets(*items[1:])) if self.intermediates else items


class PhotoCascadeTrainingDataset(PhotoCascadeDataset):
    """``PhotoCascadeDataset`` with its intermediate targets: what end-to-end cascade training needs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, intermediates=True, **kwargs)
