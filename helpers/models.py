"""The cascade's networks: DnCNN (denoise), UNet (deblur), EDSR (super-resolve), UnsharpMask (sharpen).

Every module takes and returns RGB float tensors (N, 3, H, W) in [0, 1]. The seed's ImageNet
normalisation lives in ``ImageNorm`` alone: networks normalise their input and undo it on their
output, so callers never (de)normalise by hand.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Mapping, Sequence

import kornia
import numpy as np
import torch
from torch import nn

from .checks import RANGE_TOLERANCE, check_image_batch
from .io import image_to_tensor, tensor_to_image

__all__ = ["ImageNorm", "DnCNN", "UNet", "UNET_BLOCKS", "EDSR", "UnsharpMask", "MODELS", "build_model", "count_parameters", "unknown_arguments",
           "BicubicWithMatrixBackward"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNorm(nn.Module):
    """ImageNet mean/std normalisation and its inverse: the one place the seed's normalisation lives."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB -> zero-mean, unit-variance (ImageNet statistics)."""
        return (images - self.mean) / self.std

    def denormalize(self, features: torch.Tensor) -> torch.Tensor:
        """Inverse of ``normalize``."""
        return features * self.std + self.mean


def _zero_init(layer: nn.Conv2d) -> None:
    """Zero a residual branch's last layer so the untrained network starts as the identity."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)


class _Network(nn.Module):
    """Shared behaviour: input validation, the architecture record checkpoints need, the first layer's border.

    ``pad_colour`` (an RGB colour in [0, 1], or None) is what the first 3x3 convolution sees beyond the
    image edge. None zero-pads the normalised input, i.e. pads with the ImageNet mean colour: how this
    project's networks are trained. Networks imported from their authors set the colour their authors'
    convolution saw there (black for DnCNN, which normalises nothing; the DIV2K mean for EDSR), so that
    folding their normalisation into ours is exact at the image borders too.
    """

    name: str = ""
    min_size: int = 1
    input_tolerance: float = RANGE_TOLERANCE  # how far inputs may stray outside [0, 1]

    def __init__(self, **arch_kwargs: Any) -> None:
        super().__init__()
        self.arch_kwargs = arch_kwargs
        self.norm = ImageNorm()
        colour = arch_kwargs.get("pad_colour")
        colour = None if colour is None else torch.tensor(colour, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("pad_colour", colour, persistent=False)

    @property
    def arch(self) -> dict[str, Any]:
        """Architecture name and constructor arguments: enough to rebuild the model from a checkpoint."""
        return {"name": self.name, "kwargs": dict(self.arch_kwargs)}

    @property
    def first_padding(self) -> int:
        """Padding of the first 3x3 convolution: 1, or 0 when ``_pad_input`` pads with ``pad_colour`` instead."""
        return 1 if self.pad_colour is None else 0

    def _pad_input(self, normalized: torch.Tensor) -> torch.Tensor:
        """The normalised input, padded by one pixel of ``pad_colour`` when that is set (else unchanged)."""
        if self.pad_colour is None:
            return normalized
        fill = self.norm.normalize(self.pad_colour).to(normalized.dtype)
        return nn.functional.pad(normalized - fill, (1, 1, 1, 1)) + fill

    def _check(self, images: torch.Tensor) -> None:
        check_image_batch(images, name=f"{type(self).__name__} input", min_size=self.min_size, tolerance=self.input_tolerance)


class DnCNN(_Network):
    """DnCNN (Zhang et al., IEEE TIP 2017): residual learning of Gaussian noise.

    Args:
        depth: number of convolution layers (17 in the paper; 20 in the authors' colour blind model).
        channels: feature channels of the hidden layers (64).
        image_channels: 3 for colour (CDnCNN).
        batch_norm: True (default): layers 2..depth-1 are Conv+BN+ReLU without conv bias, as trained.
            False: Conv+ReLU with conv bias, the form of the authors' released models, whose batch
            norm was folded into the convolutions.
        pad_colour: what the first convolution sees beyond the border (see ``_Network``); None.

    Layer 1 is Conv+ReLU, the middle layers as above, the last a Conv that predicts the noise; the
    output is input minus predicted noise. That last conv starts at zero, so an untrained network is
    the identity and training starts from the input's quality (it then learns faster than from random
    noise predictions). The colour default has 558,403 parameters; ``DnCNN(depth=20, batch_norm=False)``
    668,227. Inputs must be at least as large as the receptive field (2 * depth + 1 = 35 pixels) so that
    every output pixel sees real image content. Noisy inputs may overshoot [0, 1] by up to 2 (papers add
    noise without clipping: 10 sigma at sigma 50); a 0-255 image is still refused.
    """

    name = "dncnn"
    input_tolerance = 2.0

    def __init__(
        self,
        depth: int = 17,
        channels: int = 64,
        image_channels: int = 3,
        batch_norm: bool = True,
        pad_colour: tuple[float, float, float] | None = None,
    ) -> None:
        super().__init__(
            depth=depth, channels=channels, image_channels=image_channels, batch_norm=batch_norm, pad_colour=pad_colour
        )
        if depth < 3:
            raise ValueError(f"DnCNN depth: expected >= 3, received {depth}")
        self.min_size = 2 * depth + 1
        layers: list[nn.Module] = [
            nn.Conv2d(image_channels, channels, 3, padding=self.first_padding), nn.ReLU(inplace=True)
        ]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm))
            layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)] if batch_norm else [nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(channels, image_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        _zero_init(self.body[-1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._check(images)
        normalized = self.norm.normalize(images)
        return self.norm.denormalize(normalized - self.body(self._pad_input(normalized)))


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 Conv+ReLU layers: the UNet's unit at every level."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class _ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel of an (N, C, H, W) tensor, with a learned scale and shift per channel.

    Computed in float32 under autocast too (a bfloat16 variance of near-equal channels is mostly rounding).
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        values = features.float()
        variance, mean = torch.var_mean(values, dim=1, keepdim=True, correction=0)
        return ((values - mean) * torch.rsqrt(variance + self.eps) * self.weight + self.bias).to(features.dtype)


def _simple_gate(features: torch.Tensor) -> torch.Tensor:
    """SimpleGate: split the channels in two halves and multiply them (a gate without an activation function)."""
    first, second = features.chunk(2, dim=1)
    return first * second


class _GatedBlock(nn.Module):
    """The gated block of NAFNet (Chen et al., ECCV 2022): two residual parts, each scaled by a learned factor.

    Spatial part: LayerNorm, 1x1 conv to 2C, 3x3 depthwise conv, SimpleGate (back to C), simplified channel
    attention (the features times a 1x1 conv of their global average), 1x1 conv. Feed-forward part: LayerNorm,
    1x1 conv to 2C, SimpleGate, 1x1 conv. The residual scales start at zero, so a new block is the identity.
    Parameters: 7 C^2 + 33 C.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.spatial = nn.Sequential(
            _ChannelLayerNorm(channels),
            nn.Conv2d(channels, 2 * channels, 1),
            nn.Conv2d(2 * channels, 2 * channels, 3, padding=1, groups=2 * channels),
        )
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1))
        self.spatial_out = nn.Conv2d(channels, channels, 1)
        self.feed_forward = nn.Sequential(_ChannelLayerNorm(channels), nn.Conv2d(channels, 2 * channels, 1))
        self.feed_forward_out = nn.Conv2d(channels, channels, 1)
        self.spatial_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.feed_forward_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        gated = _simple_gate(self.spatial(features))
        features = features + self.spatial_out(gated * self.attention(gated)) * self.spatial_scale
        return features + self.feed_forward_out(_simple_gate(self.feed_forward(features))) * self.feed_forward_scale


