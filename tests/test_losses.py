"""Losses: each term against an independent computation, the combined config, the frozen perceptual net."""

from __future__ import annotations

import pytest
import skimage.data
import skimage.metrics
import torch
import torchvision

from helpers.io import image_to_tensor
from helpers.losses import PerceptualLoss, SobelEdgeLoss, SSIMLoss, build_loss


@pytest.fixture()
def photo_pair() -> tuple[torch.Tensor, torch.Tensor]:
    clean = image_to_tensor(skimage.data.astronaut()[::4, ::4])
    noisy = (clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    return noisy, clean


def test_ssim_loss_is_one_minus_scikit_image_ssim(photo_pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    noisy, clean = photo_pair
    as_numpy = lambda t: t[0].permute(1, 2, 0).double().numpy()  # noqa: E731
    expected = skimage.metrics.structural_similarity(
        as_numpy(clean), as_numpy(noisy), channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )
    assert float(SSIMLoss()(noisy, clean)) == pytest.approx(1 - expected, abs=0.002)


def test_sobel_loss_is_zero_for_a_brightness_shift_and_positive_for_noise(photo_pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    noisy, clean = photo_pair
    dimmed = clean * 0.9
    assert float(SobelEdgeLoss()(dimmed + 0.05, dimmed)) < 1e-6
    assert float(SobelEdgeLoss()(noisy, clean)) > 0.01


def test_sobel_loss_matches_a_hand_convolution() -> None:
    images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    target = torch.zeros_like(images)
    kernel_x = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8  # kornia normalises Sobel by its L1 norm
    kernels = torch.stack([kernel_x, kernel_x.T])[:, None].repeat(3, 1, 1, 1)
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1), mode="replicate")
    gradients = torch.nn.functional.conv2d(padded, kernels, groups=3)
    assert float(SobelEdgeLoss()(images, target)) == pytest.approx(float(gradients.abs().mean()), rel=1e-5)


def test_perceptual_loss_is_frozen_and_stays_in_eval_mode(tmp_path, photo_pair) -> None:
    noisy, clean = photo_pair
    weights_file = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_large(weights=None).state_dict(), weights_file)
    loss = PerceptualLoss(layer=4, weights=str(weights_file))
    loss.train()
    assert not loss.features.training
    assert all(not parameter.requires_grad for parameter in loss.parameters())
    prediction = noisy.clone().requires_grad_(True)
    value = loss(prediction, clean)
    value.backward()
    assert value > 0 and prediction.grad is not None and float(loss(clean, clean)) == 0.0


def test_perceptual_loss_normalises_with_imagenet_statistics(tmp_path) -> None:
    loss = PerceptualLoss(layer=0, weights="random")
    images = torch.rand(1, 3, 32, 32)
    expected_input = (images - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(loss.features(loss.norm.normalize(images)), loss.features(expected_input))


def test_perceptual_loss_without_weights_fails_clearly(tmp_path, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    with pytest.raises(RuntimeError, match="could not download MobileNetV3-Large.*weights='random'"):
        PerceptualLoss(weights="imagenet")
    with pytest.raises(FileNotFoundError, match="missing.pth: MobileNetV3 weights file not found"):
        PerceptualLoss(weights=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match="junk.pth: not a MobileNetV3-Large state dict"):
        PerceptualLoss(weights=str(tmp_path / "junk.pth"))


def test_combined_loss_is_the_weighted_sum_of_its_terms(photo_pair) -> None:
    noisy, clean = photo_pair
    config = {"weights": {"mse": 1.0, "l1": 0.5, "ssim": 0.2, "sobel": 0.1}}
    loss = build_loss(config)
    total = loss(noisy, clean)
    expected = (
        torch.nn.functional.mse_loss(noisy, clean)
        + 0.5 * torch.nn.functional.l1_loss(noisy, clean)
        + 0.2 * SSIMLoss()(noisy, clean)
        + 0.1 * SobelEdgeLoss()(noisy, clean)
    )
    assert float(total) == pytest.approx(float(expected), rel=1e-5)
    assert set(loss.last_terms) == {"mse", "l1", "ssim", "sobel"}


def test_combined_loss_rejects_bad_configs_and_inputs(photo_pair) -> None:
    noisy, clean = photo_pair
    with pytest.raises(ValueError, match="unknown terms \\['vgg'\\]"):
        build_loss({"weights": {"vgg": 1.0}})
    with pytest.raises(ValueError, match="unknown keys"):
        build_loss({"weight": {}})
    with pytest.raises(ValueError, match="at least one term"):
        build_loss({"weights": {"mse": 0.0}})
    with pytest.raises(ValueError, match="same shape"):
        build_loss()(noisy[..., :32], clean)
