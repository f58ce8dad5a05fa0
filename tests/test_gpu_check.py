"""bench.gpu_check, the script that runs every GPU path once: it refuses cleanly without CUDA, and every check runs
(and passes) at small sizes on the CPU, so that a GPU run reports the GPU, not a broken script."""

from __future__ import annotations

import json

import pytest
import torch

from bench import gpu_check


def test_without_cuda_it_says_what_to_do_and_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "CUDA is not available" in captured.err and "--device cpu --small" in captured.err
    assert not any(tmp_path.iterdir())  # nothing half-written


@pytest.mark.usefixtures("one_torch_thread")
def test_every_check_runs_and_passes_at_small_sizes_on_the_cpu(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path) -> None:
    """No false failure on the gate paths: DnCNN runs on the noisy frames and is skipped on the clean one, the tiled
    frame is noisy, every training and resume check completes, and the kill-and-resume runs are bit-exact."""
    monkeypatch.setenv("IMAGE_REPAIR_CACHE", str(tmp_path / "elsewhere"))  # the check points it into --out; restored after
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # the check sets it too
    assert gpu_check.main(["--device", "cpu", "--small", "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    checks = report["checks"]
    assert len(checks) == 13 and all(result["ok"] for result in checks.values())
    inference = checks["inference: clean, noisy, blurred; overflow redo"]
    assert inference["dncnn_ran"] and inference["dncnn_skipped_on_clean"] and inference["overflow"]["warned"]
    assert inference["shares (CPU float32)"]["denoise"]["clean"] == 0 and inference["shares (CPU float32)"]["denoise"]["noisy"] == 1
    assert checks["inference: large noisy frame in tiles"]["dncnn_windows"] > 1
    for stage in ("unet", "cascade"):
        resumed = checks[f"train {stage}: killed and resumed, --deterministic, photos:"]
        assert resumed["killed_mid_run"] and resumed["max_weight_difference"] == 0
    steps = checks["train unet: steps at the notebook's size"]
    assert steps["syncs_by_location"] and "helpers/training/trainer.py" in next(iter(steps["syncs_by_location"]))
    table = capsys.readouterr().out.split("\n| check")[1]
    assert table.count("| ok ") == 13 and "13/13 checks passed" in table