UNET_BLOCKS = ("plain", "nafnet")
MAX_GATED_LEVELS, MAX_GATED_BLOCKS, MAX_GATED_CHANNELS = 8, 64, 4096  # bounds on block="nafnet"'s arguments


class UNet(_Network):
    """UNet (Ronneberger et al., MICCAI 2015) as a deblurring network that predicts a residual, with one of two blocks.

    Args:
        base_channels: ``block="plain"``: channels at full resolution, doubled at every level (32).
        depth: ``block="plain"``: number of 2x downsamplings (4).
        image_channels: 3 for colour.
        block: "plain" (default): the seed's network, double 3x3 conv + ReLU per level. "nafnet": the gated block of
            NAFNet (Chen et al., ECCV 2022; ``_GatedBlock``), where ``width``, ``enc_blocks``, ``middle_blocks`` and
            ``dec_blocks`` set the size and ``base_channels``/``depth`` must keep their defaults.
        width: ``block="nafnet"``: channels at full resolution, doubled at every level (default 32).
        enc_blocks: ``block="nafnet"``: gated blocks of each encoder level, from full resolution down; the number of
            levels is the number of 2x downsamplings (default (1, 1, 1, 28), the paper's GOPRO width-32 network; a
            single number is one level).
        middle_blocks: ``block="nafnet"``: gated blocks at the lowest resolution (default 1).
        dec_blocks: ``block="nafnet"``: gated blocks of each decoder level, from full resolution down, as many
            levels as ``enc_blocks`` (default one per level).

    Plain: encoder of double 3x3 conv + 2x2 max-pool per level; decoder of 2x2 transposed conv, concatenation with
    the skip, double conv; a 1x1 conv gives the residual. Gated (NAFNet's UNet): a 3x3 conv to ``width`` channels;
    per encoder level its blocks then a 2x2 stride-2 conv that doubles the channels; the middle blocks; per decoder
    level a 1x1 conv and pixel shuffle that halve the channels, the encoder's features added (not concatenated),
    its blocks; a 3x3 conv gives the residual. Either way the last conv starts at zero, so training starts from
    the identity, and any H and W are accepted: the input is reflect-padded to a multiple of 2**depth (the number
    of levels) and the output cropped back. The gated block's channel attention averages over the whole input,
    so a tile's output depends a little on the rest of the tile.
    """

    name = "unet"

    def __init__(
        self,
        base_channels: int = 32,
        depth: int = 4,
        image_channels: int = 3,
        block: str = "plain",
        width: int | None = None,
        enc_blocks: Sequence[int] | None = None,
        middle_blocks: int | None = None,
        dec_blocks: Sequence[int] | None = None,
    ) -> None:
        if block == "plain":
            gated = {"width": width, "enc_blocks": enc_blocks, "middle_blocks": middle_blocks, "dec_blocks": dec_blocks}
            given = [name for name, value in gated.items() if value is not None]
            if given:
                raise ValueError(f"UNet: {', '.join(given)} set the nafnet block's size; block='plain' takes base_channels and depth")
            super().__init__(base_channels=base_channels, depth=depth, image_channels=image_channels, block=block)
            self._build_plain(base_channels, depth, image_channels)
        elif block == "nafnet":
            if (base_channels, depth) != (32, 4):
                raise ValueError("UNet: block='nafnet' takes width and enc_blocks, not base_channels and depth")
            width = 32 if width is None else width
            enc_blocks = (1, 1, 1, 28) if enc_blocks is None else _per_level(enc_blocks, "enc_blocks")
            middle_blocks = 1 if middle_blocks is None else middle_blocks
            dec_blocks = (1,) * len(enc_blocks) if dec_blocks is None else _per_level(dec_blocks, "dec_blocks")
            _check_gated_size(width, enc_blocks, middle_blocks, dec_blocks)
            super().__init__(image_channels=image_channels, block=block, width=width, enc_blocks=enc_blocks,
                             middle_blocks=middle_blocks, dec_blocks=dec_blocks)
            self._build_gated(width, enc_blocks, middle_blocks, dec_blocks, image_channels)
        else:
            raise ValueError(f"UNet block: expected one of {', '.join(UNET_BLOCKS)}, received {block!r}")
        self.block = block
        self.min_size = 2**self.depth

    def _build_plain(self, base_channels: int, depth: int, image_channels: int) -> None:
        self.depth = depth
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList(
            [_double_conv(image_channels, widths[0])]
            + [_double_conv(widths[level - 1], widths[level]) for level in range(1, depth + 1)]
        )
        self.pool = nn.MaxPool2d(2)
        self.upsamplers = nn.ModuleList(
            [nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2) for level in reversed(range(depth))]
        )
        self.decoders = nn.ModuleList([_double_conv(2 * widths[level], widths[level]) for level in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], image_channels, 1)
        _zero_init(self.head)

    def _build_gated(
        self, width: int, enc_blocks: tuple[int, ...], middle_blocks: int, dec_blocks: tuple[int, ...], image_channels: int
    ) -> None:
        self.depth = len(enc_blocks)
        widths = [width * 2**level for level in range(self.depth + 1)]
        blocks = lambda count, channels: nn.Sequential(*[_GatedBlock(channels) for _ in range(count)])  # noqa: E731
        self.intro = nn.Conv2d(image_channels, width, 3, padding=1)
        self.encoders = nn.ModuleList([blocks(count, widths[level]) for level, count in enumerate(enc_blocks)])
        self.downsamplers = nn.ModuleList([nn.Conv2d(widths[level], widths[level + 1], 2, stride=2) for level in range(self.depth)])
        self.middle = blocks(middle_blocks, widths[-1])
        levels = list(reversed(range(self.depth)))  # the decoder runs from the lowest resolution up
        self.upsamplers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(widths[level + 1], 2 * widths[level + 1], 1, bias=False), nn.PixelShuffle(2)) for level in levels]
        )
        self.decoders = nn.ModuleList([blocks(dec_blocks[level], widths[level]) for level in levels])
        self.head = nn.Conv2d(width, image_channels, 3, padding=1)
        _zero_init(self.head)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._check(images)
        height, width = images.shape[-2:]
        multiple = 2**self.depth
        pad_bottom, pad_right = (-height) % multiple, (-width) % multiple
        normalized = self.norm.normalize(images)
        features = nn.functional.pad(normalized, (0, pad_right, 0, pad_bottom), mode="reflect")
        residual = self._plain_residual(features) if self.block == "plain" else self._gated_residual(features)
        return self.norm.denormalize(normalized + residual[..., :height, :width])

    def _plain_residual(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder with max-pooling, decoder with transposed convs and concatenated skips, 1x1 head."""
        skips = []
        for level, encoder in enumerate(self.encoders):
            features = encoder(features if level == 0 else self.pool(features))
            skips.append(features)
        features = skips.pop()
        for upsample, decoder in zip(self.upsamplers, self.decoders):
            features = decoder(torch.cat([upsample(features), skips.pop()], dim=1))
        return self.head(features)

    def _gated_residual(self, features: torch.Tensor) -> torch.Tensor:
        """Gated blocks; strided-conv downsampling, pixel-shuffle upsampling, added skips; 3x3 head."""
        features = self.intro(features)
        skips = []
        for encoder, downsample in zip(self.encoders, self.downsamplers):
            features = encoder(features)
            skips.append(features)
            features = downsample(features)
        features = self.middle(features)
        for upsample, decoder in zip(self.upsamplers, self.decoders):
            features = decoder(upsample(features) + skips.pop())
        return self.head(features)


def _per_level(counts: Sequence[int] | int, name: str) -> tuple[int, ...]:
    """Block counts per level as a tuple (one number: one level); ValueError for anything else."""
    if isinstance(counts, int):
        return (counts,)
    if isinstance(counts, (list, tuple)):
        return tuple(counts)
    raise ValueError(f"UNet nafnet {name}: expected block counts per level (a list of whole numbers), received {counts!r}")


def _check_gated_size(width: int, enc_blocks: tuple[int, ...], middle_blocks: int, dec_blocks: tuple[int, ...]) -> None:
    """ValueError unless the gated UNet's size arguments are whole numbers within bounds (checked before building)."""
    counts = (*enc_blocks, middle_blocks, *dec_blocks)
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in (width, *counts)):
        raise ValueError(f"UNet nafnet: width and block counts must be whole numbers, received width={width!r}, "
                         f"enc_blocks={enc_blocks!r}, middle_blocks={middle_blocks!r}, dec_blocks={dec_blocks!r}")
    if not 1 <= len(enc_blocks) <= MAX_GATED_LEVELS or len(dec_blocks) != len(enc_blocks):
        raise ValueError(f"UNet nafnet: expected 1 to {MAX_GATED_LEVELS} levels, as many in dec_blocks as in enc_blocks, "
                         f"received enc_blocks={list(enc_blocks)}, dec_blocks={list(dec_blocks)}")
    if not all(0 <= count <= MAX_GATED_BLOCKS for count in counts):
        raise ValueError(f"UNet nafnet: expected 0 to {MAX_GATED_BLOCKS} blocks per level, received {list(counts)}")
    if not 1 <= width * 2 ** len(enc_blocks) <= MAX_GATED_CHANNELS:
        raise ValueError(f"UNet nafnet: width {width} doubled over {len(enc_blocks)} levels exceeds {MAX_GATED_CHANNELS} channels")


