"""What decides a training run (``TrainConfig``) and the rules for resuming one from its ``last.pt``.

The config is stored (``asdict``) in every checkpoint; ``check_resumable`` refuses a checkpoint that
cannot continue the run a config describes: another architecture, damaged fields, or run-defining
options that changed (only ``RESUMABLE_CHANGES`` may; data paths count by their last part, so the
same dataset on a new Colab VM continues the run).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import torch

from ..checkpoint import CheckpointError
from ..models import build_model

__all__ = ["TrainConfig", "config_from", "check_resumable", "same_architecture", "describes", "RESUMABLE_CHANGES", "TRAINING_STATE_TYPES"]


@dataclass
class TrainConfig:
    """Everything that decides a training run; stored (``asdict``) in every checkpoint.

    ``amp=None`` means float16 autocast with a GradScaler on CUDA and float32 on the CPU;
    ``amp=True`` on the CPU uses bfloat16 autocast. ``steps_per_epoch=None`` is one pass over the
    training data. ``val_batch_size=None`` validates in batches of ``batch_size`` when the validation
    items share one size (fixed crops), one by one otherwise (whole frames of several sizes). ``early_stop_patience=None`` never stops early. ``loss`` is a
    ``helpers.losses.build_loss`` config; ``arch`` is the network's (``fit`` fills it in from the model, and
    refuses one that does not describe it); ``data`` is the data recipe ``helpers.recipes.build_datasets``
    builds the datasets from. ``deterministic`` makes CUDA runs reproducible
    (``reproducibility.deterministic_algorithms``), at some speed.
    """

    epochs: int = 10
    lr: float = 1e-4
    batch_size: int = 16
    steps_per_epoch: int | None = None
    val_batch_size: int | None = None
    num_workers: int = 0
    amp: bool | None = None
    amp_dtype: str | None = None
    grad_clip: float | None = None
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    min_lr: float = 1e-6
    early_stop_patience: int | None = 10
    early_stop_min_delta: float = 0.0
    nan_patience: int = 5
    seed: int = 0
    channels_last: bool = False
    deterministic: bool = False
    loss: dict = field(default_factory=dict)
    arch: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)



def config_from(config: TrainConfig | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> TrainConfig:
    values = asdict(config) if isinstance(config, TrainConfig) else dict(config or {})
    values.update(overrides)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"training config: unknown options {unknown}; expected some of {sorted(known)}")
    return TrainConfig(**values)



# What ``resume`` reads, with its type: a damaged last.pt fails in one line instead of a traceback.
TRAINING_STATE_TYPES = {
    "optimizer": dict, "scheduler": dict, "scaler": dict, "early_stopping": dict, "rng": dict, "history": dict,
    "config": dict, "epoch": int, "global_step": int,
}
# TrainConfig fields a resumed run may change (its later checkpoints record the new values); all others define the run.
RESUMABLE_CHANGES = ("epochs", "early_stop_patience", "num_workers", "deterministic", "val_batch_size")  # none changes what the run learns


def check_resumable(path: Path, state: Mapping[str, Any], config: TrainConfig, arch: Mapping[str, Any] | None) -> None:
    """Raise CheckpointError unless ``state`` (read from ``path``) can continue a run of ``config`` and ``arch``.

    Refused: files without training state, another architecture (``arch=None``: not checked), damaged
    fields, and run-defining options that differ from the run's (only ``RESUMABLE_CHANGES`` may).
    """
    missing = set(TRAINING_STATE_TYPES) - set(state)
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint (lacks {sorted(missing)}); cannot resume from it")
    if arch is not None and not same_architecture(state["arch"], arch):
        raise CheckpointError(f"{path}: holds a {state['arch']} network, but the model to train is {arch}")
    _check_training_state(path, state)
    changes = _changed_run_options(state["config"], asdict(config))
    if changes:
        raise CheckpointError(
            f"{path}: --resume with options that differ from the run's: {'; '.join(changes)}. Resume with the run's own "
            f"options (only {', '.join(RESUMABLE_CHANGES)} may change), or start a new run in another --out folder "
            f"(--init {path} starts it from these weights)"
        )


def same_architecture(stored: Mapping[str, Any], arch: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's recorded architecture builds ``arch``: a run recorded before a constructor argument
    existed lacks it, and stands for its default (built on the meta device: no memory spent)."""
    if stored == arch:
        return True
    try:
        with torch.device("meta"):
            return build_model(stored["name"], **stored["kwargs"]).arch == arch
    except (KeyError, TypeError, ValueError):
        return False


