"""bench.race_curves (a race's table and curves from run histories) and bench.real_frames (the real-frame JPEG grid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import race_curves, real_frames
from helpers.checkpoint import export_weights, save_checkpoint
from helpers.io import read_image, write_image
from helpers.models import EDSR, DnCNN, UNet


def write_run(folder: Path, model, gains: list[float], seconds: list[float], lr: float) -> Path:
    """A last.pt as the trainer writes it: 50 steps per epoch, the input's validation PSNR 25 dB."""
    history = {"epoch": list(range(1, len(gains) + 1)), "val_psnr": [25.0 + gain for gain in gains],
               "input_psnr": [25.0] * len(gains), "seconds": seconds, "seconds_per_step": [s / 60 for s in seconds]}
    save_checkpoint(folder / "last.pt", {"arch": model.arch, "model": model.state_dict(), "history": history,
                                         "epoch": len(gains), "global_step": 50 * len(gains), "config": {"lr": lr}})
    return folder


def test_the_race_table_compares_runs_at_equal_time_and_equal_steps(tmp_path: Path) -> None:
    fast = write_run(tmp_path / "fast", UNet(base_channels=4, depth=2), [0.1, 0.2, 0.3, 0.4], [60.0] * 4, 1e-4)
    slow = write_run(tmp_path / "slow", UNet(block="nafnet", width=4, enc_blocks=[1, 1], dec_blocks=[1, 1]),
                     [0.05, 0.5], [120.0, 120.0], 5e-4)
    assert race_curves.main([str(fast), str(slow), "--out", str(tmp_path / "out")]) == 0
    rows, minutes, steps = race_curves.race_table([race_curves.load_run(fast), race_curves.load_run(slow)])
    assert (minutes, steps) == (pytest.approx(4.0), 100)  # both ran 4 minutes; the slow one 100 steps
    by_name = {row["run"]: row for row in rows}
    assert by_name["fast"]["gain at 100 steps"] == "+0.200" and by_name["slow"]["gain at 100 steps"] == "+0.500"
    assert by_name["fast"]["gain at 4.0 min"] == "+0.400" and by_name["slow"]["best gain (dB) [step]"] == "+0.500 [100]"
    assert by_name["fast"]["network"] == "plain, 4 ch, depth 2" and by_name["slow"]["network"].startswith("nafnet, width 4")
    assert "| fast" in (tmp_path / "out" / "race.md").read_text()
    assert read_image(tmp_path / "out" / "race.png").shape[2] == 3
    run = race_curves.load_run(slow)
    assert np.isnan(run.gain_at(run.minutes, 1.0))  # no epoch had finished after one minute
    assert np.isnan(run.gain_at(run.steps, 150)) and run.gain_at(run.steps, 99) == pytest.approx(0.05)  # it ran 100 steps


def test_the_real_frame_grid_sets_our_output_beside_the_published_one(tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    for name, network in {"dncnn": DnCNN(depth=3, channels=4), "unet": UNet(base_channels=4, depth=2),
                          "edsr": EDSR(num_blocks=1, channels=4)}.items():
        export_weights(network, weights / f"{name}.pt")
    rng = np.random.default_rng(0)
    frames = {"seq_id-8_frame-1_Input.png": rng.integers(0, 256, (208, 320, 3), np.uint8),
              "seq_id-9_frame-2_Input.png": rng.integers(0, 256, (208, 320, 3), np.uint8)}
    for name, frame in frames.items():
        write_image(tmp_path / "eval" / "gopro_real_blurry" / name, frame)
        write_image(tmp_path / "eval" / "gopro_real_blurry_deepdeblur_output" / name, np.full_like(frame, 200))
    out = tmp_path / "grid.jpg"
    assert real_frames.main(["--weights", str(weights), "--root", str(tmp_path / "eval"), "--out", str(out)]) == 0
    grid = read_image(out)
    row = real_frames.CROP_HEIGHT + real_frames.LABEL_HEIGHT
    assert grid.shape == (2 * row, 3 * real_frames.CROP_WIDTH, 3)
    seam = 16  # JPEG's blocks bleed across the seams between tiles and labels
    published = grid[real_frames.LABEL_HEIGHT + seam : row - seam, 2 * real_frames.CROP_WIDTH + seam :].astype(int)
    assert np.abs(published - 200).max() <= 3  # the DeepDeblur column is the published frame (JPEG rounding aside)
    ours = grid[real_frames.LABEL_HEIGHT : row, real_frames.CROP_WIDTH : 2 * real_frames.CROP_WIDTH].astype(int)
    assert ours.std() > 20  # the restored noise frame, not a blank tile


def test_a_reference_network_is_validated_as_the_runs_validate_themselves(tmp_path: Path) -> None:
    """The run's own last epoch, given as the reference, scores what its history recorded for that epoch."""
    from helpers.checkpoint import load_checkpoint
    from helpers.commands import main
    from tests.test_data import write_photos

    folder = write_photos(tmp_path / "photos", 6)
    run = tmp_path / "run"
    assert main(["train", "unet", "--arch", "block=nafnet,width=4,enc_blocks=1-1,dec_blocks=1-1", "--data", f"photos:{folder}",
                 "--out", str(run), "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "2", "--patch", "32",
                 "--val-patch", "24", "--val-items", "3", "--cascade-weights", "none", "--lr", "1e-2"]) == 0
    history = load_checkpoint(run / "last.pt")["history"]
    recorded = history["val_psnr"][-1] - history["input_psnr"][-1]
    assert recorded != 0
    assert race_curves.reference_gain(run / "last.pt", run) == pytest.approx(recorded, abs=1e-6)
    assert race_curves.main([str(run), "--reference", str(run / "last.pt"), "--out", str(tmp_path / "out")]) == 0
    assert f"reference: {run / 'last.pt'}" in (tmp_path / "out" / "race.md").read_text()
