"""helpers.inference: the optimised path gives the plain path's output; device and precision policy."""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from torch import nn

from helpers import inference
from helpers.degrade import resize_to_frame
from helpers.inference import (
    autocast_for,
    fold_conv_batchnorm,
    inference_dtype,
    pick_device,
    prepare_for_inference,
    prepare_input,
)
from helpers.io import image_to_tensor
from helpers.metrics import psnr
from helpers.models import DnCNN, EDSR, UNet, UnsharpMask
from conftest import without_identity_start

ONE_LEVEL = 1.0 / 255.0
# Stated bfloat16 tolerance. bfloat16 keeps 8 significant bits; autocast keeps normalisation and skip
# additions in float32, so the cascade stays close to float32. Measured: this random-init cascade max
# 1.23/255, 60.7 dB agreement. With the demo weights on 640x360 photos the whole cascade agrees with
# float32 to 56-59 dB (isolated pixels up to 12/255 apart) and PSNR against the truth moves <= 0.023 dB.
# The binding number is the agreement: 50 dB adds 1% to the squared error of a 30 dB restoration
# (0.043 dB when the two errors are uncorrelated).
BF16_MAX_DIFF = 3.0 / 255.0
BF16_MIN_PSNR_DB = 50.0


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A real photo (not noise) at 72x128: what the networks see in practice, small enough to be quick."""
    return image_to_tensor(resize_to_frame(skimage.data.astronaut(), long_side=128, short_side=72))


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters, like a trained network."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(size, generator=generator) * 0.2 - 0.1)
    return model


def _networks() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    networks = {"dncnn": _randomise_batchnorm(DnCNN()), "unet": UNet(), "edsr": EDSR()}
    return {name: without_identity_start(network).eval() for name, network in networks.items()}


@pytest.fixture(scope="module")
def networks() -> dict[str, nn.Module]:
    return _networks()


@pytest.fixture(scope="module")
def prepared(networks: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """The default optimised copies (channels_last, batch norm folded)."""
    return {name: prepare_for_inference(model, "cpu") for name, model in networks.items()}


@pytest.fixture(scope="module")
def plain_outputs(networks: dict[str, nn.Module], photo: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each network's plain output on the photo, and the plain cascade's ('cascade'), computed once."""
    outputs = {name: _plain(model, photo) for name, model in networks.items()}
    outputs["cascade"] = _cascade([*networks.values(), UnsharpMask()], photo, optimised=False)
    return outputs


def _plain(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images)


def _optimised(model: nn.Module, images: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    with torch.inference_mode(), autocast_for("cpu", dtype):
        return model(prepare_input(images, "cpu")).float()


def _cascade(models: list[nn.Module], images: torch.Tensor, optimised: bool, dtype: torch.dtype | None = None) -> torch.Tensor:
    run = (lambda model, x: _optimised(model, x, dtype)) if optimised else _plain
    for model in models:
        images = run(model, images).clamp(0, 1)
    return images


# ---- devices and policy -------------------------------------------------------------------------------


def test_pick_device_auto_follows_cuda_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")
    assert pick_device("cuda:1") == torch.device("cuda", 1)


@pytest.mark.parametrize("name", ["banana", "meta", ""])
def test_pick_device_rejects_unknown_names(name: str) -> None:
    with pytest.raises(ValueError, match="device"):
        pick_device(name)


def test_pick_device_rejects_cuda_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")


def test_inference_dtype_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    assert inference_dtype(torch.device("cuda")) == torch.float16
    assert inference_dtype("cuda", fp32=True) is None
    monkeypatch.setattr(inference, "cpu_has_native_bfloat16", lambda: True)
    assert inference_dtype("cpu") == torch.bfloat16
    assert inference_dtype("cpu", fp32=True) is None
    monkeypatch.setattr(inference, "cpu_has_native_bfloat16", lambda: False)
    assert inference_dtype("cpu") is None


def test_autocast_for_switches_convolution_precision() -> None:
    conv, images = nn.Conv2d(3, 4, 3), torch.rand(1, 3, 8, 8)
    with autocast_for("cpu", None):
        assert conv(images).dtype == torch.float32
    with autocast_for("cpu", torch.bfloat16):
        assert conv(images).dtype == torch.bfloat16


# ---- the optimised copy ---------------------------------------------------------------------------------


def test_batchnorm_folding_is_exact_and_leaves_the_original_alone(photo: torch.Tensor) -> None:
    model = _networks()["dncnn"]
    folded = prepare_for_inference(model, "cpu", channels_last=False)
    assert not any(isinstance(module, nn.BatchNorm2d) for module in folded.modules())
    assert sum(isinstance(module, nn.BatchNorm2d) for module in model.modules()) == 15
    assert torch.allclose(_optimised(folded, photo), _plain(model, photo), atol=1e-5)


def test_fold_conv_batchnorm_skips_training_statistics_free_norms() -> None:
    sequential = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)).eval()
    fold_conv_batchnorm(sequential)
    assert isinstance(sequential[1], nn.BatchNorm2d)


