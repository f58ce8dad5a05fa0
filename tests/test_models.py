"""Networks: parameter and FLOP counts against the papers and hand counts, shapes, residual behaviour, normalisation, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import skimage.filters
import torch

from helpers.io import image_to_tensor
from helpers.models import IMAGENET_MEAN, IMAGENET_STD, EDSR, DnCNN, ImageNorm, UNet, UnsharpMask, build_model, count_parameters


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


# ----------------------------------------------------------------------------- UNet(block="nafnet"): the gated block


def gated_block_parameters(c: int) -> int:
    """One NAFNet block of c channels, layer by layer (Chen et al., ECCV 2022, Fig. 3c): 7 c^2 + 33 c."""
    norms = 2 * (c + c)  # two LayerNorms: a scale and a shift per channel
    spatial = (c * 2 * c + 2 * c) + (2 * c * 9 + 2 * c) + (c * c + c) + (c * c + c)  # 1x1 to 2c, 3x3 depthwise, attention, 1x1 out
    feed_forward = (c * 2 * c + 2 * c) + (c * c + c)  # 1x1 to 2c (SimpleGate halves it), 1x1 out
    return norms + spatial + feed_forward + 2 * c  # + the two residual scales


def gated_unet_parameters(width: int, enc: list[int], middle: int, dec: list[int]) -> int:
    """3x3 intro and head, per level its blocks, a 2x2 stride-2 conv c -> 2c and a bias-free 1x1 conv 2c -> 4c
    before the pixel shuffle back to c, the middle blocks at width * 2**levels channels."""
    total = (3 * width * 9 + width) + (width * 3 * 9 + 3)
    for level, (encoder, decoder) in enumerate(zip(enc, dec)):
        c = width * 2**level
        total += (encoder + decoder) * gated_block_parameters(c) + (c * 2 * c * 4 + 2 * c) + 2 * c * 4 * c
    return total + middle * gated_block_parameters(width * 2 ** len(enc))


def gated_unet_macs(width: int, enc: list[int], middle: int, dec: list[int], height: int, width_px: int) -> int:
    """Multiply-accumulates of the convolutions on an H x W input (a multiple of 2**levels; biases not counted): a block
    costs 6 c^2 + 18 c per pixel (1x1 c->2c, depthwise 2c x 9, 1x1 c->c, 1x1 c->2c, 1x1 c->c) plus c^2 once for
    the channel attention's 1x1 conv on the pooled vector; the down conv 8 c^2 and the up conv 8 c^2 per pixel of
    the coarser level."""
    pixels = lambda level: height * width_px // 4**level  # noqa: E731 - a formula
    block = lambda c, level: pixels(level) * (6 * c * c + 18 * c) + c * c  # noqa: E731
    total = pixels(0) * (3 * width * 9 + width * 3 * 9)
    for level, (encoder, decoder) in enumerate(zip(enc, dec)):
        c = width * 2**level
        total += (encoder + decoder) * block(c, level) + pixels(level + 1) * (8 * c * c + 8 * c * c)
    return total + middle * block(width * 2 ** len(enc), len(enc))


def plain_unet_macs(base: int, depth: int, height: int, width_px: int) -> int:
    """The seed's UNet: double 3x3 convs per level, 2x2 transposed convs, double convs on the concatenation, 1x1 head."""
    widths = [3] + [base * 2**level for level in range(depth + 1)]
    pixels = lambda level: height * width_px // 4**level  # noqa: E731
    total = sum(pixels(level) * 9 * (widths[level] * widths[level + 1] + widths[level + 1] ** 2) for level in range(depth + 1))
    for level in range(depth):
        c = widths[level + 1]
        total += pixels(level + 1) * 2 * c * c * 4 + pixels(level) * 9 * (2 * c * c + c * c)
    return total + pixels(0) * base * 3


GATED_SIZES = [(32, [1, 1, 1, 28], 1, [1, 1, 1, 1]), (16, [1, 1, 1, 4], 1, [1, 1, 1, 1]), (8, [2, 0], 3, [0, 1])]


