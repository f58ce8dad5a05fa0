"""Super-resolution data (EDSR): 640x360 -> 1280x720 patches, from frame pairs and from photos."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..cache import HIGH_RES_SCALE
from ..degrade import quantize
from .frames import PairedFrameDataset
from .pairs import Pair
from .photos import PhotoPatches


class SuperResolutionDataset(PairedFrameDataset):
    """EDSR: sharp 640x360 (the 1280x720 frame downscaled with antialiasing) -> sharp 1280x720.

    ``patch_size`` is the low-res patch; the target patch is exactly ``scale`` times larger.
    """

    input_view = ("sharp", 1)
    target_view = ("sharp", HIGH_RES_SCALE)

    def __init__(
        self,
        pairs: Sequence[Pair],
        patch_size: int | None = 64,
        scale: int = HIGH_RES_SCALE,
        augment: bool = True,
        seed: int = 0,
        samples_per_frame: int = 1,
        cache_dir: str | os.PathLike | None = None,
        colour_augment: float = 0.0,
    ) -> None:
        if scale != HIGH_RES_SCALE:
            raise ValueError(f"only scale {HIGH_RES_SCALE} (640x360 -> 1280x720) is supported, got {scale}")
        super().__init__(pairs, patch_size, augment, seed, samples_per_frame, cache_dir, colour_augment)


class PhotoSuperResolutionDataset(PhotoPatches):
    """EDSR: (low-res, high-res) patches; the low-res side is ``patch_size``, made with a drawn downscale kernel."""

    def _sharp_side(self) -> int:
        return self.patch_size * HIGH_RES_SCALE

    def _degrade(self, sharp: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        return quantize(self.degradations.downscale(sharp, rng)), sharp
