"""Restorer: stage order and switching, sizes, errors, tiling against the untiled run, float32 fallback."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import skimage.filters
import torch
from torch import nn

from bench.gpu_check import SyncCounter
from helpers import gates, pipeline
from helpers.checkpoint import CheckpointError, export_weights, load_model
from helpers.io import image_to_tensor, tensor_to_image
from helpers.models import EDSR, DnCNN, UNet, UnsharpMask
from helpers.pipeline import Restorer

from conftest import without_identity_start


def small_networks(seed: int = 0) -> dict[str, nn.Module]:
    """Random-initialised small cascade networks (PyTorch's default init keeps their outputs unsaturated)."""
    torch.manual_seed(seed)
    networks = {"dncnn": DnCNN(depth=5, channels=16), "unet": UNet(base_channels=8, depth=2), "edsr": EDSR(num_blocks=2, channels=16)}
    return {name: without_identity_start(network).eval() for name, network in networks.items()}


def save_networks(networks: dict[str, nn.Module], folder: Path) -> Path:
    """A weights folder as the training engineer's export writes it: <stage>.pt."""
    for name, network in networks.items():
        export_weights(network, folder / f"{name}.pt")
    return folder


def photo(height: int, width: int, name: str = "coffee") -> np.ndarray:
    """A crop of a scikit-image sample photo (RGB uint8)."""
    return np.ascontiguousarray(getattr(skimage.data, name)()[40 : 40 + height, 60 : 60 + width])


@pytest.fixture(scope="module")
def networks() -> dict[str, nn.Module]:
    return small_networks()


def max_difference(first: np.ndarray, second: np.ndarray) -> int:
    return int(np.abs(first.astype(int) - second.astype(int)).max())


@pytest.mark.parametrize("height, width", [(37, 53), (53, 37), (48, 48)])
def test_any_size_and_orientation_scale_2_and_1(networks, height, width):
    image = photo(height, width)
    upscaled = Restorer(networks, device="cpu").restore(image)
    in_place = Restorer(networks, stages=("dncnn", "unet", "unsharp"), scale=1, device="cpu").restore(image)
    assert upscaled.shape == (2 * height, 2 * width, 3) and upscaled.dtype == np.uint8
    assert in_place.shape == (height, width, 3) and in_place.dtype == np.uint8


def test_cascade_matches_stages_composed_by_hand(networks):
    """Fixed order, clamping between stages, unsharp mask as scikit-image computes it."""
    image = photo(40, 56)
    stages = Restorer(networks, device="cpu", fp32=True, denoise="always").restore_stages(image)
    assert list(stages) == ["input", "dncnn", "unet", "edsr", "unsharp"]
    with torch.inference_mode():
        tensor = image_to_tensor(image)
        for name in ("dncnn", "unet", "edsr"):
            tensor = networks[name](tensor).clamp(0, 1)
            assert max_difference(stages[name], tensor_to_image(tensor[0])) <= 1, name
    # channel by channel on contiguous planes: scikit-image 0.26's gaussian returns garbage for strided channel views
    planes = [np.ascontiguousarray(plane, dtype=np.float64) for plane in tensor[0].numpy()]
    sharpened = np.stack([skimage.filters.unsharp_mask(plane, radius=1, amount=0.5) for plane in planes], axis=-1)
    assert max_difference(stages["unsharp"], np.round(np.clip(sharpened, 0, 1) * 255).astype(np.uint8)) <= 1
    assert np.array_equal(stages["input"], image)
    assert [array.shape for array in stages.values()] == [(40, 56, 3)] * 3 + [(80, 112, 3)] * 2


def test_stage_switching_runs_only_the_chosen_stages(networks):
    image = photo(40, 56)
    stages = Restorer(networks, stages=("unet", "dncnn"), scale=1, device="cpu", fp32=True).restore_stages(image)
    assert list(stages) == ["input", "dncnn", "unet"]
    only_edsr = Restorer(networks, stages=("edsr",), device="cpu", fp32=True).restore(image)
    with torch.inference_mode():
        expected = tensor_to_image(networks["edsr"](image_to_tensor(image))[0])
    assert max_difference(only_edsr, expected) <= 1


@pytest.mark.parametrize(
    "options, message",
    [
        ({"stages": ("dncnn", "unet"), "scale": 2}, "needs the 'edsr' stage"),
        ({"scale": 1}, "scale 1 enhances in place"),
        ({"stages": ("dncnn", "sharpen")}, "unknown \\['sharpen'\\]"),
        ({"stages": ()}, "none given"),
        ({"tile": -8}, "expected >= 0"),
    ],
)
def test_bad_options_raise_clear_errors(networks, options, message):
    with pytest.raises(ValueError, match=message):
        Restorer(networks, device="cpu", **options)


def test_missing_network_and_edsr_scale_mismatch(networks):
    with pytest.raises(ValueError, match="no network given for stage\\(s\\) unet"):
        Restorer({"dncnn": networks["dncnn"], "edsr": networks["edsr"]}, device="cpu")
    with pytest.raises(ValueError, match="upscales x4"):
        Restorer({**networks, "edsr": EDSR(scale=4, num_blocks=1, channels=8)}, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_requested_without_cuda(networks):
    with pytest.raises(ValueError, match="CUDA is not available"):
        Restorer(networks, device="cuda")


def test_too_small_and_wrong_inputs(networks):
    restorer = Restorer(networks, device="cpu")
    assert restorer.min_size == 11  # DnCNN(depth=5): receptive field 2 * 5 + 1
    with pytest.raises(ValueError, match="40x8 pixels is too small.*11x11.*dncnn 11"):
        restorer.restore(np.zeros((8, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        restorer.restore(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="one size"):
        restorer.restore_batch([photo(32, 32), photo(32, 40)])


def test_from_weights_loads_only_needed_stages_and_explains_missing_files(networks, tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    export_weights(networks["dncnn"], folder / "dncnn.pt")
    restorer = Restorer.from_weights(folder, stages=("dncnn", "unsharp"), scale=1, device="cpu")
    assert restorer.restore(photo(24, 24)).shape == (24, 24, 3)
    with pytest.raises(FileNotFoundError, match="unet.pt: weights not found.*export_weights.*--weights"):
        Restorer.from_weights(folder, device="cpu")
    monkeypatch.setattr(pipeline, "DEFAULT_WEIGHTS_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="absent/dncnn.pt: weights not found"):
        Restorer.from_weights(device="cpu")
    export_weights(networks["unet"], folder / "edsr.pt")
    with pytest.raises(CheckpointError, match="holds a 'unet' network, expected 'edsr'"):
        Restorer.from_weights(folder, stages=("edsr",), device="cpu")


def test_default_weights_dir_is_the_repository_weights_folder():
    assert pipeline.DEFAULT_WEIGHTS_DIR == Path(__file__).resolve().parent.parent / "weights"


def test_batch_frames_are_restored_independently(networks):
    restorer = Restorer(networks, device="cpu", fp32=True)
    first, second = photo(40, 48), photo(40, 48, name="astronaut")
    batch = restorer.restore_batch([first, second])
    assert max_difference(batch[0], restorer.restore(first)) <= 1
    assert max_difference(batch[1], restorer.restore(second)) <= 1
    assert max_difference(batch[0], batch[1]) > 50
    tensor = restorer.restore_tensor(image_to_tensor(np.stack([first, second])))
    assert tensor.shape == (2, 3, 80, 96) and tensor.dtype == torch.float32


@pytest.mark.parametrize("streams, batch_size", [(1, 1), (2, 1), (2, 3)])
def test_frames_in_flight_come_back_in_order_and_torch_keeps_its_threads(networks, streams, batch_size):
    restorer = Restorer(networks, device="cpu", fp32=True)
    frames = [photo(40, 48, name) for name in ("coffee", "astronaut", "chelsea", "rocket", "coffee")]
    threads = torch.get_num_threads()
    restored = list(restorer.restore_frames(iter(frames), streams=streams, batch_size=batch_size))
    assert len(restored) == len(frames)
    assert all(max_difference(result, restorer.restore(frame)) <= 1 for result, frame in zip(restored, frames))
    assert torch.get_num_threads() == threads


def test_a_failing_frame_stops_the_stream_with_its_error(networks, monkeypatch):
    restorer = Restorer(networks, device="cpu", fp32=True)
    restored_batches = []
    real_restore_batch = Restorer.restore_batch

    def fails_at_frame_2(self, images, first_frame=0):
        if first_frame == 2:
            raise RuntimeError("out of memory (simulated)")
        restored_batches.append(first_frame)
        return real_restore_batch(self, images, first_frame)

    monkeypatch.setattr(Restorer, "restore_batch", fails_at_frame_2)
    threads = torch.get_num_threads()
    results = restorer.restore_frames([photo(40, 48)] * 20, streams=2, batch_size=1)
    with pytest.raises(RuntimeError, match="simulated"):
        list(results)
    assert max(restored_batches) < 6  # frames in flight are bounded: the stream stopped soon after the error
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize(
    "image",
    [photo(72, 100, "astronaut"), photo(68, 108, "coffee"), np.random.default_rng(0).integers(0, 256, (52, 84, 3), np.uint8)],
    ids=["astronaut", "coffee", "noise"],
)
def test_tiled_output_matches_untiled(networks, image):
    """Every stage agrees within 1/255 over the whole image; without overlap the seams show (the check can fail)."""
    whole = Restorer(networks, device="cpu", fp32=True).restore_stages(image)
    tiled = Restorer(networks, device="cpu", fp32=True, tile=32).restore_stages(image)
    differences = {name: max_difference(tiled[name], whole[name]) for name in whole}
    assert max(differences.values()) <= 1, differences
    seamed = Restorer(networks, device="cpu", fp32=True, tile=32, tile_overlap=0).restore(image)
    assert max_difference(seamed, whole["unsharp"]) > 4


def test_only_one_padded_tile_reaches_the_networks(networks):
    restorer = Restorer(networks, device="cpu", tile=32, tile_overlap=16)
    seen: list[tuple[int, ...]] = []
    restorer.models["dncnn"].register_forward_pre_hook(lambda module, inputs: seen.append(tuple(inputs[0].shape)))
    restorer.restore(photo(72, 100))
    assert len(seen) == 3 * 4  # ceil(72 / 32) rows x ceil(100 / 32) columns
    assert all(height <= 32 + 2 * 16 and width <= 32 + 2 * 16 for _, _, height, width in seen)


@pytest.mark.parametrize("height, width", [(72, 100), (75, 101)])
def test_all_tiles_of_an_image_have_one_shape(networks, height, width):
    """On CUDA cuDNN's autotuner (on, for fixed video sizes) tunes every new shape: edge tiles used to add 3-9 per image."""
    image = photo(height, width)
    restorer = Restorer(networks, device="cpu", fp32=True, tile=32, tile_overlap=16)
    seen: list[tuple[int, ...]] = []
    restorer.models["dncnn"].register_forward_pre_hook(lambda module, inputs: seen.append(tuple(inputs[0].shape)))
    tiled = restorer.restore_stages(image)
    assert len(seen) >= 6 and len(set(seen)) == 1 and max(seen[0][-2:]) <= 32 + 2 * 16 + 3
    whole = Restorer(networks, device="cpu", fp32=True).restore_stages(image)
    assert max(max_difference(tiled[name], whole[name]) for name in whole) <= 1


class OverflowsInReducedPrecision(nn.Module):
    """Identity whose low-precision path overflows to +inf on bright frames, as float16 activations can beyond 65504."""

    min_size = 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        nn.init.dirac_(self.conv.weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        result = self.conv(images)
        if result.dtype != torch.float32:
            bright = images.mean(dim=(1, 2, 3)) > 0.5
            result = result.float().masked_fill(bright[:, None, None, None], float("inf"))
        return result


def test_non_finite_reduced_precision_frames_are_redone_in_float32():
    restorer = Restorer({"dncnn": OverflowsInReducedPrecision()}, stages=("dncnn",), scale=1, device="cpu", denoise="always", half_dtype=torch.bfloat16)
    torch.manual_seed(0)
    dark, bright = torch.rand(3, 16, 16) * 0.4, 0.6 + torch.rand(3, 16, 16) * 0.4
    with pytest.warns(UserWarning, match=r"frame\(s\) \[11\]: non-finite values in torch.bfloat16 inference, redone in float32"):
        restored = restorer.restore_tensor(torch.stack([dark, bright]), first_frame=10)
    assert torch.equal(restored[1], bright)  # the redone frame: exact float32 identity
    assert torch.equal(restored[0], dark.to(torch.bfloat16).float())  # the finite frame kept its bfloat16 result
    assert not torch.equal(restored[0], dark)  # (so the two paths are distinguishable)


def test_non_finite_tile_is_redone_and_fp32_never_warns():
    image = np.zeros((32, 32, 3), np.uint8)
    image[16:, 16:] = 230
    restorer = Restorer(
        {"dncnn": OverflowsInReducedPrecision()}, stages=("dncnn",), scale=1, device="cpu", denoise="always", tile=16, tile_overlap=0,
        half_dtype=torch.bfloat16,
    )
    with pytest.warns(UserWarning, match="tile rows 16-32, columns 16-32") as record:
        assert np.array_equal(restorer.restore(image), image)
    assert len(record) == 1
    forced = Restorer({"dncnn": OverflowsInReducedPrecision()}, stages=("dncnn",), scale=1, device="cpu", denoise="always", fp32=True, half_dtype=torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(forced.restore(image), image)


def tf32_allowed() -> tuple[bool, bool]:
    """Whether CUDA may use TF32 for float32 (convolutions, matmuls), read through torch's new API where it exists:
    once that is in use, reading the legacy flags raises."""
    if hasattr(torch.backends.cudnn, "conv"):
        return torch.backends.cudnn.conv.fp32_precision == "tf32", torch.backends.cuda.matmul.fp32_precision == "tf32"
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


class RecordsPrecisionFlags(OverflowsInReducedPrecision):
    """The overflowing identity that also records, per call, whether CUDA may use TF32 (convolutions, matmuls)."""

    def __init__(self) -> None:
        super().__init__()
        self.flags: list[tuple[bool, bool]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.flags.append(tf32_allowed())
        return super().forward(images)


def test_float32_runs_and_the_float32_redo_turn_tf32_off():
    """Ampere+ GPUs run float32 convolutions in TF32 by default; --fp32 and the redo promise true float32."""
    defaults = tf32_allowed()
    image = np.full((16, 16, 3), 230, np.uint8)  # bright: overflows in reduced precision
    forced = Restorer({"dncnn": RecordsPrecisionFlags()}, stages=("dncnn",), scale=1, device="cpu", denoise="always", fp32=True)
    forced.restore(image)
    assert forced.models["dncnn"].flags == [(False, False)]
    redone = Restorer({"dncnn": RecordsPrecisionFlags()}, stages=("dncnn",), scale=1, device="cpu", denoise="always", half_dtype=torch.bfloat16)
    with pytest.warns(UserWarning, match="redone in float32"):
        redone.restore(image)
    assert redone.models["dncnn"].flags == [defaults, (False, False)]
    assert tf32_allowed() == defaults  # restored afterwards


@pytest.mark.parametrize(
    "height, width, expected, aspect_note",
    [(200, 300, (720, 1280, 3), True), (300, 200, (1280, 720, 3), True), (180, 320, (720, 1280, 3), False)],
)
def test_resize_to_frame_warns_and_keeps_orientation(networks, height, width, expected, aspect_note):
    restorer = Restorer(networks, stages=("edsr",), device="cpu", resize_to_frame=True)
    with pytest.warns(UserWarning, match=f"resized {width}x{height} -> ") as record:
        assert restorer.restore(photo(height, width)).shape == expected
    assert ("aspect ratio changed" in str(record[0].message)) == aspect_note


def test_resize_to_frame_leaves_frames_of_the_right_size_alone(networks):
    restorer = Restorer(networks, stages=("unsharp",), scale=1, device="cpu", resize_to_frame=True)
    frame = np.random.default_rng(1).integers(0, 256, (360, 640, 3), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert restorer.restore(frame).shape == (360, 640, 3)


def test_large_inputs_are_tiled_automatically(networks, monkeypatch):
    monkeypatch.setattr(pipeline, "AUTO_TILE_ABOVE_PIXELS", 100 * 100)
    monkeypatch.setattr(pipeline, "AUTO_TILE_SIZE", 64)

    def largest_window(restorer: Restorer, image: np.ndarray) -> int:
        sizes: list[int] = []
        restorer.models["unet"].register_forward_pre_hook(lambda module, inputs: sizes.append(max(inputs[0].shape[-2:])))
        restorer.restore(image)
        return max(sizes)

    large, small = photo(160, 208), photo(80, 96)
    assert largest_window(Restorer(networks, device="cpu", fp32=True), large) <= 64 + 2 * 32
    assert largest_window(Restorer(networks, device="cpu", fp32=True, auto_tile=False), large) == 208
    assert largest_window(Restorer(networks, device="cpu", fp32=True, tile=96), large) <= 96 + 2 * 32
    assert largest_window(Restorer(networks, device="cpu", fp32=True), small) == 96  # small enough: whole


def noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    return np.clip(image + np.random.default_rng(seed).normal(0, sigma, image.shape), 0, 255).round().astype(np.uint8)


def test_dncnn_is_not_run_on_a_clean_photo_and_runs_in_full_on_a_noisy_one(networks):
    """The noise gate: a clean frame gets the cascade without DnCNN (not even a forward pass), a noisy one all of it."""
    clean = photo(64, 96, "astronaut")  # estimated sigma 1.8 of 255
    calls: list[int] = []
    gated = Restorer(networks, device="cpu", fp32=True)
    gated.models["dncnn"].register_forward_pre_hook(lambda module, inputs: calls.append(1))
    without_dncnn = Restorer(networks, stages=("unet", "edsr", "unsharp"), device="cpu", fp32=True).restore(clean)
    assert np.array_equal(gated.restore(clean), without_dncnn) and calls == []
    noisy_photo = noisy(clean, 25)
    always = Restorer(networks, device="cpu", fp32=True, denoise="always").restore(noisy_photo)
    assert np.array_equal(gated.restore(noisy_photo), always) and calls == [1]
    assert max_difference(always, without_dncnn) > 10  # the stage matters on this photo: the check can fail


def test_each_frame_of_a_batch_gets_its_own_share_of_the_denoising(networks, monkeypatch):
    """Estimated sigma 0, 5 and 10 (of 255) with the ramp 4-6: DnCNN's correction weighted 0, 1/2 and 1."""
    monkeypatch.setattr(gates, "noise_sigma", lambda images, device=None: torch.tensor([0.0, 5.0, 10.0]) / 255)
    frames = [photo(40, 56, name) for name in ("coffee", "astronaut", "chelsea")]
    restorer = Restorer(networks, stages=("dncnn",), scale=1, device="cpu", fp32=True)
    gated = restorer.restore_batch(frames)
    with torch.inference_mode():
        inputs = image_to_tensor(np.stack(frames))
        corrected = networks["dncnn"](inputs)
    expected = [inputs[0], torch.lerp(inputs[1], corrected[1], 0.5), corrected[2]]
    for index, (result, reference) in enumerate(zip(gated, expected)):
        assert max_difference(result, tensor_to_image(reference.clamp(0, 1))) <= 1, index
    assert max_difference(gated[1], tensor_to_image(corrected[1].clamp(0, 1))) > 2  # a half share is not the whole


def test_the_noise_gate_is_decided_on_the_whole_frame_before_tiling(networks):
    """Half noisy, half clean: every tile gets the whole frame's share, so tiled and whole runs agree."""
    image = photo(72, 100, "astronaut")
    image[:, 50:] = noisy(image[:, 50:], 8)
    whole = Restorer(networks, device="cpu", fp32=True).restore(image)
    tiled = Restorer(networks, device="cpu", fp32=True, tile=32).restore(image)
    assert max_difference(tiled, whole) <= 1


def test_unknown_denoise_mode_is_refused(networks):
    with pytest.raises(ValueError, match="denoise: expected 'auto' or 'always', received 'sometimes'"):
        Restorer(networks, device="cpu", denoise="sometimes")


class Sharpens(nn.Module):
    """A stand-in deblurrer that sharpens everything by ``amount`` (x + amount * (x - 3x3 mean))."""

    def __init__(self, amount: float) -> None:
        super().__init__()
        self.amount = amount

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images + self.amount * (images - nn.functional.avg_pool2d(images, 3, 1, 1, count_include_pad=False))


def test_the_unet_is_left_out_where_its_correction_is_small_against_the_frames_edges(networks):
    """A sharp photo slightly sharpened: the gated cascade equals the cascade without the UNet; sharpened a lot:
    the whole correction is kept. The two amounts straddle the ramp on this photo (checked first)."""
    image = photo(64, 96, "astronaut")
    tensor = image_to_tensor(image)
    for amount, share in ((0.05, 0.0), (0.3, 1.0)):
        assert float(gates.deblur_weights(tensor, Sharpens(amount)(tensor).clamp(0, 1))) == share
        models = {**networks, "unet": Sharpens(amount)}
        gated = Restorer(models, stages=("unet", "edsr"), device="cpu", fp32=True).restore(image)
        always = Restorer(models, stages=("unet", "edsr"), device="cpu", fp32=True, deblur="always").restore(image)
        without = Restorer(models, stages=("edsr",), device="cpu", fp32=True).restore(image)
        assert np.array_equal(gated, without if share == 0 else always), amount
        assert max_difference(always, without) > 0, amount  # the UNet stage matters here: the check can fail


def test_each_frame_of_a_batch_keeps_its_own_share_of_the_deblurring(networks, monkeypatch):
    monkeypatch.setattr(pipeline, "deblur_weights", lambda before, after, ramp: torch.tensor([0.0, 0.5, 1.0]))
    frames = [photo(40, 56, name) for name in ("coffee", "astronaut", "chelsea")]
    stages = Restorer(networks, stages=("dncnn", "unet"), scale=1, device="cpu", fp32=True, denoise="always").restore_batch(frames)
    with torch.inference_mode():
        denoised = networks["dncnn"](image_to_tensor(np.stack(frames))).clamp(0, 1)
        deblurred = networks["unet"](denoised).clamp(0, 1)
    expected = [denoised[0], torch.lerp(denoised[1], deblurred[1], 0.5), deblurred[2]]
    for index, (result, reference) in enumerate(zip(stages, expected)):
        assert max_difference(result, tensor_to_image(reference)) <= 1, index


def test_the_deblur_gate_is_decided_on_the_whole_frame_before_the_upscaling_tiles(networks, monkeypatch):
    """Tiled runs measure the UNet's correction once on the whole frame, so tiled and whole agree. A whole frame is
    measured as one; tiles sum the measure's two maps over their cores on the device (the assembled frame never
    goes back there), which gives the whole frame's measure."""
    measured: list[tuple[int, ...]] = []
    ratios: list[torch.Tensor] = []
    measure, ratio = pipeline.deblur_weights, pipeline.deblur_ratio

    def recording(before: torch.Tensor, after: torch.Tensor, ramp: tuple[float, float]) -> torch.Tensor:
        measured.append(tuple(before.shape))
        ratios.append(gates.deblur_measure(before, after))
        return measure(before, after, ramp)

    monkeypatch.setattr(pipeline, "deblur_weights", recording)
    monkeypatch.setattr(pipeline, "deblur_ratio", lambda *means: ratios.append(ratio(*means)) or ratios[-1])
    image = photo(72, 100, "astronaut")
    image[:, 50:] = skimage.filters.gaussian(image[:, 50:], sigma=2, channel_axis=2, preserve_range=True).round().astype(np.uint8)
    models = {**networks, "unet": Sharpens(0.2)}  # about half of its correction kept (checked below)
    whole = Restorer(models, device="cpu", fp32=True).restore(image)
    tiled = Restorer(models, device="cpu", fp32=True, tile=32).restore(image)
    assert measured == [(1, 3, 72, 100)]  # the whole frame; the tiled run measured without it
    whole_measure, tiled_measure = (float(value) for value in ratios)
    assert 0 < float(gates.ramp_weights(torch.tensor(whole_measure), gates.DEBLUR_RAMP)) < 1
    assert tiled_measure == pytest.approx(whole_measure, rel=1e-4)
    assert max_difference(tiled, whole) <= 1


def test_unknown_deblur_mode_is_refused(networks):
    with pytest.raises(ValueError, match="deblur: expected 'auto' or 'always', received 'never'"):
        Restorer(networks, device="cpu", deblur="never")


def test_a_unet_file_records_its_own_deblur_ramp(networks, tmp_path):
    """How much a network sharpens sharp frames is its own: from_weights takes the ramp its UNet file records."""
    folder = save_networks(networks, tmp_path / "plain")
    assert Restorer.from_weights(folder, device="cpu").deblur_ramp == gates.DEBLUR_RAMP
    export_weights(networks["unet"], folder / "unet.pt", deblur_ramp=(0.15, 0.3))
    assert Restorer.from_weights(folder, device="cpu").deblur_ramp == (0.15, 0.3)
    assert Restorer.from_weights(folder, device="cpu", deblur_ramp=(0.2, 0.4)).deblur_ramp == (0.2, 0.4)
    image = photo(64, 96, "astronaut")
    models = {**networks, "unet": Sharpens(0.3)}  # its correction reads 0.19 on this photo: all of it kept below
    kept = Restorer(models, stages=("unet",), scale=1, device="cpu", fp32=True, deblur_ramp=(0.05, 0.1)).restore(image)
    dropped = Restorer(models, stages=("unet",), scale=1, device="cpu", fp32=True, deblur_ramp=(0.2, 0.4)).restore(image)
    assert np.array_equal(dropped, image) and max_difference(kept, image) > 3


@pytest.mark.parametrize("ramp", [(0.1, 0.05), (-0.1, 0.1), ("low", "high"), (0.1,)])
def test_a_bad_deblur_ramp_is_refused_naming_where_it_came_from(networks, tmp_path, ramp):
    with pytest.raises(ValueError, match="deblur_ramp: expected"):
        Restorer(networks, device="cpu", deblur_ramp=ramp)
    folder = save_networks(networks, tmp_path / "weights")
    export_weights(networks["unet"], folder / "unet.pt", deblur_ramp=ramp)
    with pytest.raises(ValueError, match=r"unet\.pt: deblur_ramp: expected"):
        Restorer.from_weights(folder, device="cpu")


def test_from_weights_reads_each_file_once_and_applies_what_it_records(networks, tmp_path, torch_loads):
    """One torch.load per weights file; the UNet's recorded deblur ramp and the cascade's recorded unsharp mask
    are the ones used: the output equals a Restorer given both by hand, and each differs from the default."""
    folder = save_networks(networks, tmp_path / "weights")
    ramp = (4.0, 8.0)  # above this random UNet's correction (2.7 times the photo's edges): its correction is dropped
    unsharp = {"sigma": 1.5, "amount": 0.8, "threshold": 0.01}
    export_weights(networks["unet"], folder / "unet.pt", deblur_ramp=ramp)
    export_weights(networks["edsr"], folder / "edsr.pt", cascade={"unsharp": unsharp})
    restorer = Restorer.from_weights(folder, device="cpu", fp32=True)
    assert sorted(torch_loads) == ["dncnn.pt", "edsr.pt", "unet.pt"]
    assert restorer.deblur_ramp == ramp
    exported = {stage: load_model(folder / f"{stage}.pt") for stage in networks}  # float16 in the files
    image = photo(64, 96, "astronaut")
    by_hand = Restorer(exported, device="cpu", fp32=True, deblur_ramp=ramp, unsharp=UnsharpMask(**unsharp)).restore(image)
    assert np.array_equal(restorer.restore(image), by_hand)
    default_ramp = Restorer(exported, device="cpu", fp32=True, unsharp=UnsharpMask(**unsharp)).restore(image)
    default_mask = Restorer(exported, device="cpu", fp32=True, deblur_ramp=ramp).restore(image)
    assert max_difference(by_hand, default_ramp) > 3 and max_difference(by_hand, default_mask) > 3


def _dihedral_reference(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The 8 symmetries of the square as rotations by 0-270 degrees, with and without a left-right mirror."""
    outputs = []
    for mirror in (False, True):
        mirrored = images.flip(-1) if mirror else images
        for turns in range(4):
            output = torch.rot90(model(torch.rot90(mirrored, turns, (-2, -1))), -turns, (-2, -1))
            outputs.append(output.flip(-1) if mirror else output)
    return torch.stack(outputs).mean(dim=0)


def test_self_ensemble_averages_the_network_over_the_8_symmetries_of_the_square(networks) -> None:
    torch.manual_seed(0)
    lopsided = nn.Conv2d(3, 3, (3, 5), padding=(1, 2)).eval()  # no symmetry at all
    images = torch.rand(2, 3, 12, 20)
    with torch.no_grad():
        averaged = pipeline.dihedral_average(lopsided, images)
        torch.testing.assert_close(averaged, _dihedral_reference(lopsided, images), atol=1e-6, rtol=0)
        assert not torch.allclose(averaged, lopsided(images), atol=1e-3)
        pointwise = nn.Conv2d(3, 3, 1).eval()  # equivariant: the average is the network itself
        torch.testing.assert_close(pipeline.dihedral_average(pointwise, images), pointwise(images), atol=1e-6, rtol=0)


def test_the_restorer_runs_the_stages_asked_as_a_self_ensemble(networks) -> None:
    images = image_to_tensor(photo(40, 56))
    options = {"stages": ("unet",), "scale": 1, "device": "cpu", "fp32": True, "deblur": "always"}
    with torch.no_grad():
        expected = _dihedral_reference(networks["unet"], images).clamp(0, 1)
    torch.testing.assert_close(Restorer(networks, self_ensemble=["unet"], **options).restore_tensor(images), expected,
                               atol=1e-5, rtol=0)
    assert not torch.allclose(Restorer(networks, **options).restore_tensor(images), expected, atol=1e-4)
    with pytest.raises(ValueError, match="self_ensemble: expected stages among dncnn, unet, edsr, received unsharp"):
        Restorer(networks, device="cpu", self_ensemble=["unsharp"])


# ----------------------------------------------------------------------------- where the gates run, what reads back


class OnDevice(torch.Tensor):
    """Stands for a tensor in device memory when a Restorer runs on 'cpu:0' and the host is 'cpu': what torch computes
    from it stays OnDevice, and moving it to the host ('cpu') gives a plain tensor."""

    def to(self, *args, **kwargs):
        moved = super().to(*args, **kwargs)
        target = kwargs.get("device", next((arg for arg in args if isinstance(arg, (str, torch.device))), None))
        return moved.as_subclass(torch.Tensor) if target is not None and torch.device(target) == torch.device("cpu") else moved

    def cpu(self, *args, **kwargs):
        return super().cpu(*args, **kwargs).as_subclass(torch.Tensor)


def noisy_and_blurred_frames() -> list[np.ndarray]:
    frame = photo(48, 64, "astronaut")
    blurred = skimage.filters.gaussian(frame, sigma=2, channel_axis=2, preserve_range=True).round().astype(np.uint8)
    return [noisy(frame, 20), blurred]


def test_the_gates_measure_on_the_device_the_stages_run_on(networks, monkeypatch):
    """restore, restore_batch and restore_frames used to bring DnCNN's and the UNet's outputs back to the host, measure
    the deblur gate there (kornia's Sobel on the CPU, with the GPU idle) and send the gated output up again for EDSR;
    the noise gate measured the host frames, which then went up a second time."""
    upload = pipeline.prepare_input
    uploads: list[tuple[int, ...]] = []
    seen: dict[str, list[type]] = {"denoise": [], "deblur": [], "deblur maps": []}

    def uploading(images: torch.Tensor, device: torch.device) -> torch.Tensor:
        uploads.append(tuple(images.shape))
        return upload(images, device).as_subclass(OnDevice)

    def spy(name: str, function):
        def recorded(*args, **kwargs):
            seen[name].append(tuple(type(arg) for arg in args if isinstance(arg, torch.Tensor)))
            return function(*args, **kwargs)

        return recorded

    monkeypatch.setattr(pipeline, "prepare_input", uploading)
    for name, attribute in (("denoise", "denoise_weights"), ("deblur", "deblur_weights")):
        monkeypatch.setattr(pipeline, attribute, spy(name, getattr(pipeline, attribute)))
    frames = noisy_and_blurred_frames()
    restored = Restorer(networks, device="cpu:0", fp32=True).restore_batch(frames)

    assert uploads == [(2, 3, 48, 64)]  # the frames went to the device once
    assert seen == {"denoise": [(OnDevice,)], "deblur": [(OnDevice, OnDevice)], "deblur maps": []}
    reference = Restorer(networks, device="cpu", fp32=True).restore_batch(frames)
    assert all(np.array_equal(result, expected) for result, expected in zip(restored, reference))

    uploads.clear()
    seen.update({name: [] for name in seen})
    monkeypatch.setattr(pipeline, "deblur_maps", spy("deblur maps", pipeline.deblur_maps))  # tiles sum the measure's maps
    Restorer(networks, device="cpu:0", fp32=True, tile=32).restore(frames[1])
    assert seen["deblur"] == [] and seen["deblur maps"] and set(seen["deblur maps"]) == {(OnDevice, OnDevice)}  # per tile
    assert len(uploads) == 2 * len(seen["deblur maps"])  # each window once before the gate and once after it


def test_a_restored_batch_reads_from_the_device_twice(networks):
    """The noise gate's estimate read about six numbers back per frame (a mask's size and a non-empty check per
    channel), and the cascade four more per batch (shares checked against 0 and 1, finiteness twice). Left: whether
    any frame is noisy enough to run DnCNN, and whether every frame is finite (CPU stand-ins, by code location)."""
    restorer = Restorer(networks, device="cpu", fp32=True)
    frames = noisy_and_blurred_frames()
    restorer.restore_batch(frames)  # warm-up: kernels made once per device
    with SyncCounter("cpu") as syncs:
        restorer.restore_batch(frames)
    on_device = {location.split(" <- ")[0].split(" (")[1].rstrip(")"): count for location, count in syncs.counts.items()
                 if location.startswith(("helpers/pipeline.py", "helpers/metrics.py", "helpers/gates.py"))}
    assert on_device == {"_denoise_gate": 1, "_on_device": 1}


def test_the_noise_estimate_uses_no_kernel_that_is_nondeterministic_on_cuda():
    """``kthvalue`` has no deterministic CUDA kernel: it warned in every deterministic run's cascade validation."""
    from test_cascade import Operations

    images = image_to_tensor(np.stack(noisy_and_blurred_frames()))
    with Operations() as operations:
        estimate = gates.noise_sigma(images)
    assert "sort.default" in {name for name in operations.names} and not any("kthvalue" in name for name in operations.names)
    assert estimate.shape == (2,) and 15 < float(estimate[0]) * 255 < 25  # sigma 20 was added to the first


def test_self_ensemble_checks_the_range_once_and_keeps_the_channels_last_layout(networks):
    """Each of the 8 passes re-ran the UNet's input range check (a read from the device), and the 4 transposed
    views reached it in neither channels_last nor contiguous layout."""
    restorer = Restorer(networks, stages=("unet",), scale=1, device="cpu", fp32=True, deblur="always", self_ensemble=("unet",))
    layouts: list[bool] = []
    restorer.models["unet"].register_forward_pre_hook(
        lambda module, inputs: layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last)))
    with SyncCounter("cpu") as syncs:
        restorer.restore(photo(32, 48))
    assert layouts == [True] * 8
    checks = [location for location in syncs.counts if "check_image_batch" in location]
    assert len(checks) == 1 and checks[0].endswith("(_run)") and syncs.counts[checks[0]] == 1  # the input, on the host


@pytest.mark.skipif(not hasattr(torch.backends.cudnn, "conv"), reason="torch < 2.9 has only the legacy TF32 flags")
def test_a_float32_run_works_after_the_new_tf32_api_was_used(networks):
    """Once anything set torch >= 2.9's fp32_precision, reading the legacy allow_tf32 flags raises: every float32
    path (--fp32, the float16 redo, training's cascade validation) crashed."""
    settings = (torch.backends.cudnn.conv, torch.backends.cuda.matmul)
    saved = [setting.fp32_precision for setting in settings]
    seen: list[tuple[str, ...]] = []
    restorer = Restorer(networks, stages=("dncnn",), scale=1, device="cpu", fp32=True, denoise="always")
    restorer.models["dncnn"].register_forward_pre_hook(
        lambda module, inputs: seen.append(tuple(setting.fp32_precision for setting in settings)))
    try:
        for setting in settings:
            setting.fp32_precision = "tf32"  # as a notebook cell or another library may
        restorer.restore(photo(40, 40))
        after = tuple(setting.fp32_precision for setting in settings)
    finally:
        for setting, value in zip(settings, saved):
            setting.fp32_precision = value
    assert seen == [("ieee", "ieee")] and after == ("tf32", "tf32")


# ----------------------------------------------------------------------------- strength (issue 29)


def bicubic_by_hand(image: np.ndarray) -> torch.Tensor:
    """The input upscaled 2x by torch's bicubic interpolation (align_corners=False), clamped: the strength-0 result."""
    tensor = image_to_tensor(image)
    return nn.functional.interpolate(tensor, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)


@pytest.mark.parametrize("strength", [0.0, 0.3, 1.0])
def test_strength_blends_the_cascade_with_bicubic(networks, strength):
    image = photo(40, 56)
    full = Restorer(networks, device="cpu", fp32=True).restore_tensor(image_to_tensor(image))
    blended = Restorer(networks, device="cpu", fp32=True, strength=strength).restore_tensor(image_to_tensor(image))
    expected = strength * full + (1 - strength) * bicubic_by_hand(image)
    assert torch.allclose(blended, expected, atol=1e-5)
    assert (blended - full).abs().max() > 0.01 or strength == 1.0  # bicubic is not the cascade: the check can fail


def test_a_stages_strength_keeps_that_share_of_its_correction(networks):
    """unet=0.4 with the gate off: the UNet's output is 0.4 of the way from its input; unet=0 drops the stage;
    edsr=0 leaves bicubic where EDSR's output was."""
    image = photo(40, 56)
    tensor = image_to_tensor(image)
    with torch.inference_mode():
        deblurred = networks["unet"](tensor).clamp(0, 1)
    weak = Restorer(networks, stages=("unet",), scale=1, device="cpu", fp32=True, deblur="always", strength={"unet": 0.4})
    assert torch.allclose(weak.restore_tensor(tensor), torch.lerp(tensor, deblurred, 0.4), atol=1e-5)
    without_unet = Restorer(networks, stages=("dncnn", "edsr", "unsharp"), device="cpu", fp32=True).restore(image)
    unet_off = Restorer(networks, device="cpu", fp32=True, strength={"unet": 0}).restore(image)
    assert np.array_equal(unet_off, without_unet)
    stages = Restorer(networks, stages=("edsr",), device="cpu", fp32=True, strength={"edsr": 0.0}).restore_tensor(tensor)
    assert torch.allclose(stages, bicubic_by_hand(image), atol=1e-6)


def test_a_stages_strength_multiplies_its_gates_share(networks):
    """A UNet whose gate keeps about half of its correction: unet=0.5 keeps half of that, tiled as whole."""
    image = photo(72, 100, "astronaut")
    image[:, 50:] = skimage.filters.gaussian(image[:, 50:], sigma=2, channel_axis=2, preserve_range=True).round().astype(np.uint8)
    models = {**networks, "unet": Sharpens(0.2)}
    tensor = image_to_tensor(image)
    gated = Restorer(models, stages=("unet",), scale=1, device="cpu", fp32=True).restore_tensor(tensor)
    share = float(gates.deblur_weights(tensor, Sharpens(0.2)(tensor).clamp(0, 1)))
    assert 0 < share < 1  # the gate keeps part of the correction here: the product below is tested
    half = Restorer(models, stages=("unet",), scale=1, device="cpu", fp32=True, strength={"unet": 0.5})
    assert torch.allclose(half.restore_tensor(tensor), torch.lerp(tensor, gated, 0.5), atol=1e-5)
    whole = Restorer(models, device="cpu", fp32=True, strength={"unet": 0.5, "edsr": 0.7}).restore(image)
    tiled = Restorer(models, device="cpu", fp32=True, tile=32, strength={"unet": 0.5, "edsr": 0.7}).restore(image)
    assert max_difference(tiled, whole) <= 1


@pytest.mark.parametrize("strength", [0.6, {"dncnn": 0.3, "unsharp": 0.5}])
def test_tiled_equals_whole_with_a_strength(networks, strength):
    image = photo(72, 100, "astronaut")
    whole = Restorer(networks, device="cpu", fp32=True, denoise="always", strength=strength).restore(image)
    tiled = Restorer(networks, device="cpu", fp32=True, denoise="always", tile=32, strength=strength).restore(image)
    assert max_difference(tiled, whole) <= 1


@pytest.mark.parametrize("strength, message", [
    (1.5, "strength: expected a number from 0 to 1, received 1.5"),
    (float("nan"), "strength: expected a number from 0 to 1, received nan"),
    ({"deblur": 0.5}, "strength: expected stages among dncnn, unet, edsr, unsharp, received deblur"),
    ({"unet": -0.1}, "strength of unet: expected a number from 0 to 1, received -0.1"),
])
def test_a_strength_out_of_range_is_refused(networks, strength, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Restorer(networks, device="cpu", strength=strength)