@pytest.mark.parametrize(("width", "enc", "middle", "dec"), GATED_SIZES)
def test_gated_unet_parameters_and_flops_match_the_hand_count(width, enc, middle, dec) -> None:
    from helpers.profiling import count_flops

    model = UNet(block="nafnet", width=width, enc_blocks=enc, middle_blocks=middle, dec_blocks=dec).eval()
    assert count_parameters(model) == gated_unet_parameters(width, enc, middle, dec)
    with torch.no_grad():  # FlopCounterMode counts 2 FLOPs per multiply-accumulate
        assert count_flops(model, torch.rand(1, 3, 64, 48)) == 2 * gated_unet_macs(width, enc, middle, dec, 64, 48)
    if width == 32:  # the paper's GOPRO network, NAFNet-32: 17.11 M parameters, 16 GMACs on a 256x256 patch
        assert count_parameters(model) == 17_111_907 and round(gated_unet_macs(width, enc, middle, dec, 256, 256) / 1e9) == 16


def test_plain_unet_flops_match_the_hand_count() -> None:
    from helpers.profiling import count_flops

    with torch.no_grad():
        assert count_flops(UNet(base_channels=8, depth=3).eval(), torch.rand(1, 3, 48, 32)) == 2 * plain_unet_macs(8, 3, 48, 32)
    assert round(plain_unet_macs(32, 4, 256, 256) / 1e9, 1) == 12.1  # the shipped UNet on a 256x256 patch


def test_gated_unet_starts_as_the_identity_and_learns_away_from_it() -> None:
    from conftest import without_identity_start

    images = image_to_tensor(skimage.data.coffee()[:64, :96])
    torch.manual_seed(0)
    model = UNet(block="nafnet", width=8, enc_blocks=[1, 2], dec_blocks=[1, 1])  # 1 + 2 + 1 (middle) + 1 + 1 blocks
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(images), images, atol=1e-5, rtol=0)
        assert (without_identity_start(model)(images) - images).abs().mean() > 1e-3  # the head is what held it at zero
    optimizer = torch.optim.Adam(model.train().parameters(), lr=1e-3)
    for _ in range(2):
        optimizer.zero_grad()
        (model(images) - images.flip(-1)).abs().mean().backward()
        optimizer.step()
    scales = [parameter for name, parameter in model.named_parameters() if name.endswith("_scale")]
    assert len(scales) == 2 * 6 and all(scale.abs().sum() > 0 for scale in scales)  # every block's residual scales learn


@pytest.mark.parametrize("size", [(64, 96), (16, 16), (37, 53), (360, 640)])
def test_gated_unet_keeps_any_input_size_its_levels_allow(size: tuple[int, int]) -> None:
    """Two levels: 16 is a multiple of 4 and runs as it is; 37x53 is reflect-padded to 40x56 and cropped back."""
    model = UNet(block="nafnet", width=8, enc_blocks=[1, 1], dec_blocks=[1, 1]).eval()
    assert model.min_size == 4 and model.depth == 2
    with torch.no_grad():
        assert model(torch.rand(1, 3, *size)).shape == (1, 3, *size)
    with pytest.raises(ValueError, match=">= 4"):
        model(torch.rand(1, 3, 3, 64))


