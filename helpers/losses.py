"""Training objectives: MSE, L1, SSIM, Sobel-edge and MobileNetV3 perceptual losses, and their weighted sum.

Losses take (N, 3, H, W) predictions and targets. Predictions are not range-checked (a network in
training may overshoot [0, 1] a little); shapes and channel counts are. ``build_loss(config)``
turns a small dict, the one a notebook shows, into a ``CombinedLoss``. The SSIM and Sobel terms use
``helpers.metrics``' maps, whose filter kernels are made once per device (kornia's functions make them on every
call, a synchronisation per term and step on a GPU).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Mapping

import torch
import torchvision
from torch import nn

from .checks import check_image_batch, check_same_shape
from .metrics import spatial_gradient, ssim_map
from .models import ImageNorm

__all__ = ["SSIMLoss", "SobelEdgeLoss", "PerceptualLoss", "CombinedLoss", "build_loss", "DEFAULT_LOSS_CONFIG"]

# Seconds to wait for torchvision's weight download before giving up with a clear error.
DOWNLOAD_TIMEOUT_S = 60

DEFAULT_LOSS_CONFIG: dict[str, Any] = {
    "weights": {"mse": 1.0, "l1": 0.0, "ssim": 0.0, "sobel": 0.0, "perceptual": 0.0},
    "perceptual": {"layer": 6, "weights": "imagenet", "distance": "l1"},
}


def _check_pair(prediction: torch.Tensor, target: torch.Tensor) -> None:
    check_image_batch(prediction, name="prediction", check_range=False)
    check_image_batch(target, name="target")
    check_same_shape(prediction, target)


class SSIMLoss(nn.Module):
    """1 - SSIM (11x11 Gaussian window, valid region), averaged over the batch."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(prediction, target)
        return 1.0 - ssim_map(prediction.float(), target.float()).mean()


class SobelEdgeLoss(nn.Module):
    """L1 distance between the Sobel gradients (x and y) of prediction and target."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(prediction, target)
        predicted, expected = spatial_gradient(torch.cat([prediction, target]).float()).chunk(2)
        return (predicted - expected).abs().mean()


def _load_mobilenet(weights: str) -> nn.Module:
    """MobileNetV3-Large with ImageNet weights ('imagenet'), a local state-dict file, or 'random'.

    'imagenet' downloads through torchvision (cached in the torch hub folder) with a timeout, and
    fails with a clear error instead of hanging or silently training against a random network.
    """
    if weights == "random":
        return torchvision.models.mobilenet_v3_large(weights=None)
    if weights == "imagenet":
        previous_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            return torchvision.models.mobilenet_v3_large(
                weights=torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1
            )
        except Exception as error:
            raise RuntimeError(
                "perceptual loss: could not download MobileNetV3-Large ImageNet weights "
                f"({type(error).__name__}: {error}); pass weights=<path to mobilenet_v3_large state dict .pth>, "
                "or weights='random' to train against an untrained network deliberately"
            ) from None
        finally:
            socket.setdefaulttimeout(previous_timeout)
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MobileNetV3 weights file not found (or use weights='imagenet' / 'random')")
    network = torchvision.models.mobilenet_v3_large(weights=None)
    try:
        network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as error:
        raise ValueError(f"{path}: not a MobileNetV3-Large state dict ({type(error).__name__}: {error})") from None
    return network


class PerceptualLoss(nn.Module):
    """Distance between frozen MobileNetV3-Large feature maps of prediction and target.

    Args:
        layer: index of the last block of ``mobilenet_v3_large().features`` used (0-16).
        weights: 'imagenet' (torchvision download), a path to a state-dict file, or 'random'.
        distance: 'l1' or 'mse' between feature maps.

    Inputs in [0, 1] are ImageNet-normalised inside; the network is in eval mode with every
    parameter frozen, so it never trains and BN statistics never move.
    """

    def __init__(self, layer: int = 6, weights: str = "imagenet", distance: str = "l1") -> None:
        super().__init__()
        if distance not in ("l1", "mse"):
            raise ValueError(f"perceptual distance: expected 'l1' or 'mse', received {distance!r}")
        features = _load_mobilenet(weights).features
        if not 0 <= layer < len(features):
            raise ValueError(f"perceptual layer: expected 0..{len(features) - 1}, received {layer}")
        self.features = features[: layer + 1].eval().requires_grad_(False)
        self.norm = ImageNorm()
        self.distance = nn.functional.l1_loss if distance == "l1" else nn.functional.mse_loss

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Keep the feature extractor in eval mode whatever the surrounding model does."""
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(prediction, target)
        predicted, expected = self.features(self.norm.normalize(torch.cat([prediction, target]))).chunk(2)
        return self.distance(predicted, expected)


class CombinedLoss(nn.Module):
    """Weighted sum of named loss terms; ``last_terms`` keeps each term's latest (detached) value for logging."""

    def __init__(self, terms: Mapping[str, nn.Module], weights: Mapping[str, float]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("combined loss: expected at least one term with a non-zero weight")
        self.terms = nn.ModuleDict(terms)
        self.weights = dict(weights)
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(prediction, target)
        values = {name: term(prediction, target) for name, term in self.terms.items()}
        self.last_terms = {name: value.detach() for name, value in values.items()}
        return sum(self.weights[name] * value for name, value in values.items())


def build_loss(config: Mapping[str, Any] | None = None) -> CombinedLoss:
    """Build the combined loss from ``{"weights": {term: weight}, "perceptual": {...}}``; zero weights are skipped.

    Terms: 'mse', 'l1', 'ssim', 'sobel', 'perceptual'. Missing keys take ``DEFAULT_LOSS_CONFIG``'s values.
    """
    config = dict(config or {})
    unknown_keys = set(config) - set(DEFAULT_LOSS_CONFIG)
    if unknown_keys:
        raise ValueError(f"loss config: unknown keys {sorted(unknown_keys)}; expected {sorted(DEFAULT_LOSS_CONFIG)}")
    weights = {**DEFAULT_LOSS_CONFIG["weights"], **config.get("weights", {})}
    perceptual_options = {**DEFAULT_LOSS_CONFIG["perceptual"], **config.get("perceptual", {})}
    factories = {
        "mse": nn.MSELoss,
        "l1": nn.L1Loss,
        "ssim": SSIMLoss,
        "sobel": SobelEdgeLoss,
        "perceptual": lambda: PerceptualLoss(**perceptual_options),
    }
    unknown_terms = set(weights) - set(factories)
    if unknown_terms:
        raise ValueError(f"loss config: unknown terms {sorted(unknown_terms)}; expected {sorted(factories)}")
    active = {name: weight for name, weight in weights.items() if weight}
    return CombinedLoss({name: factories[name]() for name in active}, active)
