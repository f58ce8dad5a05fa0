"""Metrics against scikit-image on real photographs, batching, conventions and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.color
import skimage.data
import skimage.metrics
import skimage.restoration
import torch

from helpers.io import image_to_tensor
from helpers.metrics import mse, noise_sigma, psnr, rgb_to_y, ssim

SKIMAGE_SSIM = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def degraded_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """Real photographs with realistic degradations: noise, blur, JPEG-like quantisation."""
    rng = np.random.default_rng(0)
    pairs = []
    for clean in (skimage.data.astronaut(), skimage.data.coffee()[:384, :512], skimage.data.chelsea()):
        noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
        blurred = (skimage.filters.gaussian(clean, sigma=1.5, channel_axis=2) * 255).round().astype(np.uint8)
        pairs += [(clean, noisy), (clean, blurred), (clean, (clean // 16) * 16)]
    return pairs


@pytest.mark.parametrize("pair_index", range(9))
def test_rgb_metrics_match_scikit_image(pair_index: int) -> None:
    clean, degraded = degraded_pairs()[pair_index]
    target, prediction = image_to_tensor(clean), image_to_tensor(degraded)
    assert float(psnr(prediction, target)) == pytest.approx(skimage.metrics.peak_signal_noise_ratio(clean, degraded), abs=0.01)
    expected_ssim = skimage.metrics.structural_similarity(clean, degraded, channel_axis=2, data_range=255, **SKIMAGE_SSIM)
    assert float(ssim(prediction, target)) == pytest.approx(expected_ssim, abs=0.002)
    expected_mse = skimage.metrics.mean_squared_error(clean / 255.0, degraded / 255.0)
    assert float(mse(prediction, target)) == pytest.approx(expected_mse, rel=1e-4)


@pytest.mark.parametrize("crop", [0, 2, 4])
def test_y_channel_and_border_crop_match_the_super_resolution_convention(crop: int) -> None:
    clean, degraded = degraded_pairs()[1]
    y_clean = skimage.color.rgb2ycbcr(clean)[..., 0]
    y_degraded = skimage.color.rgb2ycbcr(degraded)[..., 0]
    if crop:
        y_clean, y_degraded = y_clean[crop:-crop, crop:-crop], y_degraded[crop:-crop, crop:-crop]
    target, prediction = image_to_tensor(clean), image_to_tensor(degraded)
    expected_psnr = skimage.metrics.peak_signal_noise_ratio(y_clean, y_degraded, data_range=255)
    expected_ssim = skimage.metrics.structural_similarity(y_clean, y_degraded, data_range=255, **SKIMAGE_SSIM)
    assert float(psnr(prediction, target, y_channel=True, crop_border=crop)) == pytest.approx(expected_psnr, abs=0.01)
    assert float(ssim(prediction, target, y_channel=True, crop_border=crop)) == pytest.approx(expected_ssim, abs=0.002)


def test_rgb_to_y_matches_scikit_image() -> None:
    image = skimage.data.astronaut()
    expected = skimage.color.rgb2ycbcr(image)[..., 0] / 255.0
    torch.testing.assert_close(rgb_to_y(image_to_tensor(image).double())[0, 0], torch.from_numpy(expected), atol=1e-6, rtol=0)


def test_batched_metrics_give_per_image_values_and_their_mean() -> None:
    pairs = [(c[:256, :256], d[:256, :256]) for c, d in degraded_pairs()[:3]]
    target = torch.cat([image_to_tensor(c) for c, _ in pairs])
    prediction = torch.cat([image_to_tensor(d) for _, d in pairs])
    per_image = psnr(prediction, target, reduction="none")
    assert per_image.shape == (3,)
    for value, (clean, degraded) in zip(per_image, pairs):
        assert float(value) == pytest.approx(skimage.metrics.peak_signal_noise_ratio(clean, degraded), abs=0.01)
    assert float(psnr(prediction, target)) == pytest.approx(float(per_image.mean()), abs=1e-6)
    assert ssim(prediction, target, reduction="none").shape == (3,)


def test_identical_images_give_infinite_psnr_and_unit_ssim() -> None:
    images = torch.rand(2, 3, 32, 32)
    assert torch.isinf(psnr(images, images))
    assert float(ssim(images, images)) == pytest.approx(1.0, abs=1e-6)


def test_metrics_reject_bad_input() -> None:
    images = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="same shape: expected \\(1, 3, 32, 32\\).*received \\(1, 3, 16, 32\\)"):
        psnr(images[..., :16, :], images)
    with pytest.raises(ValueError, match="values in \\[0, 1\\]"):
        ssim(images * 2, images)
    with pytest.raises(ValueError, match="3 \\(RGB\\) channels"):
        mse(images[:, :1], images[:, :1])
    with pytest.raises(ValueError, match="floating-point"):
        psnr((images * 255).byte(), (images * 255).byte())
    with pytest.raises(ValueError, match="crop_border"):
        psnr(images, images, crop_border=16)
    with pytest.raises(ValueError, match="reduction"):
        psnr(images, images * 0.5, reduction="sum")


def noisy_photos() -> list[np.ndarray]:
    """Real photographs, clean and with Gaussian noise sigma 5 and 25, 8-bit, odd and even sizes."""
    rng = np.random.default_rng(0)
    photos = [skimage.data.astronaut()[:256, :384], skimage.data.coffee()[:201, :303], skimage.data.chelsea()]
    return [np.clip(photo + rng.normal(0, sigma, photo.shape), 0, 255).round().astype(np.uint8) if sigma else photo
            for photo in photos for sigma in (0, 5, 25)]


@pytest.mark.parametrize("index", range(9))
def test_noise_sigma_matches_scikit_image(index: int) -> None:
    image = noisy_photos()[index]
    reference = skimage.restoration.estimate_sigma(image.astype(np.float64) / 255, channel_axis=-1, average_sigmas=True)
    # 0.1%: in flat areas, which coefficients come out exactly 0 (and are dropped) depends on the summation order
    assert float(noise_sigma(image_to_tensor(image))[0]) == pytest.approx(reference, rel=1e-3)


def test_noise_sigma_finds_the_noise_added_to_a_photo_and_little_in_a_clean_one() -> None:
    """Within 15% of the added sigma, under 3/255 on the clean photo; each image of a batch measured alone."""
    images = noisy_photos()[:3]
    estimates = noise_sigma(torch.cat([image_to_tensor(image) for image in images])) * 255
    assert estimates.shape == (3,) and estimates.dtype == torch.float32
    assert estimates[0] < 3
    np.testing.assert_allclose(estimates[1:].numpy(), [5, 25], rtol=0.15)
    assert float(noise_sigma(image_to_tensor(images[2]))[0]) == pytest.approx(float(estimates[2]) / 255)


def test_noise_sigma_of_a_large_image_is_measured_on_its_centre() -> None:
    rng = np.random.default_rng(1)
    image = np.full((2400, 2600, 3), 128, np.uint8)
    image[176:-176, 276:-276] = np.clip(128 + rng.normal(0, 10, (2048, 2048, 3)), 0, 255).round().astype(np.uint8)
    assert float(noise_sigma(image_to_tensor(image))[0]) * 255 == pytest.approx(10, rel=0.05)