@pytest.mark.parametrize("name", ["dncnn", "unet", "edsr"])
def test_optimised_float32_matches_plain(
    networks: dict[str, nn.Module], prepared: dict[str, nn.Module], plain_outputs: dict[str, torch.Tensor], photo: torch.Tensor, name: str
) -> None:
    model, optimised = networks[name], prepared[name]
    expected, result = plain_outputs[name], _optimised(optimised, photo)
    assert result.shape == expected.shape
    assert (result - expected).abs().max() <= ONE_LEVEL
    assert optimised.arch == model.arch and optimised.min_size == model.min_size
    assert not optimised.training and not any(parameter.requires_grad for parameter in optimised.parameters())


def test_channels_last_layout_changes_storage_not_outputs(
    networks: dict[str, nn.Module], prepared: dict[str, nn.Module], photo: torch.Tensor
) -> None:
    model, nhwc = networks["edsr"], prepared["edsr"]
    nchw = prepare_for_inference(model, "cpu", channels_last=False)
    assert nhwc.head.weight.is_contiguous(memory_format=torch.channels_last)
    assert not nchw.head.weight.is_contiguous(memory_format=torch.channels_last)
    assert nhwc.scale == 2
    assert prepare_input(photo, "cpu").is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(_optimised(nhwc, photo), _optimised(nchw, photo), atol=1e-5)


def test_optimised_cascade_matches_plain_in_float32(
    prepared: dict[str, nn.Module], plain_outputs: dict[str, torch.Tensor], photo: torch.Tensor
) -> None:
    expected = plain_outputs["cascade"]
    result = _cascade([*prepared.values(), UnsharpMask()], photo, optimised=True)
    assert result.shape == (1, 3, 144, 256)
    assert (result - expected).abs().max() <= ONE_LEVEL


def test_bfloat16_cascade_within_stated_tolerance(
    prepared: dict[str, nn.Module], plain_outputs: dict[str, torch.Tensor], photo: torch.Tensor
) -> None:
    expected = plain_outputs["cascade"]
    result = _cascade([*prepared.values(), UnsharpMask()], photo, optimised=True, dtype=torch.bfloat16)
    assert (result - expected).abs().max() <= BF16_MAX_DIFF
    assert float(psnr(result, expected)) >= BF16_MIN_PSNR_DB


def test_compile_failure_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch, photo: torch.Tensor) -> None:
    def broken_compile(model: nn.Module):  # what a missing C++ toolchain looks like: failure at first call
        def run(*args, **kwargs):
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = _networks()["dncnn"]
    prepared = prepare_for_inference(model, "cpu", compile=True)
    assert prepared.min_size == model.min_size and prepared.arch == model.arch
    with pytest.warns(UserWarning, match="torch.compile failed"):
        result = _optimised(prepared, photo)
    assert (result - _plain(model, photo)).abs().max() <= ONE_LEVEL


# ---- memory reuse -------------------------------------------------------------------------------------


_LAYER_CHAIN_PAGE_FAULTS = """
import resource, sys, torch
from helpers.inference import keep_freed_memory

def layer_chain() -> int:  # five 64 MB activations in a row, each freed after the next is made
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    activation = torch.ones(64 * 2**20 // 4)
    for _ in range(4):
        activation = activation + 1
    del activation
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

assert keep_freed_memory(sys.argv[1] == "keep")
for _ in range(4):  # the heap grows and settles (a free block may sit between two in use for a while)
    layer_chain()
print(sum(layer_chain() for _ in range(4)))
"""


def _page_faults_of_a_layer_chain(setting: str) -> int:
    """Minor page faults of four passes of a network's allocation pattern, in a fresh interpreter.

    Fresh, because a heap that earlier tests grew (with trimming off) would serve the blocks itself.
    """
    result = subprocess.run([sys.executable, "-c", _LAYER_CHAIN_PAGE_FAULTS, setting], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[1])
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_keep_freed_memory_reuses_large_blocks_instead_of_faulting_them_in_again() -> None:
    pages = 4 * 5 * 64 * 2**20 // resource.getpagesize()
    assert _page_faults_of_a_layer_chain("default") >= 0.9 * pages  # glibc's default: unmapped on free, faulted in again
    assert _page_faults_of_a_layer_chain("keep") <= 0.1 * pages  # measured: 0 to 5% once settled


