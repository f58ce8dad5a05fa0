"""Checkpoint files: atomic save, safe load (``weights_only=True``), and models rebuilt from the file alone.

A checkpoint is a dict with ``format`` (``CHECKPOINT_FORMAT``), ``arch`` (``{"name", "kwargs"}``,
see ``helpers.models``) and ``model`` (a state dict), plus whatever training state the trainer adds
(optimiser, scaler, scheduler, RNG states, history, config). Inference needs the first three and what
a weights file records beside them: ``load_weights`` returns the network with those records (``LoadedWeights``)
from one read of the file.

A file is data, not trusted code: its structure is checked on load, its architecture arguments are
bounded and its weights' shapes compared with those of the network they describe (built on the
``meta`` device, which allocates nothing) before the real network is built, so a hostile
``channels=10**9`` fails in one line instead of allocating until memory runs out.
"""

from __future__ import annotations

import inspect
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .gates import checked_ramp
from .io import atomic_path
from .models import MODELS, UnsharpMask, build_model

__all__ = [
    "CHECKPOINT_FORMAT", "MAX_ARCH_VALUE", "CheckpointError", "LoadedWeights", "save_checkpoint", "load_checkpoint",
    "load_weights", "load_model", "build_checked", "export_weights", "average_models",
]

CHECKPOINT_FORMAT = "image-repair-checkpoint/1"
# Bound on every integer architecture argument (depth, channels, blocks, scale), checked before building.
MAX_ARCH_VALUE = 4096


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint (truncated, foreign, or the wrong architecture)."""


@dataclass(frozen=True)
class LoadedWeights:
    """A network rebuilt from a checkpoint file and what the file records beside it, from one read of the file."""

    path: Path
    model: nn.Module  # float32, eval mode; ``model.arch`` names the network and its arguments
    extras: Mapping[str, Any]  # read-only: all the file holds besides format, arch and model (source, history, ...)
    deblur_ramp: tuple[float, float] | None  # the deblur gate's ramp measured for this UNet (helpers.calibrate), checked
    unsharp: UnsharpMask | None  # the unsharp mask a cascade fine-tuning trained with (helpers.cascade)


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
        if "Weights only load failed" in str(error):
            raise CheckpointError(
                f"{path}: not a readable checkpoint: it holds Python objects that weights_only loading refuses "
                "(a pickle can run code); load only files you made or trust"
            ) from None
        reason = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or not a torch file: {reason})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an image-repair checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    _check_structure(path, state)
    return state


def _check_structure(path: Path, state: dict[str, Any]) -> None:
    """``arch`` is {'name': str, 'kwargs': dict} and ``model`` maps names to tensors, else CheckpointError."""
    for key in ("arch", "model"):
        if key not in state:
            raise CheckpointError(f"{path}: lacks {key!r}; not a network checkpoint (write one with helpers.checkpoint)")
    arch, weights = state["arch"], state["model"]
    if not (isinstance(arch, dict) and isinstance(arch.get("name"), str) and isinstance(arch.get("kwargs"), dict)):
        raise CheckpointError(f"{path}: 'arch' must be {{'name': str, 'kwargs': dict}}, found {str(arch)[:80]!r}")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: 'model' must be a state dict (names -> tensors), found a {type(weights).__name__}")
    for key, value in weights.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: weight {key} is a {type(value).__name__}, not a tensor; the file is damaged or foreign")


def _check_arch_value(path: Path, name: str, key: str, value: Any) -> None:
    """Architecture arguments are small plain values: bounded integers, finite floats, short strings and lists."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int) and 0 <= value <= MAX_ARCH_VALUE:
        return
    if isinstance(value, float) and math.isfinite(value):
        return
    if isinstance(value, str) and len(value) <= 64:
        return
    if isinstance(value, (list, tuple)) and len(value) <= 16:
        for item in value:
            _check_arch_value(path, name, key, item)
        return
    bound = f"outside 0..{MAX_ARCH_VALUE}" if isinstance(value, int) else "not a bounded number, short string or list"
    raise CheckpointError(
        f"{path}: {name} argument {key}={str(value)[:40] if not isinstance(value, str) else repr(value[:40])} is {bound}; "
        "refused before building (a damaged or hostile file)"
    )


