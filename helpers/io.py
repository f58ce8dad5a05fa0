"""Files <-> arrays <-> tensors: the two edges where conversions happen.

Images on disk are read with OpenCV and come back as RGB ``uint8`` arrays of
shape (H, W, 3); tensors are float (N, 3, H, W) in [0, 1]. Every write goes to a
temporary file in the destination folder and is renamed into place, so an
interrupted run never leaves a half-written file that looks complete; the
temporary files a killed run left behind are removed on the next write.

Hostile files are refused before memory is spent: an image's size is read from
its header (Pillow) and checked against a pixel limit and the file's size before
anything is decoded; what a file is (image or video) is decided by its content.

One writer at a time: ``atomic_path`` holds an exclusive lock (``exclusive_lock``, fcntl.flock) on its
destination while writing, and a second process writing the same file is refused naming the holder's PID.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import torch
from PIL import Image

from .safe_writes import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".avif")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
# 67 megapixels: every 8K frame (7680x4320, 33 MP) and camera photos up to 61 MP pass; a 30000x30000 bomb does not.
DEFAULT_MAX_PIXELS = 8192 * 8192
_PILLOW_WARNINGS = threading.Lock()  # held while this module changes the warning filters
# A file larger than its header's pixels could need (16 bytes a pixel: float RGBA, uncompressed) plus this much
# metadata is refused before it is read: a sparse or padded file must not be read whole.
METADATA_ALLOWANCE = 16 * 2**20
EXIF_ORIENTATION_TAG = 0x0112
# Formats whose EXIF orientation OpenCV ignores with IMREAD_UNCHANGED; libtiff applies a TIFF's own orientation.
EXIF_ORIENTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP")
# ISO base media files (the MP4 family) whose major brand makes them still images: HEIF/HEIC and AVIF.
IMAGE_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"heim": "HEIC", b"heis": "HEIC", b"hevc": "HEIC", b"hevx": "HEIC",
                b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}
# The rates OpenCV's MPEG-4 (mp4v) writer opens at: above 1/1000 fps (measured), up to 65535 (its time base's
# largest denominator).
MIN_FPS, MAX_FPS = 0.001, 65535.0
# Codecs whose every packet is a whole JPEG: their frame sizes are read from each packet before it is decoded.
JPEG_CODECS = ("MJPG", "mjpg", "JPEG", "jpeg", "AVRN", "LJPG", "dmb1")
CONVERSION_ROWS = 256  # tensor_to_image converts this many rows at a time (bounded temporaries)


class ImageReadError(ValueError):
    """A file that should be an image could not be decoded, or is refused (too large, not an image)."""


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says: format (Pillow's name), size, EXIF orientation (1: as stored)."""

    format: str
    width: int
    height: int
    orientation: int = 1
    animated: bool = False  # more than one frame (GIF, WebP, APNG): only the first is read


