"""Checkpoint files: atomic save, safe load (``weights_only=True``), and models rebuilt from the file alone.

A checkpoint is a dict with ``format`` (``CHECKPOINT_FORMAT``), ``arch`` (``{"name", "kwargs"}``,
see ``helpers.models``) and ``model`` (a state dict), plus whatever training state the trainer adds
(optimiser, scaler, scheduler, RNG states, history, config). Inference needs the first three and what
a weights file records beside them: ``load_weights`` returns the network with those records (``LoadedWeights``)
from one read of the file.

A file is data, not trusted code: its structure is checked on load, its architecture arguments are
bounded and its weights' shapes compared with those of the network they describe (built on the
``meta`` device, which allocates nothing) before the real network is built, so a hostile
``channels=10**9`` fails in one line instead of allocating until memory runs out. Before any tensor is
read (``read_torch_file``), the zip directory's inflated sizes are bounded by what the declared network
needs (a 17 MB file deflating to 3 GiB is refused, not inflated) and every record's CRC-32 is checked (a
flipped bit is refused, not loaded as a changed weight). A save that fails for want of space says so.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .gates import checked_ramp
from .safe_writes import atomic_path
from .models import MODELS, UnsharpMask, build_model, unknown_arguments

__all__ = [
    "CHECKPOINT_FORMAT", "MAX_ARCH_VALUE", "MAX_PARAMETERS", "CheckpointError", "LoadedWeights", "save_checkpoint",
    "read_torch_file", "load_checkpoint", "load_weights", "load_model", "build_checked", "check_fit", "export_weights", "average_models",
]

CHECKPOINT_FORMAT = "image-repair-checkpoint/1"
# Bound on every integer architecture argument (depth, channels, blocks, scale), checked before building.
MAX_ARCH_VALUE = 4096
# Bound on a network's parameter count (512 MiB of float32): the largest bundled or published one (EDSR large) has 43 M.
MAX_PARAMETERS = 2**27
# Inflated bytes of a torch file's records other than tensor data (its pickled structure: names, config, history).
MAX_STRUCTURE_BYTES = 64 * 2**20
# A checkpoint's tensors hold at most this many times its weights' float32 bytes (weights, Adam's two moments, room
# to spare), plus the allowance (RNG states, step counters): the bound on what a file may inflate to.
STATE_PER_WEIGHT_BYTES = 4 * 4
STATE_ALLOWANCE_BYTES = 16 * 2**20


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
    needed = _tensor_bytes(state) + STATE_ALLOWANCE_BYTES
    _check_free_space(path, needed)
    with atomic_path(path) as temp:
        try:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, temp)
        except (RuntimeError, OSError) as error:  # torch reports a full disk as "[enforce fail ...] unexpected pos"
            raise _write_error(path, needed, error) from None
    return path


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor in nested dicts, lists and tuples (the structures checkpoints are made of)."""
    pending = [obj]
    while pending:
        item = pending.pop()
        if isinstance(item, torch.Tensor):
            yield item
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)


def _tensor_bytes(state: Any) -> int:
    storages = {}
    for tensor in _tensors(state):
        storage = tensor.untyped_storage()
        storages[getattr(storage, "_checkpoint_offset", None) or storage.data_ptr() or id(storage)] = storage.nbytes()
    return sum(storages.values())


def _size_text(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def _check_free_space(path: Path, needed: int) -> None:
    """Refuse before writing when the disk holding ``path`` has less free space than the file needs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise OSError(f"{path}: not saved: disk full ({_size_text(free)} free in {path.parent}, about "
                      f"{_size_text(needed)} needed); the previous file, if any, is kept")


def _write_error(path: Path, needed: int, error: BaseException) -> OSError:
    """One line for a save that failed part-way: a full disk when it now is, else the write error."""
    free = shutil.disk_usage(path.parent).free
    reason = (str(error).splitlines() or [type(error).__name__])[0]
    cause = (f"disk full ({_size_text(free)} free in {path.parent}, about {_size_text(needed)} needed)" if free < needed
             else f"write error in {path.parent} (disk full, quota or a failing disk: {reason[:120]})")
    return OSError(f"{path}: not saved: {cause}; the previous file, if any, is kept")


def _load_error(path: Path, error: BaseException) -> CheckpointError:
    """torch.load's failure as one line: a refused pickle, or a file that is truncated or no torch file."""
    if "Weights only load failed" in str(error):
        return CheckpointError(
            f"{path}: not a readable checkpoint: it holds Python objects that weights_only loading refuses "
            "(a pickle can run code); load only files you made or trust"
        )
    reason = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines()[0] if str(error) else type(error).__name__
    return CheckpointError(f"{path}: not a readable checkpoint (truncated or not a torch file: {reason})")


def _is_tensor_record(name: str) -> bool:
    """torch.save names the record of tensor storage KEY ``ARCHIVE/data/KEY``."""
    return re.fullmatch(r"[^/]+/data/\d+", name) is not None


def _zip_directory(path: Path) -> list[zipfile.ZipInfo]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or not a torch file: "
                              f"{(str(error).splitlines() or [type(error).__name__])[0]})") from None


def _declared_tensor_bytes(path: Path, structure: Any) -> int:
    """The bytes the structure's tensors declare (each storage once). Refuses a tensor that reaches past its storage
    or holds more values than it (a stride-0 view of one stored value would become real at the first copy)."""
    storages = {}
    for tensor in _tensors(structure):
        storage, size = tensor.untyped_storage(), tensor.element_size()
        last = tensor.storage_offset() + sum((length - 1) * stride for length, stride in zip(tensor.shape, tensor.stride()))
        if tensor.numel() and max(last + 1, tensor.numel()) * size > storage.nbytes():
            raise CheckpointError(f"{path}: a tensor of shape {list(tensor.shape)} is larger than its stored data (a "
                                  "stretched view no torch.save of weights writes); refused before reading")
        storages[getattr(storage, "_checkpoint_offset", id(storage))] = storage.nbytes()
    return sum(storages.values())


