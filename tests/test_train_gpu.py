"""weights/train_gpu.sh end to end at toy size on the CPU (TINY=1): subset, three training runs, export, calibration, report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from helpers.checkpoint import load_weights
from helpers.io import read_image
from tests.test_data import write_photos

SCRIPT = Path(__file__).resolve().parent.parent / "weights" / "train_gpu.sh"


def shared_data(root: Path) -> tuple[Path, Path]:
    """A tiny stand-in for ../shared/data: train/{BSDS432,Urban100,kernels/levin09.npz} and eval/{McMaster,CBSD68}."""
    train, evaluation = root / "train", root / "eval"
    write_photos(train / "BSDS432", 6)
    write_photos(train / "Urban100", 4, size=(160, 120))
    (train / "kernels").mkdir()
    np.savez(train / "kernels" / "levin09.npz", a=np.eye(5, dtype=np.float32), b=np.ones((3, 7), np.float32))
    write_photos(evaluation / "McMaster", 2, size=(96, 96))
    write_photos(evaluation / "CBSD68", 5, size=(64, 64))
    return train, evaluation


def test_the_gpu_recipe_runs_end_to_end_at_toy_size(tmp_path: Path) -> None:
    train, evaluation = shared_data(tmp_path / "shared")
    env = {**os.environ, "TINY": "1", "PYTHON": sys.executable, "TRAIN_DATA": str(train), "EVAL_DATA": str(evaluation),
           "GPU_SUBSET": str(tmp_path / "subset"), "GPU_RUNS": str(tmp_path / "runs"), "OUT": str(tmp_path / "out"),
           "IMAGE_REPAIR_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    prepared = subprocess.run(["bash", str(SCRIPT), "prepare"], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert prepared.returncode == 0, prepared.stderr
    subset = tmp_path / "subset"
    assert len(list((subset / "train" / "BSDS432").iterdir())) == 6 and (subset / "train" / "kernels" / "levin09.npz").is_file()
    assert len(list((subset / "eval" / "CBSD68").iterdir())) == 2  # every 4th of 5
    # the evaluation images are re-encoded losslessly: the same pixels
    assert np.array_equal(read_image(subset / "eval" / "McMaster" / "photo001.webp"), read_image(evaluation / "McMaster" / "photo001.png"))

    ran = subprocess.run(["bash", str(SCRIPT), "run"], check=False, env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(path.name for path in out.iterdir()) == ["dncnn.pt", "edsr.pt", "logs.txt", "report.md", "unet.pt"]
    unet = load_weights(out / "unet.pt", expected_name="unet")
    assert unet.model.block == "nafnet" and unet.deblur_ramp is not None
    assert "weights/train_gpu.sh" in unet.extras["source"]
    for name in ("dncnn", "edsr"):
        assert load_weights(out / f"{name}.pt", expected_name=name).extras["history"]["epoch"] == [1]
    report = (out / "report.md").read_text()
    for heading in ("## Training", "## The new weights (out/)", "## The bundled v8 weights", "DnCNN + UNet cost on clean photos"):
        assert heading in report
    assert report.count("Cascade, McMaster with synthetic GOPRO-style blur") == 2
    assert "epoch 1/1: train loss" in (out / "logs.txt").read_text()


def test_the_run_refuses_to_start_without_a_prepared_subset(tmp_path: Path) -> None:
    env = {**os.environ, "TINY": "1", "PYTHON": sys.executable, "GPU_SUBSET": str(tmp_path / "missing")}
    ran = subprocess.run(["bash", str(SCRIPT), "run"], check=False, env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 2 and "run 'bash weights/train_gpu.sh prepare' first" in ran.stderr
