"""Synthetic degradations: Gaussian noise, GOPRO-style motion blur, real blur kernels, resizing and downscaling.

Every function takes and returns numpy float32 RGB images (H, W, 3) in [0, 1]; random ones
take an ``np.random.Generator`` so the same seed always gives the same degradation. The
geometric ones (``resize``, ``downscale``, ``crop_to_aspect``, ``resize_to_frame``) also take
uint8 images and keep the dtype, so frames can be prepared without a float round trip.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import cv2
import numpy as np
import torch

ResizeMethod = Literal["area", "bicubic", "bilinear", "nearest", "lanczos"]
FrameFit = Literal["crop", "stretch", "whole"]

_INTERPOLATION = {
    "area": cv2.INTER_AREA,
    "bicubic": cv2.INTER_CUBIC,
    "bilinear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
    "lanczos": cv2.INTER_LANCZOS4,
}


def _check_image(image: np.ndarray, allow_uint8: bool = False) -> np.ndarray:
    """An RGB (H, W, 3) array as float32, or left uint8 when ``allow_uint8``."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {image.shape}")
    return image if allow_uint8 and image.dtype == np.uint8 else np.asarray(image, dtype=np.float32)


# Hand-written in numpy (the standard IEC 61966-2-1 curve): kornia.color's rgb_to_linear_rgb needs
# (*, 3, H, W) tensors while every degradation here works on (H, W, 3) numpy arrays.
def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """Undo the sRGB gamma curve: sRGB values in [0, 1] -> linear light in [0, 1]."""
    image = np.asarray(image, dtype=np.float32)
    return np.where(image > 0.04045, ((np.maximum(image, 0.0) + 0.055) / 1.055) ** 2.4, image / 12.92).astype(
        np.float32
    )


def linear_to_srgb(image: np.ndarray) -> np.ndarray:
    """Apply the sRGB gamma curve: linear light in [0, 1] -> sRGB values in [0, 1]."""
    image = np.asarray(image, dtype=np.float32)
    return np.where(
        image > 0.0031308, 1.055 * np.maximum(image, 0.0031308) ** (1 / 2.4) - 0.055, 12.92 * image
    ).astype(np.float32)


def add_gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator, clip: bool = True) -> np.ndarray:
    """Add white Gaussian noise of standard deviation ``sigma`` on the 0-255 scale (DnCNN's convention).

    Works on any array shape (e.g. (H, W, 3) or a (3, H, W) tensor's ``.numpy()``); clipped to [0, 1]
    unless ``clip`` is False.
    """
    image = np.asarray(image, dtype=np.float32)
    noisy = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma / 255.0)
    return np.clip(noisy, 0.0, 1.0) if clip else noisy


def resize(image: np.ndarray, width: int, height: int, method: ResizeMethod = "area") -> np.ndarray:
    """Resize with OpenCV; "area" averages source pixels, the antialiased choice for shrinking."""
    image = _check_image(image, allow_uint8=True)
    if method not in _INTERPOLATION:
        raise ValueError(f"unknown resize method {method!r}; choose one of {sorted(_INTERPOLATION)}")
    if (image.shape[1], image.shape[0]) == (width, height):
        return image.copy()
    resized = cv2.resize(image, (int(width), int(height)), interpolation=_INTERPOLATION[method])
    overshoots = method in ("bicubic", "lanczos") and resized.dtype != np.uint8  # uint8 saturates in OpenCV
    return np.clip(resized, 0.0, 1.0) if overshoots else resized


