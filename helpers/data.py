"""Paired data: dataset readers, the embedded sample set, sources, and the per-stage datasets.

Readers give sequences of ``Pair`` (a sharp and a blurry frame of one scene). The stage datasets
turn pairs into ``(input, target)`` float32 tensors (3, h, w) in [0, 1] for DnCNN (denoise),
UNet (deblur), EDSR (2x super-resolution) and the whole cascade, drawing random patches with
paired augmentation whose randomness depends only on (seed, epoch, index): identical across
DataLoader worker counts and exactly reproducible on resume.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from helpers.cache import (
    FRAME_LONG,
    FRAME_SHORT,
    HIGH_RES_SCALE,
    DecodedFrames,
    FrameCache,
    default_cache_dir,
)
from helpers.degrade import (
    DOWNSCALE_KERNELS,
    FrameFit,
    add_gaussian_noise,
    downscale_with,
    motion_blur,
    quantize,
    random_blur,
    resize,
    resize_to_frame,
)
from helpers.io import (
    ImageReadError,
    float_image,
    image_to_tensor,
    is_image_file,
    list_images,
    read_image,
    tensor_to_image,
    uint8_image,
    write_image,
)

Split = Literal["train", "val", "test"]

# Blur extent of synthetic GOPRO-style blur on 640x360 frames: 2.5% of the long side, as motion_blur uses at 1280x720.
SYNTHETIC_BLUR_SHIFT = 0.025 * FRAME_LONG
# Each synthetic blur's extent limit is drawn in [SMALLEST, 1] x that, so slight blurs are common too: a UNet
# trained on strong blurs only made slight ones (a 250-px photo's) worse.
SYNTHETIC_BLUR_SMALLEST = 0.25


@dataclass(frozen=True)
class Pair:
    """One training example on disk: the sharp frame, its blurry version, and its sequence (scene).

    ``fit`` is how its frames become network frames (``helpers.cache.load_frame``): "crop" to
    16:9 (GOPRO and photos), or "whole" for frames of other shapes whose every pixel counts (RealBlur).
    """

    name: str
    sharp: Path
    blurry: Path
    sequence: str
    fit: FrameFit = "crop"


class PairList(Sequence[Pair]):
    """A read-only list of pairs with the sequences they come from."""

    def __init__(self, pairs: Sequence[Pair]) -> None:
        self._pairs = list(pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index):  # int -> Pair, slice -> list[Pair]
        return self._pairs[index]

    @property
    def sequences(self) -> list[str]:
        """Sequence names in first-seen order."""
        return list(dict.fromkeys(pair.sequence for pair in self._pairs))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} pairs, {len(self.sequences)} sequences)"


def _match_by_stem(sharp: list[Path], blurry: list[Path], where: str) -> list[tuple[str, Path, Path]]:
    """Pair files with the same stem; any file without a partner is an error naming them."""
    sharp_by_stem = {p.stem: p for p in sharp}
    blurry_by_stem = {p.stem: p for p in blurry}
    unpaired = sorted(set(sharp_by_stem) ^ set(blurry_by_stem))
    if unpaired:
        shown = ", ".join(unpaired[:5]) + (" ..." if len(unpaired) > 5 else "")
        raise ValueError(f"{where}: {len(unpaired)} frames have no sharp/blurry partner: {shown}")
    return [(stem, sharp_by_stem[stem], blurry_by_stem[stem]) for stem in sorted(sharp_by_stem)]


class GoproPairs(PairList):
    """GOPRO_Large: ``root/{train,test}/<sequence>/{sharp,blur,blur_gamma}/NNNNNN.png``.

    ``blur_folder`` picks "blur" (averaged in linear light, the usual choice) or "blur_gamma".
    """

    def __init__(self, root: str | os.PathLike, split: str, blur_folder: str = "blur") -> None:
        self.root = Path(root)
        split_dir = self.root / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"{split_dir}: GOPRO split folder not found")
        sequences = sorted(p for p in split_dir.iterdir() if p.is_dir())
        if not sequences:
            raise FileNotFoundError(f"{split_dir}: no sequence folders in this GOPRO split")
        pairs = []
        for sequence in sequences:
            matched = _match_by_stem(list_images(sequence / "sharp"), list_images(sequence / blur_folder), str(sequence))
            pairs += [Pair(f"{sequence.name}/{stem}", sharp, blurry, sequence.name) for stem, sharp, blurry in matched]
        super().__init__(pairs)


class RealBlurPairs(PairList):
    """RealBlur-J from its list files ``root/RealBlur_J_{train,test}_list.txt`` ("gt_path blur_path" lines).

    The sequence of a pair is its scene folder (``.../scene123/gt/gt_1.png`` -> ``scene123``). Its
    frames (about 680x773, portrait) are used whole (``fit="whole"``), not cropped to 9:16.
    """

    def __init__(self, root: str | os.PathLike, split: str) -> None:
        self.root = Path(root)
        list_file = self.root / f"RealBlur_J_{split}_list.txt"
        if not list_file.is_file():
            raise FileNotFoundError(f"{list_file}: RealBlur-J list file not found")
        pairs, missing = [], []
        for number, line in enumerate(list_file.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise ValueError(f"{list_file}:{number}: expected 'gt_path blur_path', got {line.strip()!r}")
            sharp, blurry = self.root / fields[0], self.root / fields[1]
            missing += [str(p) for p in (sharp, blurry) if not p.is_file()]
            scene = Path(fields[0]).parent.parent.name or Path(fields[0]).parent.name
            pairs.append(Pair(f"{scene}/{Path(fields[1]).stem}", sharp, blurry, scene, fit="whole"))
        if missing:
            raise FileNotFoundError(f"{list_file}: {len(missing)} listed files are missing, first: {missing[0]}")
        if not pairs:
            raise ValueError(f"{list_file}: list file has no pairs")
        super().__init__(pairs)


class FolderPairs(PairList):
    """Two folders of frames matched by file stem (``sharp_dir/x.png`` with ``blurry_dir/x.jpg``).

    The sequence is the stem without its trailing frame number ("clip3_000012" -> "clip3"), so
    frames of one video stay together; names that are only a number all form one sequence.
    """

    def __init__(self, sharp_dir: str | os.PathLike, blurry_dir: str | os.PathLike) -> None:
        matched = _match_by_stem(list_images(sharp_dir), list_images(blurry_dir), f"{sharp_dir} vs {blurry_dir}")
        super().__init__(
            [Pair(stem, sharp, blurry, re.sub(r"[_\-. ]*\d+$", "", stem) or Path(sharp_dir).name) for stem, sharp, blurry in matched]
        )


def split_by_sequence(
    pairs: Sequence[Pair], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Pair], list[Pair]]:
    """Split into (train, val) by whole sequences, so near-identical neighbouring frames never leak.

    About ``val_fraction`` of the sequences (at least one when there are two or more and the
    fraction is positive, never all of them) go to validation, chosen by a seeded shuffle.
    """
    sequences = sorted({pair.sequence for pair in pairs})
    n_val = round(len(sequences) * val_fraction)
    if val_fraction > 0 and len(sequences) >= 2:
        n_val = min(max(n_val, 1), len(sequences) - 1)
    val_sequences = set(np.random.default_rng(seed).permutation(sequences)[:n_val].tolist()) if n_val else set()
    return [p for p in pairs if p.sequence not in val_sequences], [p for p in pairs if p.sequence in val_sequences]


# ----------------------------------------------------------------------------- generated sets

SAMPLE_SET_VERSION = 2
_SAMPLE_SEED = 2024
_FRAMES_PER_SEQUENCE = 2
_SAMPLE_PHOTOS = {  # photos shipped inside the scikit-image / matplotlib wheels: no download
    "train": [
        "astronaut", "chelsea", "coffee", "hubble_deep_field", "motorcycle_left", "immunohistochemistry",
        "camera", "brick", "grass", "gravel", "coins",
    ],
    "test": ["rocket", "grace_hopper"],
}


def _sample_photo(name: str) -> np.ndarray:
    """An RGB uint8 photo bundled with an installed package, read from the package's own files."""
    if name == "grace_hopper":
        from matplotlib import cbook

        return read_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    import skimage.data

    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return left if name.endswith("left") else right
    photo = getattr(skimage.data, name)()
    return np.repeat(photo[:, :, None], 3, axis=2) if photo.ndim == 2 else photo


