"""helpers.evaluate: the ablation table and single-stage evaluators against scikit-image references."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity
from torch import nn

from helpers.evaluate import (
    STAGE_LABELS,
    UNSHARP_BASELINE,
    evaluate_cascade,
    evaluate_deblurring,
    evaluate_denoising,
    evaluate_super_resolution,
    format_table,
    group_evaluations,
    upscale_bicubic,
)
from helpers.models import EDSR, UNet, DnCNN
from helpers.pipeline import Restorer
from helpers.viz import evaluation_grid

CASCADE_ROWS = [*STAGE_LABELS.values(), UNSHARP_BASELINE]


def small_models(seed: int = 0) -> dict[str, nn.Module]:
    """Random-initialised small networks (the real weights are not needed to test the plumbing)."""
    torch.manual_seed(seed)
    return {
        "dncnn": DnCNN(depth=5, channels=16).eval(),
        "unet": UNet(base_channels=8, depth=2).eval(),
        "edsr": EDSR(num_blocks=2, channels=16).eval(),
    }


def reference_metrics(image: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """PSNR, SSIM (Wang et al.'s Gaussian window) and MSE on the [0, 1] scale, from scikit-image."""
    return {
        "psnr": peak_signal_noise_ratio(target, image, data_range=255),
        "ssim": structural_similarity(
            target, image, data_range=255, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        ),
        "mse": mean_squared_error(target / 255.0, image / 255.0),
    }


@pytest.fixture(scope="module")
def frame_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """Two (input 96x56, target 192x112) pairs: crops of real photos, the input an area-downscaled blurred copy."""
    pairs = []
    for photo in (skimage.data.astronaut(), skimage.data.coffee()):
        target = np.ascontiguousarray(photo[100:212, 100:292])
        blurred = cv2.GaussianBlur(target, (5, 5), 1.2)
        pairs.append((cv2.resize(blurred, (96, 56), interpolation=cv2.INTER_AREA), target))
    return pairs


@pytest.fixture(scope="module")
def cascade(frame_pairs):
    restorer = Restorer(small_models(), device="cpu", fp32=True)
    return restorer, evaluate_cascade(restorer, frame_pairs, keep_examples=2)


def test_cascade_table_has_every_stage_and_baseline(cascade):
    _, evaluation = cascade
    assert [row["method"] for row in evaluation.table] == CASCADE_ROWS
    assert all(set(row) == {"method", "psnr", "ssim", "mse", "psnr_gain"} for row in evaluation.table)
    assert len(evaluation.per_image) == 2 * len(CASCADE_ROWS)
    assert evaluation.table[0]["psnr_gain"] == 0.0


def test_cascade_numbers_match_scikit_image(cascade, frame_pairs):
    restorer, evaluation = cascade
    for (name, images), (source, target) in zip(evaluation.examples, frame_pairs):
        # the bicubic baseline is bicubic interpolation (OpenCV's, in float, agrees within one grey level)
        opencv_bicubic = cv2.resize(source.astype(np.float32), (192, 112), interpolation=cv2.INTER_CUBIC)
        bicubic = images[STAGE_LABELS["input"]]
        assert np.abs(bicubic.astype(np.float32) - np.clip(opencv_bicubic, 0, 255)).max() <= 1.0
        # the EDSR row measures exactly what the restorer produces at that stage
        np.testing.assert_array_equal(images[STAGE_LABELS["edsr"]], restorer.restore_stages(source)["edsr"])
        for method in (STAGE_LABELS["input"], STAGE_LABELS["edsr"]):
            row = next(r for r in evaluation.per_image if r["image"] == name and r["method"] == method)
            expected = reference_metrics(images[method], target)
            assert row["psnr"] == pytest.approx(expected["psnr"], abs=1e-3)
            assert row["ssim"] == pytest.approx(expected["ssim"], abs=1e-3)
            assert row["mse"] == pytest.approx(expected["mse"], rel=1e-4)
    table = {row["method"]: row for row in evaluation.table}
    for method in (STAGE_LABELS["input"], STAGE_LABELS["dncnn"]):
        per_image = [reference_metrics(images[method], target)["psnr"] for (_, images), (_, target) in zip(evaluation.examples, frame_pairs)]
        assert table[method]["psnr"] == pytest.approx(np.mean(per_image), abs=1e-3)


def test_cascade_low_resolution_stages_are_bicubically_upscaled(cascade, frame_pairs):
    restorer, evaluation = cascade
    source, target = frame_pairs[0]
    denoised = restorer.restore_stages(source)["dncnn"]
    assert denoised.shape == source.shape
    np.testing.assert_array_equal(evaluation.examples[0][1][STAGE_LABELS["dncnn"]], upscale_bicubic(denoised, 112, 192))


def test_format_table_is_aligned_markdown(cascade):
    lines = format_table(cascade[1].table).splitlines()
    assert len(lines) == 2 + len(CASCADE_ROWS) and len({len(line) for line in lines}) == 1
    assert lines[0].startswith("| method") and set(lines[1]) <= {"|", "-"}


def test_grouped_evaluations_keep_each_groups_rows_and_name_its_per_image_methods(cascade, frame_pairs):
    _, stage_wise = cascade
    other = evaluate_cascade(Restorer(small_models(seed=1), device="cpu", fp32=True), frame_pairs, keep_examples=0)
    both = group_evaluations({"stage-wise": stage_wise, "end-to-end": other})
    assert [(row["weights"], row["method"]) for row in both.table] == [
        *(("stage-wise", method) for method in CASCADE_ROWS), *(("end-to-end", method) for method in CASCADE_ROWS)
    ]
    assert both.table[len(CASCADE_ROWS) + 2]["psnr"] == other.table[2]["psnr"]
    assert {row["method"] for row in both.per_image} == {f"{group}: {method}" for group in ("stage-wise", "end-to-end") for method in CASCADE_ROWS}
    assert format_table(both.table).splitlines()[2].startswith("| stage-wise | input (bicubic x2)")
    # Examples hold the groups that kept them (here the first), named like the per-image rows: grids work.
    assert [name for name, _ in both.examples] == [name for name, _ in stage_wise.examples]
    assert list(both.examples[0][1]) == [f"stage-wise: {method}" for method in CASCADE_ROWS] + ["target"]
    assert len(evaluation_grid(both).axes) == 2 * 2 * (len(CASCADE_ROWS) + 1)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[60:156, 120:248])  # 128x96 face crop