def downscale(image: np.ndarray, factor: int = 2, method: ResizeMethod = "area") -> np.ndarray:
    """Shrink by an integer ``factor`` (height and width must divide exactly), antialiased by default."""
    image = _check_image(image, allow_uint8=True)
    height, width = image.shape[:2]
    if height % factor or width % factor:
        raise ValueError(f"image size {width}x{height} is not divisible by the downscale factor {factor}")
    return resize(image, width // factor, height // factor, method)


def frame_size(height: int, width: int, long_side: int = 640, short_side: int = 360) -> tuple[int, int]:
    """Target (width, height) for a frame: landscape (and square) -> long x short, portrait -> short x long."""
    return (short_side, long_side) if height > width else (long_side, short_side)


def crop_to_aspect(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre crop to the aspect ratio width:height, cutting as little as possible."""
    image = _check_image(image, allow_uint8=True)
    rows, cols = image.shape[:2]
    if cols * height > rows * width:  # too wide: trim the sides
        new_cols = max(1, round(rows * width / height))
        start = (cols - new_cols) // 2
        return image[:, start : start + new_cols]
    new_rows = max(1, round(cols * height / width))
    start = (rows - new_rows) // 2
    return image[start : start + new_rows]


def resize_to_frame(
    image: np.ndarray, long_side: int = 640, short_side: int = 360, fit: FrameFit = "crop"
) -> np.ndarray:
    """Bring any image to the frame size long x short (16:9), portrait images to short x long (9:16).

    ``fit="crop"`` (default) centre-crops to 16:9 / 9:16 first, so nothing is distorted but the
    edges of other aspect ratios are lost; ``fit="stretch"`` forces the aspect ratio like the seed
    notebooks did (a 4:3 photo comes out squashed); ``fit="whole"`` keeps every pixel and the aspect
    ratio, the long side becoming ``long_side`` and the short side the nearest even number (training
    patches are then cut from the whole frame). GOPRO frames are already 16:9, where all agree.
    Shrinking uses area averaging (antialiased), enlarging uses bicubic interpolation.
    """
    image = _check_image(image, allow_uint8=True)
    width, height = frame_size(image.shape[0], image.shape[1], long_side, short_side)
    if fit == "crop":
        image = crop_to_aspect(image, width, height)
    elif fit == "whole":
        factor = long_side / max(image.shape[:2])
        width, height = (2 * max(1, round(side * factor / 2)) for side in (image.shape[1], image.shape[0]))
    elif fit != "stretch":
        raise ValueError(f"unknown fit {fit!r}; choose 'crop', 'stretch' or 'whole'")
    shrinking = image.shape[0] * image.shape[1] >= width * height
    return resize(image, width, height, "area" if shrinking else "bicubic")


def camera_trajectory(
    rng: np.random.Generator, n_positions: int, max_shift: float, max_rotation_deg: float
) -> np.ndarray:
    """A smooth random camera path sampled at ``n_positions`` instants: rows (dx, dy, angle_deg).

    The path is a quadratic curve (constant velocity plus a little acceleration, like a hand-held
    camera over 1/30 s) centred on the middle instant, which is where the sharp frame was taken in
    GOPRO. Its extent is at most ``max_shift`` pixels; the rotation grows linearly to at most
    ``max_rotation_deg`` at the ends.
    """
    if n_positions < 1:
        raise ValueError(f"n_positions must be at least 1, got {n_positions}")
    times = np.linspace(-0.5, 0.5, n_positions) if n_positions > 1 else np.zeros(1)
    direction = rng.uniform(0.0, 2.0 * math.pi)
    length = rng.uniform(0.3, 1.0) * max_shift
    bend = rng.uniform(-0.3, 0.3) * length  # sideways bow of the path (acceleration)
    along = length * times
    across = bend * (4.0 * times**2 - 1.0 / 3.0)  # zero-mean parabola, smooth
    dx = along * math.cos(direction) - across * math.sin(direction)
    dy = along * math.sin(direction) + across * math.cos(direction)
    angles = 2.0 * rng.uniform(-1.0, 1.0) * max_rotation_deg * times
    return np.stack([dx, dy, angles], axis=1).astype(np.float64)


def blur_along_trajectory(image: np.ndarray, trajectory: np.ndarray) -> np.ndarray:
    """Average the image warped to each (dx, dy, angle_deg) position, in linear light.

    Like GOPRO, which averaged consecutive 240 fps frames of the camera response: undo the sRGB
    gamma, average the warped copies, reapply the gamma. Rotation is about the image centre;
    borders are reflected.
    """
    image = _check_image(image)
    trajectory = np.asarray(trajectory, dtype=np.float64).reshape(-1, 3)
    height, width = image.shape[:2]
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    linear = srgb_to_linear(image)
    total = np.zeros_like(linear)
    for dx, dy, angle in trajectory:
        matrix = cv2.getRotationMatrix2D(centre, float(angle), 1.0)
        matrix[:, 2] += (dx, dy)
        total += cv2.warpAffine(
            linear, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
    return np.clip(linear_to_srgb(total / len(trajectory)), 0.0, 1.0)


def motion_blur(
    image: np.ndarray,
    rng: np.random.Generator,
    n_positions: int | None = None,
    max_shift: float | None = None,
    max_rotation_deg: float = 0.5,
) -> np.ndarray:
    """GOPRO-style camera-shake blur: a random smooth trajectory, averaged in linear light.

    ``n_positions`` (frames averaged) is drawn from 7..13 when None, as in GOPRO. ``max_shift`` is
    the largest path extent in pixels, by default 2.5% of the long side (32 px at 1280x720, the
    order of GOPRO's stronger blurs).
    """
    image = _check_image(image)
    if n_positions is None:
        n_positions = int(rng.integers(7, 14))
    if max_shift is None:
        max_shift = 0.025 * max(image.shape[:2])
    return blur_along_trajectory(image, camera_trajectory(rng, n_positions, max_shift, max_rotation_deg))


# Downscaling kernels of the training mix: "area" averages (what GOPRO-style frames get), "bicubic" is antialiased
# bicubic (MATLAB imresize, the published SR tables' input), "opencv-bicubic" is cv2.INTER_CUBIC without
# antialiasing (what many user pipelines do when shrinking: aliased). An SR network trained on one kernel
# loses to plain bicubic upscaling on another.
DownscaleKernel = Literal["area", "bicubic", "opencv-bicubic"]
DOWNSCALE_KERNELS: tuple[DownscaleKernel, ...] = ("area", "bicubic", "opencv-bicubic")


def downscale_with(image: np.ndarray, factor: int, kernel: DownscaleKernel) -> np.ndarray:
    """Shrink a float RGB image by an integer ``factor`` with one of ``DOWNSCALE_KERNELS`` (sizes must divide)."""
    image = _check_image(image)
    if kernel == "area":
        return downscale(image, factor, "area")
    if kernel == "opencv-bicubic":
        return downscale(image, factor, "bicubic")
    if kernel != "bicubic":
        raise ValueError(f"unknown downscale kernel {kernel!r}; choose one of {', '.join(DOWNSCALE_KERNELS)}")
    height, width = image.shape[:2]
    if height % factor or width % factor:
        raise ValueError(f"image size {width}x{height} is not divisible by the downscale factor {factor}")
    # torch's antialiased bicubic (Keys a=-0.5 widened by the factor, like MATLAB): OpenCV has no antialiased cubic.
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    small = torch.nn.functional.interpolate(
        tensor, size=(height // factor, width // factor), mode="bicubic", align_corners=False, antialias=True
    )
    return small[0].clamp_(0, 1).numpy().transpose(1, 2, 0).copy()


def quantize(image: np.ndarray) -> np.ndarray:
    """Round a float image in [0, 1] to 8-bit levels (as a real input file would be), kept float32."""
    return (np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def transform_kernel(kernel: np.ndarray, rng: np.random.Generator, size: float) -> np.ndarray:
    """A blur kernel randomly rotated and flipped, resized so its side is about ``size`` pixels, summing to 1.

    A real camera-shake kernel (e.g. Levin et al.'s, measured at one image scale) then serves at any
    frame scale and in any orientation.
    """
    kernel = np.asarray(kernel, dtype=np.float32)
    if kernel.ndim != 2 or kernel.sum() <= 0:
        raise ValueError(f"expected a 2-D blur kernel with a positive sum, got shape {kernel.shape}")
    side = int(np.ceil(max(kernel.shape) * 1.5)) | 1  # room for the rotated corners
    canvas = np.zeros((side, side), np.float32)
    top, left = (side - kernel.shape[0]) // 2, (side - kernel.shape[1]) // 2
    canvas[top : top + kernel.shape[0], left : left + kernel.shape[1]] = kernel
    matrix = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), float(rng.uniform(0, 360)), 1.0)
    canvas = cv2.warpAffine(canvas, matrix, (side, side), flags=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        canvas = canvas[:, ::-1]
    rows, cols = np.nonzero(canvas > canvas.max() * 1e-3)
    canvas = canvas[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = max(float(size), 1.0) / max(canvas.shape)
    new_size = (max(1, round(canvas.shape[1] * scale)), max(1, round(canvas.shape[0] * scale)))
    canvas = cv2.resize(canvas, new_size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.maximum(canvas, 0.0)
    return (canvas / canvas.sum()).astype(np.float32)


def kernel_blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve with a blur kernel in linear light (as the sensor integrates light), borders reflected."""
    image = _check_image(image)
    flipped = np.ascontiguousarray(np.asarray(kernel, dtype=np.float32)[::-1, ::-1])  # filter2D correlates
    blurred = cv2.filter2D(srgb_to_linear(image), -1, flipped, borderType=cv2.BORDER_REFLECT)
    return np.clip(linear_to_srgb(np.clip(blurred, 0.0, 1.0)), 0.0, 1.0)


def _one_blur(
    image: np.ndarray, rng: np.random.Generator, extent: float, kernels: Sequence[np.ndarray], kernel_fraction: float
) -> np.ndarray:
    """A synthetic trajectory blur, or (with probability ``kernel_fraction``) a transformed real kernel, of ``extent`` px."""
    if kernels and rng.random() < kernel_fraction:
        kernel = kernels[int(rng.integers(len(kernels)))]
        return kernel_blur(image, transform_kernel(kernel, rng, extent))
    return motion_blur(image, rng, max_shift=extent)


def random_blur(
    image: np.ndarray,
    rng: np.random.Generator,
    max_extent: float,
    kernels: Sequence[np.ndarray] = (),
    kernel_fraction: float = 0.5,
    nonuniform_fraction: float = 0.0,
    smallest: float = 0.25,
) -> np.ndarray:
    """Camera-shake blur of a random extent in [``smallest``, 1] x ``max_extent`` pixels.

    Synthetic trajectories (``motion_blur``) and real kernels (``kernels``, rotated, flipped and scaled
    to the extent, with probability ``kernel_fraction``); with probability ``nonuniform_fraction`` two
    such blurs are blended across the image along a random direction: a blur that varies over the
    frame, as rotation and depth make it in real shots.
    """
    def draw() -> np.ndarray:
        return _one_blur(image, rng, max_extent * rng.uniform(smallest, 1.0), kernels, kernel_fraction)

    if not (nonuniform_fraction and rng.random() < nonuniform_fraction):
        return draw()
    first, second = draw(), draw()
    height, width = image.shape[:2]
    angle = rng.uniform(0, 2 * math.pi)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (cols - width / 2) * math.cos(angle) + (rows - height / 2) * math.sin(angle)
    mask = np.clip(0.5 + ramp / max(height, width), 0.0, 1.0)[..., None]
    return (mask * first + (1.0 - mask) * second).astype(np.float32)