class _ResidualBlock(nn.Module):
    """EDSR residual block: Conv-ReLU-Conv without batch norm, output scaled before the skip add."""

    def __init__(self, channels: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 3, padding=1)
        )
        self.res_scale = res_scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # in place on the block's fresh output: one full-size tensor and pass fewer per block (and no *1.0)
        residual = self.body(features)
        if self.res_scale != 1.0:
            residual.mul_(self.res_scale)
        return residual.add_(features)


def _upsampler(channels: int, scale: int) -> nn.Sequential:
    """Sub-pixel (pixel-shuffle) upsampler: one x3 stage, or log2(scale) x2 stages."""
    if scale == 3:
        return nn.Sequential(nn.Conv2d(channels, 9 * channels, 3, padding=1), nn.PixelShuffle(3))
    if scale in (2, 4, 8):
        stages: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            stages += [nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2)]
        return nn.Sequential(*stages)
    raise ValueError(f"EDSR scale: expected 2, 3, 4 or 8, received {scale}")


def _bicubic_matrix(size: int, output_size: int, like: torch.Tensor) -> torch.Tensor:
    """(output_size, size): bicubic resampling (align_corners=False) along one axis as a matrix, made by resampling
    the identity; bicubic 2-D resampling is ``rows @ image @ columns.T``."""
    identity = torch.eye(size, device=like.device, dtype=like.dtype).view(size, 1, 1, size)
    return nn.functional.interpolate(identity, size=(1, output_size), mode="bicubic", align_corners=False).view(size, output_size).T


