"""Patches of frame pairs: the frames of a dataset's pairs and ``PairedFrameDataset``, base of the stage datasets.

Item ``i`` of epoch ``e`` is a random patch of a frame pair with paired augmentation, drawn only from
``np.random.default_rng([seed, e, i])``: identical across DataLoader worker counts and exact on resume.
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..cache import DecodedFrames, FrameCache
from ..io import ImageReadError, image_to_tensor
from .pairs import Pair
from .patches import _augment, _check_probability, _recolour


View = tuple[str, int]  # (role "sharp" | "blurry", scale 1 = 640x360 | 2 = 1280x720)
BLURRY_VIEW: View = ("blurry", 1)


class _Frames:
    """The frames of some pairs at the views a dataset needs, cached on disk or decoded per access."""

    def __init__(self, pairs: Sequence[Pair], views: Sequence[View], cache_dir: str | os.PathLike | None) -> None:
        if not pairs:
            raise ValueError("a dataset needs at least one pair")
        fits = {pair.fit for pair in pairs}
        if len(fits) > 1:
            raise ValueError(f"pairs of one dataset must share a frame fit, got {sorted(fits)} (pass extra data as extra_pairs)")
        fit = fits.pop()
        self.stores = {}
        for role, scale in dict.fromkeys(views):
            files = [getattr(pair, role) for pair in pairs]
            self.stores[role, scale] = (
                DecodedFrames(files, scale, fit) if cache_dir is None else FrameCache(files, scale, cache_dir, role, fit=fit)
            )
        readable = np.logical_and.reduce([store.readable for store in self.stores.values()])
        self.indices = np.flatnonzero(readable)
        if not len(self.indices):
            raise ValueError(f"no readable frames among {len(pairs)} pairs (first: {pairs[0].sharp})")

    def __len__(self) -> int:
        return len(self.indices)

    def get(self, position: int, views: Sequence[View]) -> list[np.ndarray]:
        """Frames at ``views`` of the pair at ``position``; an unreadable pair is skipped (warning) for the next."""
        for attempt in range(len(self.indices)):
            index = self.indices[(position + attempt) % len(self.indices)]
            try:
                return [self.stores[view][index] for view in views]
            except ImageReadError as error:
                warnings.warn(f"skipping unreadable frame: {error}", stacklevel=3)
        raise ValueError("no readable frames left in this dataset")


class PairedFrameDataset(Dataset):
    """Base of the stage datasets: (input view, target view) frames -> random paired patches.

    ``patch_size`` is the input patch side (None: whole frames); the target patch is scaled by the
    target/input scale ratio. Item ``i`` uses ``np.random.default_rng([seed, epoch, i])`` only, so
    the data is the same for any worker count and resumes exactly; call ``set_epoch`` every epoch.
    Each frame is visited ``samples_per_frame`` times per epoch. ``cache_dir`` switches to a
    ``FrameCache`` there (decode once) instead of decoding images for every sample. ``colour_augment``
    is the probability that a patch pair is recoloured (``_recolour``) after the geometric augmentation.
    """

    input_view: View = ("sharp", 1)
    target_view: View = ("sharp", 1)

    def __init__(
        self,
        pairs: Sequence[Pair],
        patch_size: int | None = 64,
        augment: bool = True,
        seed: int = 0,
        samples_per_frame: int = 1,
        cache_dir: str | os.PathLike | None = None,
        colour_augment: float = 0.0,
    ) -> None:
        _check_probability("colour_augment", colour_augment)
        self.patch_size, self.augment, self.seed = patch_size, augment, seed
        self.colour_augment = colour_augment
        self.samples_per_frame = samples_per_frame
        self.epoch = 0
        self.frames = _Frames(pairs, self._views(), cache_dir)

    def _views(self) -> list[View]:
        """Every view an item may read (the frame store decodes or caches exactly these)."""
        return [self.input_view, self.target_view]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random patches and augmentations items are drawn from."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.frames) * self.samples_per_frame

    def _choose_frames(self, index: int, rng: np.random.Generator) -> list[np.ndarray]:
        return self.frames.get(index // self.samples_per_frame, [self.input_view, self.target_view])

    def _make_input(self, target_like: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        return target_like

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        source, target = self._choose_frames(index, rng)
        ratio = self.target_view[1] // self.input_view[1]
        if self.patch_size is not None:
            height, width = source.shape[:2]
            if self.patch_size > min(height, width):
                raise ValueError(f"patch_size {self.patch_size} is larger than a {width}x{height} frame")
            top = int(rng.integers(0, height - self.patch_size + 1))
            left = int(rng.integers(0, width - self.patch_size + 1))
            source = source[top : top + self.patch_size, left : left + self.patch_size]
            size = self.patch_size * ratio
            target = target[top * ratio : top * ratio + size, left * ratio : left * ratio + size]
        if self.augment:
            source, target = _augment([source, target], rng)
        if self.colour_augment and rng.random() < self.colour_augment:
            source, target = _recolour([source, target], rng)
        source, target = np.array(source), np.array(target)  # own, writable copies (not read-only cache pages)
        return self._make_input(image_to_tensor(source)[0], rng), image_to_tensor(target)[0]
