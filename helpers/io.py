"""Files <-> arrays <-> tensors: the two edges where conversions happen.

Images on disk are read with OpenCV and come back as RGB ``uint8`` arrays of
shape (H, W, 3); tensors are float (N, 3, H, W) in [0, 1]. Every write goes to a
temporary file in the destination folder and is renamed into place, so an
interrupted run never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


def _default_file_mode() -> int:
    """0666 minus the process umask: the mode ``open()`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_DEFAULT_FILE_MODE = _default_file_mode()


class ImageReadError(ValueError):
    """A file that should be an image could not be decoded."""


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name has one of the supported image suffixes."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video_file(path: str | os.PathLike) -> bool:
    """True when the file name has one of the supported video suffixes."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files directly inside ``folder``; raises if missing or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if not files:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def read_image_any(path: str | os.PathLike) -> np.ndarray:
    """Decode an image as stored: 8- or 16-bit, grey, RGB or RGBA (channels in RGB order).

    Returns (H, W) for grey, (H, W, 3) RGB or (H, W, 4) RGBA, dtype uint8 or uint16.
    Palette images come back expanded to RGB by the decoder.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt, truncated or unsupported format)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        image = cv2.cvtColor(image, code)
    return image


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Grey, RGBA and 16-bit images to RGB uint8 (alpha dropped, 16-bit rounded to 8)."""
    if image.dtype == np.uint16:
        image = np.round(image.astype(np.float32) / 257.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 or uint16 image, got dtype {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read any supported image file as an RGB uint8 array (H, W, 3)."""
    return to_rgb_uint8(read_image_any(path))


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it into place on success.

    On any exception the temporary file is removed and ``destination`` is untouched.
    The temporary name keeps the destination's suffix so encoders pick the format.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{destination.stem}.", suffix=f".partial{destination.suffix}", dir=destination.parent
    )
    os.close(handle)
    temp_path = Path(temp_name)
    os.chmod(temp_path, _DEFAULT_FILE_MODE)  # mkstemp makes 0600 files; outputs get the usual umask'd mode
    try:
        yield temp_path
        os.replace(temp_path, destination)
    finally:
        temp_path.unlink(missing_ok=True)


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB/RGBA/grey uint8 or uint16 array atomically; the suffix picks the format."""
    path = Path(path)
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: expected a uint8 or uint16 image, got dtype {image.dtype}")
    if image.ndim == 3:
        code = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}.get(image.shape[2])
        if code is None:
            raise ValueError(f"{path}: expected 1, 3 or 4 channels, got {image.shape[2]}")
        image = cv2.cvtColor(image, code)
    ok, encoded = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode an image with suffix {path.suffix!r}")
    with atomic_path(path) as temp:
        encoded.tofile(str(temp))
    return path


def float_image(image: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (H, W, 3) in [0, 1] (the form ``helpers.degrade`` works in)."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    return image.astype(np.float32) / np.float32(255.0)


def uint8_image(image: np.ndarray) -> np.ndarray:
    """Float (H, W, C) in [0, 1] -> uint8, clipped and rounded."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def image_to_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """RGB uint8 (H, W, 3) or a batch (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1]."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3) or batch (N, H, W, 3), got shape {image.shape}")
    # torch cannot wrap a read-only array (e.g. np.asarray of a PIL image) without a warning: copy those
    array = np.ascontiguousarray(image) if image.flags.writeable else np.array(image)
    tensor = torch.from_numpy(array).to(device)
    return tensor.permute(0, 3, 1, 2).float().div_(255.0)


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """Float (N, 3, H, W) or (3, H, W) in [0, 1] -> RGB uint8 (N, H, W, 3) or (H, W, 3), rounded."""
    squeeze = tensor.ndim == 3
    if squeeze:
        tensor = tensor[None]
    if tensor.ndim != 4:
        raise ValueError(f"expected a tensor (N, C, H, W) or (C, H, W), got shape {tuple(tensor.shape)}")
    array = tensor.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    array = array.permute(0, 2, 3, 1).cpu().numpy()
    return array[0] if squeeze else array


class VideoReadError(ValueError):
    """A file that should be a video could not be opened or decoded."""


class VideoFrames:
    """A video's frames as RGB uint8 arrays (H, W, 3), decoded lazily; ``fps``, ``frame_count``, ``width``, ``height``.

    Built by ``read_video_frames``, which checks that the first frame decodes. ``frame_count`` is the
    container's figure (OpenCV's estimate); ``fps`` is 25 where the container records none.
    """

    def __init__(self, path: Path, capture: cv2.VideoCapture, first_frame: np.ndarray) -> None:
        self.path = path
        self._capture = capture
        self._first_frame: np.ndarray | None = first_frame
        self.fps = float(capture.get(cv2.CAP_PROP_FPS)) or 25.0
        self.frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.height, self.width = first_frame.shape[:2]

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            frame = self._first_frame
            self._first_frame = None
            while frame is not None:
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                ok, frame = self._capture.read()
                frame = frame if ok else None
        finally:
            self._capture.release()


def read_video_frames(path: str | os.PathLike) -> VideoFrames:
    """Open a video (OpenCV VideoCapture) for frame-by-frame reading; clear errors for missing or unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    capture = cv2.VideoCapture(str(path))
    ok, frame = capture.read() if capture.isOpened() else (False, None)
    if not ok or frame is None:
        capture.release()
        raise VideoReadError(f"{path}: not a readable video (corrupt, truncated or unsupported codec)")
    return VideoFrames(path, capture, frame)


@contextlib.contextmanager
def video_writer(path: str | os.PathLike, fps: float, width: int, height: int) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield ``write(frame)`` for RGB uint8 frames of width x height; an MP4 (mp4v) written to a temp file, renamed on success."""
    path = Path(path)
    with atomic_path(path) as temp:
        writer = cv2.VideoWriter(str(temp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise ValueError(f"{path}: OpenCV cannot write an mp4v video with suffix {path.suffix!r}")

        def write(frame: np.ndarray) -> None:
            if frame.dtype != np.uint8 or frame.shape != (height, width, 3):
                raise ValueError(f"{path}: expected RGB uint8 frames of {width}x{height}, got {frame.dtype} {frame.shape}")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

        try:
            yield write
        finally:
            writer.release()