class BicubicWithMatrixBackward(torch.autograd.Function):
    """``interpolate(images, mode="bicubic")`` as it is, with its gradient as two matrix products.

    The CUDA backward of bicubic resampling adds each output's gradient into its 16 input pixels with atomics,
    in no fixed order: a run is not reproducible bit for bit. The adjoint of ``rows @ image @ columns.T`` is
    ``rows.T @ gradient @ columns``, which cuBLAS computes in a fixed order.
    """

    @staticmethod
    def forward(ctx: Any, images: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
        output = nn.functional.interpolate(images, **options)
        ctx.sizes = (*images.shape[-2:], *output.shape[-2:])
        return output

    @staticmethod
    def backward(ctx: Any, gradient: torch.Tensor) -> tuple[torch.Tensor, None]:
        height, width, output_height, output_width = ctx.sizes
        rows, columns = _bicubic_matrix(height, output_height, gradient), _bicubic_matrix(width, output_width, gradient)
        return rows.T @ gradient @ columns, None


class EDSR(_Network):
    """EDSR (Lim et al., CVPRW 2017); the defaults are the paper's baseline (1,369,859 parameters at x2).

    Args:
        scale: upscaling factor (2, 3, 4 or 8).
        num_blocks: residual blocks (16 baseline, 32 large).
        channels: feature channels (64 baseline, 256 large).
        res_scale: residual scaling inside each block (1.0 baseline, 0.1 for the large model).

        upsample_skip: add the bicubic upscaling of the input to the output (default True). The
            paper has no such skip; with it, and the tail conv starting at zero, an untrained
            network is bicubic interpolation and only the missing detail is learned, which trains
            far faster on small data. ``upsample_skip=False`` is the paper's network exactly.
        pad_colour: what the head convolution sees beyond the border (see ``_Network``); None.

    Head conv, residual blocks without batch norm, a body conv with a global skip, a pixel-shuffle
    upsampler and a tail conv. The paper's "mean shift" is ``ImageNorm`` (``helpers.import_weights``
    folds the authors' into it, with ``pad_colour`` their DIV2K mean). The skip adds no
    parameters. Output is exactly ``scale`` times the input size.
    """

    name = "edsr"
    min_size = 8

    def __init__(
        self,
        scale: int = 2,
        num_blocks: int = 16,
        channels: int = 64,
        res_scale: float = 1.0,
        image_channels: int = 3,
        upsample_skip: bool = True,
        pad_colour: tuple[float, float, float] | None = None,
    ) -> None:
        super().__init__(
            scale=scale,
            num_blocks=num_blocks,
            channels=channels,
            res_scale=res_scale,
            image_channels=image_channels,
            upsample_skip=upsample_skip,
            pad_colour=pad_colour,
        )
        self.scale, self.upsample_skip = scale, upsample_skip
        self.head = nn.Conv2d(image_channels, channels, 3, padding=self.first_padding)
        self.body = nn.Sequential(
            *[_ResidualBlock(channels, res_scale) for _ in range(num_blocks)], nn.Conv2d(channels, channels, 3, padding=1)
        )
        self.tail = nn.Sequential(_upsampler(channels, scale), nn.Conv2d(channels, image_channels, 3, padding=1))
        if upsample_skip:
            _zero_init(self.tail[-1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._check(images)
        normalized = self.norm.normalize(images)
        features = self.head(self._pad_input(normalized))
        output = self.tail(self.body(features).add_(features))
        if self.upsample_skip:
            options = {"scale_factor": self.scale, "mode": "bicubic", "align_corners": False}
            if normalized.requires_grad and torch.are_deterministic_algorithms_enabled():  # fine-tuned in the cascade
                skip = BicubicWithMatrixBackward.apply(normalized, options)
            else:
                skip = nn.functional.interpolate(normalized, **options)
            output = output + skip
        return self.norm.denormalize(output)


def _pad_symmetric(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Mirror-pad H and W including the edge pixel (numpy 'symmetric', scipy 'reflect'); torch has no such mode."""
    if pad > min(images.shape[-2:]):
        raise ValueError(f"image of {tuple(images.shape[-2:])} is smaller than the blur radius {pad}")
    images = torch.cat([images[..., :pad, :].flip(-2), images, images[..., -pad:, :].flip(-2)], dim=-2)
    return torch.cat([images[..., :pad].flip(-1), images, images[..., -pad:].flip(-1)], dim=-1)


class UnsharpMask(nn.Module):
    """Unsharp mask: ``x + amount * (x - gaussian_blur(x))`` where ``|x - blur| > threshold``, clamped to [0, 1].

    Args:
        sigma: standard deviation of the Gaussian in pixels (scikit-image calls it ``radius``).
        amount: strength of the sharpening.
        threshold: minimum local contrast (0-1 scale) that gets sharpened; 0 sharpens everything.

    The kernel spans 4 sigma on each side with mirrored (half-sample symmetric) borders, as
    ``skimage.filters.unsharp_mask`` does. kornia supplies the blur; its own ``unsharp_mask`` lacks
    ``amount`` and ``threshold``, and its border modes lack the symmetric one, hence ``_pad_symmetric``.
    """

    def __init__(self, sigma: float = 1.0, amount: float = 0.5, threshold: float = 0.0) -> None:
        super().__init__()
        if sigma <= 0 or amount < 0 or threshold < 0:
            raise ValueError(f"UnsharpMask: expected sigma > 0, amount >= 0, threshold >= 0, received {sigma}, {amount}, {threshold}")
        self.sigma, self.amount, self.threshold = float(sigma), float(amount), float(threshold)
        self.kernel_size = 2 * int(4 * self.sigma + 0.5) + 1

    def detail(self, images: torch.Tensor) -> torch.Tensor:
        """``x - gaussian_blur(x)`` where it exceeds the threshold: what ``amount`` scales."""
        check_image_batch(images, name="UnsharpMask input")
        pad = self.kernel_size // 2
        blurred = kornia.filters.gaussian_blur2d(
            _pad_symmetric(images, pad), (self.kernel_size, self.kernel_size), (self.sigma, self.sigma)
        )[..., pad:-pad, pad:-pad]
        detail = images - blurred
        return detail * (detail.abs() > self.threshold) if self.threshold > 0 else detail

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images + self.amount * self.detail(images)).clamp(0, 1)

    def apply_uint8(self, image: np.ndarray) -> np.ndarray:
        """Sharpen an RGB uint8 image (H, W, 3) and return uint8."""
        with torch.inference_mode():
            return tensor_to_image(self(image_to_tensor(image))[0])


MODELS: dict[str, type[_Network]] = {"dncnn": DnCNN, "unet": UNet, "edsr": EDSR}


def unknown_arguments(network: type[nn.Module], kwargs: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(the names in ``kwargs`` that ``network``'s constructor does not take, sorted; the names it takes)."""
    accepted = [parameter for parameter in inspect.signature(network).parameters if parameter != "self"]
    return sorted(set(kwargs) - set(accepted)), accepted


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Create a network by name ('dncnn', 'unet', 'edsr') with constructor arguments; ValueError for unknown ones."""
    network = MODELS.get(name.lower())
    if network is None:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODELS)}")
    unknown, accepted = unknown_arguments(network, kwargs)
    if unknown:
        raise ValueError(f"{name}: unknown argument {unknown[0]!r} (it takes {', '.join(accepted)})")
    return network(**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