def _native_canvas(photo: np.ndarray, height: int, width: int) -> np.ndarray:
    """``photo`` at its own resolution, mirror-tiled to at least height x width.

    The bundled photos are smaller than 1280x720; upscaling them would make soft "sharp" frames
    that teach the networks nothing about detail. Mirror tiling keeps every pixel native.
    """
    pad_h, pad_w = max(0, height - photo.shape[0]), max(0, width - photo.shape[1])
    return np.pad(photo, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")


def _write_sequence(photo: np.ndarray, sequence_dir: Path, n_frames: int, rng: np.random.Generator) -> None:
    """Frames of a slow pan (a few pixels a frame) over the native-resolution photo, sharp and blurred."""
    height, width = FRAME_SHORT * HIGH_RES_SCALE, FRAME_LONG * HIGH_RES_SCALE
    pan = 4 * n_frames
    canvas = float_image(_native_canvas(photo, height + pan, width + pan))
    top0 = int(rng.integers(0, canvas.shape[0] - height - pan + 1))
    left0 = int(rng.integers(0, canvas.shape[1] - width - pan + 1))
    step_y, step_x = rng.integers(0, 5, size=2)
    for frame in range(n_frames):
        top, left = top0 + frame * int(step_y), left0 + frame * int(step_x)
        sharp = canvas[top : top + height, left : left + width]
        write_image(sequence_dir / "sharp" / f"{frame:06d}.png", uint8_image(sharp))
        write_image(sequence_dir / "blur" / f"{frame:06d}.png", uint8_image(motion_blur(sharp, rng)))


def _build_once(target: Path, description: str, fill: Callable[[Path], None]) -> Path:
    """Build a folder once: fill a temporary sibling, write the ``.complete`` marker last, rename into place."""
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        fill(temp)
        (temp / ".complete").write_text(description + "\n")
        if (target / ".complete").is_file():  # another process finished first: keep its copy
            return target
        if target.exists():  # an incomplete earlier build
            shutil.rmtree(target)
        os.replace(temp, target)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


def build_sample_set(root: str | os.PathLike | None = None) -> Path:
    """The embedded sample set in GOPRO_Large layout, built on first use from bundled photos.

    Thirteen photos (``_SAMPLE_PHOTOS``: scikit-image's colour photos and grey natural textures for
    train; rocket and matplotlib's grace_hopper for test) each become a sequence of two 1280x720
    frames (a slight pan), blurred with ``motion_blur``. The photos are smaller than 1280x720, so
    each frame is the photo at its native resolution, mirror-tiled: real detail, no upscaling, but
    visibly mirrored. Enough to train the demo weights and run everything end to end, far from
    GOPRO's variety. Deterministic; cached under ``root`` (default: ``default_cache_dir()``),
    rebuilt if incomplete.
    """
    target = Path(root or default_cache_dir()) / f"sample_set_v{SAMPLE_SET_VERSION}"

    def fill(temp: Path) -> None:
        names = [(split, name) for split, photos in _SAMPLE_PHOTOS.items() for name in photos]
        for index, (split, name) in enumerate(tqdm(names, desc="building sample set", unit="sequence")):
            rng = np.random.default_rng([_SAMPLE_SEED, index])
            _write_sequence(_sample_photo(name), temp / split / name, _FRAMES_PER_SEQUENCE, rng)

    return _build_once(target, f"sample set v{SAMPLE_SET_VERSION}", fill)


def _folder_sequences(folder: Path, frames_per_sequence: int) -> list[tuple[str, list[Path]]]:
    """(sequence name, images): one sequence per subfolder, else consecutive runs of the sorted files."""
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and any(map(is_image_file, p.iterdir())))
    if subfolders:
        return [(sub.name, list_images(sub)) for sub in subfolders]
    files = list_images(folder)
    return [
        (f"part{start // frames_per_sequence:03d}", files[start : start + frames_per_sequence])
        for start in range(0, len(files), frames_per_sequence)
    ]


