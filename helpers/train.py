"""The trainer: one ``fit`` for DnCNN, UNet and EDSR, used by the CLI and the notebooks.

Adam with ReduceLROnPlateau on the validation loss, early stopping, optional gradient clipping,
mixed precision (float16 + GradScaler on CUDA, bfloat16 autocast on CPU when asked), non-finite
loss detection, per-epoch validation (loss, PSNR, SSIM against the input's PSNR), atomic
``last.pt`` / ``best.pt`` checkpoints that resume (model, optimiser, scaler, scheduler,
early-stopping state, RNG states, history, config), and DistributedDataParallel when started by
``torchrun``. ``train_command`` is ``python -m helpers train``.

A model may return a dict of tensors and a dataset may give a dict of targets (the cascade's per-stage
outputs and intermediate targets, ``helpers.cascade``): the loss receives them as they are, and the
metrics use the entry under ``PRIMARY`` ("final") of each.

A resumed run gives the same weights and history as an uninterrupted one, bit for bit, on the CPU
and on CUDA with ``deterministic=True`` (``--deterministic``); without it cuDNN's convolution
backward and autotuner make every CUDA run differ slightly, resumed or not.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import random
import re
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from .checks import check_image_batch, range_checked_upstream
from .inference import pick_device
from .losses import build_loss
from .metrics import psnr, ssim
from .models import build_model

__all__ = [
    "TrainConfig",
    "TrainingDiverged",
    "check_resumable",
    "EpochSampler",
    "HISTORY_KEYS",
    "PRIMARY",
    "STAGE_DEFAULTS",
    "fit",
    "evaluate",
    "distributed",
    "train_command",
]

# Per-epoch lists in the history returned by ``fit`` and stored in checkpoints (the notebooks plot them).
HISTORY_KEYS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_psnr",
    "val_ssim",
    "input_psnr",
    "lr",
    "seconds",
    "skipped_steps",
    "cascade_psnr",  # the whole cascade with this network in it, when fit gets ``cascade_validation`` (else NaN)
)
LAST_CHECKPOINT, BEST_CHECKPOINT = "last.pt", "best.pt"
PRIMARY = "final"  # the prediction / target measured, when a model or dataset gives a dict of them
# How long the other ranks wait for rank 0 to build the data cache (GOPRO's frames: minutes to an hour on Colab).
CACHE_BUILD_TIMEOUT = datetime.timedelta(hours=2)


class TrainingDiverged(RuntimeError):
    """The loss stayed non-finite (or the weights became non-finite); the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Everything that decides a training run; stored (``asdict``) in every checkpoint.

    ``amp=None`` means float16 autocast with a GradScaler on CUDA and float32 on the CPU;
    ``amp=True`` on the CPU uses bfloat16 autocast. ``steps_per_epoch=None`` is one pass over the
    training data. ``val_batch_size=None`` validates in batches of ``batch_size`` when the validation
    items share one size (fixed crops), one by one otherwise (whole frames of several sizes). ``early_stop_patience=None`` never stops early. ``loss`` is a
    ``helpers.losses.build_loss`` config; ``arch`` is filled in from the model; ``data`` records
    where the data came from (informational). ``deterministic`` makes CUDA runs reproducible
    (``_deterministic_algorithms``), at some speed.
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


# ----------------------------------------------------------------------------- devices and processes


@dataclass(frozen=True)
class DistributedInfo:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@contextlib.contextmanager
def distributed(device_request: str | torch.device = "auto") -> Iterator[tuple[DistributedInfo, torch.device]]:
    """Join the process group ``torchrun`` describes (WORLD_SIZE > 1): nccl on CUDA, gloo on the CPU.

    Yields (info, device); each process uses GPU LOCAL_RANK. Nested use reuses the group, and only
    the outermost call that created it destroys it.
    """
    device = pick_device(device_request)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not dist.is_initialized():
        yield DistributedInfo(), device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield DistributedInfo(dist.get_rank(), dist.get_world_size()), device
    finally:
        if created:
            dist.destroy_process_group()


@contextlib.contextmanager
def main_process_first(info: DistributedInfo) -> Iterator[None]:
    """Rank 0 runs the block (e.g. building a data cache) before the other ranks do.

    The others wait on a gloo group of their own with ``CACHE_BUILD_TIMEOUT``: the default group's
    timeout (NCCL: 10 minutes) is shorter than decoding a dataset into the cache can take.
    """
    if not info.enabled:
        yield
        return
    group = dist.new_group(backend="gloo", timeout=CACHE_BUILD_TIMEOUT)
    try:
        if not info.is_main:
            dist.barrier(group=group)
        yield
        if info.is_main:
            dist.barrier(group=group)
    finally:
        dist.destroy_process_group(group)