def read_torch_file(
    path: str | os.PathLike, allowed_tensor_bytes: Callable[[Any], int], map_location: str | torch.device = "cpu"
) -> Any:
    """``torch.load(weights_only=True)`` of a zip-format torch file, its cost bounded before any tensor is inflated.

    In order: the zip directory (records other than tensor data inflate to ``MAX_STRUCTURE_BYTES`` at most); the
    structure alone (loaded to the ``meta`` device: no tensor data is read), given to ``allowed_tensor_bytes``,
    which checks it and returns what the network it declares may need, the bound on both the tensor records'
    inflated sizes and the sizes the structure declares (a tensor larger than its data is refused); every
    record's CRC-32; then the load. Raises CheckpointError (one line, naming ``path``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    records = _zip_directory(path)
    structure_bytes = sum(info.file_size for info in records if not _is_tensor_record(info.filename))
    if structure_bytes > MAX_STRUCTURE_BYTES:
        raise CheckpointError(f"{path}: its structure inflates to {_size_text(structure_bytes)} (at most "
                              f"{_size_text(MAX_STRUCTURE_BYTES)}); refused before reading (a damaged or hostile file)")
    try:
        structure = torch.load(path, map_location="meta", weights_only=True)
    except Exception as error:
        raise _load_error(path, error) from None
    allowed = allowed_tensor_bytes(structure)
    stored = sum(info.file_size for info in records if _is_tensor_record(info.filename))
    declared = _declared_tensor_bytes(path, structure)
    if max(stored, declared) > allowed:
        raise CheckpointError(
            f"{path}: its tensors inflate to {_size_text(max(stored, declared))}, more than the network it declares "
            f"needs ({_size_text(allowed)} at most); refused before reading (a damaged or hostile file)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise CheckpointError(f"{path}: damaged ({(str(error).splitlines() or [type(error).__name__])[0]}); "
                              "use another copy or retrain") from None
    if damaged is not None:
        raise CheckpointError(f"{path}: damaged: record {damaged} fails its CRC-32 check (bit rot or a bad copy); "
                              "use another copy (e.g. best.pt) or retrain")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise _load_error(path, error) from None


def _checkpoint_budget(path: Path) -> Callable[[Any], int]:
    """``read_torch_file``'s bound for a checkpoint: its structure checked, its weights fitting the declared network."""
    def allowed(state: Any) -> int:
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not an image-repair checkpoint (expected format {CHECKPOINT_FORMAT!r})")
        _check_structure(path, state)
        if state["arch"]["name"].lower() in MODELS:
            check_fit(path, state["arch"], state["model"])
        parameters = sum(tensor.numel() for tensor in state["model"].values())
        if parameters > MAX_PARAMETERS:
            raise CheckpointError(f"{path}: {parameters:,} weights, more than any network here ({MAX_PARAMETERS:,} at "
                                  "most); refused before reading (a damaged or hostile file)")
        return STATE_PER_WEIGHT_BYTES * parameters + STATE_ALLOWANCE_BYTES
    return allowed


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint with ``weights_only=True`` (``read_torch_file``); clear errors for bad files."""
    path = Path(path)
    state = read_torch_file(path, _checkpoint_budget(path), map_location)
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
    """Architecture arguments are small plain values: bounded integers, finite floats, short strings and flat lists of them."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int) and 0 <= value <= MAX_ARCH_VALUE:
        return
    if isinstance(value, float) and math.isfinite(value):
        return
    if isinstance(value, str) and len(value) <= 64:
        return
    if isinstance(value, (list, tuple)) and len(value) <= 16 and not any(isinstance(item, (list, tuple)) for item in value):
        for item in value:  # a flat list of bounded values (the gated UNet's blocks per level, a colour)
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


def build_checked(path: str | os.PathLike, arch: dict[str, Any], weights: Mapping[str, torch.Tensor]) -> nn.Module:
    """Build the network ``arch`` describes only once its arguments and size are bounded and ``weights`` fit it
    (``check_fit``); the real (CPU) network is returned with ``weights`` not yet loaded."""
    check_fit(path, arch, weights)
    return build_model(arch["name"], **arch["kwargs"])


def check_fit(path: str | os.PathLike, arch: dict[str, Any], weights: Mapping[str, torch.Tensor]) -> None:
    """Refuse (CheckpointError naming ``path``) unknown or unbounded ``arch`` arguments, a network of more than
    ``MAX_PARAMETERS`` weights, and ``weights`` whose names or shapes do not fit it (meta tensors will do).

    The network is built on the ``meta`` device, which allocates no memory.
    """
    path = Path(path)
    name, kwargs = arch["name"], arch["kwargs"]
    network = MODELS.get(name.lower())
    if network is None:
        raise CheckpointError(f"{path}: unknown network {name!r} (expected one of {', '.join(MODELS)})")
    unknown, accepted = unknown_arguments(network, kwargs)
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
    parameters = sum(math.prod(shape) for shape in expected.values())
    if parameters > MAX_PARAMETERS:
        raise CheckpointError(f"{path}: {name} {kwargs} has {parameters:,} weights, more than any network here "
                              f"({MAX_PARAMETERS:,} at most); refused before building (a damaged or hostile file)")


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