def _same_kind(value: Any, default: Any) -> bool:
    """Whether ``value`` has the type of a constructor default (an int may stand for a float); None defaults take any."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) == isinstance(default, bool) or default is None
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def _state_shapes(weights: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in weights.items()}


def build_checked(path: str | os.PathLike, arch: dict[str, Any], weights: dict[str, torch.Tensor]) -> nn.Module:
    """Build the network ``arch`` describes only once its arguments are bounded and ``weights`` fit it.

    The shapes are compared on a ``meta``-device build, which allocates no memory; the real (CPU)
    network is returned with ``weights`` not yet loaded. Raises CheckpointError naming ``path``.
    """
    path = Path(path)
    name, kwargs = arch["name"], arch["kwargs"]
    network = MODELS.get(name.lower())
    if network is None:
        raise CheckpointError(f"{path}: unknown network {name!r} (expected one of {', '.join(MODELS)})")
    accepted = [parameter for parameter in inspect.signature(network).parameters if parameter != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise CheckpointError(
            f"{path}: unknown argument {unknown[0]!r} for {name} (it takes {', '.join(accepted)}); "
            "written by other code? export the weights again with helpers.checkpoint.export_weights"
        )
    for key, value in kwargs.items():
        _check_arch_value(path, name, key, value)
        default = inspect.signature(network).parameters[key].default
        if not _same_kind(value, default):
            raise CheckpointError(
                f"{path}: {name} argument {key}={value!r} is a {type(value).__name__}, expected a {type(default).__name__} "
                "like its default; refused before building (a damaged or hostile file)"
            )
    try:
        with torch.device("meta"):
            skeleton = build_model(name, **kwargs)
    except Exception as error:  # the constructor's own validation (e.g. DnCNN depth < 3) or impossible sizes
        raise CheckpointError(f"{path}: cannot build {name} {kwargs}: {str(error).splitlines()[0]}") from None
    expected, found = _state_shapes(skeleton.state_dict()), _state_shapes(weights)
    if expected != found:
        missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        differing = [key for key in expected if key in found and expected[key] != found[key]]
        detail = (
            f"missing {missing[0]} (and {len(missing) - 1} more)" if missing
            else f"unexpected {unexpected[0]} (and {len(unexpected) - 1} more)" if unexpected
            else f"{differing[0]} is {list(found[differing[0]])}, the network needs {list(expected[differing[0]])}"
        )
        raise CheckpointError(f"{path}: weights do not fit {name} {kwargs}: {detail}")
    return build_model(name, **kwargs)


def load_weights(
    path: str | os.PathLike, expected_name: str | None = None, map_location: str | torch.device = "cpu"
) -> LoadedWeights:
    """Rebuild the network recorded in a checkpoint, load its weights (float32, eval mode) and keep the file's records.

    The records the Restorer uses are checked here, so a bad one is refused naming the file: ``deblur_ramp`` and
    the unsharp mask of a cascade record (``cascade["unsharp"]``: sigma, amount, threshold).
    """
    path = Path(path)
    state = load_checkpoint(path, map_location=map_location)
    arch = state["arch"]
    if expected_name is not None and arch["name"] != expected_name:
        raise CheckpointError(f"{path}: holds a {arch['name']!r} network, expected {expected_name!r}")
    model = build_checked(path, arch, state["model"])
    try:
        model.load_state_dict({key: value.float() for key, value in state["model"].items()})
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit {arch['name']} {arch['kwargs']}: {str(error).splitlines()[0]}") from None
    extras = {key: value for key, value in state.items() if key not in ("format", "arch", "model")}
    ramp, cascade = extras.get("deblur_ramp"), extras.get("cascade")
    settings = cascade.get("unsharp") if isinstance(cascade, dict) else None
    try:
        deblur_ramp = None if ramp is None else checked_ramp(ramp, f"{path}: deblur_ramp")
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    try:
        unsharp = None if settings is None else UnsharpMask(**settings)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: cascade unsharp settings {str(settings)[:80]}: {str(error).splitlines()[0]}") from None
    return LoadedWeights(path, model.to(map_location).eval(), MappingProxyType(extras), deblur_ramp, unsharp)


def load_model(
    path: str | os.PathLike, expected_name: str | None = None, map_location: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild the network recorded in a checkpoint and load its weights (float32, eval mode): ``load_weights``'s model."""
    return load_weights(path, expected_name, map_location).model


def export_weights(model: nn.Module, path: str | os.PathLike, half: bool = True, **extra: Any) -> Path:
    """Save an inference-only checkpoint (architecture + weights, float16 by default to halve the file)."""
    weights = {key: (value.half() if half and value.is_floating_point() else value) for key, value in model.state_dict().items()}
    return save_checkpoint(path, {"arch": model.arch, "model": weights, **extra})


def average_models(paths: Sequence[str | os.PathLike], expected_name: str | None = None) -> nn.Module:
    """The uniform average of the weights in ``paths`` (a "model soup"): networks of one architecture fine-tuned
    from one starting point average into one that often does better than each, trading their strengths.

    The averaging is ``torch.optim.swa_utils.AveragedModel``'s (buffers included); another architecture is refused.
    """
    if not paths:
        raise ValueError("average_models: no checkpoints given")
    models = [load_model(path, expected_name=expected_name) for path in paths]
    for path, model in zip(paths[1:], models[1:]):
        if model.arch != models[0].arch:
            raise CheckpointError(f"{path}: holds {model.arch}, not {models[0].arch} like {paths[0]}: cannot be averaged")
    averaged = AveragedModel(models[0], use_buffers=True)
    for model in models:
        averaged.update_parameters(model)
    return averaged.module.eval()
