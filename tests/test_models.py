"""Networks: parameter counts against the papers, shapes, residual behaviour, normalisation, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import skimage.filters
import torch

from helpers.io import image_to_tensor
from helpers.models import EDSR, DnCNN, ImageNorm, UNet, UnsharpMask, build_model, count_parameters


def dncnn_parameters(depth: int, channels: int, image_channels: int = 3) -> int:
    """Zhang et al.'s architecture: conv+bias, (depth-2) x (conv without bias + BN scale/shift), conv+bias."""
    first = image_channels * channels * 9 + channels
    middle = (depth - 2) * (channels * channels * 9 + 2 * channels)
    last = channels * image_channels * 9 + image_channels
    return first + middle + last


def edsr_parameters(scale: int, blocks: int = 16, channels: int = 64) -> int:
    """Lim et al.'s baseline: head, blocks x 2 convs, body conv, pixel-shuffle convs, tail (all with bias)."""
    conv = lambda cin, cout: cin * cout * 9 + cout  # noqa: E731 - a formula, not a function worth naming
    upsampler = {2: conv(channels, 4 * channels), 3: conv(channels, 9 * channels), 4: 2 * conv(channels, 4 * channels)}
    return conv(3, channels) + blocks * 2 * conv(channels, channels) + conv(channels, channels) + upsampler[scale] + conv(channels, 3)


def test_dncnn_parameter_count_matches_paper() -> None:
    model = DnCNN()
    assert count_parameters(model) == dncnn_parameters(17, 64) == 558_403
    assert round(count_parameters(model) / 1e6, 3) == 0.558
    assert count_parameters(DnCNN(depth=10, channels=32)) == dncnn_parameters(10, 32)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_parameter_count_matches_paper(scale: int) -> None:
    assert count_parameters(EDSR(scale=scale)) == edsr_parameters(scale)
    if scale == 2:
        assert round(count_parameters(EDSR()) / 1e6, 2) == 1.37


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_output_is_exactly_scale_times_input(scale: int) -> None:
    model = EDSR(scale=scale, num_blocks=2, channels=16).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 19, 23)).shape == (2, 3, 19 * scale, 23 * scale)


@pytest.mark.parametrize("size", [(360, 640), (640, 360), (37, 53), (16, 16)])
def test_unet_keeps_any_input_size(size: tuple[int, int]) -> None:
    model = UNet(base_channels=8).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, *size)).shape == (1, 3, *size)


def test_unet_default_is_the_documented_size() -> None:
    assert count_parameters(UNet()) == 7_760_163


def test_residual_networks_return_input_when_the_residual_is_zero() -> None:
    images = torch.rand(2, 3, 40, 48)
    dncnn, unet = DnCNN(depth=5, channels=8).eval(), UNet(base_channels=4, depth=2).eval()
    torch.nn.init.zeros_(dncnn.body[-1].weight), torch.nn.init.zeros_(dncnn.body[-1].bias)
    torch.nn.init.zeros_(unet.head.weight), torch.nn.init.zeros_(unet.head.bias)
    with torch.no_grad():
        torch.testing.assert_close(dncnn(images), images, atol=1e-6, rtol=0)
        torch.testing.assert_close(unet(images), images, atol=1e-6, rtol=0)


def test_dncnn_subtracts_predicted_noise_in_image_units() -> None:
    """With the last conv predicting a constant c (normalised units), the output is x - c * std."""
    model = DnCNN(depth=3, channels=4).eval()
    torch.nn.init.zeros_(model.body[-1].weight)
    torch.nn.init.constant_(model.body[-1].bias, 0.1)
    images = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        expected = images - 0.1 * model.norm.std
        torch.testing.assert_close(model(images), expected, atol=1e-6, rtol=0)


def test_image_norm_round_trip_and_statistics() -> None:
    norm = ImageNorm()
    images = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(norm.denormalize(norm.normalize(images)), images)
    mean_image = norm.mean.expand(1, 3, 4, 4)
    assert torch.allclose(norm.normalize(mean_image), torch.zeros(1, 3, 4, 4), atol=1e-7)


