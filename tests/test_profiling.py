"""helpers.profiling: FLOPs counted from the layers equal the closed forms; timing and memory helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers.models import DnCNN, EDSR
from helpers.profiling import Timing, count_flops, flop_counter, measure_in_subprocess, peak_rss_bytes, saved_activation_bytes, time_call


@pytest.mark.parametrize(("in_channels", "out_channels", "kernel", "height", "width"), [(64, 64, 3, 18, 32), (3, 5, 5, 17, 23), (8, 4, 1, 9, 9)])
def test_single_convolution_flops_are_exact(in_channels: int, out_channels: int, kernel: int, height: int, width: int) -> None:
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
    flops = count_flops(conv, torch.rand(1, in_channels, height, width))
    assert flops == 2 * in_channels * out_channels * kernel * kernel * height * width


@pytest.mark.parametrize("groups", [1, 4, 32])
@pytest.mark.parametrize("transposed", [False, True])
def test_convolution_backward_costs_its_forward_per_gradient_also_when_grouped(groups: int, transposed: bool) -> None:
    """By hand: one pass is 2 x output pixels x out channels x (in channels / groups) x kernel area multiply-adds
    (a transposed convolution: per input pixel); the backward computes two such passes (input and weight gradients).
    torch's own formula ignores the groups in the backward (32x too many for a 32-group depthwise convolution)."""
    layer = (nn.ConvTranspose2d(32, 32, 3, stride=2, groups=groups) if transposed
             else nn.Conv2d(32, 32, 3, padding=1, groups=groups))
    image = torch.rand(2, 32, 10, 12, requires_grad=True)
    one_pass = 2 * 2 * 10 * 12 * 32 * (32 // groups) * 9
    counter = flop_counter()
    with counter:
        layer(image).sum().backward()
    assert counter.get_total_flops() == 3 * one_pass


def test_batch_multiplies_flops() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, torch.rand(4, 3, 10, 12)) == 4 * count_flops(conv, torch.rand(1, 3, 10, 12))


def _conv_flops(in_channels: int, out_channels: int, pixels: int, kernel: int = 3) -> int:
    return 2 * in_channels * out_channels * kernel * kernel * pixels


@pytest.mark.parametrize(("depth", "channels"), [(17, 64), (5, 16)])
def test_dncnn_flops_match_closed_form(depth: int, channels: int) -> None:
    height, width = 40, 48
    pixels = height * width
    # first conv 3->C, depth-2 convs C->C (batch norm and ReLU are not multiply-adds), last conv C->3
    expected = _conv_flops(3, channels, pixels) + (depth - 2) * _conv_flops(channels, channels, pixels) + _conv_flops(channels, 3, pixels)
    model = DnCNN(depth=depth, channels=channels).eval()
    assert count_flops(model, torch.rand(1, 3, height, width)) == expected


def test_edsr_flops_match_closed_form() -> None:
    blocks, channels, height, width = 3, 16, 12, 20
    pixels = height * width
    expected = (
        _conv_flops(3, channels, pixels)  # head
        + (2 * blocks + 1) * _conv_flops(channels, channels, pixels)  # residual blocks + body conv
        + _conv_flops(channels, 4 * channels, pixels)  # x2 sub-pixel conv
        + _conv_flops(channels, 3, 4 * pixels)  # tail at the output size
    )
    model = EDSR(scale=2, num_blocks=blocks, channels=channels).eval()
    assert count_flops(model, torch.rand(1, 3, height, width)) == expected


