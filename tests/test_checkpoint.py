"""Checkpoint files: round trip, atomic writes, weights_only loading and clear errors."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
import torch

from helpers.checkpoint import CheckpointError, export_weights, load_checkpoint, load_model, save_checkpoint
from helpers.models import EDSR, DnCNN


def test_exported_weights_rebuild_the_same_network_from_the_file_alone(tmp_path) -> None:
    model = EDSR(scale=3, num_blocks=2, channels=8).eval()
    path = export_weights(model, tmp_path / "edsr.pt", half=False)
    rebuilt = load_model(path, expected_name="edsr")
    images = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(images), model(images))
    assert rebuilt.scale == 3 and not rebuilt.training


def test_half_precision_export_is_smaller_and_close(tmp_path) -> None:
    model = DnCNN(depth=5, channels=16).eval()
    full, half = export_weights(model, tmp_path / "full.pt", half=False), export_weights(model, tmp_path / "half.pt")
    assert half.stat().st_size < 0.7 * full.stat().st_size
    images = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        assert (load_model(half)(images) - model(images)).abs().max() < 2e-3


def test_bad_checkpoints_raise_errors_naming_the_file(tmp_path) -> None:
    good = export_weights(DnCNN(depth=3, channels=4), tmp_path / "dncnn.pt")
    with pytest.raises(CheckpointError, match="dncnn.pt: holds a 'dncnn' network, expected 'edsr'"):
        load_model(good, expected_name="edsr")
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "truncated.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="text.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="foreign.pt: not an image-repair checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(FileNotFoundError, match="absent.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")
    state = load_checkpoint(good)
    state["arch"]["kwargs"]["channels"] = 8
    save_checkpoint(tmp_path / "mismatch.pt", {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(CheckpointError, match="mismatch.pt: weights do not fit dncnn"):
        load_model(tmp_path / "mismatch.pt")


def test_checkpoints_refuse_arbitrary_pickles(tmp_path) -> None:
    torch.save({"format": "image-repair-checkpoint/1", "arch": PurePosixPath("/etc/passwd")}, tmp_path / "pickle.pt")
    with pytest.raises(CheckpointError, match="pickle.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "pickle.pt")


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    path = export_weights(DnCNN(depth=3, channels=4), tmp_path / "last.pt")
    before = path.read_bytes()

    def crash(obj, file, *args, **kwargs):
        with open(file, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        export_weights(DnCNN(depth=3, channels=4), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