def test_gated_unet_normalises_its_input_as_the_plain_one_does() -> None:
    """A constant residual c (normalised units) from the head's bias shifts the output by c * std, per channel."""
    model = UNet(block="nafnet", width=8, enc_blocks=[1], dec_blocks=[1]).eval()
    torch.nn.init.constant_(model.head.bias, 0.1)
    images = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(images), images + 0.1 * model.norm.std, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"block": "gated"}, "expected one of plain, nafnet, received 'gated'"),
        ({"width": 16}, "width set the nafnet block's size; block='plain' takes base_channels and depth"),
        ({"block": "nafnet", "depth": 3}, "takes width and enc_blocks, not base_channels and depth"),
        ({"block": "nafnet", "enc_blocks": [1, 1], "dec_blocks": [1]}, "as many in dec_blocks as in enc_blocks"),
        ({"block": "nafnet", "enc_blocks": [1, 65]}, "0 to 64 blocks per level"),
        ({"block": "nafnet", "width": 512, "enc_blocks": [1] * 4}, "exceeds 4096 channels"),
        ({"block": "nafnet", "width": 16.0}, "whole numbers"),
        ({"block": "nafnet", "widht": 16}, "unknown argument 'widht'"),
    ],
)
def test_unet_block_arguments_are_checked(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_model("unet", **kwargs)


def plain_unet_reference(weights: dict[str, torch.Tensor], images: torch.Tensor, depth: int = 4) -> torch.Tensor:
    """The seed's UNet forward written with torch.nn.functional from a state dict: the reference that
    ``UNet(block="plain")`` must match bit for bit."""
    functional = torch.nn.functional
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def double_conv(prefix: str, features: torch.Tensor) -> torch.Tensor:
        for index in (0, 2):
            features = functional.relu(functional.conv2d(features, weights[f"{prefix}.{index}.weight"], weights[f"{prefix}.{index}.bias"], padding=1))
        return features

    height, width = images.shape[-2:]
    normalized = (images - mean) / std
    features = functional.pad(normalized, (0, (-width) % 2**depth, 0, (-height) % 2**depth), mode="reflect")
    skips = []
    for level in range(depth + 1):
        features = double_conv(f"encoders.{level}", features if level == 0 else functional.max_pool2d(features, 2))
        skips.append(features)
    features = skips.pop()
    for index in range(depth):
        up = functional.conv_transpose2d(features, weights[f"upsamplers.{index}.weight"], weights[f"upsamplers.{index}.bias"], stride=2)
        features = double_conv(f"decoders.{index}", torch.cat([up, skips.pop()], dim=1))
    residual = functional.conv2d(features, weights["head.weight"], weights["head.bias"])[..., :height, :width]
    return (normalized + residual) * std + mean


def test_plain_unet_is_the_seed_network_and_the_shipped_weights_load_unchanged() -> None:
    """weights/unet.pt predates the block argument: it loads as block="plain", and gives the reference's output exactly."""
    from helpers.checkpoint import load_checkpoint, load_model

    stored = load_checkpoint("weights/unet.pt")["arch"]["kwargs"]
    assert "block" not in stored
    model = load_model("weights/unet.pt", expected_name="unet")
    assert model.arch["kwargs"] == {**stored, "block": "plain"} and model.block == "plain"
    images = image_to_tensor(skimage.data.coffee()[:50, :70])  # not a multiple of 16: padding and cropping too
    with torch.no_grad():
        assert torch.equal(model(images), plain_unet_reference(model.state_dict(), images))
    torch.manual_seed(0)
    default = UNet()
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), UNet(block="plain").state_dict().values()))


def test_checkpoints_record_the_block_and_rebuild_the_gated_network(tmp_path) -> None:
    from conftest import without_identity_start
    from helpers.checkpoint import export_weights, load_checkpoint, load_model

    torch.manual_seed(0)
    model = without_identity_start(UNet(block="nafnet", width=8, enc_blocks=[1, 2], middle_blocks=2, dec_blocks=[1, 1])).eval()
    for scale in (parameter for name, parameter in model.named_parameters() if name.endswith("_scale")):
        torch.nn.init.normal_(scale)  # blocks that do something, so the comparison depends on every weight
    path = export_weights(model, tmp_path / "unet.pt", half=False)
    assert load_checkpoint(path)["arch"] == {"name": "unet", "kwargs": {
        "image_channels": 3, "block": "nafnet", "width": 8, "enc_blocks": (1, 2), "middle_blocks": 2, "dec_blocks": (1, 1)}}
    rebuilt = load_model(path, expected_name="unet")
    images = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        assert torch.equal(rebuilt(images), model(images))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"block": "nafnet", "width": 4096, "enc_blocks": [64] * 8, "dec_blocks": [64] * 8}, "exceeds 4096 channels"),
        ({"block": "nafnet", "enc_blocks": [[1] * 16] * 16}, "not a bounded number"),
        ({"block": "nafnet", "enc_blocks": [1, 1, 1, 10**6]}, "outside 0..4096"),
    ],
)
def test_the_checkpoint_loader_bounds_the_gated_arguments(tmp_path, kwargs, message) -> None:
    """A hostile file's architecture is refused in one line before anything the size of the network is allocated."""
    from helpers.checkpoint import CheckpointError, load_model, save_checkpoint

    path = save_checkpoint(tmp_path / "hostile.pt", {"arch": {"name": "unet", "kwargs": kwargs}, "model": {}})
    with pytest.raises(CheckpointError, match=f"hostile.pt: .*{message}"):
        load_model(path)