def _all_reduce_sum(values: torch.Tensor, info: DistributedInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


# ----------------------------------------------------------------------------- data order


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for (seed, epoch), well mixed so neighbouring epochs are unrelated."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


class EpochSampler(Sampler[int]):
    """Seeded shuffle per epoch, split across ranks, of any length (whole permutations are chained).

    Hand-written because DistributedSampler cannot draw more samples than the dataset holds, which
    a fixed ``steps_per_epoch`` on a small set needs. The order depends only on (seed, epoch), so
    a resumed run sees the same batches.
    """

    def __init__(self, dataset_size: int, samples_per_rank: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if dataset_size < 1:
            raise ValueError("the training dataset is empty")
        self.dataset_size, self.samples_per_rank = dataset_size, samples_per_rank
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_rank

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        total = self.samples_per_rank * self.world_size
        permutations = [torch.randperm(self.dataset_size, generator=generator) for _ in range(-(-total // self.dataset_size))]
        return iter(torch.cat(permutations)[:total][self.rank :: self.world_size].tolist())


# ----------------------------------------------------------------------------- checkpoint state


def _rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states in weights_only-loadable types."""
    version, python_state, gauss = random.getstate()
    bit_generator, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": {"version": version, "state": list(python_state), "gauss": gauss},
        "numpy": {
            "bit_generator": bit_generator,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state(
        (numpy["bit_generator"], numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"], numpy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


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
    if arch is not None and not _same_architecture(state["arch"], arch):
        raise CheckpointError(f"{path}: holds a {state['arch']} network, but the model to train is {arch}")
    _check_training_state(path, state)
    changes = _changed_run_options(state["config"], asdict(config))
    if changes:
        raise CheckpointError(
            f"{path}: --resume with options that differ from the run's: {'; '.join(changes)}. Resume with the run's own "
            f"options (only {', '.join(RESUMABLE_CHANGES)} may change), or start a new run in another --out folder "
            f"(--init {path} starts it from these weights)"
        )


def _same_architecture(stored: Mapping[str, Any], arch: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's recorded architecture builds ``arch``: a run recorded before a constructor argument
    existed lacks it, and stands for its default (built on the meta device: no memory spent)."""
    if stored == arch:
        return True
    try:
        with torch.device("meta"):
            return build_model(stored["name"], **stored["kwargs"]).arch == arch
    except (KeyError, TypeError, ValueError):
        return False


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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def _deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Inside the block, torch's deterministic kernels and no cuDNN autotuning (both restored after); a no-op if not enabled.

    The CPU is reproducible without it. ``warn_only``: torch warns that reflection padding's backward
    (kornia's SSIM window) has no deterministic CUDA kernel; there it only adds zeros, as SSIM's valid
    window discards the padded border, so the sums do not depend on their order
    (``python -m bench.gpu_check`` compares a resumed UNet run with an uninterrupted one on a GPU).
    """
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]


def _weights_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(tensor).all()) for tensor in model.state_dict().values() if tensor.is_floating_point())


class _BufferSnapshot:
    """A model's buffers as of the last ``take``, put back by ``restore`` when a training step is skipped.

    A forward pass that overflows (float16 on CUDA) writes inf/NaN into BatchNorm's running statistics
    before the loss shows it; skipping the step must undo that too. One flat copy per dtype per step
    (two kernels for DnCNN instead of one per buffer).
    """

    def __init__(self, model: nn.Module) -> None:
        groups: dict[torch.dtype, list[torch.Tensor]] = {}
        for buffer in model.buffers():
            groups.setdefault(buffer.dtype, []).append(buffer)
        self.groups = list(groups.values())
        self.saved: list[torch.Tensor] = []

    def take(self) -> None:
        self.saved = [torch.cat([buffer.detach().reshape(-1) for buffer in group]) for group in self.groups]

    def restore(self) -> None:
        for group, flat in zip(self.groups, self.saved):
            for buffer, values in zip(group, flat.split([buffer.numel() for buffer in group])):
                buffer.detach().copy_(values.view_as(buffer))


# ----------------------------------------------------------------------------- evaluation


def _as_target_size(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The input as a baseline prediction: bicubic-upscaled to the target size when they differ (EDSR)."""
    if inputs.shape[-2:] == targets.shape[-2:]:
        return inputs
    return nn.functional.interpolate(inputs, size=targets.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)


def _primary(value: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The tensor metrics are measured on: the value itself, or its ``PRIMARY`` entry."""
    return value[PRIMARY] if isinstance(value, Mapping) else value


def _each(value: Any, function: Any) -> Any:
    """``function`` applied to a tensor, or to every tensor of a dict (auxiliary outputs or targets)."""
    return {key: function(item) for key, item in value.items()} if isinstance(value, Mapping) else function(value)


def _amp_settings(config: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype]:
    """(autocast enabled, dtype): float16 on CUDA by default, bfloat16 on the CPU only when asked."""
    enabled = device.type == "cuda" if config.amp is None else bool(config.amp)
    name = config.amp_dtype or ("float16" if device.type == "cuda" else "bfloat16")
    if name not in ("float16", "bfloat16"):
        raise ValueError(f"amp_dtype: expected 'float16' or 'bfloat16', received {name!r}")
    return enabled, getattr(torch, name)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    loss: nn.Module,
    device: torch.device,
    autocast: tuple[bool, torch.dtype] = (False, torch.float32),
    channels_last: bool = False,
    info: DistributedInfo = DistributedInfo(),
) -> dict[str, float]:
    """Validation loss, PSNR and SSIM (predictions clamped to [0, 1]) and the input's PSNR, averaged per image.

    Per-image sums and the image count are all-reduced across ranks, so every rank gets the same
    averages over the whole validation set.
    """
    was_training = model.training
    model.eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    totals = torch.zeros(5, dtype=torch.float64, device=device)  # loss, psnr, ssim, input psnr, images
    for inputs, targets in loader:
        inputs = inputs.to(device, memory_format=memory_format)
        targets = _each(targets, lambda tensor: tensor.to(device))
        with torch.autocast(device.type, dtype=autocast[1], enabled=autocast[0]):
            predictions = model(inputs)
        predictions = _each(predictions, torch.Tensor.float)
        clamped, target = _primary(predictions).clamp(0, 1), _primary(targets)
        count = len(inputs)
        totals += torch.stack(
            [
                loss(predictions, targets).double() * count,
                psnr(clamped, target, reduction="none").double().sum(),
                ssim(clamped, target, reduction="none").double().sum(),
                psnr(_as_target_size(inputs.float(), target), target, reduction="none").double().sum(),
                torch.tensor(float(count), dtype=torch.float64, device=device),
            ]
        )
    model.train(was_training)
    totals = _all_reduce_sum(totals, info)
    if totals[4] == 0:
        raise ValueError("the validation dataset is empty")
    loss_sum, psnr_sum, ssim_sum, input_psnr_sum, images = totals.tolist()
    return {"val_loss": loss_sum / images, "val_psnr": psnr_sum / images, "val_ssim": ssim_sum / images, "input_psnr": input_psnr_sum / images}


# ----------------------------------------------------------------------------- training


def _config_from(config: TrainConfig | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> TrainConfig:
    values = asdict(config) if isinstance(config, TrainConfig) else dict(config or {})
    values.update(overrides)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"training config: unknown options {unknown}; expected some of {sorted(known)}")
    return TrainConfig(**values)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


class _Trainer:
    """The state of one ``fit`` call; its methods are the steps of an epoch."""

    def __init__(
        self,
        model: nn.Module,
        train_data: Dataset,
        val_data: Dataset,
        loss: nn.Module,
        config: TrainConfig,
        checkpoint_dir: Path,
        device: torch.device,
        info: DistributedInfo,
        cascade_validation: Callable[[nn.Module], float] | None = None,
    ) -> None:
        self.config, self.checkpoint_dir, self.device, self.info = config, checkpoint_dir, device, info
        self.cascade_validation = cascade_validation
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.raw_model = model.to(device, memory_format=self.memory_format)
        self.model = (
            DistributedDataParallel(self.raw_model, device_ids=[device.index] if device.type == "cuda" else None)
            if info.enabled
            else self.raw_model
        )
        self.loss = loss.to(device)
        self.train_data = train_data
        self.autocast = _amp_settings(config, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.autocast[0] and self.autocast[1] == torch.float16)
        self.optimizer = torch.optim.Adam(self.raw_model.parameters(), lr=config.lr)
        self.buffers = _BufferSnapshot(self.raw_model)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience, min_lr=config.min_lr
        )
        samples_per_rank = config.batch_size * (
            config.steps_per_epoch or max(1, len(train_data) // (config.batch_size * info.world_size))
        )
        self.sampler = EpochSampler(len(train_data), samples_per_rank, config.seed, info.rank, info.world_size)
        self.train_loader = DataLoader(
            train_data,
            batch_size=config.batch_size,
            sampler=self.sampler,
            num_workers=config.num_workers,
            pin_memory=device.type == "cuda",
            drop_last=True,
        )
        val_shard = Subset(val_data, range(info.rank, len(val_data), info.world_size)) if info.enabled else val_data
        fixed_size = getattr(val_data, "patch_size", None) is not None
        self.val_loader = DataLoader(  # workers kept alive: restarting them every epoch cost more than validating
            val_shard,
            batch_size=config.val_batch_size or (config.batch_size if fixed_size else 1),
            num_workers=config.num_workers,
            persistent_workers=config.num_workers > 0,
            pin_memory=device.type == "cuda",
        )
        self.epoch, self.global_step = 0, 0
        self.best_val_loss, self.bad_epochs = math.inf, 0
        self.history: dict[str, list] = {key: [] for key in HISTORY_KEYS}

    # -- checkpoints

    def state(self, status: str) -> dict[str, Any]:
        return {
            "arch": self.raw_model.arch,
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "early_stopping": {"best_val_loss": self.best_val_loss, "bad_epochs": self.bad_epochs},
            "epoch": self.epoch,
            "global_step": self.global_step,
            "rng": _rng_state(),
            "history": self.history,
            "config": asdict(self.config),
            "status": status,
        }

    def resume(self, path: Path) -> None:
        """Restore everything from ``path``; foreign, truncated or mismatched files raise CheckpointError."""
        # On the CPU whatever the device: load_state_dict copies model and optimiser state to the device, the
        # NumPy RNG state must stay in host memory, and Adam's step counters must stay CPU tensors (on the
        # GPU each would cost a synchronisation per parameter per step).
        state = load_checkpoint(path, map_location="cpu")
        check_resumable(path, state, self.config, self.raw_model.arch)
        try:
            self.raw_model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self._load_scaler_state(state["scaler"], path)
            _set_rng_state(state["rng"])
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
            raise CheckpointError(f"{path}: state does not fit the model or is damaged: {str(error).splitlines()[0]}") from None
        self.best_val_loss = state["early_stopping"]["best_val_loss"]
        self.bad_epochs = state["early_stopping"]["bad_epochs"]
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        self.history = {key: list(state["history"].get(key, [])) for key in HISTORY_KEYS}

    def _load_scaler_state(self, scaler_state: Mapping[str, Any], path: Path) -> None:
        """The GradScaler's state, when the run had one (runs without float16 AMP store an empty dict)."""
        if scaler_state:
            self.scaler.load_state_dict(scaler_state)
        elif self.scaler.is_enabled() and self.info.is_main:
            print(f"{path}: no float16 loss-scaler state (saved without float16 AMP); starting with a fresh loss scale")

    def save(self, name: str, status: str) -> None:
        if self.info.is_main:
            save_checkpoint(self.checkpoint_dir / name, self.state(status))

    # -- one epoch

    def _loss_on_all_ranks(self, loss_value: torch.Tensor) -> tuple[bool, float]:
        """(whether the loss is finite on every rank, this rank's loss) in one read from the device.

        All ranks skip the same steps, keeping DDP in step. This read and GradScaler's own check of
        the gradients are a float16 step's only synchronisations on a GPU.
        """
        loss_value = loss_value.detach().float().reshape(1)
        finite = torch.isfinite(loss_value).float()
        if self.info.enabled:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        finite_flag, loss = torch.cat([finite, loss_value]).tolist()
        return finite_flag == 1.0, loss

    def _optimizer_step(self, loss_value: torch.Tensor) -> None:
        """Backward and step; GradScaler skips steps with non-finite gradients (float16), or the gradient norm does."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss_value).backward()
        if self.config.grad_clip is not None or not self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
            total_norm = nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.config.grad_clip or math.inf)
            if not self.scaler.is_enabled() and not torch.isfinite(total_norm):
                self.optimizer.zero_grad(set_to_none=True)
                return
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def _optimizer_steps_taken(self) -> int:
        """Steps Adam has applied (its counters stay in host memory, so reading them costs no synchronisation)."""
        return max((int(state["step"]) for state in self.optimizer.state.values() if "step" in state), default=0)

    def train_epoch(self) -> tuple[float, int]:
        """One epoch of optimisation; returns (mean finite training loss, skipped steps)."""
        self.sampler.set_epoch(self.epoch)
        if hasattr(self.train_data, "set_epoch"):
            self.train_data.set_epoch(self.epoch)
        self.model.train()
        loss_sum, loss_steps, steps, non_finite_streak = 0.0, 0, 0, 0
        applied_before = self._optimizer_steps_taken()
        started, images = time.perf_counter(), 0
        bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}", unit="step", leave=False, disable=not self.info.is_main)
        for inputs, targets in bar:
            check_image_batch(inputs, name="training inputs")  # at the edge, in host memory: no device sync
            _each(targets, lambda tensor: check_image_batch(tensor, name="training targets"))
            inputs = inputs.to(self.device, non_blocking=True, memory_format=self.memory_format)
            targets = _each(targets, lambda tensor: tensor.to(self.device, non_blocking=True))
            self.buffers.take()
            with range_checked_upstream():
                with torch.autocast(self.device.type, dtype=self.autocast[1], enabled=self.autocast[0]):
                    predictions = self.model(inputs)
                loss_value = self.loss(_each(predictions, torch.Tensor.float), targets)
            self.global_step += 1
            steps += 1
            finite, loss = self._loss_on_all_ranks(loss_value)
            if finite:
                non_finite_streak = 0
                loss_sum, loss_steps = loss_sum + loss, loss_steps + 1
                self._optimizer_step(loss_value)
            else:
                self.buffers.restore()
                non_finite_streak += 1
                if non_finite_streak >= self.config.nan_patience:
                    bar.close()
                    raise TrainingDiverged(
                        f"training stopped: the loss was non-finite for {non_finite_streak} consecutive steps "
                        f"(epoch {self.epoch + 1}, step {self.global_step}); last good checkpoint kept in "
                        f"{self.checkpoint_dir / LAST_CHECKPOINT} (try a lower --lr, --grad-clip or --no-amp)"
                    )
            images += len(inputs) * self.info.world_size
            bar.set_postfix(loss=f"{loss:.4g}", img_s=f"{images / (time.perf_counter() - started):.1f}")
        skipped = steps - (self._optimizer_steps_taken() - applied_before)
        totals = _all_reduce_sum(torch.tensor([loss_sum, loss_steps], dtype=torch.float64, device=self.device), self.info)
        return (totals[0] / totals[1]).item() if totals[1] else math.nan, skipped

    def _broadcast_buffers(self) -> None:
        """Rank 0's buffers on every rank: each rank's BatchNorm saw its own last batches, and every rank must
        validate the model that rank 0 saves."""
        for buffer in self.raw_model.buffers():
            dist.broadcast(buffer, src=0)

    def run(self) -> dict[str, list]:
        epochs = tqdm(
            range(self.epoch, self.config.epochs), desc="training", unit="epoch", initial=self.epoch,
            total=self.config.epochs, disable=not self.info.is_main,
        )
        for _ in epochs:
            if self.config.early_stop_patience is not None and self.bad_epochs >= self.config.early_stop_patience:
                break
            started = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train_loss, skipped = self.train_epoch()
            if self.info.enabled:
                self._broadcast_buffers()
            metrics = evaluate(  # the bare model: DDP's forward would sync buffers on uneven validation shards
                self.raw_model, self.val_loader, self.loss, self.device, self.autocast, self.config.channels_last, self.info
            )
            if not _weights_finite(self.raw_model) or not math.isfinite(metrics["val_loss"]):
                raise TrainingDiverged(
                    f"training stopped: the weights or validation loss became non-finite in epoch {self.epoch + 1}; "
                    f"not saved, last good checkpoint kept in {self.checkpoint_dir / LAST_CHECKPOINT}"
                )
            if self.cascade_validation is not None and self.info.is_main:
                metrics["cascade_psnr"] = self.cascade_validation(self.raw_model)
            self.scheduler.step(metrics["val_loss"])
            improved = metrics["val_loss"] < self.best_val_loss - self.config.early_stop_min_delta
            self.best_val_loss = metrics["val_loss"] if improved else self.best_val_loss
            self.bad_epochs = 0 if improved else self.bad_epochs + 1
            self.epoch += 1
            row = {"epoch": self.epoch, "train_loss": train_loss, "cascade_psnr": math.nan, **metrics, "lr": lr,
                   "skipped_steps": skipped}
            row["seconds"] = time.perf_counter() - started
            for key in HISTORY_KEYS:
                self.history[key].append(row[key])
            stopping = self.config.early_stop_patience is not None and self.bad_epochs >= self.config.early_stop_patience
            status = "early_stopped" if stopping else ("finished" if self.epoch >= self.config.epochs else "running")
            if improved:  # best first: a run killed between the two writes resumes with its best epoch saved
                self.save(BEST_CHECKPOINT, status)
            self.save(LAST_CHECKPOINT, status)
            if self.info.is_main:
                epochs.write(
                    f"epoch {self.epoch}/{self.config.epochs}: train loss {train_loss:.5f}, val loss {metrics['val_loss']:.5f}, "
                    f"val PSNR {metrics['val_psnr']:.2f} dB (input {metrics['input_psnr']:.2f}), SSIM {metrics['val_ssim']:.4f}, "
                    f"lr {lr:.3g}, {row['seconds']:.1f} s, skipped steps {skipped}"
                    + (f", cascade PSNR {row['cascade_psnr']:.2f} dB" if math.isfinite(row["cascade_psnr"]) else "")
                    + (" [best]" if improved else "")
                )
                if stopping:
                    epochs.write(f"early stopping: no validation improvement for {self.bad_epochs} epochs")
            if self.info.enabled:
                dist.barrier()  # rank 0 has written the checkpoints before anyone moves on or returns
        epochs.close()
        return self.history


def fit(
    model: nn.Module,
    train_data: Dataset,
    val_data: Dataset,
    loss: nn.Module | None = None,
    *,
    config: TrainConfig | Mapping[str, Any] | None = None,
    checkpoint_dir: str | os.PathLike,
    resume: bool = False,
    device: str | torch.device = "auto",
    cascade_validation: Callable[[nn.Module], float] | None = None,
    **overrides: Any,
) -> dict[str, list]:
    """Train ``model`` on ``(input, target)`` datasets; returns the per-epoch history (``HISTORY_KEYS``).

    ``config`` is a TrainConfig or dict; keyword ``overrides`` replace its fields. ``loss=None``
    builds ``config.loss``. Writes ``checkpoint_dir/last.pt`` every epoch and ``best.pt`` when the
    validation loss improves. ``resume=True`` continues from ``last.pt`` (starting afresh when it
    does not exist) with the same data order and LR schedule as an uninterrupted run, and the same
    results bit for bit on the CPU, or on CUDA with ``deterministic=True``.
    Under ``torchrun`` it trains with DistributedDataParallel; only rank 0 writes and prints.
    ``cascade_validation(model)``, when given, runs after every epoch's validation (on rank 0) and
    returns a PSNR recorded as ``cascade_psnr``: how the whole cascade does with this network in it.
    Raises TrainingDiverged after ``nan_patience`` consecutive non-finite losses, CheckpointError
    for a checkpoint that cannot be resumed.
    """
    config = _config_from(config, overrides)
    config.arch = dict(_unwrap(model).arch)
    if loss is None:
        loss = build_loss(config.loss)
    checkpoint_dir = Path(checkpoint_dir)
    with distributed(device) as (info, torch_device), _deterministic_algorithms(config.deterministic):
        if info.is_main:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
        _seed_everything(config.seed)
        trainer = _Trainer(
            _unwrap(model), train_data, val_data, loss, config, checkpoint_dir, torch_device, info, cascade_validation
        )
        last = checkpoint_dir / LAST_CHECKPOINT
        if resume and last.exists():
            trainer.resume(last)
            if info.is_main:
                print(f"resuming from {last} after epoch {trainer.epoch}")
        elif resume and info.is_main:
            print(f"no {last} yet: starting a new run")
        return trainer.run()


# ----------------------------------------------------------------------------- command line


@dataclass(frozen=True)
class StageDefaults:
    """Per-network defaults of ``python -m helpers train``."""

    lr: float
    patch: int
    loss: dict


STAGE_DEFAULTS: dict[str, StageDefaults] = {
    # DnCNN: MSE on the residual as in the paper. Adam 1e-3 left the 17-layer network stuck at the
    # identity on the sample set (it learned to predict zero noise); 3e-4 learns from the first steps.
    "dncnn": StageDefaults(lr=3e-4, patch=50, loss={"weights": {"mse": 1.0}}),
    # UNet deblurring: L1 for sharpness, small SSIM and Sobel-edge terms for structure and edges.
    "unet": StageDefaults(lr=3e-4, patch=128, loss={"weights": {"mse": 0.0, "l1": 1.0, "ssim": 0.1, "sobel": 0.1}}),
    # EDSR: L1 as in the paper (patch = low-resolution side).
    "edsr": StageDefaults(lr=2e-4, patch=48, loss={"weights": {"mse": 0.0, "l1": 1.0}}),
}
VAL_CROPS_PER_FRAME = 4  # fixed validation crops per frame when --val-patch is set
NOISY_STAGES = ("dncnn", "cascade")  # models whose inputs get --sigma's noise


def _loss_config(args: argparse.Namespace) -> dict:
    loss = {"weights": dict(STAGE_DEFAULTS[args.model].loss["weights"])}
    if args.perceptual_weights:
        loss["weights"]["perceptual"] = args.perceptual_weight
        loss["perceptual"] = {"weights": args.perceptual_weights}
    return loss


def _training_only_options(args: argparse.Namespace) -> dict[str, Any]:
    """Dataset options that shape the training set only (validation stays plain), as the CLI set them."""
    stage_options = {"unet": {"synthetic_blur": args.synthetic_blur},
                     "dncnn": {"clean_fraction": args.clean_fraction, "blurry_fraction": args.blurry_fraction},
                     "cascade": {"clean_fraction": args.clean_fraction}}
    return {"colour_augment": args.colour_augment, **stage_options.get(args.model, {})}


PHOTOS_PREFIX = "photos:"
PHOTO_VAL_FRACTION, PAIR_VAL_FRACTION = 0.05, 0.2
CASCADE_VAL_ITEMS = 8  # held-out cascade crops (of the validation patch size) validated after every epoch


def _val_fraction(args: argparse.Namespace) -> float:
    if args.val_fraction is not None:
        return args.val_fraction
    return PHOTO_VAL_FRACTION if args.data.startswith(PHOTOS_PREFIX) else PAIR_VAL_FRACTION


def _photo_options(args: argparse.Namespace) -> dict[str, Any]:
    """The photos: source's options as recorded in the checkpoint config (empty for other sources)."""
    if not args.data.startswith(PHOTOS_PREFIX):
        return {}
    names = ("kernels", "kernel_fraction", "nonuniform_fraction", "sharp_fraction", "blurry_fraction", "min_scale",
             "downscale_kernels", "val_items", "cascade_weights")
    return {name: getattr(args, name) for name in names}


def _photo_degradations(args: argparse.Namespace, training: bool) -> Any:
    """The on-the-fly degradations of a photos: source; validation gets the same distribution (fixed by seed)
    except the training-only shares of untouched patches (``--clean-fraction``, ``--sharp-fraction``)."""
    from .data import PhotoDegradations, load_blur_kernels

    return PhotoDegradations(
        sigma=args.sigma,
        clean_fraction=args.clean_fraction if training else 0.0,
        blurry_fraction=args.blurry_fraction,
        sharp_fraction=args.sharp_fraction if training else 0.0,  # validation: every input needs repair (finite PSNR)
        kernels=load_blur_kernels(args.kernels) if args.kernels else (),
        kernel_fraction=args.kernel_fraction,
        nonuniform_fraction=args.nonuniform_fraction,
        downscale_kernels=tuple(args.downscale_kernels.split(",")),
    )


def _photo_libraries(args: argparse.Namespace) -> tuple[Any, Any]:
    from .data import PhotoLibrary, parse_photo_folders

    folders = parse_photo_folders(args.data[len(PHOTOS_PREFIX):])
    return tuple(PhotoLibrary(folders, split, _val_fraction(args), args.seed) for split in ("train", "val"))


def _photo_datasets(args: argparse.Namespace, patch: int, world_size: int) -> tuple[Dataset, Dataset]:
    """Train and validation patches of a photos: source: held-out photos, the training degradations, fixed by seed."""
    from .data import build_photo_dataset

    train_photos, val_photos = _photo_libraries(args)
    length = (args.steps_per_epoch or max(1, len(train_photos) // args.batch_size)) * args.batch_size * world_size
    common = {"min_scale": args.min_scale, "seed": args.seed}
    train = build_photo_dataset(args.model, train_photos, patch_size=patch, length=length, augment=True,
                                colour_augment=args.colour_augment, degradations=_photo_degradations(args, True), **common)
    val = build_photo_dataset(args.model, val_photos, patch_size=args.val_patch or patch, length=args.val_items,
                              augment=True, degradations=_photo_degradations(args, False), **common)
    return train, val


def _cascade_validation(args: argparse.Namespace, patch: int) -> Callable[[nn.Module], float] | None:
    """For a photos: source: the cascade's PSNR on fixed held-out crops with the network in training swapped in.

    The other stages come from ``--cascade-weights`` (default: the bundled weights); the crops are
    degraded in the cascade's order (blur at high resolution, 2x downscale, noise), float32 inference.
    """
    from .data import build_photo_dataset
    from .pipeline import DEFAULT_WEIGHTS_DIR, NETWORK_STAGES, Restorer, deblur_ramp_for

    weights = Path(args.cascade_weights) if args.cascade_weights not in (None, "none") else DEFAULT_WEIGHTS_DIR
    if not args.data.startswith(PHOTOS_PREFIX) or args.cascade_weights == "none":
        return None
    others = {stage: load_model(weights / f"{stage}.pt", expected_name=stage) for stage in NETWORK_STAGES if stage != args.model}
    _, val_photos = _photo_libraries(args)
    crops = build_photo_dataset("pipeline", val_photos, patch_size=args.val_patch or patch, length=CASCADE_VAL_ITEMS,
                                seed=args.seed, min_scale=args.min_scale, degradations=_photo_degradations(args, False))
    inputs, targets = (torch.stack(tensors) for tensors in zip(*(crops[i] for i in range(len(crops)))))
    # The deblur gate's ramp belongs to a trained UNet: one in training keeps all of its correction (a network near
    # the identity would otherwise be gated off); a finished one is gated as its file says, as Restorer.from_weights does.
    if args.model == "unet":
        gates: dict[str, Any] = {"deblur": "always"}
    else:
        gates = {"deblur_ramp": deblur_ramp_for(weights / "unet.pt")}

    def validate(model: nn.Module) -> float:
        restorer = Restorer({**others, args.model: model}, device=next(model.parameters()).device, fp32=True, **gates)
        return psnr(restorer.restore_tensor(inputs).cpu(), targets).item()

    return validate


def _datasets(args: argparse.Namespace, patch: int, world_size: int) -> tuple[Dataset, Dataset]:
    """Train and validation datasets of the chosen stage; enough patches per frame for the requested steps."""
    from .cache import default_cache_dir
    from .data import build_dataset, pairs_for

    if args.data.startswith(PHOTOS_PREFIX):
        return _photo_datasets(args, patch, world_size)
    train_pairs = pairs_for(args.data, "train", _val_fraction(args), args.seed)
    val_pairs = pairs_for(args.data, "val", _val_fraction(args), args.seed)
    if not val_pairs:
        raise ValueError(f"{args.data}: no validation sequences (need at least two training sequences, --val-fraction > 0)")
    cache_dir = None if args.cache_dir == "none" else Path(args.cache_dir or default_cache_dir() / "frames")
    options: dict[str, Any] = {"cache_dir": cache_dir}
    if args.model in NOISY_STAGES:
        options["sigma"] = args.sigma
    train_options = _training_only_options(args)
    samples_needed = (args.steps_per_epoch or 0) * args.batch_size * world_size
    samples_per_frame = max(1, -(-samples_needed // len(train_pairs)))
    train = build_dataset(args.model, train_pairs, patch_size=patch, augment=True, seed=args.seed,
                          samples_per_frame=samples_per_frame, **options, **train_options)
    val_patch = args.val_patch or None
    val = build_dataset(args.model, val_pairs, patch_size=val_patch, augment=False, seed=args.seed,
                        samples_per_frame=VAL_CROPS_PER_FRAME if val_patch else 1, **options)
    return train, val


def train_command(args: argparse.Namespace) -> int:
    """``python -m helpers train MODEL --data ... --out DIR``: build data, model and loss, then ``fit``.

    One network; ``train cascade`` is ``helpers.cascade.train_cascade_command`` (the CLI dispatches it).
    """
    defaults = STAGE_DEFAULTS[args.model]
    patch = args.patch or defaults.patch
    config = TrainConfig(
        epochs=args.epochs,
        lr=args.lr or defaults.lr,
        batch_size=args.batch_size,
        steps_per_epoch=args.steps_per_epoch,
        num_workers=args.num_workers,
        amp=args.amp,
        amp_dtype=args.amp_dtype,
        grad_clip=args.grad_clip,
        early_stop_patience=args.early_stop or None,
        plateau_patience=args.plateau_patience,
        seed=args.seed,
        channels_last=args.channels_last,
        deterministic=args.deterministic,
        loss=_loss_config(args),
        data={"source": args.data, "patch": patch, "val_patch": args.val_patch, "val_fraction": _val_fraction(args),
              **({"sigma": args.sigma} if args.model == "dncnn" else {}), **_training_only_options(args),
              **({"init": str(args.init)} if args.init else {}), **_photo_options(args)},
    )
    last = Path(args.out) / LAST_CHECKPOINT
    try:
        if args.resume and last.is_file():  # refuse a resume that cannot work before building its data
            check_resumable(last, load_checkpoint(last), config, arch=None)
        with distributed(args.device) as (info, device):
            with main_process_first(info):
                train_data, val_data = _datasets(args, patch, info.world_size)
            _seed_everything(args.seed)
            model = load_model(args.init, expected_name=args.model) if args.init else build_model(args.model)
            fit(model, train_data, val_data, build_loss(config.loss), config=config, checkpoint_dir=args.out,
                resume=args.resume, device=device, cascade_validation=_cascade_validation(args, patch))
    except TrainingDiverged as error:  # the run itself failed; its last good checkpoint is kept
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (CheckpointError, OSError, ValueError) as error:  # bad --init/--resume file, data or options: setup errors
        print(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", file=sys.stderr)
        return 2
    return 0
