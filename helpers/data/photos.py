"""The ``photos:`` source: sharp photographs at native resolution, and ``PhotoPatches``, base of its datasets.

A ``PhotoLibrary`` holds one split of the photos of several folders; ``PhotoPatches`` cuts random
patches from them and leaves the degradation to its subclass (one per stage, next to that stage's
frame dataset).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..degrade import resize
from ..io import ImageReadError, float_image, list_images, read_image
from .patches import SYNTHETIC_BLUR_SHIFT, PhotoDegradations, _augment, _check_probability, _recolour


# Photos are shrunk by a random factor in [PHOTO_MIN_SCALE, 1] before cutting (never enlarged): a 1024-px photo
# then shows detail at the density of a downscaled 1280x720 frame as well as its own.
PHOTO_MIN_SCALE = 0.5
PHOTO_CACHE_BYTES = 2 * 1024**3  # decoded photos kept in memory per dataset
BLUR_MARGIN = int(np.ceil(SYNTHETIC_BLUR_SHIFT / 2)) + 2  # context cut around a patch before blurring it, at 640x360 scale


@dataclass(frozen=True)
class PhotoFolder:
    """A folder of sharp photographs and its share of the patches drawn from a ``photos:`` source."""

    path: Path
    share: float = 1.0


def parse_photo_folders(argument: str) -> list[PhotoFolder]:
    """``DIR[=SHARE][,DIR2[=SHARE]...]`` -> folders with shares (default 1 each; normalised when drawing)."""
    folders = []
    for part in filter(None, (part.strip() for part in argument.split(","))):
        path, _, share = part.partition("=")
        try:
            value = float(share) if share else 1.0
        except ValueError:
            raise ValueError(f"photos source: share of {path!r} must be a number, got {share!r}") from None
        if not value > 0:
            raise ValueError(f"photos source: share of {path!r} must be positive, got {value}")
        if not Path(path).is_dir():
            raise FileNotFoundError(f"{path}: photo folder not found")
        folders.append(PhotoFolder(Path(path), value))
    if not folders:
        raise ValueError("photos source: expected photos:DIR[=SHARE][,DIR2[=SHARE]...]")
    return folders


def split_photos(
    files: Sequence[Path], val_fraction: float, seed: int, readable: Callable[[Path], bool] | None = None
) -> tuple[list[Path], list[Path]]:
    """(train, val) photos of one folder: a seeded ``val_fraction`` of them held out (at least one of two or more).

    With ``readable``, the held-out photos are the first readable ones of the seeded order: an unreadable one met
    while filling the validation split is left out of both (the caller counts it), so one corrupt photo never
    leaves validation empty. The training split's photos are checked as they are drawn instead.
    """
    n_val = round(len(files) * val_fraction)
    if val_fraction > 0 and len(files) >= 2:
        n_val = min(max(n_val, 1), len(files) - 1)
    held_out, unreadable = set(), set()
    for index in np.random.default_rng(seed).permutation(len(files)).tolist():
        if len(held_out) == n_val:
            break
        (held_out if readable is None or readable(files[index]) else unreadable).add(index)
    val = [f for i, f in enumerate(files) if i in held_out]
    return [f for i, f in enumerate(files) if i not in held_out and i not in unreadable], val


class PhotoLibrary:
    """One split of the photographs of several folders, at native resolution, drawn by folder share.

    Photos are decoded on first use and kept in memory (least recently used dropped beyond
    ``cache_bytes``). An unreadable photo, or one too small for a patch, is skipped for the next one of
    its folder; unreadable ones are counted (``skipped``) and reported once each with a warning, in both
    splits: the validation photos are decoded when the split is made, and an unreadable one gives its place
    to the next photo of the seeded order (``split_photos``), so validation never ends up empty for it.
    """

    def __init__(
        self,
        folders: Sequence[PhotoFolder],
        split: Literal["train", "val"],
        val_fraction: float = 0.05,
        seed: int = 0,
        cache_bytes: int = PHOTO_CACHE_BYTES,
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"unknown split {split!r}; photos sources have train and val")
        self.groups, shares = [], []
        self._unreadable: set[Path] = set()
        for folder in folders:
            train, val = split_photos(list_images(folder.path), val_fraction, seed, self._readable)
            files = train if split == "train" else val
            if files:
                self.groups.append(files)
                shares.append(folder.share)
        if not self.groups:
            raise ValueError(f"no {split} photos in {', '.join(str(f.path) for f in folders)}")
        self.shares = np.asarray(shares, dtype=np.float64) / sum(shares)
        self.cache_bytes = cache_bytes
        self._decoded: OrderedDict[Path, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(files) for files in self.groups)

    @property
    def skipped(self) -> int:
        """How many unreadable photos were met so far."""
        return len(self._unreadable)

    def _readable(self, path: Path) -> bool:
        """Whether a photo decodes (``split_photos`` asks for the ones it holds out); unreadable ones are counted."""
        try:
            read_image(path)
        except ImageReadError as error:
            self._report_unreadable(path, error)
            return False
        return True

    def _report_unreadable(self, path: Path, error: ImageReadError) -> None:
        self._unreadable.add(path)
        warnings.warn(f"skipping unreadable photo ({self.skipped} so far): {error}", stacklevel=4)

    def _decode(self, path: Path) -> np.ndarray | None:
        if path in self._decoded:
            self._decoded.move_to_end(path)
            return self._decoded[path]
        if path in self._unreadable:
            return None
        try:
            photo = read_image(path)
        except ImageReadError as error:
            self._report_unreadable(path, error)
            return None
        self._decoded[path] = photo
        while sum(p.nbytes for p in self._decoded.values()) > self.cache_bytes and len(self._decoded) > 1:
            self._decoded.popitem(last=False)
        return photo

    def draw(self, rng: np.random.Generator, min_side: int) -> np.ndarray:
        """A random photo (uint8 RGB) whose shorter side is at least ``min_side``."""
        files = self.groups[int(rng.choice(len(self.groups), p=self.shares))]
        start = int(rng.integers(len(files)))
        for attempt in range(len(files)):
            photo = self._decode(files[(start + attempt) % len(files)])
            if photo is not None and min(photo.shape[:2]) >= min_side:
                return photo
        raise ValueError(f"no readable photo of at least {min_side}x{min_side} pixels in {files[0].parent}")


def _centre(image: np.ndarray, margin: int) -> np.ndarray:
    return image[margin : image.shape[0] - margin, margin : image.shape[1] - margin] if margin else image


class PhotoPatches(Dataset):
    """Random patches of photographs at native resolution, degraded on the fly: base of the ``photos:`` datasets.

    ``patch_size`` is the network-input side. A sharp patch (``_sharp_side`` plus a ``margin`` of
    context for blurring) is cut from a photo shrunk by a random factor in [``min_scale``, 1] (area
    averaging; never enlarged), flipped/rotated when ``augment``, recoloured with probability
    ``colour_augment``, then degraded by the subclass. Item ``i`` of epoch ``e`` draws everything from
    ``np.random.default_rng([seed, e, i])``: the same for any worker count and on resume, and a
    validation set (never ``set_epoch``-ed) keeps fixed crops and degradations of the training distribution.
    """

    margin = 0

    def __init__(
        self,
        library: PhotoLibrary,
        patch_size: int = 64,
        length: int = 1024,
        seed: int = 0,
        augment: bool = True,
        colour_augment: float = 0.0,
        min_scale: float = PHOTO_MIN_SCALE,
        degradations: PhotoDegradations | None = None,
    ) -> None:
        _check_probability("colour_augment", colour_augment)
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        if length < 1 or patch_size < 1:
            raise ValueError(f"length and patch_size must be positive, got {length} and {patch_size}")
        self.library, self.patch_size, self.length, self.seed = library, patch_size, length, seed
        self.augment, self.colour_augment, self.min_scale = augment, colour_augment, min_scale
        self.degradations = degradations or PhotoDegradations()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random patches and degradations items are drawn from."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def _sharp_side(self) -> int:
        return self.patch_size

    def _sharp_patch(self, rng: np.random.Generator) -> np.ndarray:
        side = self._sharp_side() + 2 * self.margin
        photo = self.library.draw(rng, side)
        shortest = min(photo.shape[:2])
        scale = rng.uniform(max(self.min_scale, side / shortest), 1.0) if side < shortest else 1.0
        region = min(shortest, int(np.ceil(side / scale)))
        top = int(rng.integers(photo.shape[0] - region + 1))
        left = int(rng.integers(photo.shape[1] - region + 1))
        patch = photo[top : top + region, left : left + region]
        patch = resize(patch, side, side, "area") if region != side else patch
        if self.augment:
            (patch,) = _augment([patch], rng)
        if self.colour_augment and rng.random() < self.colour_augment:
            (patch,) = _recolour([patch], rng)
        return float_image(np.ascontiguousarray(patch))

    def _degrade(self, sharp: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        images = self._degrade(self._sharp_patch(rng), rng)  # float32 (H, W, 3): no 8-bit round trip for targets
        return tuple(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)) for image in images)
