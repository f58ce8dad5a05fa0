"""bench.gpu_check, the script that runs every GPU path once: it must refuse cleanly without CUDA."""

from __future__ import annotations

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