def build_folder_set(
    folder: str | os.PathLike,
    root: str | os.PathLike | None = None,
    frames_per_sequence: int = 10,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Path:
    """Degrade a user's own sharp photos or video frames into the GOPRO layout (sharp/ and blur/).

    Sequences are the subfolders of ``folder`` or, for a flat folder, runs of
    ``frames_per_sequence`` sorted images. The last ``test_fraction`` of the sequences (at least
    one when there are two or more) become test. Frames are centre-cropped to 16:9 (9:16) and sized
    1280x720 (720x1280), then blurred with ``motion_blur``. Cached by folder contents (names, sizes,
    mtimes); unreadable images are skipped with a warning.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    sequences = _folder_sequences(folder, frames_per_sequence)
    signature = "\n".join(
        f"{path.resolve()} {path.stat().st_size} {path.stat().st_mtime_ns}" for _, files in sequences for path in files
    )
    key = hashlib.sha1(f"{signature}\n{frames_per_sequence} {test_fraction} {seed}".encode()).hexdigest()[:16]
    n_test = min(max(round(len(sequences) * test_fraction), 1), len(sequences) - 1) if len(sequences) > 1 else 0

    def fill(temp: Path) -> None:
        skipped = []
        progress = tqdm(total=sum(len(files) for _, files in sequences), desc=f"degrading {folder}", unit="frame")
        for index, (name, files) in enumerate(sequences):
            split = "test" if index >= len(sequences) - n_test else "train"
            for number, path in enumerate(files):
                rng = np.random.default_rng([seed, index, number])
                try:
                    image = float_image(read_image(path))
                except ImageReadError as error:
                    skipped.append(str(error))
                    continue
                finally:
                    progress.update()
                sharp = resize_to_frame(image, FRAME_LONG * HIGH_RES_SCALE, FRAME_SHORT * HIGH_RES_SCALE)
                write_image(temp / split / name / "sharp" / f"{number:06d}.png", uint8_image(sharp))
                write_image(temp / split / name / "blur" / f"{number:06d}.png", uint8_image(motion_blur(sharp, rng)))
        progress.close()
        if skipped:
            warnings.warn(f"skipped {len(skipped)} unreadable images; first: {skipped[0]}", stacklevel=3)
        if not any(temp.glob("*/*/sharp/*.png")):
            raise ValueError(f"{folder}: no readable images")

    return _build_once(Path(root or default_cache_dir()) / "folder_sets" / key, str(folder), fill)


# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """A data source that can list train / val / test pairs; readers are created on demand."""

    name: str
    load: Callable[[str], Sequence[Pair]]  # "train" | "test" -> pairs

    def pairs(self, split: Split, val_fraction: float = 0.2, seed: int = 0) -> list[Pair]:
        """Pairs of ``split``; val is carved from train by sequence (``split_by_sequence``)."""
        if split == "test":
            return list(self.load("test"))
        if split not in ("train", "val"):
            raise ValueError(f"unknown split {split!r}; choose train, val or test")
        train, val = split_by_sequence(self.load("train"), val_fraction, seed)
        return train if split == "train" else val


def resolve_source(spec: str, cache_root: str | os.PathLike | None = None) -> Source:
    """Parse a data source: "sample", "gopro:PATH", "realblur:PATH", "folder:PATH" or "pairs:SHARP,BLURRY".

    "folder:PATH" degrades a folder of the user's sharp images (``build_folder_set``); "pairs:"
    takes already paired folders (``FolderPairs``) and gives the same pairs for every split, so it is
    for evaluation, not for training.
    """
    kind, _, argument = spec.partition(":")
    if kind == "sample" and not argument:
        return Source(spec, lambda split: GoproPairs(build_sample_set(cache_root), split))
    if kind == "gopro" and argument:
        return Source(spec, lambda split: GoproPairs(argument, split))
    if kind == "realblur" and argument:
        return Source(spec, lambda split: RealBlurPairs(argument, split))
    if kind == "folder" and argument:
        return Source(spec, lambda split: GoproPairs(build_folder_set(argument, cache_root), split))
    if kind == "pairs" and argument.count(",") == 1:
        sharp_dir, blurry_dir = argument.split(",")
        return Source(spec, lambda split: FolderPairs(sharp_dir, blurry_dir))
    raise ValueError(
        f"unknown data source {spec!r}; use sample, gopro:PATH, realblur:PATH, folder:PATH or pairs:SHARP_DIR,BLURRY_DIR"
    )


def pairs_for(spec: str, split: Split, val_fraction: float = 0.2, seed: int = 0) -> list[Pair]:
    """Shortcut for the CLI: the pairs of ``split`` ("train", "val", "test") of source ``spec``."""
    return resolve_source(spec).pairs(split, val_fraction, seed)


# ----------------------------------------------------------------------------- stage datasets

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


DATASETS: dict[str, type[PairedFrameDataset]] = {
    "dncnn": DenoiseDataset,
    "unet": DeblurDataset,
    "edsr": SuperResolutionDataset,
    "pipeline": PipelineDataset,
    "cascade": CascadeDataset,
}


def build_dataset(stage: str, pairs: Sequence[Pair], **options) -> PairedFrameDataset:
    """The dataset for a stage by name ("dncnn", "unet", "edsr", "pipeline", "cascade"); options go to its constructor."""
    if stage not in DATASETS:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[stage](pairs, **options)



# ----------------------------------------------------------------------------- native-resolution photographs

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


def split_photos(files: Sequence[Path], val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """(train, val) photos of one folder: a seeded ``val_fraction`` of them held out (at least one of two or more)."""
    n_val = round(len(files) * val_fraction)
    if val_fraction > 0 and len(files) >= 2:
        n_val = min(max(n_val, 1), len(files) - 1)
    held_out = set(np.random.default_rng(seed).permutation(len(files))[:n_val].tolist())
    return [f for i, f in enumerate(files) if i not in held_out], [f for i, f in enumerate(files) if i in held_out]


def load_blur_kernels(path: str | os.PathLike) -> list[np.ndarray]:
    """Blur kernels from an ``.npz`` file (each array 2-D, non-negative, normalised here to sum 1)."""
    try:
        with np.load(path) as archive:
            arrays = [np.asarray(archive[name], dtype=np.float32) for name in sorted(archive.files)]
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable .npz file of blur kernels ({error})") from None
    bad = [i for i, k in enumerate(arrays) if k.ndim != 2 or k.min() < 0 or k.sum() <= 0]
    if not arrays or bad:
        raise ValueError(f"{path}: expected 2-D non-negative kernels with a positive sum; {len(bad)} of {len(arrays)} are not")
    return [k / k.sum() for k in arrays]


class PhotoLibrary:
    """One split of the photographs of several folders, at native resolution, drawn by folder share.

    Photos are decoded on first use and kept in memory (least recently used dropped beyond
    ``cache_bytes``). An unreadable photo, or one too small for a patch, is skipped for the next one of
    its folder; unreadable ones are counted (``skipped``) and reported once each with a warning.
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
        for folder in folders:
            train, val = split_photos(list_images(folder.path), val_fraction, seed)
            files = train if split == "train" else val
            if files:
                self.groups.append(files)
                shares.append(folder.share)
        if not self.groups:
            raise ValueError(f"no {split} photos in {', '.join(str(f.path) for f in folders)}")
        self.shares = np.asarray(shares, dtype=np.float64) / sum(shares)
        self.cache_bytes = cache_bytes
        self._decoded: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._unreadable: set[Path] = set()

    def __len__(self) -> int:
        return sum(len(files) for files in self.groups)

    @property
    def skipped(self) -> int:
        """How many unreadable photos were met so far."""
        return len(self._unreadable)

    def _decode(self, path: Path) -> np.ndarray | None:
        if path in self._decoded:
            self._decoded.move_to_end(path)
            return self._decoded[path]
        if path in self._unreadable:
            return None
        try:
            photo = read_image(path)
        except ImageReadError as error:
            self._unreadable.add(path)
            warnings.warn(f"skipping unreadable photo ({self.skipped} so far): {error}", stacklevel=4)
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


class PhotoDenoiseDataset(PhotoPatches):
    """DnCNN: (noisy, clean) patches; ``blurry_fraction`` of the clean patches are blurred first."""

    @property
    def margin(self) -> int:  # type: ignore[override]
        return BLUR_MARGIN if self.degradations.blurry_fraction else 0

    def _degrade(self, sharp: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        blurry = self.degradations.blurry_fraction and rng.random() < self.degradations.blurry_fraction
        clean = _centre(self.degradations.blur(sharp, rng) if blurry else sharp, self.margin)
        return self.degradations.noise(clean, rng), clean


class PhotoDeblurDataset(PhotoPatches):
    """UNet: (blurry, sharp) patches at 640x360 scale, 8-bit inputs; ``sharp_fraction`` of inputs left sharp."""

    margin = BLUR_MARGIN

    def _degrade(self, sharp: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        keep = self.degradations.sharp_fraction and rng.random() < self.degradations.sharp_fraction
        blurry = sharp if keep else self.degradations.blur(sharp, rng)
        return quantize(_centre(blurry, self.margin)), _centre(sharp, self.margin)


class PhotoSuperResolutionDataset(PhotoPatches):
    """EDSR: (low-res, high-res) patches; the low-res side is ``patch_size``, made with a drawn downscale kernel."""

    def _sharp_side(self) -> int:
        return self.patch_size * HIGH_RES_SCALE

    def _degrade(self, sharp: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        return quantize(self.degradations.downscale(sharp, rng)), sharp


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


PHOTO_DATASETS: dict[str, type[PhotoPatches]] = {
    "dncnn": PhotoDenoiseDataset,
    "unet": PhotoDeblurDataset,
    "edsr": PhotoSuperResolutionDataset,
    "pipeline": PhotoCascadeDataset,
    "cascade": PhotoCascadeTrainingDataset,
}


def build_photo_dataset(stage: str, library: PhotoLibrary, **options: Any) -> PhotoPatches:
    """The ``photos:`` dataset of a stage by name ("dncnn", "unet", "edsr", "pipeline", "cascade"); options go to its constructor."""
    if stage not in PHOTO_DATASETS:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(PHOTO_DATASETS)}")
    return PHOTO_DATASETS[stage](library, **options)