def test_build_model_by_name_and_arch_round_trip() -> None:
    for name, cls in [("dncnn", DnCNN), ("unet", UNet), ("edsr", EDSR)]:
        model = build_model(name)
        assert isinstance(model, cls) and model.arch["name"] == name
        rebuilt = build_model(model.arch["name"], **model.arch["kwargs"])
        assert count_parameters(rebuilt) == count_parameters(model)
    assert build_model("edsr", scale=4).arch["kwargs"]["scale"] == 4
    with pytest.raises(ValueError, match="unknown model 'srgan'"):
        build_model("srgan")


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(1, 1, 64, 64), "expected 3 \\(RGB\\) channels, received 1"),
        (torch.rand(3, 64, 64), "expected shape \\(N, 3, H, W\\), received shape \\(3, 64, 64\\)"),
        (torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), "expected a floating-point tensor.*received dtype torch.uint8"),
        (torch.rand(1, 3, 64, 64) * 255, "expected values in \\[0, 1\\], received values in"),
        (torch.rand(1, 3, 20, 64), "expected height and width >= 35, received 20x64"),
    ],
)
def test_bad_input_raises_value_error_naming_expected_and_received(images: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DnCNN()(images)


def test_networks_reject_inputs_below_their_minimum_size() -> None:
    with pytest.raises(ValueError, match=">= 16"):
        UNet()(torch.rand(1, 3, 8, 64))
    with pytest.raises(ValueError, match=">= 8"):
        EDSR()(torch.rand(1, 3, 4, 4))


def test_unsharp_mask_matches_scikit_image_on_a_real_image() -> None:
    image = skimage.data.astronaut()
    for sigma, amount in [(1.0, 1.0), (2.0, 0.5)]:
        expected = skimage.filters.unsharp_mask(image, radius=sigma, amount=amount, channel_axis=2)
        ours = UnsharpMask(sigma=sigma, amount=amount).apply_uint8(image).astype(np.float64) / 255.0
        assert np.abs(ours - expected).max() <= 1 / 255 + 1e-9


def test_unsharp_mask_threshold_leaves_flat_regions_alone() -> None:
    image = skimage.data.coffee()
    images = image_to_tensor(image)
    sharpened = UnsharpMask(sigma=1.0, amount=1.0, threshold=0.02)(images)
    unthresholded = UnsharpMask(sigma=1.0, amount=1.0)(images)
    changed = (sharpened - images).abs() > 1e-6
    assert 0 < changed.float().mean() < ((unthresholded - images).abs() > 1e-6).float().mean()
    assert sharpened.min() >= 0 and sharpened.max() <= 1


def test_unsharp_mask_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="sigma > 0"):
        UnsharpMask(sigma=0)


def test_untrained_edsr_is_bicubic_interpolation_and_the_paper_variant_is_not() -> None:
    images = image_to_tensor(skimage.data.coffee()[:64, :96])
    bicubic = torch.nn.functional.interpolate(images, scale_factor=2, mode="bicubic", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(EDSR()(images), bicubic, atol=1e-5, rtol=0)
        paper = EDSR(upsample_skip=False)
        assert count_parameters(paper) == count_parameters(EDSR())
        assert (paper(images) - bicubic).abs().mean() > 0.05


def test_untrained_residual_networks_are_the_identity() -> None:
    images = image_to_tensor(skimage.data.coffee()[:64, :96])
    with torch.no_grad():
        torch.testing.assert_close(DnCNN()(images), images, atol=1e-5, rtol=0)
        torch.testing.assert_close(UNet()(images), images, atol=1e-5, rtol=0)


def test_dncnn_with_folded_batch_norm_is_the_authors_released_size() -> None:
    """CDnCNN-B as released: 20 convolutions with bias, no batch norm: (3->64), 18 x (64->64), (64->3)."""
    model = DnCNN(depth=20, batch_norm=False)
    conv = lambda cin, cout: cin * cout * 9 + cout  # noqa: E731 - a formula
    assert count_parameters(model) == conv(3, 64) + 18 * conv(64, 64) + conv(64, 3) == 668_227
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in model.modules())
    assert model.min_size == 41 and build_model("dncnn", **model.arch["kwargs"]).arch == model.arch


@pytest.mark.parametrize("make", [lambda **kw: DnCNN(depth=4, channels=8, **kw), lambda **kw: EDSR(num_blocks=1, channels=8, **kw)])
def test_pad_colour_is_what_the_first_convolution_sees_beyond_the_border(make) -> None:
    """Padding with the ImageNet mean colour is the default zero padding of the normalised input; black is
    the zero padding of the [0, 1] input, i.e. the first convolution applied to the explicitly padded image."""
    from conftest import without_identity_start

    torch.manual_seed(0)
    default = without_identity_start(make()).eval()
    as_mean, as_black = make(pad_colour=ImageNorm().mean.flatten().tolist()), make(pad_colour=(0.0, 0.0, 0.0))
    as_mean.load_state_dict(default.state_dict()), as_black.load_state_dict(default.state_dict())
    images = torch.rand(1, 3, 24, 20)
    first = default.body[0] if isinstance(default, DnCNN) else default.head
    with torch.no_grad():
        torch.testing.assert_close(as_mean.eval()(images), default(images), atol=1e-5, rtol=0)
        padded = torch.nn.functional.pad(images, (1, 1, 1, 1))  # black, in [0, 1]
        expected = torch.nn.functional.conv2d(default.norm.normalize(padded), first.weight, first.bias)
        seen = {}
        hook = (as_black.body[0] if isinstance(as_black, DnCNN) else as_black.head).register_forward_hook(
            lambda module, inputs, output: seen.update(first=output.clone()))  # before the in-place ReLU
        as_black.eval()(images)
        hook.remove()
    torch.testing.assert_close(seen["first"], expected, atol=1e-5, rtol=0)
    assert not torch.allclose(as_black(images), default(images), atol=1e-4)


def test_dncnn_accepts_unclipped_noisy_input_but_not_the_0_255_scale() -> None:
    model = DnCNN(depth=3, channels=4).eval()
    noisy = torch.rand(1, 3, 16, 16) + torch.randn(1, 3, 16, 16) * 50 / 255  # the paper's float noise
    assert noisy.min() < 0 and noisy.max() > 1
    with torch.no_grad():
        assert model(noisy).shape == noisy.shape
    with pytest.raises(ValueError, match="expected values in \\[0, 1\\]"):
        model(torch.rand(1, 3, 16, 16) * 255)
    with pytest.raises(ValueError, match="expected values in \\[0, 1\\]"):
        UNet()(noisy)
