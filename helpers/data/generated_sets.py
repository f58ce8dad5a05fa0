"""Data sets built on this machine in the GOPRO_Large layout: the embedded sample set and folder sets.

The sample set is made from photos bundled with installed packages (no download); a folder set
degrades a user's own sharp photos or video frames. Both are built once into the cache folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from ..cache import FRAME_LONG, FRAME_SHORT, HIGH_RES_SCALE, default_cache_dir
from ..degrade import motion_blur, resize_to_frame
from ..io import ImageReadError, float_image, is_image_file, list_images, read_image, uint8_image, write_image


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
