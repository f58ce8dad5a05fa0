"""Deblurring data (UNet): blurry -> sharp 640x360 patches, from frame pairs (with extra pairs) and from photos."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from ..degrade import motion_blur, quantize
from ..io import float_image, image_to_tensor, tensor_to_image, uint8_image
from .frames import BLURRY_VIEW, PairedFrameDataset, _Frames
from .pairs import Pair
from .patches import SYNTHETIC_BLUR_SHIFT, SYNTHETIC_BLUR_SMALLEST, _check_probability
from .photos import BLUR_MARGIN, PhotoPatches, _centre


class DeblurDataset(PairedFrameDataset):
    """UNet: blurry 640x360 -> sharp 640x360. With ``extra_pairs`` (e.g. RealBlur-J), each item
    comes from them with probability ``extra_ratio`` (a random extra pair), else from ``pairs``.

    ``synthetic_blur`` is the probability that an item's input is instead a fresh ``motion_blur``
    of its sharp patch (GOPRO's extent at this scale, 8-bit like stored frames): a set with few
    frames then still shows the network a new blur every time, instead of memorising a few.
    """

    input_view = BLURRY_VIEW
    target_view = ("sharp", 1)

    def __init__(
        self,
        pairs: Sequence[Pair],
        patch_size: int | None = 64,
        augment: bool = True,
        seed: int = 0,
        extra_pairs: Sequence[Pair] | None = None,
        extra_ratio: float = 0.0,
        samples_per_frame: int = 1,
        cache_dir: str | os.PathLike | None = None,
        synthetic_blur: float = 0.0,
        colour_augment: float = 0.0,
    ) -> None:
        super().__init__(pairs, patch_size, augment, seed, samples_per_frame, cache_dir, colour_augment)
        _check_probability("synthetic_blur", synthetic_blur)
        self.synthetic_blur = synthetic_blur
        _check_probability("extra_ratio", extra_ratio)
        if extra_ratio > 0 and not extra_pairs:
            raise ValueError("extra_ratio > 0 needs extra_pairs")
        self.extra_ratio = extra_ratio
        self.extra = _Frames(extra_pairs, [self.input_view, self.target_view], cache_dir) if extra_ratio > 0 else None

    def _choose_frames(self, index: int, rng: np.random.Generator) -> list[np.ndarray]:
        if self.extra is not None and rng.random() < self.extra_ratio:
            return self.extra.get(int(rng.integers(len(self.extra))), [self.input_view, self.target_view])
        return super()._choose_frames(index, rng)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        blurry, sharp = super().__getitem__(index)
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])  # apart from the patch/augment stream
        if self.synthetic_blur and rng.random() < self.synthetic_blur:
            extent = SYNTHETIC_BLUR_SHIFT * rng.uniform(SYNTHETIC_BLUR_SMALLEST, 1.0)
            blurred = motion_blur(float_image(tensor_to_image(sharp)), rng, max_shift=extent)
            blurry = image_to_tensor(uint8_image(blurred))[0]
        return blurry, sharp


class PhotoDeblurDataset(PhotoPatches):
    """UNet: (blurry, sharp) patches at 640x360 scale, 8-bit inputs; ``sharp_fraction`` of inputs left sharp."""

    margin = BLUR_MARGIN

    def _degrade(self, sharp: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        keep = self.degradations.sharp_fraction and rng.random() < self.degradations.sharp_fraction
        blurry = sharp if keep else self.degradations.blur(sharp, rng)
        return quantize(_centre(blurry, self.margin)), _centre(sharp, self.margin)
