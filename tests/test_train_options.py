"""``train``'s refusals (issue 28): options that would train nothing or train on NaN, a run folder in use, and what a
run that diverges before its first checkpoint says it kept."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from helpers.commands import main
from helpers.safe_writes import DestinationBusyError
from helpers.models import DnCNN
from helpers.training import TrainingDiverged, fit

HOLD_RUN_FOLDER = """
import sys, time
from pathlib import Path
from helpers.safe_writes import exclusive_lock
with exclusive_lock(sys.argv[1], Path(sys.argv[1]) / ".lock"):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("flag, value, expected", [
    ("--epochs", "0", "expected a whole number of at least 1, received '0'"),
    ("--epochs", "-3", "expected a whole number of at least 1, received '-3'"),
    ("--early-stop", "-1", "expected a whole number of at least 0 (0: off), received '-1'"),
    ("--lr", "inf", "expected a finite number above 0, received 'inf'"),
    ("--grad-clip", "nan", "expected a finite number above 0, received 'nan'"),
    ("--sigma", "nan", "expected noise levels between 0 and 255, received 'nan'"),
    ("--val-sigma", "0,inf", "expected noise levels between 0 and 255, received '0,inf'"),
])
def test_options_that_would_train_nothing_or_on_nan_are_refused_in_one_line(tmp_path, capsys, flag, value, expected):
    with pytest.raises(SystemExit) as stop:
        main(["train", "dncnn", "--out", str(tmp_path / "run"), flag, value])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and error.endswith(f"argument {flag}: {expected}")
    assert not (tmp_path / "run").exists()


def test_a_second_training_into_one_run_folder_is_refused_naming_the_first(tmp_path, capsys):
    run = tmp_path / "run"
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_RUN_FOLDER, str(run)], stdout=subprocess.PIPE, text=True, env=environment)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", "dncnn", "--out", str(run), "--epochs", "1", "--device", "cpu"]) == 2
    finally:
        holder.kill()
        holder.wait()
    assert capsys.readouterr().err.strip() == (f"error: {run}: another process (PID {holder.pid}) is writing it; "
                                               "wait for it to finish or write elsewhere")
    assert sorted(path.name for path in run.iterdir()) == [".lock"]  # the holder's; nothing of the refused run


def test_fit_itself_refuses_a_run_folder_another_process_trains_into(tmp_path):
    """The notebooks call fit directly: two notebooks (or a notebook and the command line) on one Drive folder."""
    run = tmp_path / "run"
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_RUN_FOLDER, str(run)], stdout=subprocess.PIPE, text=True, env=environment)
    images = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(images, images)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DestinationBusyError, match=f"another process \\(PID {holder.pid}\\) is writing it"):
            fit(DnCNN(depth=3, channels=4), data, data, checkpoint_dir=run, device="cpu", epochs=1, batch_size=4)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(path.name for path in run.iterdir()) == [".lock"]
    fit(DnCNN(depth=3, channels=4), data, data, checkpoint_dir=run, device="cpu", epochs=1, batch_size=4)  # free again
    assert sorted(path.name for path in run.iterdir()) == ["best.pt", "last.pt"]  # and the lock is gone with the run


class NanLoss(nn.Module):
    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (prediction - target).abs().mean() * math.nan


def test_a_run_that_diverges_before_its_first_checkpoint_does_not_claim_one(tmp_path):
    images = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(images, images)
    with pytest.raises(TrainingDiverged) as error:
        fit(DnCNN(depth=3, channels=4), data, data, NanLoss(), checkpoint_dir=tmp_path / "run", device="cpu",
            epochs=1, batch_size=4, nan_patience=1, early_stop_patience=None)
    assert f"no checkpoint written yet in {tmp_path / 'run'}" in str(error.value)
    assert "kept" not in str(error.value) and not (tmp_path / "run" / "last.pt").exists()
