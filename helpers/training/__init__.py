"""Training: ``fit`` one network (or the cascade) on datasets, with checkpoints that resume bit for bit.

Files, one concern each: ``config`` (``TrainConfig`` and the rules for resuming a run), ``trainer``
(``fit``: the optimisation loop, checkpoints, ETA), ``validation`` (the per-epoch validation loop),
``reproducibility`` (seeds, data order, RNG state, deterministic kernels) and ``distributed``
(``torchrun`` process groups). The datasets and network a config describes come from ``helpers.recipes``.
"""

from .config import TrainConfig, check_resumable
from .distributed import DistributedInfo, distributed, main_process_first
from .reproducibility import EpochSampler
from .trainer import BEST_CHECKPOINT, HISTORY_KEYS, LAST_CHECKPOINT, RUN_LOCK, TIMING_KEYS, TrainingDiverged, fit
from .validation import PRIMARY, validate

__all__ = [
    "TrainConfig", "check_resumable", "DistributedInfo", "distributed", "main_process_first", "EpochSampler",
    "BEST_CHECKPOINT", "HISTORY_KEYS", "LAST_CHECKPOINT", "RUN_LOCK", "TIMING_KEYS", "TrainingDiverged", "fit", "PRIMARY", "validate",
]
