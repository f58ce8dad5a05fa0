"""helpers.calibrate: the deblur gate's ramp measured for a UNet on sharp photos, and the command that records it."""

from __future__ import annotations

from pathlib import Path

import kornia
import numpy as np
import pytest
import skimage.data
import skimage.io
import skimage.metrics
import torch
from torch import nn

from helpers import calibrate, gates
from helpers.checkpoint import export_weights, load_checkpoint, load_weights
from helpers.commands import main as cli_main
from helpers.io import image_to_tensor, write_image
from helpers.models import build_model

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


class Sharpens(nn.Module):
    """A stand-in deblurrer: a gentle unsharp mask (x + 0.25 (x - Gaussian(x))), on every frame alike."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images + 0.25 * (images - kornia.filters.gaussian_blur2d(images, (5, 5), (1.5, 1.5)))


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        write_image(folder / f"{name}.png", np.ascontiguousarray(getattr(skimage.data, name)()[:300, :300]))
    return folder


def _photos(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def _row(calibration: calibrate.Calibration, low: float) -> dict:
    return next(row for row in calibration.table if row["ramp"].startswith(f"({low:.3f},"))


def test_each_ramps_gain_is_what_the_restorers_gate_gives_there(photo_folder, one_torch_thread) -> None:
    """Independent reference: the Restorer's own gate (gates.deblur_weights) and scikit-image's PSNR on the same views."""
    kernels = [np.full((5, 9), 1 / 45, np.float32)]
    photos = _photos(photo_folder)
    calibration = calibrate.calibrate_deblur_ramp(Sharpens(), photos, kernels, seed=3, device="cpu")
    low = calibrate.RAMP_LOWS[4]
    gains: dict[str, list[float]] = {"synthetic": [], "kernel": []}
    for index, path in enumerate(photos):
        views = calibrate._photo_views(skimage.io.imread(path), index, kernels, seed=3)
        for name in gains:
            before = image_to_tensor(views[name])
            after = Sharpens()(before).clamp(0, 1)
            gated = torch.lerp(before, after, gates.deblur_weights(before, after, (low, 2 * low)).view(-1, 1, 1, 1))
            psnr = [skimage.metrics.peak_signal_noise_ratio(views["sharp"].astype(np.float64) / 255, image, data_range=1.0)
                    for image in (views[name].astype(np.float64) / 255, gated[0].permute(1, 2, 0).double().numpy())]
            gains[name].append(psnr[1] - psnr[0])
    row = _row(calibration, low)
    for name, values in gains.items():
        assert float(row[f"{name} gain (dB)"]) == pytest.approx(np.mean(values), abs=2e-3), name
    assert float(row["blurred gain (dB)"]) == pytest.approx((np.mean(gains["synthetic"]) + np.mean(gains["kernel"])) / 2, abs=2e-3)


def test_the_chosen_ramp_is_the_lowest_that_leaves_sharp_photos_alone(photo_folder, one_torch_thread) -> None:
    calibration = calibrate.calibrate_deblur_ramp(Sharpens(), _photos(photo_folder), seed=0, device="cpu")
    shares = [float(row["sharp photos: mean share"]) for row in calibration.table]
    chosen = calibrate.RAMP_LOWS.index(calibration.ramp[0])
    assert calibration.ramp == (calibrate.RAMP_LOWS[chosen], 2 * calibrate.RAMP_LOWS[chosen])
    assert chosen > 0 and shares[0] > 0.5  # the stand-in sharpens sharp photos too: low ramps keep most of it
    assert shares[chosen] <= calibrate.SHARP_SHARE and all(share > calibrate.SHARP_SHARE for share in shares[:chosen])
    assert "synthetic gain (dB)" in calibration.table[0] and "kernel gain (dB)" not in calibration.table[0]  # no kernels


def test_a_unet_that_sharpens_sharp_photos_past_every_ramp_gets_the_highest(photo_folder, monkeypatch) -> None:
    monkeypatch.setattr(calibrate, "RAMP_LOWS", (1e-4, 2e-4))
    calibration = calibrate.calibrate_deblur_ramp(Sharpens(), _photos(photo_folder)[:2], device="cpu")
    assert [row["sharp photos: mean share"] for row in calibration.table] == ["1.000", "1.000"]
    assert calibration.ramp == (2e-4, 4e-4)


def test_a_unet_that_changes_nothing_leaves_the_gate_open(photo_folder) -> None:
    calibration = calibrate.calibrate_deblur_ramp(nn.Identity(), _photos(photo_folder)[:2], device="cpu")
    assert calibration.ramp == (calibrate.RAMP_LOWS[0], 2 * calibrate.RAMP_LOWS[0])  # nothing to keep sharp photos from
    assert all(float(row["blurred gain (dB)"]) == 0 and row["sharp photos touched"] == "0 of 2" for row in calibration.table)
    with pytest.raises(ValueError, match="no photos"):
        calibrate.calibrate_deblur_ramp(nn.Identity(), [])


def test_the_command_records_the_ramp_the_restorer_then_uses(photo_folder, tmp_path, capsys) -> None:
    unet = build_model("unet", base_channels=4, depth=2)
    export_weights(unet, tmp_path / "unet.pt", history={"val_psnr": [25.0]})
    out = tmp_path / "calibrated" / "unet.pt"
    assert cli_main(["calibrate-deblur", str(tmp_path / "unet.pt"), "--photos", str(photo_folder), "--limit", "2",
                     "--device", "cpu", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    ramp = load_weights(out).deblur_ramp
    assert f"chosen ramp ({ramp[0]:.3f}, {ramp[1]:.3f})" in printed and "; 2 photos" in printed
    assert ramp[0] in calibrate.RAMP_LOWS and ramp[1] == 2 * ramp[0]
    stored, original = load_checkpoint(out), load_checkpoint(tmp_path / "unet.pt")
    assert stored["history"] == original["history"] and stored["arch"] == original["arch"]
    assert all(torch.equal(stored["model"][key], original["model"][key]) for key in original["model"])


def test_a_recorded_ramp_is_used_and_a_missing_one_is_measured(photo_folder, tmp_path, torch_loads) -> None:
    unet = build_model("unet", base_channels=4, depth=2)
    export_weights(unet, tmp_path / "recorded.pt", deblur_ramp=(0.2, 0.3))
    export_weights(unet, tmp_path / "fresh.pt")
    assert calibrate.recorded_or_calibrated_ramp(tmp_path / "recorded.pt", []) == (0.2, 0.3)  # no photos needed
    measured = calibrate.recorded_or_calibrated_ramp(tmp_path / "fresh.pt", _photos(photo_folder)[:1], device="cpu")
    assert measured[0] in calibrate.RAMP_LOWS and measured[1] == 2 * measured[0]
    assert torch_loads == ["recorded.pt", "fresh.pt"]  # each file read once, for its ramp and its network
    with pytest.raises(ValueError, match="edsr.pt: holds a 'edsr' network, expected 'unet'"):
        calibrate.recorded_or_calibrated_ramp(export_weights(build_model("edsr", num_blocks=1, channels=8), tmp_path / "edsr.pt"), [])


def test_unreadable_and_tiny_photos_are_skipped_with_a_count(photo_folder, tmp_path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    write_image(tmp_path / "tiny.png", np.zeros((20, 30, 3), np.uint8))
    photos = [tmp_path / "broken.png", *_photos(photo_folder)[:2], tmp_path / "tiny.png"]
    with pytest.warns(UserWarning, match=r"skipped 2 of 4 photos \(first: .*broken.png: not a readable image"):
        calibration = calibrate.calibrate_deblur_ramp(nn.Identity(), photos, device="cpu")
    assert calibration.photos == 2 and calibration.table[0]["sharp photos touched"] == "0 of 2"
    with pytest.raises(ValueError, match="none of the 2 photos could be used"), pytest.warns(UserWarning):
        calibrate.calibrate_deblur_ramp(nn.Identity(), [tmp_path / "broken.png", tmp_path / "tiny.png"], device="cpu")


def test_bad_input_is_refused_in_one_line_and_nothing_is_written(photo_folder, tmp_path, capsys) -> None:
    edsr = tmp_path / "edsr.pt"
    export_weights(build_model("edsr", num_blocks=1, channels=8), edsr)
    with pytest.raises(ValueError, match="holds a 'edsr' network, not a UNet"):
        calibrate.record_deblur_ramp(edsr, (0.1, 0.2), tmp_path / "out.pt")
    unet = tmp_path / "unet.pt"
    export_weights(build_model("unet", base_channels=4, depth=2), unet)
    with pytest.raises(ValueError, match="expected 0 <= low < high"):
        calibrate.record_deblur_ramp(unet, (0.2, 0.1), tmp_path / "out.pt")
    assert cli_main(["calibrate-deblur", str(unet), "--photos", str(tmp_path / "missing"), "-o", str(tmp_path / "out.pt")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "missing: folder not found" in error
    assert cli_main(["calibrate-deblur", str(unet), "--photos", str(photo_folder), "--limit", "-1", "-o", str(tmp_path / "out.pt")]) == 2
    assert "--limit: expected 0 (all photos) or more, received -1" in capsys.readouterr().err
    assert cli_main(["calibrate-deblur", str(edsr), "--photos", str(photo_folder), "-o", str(tmp_path / "out.pt")]) == 2
    assert "expected 'unet'" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()
