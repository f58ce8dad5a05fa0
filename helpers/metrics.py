"""Image-quality metrics in torch (batched, any device): MSE, PSNR and SSIM; a no-reference noise level; image gradients.

All take (N, C, H, W) tensors in [0, 1]. The conventions of published super-resolution tables are
arguments: ``y_channel=True`` measures the BT.601 luma (Y of YCbCr, studio swing, as MATLAB's
``rgb2ycbcr``) and ``crop_border`` drops that many pixels on every side. ``reduction="none"``
returns one value per image, ``"mean"`` the batch mean. SSIM is Wang et al.'s: an 11x11 Gaussian
window with sigma 1.5, averaged over the valid (uncropped-by-padding) region, like
``skimage.metrics.structural_similarity(gaussian_weights=True, use_sample_covariance=False)``.
"""

from __future__ import annotations

import functools
from typing import Callable

import kornia
import torch

from .checks import check_image_batch, check_same_shape

__all__ = ["mse", "psnr", "ssim", "ssim_map", "rgb_to_y", "noise_sigma", "device_constant", "spatial_gradient"]

# BT.601 studio-swing luma weights for RGB in [0, 1], scaled to [0, 1] output. kornia's
# rgb_to_ycbcr uses the full-range JPEG convention, which SR tables do not, hence these lines.
_Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
_Y_OFFSET = 16.0 / 255.0