def test_time_call_runs_warmup_then_timed_repeats() -> None:
    calls = []
    timing = time_call(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and len(timing.seconds) == 4
    assert all(seconds >= 0 for seconds in timing.seconds)
    with pytest.raises(ValueError, match="repeats"):
        time_call(lambda: None, repeats=0)


def test_timing_median_and_spread() -> None:
    timing = Timing([3.0, 1.0, 2.0, 10.0, 2.0])
    assert timing.median == 2.0
    assert timing.spread == pytest.approx((10.0 - 1.0) / 2.0)


def test_peak_rss_grows_with_touched_memory() -> None:
    before = peak_rss_bytes()
    block = np.ones((before + 64 * 2**20) // 8)  # more touched memory than the whole peak so far
    assert peak_rss_bytes() >= block.nbytes > before  # in bytes, not KiB, and it grew


def test_measure_in_subprocess_returns_result_and_its_own_peak() -> None:
    parent_block = np.ones((peak_rss_bytes() + 256 * 2**20) // 8)  # the parent is now far bigger than a child
    result = measure_in_subprocess("json:loads", s='{"answer": 42}')
    assert result["answer"] == 42
    # the child's own peak, not the parent's (Linux ru_maxrss would carry the parent's over fork+exec)
    assert 0 < result["peak_rss_bytes"] < parent_block.nbytes


def test_measure_in_subprocess_reports_failures() -> None:
    with pytest.raises(RuntimeError, match="json:loads failed"):
        measure_in_subprocess("json:loads", s="not json")


def test_training_estimate_counts_forward_and_backward_and_leaves_the_model_alone():
    from helpers.profiling import ADAM_BYTES_PER_PARAMETER, estimate_training

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 3, 1, bias=False))
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    estimate = estimate_training(model, nn.L1Loss(), patch=16, batch_size=2, steps_per_epoch=10, epochs=3, probe=8)
    # By hand at the 8x8 probe: each convolution's forward MACs, times 3 (forward, input and weight gradients;
    # the first layer's input gradient is not needed, so it is 2 for it), 2 FLOPs per MAC; scaled by (16/8)^2 x 2.
    first, second = 8 * 8 * 4 * 3 * 9, 8 * 8 * 3 * 4
    assert estimate.flops_per_step == pytest.approx(2 * (2 * first + 3 * second) * 8, rel=0.01)
    assert estimate.parameter_bytes == ADAM_BYTES_PER_PARAMETER * (4 * 3 * 9 + 8 + 3 * 4)
    assert estimate.activation_bytes >= 8 * 2 * (3 + 4) * 64  # at least each convolution's bfloat16 input, x8
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())  # BN statistics too
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_training_estimate_times_each_colab_gpu_over_the_assumed_efficiency_range():
    from helpers.profiling import ASSUMED_EFFICIENCY, COLAB_GPUS, GpuSpec, TrainingEstimate

    assert list(COLAB_GPUS) == ["T4", "L4", "A100", "H100"]  # what Colab offers today (V100 is gone)
    # 2 TFLOP per step, 600 steps per epoch, 50 epochs; 10 GiB of activations.
    estimate = TrainingEstimate(2e12, 10 * 2**30, 0.0, steps_per_epoch=600, epochs=50)
    assert estimate.epoch_seconds(GpuSpec(16.0, 100.0), 0.1) == pytest.approx(600 * 2e12 / 10e12)  # 120 s
    lines = estimate.summary().splitlines()
    low, high = ASSUMED_EFFICIENCY
    assert f"{low:.0%}-{high:.0%}" in lines[0]  # the assumption is stated
    t4 = next(line for line in lines if line.strip().startswith("T4"))
    # 10 GiB x 1.25 + 0.5 GiB = 13 GiB: fits the T4's 15 GiB; at 15% of 65 TFLOPS an epoch is 2 min, at 5% 6 min.
    seconds = 600 * 2e12 / (65e12 * np.array([high, low]))
    assert "13.0 GiB (fits)" in t4 and f"{seconds[0] / 60:.0f} min-{seconds[1] / 60:.0f} min per epoch of 600 steps" in t4
    assert f"{seconds[0] * 50 / 3600:.1f} h-{seconds[1] * 50 / 3600:.1f} h for 50 epochs" in t4
    bigger = TrainingEstimate(2e12, 30 * 2**30, 0.0, steps_per_epoch=1)
    assert "DOES NOT FIT" in bigger.summary().splitlines()[1] and "(fits)" in bigger.summary().splitlines()[3]  # T4 no, A100 yes


def test_saved_activation_bytes_counts_what_backward_keeps_without_parameters() -> None:
    weight = nn.Parameter(torch.rand(1000))
    data = torch.rand(1000)
    # sin keeps its input (the product: 4000 bytes); the product keeps weight and data, and weight is a parameter.
    saved, result = saved_activation_bytes(lambda: (weight * data).sin().sum())
    assert saved == 4000 + 4000
    result.backward()
    assert saved_activation_bytes(lambda: weight.detach().sin())[0] == 0  # no graph, nothing kept