def describes(configured: Mapping[str, Any], arch: Mapping[str, Any]) -> bool:
    """Whether a config's ``arch`` describes the network ``arch`` records: either its whole record
    (``{"name", "kwargs"}``, as checkpoints store it) or only its constructor arguments (as notebooks write it)."""
    if "name" in configured and "kwargs" in configured:
        return same_architecture(configured, arch)
    return same_architecture({"name": arch.get("name"), "kwargs": dict(configured)}, arch)


def _check_training_state(path: Path, state: Mapping[str, Any]) -> None:
    """Raise CheckpointError naming the first field of a training checkpoint that ``resume`` could not use."""
    problems = [
        f"{key} is a {type(state[key]).__name__}, expected a {kind.__name__}"
        for key, kind in TRAINING_STATE_TYPES.items()
        if not isinstance(state[key], kind) or isinstance(state[key], bool)
    ]
    if not problems:
        early_stopping, history = state["early_stopping"], state["history"]
        if not (isinstance(early_stopping.get("best_val_loss"), (int, float)) and isinstance(early_stopping.get("bad_epochs"), int)):
            problems.append(f"early_stopping lacks best_val_loss or bad_epochs (holds {sorted(early_stopping)})")
        if not all(isinstance(values, list) for values in history.values()):
            problems.append("history holds values that are not per-epoch lists")
        if missing := {"python", "numpy", "torch"} - set(state["rng"]):
            problems.append(f"rng lacks {sorted(missing)}")
        if state["epoch"] < 0 or state["global_step"] < 0:
            problems.append(f"epoch {state['epoch']} or global_step {state['global_step']} is negative")
    if problems:
        raise CheckpointError(
            f"{path}: damaged training state ({problems[0]}); cannot resume from it: start a new run in another "
            f"--out folder (--init {path} starts it from its weights)"
        )


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: a config read back from a checkpoint compares equal to the one it was."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _without_folders(value: Any) -> Any:
    """'gopro:/content/datasets/GOPRO_Large' -> 'gopro:GOPRO_Large': each path in a data entry by its last part."""
    if not isinstance(value, str):
        return _plain(value)
    return "".join(Path(part).name if "/" in part or "\\" in part else part for part in re.split(r"([:,=])", value))


def _changed_run_options(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """'name stored -> current' for every run-defining option that differs (``data`` compared entry by entry).

    ``arch`` is left out (the network itself is compared), and so is ``data.init``: ``--resume`` takes
    precedence over ``--init``, so where the first weights came from does not change the run being resumed.
    Options only one side records are left out too: a run saved by older code lacks options added since.
    Data paths count by their last part: the same dataset found elsewhere (a new Colab VM's ``/content``,
    a moved folder) continues the run; another dataset does not.
    """
    changes = []
    for key in sorted(set(stored) & set(current)):
        old, new = stored[key], current[key]
        if key in RESUMABLE_CHANGES or key == "arch":
            continue
        if key == "data" and isinstance(old, dict) and isinstance(new, dict):
            changes += [
                f"data.{name} {old[name]} -> {new[name]}"
                for name in sorted(set(old) & set(new))
                if name != "init" and _without_folders(old[name]) != _without_folders(new[name])
            ]
        elif _plain(old) != _plain(new):
            changes.append(f"{key} {old} -> {new}")
    return changes


