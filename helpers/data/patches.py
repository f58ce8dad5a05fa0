"""Operations on paired patches shared by the frame and photo datasets: augmentation and degradation.

Paired flips, rotations and recolouring draw from the item's own generator, so input and target
change alike; ``PhotoDegradations`` makes noisy, blurry and 2x smaller inputs from sharp patches.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..cache import FRAME_LONG, HIGH_RES_SCALE
from ..degrade import DOWNSCALE_KERNELS, add_gaussian_noise, downscale_with, quantize, random_blur


# Blur extent of synthetic GOPRO-style blur on 640x360 frames: 2.5% of the long side, as motion_blur uses at 1280x720.
SYNTHETIC_BLUR_SHIFT = 0.025 * FRAME_LONG
MAX_KERNEL_BYTES = 64 * 2**20  # what a kernels .npz may inflate to (a 255x255 float64 kernel takes 0.5 MB)
# Each synthetic blur's extent limit is drawn in [SMALLEST, 1] x that, so slight blurs are common too: a UNet
# trained on strong blurs only made slight ones (a 250-px photo's) worse.
SYNTHETIC_BLUR_SMALLEST = 0.25


def _augment(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random flips and 90-degree rotation on every array (quarter turns only when square)."""
    flip_x, flip_y = rng.random(2) < 0.5
    square = arrays[0].shape[0] == arrays[0].shape[1]
    turns = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
    result = []
    for array in arrays:
        array = array[:, ::-1] if flip_x else array
        array = array[::-1] if flip_y else array
        result.append(np.rot90(array, turns))
    return result


def _check_probability(name: str, value: float) -> None:
    """Reject a probability option outside [0, 1] with a message naming it."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


# Recolouring keeps each channel's gain in [COLOUR_GAIN_LOW, 1] (the largest exactly 1, so brightness stays).
COLOUR_GAIN_LOW = 0.4


def _recolour(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random channel order and per-channel gains on every uint8 array.

    Widens the colours a small training set shows (grey textures get tints, orange becomes green or
    blue): a denoiser trained on few colour photos otherwise takes saturated colours for noise and
    greys them. Both operations commute with per-channel blur and white noise, so pairs stay valid.
    Hand-written because torchvision's ColorJitter draws from torch's global generator, not the item's.
    """
    order = rng.permutation(3)
    gains = rng.uniform(COLOUR_GAIN_LOW, 1.0, size=3).astype(np.float32)
    gains /= gains.max()
    return [np.round(array[..., order] * gains).astype(np.uint8) for array in arrays]


def load_blur_kernels(path: str | os.PathLike) -> list[np.ndarray]:
    """Blur kernels from an ``.npz`` file (each array 2-D, finite, non-negative, normalised here to sum 1).

    NaN or infinite values are refused with the rest: NaN passes ``min() < 0`` and ``sum() <= 0`` unseen and
    turns every blur it makes into NaN. What the archive inflates to is bounded before it is read.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
        if inflated > MAX_KERNEL_BYTES:
            raise ValueError(f"its arrays inflate to {inflated:,} bytes; blur kernels take at most {MAX_KERNEL_BYTES:,}")
        with np.load(path) as kernels:
            arrays = [np.asarray(kernels[name], dtype=np.float32) for name in sorted(kernels.files)]
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: not a readable .npz file of blur kernels ({reason})") from None
    bad = [i for i, k in enumerate(arrays) if k.ndim != 2 or not k.size or not np.isfinite(k).all() or k.min() < 0 or k.sum() <= 0]
    if not arrays:
        raise ValueError(f"{path}: holds no blur kernels")
    if bad:
        raise ValueError(f"{path}: expected 2-D finite non-negative kernels with a positive sum; {len(bad)} of "
                         f"{len(arrays)} are not (the first: number {bad[0] + 1} in name order)")
    return [k / k.sum() for k in arrays]


@dataclass
class PhotoDegradations:
    """How a ``photos:`` dataset degrades its sharp patches (probabilities in [0, 1]; sigma on the 0-255 scale).

    ``blurry_fraction``: DnCNN patches blurred before the noise (the cascade denoises blurry frames);
    ``sharp_fraction``: UNet / cascade patches left unblurred (no stage may damage a sharp picture);
    ``kernels``: real blur kernels used for ``kernel_fraction`` of the blurs, the rest synthetic
    trajectories; ``nonuniform_fraction``: blurs that vary across the patch; ``downscale_kernels``:
    the mix the 2x low-resolution inputs are made with (``helpers.degrade.DOWNSCALE_KERNELS``; a name given
    twice is drawn twice as often).
    """

    sigma: float | tuple[float, float] = (0.0, 55.0)
    clean_fraction: float = 0.0
    blurry_fraction: float = 0.0
    sharp_fraction: float = 0.0
    kernels: Sequence[np.ndarray] = ()
    kernel_fraction: float = 0.5
    nonuniform_fraction: float = 0.0
    downscale_kernels: Sequence[str] = DOWNSCALE_KERNELS

    def __post_init__(self) -> None:
        for name in ("clean_fraction", "blurry_fraction", "sharp_fraction", "kernel_fraction", "nonuniform_fraction"):
            _check_probability(name, getattr(self, name))
        unknown = set(self.downscale_kernels) - set(DOWNSCALE_KERNELS)
        if unknown or not self.downscale_kernels:
            raise ValueError(f"downscale_kernels: expected some of {DOWNSCALE_KERNELS}, got {list(self.downscale_kernels)}")

    def noise(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Gaussian noise of a drawn sigma (none for ``clean_fraction`` of the calls), then 8-bit levels."""
        sigma = rng.uniform(*self.sigma) if isinstance(self.sigma, (tuple, list)) else float(self.sigma)
        if self.clean_fraction and rng.random() < self.clean_fraction:
            sigma = 0.0
        return quantize(add_gaussian_noise(image, sigma, rng))

    def blur(self, image: np.ndarray, rng: np.random.Generator, scale: int = 1) -> np.ndarray:
        """Camera-shake blur at ``scale`` x the 640x360 frame's extents (synthetic or real, maybe non-uniform)."""
        return random_blur(image, rng, SYNTHETIC_BLUR_SHIFT * scale, self.kernels, self.kernel_fraction,
                           self.nonuniform_fraction, SYNTHETIC_BLUR_SMALLEST)

    def downscale(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The 2x smaller image, made with a kernel drawn from ``downscale_kernels`` (one named twice: twice as often)."""
        kernel = self.downscale_kernels[int(rng.integers(len(self.downscale_kernels)))]
        return downscale_with(image, HIGH_RES_SCALE, kernel)