def _exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag from what the header parse found (never decodes: Pillow's PNG getexif() would)."""
    data = image.info.get("exif")
    if not data:
        return 1
    exif = Image.Exif()
    try:
        exif.load(data)
    except Exception:  # a malformed EXIF block only loses the orientation, as in viewers
        return 1
    orientation = exif.get(EXIF_ORIENTATION_TAG, 1)
    return orientation if orientation in range(1, 9) else 1


def _file_size_text(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def read_image_header(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Format, size and orientation from the header alone; raises ImageReadError for what must not be decoded.

    Refused: files that are no image Pillow knows (what they are is named when it is a video), images of more
    than ``max_pixels`` pixels (None: no limit of ours; Pillow refuses above its own decompression-bomb limit,
    ``2 * PIL.Image.MAX_IMAGE_PIXELS``), and files larger than their declared size could need.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        # Pillow warns above its own pixel limit; our limit decides. The filters are process-wide and frames are
        # read in threads: unserialised save/restore pairs interleave and leave one thread's filters behind.
        with _PILLOW_WARNINGS, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                header = ImageHeader(image.format or "?", *image.size, orientation=_exif_orientation(image),
                                     animated=bool(getattr(image, "is_animated", False)))
    except Image.DecompressionBombError as error:  # Pillow's own ceiling, above any max_pixels we accept
        raise ImageReadError(f"{path}: refused before decoding: {error}") from None
    except Exception:  # what Pillow cannot parse raises one of several types (UnidentifiedImageError, OSError, SyntaxError)
        with open(path, "rb") as handle:
            found = _video_description(handle.read(16))  # an image's own signature says nothing once Pillow failed
        raise ImageReadError(
            f"{path}: its content is {found}, a format not read here (convert it to PNG or JPEG)" if found and found.endswith("image")
            else f"{path}: not an image: its content is {found}" if found
            else f"{path}: not a readable image (corrupt, truncated or unsupported format)"
        ) from None
    pixels = header.width * header.height
    if max_pixels is not None and pixels > max_pixels:
        raise ImageReadError(
            f"{path}: image of {header.width}x{header.height} pixels ({pixels / 1e6:.1f} MP) is above the limit of "
            f"{max_pixels:,} pixels; refused before decoding (if it is genuine, raise the limit: restore's --max-pixels)"
        )
    size, allowed = path.stat().st_size, 16 * pixels + METADATA_ALLOWANCE
    if size > allowed:
        raise ImageReadError(
            f"{path}: {_file_size_text(size)} is more than an image of {header.width}x{header.height} pixels can take "
            f"(at most {_file_size_text(allowed)}); refused before reading (padded, sparse or not an image)"
        )
    return header


def _apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels (H, W[, C]) into how EXIF orientation 1-8 says to show them."""
    if orientation >= 5:  # 5-8 swap the axes: transpose, then flip as for 1-4
        image, orientation = image.swapaxes(0, 1), {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    flipped = {1: image, 2: image[:, ::-1], 3: image[::-1, ::-1], 4: image[::-1]}[orientation]
    return np.ascontiguousarray(flipped)


def describe_content(path: str | os.PathLike) -> str | None:
    """What a file's first bytes say it is ('a PNG image', 'an MP4/MOV video', ...), or None when unknown.

    Videos by their container's signature (hand-written: four signatures do not need a library), images by
    the signature checks Pillow registers for its formats (tried in Pillow's order; nothing is parsed).
    """
    with open(path, "rb") as handle:
        head = handle.read(16)
    video = _video_description(head)
    if video:
        return video
    Image.init()
    for image_format in Image.ID:
        accepts = Image.OPEN[image_format][1]
        if accepts is not None and accepts(head):
            return f"a {image_format} image"
    return None


def _video_description(head: bytes) -> str | None:
    """'an MP4/MOV video', 'an AVI video', 'a Matroska video', a HEIC/HEIF/AVIF image (MP4's file family), or None."""
    if head[4:8] == b"ftyp" and head[8:12] in IMAGE_BRANDS:
        return f"a {IMAGE_BRANDS[head[8:12]]} image"
    container = video_container(head)
    return f"{'a' if container == 'Matroska' else 'an'} {container} video" if container else None


def video_container(head: bytes) -> str | None:
    """The container named by a file's first 12+ bytes: 'MP4/MOV', 'AVI', 'Matroska', or None (a HEIC or AVIF image,
    whose ``ftyp`` box names an image brand, is no video)."""
    if head[4:8] == b"ftyp" and head[8:12] in IMAGE_BRANDS:
        return None
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "MP4/MOV"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska"
    return None


def is_input_name(path: Path) -> bool:
    """False for hidden files, which include this program's temporary files (``atomic_path``) and locks; a user's
    ``a.partial.png`` is an input like any other."""
    return not path.name.startswith(".")


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name has one of the supported image suffixes."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video_file(path: str | os.PathLike) -> bool:
    """True when the file name has one of the supported video suffixes."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files directly inside ``folder`` (hidden files, this program's temporary files among them,
    skipped); raises if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p) and is_input_name(p))
    if not files:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def read_image_any(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image as stored: 8- or 16-bit, grey, RGB or RGBA (channels in RGB order), upright.

    Returns (H, W) for grey, (H, W, 3) RGB or (H, W, 4) RGBA, dtype uint8 or uint16. Palette images come
    back expanded to RGB by the decoder; EXIF orientation is applied, so the pixels are as viewers show them.
    The header is checked first (``read_image_header``): nothing is read whole or decoded before.
    """
    path = Path(path)
    header = read_image_header(path, max_pixels)
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt, truncated or unsupported format)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        image = cv2.cvtColor(image, code)
    if header.format in EXIF_ORIENTED_FORMATS and header.orientation != 1:
        image = _apply_orientation(image, header.orientation)
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


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read any supported image file as an upright RGB uint8 array (H, W, 3); see ``read_image_any``."""
    return to_rgb_uint8(read_image_any(path, max_pixels))


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
    """Float (N, 3, H, W) or (3, H, W) in [0, 1] -> RGB uint8 (N, H, W, 3) or (H, W, 3), rounded.

    Converted in blocks of ``CONVERSION_ROWS`` rows, so the only full-size copy is the uint8 result
    (converting at once held three float copies: 144 bytes per pixel of a 3-channel image, 12 GB at 8K x2).
    """
    squeeze = tensor.ndim == 3
    if squeeze:
        tensor = tensor[None]
    if tensor.ndim != 4:
        raise ValueError(f"expected a tensor (N, C, H, W) or (C, H, W), got shape {tuple(tensor.shape)}")
    batch, channels, height, width = tensor.shape
    array = torch.empty((batch, height, width, channels), dtype=torch.uint8)
    for top in range(0, height, CONVERSION_ROWS):
        block = tensor[:, :, top : top + CONVERSION_ROWS].detach().float().clamp(0, 1).mul_(255.0).round_()
        array[:, top : top + CONVERSION_ROWS] = block.to(torch.uint8).permute(0, 2, 3, 1).cpu()
    array = array.numpy()
    return array[0] if squeeze else array


class VideoReadError(ValueError):
    """A file that should be a video could not be opened or decoded, or decoded short of its announced length."""


# Containers whose frame count is exact: MP4/MOV count the samples in their index, AVI's header records the
# frames written. Matroska records a duration, from which OpenCV (FFmpeg) estimates the count.
EXACT_FRAME_COUNT_CONTAINERS = ("MP4/MOV", "AVI")


class VideoFrames:
    """A video's frames as RGB uint8 arrays (H, W, 3), decoded lazily; ``fps``, ``frame_count``, ``width``, ``height``.

    Built by ``read_video_frames``, which checks that the first frame decodes. ``frame_count`` is the
    container's figure (OpenCV's); ``fps`` is 25 where the container records none. Iterating to the end
    compares the frames decoded (``decoded``) with ``frame_count``: a shortfall raises VideoReadError when
    the container's count is exact (truncated or corrupt file), else ``shortfall()`` describes it.

    OpenCV scales every frame to the first one's size without a word; where the codec's packets are whole
    JPEGs (MJPEG, ``JPEG_CODECS``), each frame's size is read from its packet before it is decoded, and one
    of another size raises VideoReadError (other codecs keep OpenCV's scaling: their size is not visible).
    """

    def __init__(
        self, path: Path, capture: cv2.VideoCapture, first_frame: np.ndarray, container: str, max_pixels: int | None = None
    ) -> None:
        self.path, self.container, self.max_pixels = path, container, max_pixels
        self._capture = capture
        self._first_frame: np.ndarray | None = first_frame
        self.fps = float(capture.get(cv2.CAP_PROP_FPS)) or 25.0
        self.frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.height, self.width = first_frame.shape[:2]
        self.decoded = 0
        codec = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("latin-1")
        self._packets = (
            cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_FORMAT, -1]) if codec in JPEG_CODECS else None
        )

    def _check_next_size(self) -> None:
        """The next packet's JPEG header against the first frame's size (JPEG codecs only), before it is decoded."""
        if self._packets is None:
            return
        ok, packet = self._packets.read()
        if not ok or packet is None:
            return
        try:
            with Image.open(io.BytesIO(packet.tobytes())) as header:
                width, height = header.size
        except Exception:  # not parseable here: the decoder will say what is wrong with it
            return
        if (width, height) == (self.width, self.height):
            return
        limit = (f" and above the limit of {self.max_pixels:,} pixels"
                 if self.max_pixels is not None and width * height > self.max_pixels else "")
        raise VideoReadError(
            f"{self.path}: frame {self.decoded + 1} is {width}x{height}{limit}, the first {self.width}x{self.height}: "
            "frames that change size are refused (OpenCV would silently scale them to the first one's size)"
        )

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            self._check_next_size()  # the first packet: the first frame itself, decoded already
            frame = self._first_frame
            self._first_frame = None
            while frame is not None:
                self.decoded += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                self._check_next_size()
                ok, frame = self._capture.read()
                frame = frame if ok else None
        finally:
            self._capture.release()
            if self._packets is not None:
                self._packets.release()
        if self.decoded < self.frame_count and self.container in EXACT_FRAME_COUNT_CONTAINERS:
            raise VideoReadError(
                f"{self.path}: only {self.decoded} of the {self.frame_count} frames its {self.container} container "
                "announces decode (truncated or corrupt file)"
            )

    def shortfall(self) -> str | None:
        """After iterating: a warning when fewer frames decoded than an estimated (not exact) count, else None."""
        if self.decoded >= self.frame_count:
            return None
        return (
            f"{self.path}: {self.decoded} frames decoded, the {self.container} container estimates {self.frame_count} "
            "(from its duration and frame rate, so the count may be off; a truncated file also ends early)"
        )


def read_video_frames(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> VideoFrames:
    """Open a video (OpenCV VideoCapture) for frame-by-frame reading, after checking what the file is.

    Refused with one-line errors: missing files, files whose content is no MP4/MOV, AVI or Matroska
    container (naming what they are, e.g. an image), frames above ``max_pixels``, undecodable first frames.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    with open(path, "rb") as handle:
        container = video_container(handle.read(16))
    if container is None:
        found = describe_content(path)
        raise VideoReadError(
            f"{path}: not a video: its content is {found}" if found
            else f"{path}: not a readable video (corrupt, truncated or unsupported container)"
        )
    capture = cv2.VideoCapture(str(path))
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if max_pixels is not None and width * height > max_pixels:
        capture.release()
        raise VideoReadError(
            f"{path}: frames of {width}x{height} pixels are above the limit of {max_pixels:,} pixels; refused before "
            "decoding (if they are genuine, raise the limit: restore's --max-pixels)"
        )
    ok, frame = capture.read() if capture.isOpened() else (False, None)
    if not ok or frame is None:
        capture.release()
        raise VideoReadError(f"{path}: not a readable video (corrupt, truncated or unsupported codec)")
    return VideoFrames(path, capture, frame, container, max_pixels)


def _check_written_video(temp: Path, destination: Path, frames: int, width: int, height: int) -> None:
    """Reopen a finished video and count its frames: OpenCV's writer does not report failed writes (disk full)."""
    capture = cv2.VideoCapture(str(temp))
    found, size = 0, None
    try:
        if capture.isOpened():
            size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            while capture.grab():
                found += 1
    finally:
        capture.release()
    if size is not None and size != (width, height):
        raise OSError(f"{destination}: the encoder wrote {size[0]}x{size[1]} frames, not {width}x{height}; not published")
    if found != frames or size is None:
        readable = f"{found} of {frames} frames read back" if size else "it cannot be opened"
        raise OSError(f"{destination}: the written video is incomplete ({readable}; disk full or write error); not published")


def encoded_size(width: int, height: int) -> tuple[int, int]:
    """The size an MP4 (mp4v, 4:2:0 colour) records frames of width x height at: each side rounded up to even."""
    return width + width % 2, height + height % 2


def _check_rate(path: Path, fps: float) -> None:
    if not (math.isfinite(fps) and MIN_FPS < fps <= MAX_FPS):
        raise ValueError(
            f"{path}: a frame rate of {fps:g} fps cannot be recorded in an MP4 (mp4v takes more than {MIN_FPS:g} and at "
            f"most {MAX_FPS:,.0f} fps); the input's rate is damaged or extreme"
        )


@contextlib.contextmanager
def video_writer(path: str | os.PathLike, fps: float, width: int, height: int) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield ``write(frame)`` for RGB uint8 frames of width x height; an MP4 (mp4v) written to a temp file.

    The encoder needs even sizes: an odd side is padded by repeating its last row or column (``encoded_size``),
    decided before the first frame. A rate the encoder cannot record is refused, naming the rate. The finished
    file is reopened and its frames counted before it is renamed into place, so a write that failed (a full
    disk) raises instead of publishing a broken video.
    """
    path = Path(path)
    _check_rate(path, fps)
    encoded_width, encoded_height = encoded_size(width, height)
    with atomic_path(path) as temp:
        writer = cv2.VideoWriter(str(temp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (encoded_width, encoded_height))
        if not writer.isOpened():
            raise ValueError(f"{path}: OpenCV's mp4v writer cannot record {encoded_width}x{encoded_height} frames at "
                             f"{fps:g} fps (OpenCV without FFmpeg, or a size or rate the encoder refuses)")
        written = 0

        def write(frame: np.ndarray) -> None:
            nonlocal written
            if frame.dtype != np.uint8 or frame.shape != (height, width, 3):
                raise ValueError(f"{path}: expected RGB uint8 frames of {width}x{height}, got {frame.dtype} {frame.shape}")
            frame = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            if (encoded_width, encoded_height) != (width, height):
                frame = cv2.copyMakeBorder(frame, 0, encoded_height - height, 0, encoded_width - width, cv2.BORDER_REPLICATE)
            if writer.write(frame) is False:  # OpenCV 5 reports; 4.x returns None
                raise OSError(f"{path}: OpenCV could not write frame {written + 1} (disk full or write error)")
            written += 1

        try:
            yield write
        finally:
            writer.release()
        _check_written_video(temp, path, written, encoded_width, encoded_height)
