"""The trainer: one ``fit`` for DnCNN, UNet, EDSR and the cascade, used by the command line and the notebooks.

Adam with ReduceLROnPlateau on the validation loss, early stopping, optional gradient clipping,
mixed precision (float16 + GradScaler on CUDA, bfloat16 autocast on CPU when asked), non-finite
loss detection, per-epoch validation (``validation.validate``), atomic ``last.pt`` / ``best.pt``
checkpoints that resume (model, optimiser, scaler, scheduler, early-stopping state, RNG states,
history, config), a measured ETA, and DistributedDataParallel when started by ``torchrun``.

A model may return a dict of tensors and a dataset may give a dict of targets (the cascade's per-stage
outputs and intermediate targets, ``helpers.cascade``): the loss receives them as they are, and the
metrics use the entry under ``PRIMARY`` ("final") of each.

A resumed run gives the same weights and history as an uninterrupted one, bit for bit, on the CPU
and on CUDA with ``deterministic=True`` (``--deterministic``); without it cuDNN's convolution
backward and autotuner make every CUDA run differ slightly, resumed or not.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..checks import check_image_batch, range_checked_upstream
from ..safe_writes import exclusive_lock
from ..losses import build_loss
from .config import TrainConfig, check_resumable, config_from, describes
from .distributed import DistributedInfo, all_reduce_sum, distributed, unwrap
from .reproducibility import EpochSampler, deterministic_algorithms, rng_state, seed_everything, set_rng_state
from .validation import amp_settings, each, validate

__all__ = ["HISTORY_KEYS", "TIMING_KEYS", "LAST_CHECKPOINT", "BEST_CHECKPOINT", "TrainingDiverged", "fit"]

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
    "seconds_per_step",  # measured training time per optimisation step (data loading included, validation not)
    "eta_seconds",  # the remaining epochs at this epoch's pace (training and validation), when the epoch ended
)
TIMING_KEYS = ("seconds", "seconds_per_step", "eta_seconds")  # wall-clock entries: the only ones a resumed run may change
LAST_CHECKPOINT, BEST_CHECKPOINT = "last.pt", "best.pt"
RUN_LOCK = ".lock"  # in the run folder while a run writes it: a second run into it is refused, naming the first
PACE_AFTER_STEPS = 10  # steps measured (after the warm-up step) before the run's expected duration is printed


def _duration(seconds: float) -> str:
    """'42 s', '12 min', '3.4 h': a duration as a person reads it ('?' when not measured)."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class TrainingDiverged(RuntimeError):
    """The loss stayed non-finite (or the weights became non-finite); the last good checkpoint is kept."""


