"""bench.trends (learning-curve trends) and bench.curves, the script that extrapolates training runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from bench import curves as curves_script
from helpers.checkpoint import save_checkpoint
from bench.trends import psnr_trend
from helpers.models import build_model

STEPS_PER_EPOCH = 50


def _history(values: list[float]) -> dict:
    return {"epoch": list(range(1, len(values) + 1)), "val_psnr": values, "seconds": [100.0] * len(values)}


def test_the_trend_is_the_least_squares_line_in_log_steps() -> None:
    rng = np.random.default_rng(0)
    steps = STEPS_PER_EPOCH * np.arange(1, 21)
    values = 30.0 + 0.25 * np.log10(steps) + rng.normal(0, 0.02, steps.size)
    trend = psnr_trend(_history(values.tolist()), STEPS_PER_EPOCH)
    slope, intercept = np.polyfit(np.log10(steps), values, 1)  # the independent reference
    assert trend.slope == pytest.approx(slope, abs=1e-9) and trend.intercept == pytest.approx(intercept, abs=1e-9)
    low, high = trend.slope_interval
    assert low < 0.25 < high and high - low < 0.1  # 20 points of small noise pin the slope down
    assert trend.at(10 * steps[-1]) == pytest.approx(trend.at(steps[-1]) + slope)
    assert trend.steps_to(trend.at(steps[-1]) + 2 * slope) == pytest.approx(100 * steps[-1])
    assert trend.steps_to(0.0) == steps[-1]  # already above: no more steps


def test_noisy_or_falling_curves_never_reach_a_higher_psnr() -> None:
    trend = psnr_trend(_history([31.0, 30.9, 30.8, 30.7]), STEPS_PER_EPOCH)
    assert trend.slope < 0 and math.isinf(trend.steps_to(32.0))
    wide = psnr_trend(_history([30.8, 31.2, 30.6, 31.1, 30.9]), STEPS_PER_EPOCH)
    assert wide.slope_interval[0] < 0 < wide.slope_interval[1]  # noise: the interval says it could go either way


def test_skipped_epochs_are_left_out_and_short_histories_are_refused() -> None:
    values = [20.0, 30.0, 30.1, 30.2, 30.3]
    assert psnr_trend(_history(values), STEPS_PER_EPOCH, skip_epochs=1).steps[0] == 2 * STEPS_PER_EPOCH
    with pytest.raises(ValueError, match="2 epochs of 'val_psnr' after skipping 3; need 3 or more"):
        psnr_trend(_history(values), STEPS_PER_EPOCH, skip_epochs=3)
    with pytest.raises(ValueError, match="no 'cascade_psnr'"):
        psnr_trend(_history(values), STEPS_PER_EPOCH, key="cascade_psnr")
    with pytest.raises(ValueError, match="steps_per_epoch must be positive"):
        psnr_trend(_history(values), 0)


def test_the_script_reports_each_run_and_the_steps_a_gain_needs(tmp_path, capsys: pytest.CaptureFixture) -> None:
    model = build_model("dncnn", depth=3, channels=8)
    values = [30.0 + 0.2 * math.log10(STEPS_PER_EPOCH * epoch) for epoch in range(1, 9)]
    for name in ("rising", "flat"):
        history = _history(values if name == "rising" else [30.5] * 8)
        save_checkpoint(tmp_path / name / "last.pt", {"arch": model.arch, "model": model.state_dict(), "history": history,
                                                       "epoch": 8, "global_step": 8 * STEPS_PER_EPOCH})
    out = tmp_path / "report"
    assert curves_script.main([str(tmp_path / "rising"), str(tmp_path / "flat"), "--needed", "rising=0.2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rising = next(line for line in printed.splitlines() if line.startswith("| rising ") and "+0.200" in line)
    assert "| 400 " in rising and "| 2.00 " in rising  # steps and seconds per step (100 s per 50-step epoch)
    needed = next(line for line in printed.splitlines() if line.startswith("| rising ") and "+0.20 " in line)
    cells = [cell.strip() for cell in needed.split("|")]
    assert cells[3:5] == ["4e+03", "2"]  # 10x the steps: 3,600 more steps at 2 s each, 2 hours
    assert (out / "report.md").read_text().startswith("# Learning-curve trends (val_psnr)")
    with Image.open(out / "curves.png") as figure:
        assert figure.size[0] > 0
    with pytest.raises(SystemExit):
        curves_script.main([str(tmp_path / "flat"), "--needed", "rising=0.2", "--out", str(out)])
    assert "--needed names runs not given: rising" in capsys.readouterr().err
