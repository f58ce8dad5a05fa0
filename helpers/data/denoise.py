"""Denoising data (DnCNN): noisy -> clean patches, from frame pairs and from photos."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from ..degrade import add_gaussian_noise
from .frames import BLURRY_VIEW, PairedFrameDataset, View
from .pairs import Pair
from .patches import _check_probability
from .photos import BLUR_MARGIN, PhotoPatches, _centre


class DenoiseDataset(PairedFrameDataset):
    """DnCNN: sharp 640x360 + white Gaussian noise -> sharp. ``sigma`` (0-255 scale) is fixed or a (low, high) range.

    ``clean_fraction`` is the probability that an item gets no noise at all: the cascade runs the
    denoiser on every frame, and one that never saw a clean patch smooths the texture of clean frames.
    ``blurry_fraction`` is the probability that an item's clean image is the pair's blurry frame
    instead of the sharp one: in the cascade the denoiser's input is a noisy *blurry* frame, so
    its training should include such content, not sharp patches alone.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        patch_size: int | None = 64,
        sigma: float | tuple[float, float] = 25.0,
        augment: bool = True,
        seed: int = 0,
        samples_per_frame: int = 1,
        cache_dir: str | os.PathLike | None = None,
        clean_fraction: float = 0.0,
        blurry_fraction: float = 0.0,
        colour_augment: float = 0.0,
    ) -> None:
        _check_probability("clean_fraction", clean_fraction)
        _check_probability("blurry_fraction", blurry_fraction)
        self.blurry_fraction = blurry_fraction
        super().__init__(pairs, patch_size, augment, seed, samples_per_frame, cache_dir, colour_augment)
        self.sigma = sigma
        self.clean_fraction = clean_fraction

    def _views(self) -> list[View]:
        return super()._views() + ([BLURRY_VIEW] if self.blurry_fraction else [])

    def _choose_frames(self, index: int, rng: np.random.Generator) -> list[np.ndarray]:
        if self.blurry_fraction and rng.random() < self.blurry_fraction:
            (blurry,) = self.frames.get(index // self.samples_per_frame, [BLURRY_VIEW])
            return [blurry, blurry]
        return super()._choose_frames(index, rng)

    def _make_input(self, target_like: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        sigma = rng.uniform(*self.sigma) if isinstance(self.sigma, (tuple, list)) else self.sigma
        if self.clean_fraction and rng.random() < self.clean_fraction:
            sigma = 0.0
        return torch.from_numpy(add_gaussian_noise(target_like.numpy(), sigma, rng))


class PhotoDenoiseDataset(PhotoPatches):
    """DnCNN: (noisy, clean) patches; ``blurry_fraction`` of the clean patches are blurred first."""

    @property
    def margin(self) -> int:  # type: ignore[override]
        return BLUR_MARGIN if self.degradations.blurry_fraction else 0

    def _degrade(self, sharp: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        blurry = self.degradations.blurry_fraction and rng.random() < self.degradations.blurry_fraction
        clean = _centre(self.degradations.blur(sharp, rng) if blurry else sharp, self.margin)
        return self.degradations.noise(clean, rng), clean