# ---- the bfloat16 outlier -------------------------------------------------------------------------------


def test_bfloat16_outliers_of_the_demo_dncnn_stay_within_its_own_sensitivity_to_half_a_grey_level() -> None:
    """bf16's worst pixel is no bf16 flaw: the float32 network moves as much when its input moves by +-0.5/255.

    On the bench's degraded photo the v4 demo DnCNN's worst bf16 pixel (row 101, column 579 at 640x360)
    was 37/255 off float32. Rounding only the first convolution's input to bf16 (at most ~0.46/255)
    reproduces it, and float32 itself moves 37/255 there under +-0.5/255 input noise: the weights
    are that sensitive at this pixel, as to any 8-bit quantisation (v5 weights: 29/255 and 36/255).
    The bound: bf16's largest deviation on an 81x81 window around it stays within 1.25x float32's.
    """
    from helpers.checkpoint import load_model
    from helpers.degrade import add_gaussian_noise, downscale, motion_blur
    from helpers.io import float_image, uint8_image
    from helpers.pipeline import DEFAULT_WEIGHTS_DIR

    rng = np.random.default_rng(0)  # the bench's degraded photo (bench/bench_inference.py: degraded_photo)
    truth = resize_to_frame(float_image(skimage.data.astronaut()), long_side=1280, short_side=720)
    degraded = add_gaussian_noise(motion_blur(downscale(truth, 2), rng), sigma=15.0, rng=rng)
    window = image_to_tensor(uint8_image(degraded))[..., 61:142, 539:620]
    dncnn = prepare_for_inference(load_model(DEFAULT_WEIGHTS_DIR / "dncnn.pt"), "cpu")
    float32 = _optimised(dncnn, window).clamp(0, 1)
    bfloat16_error = float((_optimised(dncnn, window, torch.bfloat16).clamp(0, 1) - float32).abs().max())
    generator = torch.Generator().manual_seed(0)
    sensitivity = max(
        float((_optimised(dncnn, (window + (torch.rand(window.shape, generator=generator) - 0.5) / 255).clamp(0, 1)).clamp(0, 1) - float32).abs().max())
        for _ in range(4)
    )
    assert bfloat16_error <= 1.25 * sensitivity + ONE_LEVEL, (255 * bfloat16_error, 255 * sensitivity)


def test_preparing_a_model_for_cuda_leaves_cudnn_autotuning_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare_for_inference turned cuDNN's autotuner on for the whole process: inside a deterministic training run
    (its per-epoch cascade validation builds a Restorer), every later epoch autotuned, and a resumed run did so
    from another point than an uninterrupted one. ``nn.Module.to`` stands in for a GPU here: only the flag matters."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(nn.Module, "to", lambda module, *args, **kwargs: module)
    prepare_for_inference(DnCNN(depth=3, channels=8), "cuda")
    assert torch.backends.cudnn.benchmark is False


def test_cudnn_autotuning_is_on_only_inside_the_block_and_never_in_deterministic_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers.training.reproducibility import deterministic_algorithms

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    seen = []
    for device in ("cuda", "cpu"):
        with inference.cudnn_autotuning(device):
            seen.append(torch.backends.cudnn.benchmark)
    with deterministic_algorithms(), inference.cudnn_autotuning("cuda"):
        seen.append(torch.backends.cudnn.benchmark)
    assert seen == [True, False, False] and torch.backends.cudnn.benchmark is False


@pytest.mark.skipif(not hasattr(torch.backends.cudnn, "conv"), reason="torch < 2.9 has only the legacy TF32 flags")
def test_tf32_off_uses_the_new_precision_api_and_restores_it() -> None:
    """Reading the legacy flags once the new API is in use raises ("mix of the legacy and new APIs")."""
    settings = (torch.backends.cudnn.conv, torch.backends.cuda.matmul)
    saved = [setting.fp32_precision for setting in settings]
    try:
        for setting in settings:
            setting.fp32_precision = "tf32"
        with inference.tf32_off():
            inside = tuple(setting.fp32_precision for setting in settings)
        after = tuple(setting.fp32_precision for setting in settings)
    finally:
        for setting, value in zip(settings, saved):
            setting.fp32_precision = value
    assert inside == ("ieee", "ieee") and after == ("tf32", "tf32")