def test_denoising_identity_model_gives_the_noisy_input_psnr(photo):
    evaluation = evaluate_denoising(nn.Identity(), [photo], sigma=25, seed=3, device="cpu")
    rng = np.random.default_rng([3, 0])
    noise = rng.standard_normal(photo.shape, dtype=np.float32) * np.float32(25 / 255)
    noisy = np.round(np.clip(photo / np.float32(255) + noise, 0, 1) * 255).astype(np.uint8)
    expected = peak_signal_noise_ratio(photo, noisy, data_range=255)
    noisy_row, model_row = evaluation.table
    assert noisy_row["method"] == "noisy input (sigma 25, clipped)" and model_row["method"] == "Identity"
    assert noisy_row["psnr"] == pytest.approx(expected, abs=0.02)
    assert model_row["psnr"] == pytest.approx(noisy_row["psnr"], abs=1e-6)
    assert 20.0 < expected < 20.8  # sigma 25 noise: 20*log10(255/25) = 20.17 dB, a little more after clipping


class InputRecorder(nn.Module):
    """Identity that keeps what it was fed (in a class attribute: the evaluator runs a deep copy)."""

    seen: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        InputRecorder.seen.append(images.clone())
        return images


@pytest.mark.parametrize("protocol", ["clipped", "paper"])
def test_noise_protocols_feed_the_network_what_they_say(photo, protocol):
    """paper: photo + float noise, unclipped and unrounded (Zhang et al.'s test code); clipped: a saved 8-bit photo."""
    InputRecorder.seen.clear()
    evaluation = evaluate_denoising(InputRecorder(), [photo], sigma=50, seed=5, noise_protocol=protocol, device="cpu")
    rng = np.random.default_rng([5, 0])
    noisy = photo / np.float32(255) + rng.standard_normal(photo.shape, dtype=np.float32) * np.float32(50 / 255)
    if protocol == "clipped":
        noisy = np.round(np.clip(noisy, 0, 1) * 255) / 255
    fed = InputRecorder.seen[0][0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(fed, noisy, atol=1e-6, rtol=0)
    assert (fed.min() < -0.1 and fed.max() > 1.1) == (protocol == "paper")
    assert evaluation.table[0]["method"] == f"noisy input (sigma 50, {protocol})"
    with pytest.raises(ValueError, match="noise_protocol: expected one of clipped, paper"):
        evaluate_denoising(nn.Identity(), [photo], noise_protocol="matlab", device="cpu")


class Darker(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images * 0.9


def test_denoising_compares_several_networks_on_the_same_noisy_images(photo):
    both = evaluate_denoising({"ours": nn.Identity(), "theirs": Darker()}, [photo], sigma=25, seed=3, device="cpu")
    assert [row["method"] for row in both.table] == ["noisy input (sigma 25, clipped)", "ours", "theirs"]
    for row, model in zip(both.table[1:], (nn.Identity(), Darker())):
        alone = evaluate_denoising(model, [photo], sigma=25, seed=3, device="cpu")
        assert row["psnr"] == pytest.approx(alone.table[1]["psnr"], abs=1e-9)
    assert both.table[2]["psnr"] < both.table[1]["psnr"] - 1


def test_super_resolution_matches_the_sr_convention(photo):
    bicubic_model = nn.Upsample(scale_factor=2, mode="bicubic", align_corners=False)
    evaluation = evaluate_super_resolution(bicubic_model, {"face": photo[:95, :127]}, scale=2, device="cpu")
    target = photo[:94, :126]  # cropped to a multiple of the scale
    low_res = np.round(target.reshape(47, 2, 63, 2, 3).astype(np.float64).mean(axis=(1, 3))).astype(np.uint8)
    upscaled = torch.nn.functional.interpolate(
        torch.from_numpy(low_res).permute(2, 0, 1)[None].double() / 255, size=(94, 126), mode="bicubic", align_corners=False
    )
    upscaled = np.round(upscaled.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    y_target, y_upscaled = rgb2ycbcr(target)[2:-2, 2:-2, 0], rgb2ycbcr(upscaled)[2:-2, 2:-2, 0]
    expected = peak_signal_noise_ratio(y_target, y_upscaled, data_range=255)
    bicubic_row, model_row = evaluation.table
    assert bicubic_row["method"] == "bicubic x2"
    assert bicubic_row["psnr_y"] == pytest.approx(expected, abs=0.05)
    assert model_row["psnr_y"] == pytest.approx(bicubic_row["psnr_y"], abs=1e-6)  # a bicubic "model" ties


def test_deblurring_has_blurry_and_unsharp_baselines(photo):
    evaluation = evaluate_deblurring(nn.Identity(), [photo], seed=1, max_shift=6, device="cpu")
    methods = [row["method"] for row in evaluation.table]
    assert methods == ["blurry input", "blurry + unsharp", "Identity"]
    blurry = evaluation.examples[0][1]["blurry input"]
    assert evaluation.table[0]["psnr"] == pytest.approx(peak_signal_noise_ratio(photo, blurry, data_range=255), abs=1e-3)
    assert evaluation.table[2]["psnr"] == pytest.approx(evaluation.table[0]["psnr"], abs=1e-6)
    assert evaluation.table[1]["psnr"] != pytest.approx(evaluation.table[0]["psnr"], abs=1e-3)


def test_single_stage_rejects_non_uint8_images(photo):
    with pytest.raises(ValueError, match="image 0000: expected RGB uint8"):
        evaluate_denoising(nn.Identity(), [photo.astype(np.float32)], device="cpu")