def device_constant(
    build: Callable[[torch.device, torch.dtype], torch.Tensor],
) -> Callable[[torch.device, torch.dtype], torch.Tensor]:
    """Decorator: ``build(device, dtype)``, a small constant tensor (a filter kernel), made once per device and dtype.

    Why: kornia makes its kernels on every call with ``torch.tensor(..., device=...)``, which on CUDA copies from
    host memory and waits for all the work queued on the GPU: a synchronisation per call, in every training step and
    every restored batch. The constant is made outside inference mode, so that training can use it too.
    """

    @functools.cache
    def made_once(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        with torch.inference_mode(False):
            return build(device, dtype)

    return functools.wraps(build)(made_once)


@device_constant
def _sobel_kernels(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """kornia's normalised first-order Sobel kernels (x, then y), (2, 1, 3, 3)."""
    kernels = kornia.filters.get_spatial_gradient_kernel2d("sobel", 1, device=device, dtype=dtype)
    return (kernels / kernels.abs().sum(dim=(-2, -1), keepdim=True))[:, None]  # each sums to 1 in absolute value


def spatial_gradient(images: torch.Tensor) -> torch.Tensor:
    """(N, C, 2, H, W) x and y derivatives, as ``kornia.filters.spatial_gradient(images)`` computes them (normalised
    Sobel, replicated border), with the kernels made once per device (``device_constant``)."""
    batch, channels, height, width = images.shape
    planes = torch.nn.functional.pad(images.reshape(batch * channels, 1, height, width), (1, 1, 1, 1), mode="replicate")
    return torch.nn.functional.conv2d(planes, _sobel_kernels(images.device, images.dtype)).view(batch, channels, 2, height, width)


def rgb_to_y(images: torch.Tensor) -> torch.Tensor:
    """RGB (N, 3, H, W) in [0, 1] -> BT.601 luma (N, 1, H, W) in [16/255, 235/255]."""
    weights = images.new_tensor(_Y_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True) + _Y_OFFSET


def _prepare(
    prediction: torch.Tensor, target: torch.Tensor, y_channel: bool, crop_border: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate, then apply the Y-channel and border-crop conventions; compute in float32 or wider."""
    check_image_batch(prediction, name="prediction")
    check_image_batch(target, name="target")
    check_same_shape(prediction, target)
    if crop_border < 0 or 2 * crop_border >= min(target.shape[-2:]):
        raise ValueError(f"crop_border: expected 0 <= crop_border < {min(target.shape[-2:]) // 2}, received {crop_border}")
    dtype = torch.promote_types(target.dtype, torch.float32)
    prediction, target = prediction.to(dtype), target.to(dtype)
    if y_channel:
        prediction, target = rgb_to_y(prediction), rgb_to_y(target)
    if crop_border:
        prediction = prediction[..., crop_border:-crop_border, crop_border:-crop_border]
        target = target[..., crop_border:-crop_border, crop_border:-crop_border]
    return prediction, target


def _reduce(per_image: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_image.mean()
    if reduction == "none":
        return per_image
    raise ValueError(f"reduction: expected 'mean' or 'none', received {reduction!r}")


def mse(
    prediction: torch.Tensor, target: torch.Tensor, y_channel: bool = False, crop_border: int = 0, reduction: str = "mean"
) -> torch.Tensor:
    """Mean squared error per image (on the [0, 1] scale)."""
    prediction, target = _prepare(prediction, target, y_channel, crop_border)
    return _reduce((prediction - target).pow(2).flatten(1).mean(dim=1), reduction)


def psnr(
    prediction: torch.Tensor, target: torch.Tensor, y_channel: bool = False, crop_border: int = 0, reduction: str = "mean"
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB (peak 1.0), computed per image then reduced.

    Identical images give +inf, as in scikit-image.
    """
    per_image_mse = mse(prediction, target, y_channel, crop_border, reduction="none")
    return _reduce(10.0 * torch.log10(1.0 / per_image_mse), reduction)


@device_constant
def _ssim_window(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Wang et al.'s SSIM window: an 11-tap Gaussian of sigma 1.5, (1, 11), as ``kornia.metrics.ssim`` makes it."""
    return kornia.filters.get_gaussian_kernel1d(11, 1.5, device=device, dtype=dtype)


def ssim_map(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The SSIM map of two (N, C, H, W) batches in [0, 1]: ``kornia.metrics.ssim(first, second, 11, max_val=1.0,
    padding="valid")`` (the same operations, the same values), with the window made once per device."""
    window = _ssim_window(first.device, first.dtype)
    mean = lambda images: kornia.filters.filter2d_separable(images, window, window, padding="valid")  # noqa: E731
    mean_first, mean_second = mean(first), mean(second)
    variance_first = mean(first**2) - mean_first**2
    variance_second = mean(second**2) - mean_second**2
    covariance = mean(first * second) - mean_first * mean_second
    c1, c2 = 0.01**2, 0.03**2
    numerator = (2.0 * mean_first * mean_second + c1) * (2.0 * covariance + c2)
    return numerator / ((mean_first**2 + mean_second**2 + c1) * (variance_first + variance_second + c2) + 1e-12)


def ssim(
    prediction: torch.Tensor, target: torch.Tensor, y_channel: bool = False, crop_border: int = 0, reduction: str = "mean"
) -> torch.Tensor:
    """Structural similarity per image (mean over channels and valid window positions), then reduced."""
    prediction, target = _prepare(prediction, target, y_channel, crop_border)
    if min(target.shape[-2:]) < 11:
        raise ValueError(f"ssim: expected images of at least 11x11 after cropping, received {tuple(target.shape[-2:])}")
    return _reduce(ssim_map(prediction, target).flatten(1).mean(dim=1), reduction)


# Daubechies-2 decomposition high-pass filter (pywt.Wavelet("db2").dec_hi), for the finest diagonal detail band.
_DB2_HIGH_PASS = (-0.48296291314453416, 0.8365163037378079, -0.2241438680420134, -0.12940952255126037)
NOISE_SIGMA_MAX_SIDE = 2048  # larger images are measured on their central 2048x2048: plenty of samples, bounded memory


def _symmetric_pad(planes: torch.Tensor, width: int) -> torch.Tensor:
    """Half-sample symmetric padding of the last two dimensions (pywt's 'symmetric' mode; torch has no such mode)."""
    for dim in (-2, -1):
        size = planes.shape[dim]
        planes = torch.cat([planes.narrow(dim, 0, width).flip(dim), planes, planes.narrow(dim, size - width, width).flip(dim)], dim)
    return planes


@device_constant
def _db2_high_pass(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(_DB2_HIGH_PASS, dtype=dtype, device=device).flip(0)  # flipped: conv2d correlates


def _nonzero_medians(values: torch.Tensor) -> torch.Tensor:
    """numpy's median of each row's non-zero entries (0 for a row without any), for rows of values >= 0; (rows,).

    Sorted, zeros come first, so the non-zero entries are each row's last ``count``; their middle one (or two) are
    picked by indices computed on the device. No number is read back to the host, as masking out the zeros
    (a tensor whose size the host must learn) or ``kthvalue`` per row would; and, unlike ``kthvalue``, sorting is
    deterministic on CUDA.
    """
    length = values.shape[-1]
    ordered = values.sort(dim=-1).values
    count = (values != 0).sum(dim=-1, keepdim=True)
    first_nonzero = length - count
    low = (first_nonzero + (count - 1).clamp_min(0) // 2).clamp_max(length - 1)
    high = (first_nonzero + count // 2).clamp_max(length - 1)
    medians = (ordered.gather(-1, low) + ordered.gather(-1, high)) / 2
    return torch.where(count > 0, medians, 0.0).squeeze(-1)


def noise_sigma(images: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """Estimated standard deviation of white Gaussian noise per image, in [0, 1] units: float32 (N,) on ``device``.

    Donoho's robust wavelet estimator, as ``skimage.restoration.estimate_sigma(channel_axis=-1)``
    computes it: per channel, the median absolute non-zero coefficient of the finest db2 diagonal
    detail band / 0.6745, averaged over the channels. Written in torch so that it runs on ``device``
    (default: the images'; only the measured crop is moved there) without reading anything back from it,
    where scikit-image needs PyWavelets and the CPU: about 30 ms for a 640x360 frame on two CPU cores.
    Texture inflates it a little: clean 8-bit photos read about 1-5/255.
    """
    check_image_batch(images, name="noise_sigma input")
    height, width = images.shape[-2:]
    top, left = max(0, (height - NOISE_SIGMA_MAX_SIDE) // 2), max(0, (width - NOISE_SIGMA_MAX_SIDE) // 2)
    crop = images[..., top : top + NOISE_SIGMA_MAX_SIDE, left : left + NOISE_SIGMA_MAX_SIDE].detach()
    crop = crop.to(device or images.device, non_blocking=True)
    # the 4x4 diagonal filter is the outer product of the 1-D one: two strided 1-D passes (6x faster in float64)
    high = _db2_high_pass(crop.device, torch.float64)
    sigmas = []
    for image in crop:  # one image at a time: float64 planes of a 2048x2048 crop are 100 MB each
        planes = _symmetric_pad(image.to(torch.float64).unsqueeze(1), 3)[..., 1:, 1:]  # pywt keeps odd outputs
        rows = torch.nn.functional.conv2d(planes, high.view(1, 1, 1, 4), stride=(1, 2))
        details = torch.nn.functional.conv2d(rows, high.view(1, 1, 4, 1), stride=(2, 1)).abs().flatten(1)
        # exact zeros (flat areas) are left out, as scikit-image does
        sigmas.append(_nonzero_medians(details).mean() / 0.6744897501960817)  # scipy.stats.norm.ppf(0.75)
    return torch.stack(sigmas).float()