def _weights_finite(model: nn.Module) -> bool:
    """Whether every floating-point weight and buffer is finite, in one read from the device (not one per tensor)."""
    tensors = [tensor for tensor in model.state_dict().values() if tensor.is_floating_point()]
    return bool(torch.stack([torch.isfinite(tensor).all() for tensor in tensors]).all()) if tensors else True


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
        self.autocast = amp_settings(config, device)
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
        self.pace_reported, self.steps_this_epoch = False, 0

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
            "rng": rng_state(),
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
            set_rng_state(state["rng"])
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
            raise CheckpointError(f"{path}: state does not fit the model or is damaged: {str(error).splitlines()[0]}") from None
        self.best_val_loss = state["early_stopping"]["best_val_loss"]
        self.bad_epochs = state["early_stopping"]["bad_epochs"]
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        epochs_done = len(state["history"].get("epoch", []))  # keys added since the run began: NaN for its epochs
        self.history = {key: list(state["history"].get(key, [math.nan] * epochs_done)) for key in HISTORY_KEYS}

    def _load_scaler_state(self, scaler_state: Mapping[str, Any], path: Path) -> None:
        """The GradScaler's state, when the run had one (runs without float16 AMP store an empty dict)."""
        if scaler_state:
            self.scaler.load_state_dict(scaler_state)
        elif self.scaler.is_enabled() and self.info.is_main:
            print(f"{path}: no float16 loss-scaler state (saved without float16 AMP); starting with a fresh loss scale")

    def _kept(self) -> str:
        """What a diverged run leaves: its last good checkpoint, or nothing when it failed before the first save."""
        last = self.checkpoint_dir / LAST_CHECKPOINT
        return f"last good checkpoint kept in {last}" if last.is_file() else f"no checkpoint written yet in {self.checkpoint_dir}"

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

    def _report_pace(self, seconds_per_step: float, measured_steps: int) -> None:
        """Print, once per ``fit`` call, the measured time per step and what it means for an epoch and the run."""
        steps = len(self.train_loader)
        remaining = (self.config.epochs - self.epoch) * steps - self.steps_this_epoch
        epochs_left = self.config.epochs - self.epoch
        tqdm.write(
            f"measured {seconds_per_step:.3g} s/step over {measured_steps} steps: {_duration(seconds_per_step * steps)} "
            f"per epoch of {steps} steps, {_duration(seconds_per_step * remaining)} for the rest of the run "
            f"({epochs_left} epoch{'s' if epochs_left != 1 else ''} to go; validation not included)"
        )
        self.pace_reported = True

    def train_epoch(self) -> tuple[float, int, float]:
        """One epoch of optimisation; returns (mean finite training loss, skipped steps, seconds per step).

        Seconds per step are measured from the end of the epoch's first step (the warm-up: workers start,
        cuDNN autotunes) to the end of its last, and shown in the progress bar with the run's ETA.
        """
        self.sampler.set_epoch(self.epoch)
        if hasattr(self.train_data, "set_epoch"):
            self.train_data.set_epoch(self.epoch)
        self.model.train()
        loss_sum, loss_steps, steps, non_finite_streak = 0.0, 0, 0, 0
        applied_before = self._optimizer_steps_taken()
        started, images, warm = time.perf_counter(), 0, math.nan
        seconds_per_step = math.nan
        steps_per_epoch = len(self.train_loader)
        bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}", unit="step", leave=False, disable=not self.info.is_main)
        for inputs, targets in bar:
            check_image_batch(inputs, name="training inputs")  # at the edge, in host memory: no device sync
            each(targets, lambda tensor: check_image_batch(tensor, name="training targets"))
            inputs = inputs.to(self.device, non_blocking=True, memory_format=self.memory_format)
            targets = each(targets, lambda tensor: tensor.to(self.device, non_blocking=True))
            self.buffers.take()
            with range_checked_upstream():
                with torch.autocast(self.device.type, dtype=self.autocast[1], enabled=self.autocast[0]):
                    predictions = self.model(inputs)
                loss_value = self.loss(each(predictions, torch.Tensor.float), targets)
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
                        f"(epoch {self.epoch + 1}, step {self.global_step}); {self._kept()} "
                        "(try a lower --lr, --grad-clip or --no-amp)"
                    )
            images += len(inputs) * self.info.world_size
            now = time.perf_counter()
            warm = now if steps == 1 else warm
            self.steps_this_epoch = steps
            if steps > 1:
                seconds_per_step = (now - warm) / (steps - 1)
                remaining = (self.config.epochs - self.epoch - 1) * steps_per_epoch + steps_per_epoch - steps
                bar.set_postfix(loss=f"{loss:.4g}", s_step=f"{seconds_per_step:.3g}", run_eta=_duration(seconds_per_step * remaining))
                if not self.pace_reported and self.info.is_main and steps - 1 >= min(PACE_AFTER_STEPS, steps_per_epoch - 1):
                    self._report_pace(seconds_per_step, steps - 1)
            else:
                bar.set_postfix(loss=f"{loss:.4g}", img_s=f"{images / (now - started):.1f}")
        skipped = steps - (self._optimizer_steps_taken() - applied_before)
        totals = all_reduce_sum(torch.tensor([loss_sum, loss_steps], dtype=torch.float64, device=self.device), self.info)
        if steps == 1:  # a one-step epoch: its only step, warm-up included
            seconds_per_step = time.perf_counter() - started
        return (totals[0] / totals[1]).item() if totals[1] else math.nan, skipped, seconds_per_step

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
            train_loss, skipped, seconds_per_step = self.train_epoch()
            if self.info.enabled:
                self._broadcast_buffers()
            metrics = validate(  # the bare model: DDP's forward would sync buffers on uneven validation shards
                self.raw_model, self.val_loader, self.loss, self.device, self.autocast, self.config.channels_last, self.info
            )
            if not _weights_finite(self.raw_model) or not math.isfinite(metrics["val_loss"]):
                raise TrainingDiverged(
                    f"training stopped: the weights or validation loss became non-finite in epoch {self.epoch + 1}; "
                    f"not saved, {self._kept()}"
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
            row["seconds_per_step"] = seconds_per_step
            row["eta_seconds"] = row["seconds"] * (self.config.epochs - self.epoch)
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
                    f"lr {lr:.3g}, {row['seconds']:.1f} s ({seconds_per_step:.3g} s/step), skipped steps {skipped}"
                    + (f", about {_duration(row['eta_seconds'])} to go" if self.epoch < self.config.epochs else "")
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
    The run folder is locked while ``fit`` runs (``RUN_LOCK``): a second run into it, from another notebook or
    process, is refused with DestinationBusyError naming the first one's PID, so ``best.pt`` and ``last.pt``
    always come from one run.
    Raises TrainingDiverged after ``nan_patience`` consecutive non-finite losses, CheckpointError
    for a checkpoint that cannot be resumed.
    """
    config = config_from(config, overrides)
    network = unwrap(model)
    if config.arch and not describes(config.arch, network.arch):
        raise ValueError(f"config arch {config.arch} does not describe the model to train ({network.arch}): "
                         "build the model from the config (helpers.recipes.build_model) or leave arch out")
    config.arch = dict(network.arch)
    if loss is None:
        loss = build_loss(config.loss)
    checkpoint_dir = Path(checkpoint_dir)
    with distributed(device) as (info, torch_device), deterministic_algorithms(config.deterministic), \
            exclusive_lock(checkpoint_dir, checkpoint_dir / RUN_LOCK) if info.is_main else contextlib.nullcontext():
        seed_everything(config.seed)
        trainer = _Trainer(
            unwrap(model), train_data, val_data, loss, config, checkpoint_dir, torch_device, info, cascade_validation
        )
        last = checkpoint_dir / LAST_CHECKPOINT
        if resume and last.exists():
            trainer.resume(last)
            if info.is_main:
                print(f"resuming from {last} after epoch {trainer.epoch}")
        elif resume and info.is_main:
            print(f"no {last} yet: starting a new run")
        return trainer.run()
