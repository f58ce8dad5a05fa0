"""Degradations against hand computations and independent references (kornia, scikit-image)."""

from __future__ import annotations

import cv2
import kornia.color
import numpy as np
import pytest
import skimage.color
import skimage.data
import skimage.filters
import skimage.transform
import torch

from helpers import degrade


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut().astype(np.float32) / 255.0


def test_srgb_curves_match_kornia_and_round_trip() -> None:
    values = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    reference = kornia.color.rgb_to_linear_rgb(torch.from_numpy(values).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    linear = degrade.srgb_to_linear(values)
    np.testing.assert_allclose(linear, reference, atol=1e-6)
    back = kornia.color.linear_rgb_to_rgb(torch.from_numpy(linear).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(degrade.linear_to_srgb(linear), back, atol=1e-6)
    np.testing.assert_allclose(degrade.linear_to_srgb(linear), values, atol=1e-5)
    assert degrade.srgb_to_linear(np.full((1, 1, 3), 0.5, np.float32))[0, 0, 0] == pytest.approx(0.214041, abs=1e-5)


@pytest.mark.parametrize("sigma", [5.0, 25.0, 50.0])
def test_noise_std_matches_sigma_on_the_255_scale(sigma: float) -> None:
    image = np.full((256, 256, 3), 0.5, np.float32)
    noisy = degrade.add_gaussian_noise(image, sigma, np.random.default_rng(1), clip=False)
    assert np.std((noisy - image) * 255.0) == pytest.approx(sigma, rel=0.02)
    assert abs(np.mean(noisy - image)) * 255.0 < 0.05 * sigma


def test_noise_is_clipped_and_deterministic() -> None:
    image = np.zeros((32, 32, 3), np.float32)
    first = degrade.add_gaussian_noise(image, 50, np.random.default_rng(3))
    assert first.min() == 0.0 and first.max() <= 1.0 and first.dtype == np.float32
    np.testing.assert_array_equal(first, degrade.add_gaussian_noise(image, 50, np.random.default_rng(3)))
    assert not np.array_equal(first, degrade.add_gaussian_noise(image, 50, np.random.default_rng(4)))


def test_motion_blur_deterministic_per_seed(astronaut: np.ndarray) -> None:
    small = degrade.resize(astronaut, 160, 160)
    first = degrade.motion_blur(small, np.random.default_rng(7))
    np.testing.assert_array_equal(first, degrade.motion_blur(small, np.random.default_rng(7)))
    assert np.abs(first - degrade.motion_blur(small, np.random.default_rng(8))).max() > 0.05
    assert first.shape == small.shape and first.dtype == np.float32


def test_two_position_blur_is_linear_light_average_of_shifted_copies() -> None:
    # Alternating black and white columns: averaging in linear light gives 0.5 linear (0.735 sRGB),
    # averaging gamma-encoded values would give 0.5.
    image = np.zeros((8, 10, 3), np.float32)
    image[:, ::2] = 1.0
    image[2:5, 3:7] = 0.3
    blurred = degrade.blur_along_trajectory(image, np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    shifted = np.concatenate([image[:, :1], image[:, :-1]], axis=1)  # moved right by 1, reflected border
    linear_average = degrade.linear_to_srgb((degrade.srgb_to_linear(image) + degrade.srgb_to_linear(shifted)) / 2)
    np.testing.assert_allclose(blurred, linear_average, atol=1e-5)
    gamma_average = (image + shifted) / 2
    assert np.abs(blurred - gamma_average).max() > 0.2
    assert blurred[0, 1, 0] == pytest.approx(0.7354, abs=1e-3)


def test_blur_keeps_flat_images_and_removes_high_frequencies(astronaut: np.ndarray) -> None:
    flat = np.full((40, 60, 3), 0.3, np.float32)
    np.testing.assert_allclose(degrade.motion_blur(flat, np.random.default_rng(0)), flat, atol=1e-5)
    grey = lambda im: skimage.color.rgb2gray(im)  # noqa: E731
    sharp_energy = skimage.filters.laplace(grey(astronaut)).var()
    for seed in range(3):
        blurred = degrade.motion_blur(astronaut, np.random.default_rng(seed), max_shift=20)
        assert skimage.filters.laplace(grey(blurred)).var() < 0.5 * sharp_energy


def test_camera_trajectory_is_bounded_and_centred() -> None:
    path = degrade.camera_trajectory(np.random.default_rng(5), 9, max_shift=30.0, max_rotation_deg=1.0)
    assert path.shape == (9, 3)
    extent = np.linalg.norm(path[-1, :2] - path[0, :2])
    assert 0 < extent <= 30.0 + 1e-6
    assert np.abs(path[:, 2]).max() <= 1.0 + 1e-9
    np.testing.assert_allclose(path[4, 2], 0.0, atol=1e-12)  # rotation zero at the sharp (middle) instant


def test_sampled_number_of_positions_is_gopro_like(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = []
    original = degrade.camera_trajectory

    def counting_trajectory(rng: np.random.Generator, n_positions: int, *args: float) -> np.ndarray:
        counts.append(n_positions)
        return original(rng, n_positions, *args)

    monkeypatch.setattr(degrade, "camera_trajectory", counting_trajectory)
    for seed in range(30):
        degrade.motion_blur(np.zeros((8, 8, 3), np.float32), np.random.default_rng(seed))
    assert min(counts) >= 7 and max(counts) <= 13 and len(set(counts)) > 3


def test_frame_size_keeps_orientation() -> None:
    assert degrade.frame_size(720, 1280) == (640, 360)
    assert degrade.frame_size(1280, 720) == (360, 640)
    assert degrade.frame_size(500, 500) == (640, 360)
    assert degrade.frame_size(300, 451, 1280, 720) == (1280, 720)


def test_downscale_shape_and_antialiasing() -> None:
    image = np.random.default_rng(2).random((720, 1280, 3), dtype=np.float32)
    small = degrade.downscale(image, 2)
    assert small.shape == (360, 640, 3)
    np.testing.assert_allclose(small, skimage.transform.downscale_local_mean(image, (2, 2, 1)), atol=1e-5)
    stripes = np.zeros((16, 16, 3), np.float32)
    stripes[:, ::2] = 1.0  # finest possible detail: must average out, not alias to black or white
    np.testing.assert_allclose(degrade.downscale(stripes, 2), 0.5, atol=1e-6)
    assert np.ptp(degrade.downscale(stripes, 2, method="nearest")) == 0.0  # nearest aliases to one colour
    with pytest.raises(ValueError, match="divisible"):
        degrade.downscale(np.zeros((5, 8, 3), np.float32), 2)


def test_resize_to_frame_crops_to_aspect_without_distortion() -> None:
    image = np.random.default_rng(3).random((960, 1280, 3), dtype=np.float32)  # 4:3
    frame = degrade.resize_to_frame(image)
    assert frame.shape == (360, 640, 3)
    expected = skimage.transform.downscale_local_mean(image[120:840], (2, 2, 1))
    np.testing.assert_allclose(frame, expected, atol=1e-5)  # centre 16:9 band, area-averaged
    portrait = degrade.resize_to_frame(np.zeros((1000, 500, 3), np.float32))
    assert portrait.shape == (640, 360, 3)
    assert degrade.resize_to_frame(image, fit="stretch").shape == (360, 640, 3)
    enlarged = degrade.resize_to_frame(np.random.default_rng(0).random((90, 160, 3), dtype=np.float32), 1280, 720)
    assert enlarged.shape == (720, 1280, 3) and enlarged.min() >= 0.0 and enlarged.max() <= 1.0
    with pytest.raises(ValueError, match="fit"):
        degrade.resize_to_frame(image, fit="pad")


def test_rejects_non_rgb_input() -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        degrade.motion_blur(np.zeros((8, 8), np.float32), np.random.default_rng(0))


def test_geometric_functions_keep_uint8() -> None:
    image = (np.random.default_rng(4).random((90, 160, 3)) * 255).round().astype(np.uint8)
    small = degrade.downscale(image, 2)
    assert small.dtype == np.uint8
    reference = skimage.transform.downscale_local_mean(image.astype(np.float64), (2, 2, 1))
    assert np.abs(small - reference).max() <= 0.5 + 1e-9  # rounded area mean
    enlarged = degrade.resize_to_frame(image, 1280, 720)
    assert enlarged.dtype == np.uint8 and enlarged.shape == (720, 1280, 3)


# ----------------------------------------------------------------------------- downscale kernels, real kernels


def test_downscale_kernels_match_their_references(astronaut: np.ndarray) -> None:
    from PIL import Image

    image = astronaut[:256, :256]
    assert np.array_equal(degrade.downscale_with(image, 2, "area"), degrade.downscale(image, 2, "area"))
    # Antialiased bicubic is PIL's (and MATLAB's) kernel widened by the factor; OpenCV's INTER_CUBIC is not.
    pil = np.asarray(Image.fromarray((image * 255).round().astype(np.uint8)).resize((128, 128), Image.BICUBIC)) / 255.0
    assert np.abs(degrade.downscale_with(image, 2, "bicubic") - pil).max() < 2.5 / 255
    opencv = cv2.resize(image, (128, 128), interpolation=cv2.INTER_CUBIC)
    assert np.allclose(degrade.downscale_with(image, 2, "opencv-bicubic"), np.clip(opencv, 0, 1))
    with pytest.raises(ValueError, match="unknown downscale kernel 'lanczos'"):
        degrade.downscale_with(image, 2, "lanczos")


def test_only_opencv_bicubic_aliases_fine_stripes() -> None:
    """Stripes of period 3 px shrunk 2x: antialiased kernels blur them away, INTER_CUBIC folds them into false stripes."""
    stripes = np.repeat(np.repeat((np.arange(96) % 3 == 0).astype(np.float32)[None, :, None], 96, 0), 3, 2)
    contrast = {kernel: float(np.ptp(degrade.downscale_with(stripes, 2, kernel)[10:-10, 10:-10]))
                for kernel in degrade.DOWNSCALE_KERNELS}
    assert contrast["opencv-bicubic"] > 0.55 and contrast["bicubic"] < 0.25  # measured 0.59 and 0.16
    assert contrast["area"] < contrast["opencv-bicubic"]  # a box filter only halves them


def test_kernel_blur_by_a_shifted_delta_shifts_the_image(astronaut: np.ndarray) -> None:
    kernel = np.zeros((5, 5), np.float32)
    kernel[2, 4] = 1.0  # convolution: the image moves 2 px right
    shifted = degrade.kernel_blur(astronaut, kernel)
    assert np.abs(shifted[:, 2:] - astronaut[:, :-2]).max() < 1e-4


def test_transformed_kernels_are_normalised_sized_and_vary_per_seed() -> None:
    line = np.zeros((15, 15), np.float32)
    line[7, :] = 1.0  # horizontal motion of 15 px
    for size in (5.0, 12.0, 30.0):
        kernel = degrade.transform_kernel(line, np.random.default_rng(0), size)
        assert kernel.min() >= 0 and kernel.sum() == pytest.approx(1.0, abs=1e-5)
        assert max(kernel.shape) == round(size)
    shapes = {degrade.transform_kernel(line, np.random.default_rng(seed), 15).shape for seed in range(6)}
    assert len(shapes) > 1  # rotated: the line's bounding box changes with the angle
    with pytest.raises(ValueError, match="2-D blur kernel"):
        degrade.transform_kernel(np.zeros((3, 3)), np.random.default_rng(0), 5)


def test_random_blur_is_deterministic_and_nonuniform_blends_two_blurs(astronaut: np.ndarray) -> None:
    image = astronaut[:128, :128]
    kernels = [np.ones((1, 9), np.float32) / 9]
    first = degrade.random_blur(image, np.random.default_rng(1), 12, kernels, kernel_fraction=1.0)
    assert np.array_equal(first, degrade.random_blur(image, np.random.default_rng(1), 12, kernels, kernel_fraction=1.0))
    assert not np.array_equal(first, degrade.random_blur(image, np.random.default_rng(2), 12, kernels, kernel_fraction=1.0))
    # A non-uniform blur is the first blur at one end of a random direction and the second at the other.
    mixed = degrade.random_blur(image, np.random.default_rng(5), 12, nonuniform_fraction=1.0)
    rng = np.random.default_rng(5)
    rng.random()  # the draw that chose a non-uniform blur
    blurs = [degrade.motion_blur(image, rng, max_shift=12 * rng.uniform(0.25, 1.0)) for _ in range(2)]
    angle = rng.uniform(0, 2 * np.pi)
    rows, cols = np.mgrid[0:128, 0:128]
    along = (cols - 64) * np.cos(angle) + (rows - 64) * np.sin(angle)
    assert (along > 64).sum() > 100 and (along < -64).sum() > 100  # this seed's direction leaves both ends
    assert np.allclose(mixed[along > 64], blurs[0][along > 64], atol=1e-6)
    assert np.allclose(mixed[along < -64], blurs[1][along < -64], atol=1e-6)
    assert not np.allclose(blurs[0], blurs[1], atol=0.02)
