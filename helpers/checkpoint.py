"""Checkpoint files: atomic save, safe load (``weights_only=True``), and models rebuilt from the file alone.

A checkpoint is a dict with ``format`` (``CHECKPOINT_FORMAT``), ``arch`` (``{"name", "kwargs"}``,
see ``helpers.models``) and ``model`` (a state dict), plus whatever training state the trainer adds
(optimiser, scaler, scheduler, RNG states, history, config). Inference needs only the first three.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .io import atomic_path
from .models import build_model

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint", "load_model", "export_weights"]

CHECKPOINT_FORMAT = "image-repair-checkpoint/1"


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint (truncated, foreign, or the wrong architecture)."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (which must hold ``arch`` and ``model``) to a temp file and rename it into place."""
    missing = {"arch", "model"} - set(state)
    if missing:
        raise ValueError(f"{path}: checkpoint state lacks {sorted(missing)}")
    path = Path(path)
    with atomic_path(path) as temp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, temp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint with ``weights_only=True``; clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or not a torch file: {reason})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an image-repair checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return state


def load_model(
    path: str | os.PathLike, expected_name: str | None = None, map_location: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild the network recorded in a checkpoint and load its weights (float32, eval mode)."""
    state = load_checkpoint(path, map_location=map_location)
    arch = state["arch"]
    if expected_name is not None and arch["name"] != expected_name:
        raise CheckpointError(f"{path}: holds a {arch['name']!r} network, expected {expected_name!r}")
    model = build_model(arch["name"], **arch["kwargs"])
    try:
        model.load_state_dict({key: value.float() for key, value in state["model"].items()})
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit {arch['name']} {arch['kwargs']}: {str(error).splitlines()[0]}") from None
    return model.to(map_location).eval()


def export_weights(model: nn.Module, path: str | os.PathLike, half: bool = True, **extra: Any) -> Path:
    """Save an inference-only checkpoint (architecture + weights, float16 by default to halve the file)."""
    weights = {key: (value.half() if half and value.is_floating_point() else value) for key, value in model.state_dict().items()}
    return save_checkpoint(path, {"arch": model.arch, "model": weights, **extra})
