"""helpers.gates: the noise and deblur gates' measures and ramps, against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import torch

from helpers import gates


def photo(height: int, width: int, name: str) -> np.ndarray:
    """A crop of a scikit-image sample photo (RGB uint8)."""
    return np.ascontiguousarray(getattr(skimage.data, name)()[40 : 40 + height, 60 : 60 + width])


def test_ramp_weights_are_a_clamped_linear_ramp():
    """Independent reference: numpy's piecewise-linear interpolation through (low, 0) and (high, 1)."""
    values = torch.linspace(-1.0, 10.0, 45)
    for ramp in ((4.0, 6.0), (0.05, 0.1), (0.0, 7.5)):
        expected = np.interp(values.numpy(), ramp, (0.0, 1.0))
        np.testing.assert_allclose(gates.ramp_weights(values, ramp).numpy(), expected, atol=1e-6)


def test_the_noise_gate_weighs_dncnn_by_the_estimated_sigma(monkeypatch):
    """Estimated sigma 3, 5 and 9 (of 255) with the default ramp 4-6: shares 0, 1/2 and 1."""
    monkeypatch.setattr(gates, "noise_sigma", lambda images, device=None: torch.tensor([3.0, 5.0, 9.0]) / 255)
    np.testing.assert_allclose(gates.denoise_weights(torch.zeros(3, 3, 8, 8)).numpy(), [0.0, 0.5, 1.0], atol=1e-6)


@pytest.mark.parametrize("ramp, message", [
    ((0.1, 0.05), r"expected 0 <= low < high, received \(0.1, 0.05\)"),
    ((-0.1, 0.1), "expected 0 <= low < high"),
    ((0.1, float("inf")), "expected 0 <= low < high"),
    (("low", "high"), r"expected \(low, high\), received \('low', 'high'\)"),
    ((0.1,), r"expected \(low, high\)"),
    (None, r"expected \(low, high\), received None"),
])
def test_a_bad_ramp_is_refused_naming_it(ramp, message):
    with pytest.raises(ValueError, match=f"^somewhere: {message}"):
        gates.checked_ramp(ramp, "somewhere")
    assert gates.checked_ramp([0, 1], "somewhere") == (0.0, 1.0)


def test_deblur_weights_measure_the_correction_against_the_frames_own_edges():
    """Corrections made 0.02, 0.075 and 0.2 times the frames' mean edge strength, measured with scipy's Sobel
    (divided by 8, kornia's normalisation; edges replicated) on the grey image: weights 0, 1/2 and 1."""
    frames = np.stack([photo(48, 64, name) for name in ("coffee", "astronaut", "chelsea")]).astype(np.float32) / 255
    noise = np.random.default_rng(0).normal(0, 1, frames.shape).astype(np.float32)
    corrections = []
    for frame, pattern, ratio in zip(frames, noise, (0.02, 0.075, 0.2)):
        grey = frame.mean(axis=2)
        edges = np.abs(scipy.ndimage.sobel(grey, axis=1, mode="nearest")) + np.abs(scipy.ndimage.sobel(grey, axis=0, mode="nearest"))
        corrections.append(pattern * ratio * (edges / 8).mean() / np.abs(pattern).mean())
    before = torch.from_numpy(frames).permute(0, 3, 1, 2)
    after = before + torch.from_numpy(np.stack(corrections)).permute(0, 3, 1, 2)
    weights = gates.deblur_weights(before, after, ramp=(0.05, 0.10))
    np.testing.assert_allclose(weights.numpy(), [0.0, 0.5, 1.0], atol=1e-3)
